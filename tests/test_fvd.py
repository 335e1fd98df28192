"""FVD: each preset's clip selection, resize and distance against direct computations; the streaming
metric, also under torchrun; the command's report, saved statistics and hostile inputs."""

import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from conftest import write_video
from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import build_model
from i3d.fvd import (
    FrechetVideoDistance,
    GaussianStats,
    Selection,
    VideoEmbedder,
    compute_fvd,
    frechet_distance,
    fvd,
    fvd_from_stats,
    get_protocol,
    iter_clips,
    kernel_distance,
    list_videos,
    preprocess,
    tf1_bilinear_matrix,
)
from i3d.fvd.distance import trace_sqrt_eigh, trace_sqrt_scipy, trace_sqrt_tfgan


def test_tf1_bilinear_samples_at_i_times_scale_without_half_pixel_shift():
    # 2 -> 4: output i samples input at i * 2 / 4 = 0, 0.5, 1.0, 1.5 (clamped): [0, 5, 10, 10]
    weights = tf1_bilinear_matrix(2, 4)
    assert (weights @ torch.tensor([0.0, 10.0], dtype=torch.float64)).tolist() == [0, 5, 10, 10]
    # 4 -> 2 (downsampling): samples at 0 and 2, no averaging
    assert (tf1_bilinear_matrix(4, 2) @ torch.arange(4.0, dtype=torch.float64)).tolist() == [0, 2]


def _half_pixel_weights(n_in: int, n_out: int) -> np.ndarray:
    """Bilinear with half-pixel centres, written out: output i samples (i + 0.5) * in / out - 0.5, clamped at 0."""
    weights = np.zeros((n_out, n_in))
    for i in range(n_out):
        source = max((i + 0.5) * n_in / n_out - 0.5, 0.0)
        low = min(int(np.floor(source)), n_in - 1)
        high, frac = min(low + 1, n_in - 1), source - np.floor(source)
        weights[i, low] += 1 - frac
        weights[i, high] += frac
    return weights


@pytest.mark.parametrize(("height", "width"), [(64, 48), (256, 320), (224, 224)])
def test_stylegan_v_resize_is_half_pixel_bilinear_per_frame_without_antialias(height, width):
    videos = np.random.default_rng(0).integers(0, 256, (2, 3, height, width, 3), np.uint8)
    out = preprocess(torch.from_numpy(videos), "half-pixel")
    assert out.shape == (2, 3, 3, 224, 224) and out.dtype == torch.float32
    scaled = videos[1, 2].astype(np.float64) / 255 * 2 - 1
    expected = np.einsum("oh,hwc,pw->opc", _half_pixel_weights(height, 224), scaled, _half_pixel_weights(width, 224),
                         optimize=True)
    # PyTorch finds source positions in float32 (up to ~5e-5 off here); TF1's convention is ~1e-1 off
    np.testing.assert_allclose(out[1, :, 2].permute(1, 2, 0).numpy(), expected, atol=1e-4)
    if (height, width) != (224, 224):
        tf1 = preprocess(torch.from_numpy(videos), "tf1")[1, :, 2].permute(1, 2, 0).numpy()
        assert np.abs(tf1 - expected).max() > 1e-2
    # the same rule as OpenCV's INTER_LINEAR (whose float weights are coarser)
    cv = cv2.resize(scaled.astype(np.float32), (224, 224), interpolation=cv2.INTER_LINEAR)
    np.testing.assert_allclose(cv, expected, atol=1e-4)


def test_google_research_resize_and_values():
    videos = torch.stack([torch.zeros(2, 8, 6, 3), torch.full((2, 8, 6, 3), 255.0)])
    out = preprocess(videos, "tf1")
    assert out.shape == (2, 3, 2, 224, 224)
    assert torch.all(out[0] == -1) and torch.allclose(out[1], torch.ones(()))
    ramp = torch.arange(6.0).repeat(1, 1, 4, 1)[..., None].expand(1, 1, 4, 6, 3) * 51  # 0, 51, ..., 255
    row = preprocess(ramp, "tf1")[0, 0, 0, 0]
    source = torch.arange(224) * 6 / 224  # TF1: output i samples input i * in / out
    expected = 2 * (51 * source.clamp(max=5)) / 255 - 1
    torch.testing.assert_close(row, expected.float(), atol=1e-5, rtol=0)


