"""Columnar decoding of a drained batch of ring records with numpy.

One numpy structured dtype per event struct is generated from the BTF of the
compiled object (member offsets, sizes and signedness straight from BTF, never
written by hand). A :class:`~sentinel_edge.loader.ringbuf.RawBatch` (one buffer
holding a run of records) is split by event type and each type's fixed parts
become one structured array:

- when that type's records sit at a constant stride in the buffer (a run of
  fixed-size records) the array is a zero-copy view of the buffer;
- otherwise the fixed parts are gathered in 8-byte words with one fancy index
  through one overlapping view of the buffer with a record at every 8-byte
  word (records are 8-byte aligned): one fancy index, one block copy each.

Variable-length ``se_str`` tails are not touched until asked for:
:meth:`TypeBatch.string` slices one out of the buffer, clamped to its record
exactly as :meth:`~sentinel_edge.wire.Decoder.decode` does. Char arrays
(``comm``) are cut at their first NUL by :meth:`TypeBatch.text`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sentinel_edge.errors import WireError
from sentinel_edge.loader.btf import (
    KIND_ARRAY,
    KIND_ENUM,
    KIND_ENUM64,
    KIND_INT,
    KIND_STRUCT,
    Btf,
)
from sentinel_edge.loader.ringbuf import RawBatch

_HDR_MIN = 16  # struct se_hdr

I64 = npt.NDArray[np.int64]


def _int_code(size: int, signed: bool) -> str:
    if size not in (1, 2, 4, 8):
        raise WireError(f"unsupported integer size {size}")
    return f"<{'i' if signed else 'u'}{size}"


def struct_dtype(btf: Btf, name: str) -> np.dtype[Any]:
    """The numpy structured dtype of a BTF struct (padding members left out)."""
    return _dtype_of(btf, btf.struct(name).id, name)


def _dtype_of(btf: Btf, tid: int, where: str) -> np.dtype[Any]:
    t = btf.resolve(tid)
    size = btf.sizeof(tid)
    if t.kind == KIND_INT:
        return np.dtype(_int_code(size, t.int_signed))
    if t.kind in (KIND_ENUM, KIND_ENUM64):
        return np.dtype(_int_code(size, t.kflag))
    if t.kind == KIND_ARRAY:
        elem = btf.resolve(t.array[0])
        n = t.array[1]
        if elem.kind == KIND_INT and elem.size_or_type == 1 and (elem.int_char or elem.name == "char"):
            return np.dtype(f"S{n}")
        return np.dtype((_dtype_of(btf, t.array[0], where), (n,)))
    if t.kind == KIND_STRUCT:
        names: list[str] = []
        formats: list[np.dtype[Any]] = []
        offsets: list[int] = []
        for m_name, m_type, m_bits in t.members:
            if m_name.startswith("_pad"):
                continue
            if m_bits % 8:
                raise WireError(f"bit-field member {m_name} of {where} is not supported")
            names.append(m_name)
            formats.append(_dtype_of(btf, m_type, f"{where}.{m_name}"))
            offsets.append(m_bits // 8)
        return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": size})
    raise WireError(f"unsupported member {where} of BTF kind {t.kind}")


def _paths(dt: np.dtype[Any], prefix: str = "") -> list[tuple[str, np.dtype[Any]]]:
    """Leaf field paths ("proc.pid") of a structured dtype, se_str fields kept whole."""
    out: list[tuple[str, np.dtype[Any]]] = []
    assert dt.fields is not None
    for name in dt.names or ():
        sub = dt.fields[name][0]
        path = prefix + name
        if sub.names is not None and sub.names != ("off", "len"):
            out.extend(_paths(sub, path + "."))
        else:
            out.append((path, sub))
    return out


@dataclass(slots=True)
class Layout:
    """One event struct as numpy sees it."""

    type_id: int
    kind: str
    struct_name: str
    dtype: np.dtype[Any]
    leaves: list[tuple[str, np.dtype[Any]]]
    strings: list[str]  # se_str members (paths)
    texts: list[str]  # char array members (paths)


def gather(raw: RawBatch, starts: I64, dtype: np.dtype[Any]) -> npt.NDArray[Any]:
    """The fixed parts at `starts` (byte offsets into raw.buf) as one structured array.

    Zero-copy when the records sit at a constant stride; otherwise one gather
    of 8-byte words (or of bytes, for a size that is not a multiple of 8).
    Every record must hold at least ``dtype.itemsize`` bytes.
    """
    n = len(starts)
    size = dtype.itemsize
    buf = raw.buf
    if n == 0:
        return np.empty(0, dtype)
    first = int(starts[0])
    if n == 1:
        return np.ndarray((1,), dtype, buf, first)
    steps = np.diff(starts)
    step = int(steps[0])
    if step >= size and step % 8 == 0 and bool((steps == step).all()):
        return np.ndarray((n,), dtype, buf, first, (step,))
    if len(buf) % 8 == 0 and not bool((starts & 7).any()):
        # one overlapping view with a record starting at every 8-byte word: a fancy index of it
        # copies each record's fixed part as one block
        every = np.ndarray(((len(buf) - size) // 8 + 1,), np.dtype((np.void, size)), buf, 0, (8,))
        out: npt.NDArray[Any] = every[starts >> 3].view(dtype)
        return out
    raw_bytes = np.frombuffer(buf, np.uint8)
    idx = starts[:, None] + np.arange(size, dtype=np.int64)
    res: npt.NDArray[Any] = raw_bytes[idx].view(dtype).reshape(n)
    return res


@dataclass(slots=True)
class TypeBatch:
    """The records of one event type in a batch, columnar."""

    layout: Layout
    buf: bytes
    rows: I64  # positions in the batch (ring order)
    starts: I64  # byte offset of each record in buf
    lengths: I64
    recs: npt.NDArray[Any]  # structured, one element per record

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def kind(self) -> str:
        return self.layout.kind

    def column(self, path: str) -> npt.NDArray[Any]:
        """A fixed field by path, e.g. ``"proc.pid"``, ``"hdr.ts_ns"``, ``"op"``."""
        a: npt.NDArray[Any] = self.recs
        try:
            for part in path.split("."):
                a = a[part]
        except (KeyError, ValueError) as exc:
            raise WireError(f"{self.layout.struct_name} has no field {path}") from exc
        return a

    def text(self, path: str, i: int) -> bytes:
        """A char array field (``"proc.comm"``) of record i, cut at its first NUL."""
        v: bytes = self.column(path)[i]
        return v.split(b"\0", 1)[0]

    def string(self, path: str, i: int) -> bytes:
        """An se_str field of record i, sliced from the buffer only now."""
        ref = self.column(path)[i]
        off = int(ref["off"])
        end = off + int(ref["len"])
        s = int(self.starts[i])
        n = int(self.lengths[i])
        return self.buf[s + min(off, n) : s + min(end, n)]

    def strings(self, path: str) -> list[bytes]:
        """An se_str field of every record."""
        ref = self.column(path)
        buf = self.buf
        out: list[bytes] = []
        for s, n, off, ln in zip(self.starts.tolist(), self.lengths.tolist(),
                                 ref["off"].tolist(), ref["len"].tolist(), strict=True):
            out.append(buf[s + min(off, n) : s + min(off + ln, n)])
        return out


@dataclass(slots=True)
class DecodedBatch:
    """A RawBatch split by event type into columnar TypeBatches."""

    raw: RawBatch
    by_type: dict[int, TypeBatch] = field(default_factory=dict)
    errors: list[tuple[int, str]] = field(default_factory=list)  # (row, why) of records that break the contract

    def __len__(self) -> int:
        return sum(len(t) for t in self.by_type.values())

    def kind(self, kind: str) -> TypeBatch | None:
        for t in self.by_type.values():
            if t.layout.kind == kind:
                return t
        return None


class BatchDecoder:
    """Columnar decoder of ring batches, generated from the object's BTF."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.layouts: dict[int, Layout] = {}
        self.errors = 0
        for name, value in btf.enum("se_event_type").items():
            kind = name.removeprefix("SE_EV_").lower()
            struct_name = "se_" + kind
            if (KIND_STRUCT, struct_name) not in btf.by_name:
                continue  # e.g. SE_EV_LOSS: made by user space
            dt = struct_dtype(btf, struct_name)
            if dt.names is None or dt.names[:2] != ("hdr", "proc"):
                raise WireError(f"struct {struct_name} must start with hdr and proc")
            leaves = _paths(dt)
            strings = [p for p, d in leaves if d.names == ("off", "len")]
            texts = [p for p, d in leaves if d.kind == "S"]
            self.layouts[value] = Layout(value, kind, struct_name, dt, leaves, strings, texts)

    @classmethod
    def from_object(cls, path: str) -> BatchDecoder:
        return cls(Btf.from_elf(path))

    def decode(self, raw: RawBatch) -> DecodedBatch:
        """Split `raw` by event type; records that break the contract go to ``errors``."""
        out = DecodedBatch(raw)
        n = len(raw)
        if n == 0:
            return out
        starts = raw.starts
        lengths = raw.lengths
        ok = lengths >= _HDR_MIN
        raw_bytes = np.frombuffer(raw.buf, np.uint8)
        safe = np.where(ok, starts, 0)
        types = raw_bytes[safe].astype(np.int64) | (raw_bytes[safe + 1].astype(np.int64) << 8)
        types[~ok] = -1
        bad: list[tuple[int, str]] = [
            (int(i), f"record of {int(lengths[i])} bytes is shorter than the header") for i in np.flatnonzero(~ok)
        ]
        for type_id in np.unique(types[ok]).tolist():
            rows = np.flatnonzero(types == type_id)
            layout = self.layouts.get(type_id)
            if layout is None:
                bad.extend((int(i), f"unknown event type {type_id}") for i in rows)
                continue
            size = layout.dtype.itemsize
            short = lengths[rows] < size
            if short.any():
                bad.extend(
                    (int(i), f"{layout.struct_name} record of {int(lengths[i])} bytes, needs {size}")
                    for i in rows[short]
                )
                rows = rows[~short]
                if len(rows) == 0:
                    continue
            st = starts[rows]
            out.by_type[type_id] = TypeBatch(layout, raw.buf, rows, st, lengths[rows], gather(raw, st, layout.dtype))
        if bad:
            bad.sort()
            out.errors = bad
            self.errors += len(bad)
        return out
