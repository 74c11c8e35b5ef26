"""RingReader.drain_batch over a real BPF ring buffer, with both header walks.

A real BPF program (benchmarks/bpf/ring_producer.bpf.c) writes the records:
variable-size SE_EV_FILE records, fixed-size 48-byte records (taken by the
vectorized run path) and records echoed byte for byte. Checked: the batch
holds exactly the records drain() would give, in order, across the end of the
ring (wrap-around), with `limit` and `max_bytes` respected, and every record
written is read once (written == read) even when the ring overflows.

Every test runs with the header walk in C (loader/ringwalk.c, built by
`make` into _bpf/ringwalk.so) and in Python, and the wrap-around test also
compares the two walks' batches field for field over the same bytes. The
kernel producer never discards records nor leaves one BUSY for long, so those
cases run over a ring laid out by the test in a memfd (same page layout as
the kernel's, the data area written twice like the double mapping).
"""

from __future__ import annotations

import logging
import mmap
import os
import random
import shutil
import struct
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sentinel_edge.loader import ringbuf
from sentinel_edge.loader.ringbuf import RawBatch, RingReader
from sentinel_edge.wire.batch import gather, struct_dtype

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ringprod import SHAPE_FILE, SHAPE_SMALL, Producer

needs_clang = pytest.mark.skipif(shutil.which("clang") is None, reason="clang builds the test producer")

BUSY = 1 << 31
DISCARD = 1 << 30


@pytest.fixture(params=["c", "python"])
def walker(request: pytest.FixtureRequest) -> bool:
    """True for the C header walk (which must be built: `make`), False for the Python walk."""
    native = request.param == "c"
    if native:
        assert ringbuf.native_walk() is not None, "src/sentinel_edge/_bpf/ringwalk.so is not built (run make)"
    return native


@pytest.fixture
def small_ring() -> Iterator[Producer]:
    p = Producer(16384)  # 16 KiB: every few runs wrap around
    yield p
    p.close()


def _reader(p: Producer, native: bool) -> RingReader:
    r = p.reader(native=native)
    assert r.native == native
    return r


def _same(x: RawBatch, y: RawBatch) -> None:
    assert x.buf == y.buf
    assert x.starts.dtype == y.starts.dtype == np.int64 and x.lengths.dtype == y.lengths.dtype == np.int64
    assert x.starts.tolist() == y.starts.tolist()
    assert x.lengths.tolist() == y.lengths.tolist()


def _peek(r: RingReader, limit: int = 1 << 30, max_bytes: int | None = None) -> RawBatch:
    """drain_batch without moving the consumer position (readers of one ring share its page)."""
    cons = r._cons_pos.value
    records, nbytes = r.records, r.bytes
    raw = r.drain_batch(limit, max_bytes)
    r._cons_pos.value = cons
    r.records, r.bytes = records, nbytes
    return raw


def _seqs(p: Producer, raw_records: list[bytes]) -> list[int]:
    """Sequence numbers: ino of file records, seq of small ones."""
    out = []
    for r in raw_records:
        if r[0] == 10:
            out.append(int.from_bytes(r[152:160], "little"))  # se_file.ino, checked against BTF below
        else:
            out.append(int.from_bytes(r[16:24], "little"))
    return out


@pytest.mark.kernel
@needs_clang
def test_offsets_used_here_match_btf(small_ring: Producer) -> None:
    from sentinel_edge.loader.btf import Btf
    from sentinel_edge.loader.session import default_object_path

    btf = Btf.from_elf(default_object_path())
    assert ("ino", 152, 8) in btf.layout("se_file")
    assert ("seq", 16, 8) in small_ring.btf.layout("bench_small")


@pytest.mark.kernel
@needs_clang
def test_batch_equals_drain_across_wraparound(small_ring: Producer, walker: bool) -> None:
    p = small_ring
    a = _reader(p, walker)
    b = p.reader()  # a second mapping of the same ring, read with drain() before a publishes
    other = _reader(p, not walker)  # the other header walk over the same bytes, never publishing
    try:
        seq = 0
        expect_next = 0
        rng = random.Random(3)
        for _ in range(300):  # bounded: 300 rounds of a few KiB through a 16 KiB ring
            shape = rng.choice([SHAPE_FILE, SHAPE_SMALL])
            n = rng.randint(1, 40 if shape == SHAPE_FILE else 200)
            ok, failed = p.run(shape, n, seq)
            assert (ok, failed) == (n, 0)
            seq += n
            # b reads without publishing (its consumer position is shared with a: same page)
            cons = b._cons_pos.value
            by_drain: list[bytes] = []
            b.drain(by_drain)
            b._cons_pos.value = cons
            lim = rng.choice([1 << 30, rng.randint(1, n)])
            by_other = _peek(other, lim)
            raw = a.drain_batch(lim)
            _same(raw, by_other)
            if lim < n:
                assert len(raw) == lim
                raw = RawBatch(raw.buf + (rest := a.drain_batch()).buf, np.concatenate(
                    [raw.starts, rest.starts + len(raw.buf)]), np.concatenate([raw.lengths, rest.lengths]))
            assert raw.records() == by_drain
            got = _seqs(p, raw.records())
            assert got == list(range(expect_next, expect_next + n))
            expect_next += n
            assert a.pending_bytes() == 0
        assert a.records == seq
    finally:
        a.close()
        b.close()
        other.close()


