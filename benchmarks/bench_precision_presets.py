"""What each precision costs each feature preset: feature cosine and max difference against fp32, per preset.

    .venv/bin/python benchmarks/bench_precision_presets.py [--seconds 4] [--video bikes.mp4]

Runs every feature preset whose weights are installed on the first SECONDS of a sample video, once per form
(PyTorch fp32, the reference; OpenVINO fp32; PyTorch bf16 and OpenVINO bf16 where this CPU has native bf16;
OpenVINO int8), through `i3d features` itself, and prints per preset and form: the smallest cosine similarity
of a window's features with the fp32 reference's, the max |difference|, the mean |feature| for scale, and the
seconds the run took. A form this machine cannot run is left out, with why.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from excerpt import excerpt

from i3d.devices import check_precision
from i3d.errors import I3DError
from i3d.factory import resolve_weights
from i3d.features.extract import extract_features
from i3d.features.presets import PRESETS, config_from_preset
from i3d.runtimes.openvino import openvino_available
from i3d.video.samples import sample_path

FORMS = [("fp32", "torch"), ("fp32", "openvino"), ("bf16", "torch"), ("bf16", "openvino"), ("int8", "openvino")]


def features_of(folder: Path) -> np.ndarray:
    found = sorted(p for p in folder.iterdir() if p.suffix in (".npz", ".npy"))
    data = np.load(found[0])
    return np.asarray(data["features"] if hasattr(data, "files") else data, np.float64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--video", default="bikes.mp4")
    args = parser.parse_args()
    usable = []
    for precision, runtime in FORMS:
        try:
            check_precision(precision, "cpu")
            if runtime == "openvino" and not openvino_available():
                raise I3DError("OpenVINO is not installed")
            usable.append((precision, runtime))
        except I3DError as error:
            print(f"left out: {precision} {runtime}: {error}")
    with tempfile.TemporaryDirectory() as tmp:
        video = excerpt(sample_path(args.video), args.seconds, Path(tmp) / args.video)
        print(f"{args.video}, first {args.seconds:g} s; reference: PyTorch fp32\n")
        print(f"{'preset':<20} {'form':<16} {'windows':>8} {'min cosine':>11} {'max |diff|':>11} {'mean |f|':>9} "
              f"{'seconds':>8}")
        for name in PRESETS:
            base = config_from_preset(name)
            try:
                for modality in base.modalities:
                    resolve_weights(base.weights if modality == "rgb" else base.flow_weights, modality)
            except I3DError as error:
                print(f"{name:<20} left out: {str(error)[:90]}")
                continue
            reference = None
            for precision, runtime in usable:
                out = Path(tmp) / f"{name}-{precision}-{runtime}"
                start = time.perf_counter()
                extract_features([video], out, config_from_preset(name, precision=precision, runtime=runtime,
                                                                  workers=0))
                elapsed = time.perf_counter() - start
                features = features_of(out).reshape(-1, features_of(out).shape[-1])
                if reference is None:
                    reference = features
                cosine = np.sum(features * reference, 1) / (np.linalg.norm(features, axis=1)
                                                             * np.linalg.norm(reference, axis=1))
                print(f"{name:<20} {precision + ' ' + runtime:<16} {len(features):>8} {cosine.min():>11.6f} "
                      f"{np.abs(features - reference).max():>11.2e} {np.abs(reference).mean():>9.3f} "
                      f"{elapsed:>8.1f}")


if __name__ == "__main__":
    main()
