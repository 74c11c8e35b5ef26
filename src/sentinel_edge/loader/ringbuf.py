"""Ring-buffer consumer over our own mmap of a BPF_MAP_TYPE_RINGBUF map.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (we write
it), page 1 the producer position, then the data area mapped twice in a row
so a record never wraps from the reader's point of view. Each record has an
8-byte header: u32 length with BUSY (bit 31) and DISCARD (bit 30) flags, u32
page offset; records are 8-byte aligned.

Draining copies every ready record in one pass and publishes the consumer
position once per batch with a single native 64-bit store (a byte-wise store
lets the kernel read a torn position: shared/KERNEL.md).
"""

from __future__ import annotations

import ctypes
import mmap
import struct

from sentinel_edge.errors import LoaderError

_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = struct.Struct("<I")


class RingReader:
    """Reads records of one ring buffer map (by fd) in batches."""

    def __init__(self, fd: int, max_entries: int, name: str) -> None:
        self.name = name
        self.size = max_entries
        self.mask = max_entries - 1
        page = mmap.PAGESIZE
        try:
            self._cons = mmap.mmap(fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
            self._prod = mmap.mmap(fd, page + 2 * max_entries, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except OSError as exc:
            raise LoaderError(f"mmap of ring buffer {name} failed: {exc}") from exc
        self._cons_pos = ctypes.c_uint64.from_buffer(self._cons)
        self._prod_view = memoryview(self._prod)
        self._prod_pos = self._prod_view[:8].cast("Q")
        self._data = self._prod_view[page:]
        self.records = 0
        self.bytes = 0

    def pending_bytes(self) -> int:
        return int(self._prod_pos[0] - self._cons_pos.value)

    def drain(self, out: list[bytes], limit: int = 1 << 30) -> int:
        """Append up to `limit` ready records to `out`; returns how many."""
        cons = self._cons_pos.value
        prod = self._prod_pos[0]
        data = self._data
        mask = self.mask
        unpack = _HDR.unpack_from
        n = 0
        while cons < prod and n < limit:
            off = cons & mask
            (hdr,) = unpack(data, off)
            if hdr & _BUSY:
                break
            length = hdr & ~(_BUSY | _DISCARD)
            if not hdr & _DISCARD:
                out.append(bytes(data[off + 8 : off + 8 + length]))
                n += 1
            cons += (length + 8 + 7) & ~7
            if n & 1023 == 0 and n:
                self._cons_pos.value = cons  # let the producer reuse space during long drains
        self._cons_pos.value = cons
        self.records += n
        return n

    def close(self) -> None:
        del self._cons_pos
        self._prod_pos.release()
        self._data.release()
        self._prod_view.release()
        self._cons.close()
        self._prod.close()
