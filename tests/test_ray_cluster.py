"""The Ray engine on a real two-node cluster (tests/ray_cluster_run.py), on loopback only: a node lost mid-run,
workers that cannot start, and an address that does not answer each end in every output or in one line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import numbered_frames, write_video
from i3d.cli.main import main

ray = pytest.importorskip("ray")
HELPER = Path(__file__).with_name("ray_cluster_run.py")


def _isolated(command: list[str]) -> list[str]:
    """The command in a private network namespace whose only interface is loopback, where this machine allows
    one (root, or user namespaces); else as it is (Ray's nodes then still talk over this machine only)."""
    probe = subprocess.run(["unshare", "-rn", "true"], capture_output=True) if _has("unshare") else None
    if probe is None or probe.returncode != 0:
        return command
    flags = "-n" if os.geteuid() == 0 else "-rn"
    return ["unshare", flags, "sh", "-c", 'ip link set lo up 2>/dev/null; exec "$@"', "sh", *command]


def _has(program: str) -> bool:
    from shutil import which

    return which(program) is not None


def _error_lines(stderr: str) -> list[str]:
    assert "Traceback" not in stderr
    return [line for line in stderr.splitlines() if line.startswith("i3d: error:")]


@pytest.fixture(scope="module")
def cluster_runs(tmp_path_factory):
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.store import save_weights

    work = tmp_path_factory.mktemp("cluster")
    (work / "videos").mkdir()
    for i in range(10):
        write_video(work / "videos" / f"v{i}.mp4", numbered_frames(20 + i, 48, 64), 25)
    torch.manual_seed(0)
    save_weights(work / "weights.safetensors", InceptionI3d(3, 3).state_dict(), ["a", "b", "c"], "rgb")
    done = subprocess.run(_isolated([sys.executable, str(HELPER), str(work)]), capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return work, json.loads(done.stdout)


@pytest.mark.slow
def test_a_node_lost_mid_run_has_its_videos_retried_and_every_output_matches_the_local_engine(cluster_runs):
    from i3d.features import ExtractionConfig, WindowSpec, extract_features

    work, runs = cluster_runs
    lost = runs["lost_node"]
    assert lost["code"] == 0, lost["stderr"][-2000:]
    assert lost["rows_when_removed"] < 10  # the node went while videos were still being extracted
    assert "note: a Ray worker was lost (The actor died because its node has died" in lost["stderr"]
    assert lost["stdout"].startswith("10 videos: 10 done (0 from an earlier run), 0 failed")

    config = ExtractionConfig(WindowSpec(8, 8), size=224, crop_size=224, weights=str(work / "weights.safetensors"),
                              runtime="fused")
    local = extract_features([work / "videos"], work / "local", config)
    assert local.failed == 0
    def rows(folder):
        return sorted((row["input"], row["output"], row["frames"], row["windows"]) for row in
                      map(json.loads, (folder / "manifest.jsonl").read_text().splitlines()[1:]))

    assert rows(work / "lost_node") == rows(work / "local")
    for i in range(10):
        with np.load(work / "local" / f"v{i}.npz") as a, np.load(work / "lost_node" / f"v{i}.npz") as b:
            assert a.files == b.files
            for key in a.files:
                np.testing.assert_allclose(a[key], b[key], atol=1e-4) if a[key].dtype.kind == "f" else \
                    np.testing.assert_array_equal(a[key], b[key])


@pytest.mark.slow
@pytest.mark.parametrize("scenario, says", [
    ("busy", "no Ray worker started within 5 s: each asks for 1 CPU and the cluster has 0 of 1 free"),
    ("no_i3d", "no Ray worker could start (ModuleNotFoundError: No module named 'i3d."),
    ("paths", "no Ray worker could start (the videos are not at the driver's paths on "),
])
def test_workers_that_cannot_start_end_the_run_in_one_line_without_waiting_out_the_timeout(cluster_runs, scenario,
                                                                                             says):
    run = cluster_runs[1][scenario]
    if "skipped" in run:
        pytest.skip(run["skipped"])
    assert run["code"] == 2
    [line] = _error_lines(run["stderr"])
    assert says in line and line.endswith("10 videos not done: the manifest keeps every finished one, and "
                                          "rerunning the command does the rest")
    assert run["seconds"] < 60  # the busy cluster's 5 s, or at once (the others allow 120 s)


@pytest.mark.slow
def test_a_run_that_loses_every_worker_stops_in_one_line_and_its_rerun_does_the_rest(cluster_runs):
    lost, rerun = cluster_runs[1]["all_lost"], cluster_runs[1]["rerun"]
    assert lost["code"] == 2
    [line] = _error_lines(lost["stderr"])
    kept = lost["rows_kept"]
    assert 2 <= kept < 10
    assert line.startswith("i3d: error: every Ray worker was lost and none restarted within 5 s: each asks for 1 "
                           "CPU and the cluster has 0 of 1 free")
    assert line.endswith(f"{10 - kept} videos not done: the manifest keeps every finished one, and rerunning the "
                         "command does the rest")
    assert rerun["code"] == 0, rerun["stderr"][-2000:]
    assert rerun["stdout"].startswith(f"10 videos: 10 done ({kept} from an earlier run), 0 failed")


def test_a_ray_address_that_does_not_answer_is_one_line(tmp_path, capsys):
    video = write_video(tmp_path / "v.mp4", numbered_frames(8, 48, 64), 25)
    from i3d.networks.inception import InceptionI3d
    from i3d.weights.store import save_weights

    save_weights(tmp_path / "w.safetensors", InceptionI3d(3, 3).state_dict(), ["a", "b", "c"], "rgb")
    common = [str(video), "-o", str(tmp_path / "out"), "--weights", str(tmp_path / "w.safetensors"), "--quiet",
              "--engine", "ray", "--ray-address"]
    assert main(["features", *common, "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.strip() == ("i3d: error: --ray-address 127.0.0.1:1: the Ray cluster does not "
                                               "answer (connection refused within 5 s)")
    assert main(["features", *common, "head-node"]) == 2
    assert "give HOST:PORT, ray://HOST:PORT or auto" in capsys.readouterr().err
