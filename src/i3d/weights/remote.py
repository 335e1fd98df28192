"""Published checkpoints as files at fixed commits of public repositories, downloaded and verified.

Each file is pinned by its URL at a commit and its git blob SHA-1 (``sha1("blob <size>\\0" + content)``,
the hash the repository's tree records), so a download is checked against the publisher's own record.
Downloads stream into ``<cache>/downloads/<sha1>.part`` with a progress bar and resume after an
interruption (HTTP ``Range``); a finished file whose hash differs is deleted and reported with both
hashes. ``I3D_WEIGHTS_URL`` or ``--mirror`` points at a mirror (a URL or a local folder) that holds the
same files at the same repository-relative paths.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from i3d.download import cache_dir
from i3d.errors import I3DError

MIRROR_VARIABLE = "I3D_WEIGHTS_URL"
CHUNK = 1 << 20


@dataclass(frozen=True)
class RemoteFile:
    repository: str  # owner/name on GitHub ("" for a file published outside a repository)
    commit: str
    path: str  # inside the repository, or under ``host``
    blob_sha1: str | None
    size: int | None = None  # bytes, where known
    host: str | None = None  # base URL of a file published outside a repository (``path`` is under it)
    sha256_prefix: str | None = None  # its pin: the sha256 prefix its publisher put in the file name

    @property
    def url(self) -> str:
        if self.host is not None:
            return f"{self.host.rstrip('/')}/{self.path}"
        return f"https://raw.githubusercontent.com/{self.repository}/{self.commit}/{self.path}"

    @property
    def pin(self) -> str:
        return f"git blob {self.blob_sha1[:12]}" if self.blob_sha1 else f"sha256 {self.sha256_prefix}..."

    def cache_name(self) -> str:
        return self.blob_sha1 or f"sha256-{self.sha256_prefix}-{self.name}"

    def mismatch(self, path: Path) -> str | None:
        """Why ``path`` is not this file (its hash against the pin), or None when it is."""
        if self.blob_sha1:
            actual = git_blob_sha1(path)
            return None if actual == self.blob_sha1 else (f"git blob SHA-1 {actual} differs from the pinned "
                                                          f"{self.blob_sha1} ({self.repository}@{self.commit[:12]}:"
                                                          f"{self.path})")
        actual = sha256_file(path)
        return None if actual.startswith(self.sha256_prefix) else (f"sha256 {actual} does not start with the "
                                                                   f"published {self.sha256_prefix}")

    @property
    def name(self) -> str:
        return self.path.rsplit("/", 1)[-1]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def git_blob_sha1(path: Path) -> str:
    digest = hashlib.sha1(f"blob {path.stat().st_size}\0".encode())
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def source_url(file: RemoteFile, mirror: str | None = None) -> str:
    """Where to fetch ``file`` from: the mirror (argument, then $I3D_WEIGHTS_URL), else its pinned URL."""
    mirror = mirror or os.environ.get(MIRROR_VARIABLE)
    if not mirror:
        return file.url
    if "://" not in mirror:  # a local folder
        return Path(mirror).resolve().joinpath(file.path).as_uri()
    return f"{mirror.rstrip('/')}/{file.path}"


def _progress(total: int | None, done: int, name: str, quiet: bool):
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
                disable=quiet, file=sys.stderr, delay=0.5)


def download(file: RemoteFile, mirror: str | None = None, quiet: bool = False, timeout: float = 60.0) -> Path:
    """The verified file in the download cache, fetched (or resumed) if needed."""
    import http.client  # here, not at the top: every command's parser reads the registry, few download
    import urllib.error
    import urllib.request

    folder = cache_dir() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / file.cache_name()
    if final.is_file() and file.mismatch(final) is None:
        return final
    part = folder / f"{file.cache_name()}.part"
    url = source_url(file, mirror)
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status = getattr(response, "status", 200)
            if have and status != 206:  # the server ignored the range: start again
                have = 0
            length = response.headers.get("Content-Length")
            total = (int(length) + have) if length is not None else None
            with open(part, "ab" if have else "wb") as out, _progress(total, have, file.name, quiet) as bar:
                while block := response.read(CHUNK):
                    out.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size < total:
                raise ConnectionError(f"the connection closed after {part.stat().st_size} of {total} bytes")
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # asked past the end: the part is complete, or wrong; the hash decides
            pass
        else:
            raise I3DError(f"{url}: the server answered {error.code} {error.reason}; {_mirror_hint()}") from None
    except (urllib.error.URLError, OSError, TimeoutError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", None) or error
        kept = f" ({part.stat().st_size} bytes kept; run the command again to resume)" if part.is_file() else ""
        raise I3DError(f"{url}: could not be fetched ({reason}){kept}; {_mirror_hint()}") from None
    wrong = file.mismatch(part)
    if wrong is not None:
        part.unlink()
        raise I3DError(f"{url}: {wrong}; the download was deleted")
    os.replace(part, final)
    return final


def _mirror_hint() -> str:
    return (f"to fetch from a mirror or a local folder holding the same files, set {MIRROR_VARIABLE} or "
            "pass --mirror URL_OR_FOLDER")


def fetch_files(files: tuple[RemoteFile, ...], target: Path, mirror: str | None = None, quiet: bool = False) -> None:
    """Download (or take from the cache) and verify every file, then place a copy in ``target`` by name."""
    for file in files:
        shutil.copyfile(download(file, mirror, quiet), target / file.name)