@pytest.mark.kernel
@needs_clang
def test_fixed_size_run_and_limits(small_ring: Producer, walker: bool) -> None:
    p = small_ring
    r = _reader(p, walker)
    try:
        dt = struct_dtype(p.btf, "bench_small")
        assert p.run(SHAPE_SMALL, 250, 0) == (250, 0)  # 56 bytes each with the header: 14000 bytes
        first = r.drain_batch(limit=100)
        assert len(first) == 100
        second = r.drain_batch(max_bytes=56 * 50)
        assert len(second) == 50
        rest = r.drain_batch()
        assert len(rest) == 100
        assert len(r.drain_batch()) == 0
        seqs = np.concatenate([gather(x, x.starts, dt)["seq"] for x in (first, second, rest)])
        assert seqs.tolist() == list(range(250))
        assert (rest.lengths == 48).all() and (np.diff(rest.starts) == 56).all()
    finally:
        r.close()


@pytest.mark.kernel
@needs_clang
def test_echoed_records_byte_for_byte(small_ring: Producer, walker: bool) -> None:
    p = small_ring
    r = _reader(p, walker)
    rng = random.Random(11)
    try:
        sent = [rng.randbytes(rng.choice([1, 8, 13, 48, 100, 1000, 3000])) for _ in range(40)]
        got: list[bytes] = []
        for rec in sent:
            assert p.echo(rec)
            if rng.random() < 0.3:
                got += r.drain_batch().records()
        got += r.drain_batch().records()
        assert got == sent
    finally:
        r.close()


@pytest.mark.kernel
@needs_clang
def test_overflow_every_record_read_or_counted(small_ring: Producer, walker: bool) -> None:
    p = small_ring
    r = _reader(p, walker)
    try:
        ok, failed = p.run(SHAPE_FILE, 500, 0)  # ~150 KiB into 16 KiB
        assert failed > 0 and ok + failed == 500
        raw = r.drain_batch()
        assert len(raw) == ok
        assert _seqs(p, raw.records()) == list(range(ok))  # the first ones fit, the rest failed
    finally:
        r.close()


class MemRing:
    """A ring laid out like the kernel's in a memfd: consumer page, producer page, data area twice."""

    def __init__(self, size: int = 4096) -> None:
        self.size = size
        self.page = mmap.PAGESIZE
        self.fd = os.memfd_create("se-test-ring")
        os.ftruncate(self.fd, 2 * self.page + 2 * size)
        self.map = mmap.mmap(self.fd, 2 * self.page + 2 * size)
        self.ring = bytearray(size)
        self.prod = 0

    def put(self, payload: bytes, flags: int = 0) -> int:
        """Write one record at the producer position; returns its position."""
        pos = self.prod
        rec = struct.pack("<II", len(payload) | flags, 0) + payload
        rec += bytes(-len(rec) % 8)
        assert self.prod + len(rec) - self.consumer() <= self.size, "test ring full"
        for j, byte in enumerate(rec):
            self.ring[(pos + j) % self.size] = byte
        self.prod += len(rec)
        self.publish()
        return pos

    def set_flags(self, pos: int, flags: int) -> None:
        off = pos % self.size
        (hdr,) = struct.unpack_from("<I", self.ring, off)
        struct.pack_into("<I", self.ring, off, (hdr & ~(BUSY | DISCARD)) | flags)
        self.publish()

    def publish(self) -> None:
        base = 2 * self.page
        self.map[base : base + self.size] = self.ring
        self.map[base + self.size : base + 2 * self.size] = self.ring
        struct.pack_into("<Q", self.map, self.page, self.prod)

    def consumer(self) -> int:
        return int(struct.unpack_from("<Q", self.map, 0)[0])

    def reader(self, native: bool) -> RingReader:
        r = RingReader(self.fd, self.size, "test_ring", native=native)
        assert r.native == native
        return r

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


@pytest.fixture
def mem_ring() -> Iterator[MemRing]:
    m = MemRing()
    yield m
    m.close()


