"""Ring-buffer consumer over our own mmap of a BPF_MAP_TYPE_RINGBUF map.

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (we write
it), page 1 the producer position, then the data area mapped twice in a row
so a record never wraps from the reader's point of view. Each record has an
8-byte header: u32 length with BUSY (bit 31) and DISCARD (bit 30) flags, u32
page offset; records are 8-byte aligned.

Draining copies every ready record in one pass and publishes the consumer
position once per batch with a single native 64-bit store (a byte-wise store
lets the kernel read a torn position: shared/KERNEL.md).

Two ways out: :meth:`RingReader.drain` appends one ``bytes`` per record (the
simple API), :meth:`RingReader.drain_batch` walks the record headers only and
copies the whole run of ready records with one ``bytes()`` of the double-mapped
data area, returning a :class:`RawBatch` (one buffer + record offsets and
lengths) for the batch decoders in :mod:`sentinel_edge.wire`.

The header walk of :meth:`RingReader.drain_batch` runs in C when the package
ships ``_bpf/ringwalk.so`` (built by ``make`` from ``loader/ringwalk.c``,
loaded with ctypes); without it the same walk runs in Python (one debug log
line says so). Both give identical batches.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import mmap
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import numpy.typing as npt

from sentinel_edge.errors import LoaderError

_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = struct.Struct("<I")
_LEN_MASK = ~(_BUSY | _DISCARD) & 0xFFFFFFFF


_log = logging.getLogger(__name__)
_WALK_LIB = "_bpf/ringwalk.so"

_EMPTY = np.zeros(0, dtype=np.int64)
# after this many records of the same header in a row, try to take the rest of the run at once
_RUN_PROBE = 4
_RUN_WORTH = 64  # a shorter run did not pay for the numpy probe


@dataclass(slots=True)
class RawBatch:
    """A run of ring records copied out in one piece.

    Record ``i`` is ``buf[starts[i] : starts[i] + lengths[i]]`` (8-byte
    aligned, in ring order); discarded records are already skipped.
    """

    buf: bytes = b""
    starts: npt.NDArray[np.int64] = field(default_factory=lambda: _EMPTY)
    lengths: npt.NDArray[np.int64] = field(default_factory=lambda: _EMPTY)

    def __len__(self) -> int:
        return len(self.starts)

    def records(self) -> list[bytes]:
        """Every record as its own bytes (what :meth:`RingReader.drain` gives)."""
        buf = self.buf
        return [buf[s : s + n] for s, n in zip(self.starts.tolist(), self.lengths.tolist(), strict=True)]


# se_ring_walk(data, base, avail, limit, starts, lengths, &consumed) -> records listed
WalkFn = Callable[[int, int, int, int, int, int, "ctypes._Pointer[ctypes.c_uint64]"], int]


@functools.cache
def native_walk() -> WalkFn | None:
    """``se_ring_walk`` from the shipped ``ringwalk.so``, or None (logged once) when it cannot be loaded."""
    path = resources.files("sentinel_edge").joinpath(_WALK_LIB)
    try:
        fn = ctypes.CDLL(str(path)).se_ring_walk
    except (OSError, AttributeError) as exc:
        _log.debug("ring header walk in C unavailable (%s: %s); drain_batch walks headers in Python", path, exc)
        return None
    fn.restype = ctypes.c_int64
    fn.argtypes = [ctypes.c_void_p, ctypes.c_uint64, ctypes.c_uint64, ctypes.c_int64,
                   ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_uint64)]
    walk: WalkFn = fn
    return walk


class RingReader:
    """Reads records of one ring buffer map (by fd) in batches.

    ``native=False`` keeps the Python header walk in :meth:`drain_batch` even
    when the C walk is available (tests compare the two).
    """

    def __init__(self, fd: int, max_entries: int, name: str, native: bool = True) -> None:
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
        self._words = self._data.cast("I")  # record headers are 8-byte aligned u32s
        self.records = 0
        self.bytes = 0
        self._walk = native_walk() if native else None
        self._data_addr = 0
        if self._walk is not None:
            view = np.frombuffer(self._prod, np.uint8)  # a read-only mapping: numpy gives its address
            self._data_addr = view.ctypes.data + page
            del view
        self._starts = _EMPTY  # scratch arrays the C walk fills, grown on demand
        self._lengths = _EMPTY
        self._consumed = ctypes.c_uint64()
        self._consumed_ref = ctypes.pointer(self._consumed)

    @property
    def native(self) -> bool:
        """True when drain_batch walks the record headers in C."""
        return self._walk is not None

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

    def drain_batch(self, limit: int = 1 << 30, max_bytes: int | None = None) -> RawBatch:
        """Take up to `limit` ready records (at most about `max_bytes` of ring) as one RawBatch.

        `limit` counts ring records, discarded ones included (they are
        consumed, not listed). Only the record headers are visited: in C
        (ringwalk.c) when available, else in Python, where a run of records
        with the same header (fixed-size events) is taken in one numpy step;
        the records are copied with a single slice of the double-mapped data
        area (a run of ready records never wraps there), then the consumer
        position is published once.
        """
        cons = self._cons_pos.value
        avail = self._prod_pos[0] - cons
        if avail <= 0 or limit <= 0:
            return RawBatch()
        if max_bytes is not None and max_bytes < avail:
            avail = max(max_bytes, 8)
        base = cons & self.mask
        if self._walk is not None:
            return self._drain_batch_c(cons, base, avail, limit)
        # header words of the ready area, indexed in u32 units from base (base and avail are 8-aligned)
        words = self._words[base >> 2 : (base + avail + 3) >> 2]
        heads: list[int] = []  # header positions in u32 units, discarded records included
        runs: list[npt.NDArray[np.int64]] = []  # header positions taken in vectorized runs
        add = heads.append
        end = len(words)
        i = 0
        n = 0
        last = -1
        same = 0
        probe = _RUN_PROBE  # raised after a probe that found a short run (variable-size records)
        while i < end and n < limit:
            hdr = words[i]
            if hdr & _BUSY:
                break
            add(i)
            n += 1
            step = ((hdr & _LEN_MASK) + 15) >> 3 << 1  # record with its header, 8-aligned, in u32 units
            i += step
            if hdr != last:
                last = hdr
                same = 1
                continue
            same += 1
            if same == probe:
                # fixed-size records: compare the headers of the rest of the run at once
                m = min((end - i + step - 1) // step, limit - n)
                if m > 0:
                    eq = np.asarray(words[i : i + (m - 1) * step + 1 : step]) == hdr
                    k = m if bool(eq.all()) else int(np.argmin(eq))
                    if k:
                        runs.append(np.asarray(heads, dtype=np.int64))
                        heads.clear()
                        runs.append(i + step * np.arange(k, dtype=np.int64))
                        i += k * step
                        n += k
                    probe = _RUN_PROBE if k >= _RUN_WORTH else min(probe * 4, 1 << 20)
                same = 0
        words.release()
        rel = i << 2
        if rel == 0:
            return RawBatch()
        buf = bytes(self._data[base : base + rel])
        self._cons_pos.value = cons + rel
        if runs:
            runs.append(np.asarray(heads, dtype=np.int64))
            pos = np.concatenate(runs) << 2
        else:
            pos = np.asarray(heads, dtype=np.int64) << 2
        hdrs = np.frombuffer(buf, np.uint32)[pos >> 2].astype(np.int64)
        keep = (hdrs & _DISCARD) == 0
        if not keep.all():
            pos = pos[keep]
            hdrs = hdrs[keep]
        self.records += len(pos)
        self.bytes += rel
        return RawBatch(buf, pos + 8, hdrs & _LEN_MASK)

    def _drain_batch_c(self, cons: int, base: int, avail: int, limit: int) -> RawBatch:
        """drain_batch with the header walk in C (ringwalk.c): the same batch as the Python walk."""
        assert self._walk is not None and self._data_addr
        cap = min(limit, (avail + 7) >> 3)  # a record takes at least 8 bytes
        if cap > len(self._starts):
            size = max(cap, 1024)
            self._starts = np.empty(size, np.int64)
            self._lengths = np.empty(size, np.int64)
        k = self._walk(self._data_addr, base, avail, limit, self._starts.ctypes.data, self._lengths.ctypes.data,
                       self._consumed_ref)
        rel = self._consumed.value
        if rel == 0:
            return RawBatch()
        buf = bytes(self._data[base : base + rel])
        self._cons_pos.value = cons + rel
        self.records += k
        self.bytes += rel
        return RawBatch(buf, self._starts[:k].copy(), self._lengths[:k].copy())

    def close(self) -> None:
        self._walk = None
        self._data_addr = 0
        del self._cons_pos
        self._words.release()
        self._prod_pos.release()
        self._data.release()
        self._prod_view.release()
        self._cons.close()
        self._prod.close()
