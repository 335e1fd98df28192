"""The one list format of evaluate, train and features: CSV rows ``path[,label[,start_s,end_s]]``.

A header row (``path,label,...``), blank lines and ``#`` comments are allowed; a spreadsheet's UTF-8
byte-order mark is ignored; relative paths are relative to the list's folder. A span is seconds of the
video, both ends optional, the end after the start and neither negative. Every row is checked before any
work starts, and every error names the file and line.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from i3d.errors import I3DError

HEADER_NAMES = ("path", "video", "filename")


@dataclass(frozen=True)
class ListRow:
    path: Path
    label: str | None
    start_s: float | None = None
    end_s: float | None = None
    line: int = 0


def parse_span(cells: Sequence[str], where: str) -> tuple[float | None, float | None]:
    """``start_s,end_s`` cells (either may be empty) as seconds."""
    if not cells or not any(cells):
        return None, None
    try:
        start_s, end_s = (float(c) if c else None for c in cells)
    except ValueError:
        raise I3DError(f"{where}: start and end must be seconds, got {','.join(cells)!r}") from None
    for name, value in (("start", start_s), ("end", end_s)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise I3DError(f"{where}: {name} {value} is not a time in the video (seconds from 0)")
    if start_s is not None and end_s is not None and end_s <= start_s:
        raise I3DError(f"{where}: end {end_s} is not after start {start_s}")
    return start_s, end_s


def _read_text(path: Path, what: str) -> str:
    if not path.is_file():
        raise I3DError(f"{path}: no such {what}")
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as error:
        raise I3DError(f"{path}: not UTF-8 text (byte {error.start}); save the {what} as UTF-8") from None
    except OSError as error:
        raise I3DError(f"{path}: cannot read the {what} ({error.strerror or error})") from None


def _csv_rows(path: Path) -> list[tuple[int, list[str]]]:
    lines = _read_text(path, "list file").splitlines()
    try:
        return [(number, [cell.strip() for cell in row]) for number, row in enumerate(csv.reader(lines), start=1)]
    except csv.Error as error:
        raise I3DError(f"{path}: not a CSV list ({error})") from None


def read_list(path: Path, labelled: bool = True) -> list[ListRow]:
    """The rows of a list file; ``labelled=False`` reads only the first column (paths)."""
    rows = []
    for number, cells in _csv_rows(path):
        if not cells or not "".join(cells) or cells[0].startswith("#"):
            continue
        where = f"{path}:{number}"
        header = cells[0].lower() in HEADER_NAMES and (not labelled or [c.lower() for c in cells[1:2]] == ["label"])
        if not rows and header:
            continue
        if labelled and len(cells) not in (2, 4):
            raise I3DError(f"{where}: expected `path,label[,start_s,end_s]`, got {','.join(cells)!r}")
        if not cells[0]:
            raise I3DError(f"{where}: the path is empty")
        given = Path(cells[0])
        video = given if given.is_absolute() else path.parent / given
        label = cells[1] if labelled else None
        span = parse_span(cells[2:4], where) if labelled else (None, None)
        rows.append(ListRow(video, label, *span, line=number))
    if not rows:
        raise I3DError(f"{path}: lists no videos")
    return rows


def likely_cause(list_file: Path, unusable: Sequence[Path]) -> str:
    """Why a list's rows name no usable video, as far as the rows themselves tell: a header taken for data,
    paths relative to another folder, or files that are not videos."""
    first = unusable[0]
    if first.name.lower() in (*HEADER_NAMES, "id", "name", "file"):
        return f"its first row ({first.name!r}) looks like a header taken for data: name the columns path,label"
    if not any(path.exists() for path in unusable):
        return (f"none of these paths exists: relative paths are read from the list's folder ({list_file.parent}), "
                "so write them relative to it or absolute")
    return "the files exist but do not open as videos"


def class_index(label: str, classes: Sequence[str]) -> int | None:
    """A label's class: its exact name, the name ignoring case and ``_``/space, or its index."""
    if label in classes:
        return list(classes).index(label)
    folded = label.lower().replace("_", " ")
    for index, name in enumerate(classes):
        if name.lower().replace("_", " ") == folded:
            return index
    if label.isdigit() and int(label) < len(classes):
        return int(label)
    return None


def label_indices(path: Path, rows: Sequence[ListRow], classes: Sequence[str]) -> list[int]:
    """Each row's class index; every unknown label is named in one error."""
    indices, unknown = [], []
    for row in rows:
        index = class_index(row.label or "", classes)
        if index is None:
            unknown.append(f"{row.label!r} (line {row.line})")
        indices.append(index)
    if unknown:
        raise I3DError(f"{path}: labels not among the {len(classes)} classes: {', '.join(unknown[:5])}"
                       + (f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""))
    return indices


def read_classes_file(path: Path) -> list[str]:
    """Class names, one per line, in logit order."""
    names = [line.strip() for line in _read_text(path, "classes file").splitlines() if line.strip()]
    if not names:
        raise I3DError(f"{path}: lists no class names (one per line)")
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise I3DError(f"{path}: class {duplicate!r} is listed twice")
    return names