def test_float_inputs_are_mapped_from_their_stated_range():
    videos = np.random.default_rng(1).integers(0, 256, (1, 2, 16, 16, 3), np.uint8)
    as_unit = torch.from_numpy(videos.astype(np.float32) / 255)
    torch.testing.assert_close(preprocess(as_unit, value_range=(0, 1)), preprocess(torch.from_numpy(videos)),
                               atol=1e-6, rtol=0)


def _frame_folder(folder, count, level=0, names=None):
    folder.mkdir(parents=True)
    for i, name in enumerate(names or [f"{k:04d}.png" for k in range(count)]):
        cv2.imwrite(str(folder / name), np.full((8, 8, 3), (level + 7 * i) % 256, np.uint8))


def test_videos_in_plain_string_order_and_frames_in_string_order_for_stylegan_v(tmp_path):
    for name in ("v10", "v2", "a", "B"):
        _frame_folder(tmp_path / "set" / name, 20)
    (tmp_path / "set" / ".hidden").mkdir()
    protocol = get_protocol("stylegan-v-16f")
    assert [v.name.split("/")[-1] for v in list_videos(tmp_path / "set", protocol)] == ["B", "a", "v10", "v2"]
    _frame_folder(tmp_path / "frames" / "x", 3, names=["1.png", "10.png", "2.png"])
    video = list_videos(tmp_path / "frames", protocol)[0]
    assert [int(f[0, 0, 0]) // 7 for f in video.frames([0, 1, 2])] == [0, 1, 2]  # written in that order
    natural = list_videos(tmp_path / "frames", get_protocol("google-research"))[0]
    assert [int(f[0, 0, 0]) // 7 for f in natural.frames([0, 1, 2])] == [0, 2, 1]  # 1, 2, 10


def _stylegan_v_starts(lengths, frames, stride, seed, run=0, limit=2048):
    """The rule of src/training/dataset.py:323-324 and 402-406, written out: short videos dropped first,
    then the first `limit`; offset uniform in [0, n - frames * stride + stride - 1], in video order."""
    rng = np.random.default_rng([seed, run])
    kept = [i for i, n in enumerate(lengths) if n >= frames * stride][:limit]
    return [(i, int(rng.integers(0, lengths[i] - frames * stride + stride))) for i in kept]


@pytest.mark.parametrize("preset", ["stylegan-v-16f", "stylegan-v-128f-subsample8f"])
def test_real_clip_selection_of_stylegan_v_presets_for_a_seed(tmp_path, preset):
    lengths = [130, 12, 200, 128, 300]
    data = np.zeros((5, 300, 4, 4, 3), np.uint16)  # frame k holds k (only the selection runs, no embedding)
    data[:] = np.arange(300, dtype=np.uint16)[None, :, None, None, None]
    for v, n in enumerate(lengths):
        data[v, n:] = 0
    protocol = get_protocol(preset, seed=7, max_videos=3)
    from i3d.fvd.clips import VideoSource

    # videos of different lengths (an array holds equal ones): the sources are given directly
    sources = [VideoSource(f"v{i}", array=data[i, :n]) for i, n in enumerate(lengths)]
    import i3d.fvd.clips as clips

    original = clips.list_videos
    clips.list_videos = lambda source, protocol: sources
    try:
        selection = Selection("set")
        taken = list(iter_clips(tmp_path, protocol, real=True, selection=selection))
    finally:
        clips.list_videos = original
    expected = _stylegan_v_starts(lengths, protocol.frames, protocol.stride, seed=7, limit=3)
    assert [(name, int(clip[0, 0, 0, 0])) for name, clip in taken] == [(f"v{i}", s) for i, s in expected]
    for (_, clip), (_, start) in zip(taken, expected):
        assert clip[:, 0, 0, 0].tolist() == [start + protocol.stride * k for k in range(protocol.frames)]
    short = [f"v{i}" for i, n in enumerate(lengths) if n < protocol.span]
    assert selection.dropped == [s for s in short if int(s[1:]) < expected[-1][0]]
    pinned = {"stylegan-v-16f": [(0, 108), (2, 115), (3, 77)],
              "stylegan-v-128f-subsample8f": [(0, 9), (2, 50), (3, 5)]}
    assert expected == pinned[preset]  # the draws of numpy's generator for seed 7, fixed here


def test_generated_clips_start_at_frame_zero_and_short_ones_are_an_error(tmp_path):
    data = np.broadcast_to(np.arange(20, dtype=np.uint8)[None, :, None, None, None], (3, 20, 4, 4, 3)).copy()
    np.save(tmp_path / "fake.npy", data)
    protocol = get_protocol("stylegan-v-16f", stride=1)
    clips = [clip for _, clip in iter_clips(tmp_path / "fake.npy", protocol, real=False)]
    assert all(clip[:, 0, 0, 0].tolist() == list(range(16)) for clip in clips)
    skipped = [c for _, c in iter_clips(tmp_path / "fake.npy", get_protocol("stylegan-v-16f", skip_first=4), False)]
    assert skipped[0][:, 0, 0, 0].tolist() == list(range(4, 20))
    with pytest.raises(I3DError, match=r"fake.npy\[0\]: 20 frames, the protocol takes 128 \(a generated video"):
        list(iter_clips(tmp_path / "fake.npy", get_protocol("stylegan-v-128f"), real=False))


def test_covariance_normalisation_follows_the_protocol():
    x = np.random.default_rng(2).normal(size=(37, 8))
    stats = GaussianStats()
    for start in range(0, 37, 10):
        stats.add(x[start : start + 10])
    np.testing.assert_allclose(stats.covariance("n"), np.cov(x, rowvar=False, ddof=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(stats.covariance("n-1"), np.cov(x, rowvar=False, ddof=1), rtol=1e-12, atol=1e-14)


def test_the_three_square_roots_agree_at_full_rank_and_match_the_closed_form():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(6, 6)), rng.normal(size=(6, 6))
    cov_a, cov_b = a @ a.T + np.eye(6), b @ b.T + 0.5 * np.eye(6)
    values = [trace_sqrt_eigh(cov_a, cov_b), trace_sqrt_scipy(cov_b, cov_a), trace_sqrt_tfgan(cov_a, cov_b)]
    np.testing.assert_allclose(values, values[0], rtol=1e-9)
    d_a, d_b = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 2.0])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(d_a) - np.sqrt(d_b)) ** 2)
    for method in ("eigh", "scipy", "tfgan"):
        assert frechet_distance(mu_a, np.diag(d_a), mu_b, np.diag(d_b), method) == pytest.approx(expected, rel=1e-9)


