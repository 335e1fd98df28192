"""Fine-tune the pretrained RGB I3D to tell the three sample videos apart, in minutes on a CPU.

    .venv/bin/python examples/finetune_samples.py [OUTDIR] [--override VALUE ...]

Each sample video is cut into 1-second spans: the first 70% of every video trains, the rest validates,
so no validation frame was seen in training. Writes OUTDIR/train.csv, val.csv and config.yaml, then runs
``i3d train OUTDIR/config.yaml`` (extra arguments are passed on, e.g. ``--steps 10``).
"""

from __future__ import annotations

import sys
from pathlib import Path

from i3d.cli.main import main
from i3d.video.samples import fetch_samples

CLASSES = {"bikes.mp4": "cycling street", "bigbuckbunny.mp4": "cartoon rabbit", "carphone_pristine.mp4": "phone call"}
DURATION_S = {"bikes.mp4": 10.0, "bigbuckbunny.mp4": 5.28, "carphone_pristine.mp4": 4.0}
SPAN_S = 1.0
CONFIG = """\
train: train.csv
val: val.csv
clip_frames: 16          # 0.64 s clips, cut at random inside each 1 s span
freeze_until: Mixed_5c   # train the new classifier only: the features stay Kinetics-400 ones
freeze_bn: true
dropout: 0.5
batch_size: 4
steps: 30
schedule: "0:0.05,20:0.01"
eval_every: 10
log_every: 5
checkpoint_every: 10
workers: 1
output: run
"""


def write_lists(outdir: Path) -> None:
    rows = {"train": [], "val": []}
    for path in fetch_samples():
        duration = DURATION_S[path.name]
        start = 0.0
        while start + SPAN_S <= duration + 1e-6:
            split = "train" if start + SPAN_S <= 0.7 * duration + 1e-6 else "val"
            rows[split].append(f"{path},{CLASSES[path.name]},{start:.2f},{start + SPAN_S:.2f}")
            start += SPAN_S
    for split, lines in rows.items():
        (outdir / f"{split}.csv").write_text("path,label,start_s,end_s\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    outdir = Path(sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else "runs/samples")
    extra = sys.argv[2:] if len(sys.argv) > 1 and not sys.argv[1].startswith("--") else sys.argv[1:]
    outdir.mkdir(parents=True, exist_ok=True)
    write_lists(outdir)
    (outdir / "config.yaml").write_text(CONFIG)
    sys.exit(main(["train", str(outdir / "config.yaml"), *extra]))
