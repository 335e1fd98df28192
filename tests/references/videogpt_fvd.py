"""Writes tests/data/videogpt_fvd.json: FVD and KVD of two formula-made video sets as the VideoGPT family's own
code computes them (songweige/TATS@03bbce1d tats/fvd/), with this project's default weights renamed into that
code's layout. Run it in a throwaway environment that has TATS's two files and scikit-learn, never in the
suite (the tests keep its output as data, not TATS's code):

    PYTHONPATH=tests:/path/to/TATS:/path/to/sklearn .venv/bin/python tests/references/videogpt_fvd.py

Its float32 run is kept beside the same steps in float64 (the embeddings cast to float64 before the
distance), which is what the project's numbers are held to.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from tats.fvd.fvd import frechet_distance, get_logits, polynomial_mmd, preprocess
from tats.fvd.pytorch_i3d import InceptionI3d

from i3d.factory import resolve_weights
from i3d.weights.torch_port import port_names
from references.video_sets import video_sets

OUT = Path(__file__).resolve().parents[1] / "data" / "videogpt_fvd.json"


def tats_network() -> InceptionI3d:
    """TATS's network (BatchNorm eps 1e-5) holding the default weights: every tensor by its name here, the
    BatchNorm scales 1 as convert_tf_pretrained.py sets them (TF-Hub has none)."""
    network = InceptionI3d(400, in_channels=3)
    network.load_state_dict(port_names(resolve_weights().state_dict), strict=False)  # leaves the step counters
    return network.eval()


def main() -> None:
    real, fake = video_sets()
    network = tats_network()
    with torch.no_grad():
        real_logits = get_logits(network, preprocess(real, (224, 224)), torch.device("cpu"))
        fake_logits = get_logits(network, preprocess(fake, (224, 224)), torch.device("cpu"))
    record = {
        "source": "songweige/TATS@03bbce1d tats/fvd/fvd.py and pytorch_i3d.py, torch "
                  f"{torch.__version__}, the default weights (i3d-kinetics-400) renamed into its layout",
        "videos": {"count": 16, "frames": 16, "height": 72, "width": 96, "maker": "tests/references/videogpt_fvd.py"},
        "fvd_float32": float(frechet_distance(real_logits, fake_logits)),
        "fvd_float64": float(frechet_distance(real_logits.double(), fake_logits.double())),
        "kvd": float(polynomial_mmd(real_logits.double().numpy(), fake_logits.double().numpy())),
        "real_logits_mean": real_logits.double().mean(dim=0).tolist(),
    }
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print({k: v for k, v in record.items() if k != "real_logits_mean"})


if __name__ == "__main__":
    main()