def test_near_singular_covariances_stay_real_and_non_negative():
    x = np.random.default_rng(1).normal(size=(5, 20))  # 5 samples in 20 dimensions: rank-4 covariances
    sx, sy = GaussianStats(), GaussianStats()
    sx.add(x)
    sy.add(x + 1e-9)
    assert 0 <= fvd_from_stats(sx, sy) < 1e-6


def test_kvd_with_one_subset_of_everything_is_the_unbiased_mmd():
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(30, 5)), rng.normal(0.3, 1.2, size=(30, 5))

    def k(p, q):
        return (p @ q.T / 5 + 1) ** 3

    m = 30
    unbiased = ((k(x, x).sum() - np.trace(k(x, x))) / (m * (m - 1)) + (k(y, y).sum() - np.trace(k(y, y)))
                / (m * (m - 1)) - 2 * k(x, y).mean())
    value, size = kernel_distance(x, y, subsets=3, subset_size=1000)
    assert size == 30 and value == pytest.approx(unbiased, rel=1e-10)


@pytest.fixture(scope="module")
def embedder(pretrained):
    return VideoEmbedder(batch_size=8, resize="tf1")


@pytest.mark.slow
def test_reference_sanity_case_zeros_against_255(embedder, pretrained):
    """The reference example: 16 black vs 16 white videos, 15 frames at 64x64; published as about 131.

    Every video in a set is identical, so both covariances vanish and FVD is the squared distance between
    the logits of a -1 clip and a +1 clip, which the plain network computes independently here.
    """
    zeros = np.zeros((16, 15, 64, 64, 3), np.uint8)
    whites = np.full((16, 15, 64, 64, 3), 255, np.uint8)
    value = fvd(zeros, whites, embedder)
    plain = build_model(pretrained)
    with torch.inference_mode():
        black, white = plain(torch.full((2, 3, 15, 224, 224), -1.0).index_fill_(0, torch.tensor([1]), 1.0))
    assert value == pytest.approx(float(((black - white) ** 2).sum()), rel=1e-4)
    assert 125 < value < 140  # 133.9 here; see README for the comparison with 131


def test_identical_sets_give_zero(embedder):
    videos = np.random.default_rng(3).integers(0, 256, (4, 9, 32, 32, 3), dtype=np.uint8)
    assert abs(fvd(videos, videos, embedder)) < 1e-6


