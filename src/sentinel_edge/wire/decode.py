"""Event decoders generated from the BTF of the compiled object.

For every ``SE_EV_<NAME>`` in ``enum se_event_type`` that has a
``struct se_<name>``, one :class:`struct.Struct` covering the fixed part and
one small generated function turn a ring-buffer record into an
:class:`~sentinel_edge.model.Event`. Nothing is written by hand per event, so
the decoder cannot drift from the C header.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
from sentinel_edge.model import Event

_INT_FMT = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h",
            (4, False): "I", (4, True): "i", (8, False): "Q", (8, True): "q"}

DecodeFn = Callable[[bytes], Event]
# decode_at(buf, start, length): the record buf[start:start + length] of a batch
DecodeAtFn = Callable[[bytes, int, int], Event]

_STR = re.compile(r"STR\((\d+),(\d+)\)")


@dataclass(slots=True)
class EventLayout:
    type_id: int
    kind: str
    struct_name: str
    size: int
    fmt: str
    fields: list[str]  # data keys, for docs and tests


class _Gen:
    """Builds the struct format and the expressions of one event struct."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.fmt: list[str] = []
        self.idx = 0
        self.pos = 0

    def _pad_to(self, off: int) -> None:
        if off < self.pos:
            raise WireError(f"overlapping members at offset {off}")
        if off > self.pos:
            self.fmt.append(f"{off - self.pos}x")
        self.pos = off

    def _take(self, code: str, size: int) -> int:
        self.fmt.append(code)
        self.pos += size
        i = self.idx
        self.idx += 1
        return i

    def member(self, name: str, tid: int, off: int) -> str | None:
        """Python expression for one member (None for padding)."""
        btf = self.btf
        t = btf.resolve(tid)
        size = btf.sizeof(tid)
        if name.startswith("_pad"):
            return None
        self._pad_to(off)
        if t.kind in (KIND_INT, KIND_ENUM, KIND_ENUM64):
            signed = t.int_signed if t.kind == KIND_INT else t.kflag
            i = self._take(_INT_FMT[(size, signed)], size)
            return f"t[{i}]"
        if t.kind == KIND_ARRAY:
            elem = btf.resolve(t.array[0])
            n = t.array[1]
            if elem.kind == KIND_INT and elem.size_or_type == 1 and (elem.int_char or elem.name == "char"):
                i = self._take(f"{n}s", n)
                return f"t[{i}].split(b'\\0', 1)[0]"
            if elem.kind == KIND_INT:
                esize = elem.size_or_type
                code = _INT_FMT[(esize, elem.int_signed)]
                first = self.idx
                for _ in range(n):
                    self._take(code, esize)
                return "[" + ", ".join(f"t[{first + k}]" for k in range(n)) + "]"
            raise WireError(f"unsupported array member {name}")
        if t.kind == KIND_STRUCT:
            if t.name == "se_str":
                a = self._take("H", 2)
                b = self._take("H", 2)
                return f"STR({a},{b})"  # filled in by _build for each generated function
            parts = []
            for m_name, m_type, m_bits in t.members:
                expr = self.member(m_name, m_type, off + m_bits // 8)
                if expr is not None:
                    parts.append(f"{m_name!r}: {expr}")
            self._pad_to(off + size)
            return "{" + ", ".join(parts) + "}"
        raise WireError(f"unsupported member {name} of BTF kind {t.kind}")


def _build(btf: Btf, type_id: int, kind: str, struct_name: str) -> tuple[EventLayout, DecodeFn, DecodeAtFn]:
    st = btf.struct(struct_name)
    names = [m[0] for m in st.members]
    if names[:2] != ["hdr", "proc"]:
        raise WireError(f"struct {struct_name} must start with hdr and proc, has {names[:2]}")
    g = _Gen(btf)
    exprs: dict[str, str] = {}
    for m_name, m_type, m_bits in st.members:
        expr = g.member(m_name, m_type, m_bits // 8)
        if expr is not None:
            exprs[m_name] = expr
    g._pad_to(st.size_or_type)
    fmt = "<" + "".join(g.fmt)
    s = struct.Struct(fmt)
    if s.size != st.size_or_type:
        raise WireError(f"decoder for {struct_name} covers {s.size} bytes, BTF says {st.size_or_type}")
    data_items = ", ".join(f"{k!r}: {v}" for k, v in exprs.items() if k not in ("hdr", "proc"))
    body = (
        "    h = " + exprs["hdr"] + "\n"
        f"    return Event({kind!r}, {type_id}, h['ts_ns'], h['cpu'], " + exprs["proc"] + ", {" + data_items + "})\n"
    )
    # se_str {off, len} is relative to the record: the whole buffer (decode) or the record
    # at s of length n in a batch buffer (decode_at), clamped to the record as slicing does
    one = _STR.sub(lambda m: f"buf[t[{m[1]}]:t[{m[1]}] + t[{m[2]}]]", body)
    at = _STR.sub(lambda m: f"rec[t[{m[1]}]:t[{m[1]}] + t[{m[2]}]]", body)
    cut = "    rec = buf[s:s + n]\n" if one != body else ""  # one copy of the record, only when it has strings
    src = (
        "def decode(buf):\n    t = unpack_from(buf)\n" + one
        + "def decode_at(buf, s, n):\n    t = unpack_from(buf, s)\n" + cut + at
    )
    ns: dict[str, Any] = {"unpack_from": s.unpack_from, "Event": Event}
    exec(compile(src, f"<decoder {struct_name}>", "exec"), ns)  # generated from BTF
    layout = EventLayout(type_id, kind, struct_name, st.size_or_type, fmt,
                         [k for k in exprs if k not in ("hdr", "proc")])
    return layout, ns["decode"], ns["decode_at"]


class Decoder:
    """Turns ring-buffer records into Events, using the object's BTF."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf
        self.layouts: dict[int, EventLayout] = {}
        self._decoders: dict[int, DecodeFn] = {}
        self._decoders_at: dict[int, DecodeAtFn] = {}
        self._min_size: dict[int, int] = {}
        self.errors = 0
        for name, value in btf.enum("se_event_type").items():
            kind = name.removeprefix("SE_EV_").lower()
            struct_name = "se_" + kind
            if (KIND_STRUCT, struct_name) not in btf.by_name:
                continue  # e.g. SE_EV_LOSS: made by user space
            layout, fn, fn_at = _build(btf, value, kind, struct_name)
            self.layouts[value] = layout
            self._decoders[value] = fn
            self._decoders_at[value] = fn_at
            self._min_size[value] = layout.size

    @classmethod
    def from_object(cls, path: str) -> Decoder:
        return cls(Btf.from_elf(path))

    def decode(self, buf: bytes) -> Event:
        """Decode one record; raises WireError on a record that breaks the contract."""
        if len(buf) < 16:
            raise WireError(f"record of {len(buf)} bytes is shorter than the header")
        type_id = buf[0] | (buf[1] << 8)
        fn = self._decoders.get(type_id)
        if fn is None:
            raise WireError(f"unknown event type {type_id}")
        if len(buf) < self._min_size[type_id]:
            raise WireError(
                f"{self.layouts[type_id].struct_name} record of {len(buf)} bytes, needs {self._min_size[type_id]}"
            )
        return fn(buf)

    def decode_batch(self, raw: RawBatch, errors: list[str] | None = None) -> list[Event]:
        """Decode every record of a drained batch, in ring order.

        Gives exactly what :meth:`decode` gives for each record, without a
        ``bytes`` object per record. A record that breaks the contract is
        skipped, counted in ``self.errors`` and described in `errors` (when given)
        with the same message :meth:`decode` would raise.
        """
        buf = raw.buf
        fns = self._decoders_at
        sizes = self._min_size
        out: list[Event] = []
        add = out.append
        for s, n in zip(raw.starts.tolist(), raw.lengths.tolist(), strict=True):
            if n >= 16:
                type_id = buf[s] | (buf[s + 1] << 8)
                fn = fns.get(type_id)
                if fn is not None and n >= sizes[type_id]:
                    add(fn(buf, s, n))
                    continue
            self.errors += 1
            if errors is not None:
                try:
                    self.decode(buf[s : s + n])
                except WireError as exc:
                    errors.append(str(exc))
        return out
