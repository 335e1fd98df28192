"""DeepMind's TensorFlow checkpoints (``model.ckpt.index`` + ``model.ckpt.data-*``), read without TensorFlow.

The index is a LevelDB-format table mapping each variable name to a ``BundleEntryProto`` (dtype, shape,
shard, offset, size); the data files are the raw little-endian tensors. Both are read here with a few
lines of varint and block parsing. Variables live under ``RGB/inception_i3d/...`` or
``Flow/inception_i3d/...``; TF kernels are (T, H, W, in, out) and become PyTorch's (out, in, T, H, W).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from i3d.errors import I3DError
from i3d.networks.architecture import FIRST_CONV_WEIGHT

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48
BLOCK_TRAILER_SIZE = 5  # compression type byte + crc32c
DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 9: np.int64, 19: np.float16}  # TF DataType enum


@dataclass(frozen=True)
class TensorEntry:
    dtype: int
    shape: tuple[int, ...]
    shard: int
    offset: int
    size: int


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def protobuf_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message: varints as ints, length-delimited as bytes."""
    fields, pos = [], 0
    while pos < len(data):
        key, pos = read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(data, pos)
        elif wire == 2:
            length, pos = read_varint(data, pos)
            value, pos = data[pos : pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<I", data, pos)[0], pos + 4
        elif wire == 1:
            value, pos = struct.unpack_from("<Q", data, pos)[0], pos + 8
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        fields.append((number, value))
    return fields


def parse_entry(data: bytes) -> TensorEntry:
    """A ``BundleEntryProto``: dtype=1, shape=2 (dim=2 {size=1}), shard_id=3, offset=4, size=5."""
    values = dict(dtype=0, shape=(), shard=0, offset=0, size=0)
    for number, value in protobuf_fields(data):
        if number == 1:
            values["dtype"] = value
        elif number == 2:
            dims = [dict(protobuf_fields(dim)).get(1, 0) for n, dim in protobuf_fields(value) if n == 2]
            values["shape"] = tuple(dims)
        elif number in (3, 4, 5):
            values[{3: "shard", 4: "offset", 5: "size"}[number]] = value
        elif number == 7:
            raise I3DError("partitioned (sliced) variables are not supported")
    return TensorEntry(**values)


def _block_entries(data: bytes) -> list[tuple[bytes, bytes]]:
    """Key/value pairs of one table block (prefix-compressed keys, restart array at the end)."""
    restarts = struct.unpack_from("<I", data, len(data) - 4)[0]
    end = len(data) - 4 - 4 * restarts
    entries, pos, key = [], 0, b""
    while pos < end:
        shared, pos = read_varint(data, pos)
        unshared, pos = read_varint(data, pos)
        length, pos = read_varint(data, pos)
        key = key[:shared] + data[pos : pos + unshared]
        pos += unshared
        entries.append((key, data[pos : pos + length]))
        pos += length
    return entries


def _block(table: bytes, handle: bytes) -> bytes:
    offset, pos = read_varint(handle, 0)
    size, _ = read_varint(handle, pos)
    if offset + size + BLOCK_TRAILER_SIZE > len(table):
        raise ValueError("block beyond the end of the file")
    if table[offset + size] != 0:
        raise I3DError("compressed checkpoint index blocks are not supported")
    return table[offset : offset + size]


def read_index(path: Path) -> dict[str, TensorEntry]:
    """Every variable of a checkpoint ``.index`` file (the header entry left out)."""
    table = path.read_bytes()
    try:
        if len(table) < FOOTER_SIZE or struct.unpack_from("<Q", table, len(table) - 8)[0] != TABLE_MAGIC:
            raise ValueError("no table footer")
        footer = table[-FOOTER_SIZE:]
        _, pos = read_varint(footer, 0)  # metaindex handle: offset, size
        _, pos = read_varint(footer, pos)
        entries: dict[str, TensorEntry] = {}
        for _, handle in _block_entries(_block(table, footer[pos:])):
            for key, value in _block_entries(_block(table, handle)):
                if key:  # the empty key holds the BundleHeaderProto
                    entries[key.decode()] = parse_entry(value)
    except (ValueError, struct.error, IndexError, UnicodeDecodeError) as error:
        raise I3DError(f"{path}: not a TensorFlow checkpoint index ({error})") from None
    return entries


def checkpoint_prefix(path: Path) -> Path:
    """``model.ckpt`` from ``model.ckpt``, ``model.ckpt.index`` or ``model.ckpt.data-00000-of-00001``."""
    name = re.sub(r"\.(index|data-\d+-of-\d+)$", "", path.name)
    return path.with_name(name)


def read_checkpoint(path: Path) -> dict[str, np.ndarray]:
    """All variables of a checkpoint, by TF name, as numpy arrays."""
    prefix = checkpoint_prefix(path)
    index = prefix.with_name(prefix.name + ".index")
    if not index.is_file():
        raise I3DError(f"{index}: no such checkpoint index")
    entries = read_index(index)
    shards = sorted(prefix.parent.glob(prefix.name + ".data-*-of-*"))
    if not shards:
        raise I3DError(f"{prefix}: no data file ({prefix.name}.data-00000-of-00001) beside the index")
    data = [np.memmap(s, dtype=np.uint8, mode="r") for s in shards]
    arrays = {}
    for name, entry in entries.items():
        if entry.dtype not in DTYPES:
            continue  # strings and other non-numeric bookkeeping
        dtype = np.dtype(DTYPES[entry.dtype]).newbyteorder("<")
        if entry.shard >= len(data) or entry.offset + entry.size > len(data[entry.shard]):
            raise I3DError(f"{prefix}: data for {name} lies beyond the end of its shard (truncated file?)")
        if entry.size != dtype.itemsize * int(np.prod(entry.shape)):
            raise I3DError(f"{prefix}: {name} holds {entry.size} bytes for shape {entry.shape}")
        raw = data[entry.shard][entry.offset : entry.offset + entry.size]
        arrays[name] = np.frombuffer(raw.tobytes(), dtype=dtype).reshape(entry.shape)
    return arrays


_TF_TO_TORCH = {"conv_3d/w": "conv3d.weight", "conv_3d/b": "conv3d.bias", "batch_norm/beta": "batch_norm.bias",
                "batch_norm/moving_mean": "batch_norm.running_mean",
                "batch_norm/moving_variance": "batch_norm.running_var"}


# DeepMind's i3d.py names Mixed_5b's third-branch 3x3 convolution "Conv3d_0a_3x3" (every other block says
# "Conv3d_0b_3x3"); all their checkpoints carry that name.
_SCOPE_ALIASES = {"Mixed_5b/Branch_2/Conv3d_0a_3x3": "Mixed_5b/Branch_2/Conv3d_0b_3x3"}

_OPTIMIZER_SLOT = re.compile(r".+/(Momentum|Adam|Adam_1|RMSProp|RMSProp_1|ExponentialMovingAverage)")
_BOOKKEEPING = {"global_step", "beta1_power", "beta2_power"}


def torch_name(tf_name: str) -> tuple[str, str] | None:
    """(stream scope, this network's parameter name) of a DeepMind model variable, else None.

    The scope is ``RGB``, ``Flow``, or ``""`` for checkpoints saved without one (Kinetics-600).
    """
    match = re.fullmatch(r"(?:(RGB|Flow)/inception_i3d/)?(\w+(?:/\w+){0,2})/(conv_3d/[wb]|batch_norm/\w+)", tf_name)
    if match is None or match[3] not in _TF_TO_TORCH:
        return None
    scope = _SCOPE_ALIASES.get(match[2], match[2])
    return match[1] or "", scope.replace("/", ".") + "." + _TF_TO_TORCH[match[3]]


def convert_tf_arrays(arrays: dict[str, np.ndarray], scope: str | None = None) -> tuple[str, dict[str, torch.Tensor]]:
    """(modality, this network's state dict) from DeepMind variables.

    ``scope`` (RGB or Flow) picks a stream when a checkpoint holds both. Optimizer slots and step
    counters are skipped; any other variable that maps to nothing is an error, never silently dropped.
    """
    by_scope: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for tf_name, array in arrays.items():
        mapped = torch_name(tf_name)
        if mapped is None:
            if not (_OPTIMIZER_SLOT.fullmatch(tf_name) or tf_name.rsplit("/", 1)[-1] in _BOOKKEEPING):
                unknown.append(tf_name)
            continue
        stream, name = mapped
        tensor = torch.from_numpy(np.array(array, dtype=np.float32))  # a writable copy
        # kernels (T, H, W, in, out) -> (out, in, T, H, W); vectors may be (1, 1, 1, 1, C) (Kinetics-600)
        kernel = name.endswith("conv3d.weight")
        tensor = tensor.permute(4, 3, 0, 1, 2).contiguous() if kernel else tensor.reshape(-1)
        by_scope.setdefault(stream, {})[name] = tensor
    if unknown:
        raise I3DError(f"{len(unknown)} checkpoint variables map to nothing in I3D: {', '.join(sorted(unknown)[:3])}")
    if not by_scope:
        raise I3DError("no I3D variables in this checkpoint")
    if scope is None:
        if len(by_scope) > 1:
            raise I3DError(f"the checkpoint holds the {' and '.join(sorted(by_scope))} streams; choose one")
        scope = next(iter(by_scope))
    if scope not in by_scope:
        raise I3DError(f"no {scope}/inception_i3d variables in this checkpoint (it has {', '.join(by_scope)})")
    state_dict = by_scope[scope]
    first = state_dict.get(FIRST_CONV_WEIGHT)
    in_channels = first.shape[1] if first is not None else 3
    return ("flow" if in_channels == 2 else "rgb"), state_dict