@pytest.mark.parametrize(("videos", "message"), [
    (np.zeros((4, 9, 32, 32), np.uint8), r"\(N, T, H, W, 3\)"),
    (np.zeros((4, 5, 32, 32, 3), np.uint8), "at least 9"),
    (np.zeros((2, 9, 8, 8, 3), np.complex64), "dtype complex64"),
    (np.zeros((2, 9, 8, 8, 3), bool), "dtype bool"),
    (np.full((2, 9, 8, 8, 3), -3, np.int16), r"integer values span \[-3, -3\]"),
    (np.full((2, 9, 8, 8, 3), 300.0, np.float32), r"outside the stated range \[0, 255\]"),
    (np.full((2, 9, 8, 8, 3), np.nan, np.float32), "NaN or infinite"),
    (np.zeros((0, 9, 8, 8, 3), np.uint8), "holds no pixels"),
    (np.zeros((2, 9, 0, 8, 3), np.uint8), "holds no pixels"),
    (np.array([[[[["a", "b", "c"]]]]]), "dtype <U1"),
])
def test_videos_that_would_give_a_silently_wrong_number_are_refused(embedder, videos, message):
    with pytest.raises(I3DError, match=message):
        embedder.embed(videos)


def _sets(tmp_path, real_frames=20, fake_frames=16, count=4):
    rng = np.random.default_rng(5)
    np.save(tmp_path / "real.npy", rng.integers(0, 256, (count, real_frames, 24, 32, 3), dtype=np.uint8))
    np.save(tmp_path / "fake.npy", rng.integers(0, 160, (count, fake_frames, 24, 32, 3), dtype=np.uint8))
    return tmp_path / "real.npy", tmp_path / "fake.npy"


def test_streaming_metric_equals_the_batch_computation(tmp_path, pretrained):
    real, fake = _sets(tmp_path, real_frames=16)
    report = compute_fvd(real, fake, "stylegan-v-16f", kvd=False)
    metric = FrechetVideoDistance("stylegan-v-16f", batch_size=3)
    videos_real, videos_fake = np.load(real), np.load(fake)
    for start in range(0, 4, 3):
        metric.update(torch.from_numpy(videos_real[start : start + 3]), real=True)
        metric.update(videos_fake[start : start + 3], real=False)
    # the same sums added in another order; scipy's sqrtm of this singular product (4 videos, 400-d) amplifies
    # the rounding to ~1e-7
    assert metric.compute() == pytest.approx(report.fvd, rel=1e-6)
    assert metric.real.outer.nbytes == 400 * 400 * 8  # running sums only
    metric.reset()
    with pytest.raises(I3DError, match="needs at least 2"):
        metric.compute()


@pytest.mark.slow
def test_two_processes_under_torchrun_give_the_single_process_number(tmp_path, pretrained):
    real, fake = _sets(tmp_path, real_frames=16, count=5)
    single = FrechetVideoDistance("google-research", batch_size=2)  # TF-GAN's square root: stable when singular
    single.update(np.load(real), real=True)
    single.update(np.load(fake), real=False)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    script = os.path.join(os.path.dirname(__file__), "fvd_distributed.py")
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           "29523", script, str(real), str(fake), str(tmp_path / "value.txt")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert float((tmp_path / "value.txt").read_text()) == pytest.approx(single.compute(), rel=1e-6)


def test_cli_report_states_the_protocol_and_reuses_saved_statistics(tmp_path, capsys, pretrained, monkeypatch):
    real, fake = _sets(tmp_path)
    report_path, stats = tmp_path / "out" / "report.json", tmp_path / "real.stats.npz"
    args = ["fvd", str(real), str(fake), "--videos", "4", "--seed", "3", "-o", str(report_path), "--save-stats",
            str(stats), "--quiet"]
    assert main(args) == 0
    report = json.loads(report_path.read_text())
    assert report["protocol"]["name"] == "stylegan-v-16f" and report["protocol"]["max_videos"] == 4
    assert report["protocol"]["covariance"] == "n" and report["seed"] == 3
    assert report["compute"] == {"device": "cpu", "tf32_allowed": False}
    assert report["real"]["clips_used"] == 4 and report["fake"]["videos_found"] == 4
    assert len(report["weights"]["sha256"]) == 64 and report["weights"]["source_sha256"].startswith("2e8e4b79")
    assert report["kvd"] is not None and report["kvd_subset_size"] == 4 and "universome/stylegan-v" in \
        report["protocol"]["source"]
    assert any("singular" in w for w in report["warnings"])
    assert main(["fvd", str(stats), str(fake), "--videos", "4", "--seed", "3", "-o", str(report_path), "--quiet"]) == 0
    assert json.loads(report_path.read_text())["fvd"] == pytest.approx(report["fvd"], rel=1e-9)
    capsys.readouterr()
    assert main(["fvd", str(stats), str(fake), "--videos", "4", "--seed", "4", "--quiet"]) == 2
    assert "statistics of another protocol (differs in seed)" in capsys.readouterr().err
    assert report["weights"]["precision"] == "fp32" and report["weights"]["runtime"] in ("fused", "openvino")
    import i3d.devices

    monkeypatch.setattr(i3d.devices, "cpu_flags", lambda: {"avx512_bf16"})  # any CPU: the refusal is the point
    assert main(["fvd", str(stats), str(fake), "--videos", "4", "--seed", "3", "--precision", "bf16", "--runtime",
                 "fused", "--quiet"]) == 2
    assert "statistics computed in fp32, not bf16" in capsys.readouterr().err


