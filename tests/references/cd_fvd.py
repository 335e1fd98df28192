"""Writes tests/data/cd_fvd.json: FVD of tests/references/video_sets.py's two sets as cd-fvd 0.1.1's own code
computes it in its I3D mode, with this project's default weights written in its network's layout
(``ckpt_path``). Run it in a throwaway environment holding cd-fvd's unpacked sdist and einops, never in the
suite (benchmarks/bench_fvd_peers.py explains the torchvision stand-in):

    PYTHONPATH=tests:/path/to/cd-fvd-0.1.1:/path/to/einops .venv/bin/python tests/references/cd_fvd.py
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from bench_fvd_peers import cd_fvd_class  # noqa: E402

from i3d.factory import resolve_weights  # noqa: E402
from i3d.weights.torch_port import port_names  # noqa: E402
from references.video_sets import video_sets  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "data" / "cd_fvd.json"


def main() -> None:
    real, fake = video_sets()
    with tempfile.TemporaryDirectory() as tmp:
        checkpoint = Path(tmp) / "i3d_pretrained_400.pt"
        torch.save(port_names(resolve_weights().state_dict), checkpoint)
        value = float(cd_fvd_class()("i3d", ckpt_path=str(checkpoint), device="cpu").compute_fvd(real, fake))
    record = {"source": f"cd-fvd 0.1.1 (PyPI sdist), cdfvd.fvd.cdfvd('i3d', ckpt_path=...).compute_fvd, torch "
                        f"{torch.__version__}, the default weights in its layout",
              "videos": "tests/references/video_sets.py video_sets()", "fvd": value}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(record)


if __name__ == "__main__":
    main()
