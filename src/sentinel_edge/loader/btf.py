"""A small reader of raw BTF: struct layouts and enums of a compiled object.

The wire decoder is generated from this, so user space always agrees with the
object it loads (bpf/shared/events.h is the single source of truth).
"""

from __future__ import annotations

import ctypes
import struct
from dataclasses import dataclass, field

from sentinel_edge.errors import WireError
from sentinel_edge.loader import libbpf

KIND_INT, KIND_PTR, KIND_ARRAY, KIND_STRUCT, KIND_UNION, KIND_ENUM = 1, 2, 3, 4, 5, 6
KIND_FWD, KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT = 7, 8, 9, 10, 11
KIND_FUNC, KIND_FUNC_PROTO, KIND_VAR, KIND_DATASEC, KIND_FLOAT = 12, 13, 14, 15, 16
KIND_DECL_TAG, KIND_TYPE_TAG, KIND_ENUM64 = 17, 18, 19

_BTF_MAGIC = 0xEB9F


@dataclass(slots=True)
class BtfType:
    id: int
    kind: int
    name: str
    size_or_type: int
    vlen: int
    kflag: bool
    # kind-specific
    int_bits: int = 0
    int_signed: bool = False
    int_char: bool = False
    array: tuple[int, int] = (0, 0)  # (elem type, nelems)
    members: list[tuple[str, int, int]] = field(default_factory=list)  # (name, type, bit offset)
    enumerators: list[tuple[str, int]] = field(default_factory=list)


class Btf:
    """Parsed BTF: types by id and by name."""

    def __init__(self, raw: bytes) -> None:
        if len(raw) < 24:
            raise WireError("BTF blob too short")
        magic, _ver, _flags, hdr_len, type_off, type_len, str_off, str_len = struct.unpack_from(
            "<HBBIIIII", raw, 0
        )
        if magic != _BTF_MAGIC:
            raise WireError(f"bad BTF magic {magic:#x}")
        types = raw[hdr_len + type_off : hdr_len + type_off + type_len]
        self._strs = raw[hdr_len + str_off : hdr_len + str_off + str_len]
        self.types: list[BtfType | None] = [None]
        self.by_name: dict[tuple[int, str], BtfType] = {}
        pos = 0
        tid = 1
        while pos < len(types):
            name_off, info, size_or_type = struct.unpack_from("<III", types, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            t = BtfType(tid, kind, self._str(name_off), size_or_type, vlen, bool(info >> 31))
            if kind == KIND_INT:
                (enc,) = struct.unpack_from("<I", types, pos)
                pos += 4
                t.int_bits = enc & 0xFF
                t.int_signed = bool((enc >> 24) & 1)
                t.int_char = bool((enc >> 24) & 2)
            elif kind == KIND_ARRAY:
                elem, _idx, nelems = struct.unpack_from("<III", types, pos)
                pos += 12
                t.array = (elem, nelems)
            elif kind in (KIND_STRUCT, KIND_UNION):
                for _ in range(vlen):
                    m_name, m_type, m_off = struct.unpack_from("<III", types, pos)
                    pos += 12
                    bit_off = m_off & 0xFFFFFF if t.kflag else m_off
                    t.members.append((self._str(m_name), m_type, bit_off))
            elif kind == KIND_ENUM:
                for _ in range(vlen):
                    e_name, e_val = struct.unpack_from("<Ii", types, pos)
                    pos += 8
                    t.enumerators.append((self._str(e_name), e_val))
            elif kind == KIND_ENUM64:
                for _ in range(vlen):
                    e_name, lo, hi = struct.unpack_from("<III", types, pos)
                    pos += 12
                    t.enumerators.append((self._str(e_name), (hi << 32) | lo))
            elif kind == KIND_FUNC_PROTO:
                pos += 8 * vlen
            elif kind == KIND_VAR:
                pos += 4
            elif kind == KIND_DATASEC:
                for _ in range(vlen):
                    v_type, v_off, _v_size = struct.unpack_from("<III", types, pos)
                    pos += 12
                    t.members.append(("", v_type, v_off * 8))
            elif kind == KIND_DECL_TAG:
                pos += 4
            self.types.append(t)
            if t.name:
                self.by_name.setdefault((kind, t.name), t)
            tid += 1

    def _str(self, off: int) -> str:
        end = self._strs.index(b"\0", off)
        return self._strs[off:end].decode()

    @classmethod
    def from_elf(cls, path: str) -> Btf:
        """Parse the .BTF of an ELF object with libbpf."""
        lb = libbpf.lib()
        handle = libbpf.check_ptr(lb.btf__parse_elf(path.encode(), None), f"reading BTF of {path}")
        try:
            size = ctypes.c_uint32()
            data = lb.btf__raw_data(handle, ctypes.byref(size))
            raw = ctypes.string_at(data, size.value)
        finally:
            lb.btf__free(handle)
        return cls(raw)

    def get(self, tid: int) -> BtfType:
        t = self.types[tid]
        if t is None:
            raise WireError(f"BTF type id {tid} does not exist")
        return t

    def resolve(self, tid: int) -> BtfType:
        """Skip typedefs and qualifiers."""
        t = self.get(tid)
        while t.kind in (KIND_TYPEDEF, KIND_VOLATILE, KIND_CONST, KIND_RESTRICT, KIND_TYPE_TAG):
            t = self.get(t.size_or_type)
        return t

    def struct(self, name: str) -> BtfType:
        t = self.by_name.get((KIND_STRUCT, name))
        if t is None:
            raise WireError(f"struct {name} is not in the object's BTF")
        return t

    def enum(self, name: str) -> dict[str, int]:
        t = self.by_name.get((KIND_ENUM, name)) or self.by_name.get((KIND_ENUM64, name))
        if t is None:
            raise WireError(f"enum {name} is not in the object's BTF")
        return dict(t.enumerators)

    def datasec_offset(self, section: str, var: str) -> int | None:
        """Byte offset of a global variable inside a data section (.rodata, .bss)."""
        sec = self.by_name.get((KIND_DATASEC, section))
        if sec is None:
            return None
        for _, v_type, bit_off in sec.members:
            if self.get(v_type).name == var:
                return bit_off // 8
        return None

    def sizeof(self, tid: int) -> int:
        t = self.resolve(tid)
        if t.kind in (KIND_INT, KIND_STRUCT, KIND_UNION, KIND_ENUM, KIND_ENUM64, KIND_FLOAT):
            return t.size_or_type
        if t.kind == KIND_PTR:
            return 8
        if t.kind == KIND_ARRAY:
            return self.sizeof(t.array[0]) * t.array[1]
        raise WireError(f"no size for BTF kind {t.kind} (type {tid})")

    def layout(self, name: str) -> list[tuple[str, int, int]]:
        """(member, byte offset, byte size) of a struct, in order."""
        t = self.struct(name)
        return [(m, off // 8, self.sizeof(mt)) for m, mt, off in t.members]