def test_runs_report_mean_and_spread(tmp_path, capsys, pretrained):
    real, fake = _sets(tmp_path, real_frames=24)
    assert main(["fvd", str(real), str(fake), "--runs", "2", "--no-kvd", "--quiet", "-o",
                 str(tmp_path / "r.json")]) == 0
    report = json.loads((tmp_path / "r.json").read_text())
    assert len(report["runs"]) == 2 and report["runs"][0] != report["runs"][1]
    assert report["fvd"] == pytest.approx(np.mean(report["runs"])) and report["fvd_std"] > 0
    assert "+- " in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--frames", "-5"], "--frames must be at least 1, not -5"),
    (["--videos", "0"], "--videos must be at least 2 (a covariance needs two), not 0"),
    (["--batch-size", "0"], "--batch-size: must be at least 1"),
    (["--range", "1,0"], "LOW must be below HIGH"),
])
def test_bad_options_are_one_line(tmp_path, capsys, args, message):
    assert main(["fvd", str(tmp_path / "a.npy"), str(tmp_path / "b.npy"), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_sets_are_one_clear_error(tmp_path, capsys, pretrained):
    real, fake = _sets(tmp_path, real_frames=10)
    np.savez(tmp_path / "empty.npz")
    (tmp_path / "corrupt.stats.npz").write_bytes(b"not a zip")
    (tmp_path / "empty_folder").mkdir()
    cases = [
        ([str(tmp_path / "empty.npz"), str(fake)], "an empty .npz"),
        ([str(tmp_path / "corrupt.stats.npz"), str(fake)], "not a statistics file"),
        ([str(tmp_path / "empty_folder"), str(fake)], "holds no videos"),
        ([str(real), str(fake)], "0 clip(s) to compare; FVD needs at least 2 per set (4 videos shorter"),
        ([str(fake), str(real), "--protocol", "google-research", "--frames", "16"], "10 frames, the protocol takes 16"),
        ([str(real), str(fake), "-o", str(tmp_path)], "is a folder"),
    ]
    for args, message in cases:
        assert main(["fvd", *args, "--quiet"]) == 2, args
        err = capsys.readouterr().err
        assert err.startswith("i3d: error: ") and message in err and err.count("\n") == 1, err


def test_a_folder_of_videos_and_of_frame_folders_give_the_same_clips(tmp_path):
    from conftest import numbered_frames

    for v in range(3):
        frames = numbered_frames(20, 32, 32)
        write_video(tmp_path / "videos" / f"v{v}.mp4", frames, 25) if (tmp_path / "videos").mkdir(
            exist_ok=True) is None else None
        (tmp_path / "frames" / f"v{v}").mkdir(parents=True)
        for i, image in enumerate(frames):
            cv2.imwrite(str(tmp_path / "frames" / f"v{v}" / f"{i:03d}.png"), image)
    protocol = get_protocol("stylegan-v-16f", max_videos=2, seed=1)
    from_videos = np.stack([c for _, c in iter_clips(tmp_path / "videos", protocol, real=True)])
    from_frames = np.stack([c for _, c in iter_clips(tmp_path / "frames", protocol, real=True)])
    assert from_videos.shape == from_frames.shape == (2, 16, 32, 32, 3)
    assert np.abs(from_videos.astype(int) - from_frames.astype(int)).max() <= 3  # x264 at crf 0, yuv420p


def test_videos_of_different_sizes_are_resized_each_and_reported(tmp_path, pretrained):
    rng = np.random.default_rng(6)
    for name, (h, w) in {"a": (24, 32), "b": (40, 30), "c": (24, 32)}.items():
        write_video(tmp_path / "fake" / f"{name}.mp4", rng.integers(0, 256, (16, h, w, 3), np.uint8), 25) if (
            tmp_path / "fake").mkdir(exist_ok=True) is None else None
    real, _ = _sets(tmp_path, real_frames=16, count=3)
    report = compute_fvd(real, tmp_path / "fake", "stylegan-v-16f", kvd=False)
    assert report.fake["frame_sizes"] == ["30x40", "32x24"]
    assert any("videos of 2 frame sizes" in w for w in report.warnings)


def test_compute_fvd_given_arrays_points_to_the_in_memory_api():
    from i3d.fvd import compute_fvd

    videos = np.zeros((2, 16, 32, 32, 3), np.uint8)
    with pytest.raises(I3DError, match=r"takes paths .* not ndarray; for videos in memory use i3d.fvd.fvd"):
        compute_fvd(videos, videos)


@pytest.mark.parametrize(("make_fake", "message"), [
    (lambda rng: rng.integers(0, 255, (1, 16, 32, 32, 3), dtype=np.uint8), "1 video; FVD needs at least 2"),
    (lambda rng: np.full((3, 16, 32, 32, 3), np.nan, np.float32), "contains NaN or infinite values"),
    (lambda rng: np.zeros((3, 16, 32, 32, 3), bool), "dtype bool"),
    (lambda rng: np.zeros((3, 16, 0, 32, 3), np.uint8), "holds no pixels"),
])
def test_both_sets_are_checked_before_either_is_embedded(tmp_path, make_fake, message):
    from i3d.fvd import VideoEmbedder, compute_fvd
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.store import LoadedWeights

    rng = np.random.default_rng(0)
    real, fake = tmp_path / "real.npy", tmp_path / "fake.npy"
    np.save(real, rng.integers(0, 255, (3, 16, 32, 32, 3), dtype=np.uint8))
    np.save(fake, make_fake(rng))
    torch.manual_seed(0)
    weights = LoadedWeights(InceptionI3d().state_dict(), [str(i) for i in range(400)], "rgb", {"name": "random"})
    embedder = VideoEmbedder(weights, "cpu")
    embedded = []
    embedder.embed = lambda *args, **kwargs: embedded.append(args) or pytest.fail("embedded before the check")
    with pytest.raises(I3DError, match=message):
        compute_fvd(real, fake, "stylegan-v-16f", embedder)
    assert embedded == []


def test_names_sharing_a_file_are_counted_and_reported_and_the_bar_knows_its_total(tmp_path):
    """A folder whose names link to one file: every name is a video of the set (as folder-reading FVD code
    counts it), the report says how many share a file; ``total`` is told the clips before any is embedded."""
    from i3d.fvd import VideoEmbedder, compute_fvd
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.store import LoadedWeights

    rng = np.random.default_rng(7)
    (tmp_path / "store").mkdir()
    (tmp_path / "fake").mkdir()
    for i in range(2):
        write_video(tmp_path / "store" / f"v{i}.mp4", rng.integers(0, 256, (16, 24, 32, 3), np.uint8), 25)
    for name, target in (("a.mp4", "v0.mp4"), ("b.mp4", "v0.mp4"), ("c.mp4", "v1.mp4")):
        (tmp_path / "fake" / name).symlink_to(tmp_path / "store" / target)
    real, _ = _sets(tmp_path, real_frames=16, count=3)
    torch.manual_seed(0)
    weights = LoadedWeights(InceptionI3d().state_dict(), [str(i) for i in range(400)], "rgb", {"name": "random"})
    events = []
    report = compute_fvd(real, tmp_path / "fake", "stylegan-v-16f", VideoEmbedder(weights, "cpu", batch_size=2),
                         runs=2, kvd=False, progress=lambda n: events.append(("clips", n)),
                         total=lambda n: events.append(("total", n)))
    assert events[0] == ("total", 3 + 2 * 3) and sum(n for kind, n in events if kind == "clips") == 9
    assert report.fake["clips_used"] == 3 and report.fake["names_sharing_a_file"] == 1
    assert report.fake["shared_examples"] == [f"{tmp_path / 'fake'}/b.mp4"]
    assert any("1 name leads to a file another name of the set leads to" in w for w in report.warnings)
