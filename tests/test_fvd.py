import json

import numpy as np
import pytest
import torch

from i3d.cli.main import main
from i3d.errors import I3DError
from i3d.factory import build_model
from i3d.fvd import (
    GaussianStats,
    VideoEmbedder,
    frechet_distance,
    fvd,
    fvd_from_stats,
    fvd_preprocess,
    tf1_bilinear_matrix,
)


def test_tf1_bilinear_samples_at_i_times_scale_without_half_pixel_shift():
    # 2 -> 4: output i samples input at i * 2 / 4 = 0, 0.5, 1.0, 1.5 (clamped): [0, 5, 10, 10]
    weights = tf1_bilinear_matrix(2, 4)
    assert (weights @ torch.tensor([0.0, 10.0], dtype=torch.float64)).tolist() == [0, 5, 10, 10]
    # 4 -> 2 (downsampling): samples at 0 and 2, no averaging
    assert (tf1_bilinear_matrix(4, 2) @ torch.arange(4.0, dtype=torch.float64)).tolist() == [0, 2]


def test_preprocess_maps_0_255_to_unit_range():
    videos = torch.stack([torch.zeros(2, 8, 6, 3), torch.full((2, 8, 6, 3), 255.0)])
    out = fvd_preprocess(videos)
    assert out.shape == (2, 3, 2, 224, 224)
    assert torch.all(out[0] == -1) and torch.allclose(out[1], torch.ones(()))


def test_frechet_distance_of_diagonal_gaussians_is_the_closed_form():
    a, b = np.array([1.0, 4.0, 0.0]), np.array([9.0, 1.0, 2.0])
    mu_a, mu_b = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    expected = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu_a, np.diag(a), mu_b, np.diag(b)) == pytest.approx(expected, rel=1e-12)


def test_frechet_distance_is_symmetric_and_zero_on_itself():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(50, 6)), rng.normal(1, 2, size=(40, 6)) @ rng.normal(size=(6, 6))
    sx, sy = GaussianStats(), GaussianStats()
    sx.add(x)
    sy.add(y)
    assert fvd_from_stats(sx, sy) == pytest.approx(fvd_from_stats(sy, sx), rel=1e-9)
    assert abs(fvd_from_stats(sx, sx)) < 1e-9


def test_near_singular_covariances_stay_real_and_non_negative():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(5, 20))  # 5 samples in 20 dimensions: rank-4 covariances
    sx, sy = GaussianStats(), GaussianStats()
    sx.add(x)
    sy.add(x + 1e-9)
    assert 0 <= fvd_from_stats(sx, sy) < 1e-6


def test_batched_statistics_equal_statistics_at_once():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(37, 8))
    once, batched = GaussianStats(), GaussianStats()
    once.add(x)
    for start in range(0, 37, 10):
        batched.add(x[start : start + 10])
    np.testing.assert_allclose(batched.mean, once.mean, rtol=1e-13)
    np.testing.assert_allclose(batched.covariance, once.covariance, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(once.covariance, np.cov(x, rowvar=False), rtol=1e-12, atol=1e-14)


def test_a_single_video_has_no_covariance():
    stats = GaussianStats()
    stats.add(np.zeros((1, 4)))
    with pytest.raises(I3DError, match="at least 2"):
        _ = stats.covariance


@pytest.fixture(scope="module")
def embedder(pretrained):
    return VideoEmbedder(batch_size=8)


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
    rng = np.random.default_rng(3)
    videos = rng.integers(0, 256, (4, 9, 32, 32, 3), dtype=np.uint8)
    assert abs(fvd(videos, videos, embedder)) < 1e-6


@pytest.mark.parametrize(
    ("shape", "message"),
    [((4, 9, 32, 32), r"\(N, T, H, W, 3\)"), ((4, 5, 32, 32, 3), "at least 9")],
)
def test_bad_video_arrays_are_refused(embedder, shape, message):
    with pytest.raises(I3DError, match=message):
        embedder.embed(np.zeros(shape, np.uint8))


def test_cli_on_arrays_writes_a_reproducible_report(tmp_path, capsys, pretrained):
    rng = np.random.default_rng(4)
    np.save(tmp_path / "real.npy", rng.integers(0, 256, (3, 10, 24, 24, 3), dtype=np.uint8))
    np.save(tmp_path / "fake.npy", rng.integers(0, 128, (3, 12, 24, 24, 3), dtype=np.uint8))
    report = tmp_path / "report.json"
    args = ["fvd", str(tmp_path / "real.npy"), str(tmp_path / "fake.npy"), "--frames", "9", "-o", str(report),
            "--save-stats", str(tmp_path / "real.stats.npz")]
    assert main(args) == 0
    first = json.loads(report.read_text())
    assert first["protocol"]["frames"] == 9 and first["real_count"] == 3 and first["fvd"] > 0
    assert first["weights_sha256"].startswith("2e8e4b79") and "torch" in first["software"]
    assert main(["fvd", str(tmp_path / "real.stats.npz"), str(tmp_path / "fake.npy"), "--frames", "9",
                 "-o", str(report)]) == 0
    assert json.loads(report.read_text())["fvd"] == pytest.approx(first["fvd"], rel=1e-9)
    assert "FVD: " in capsys.readouterr().out


def test_cli_refuses_mismatched_shapes_and_short_videos(tmp_path, capsys, pretrained):
    np.save(tmp_path / "flat.npy", np.zeros((3, 10, 24, 24), np.uint8))
    np.save(tmp_path / "short.npy", np.zeros((3, 10, 24, 24, 3), np.uint8))
    assert main(["fvd", str(tmp_path / "flat.npy"), str(tmp_path / "short.npy")]) == 2
    assert "expected (N, T, H, W, 3)" in capsys.readouterr().err
    assert main(["fvd", str(tmp_path / "short.npy"), str(tmp_path / "short.npy")]) == 2  # 10 frames, protocol 16
    assert "the protocol takes 16" in capsys.readouterr().err


def test_folders_of_videos_and_of_frame_folders_give_the_same_clips(tmp_path):
    import cv2

    from conftest import numbered_frames, write_video
    from i3d.fvd import Protocol, iter_clip_batches

    (tmp_path / "videos").mkdir()
    (tmp_path / "frames").mkdir()
    for v in range(3):
        frames = numbered_frames(20, 32, 32)
        write_video(tmp_path / "videos" / f"v{v}.mp4", frames, 25)
        (tmp_path / "frames" / f"v{v}").mkdir()
        for i, image in enumerate(frames):
            cv2.imwrite(str(tmp_path / "frames" / f"v{v}" / f"{i:03d}.png"), image)
    protocol = Protocol(frames=16, max_clips=2)
    from_videos = np.concatenate(list(iter_clip_batches(tmp_path / "videos", protocol, batch_size=1)))
    from_frames = np.concatenate(list(iter_clip_batches(tmp_path / "frames", protocol, batch_size=1)))
    assert from_videos.shape == from_frames.shape == (2, 16, 32, 32, 3)
    assert np.abs(from_videos.astype(int) - from_frames.astype(int)).max() <= 3  # x264 at crf 0, yuv420p
