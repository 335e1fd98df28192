"""A writer of TensorFlow tensor-bundle checkpoints (LevelDB-table index + raw data), for the converter tests.

Written from the format's description (table blocks with restart points, 5-byte block trailers, a
48-byte footer ending in the table magic; BundleEntryProto values), not from the reader under test.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

MAGIC = 0xDB4775248B80FB57


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def field(number: int, wire: int, payload: bytes) -> bytes:
    return varint(number << 3 | wire) + payload


def length_delimited(number: int, payload: bytes) -> bytes:
    return field(number, 2, varint(len(payload)) + payload)


def entry_proto(shape: tuple[int, ...], offset: int, size: int, dtype: int = 1) -> bytes:
    dims = b"".join(length_delimited(2, field(1, 0, varint(d))) for d in shape)
    proto = field(1, 0, varint(dtype)) + length_delimited(2, dims)
    if offset:
        proto += field(4, 0, varint(offset))
    return proto + field(5, 0, varint(size)) + field(6, 5, struct.pack("<I", 0))


def block(entries: list[tuple[bytes, bytes]], restart_interval: int = 4) -> bytes:
    """Prefix-compressed keys with a restart point every ``restart_interval`` entries."""
    out, restarts, previous = bytearray(), [], b""
    for i, (key, value) in enumerate(entries):
        shared = 0
        if i % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value)) + key[shared:] + value
        previous = key
    restarts = restarts or [0]
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def write_index(path: Path, entries: dict[str, bytes]) -> None:
    header = field(1, 0, varint(1)) + length_delimited(3, field(1, 0, varint(1)))  # num_shards 1, version
    items = [(b"", header)] + sorted((k.encode(), v) for k, v in entries.items())
    out = bytearray()

    def put(payload: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(payload))
        out.extend(payload + b"\x00" + b"\x00\x00\x00\x00")  # no compression, crc left 0
        return handle

    half = len(items) // 2  # two data blocks, so the index block has two entries
    handles = [(items[half - 1][0] + b"\x00", put(block(items[:half]))), (items[-1][0] + b"\x00",
                                                                           put(block(items[half:])))]
    metaindex = put(block([]))
    index = put(block(handles, restart_interval=1))
    footer = (metaindex + index).ljust(40, b"\x00") + struct.pack("<Q", MAGIC)
    path.write_bytes(bytes(out) + footer)


def write_checkpoint(prefix: Path, arrays: dict[str, np.ndarray]) -> None:
    """``prefix.index`` and ``prefix.data-00000-of-00001`` holding ``arrays`` (float32)."""
    data, entries = bytearray(), {}
    for name in sorted(arrays):
        raw = np.ascontiguousarray(arrays[name], dtype="<f4").tobytes()
        entries[name] = entry_proto(arrays[name].shape, len(data), len(raw))
        data += raw
    write_index(prefix.with_name(prefix.name + ".index"), entries)
    prefix.with_name(prefix.name + ".data-00000-of-00001").write_bytes(bytes(data))
