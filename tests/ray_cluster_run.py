"""Runs `i3d features --engine ray` against a two-node Ray cluster made here, and prints what happened.

The test writes the videos (work/videos) and the weights (work/weights.safetensors). Started by
tests/test_ray_cluster.py inside a private network namespace whose only interface is loopback
(so Ray's nodes can reach nothing else, and nothing else reaches them). One cluster serves every scenario in
turn: a worker node removed mid-run, a cluster whose CPUs are all held, a node where i3d cannot be imported,
the only worker's node removed with no CPU left for a successor (then the rerun), a driver whose videos the
workers cannot see. Prints one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

I3D = str(Path(sys.executable).with_name("i3d"))
SMALL = ["--size", "224", "--crop-size", "224", "--clip-len", "8", "--step", "8", "--quiet"]


def features_command(videos: Path, output: Path, address: str, *options: str) -> list[str]:
    return [I3D, "features", str(videos), "-o", str(output), "--engine", "ray", "--ray-address", address,
            "--weights", str(output.parent / "weights.safetensors"), *SMALL, *options]


def features(videos: Path, output: Path, address: str, *options: str) -> subprocess.Popen:
    return subprocess.Popen(features_command(videos, output, address, *options), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(process: subprocess.Popen, started: float) -> dict:
    out, err = process.communicate(timeout=300)
    return {"code": process.returncode, "stdout": out, "stderr": err, "seconds": time.monotonic() - started}


def manifest_rows(folder: Path) -> int:
    try:
        return max(0, len((folder / "manifest.jsonl").read_text().splitlines()) - 1)  # less the run's own line
    except FileNotFoundError:
        return 0


@ray.remote(num_cpus=1)
class Holder:
    """Holds a CPU, as another user's job would."""

    def ping(self) -> bool:
        return True


def main(work: Path) -> dict:
    videos, results = work / "videos", {}
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        worker_node = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        address = cluster.address

        # A node lost mid-run: its video goes to the other worker; every output is there at the end.
        started = time.monotonic()
        run = features(videos, work / "lost_node", address, "--ray-workers", "2")
        while manifest_rows(work / "lost_node") < 2 and run.poll() is None:
            time.sleep(0.05)
        rows_before = manifest_rows(work / "lost_node")
        cluster.remove_node(worker_node)
        results["lost_node"] = {**finish(run, started), "rows_when_removed": rows_before}

        ray.init(address=address, log_to_driver=False)
        holder = Holder.remote()
        ray.get(holder.ping.remote())

        # Every CPU held by other work: a bounded wait, then one line saying so.
        started = time.monotonic()
        results["busy"] = finish(features(videos, work / "busy", address, "--ray-start-timeout", "5"), started)

        # A node where i3d is not importable (an unrelated package shadows it there).
        shadow = work / "shadow" / "i3d"
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text("")
        bare_node = cluster.add_node(num_cpus=1, env_vars={"PYTHONPATH": str(shadow.parent)})
        cluster.wait_for_nodes()
        started = time.monotonic()
        results["no_i3d"] = finish(features(videos, work / "no_i3d", address, "--ray-workers", "1",
                                            "--ray-start-timeout", "120"), started)
        cluster.remove_node(bare_node)

        # The only worker's node lost, no CPU free for a successor: one line once the start timeout has passed,
        # the finished videos kept; the rerun, with a CPU free again, does the rest.
        last_node = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        started = time.monotonic()
        run = features(videos, work / "all_lost", address, "--ray-workers", "1", "--ray-start-timeout", "5")
        while manifest_rows(work / "all_lost") < 2 and run.poll() is None:
            time.sleep(0.05)
        cluster.remove_node(last_node)
        results["all_lost"] = {**finish(run, started), "rows_kept": manifest_rows(work / "all_lost")}
        ray.kill(holder)
        started = time.monotonic()
        results["rerun"] = finish(features(videos, work / "all_lost", address, "--ray-workers", "1"), started)

        # Videos the driver sees at a path the workers do not (a mount only the driver has).
        hidden = work / "driver_only"
        hidden.mkdir()
        started = time.monotonic()
        try:
            subprocess.run(["unshare", "-m", "true"], check=True, capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            results["paths"] = {"skipped": "no mount namespaces here"}
        else:
            command = features_command(hidden, work / "paths", address, "--ray-workers", "1",
                                       "--ray-start-timeout", "120")
            run = subprocess.Popen(["unshare", "-m", "sh", "-c", f'mount --bind "{videos}" "{hidden}" && exec "$@"',
                                    "sh", *command], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            results["paths"] = finish(run, started)
    finally:
        ray.shutdown()
        cluster.shutdown()
    return results


if __name__ == "__main__":
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    print(json.dumps(main(Path(sys.argv[1]))))
