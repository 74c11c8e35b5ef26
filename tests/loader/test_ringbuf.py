"""RingReader.drain_batch over a real BPF ring buffer.

A real BPF program (benchmarks/bpf/ring_producer.bpf.c) writes the records:
variable-size SE_EV_FILE records, fixed-size 48-byte records (taken by the
vectorized run path) and records echoed byte for byte. Checked: the batch
holds exactly the records drain() would give, in order, across the end of the
ring (wrap-around), with `limit` and `max_bytes` respected, and every record
written is read once (written == read) even when the ring overflows.
"""

from __future__ import annotations

import random
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from sentinel_edge.wire.batch import gather, struct_dtype

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ringprod import SHAPE_FILE, SHAPE_SMALL, Producer

pytestmark = [pytest.mark.kernel,
              pytest.mark.skipif(shutil.which("clang") is None, reason="clang builds the test producer")]


@pytest.fixture
def small_ring() -> Iterator[Producer]:
    p = Producer(16384)  # 16 KiB: every few runs wrap around
    yield p
    p.close()


def _seqs(p: Producer, raw_records: list[bytes]) -> list[int]:
    """Sequence numbers: ino of file records, seq of small ones."""
    out = []
    for r in raw_records:
        if r[0] == 10:
            out.append(int.from_bytes(r[152:160], "little"))  # se_file.ino, checked against BTF below
        else:
            out.append(int.from_bytes(r[16:24], "little"))
    return out


def test_offsets_used_here_match_btf(small_ring: Producer) -> None:
    from sentinel_edge.loader.btf import Btf
    from sentinel_edge.loader.session import default_object_path

    btf = Btf.from_elf(default_object_path())
    assert ("ino", 152, 8) in btf.layout("se_file")
    assert ("seq", 16, 8) in small_ring.btf.layout("bench_small")


def test_batch_equals_drain_across_wraparound(small_ring: Producer) -> None:
    p = small_ring
    a = p.reader()
    b = p.reader()  # a second mapping of the same ring, read with drain() before a publishes
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
            raw = a.drain_batch()
            assert raw.records() == by_drain
            got = _seqs(p, raw.records())
            assert got == list(range(expect_next, expect_next + n))
            expect_next += n
            assert a.pending_bytes() == 0
        assert a.records == seq
    finally:
        a.close()
        b.close()


def test_fixed_size_run_and_limits(small_ring: Producer) -> None:
    p = small_ring
    r = p.reader()
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


def test_echoed_records_byte_for_byte(small_ring: Producer) -> None:
    p = small_ring
    r = p.reader()
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


def test_overflow_every_record_read_or_counted(small_ring: Producer) -> None:
    p = small_ring
    r = p.reader()
    try:
        ok, failed = p.run(SHAPE_FILE, 500, 0)  # ~150 KiB into 16 KiB
        assert failed > 0 and ok + failed == 500
        raw = r.drain_batch()
        assert len(raw) == ok
        assert _seqs(p, raw.records()) == list(range(ok))  # the first ones fit, the rest failed
    finally:
        r.close()