def test_discarded_records_consumed_not_listed(mem_ring: MemRing, walker: bool) -> None:
    m = mem_ring
    r = m.reader(walker)
    try:
        m.put(b"A" * 5)
        m.put(b"d" * 40, DISCARD)
        m.put(b"B" * 16)
        m.put(b"d" * 8, DISCARD)
        m.put(b"d" * 3, DISCARD)
        m.put(b"C" * 1)
        raw = r.drain_batch(limit=3)  # the limit counts ring records, discarded ones included
        assert raw.records() == [b"A" * 5, b"B" * 16]
        assert raw.starts.tolist() == [8, 72] and raw.lengths.tolist() == [5, 16]
        assert m.consumer() == 16 + 48 + 24
        raw = r.drain_batch()
        assert raw.records() == [b"C"]
        assert m.consumer() == m.prod and r.records == 3
        m.put(b"d" * 30, DISCARD)
        raw = r.drain_batch()  # nothing but a discarded record: consumed, empty batch
        assert len(raw) == 0 and len(raw.buf) == 40 and m.consumer() == m.prod
    finally:
        r.close()


def test_busy_record_stops_the_walk(mem_ring: MemRing, walker: bool) -> None:
    m = mem_ring
    r = m.reader(walker)
    try:
        m.put(b"first")
        busy = m.put(b"second", BUSY)
        m.put(b"third")  # committed, but behind a busy record
        assert r.drain_batch().records() == [b"first"]
        assert len(r.drain_batch()) == 0 and m.consumer() == busy
        m.set_flags(busy, 0)  # the producer commits it
        assert r.drain_batch().records() == [b"second", b"third"]
        assert m.consumer() == m.prod
    finally:
        r.close()


def test_c_and_python_walks_identical_random(mem_ring: MemRing) -> None:
    """Random records (sizes, discards, busy records, limits, max_bytes) wrapping a 4 KiB ring many times."""
    assert ringbuf.native_walk() is not None, "src/sentinel_edge/_bpf/ringwalk.so is not built (run make)"
    m = mem_ring
    c = m.reader(True)
    py = m.reader(False)
    rng = random.Random(7)
    expect: list[bytes | None] = []  # None: a busy record the producer discarded at commit
    busy: tuple[int, int] | None = None  # (ring position, index in expect)
    got: list[bytes] = []
    try:
        for _ in range(1500):  # bounded
            for _k in range(rng.randint(0, 6) if busy is None else 0):
                n = rng.randint(0, 300)
                if m.size - (m.prod - m.consumer()) < 8 + n + 8:
                    break
                payload = rng.randbytes(n)
                flags = rng.choice([0] * 12 + [DISCARD] * 3 + [BUSY])
                pos = m.put(payload, flags)
                if flags != DISCARD:
                    expect.append(payload)
                if flags == BUSY:
                    busy = (pos, len(expect) - 1)
                    break
            if busy is not None and rng.random() < 0.3:
                commit = rng.choice([0, DISCARD])
                m.set_flags(busy[0], commit)
                if commit == DISCARD:
                    expect[busy[1]] = None
                busy = None
            limit = rng.choice([1 << 30, rng.randint(1, 6)])
            max_bytes = rng.choice([None, rng.randint(1, 900)])
            before = m.consumer()
            a = _peek(py, limit, max_bytes)
            assert m.consumer() == before
            b = (c if rng.random() < 0.5 else py).drain_batch(limit, max_bytes)
            _same(a, b)
            assert m.consumer() == before + len(b.buf)
            got += b.records()
        if busy is not None:
            m.set_flags(busy[0], 0)
        got += c.drain_batch().records()
        assert m.consumer() == m.prod
        assert got == [x for x in expect if x is not None] and len(got) > 500
    finally:
        c.close()
        py.close()


def test_missing_library_falls_back_to_python(mem_ring: MemRing, monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(ringbuf, "_WALK_LIB", "_bpf/no-such-ringwalk.so")
    ringbuf.native_walk.cache_clear()
    try:
        with caplog.at_level(logging.DEBUG, logger="sentinel_edge.loader.ringbuf"):
            assert ringbuf.native_walk() is None
            r = RingReader(mem_ring.fd, mem_ring.size, "test_ring")
            r2 = RingReader(mem_ring.fd, mem_ring.size, "test_ring")
        assert not r.native and not r2.native
        logs = [x for x in caplog.records if "ring header walk in C unavailable" in x.getMessage()]
        assert len(logs) == 1 and "no-such-ringwalk.so" in logs[0].getMessage()
        mem_ring.put(b"still works")
        assert r.drain_batch().records() == [b"still works"]
        r.close()
        r2.close()
    finally:
        ringbuf.native_walk.cache_clear()
