"""The columnar batch decoder gives exactly what Decoder.decode gives.

Records travel through real kernel ring buffers: records built for every
event type are written by a real BPF program (benchmarks/bpf/ring_producer.bpf.c,
echo mode), and real events come from an in-process BpfSession watching
processes this test starts. For each record, every fixed field, char array
and se_str of the columnar batch must equal the Event that Decoder.decode
makes of the same bytes, and Decoder.decode_batch must give equal Events.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sentinel_edge import config
from sentinel_edge.errors import WireError
from sentinel_edge.loader import probes
from sentinel_edge.loader.ringbuf import RawBatch
from sentinel_edge.loader.session import BpfSession, default_object_path
from sentinel_edge.model import Event
from sentinel_edge.wire import Decoder
from sentinel_edge.wire.batch import BatchDecoder, DecodedBatch, gather, struct_dtype

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
from ringprod import SHAPE_FILE, SHAPE_SMALL, Producer

pytestmark = pytest.mark.kernel

needs_clang = pytest.mark.skipif(shutil.which("clang") is None, reason="clang builds the test producer")


@pytest.fixture(scope="module")
def decoder() -> Decoder:
    return Decoder.from_object(default_object_path())


@pytest.fixture(scope="module")
def bdecoder() -> BatchDecoder:
    return BatchDecoder.from_object(default_object_path())


@pytest.fixture(scope="module")
def producer() -> Iterator[Producer]:
    if shutil.which("clang") is None:
        pytest.skip("clang builds the test producer")
    p = Producer(1 << 20)
    yield p
    p.close()


def _expected(ev: Event, path: str) -> Any:
    """The value Decoder.decode gives for a field path of the batch layout."""
    parts = path.split(".")
    if parts[0] == "hdr":
        return {"type": ev.type_id, "ts_ns": ev.ts_ns, "cpu": ev.cpu}.get(parts[1], KeyError)
    cur: Any = ev.proc if parts[0] == "proc" else ev.data[parts[0]]
    for p in parts[1:]:
        cur = cur[p]
    return cur


def assert_same(db: DecodedBatch, events: list[Event]) -> int:
    """Every record of the batch equals its decoded Event field by field; returns fields compared."""
    compared = 0
    assert len(db) == len(events)
    for tb in db.by_type.values():
        lay = tb.layout
        assert set(lay.strings) | set(lay.texts) <= {p for p, _ in lay.leaves}
        for j, row in enumerate(tb.rows.tolist()):
            ev = events[row]
            assert ev.type_id == lay.type_id
            for path, dt in lay.leaves:
                want = _expected(ev, path)
                if want is KeyError:
                    continue  # hdr.size is not part of Event
                if path in lay.strings:
                    got: Any = tb.string(path, j)
                elif dt.kind == "S":
                    got = tb.text(path, j)
                elif dt.subdtype is not None:
                    got = tb.column(path)[j].tolist()
                else:
                    got = int(tb.column(path)[j])
                assert got == want, f"{lay.struct_name}.{path} record {row}: batch {got!r} != decode {want!r}"
                compared += 1
        for path in lay.strings:  # the bulk accessor agrees with the per-record one
            assert tb.strings(path) == [tb.string(path, j) for j in range(len(tb))]
    return compared


def _random_record(decoder: Decoder, type_id: int, rng: random.Random, case: int) -> bytes:
    """A record of one event type: random fixed part, se_str tails of random bytes (NULs included)."""
    lay = decoder.layouts[type_id]
    members = decoder.btf.layout(lay.struct_name)  # (name, offset, size) from BTF
    rec = bytearray(rng.randbytes(lay.size))
    rec[0:2] = type_id.to_bytes(2, "little")
    tail = bytearray()
    for name, off, _size in members:
        t = decoder.btf.resolve(next(m[1] for m in decoder.btf.struct(lay.struct_name).members if m[0] == name))
        if t.name != "se_str" or name.startswith("_pad"):
            continue
        content = rng.randbytes(rng.choice([0, 1, 7, 40, 300]))
        start = lay.size + len(tail)
        length = len(content)
        if case == 1 and name in ("path", "argv", "name", "unix_path", "source"):
            length += 50  # runs past the end of the record: clamped like slicing the record
        if case == 2:
            start = 60000  # beyond the record: empty
        rec[off : off + 4] = start.to_bytes(2, "little") + length.to_bytes(2, "little")
        tail += content + b"\0"
    rec += tail
    rec += bytes(-len(rec) % 8)
    if case == 3:
        rec += rng.randbytes(24)  # a record longer than its strings
    return bytes(rec)


@needs_clang
def test_every_event_type_through_a_real_ring(decoder: Decoder, bdecoder: BatchDecoder, producer: Producer) -> None:
    assert set(bdecoder.layouts) == set(decoder.layouts)
    rng = random.Random(20261124)
    sent: list[bytes] = []
    for type_id in decoder.layouts:
        for case in range(4):
            for _ in range(3):
                sent.append(_random_record(decoder, type_id, rng, case))
    rng.shuffle(sent)
    reader = producer.reader()
    try:
        reader.drain_batch()
        for rec in sent:
            assert producer.echo(rec), "the 1 MiB ring cannot be full here"
        raw = reader.drain_batch()
    finally:
        reader.close()
    assert raw.records() == sent
    events = [decoder.decode(r) for r in sent]
    db = bdecoder.decode(raw)
    assert not db.errors
    assert {t for t in db.by_type} == set(decoder.layouts)
    compared = assert_same(db, events)
    assert compared > 1000
    assert decoder.decode_batch(raw) == events


def test_records_that_break_the_contract(decoder: Decoder, bdecoder: BatchDecoder) -> None:
    rng = random.Random(7)
    good = _random_record(decoder, 10, rng, 0)
    exec_id = next(t for t, lay in decoder.layouts.items() if lay.kind == "exec")
    parts = [good, bytes(8), (999).to_bytes(2, "little") + bytes(150), _random_record(decoder, exec_id, rng, 0)[:120],
             good]
    buf = b""
    starts, lengths = [], []
    for p in parts:
        starts.append(len(buf) + 8)
        lengths.append(len(p))
        buf += bytes(8) + p + bytes(-len(p) % 8)
    raw = RawBatch(buf, np.array(starts, dtype=np.int64), np.array(lengths, dtype=np.int64))
    messages = []
    for p in parts[1:4]:
        with pytest.raises(WireError) as exc:
            decoder.decode(p)
        messages.append(str(exc.value))
    db = bdecoder.decode(raw)
    assert db.errors == [(1, messages[0]), (2, messages[1]), (3, messages[2])]
    assert len(db) == 2 and db.by_type[10].rows.tolist() == [0, 4]
    errors: list[str] = []
    assert decoder.decode_batch(raw, errors) == [decoder.decode(good)] * 2
    assert errors == messages


def _activity(tmp: Path) -> None:
    """Exec, fork, exit, file, network and memory events from child processes."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    port = srv.getsockname()[1]
    script = (
        "import mmap, os, socket\n"
        f"for i in range(5):\n    open('{tmp}/f%d' % i, 'w').close()\n"
        f"os.rename('{tmp}/f0', '{tmp}/g0')\nos.unlink('{tmp}/g0')\n"
        f"s = socket.create_connection(('127.0.0.1', {port})); s.close()\n"
        "m = mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)\n"
        "os.memfd_create('se-batch-test')\n"
    )
    try:
        # a shell forks (our own forks are filtered: the session ignores this process)
        subprocess.run(["sh", "-c", "/bin/true batch-test; /bin/true batch-test; /bin/true"], check=True, timeout=10)
        subprocess.run([sys.executable, "-c", script], check=True, timeout=30)
        conn, _ = srv.accept()
        conn.close()
    finally:
        srv.close()


def test_real_kernel_events(decoder: Decoder, bdecoder: BatchDecoder, tmp_path: Path) -> None:
    cfg = config.load(None)
    cfg.file.dedup_window_ms = 0
    sess = BpfSession(cfg, probes.probe())
    sess.start()
    kinds: set[str] = set()
    total = 0
    try:
        dec = Decoder(sess.btf)
        bdec = BatchDecoder(sess.btf)
        for r in sess.readers.values():
            r.drain_batch()
        _activity(tmp_path)
        time.sleep(0.05)
        for name, reader in sess.readers.items():
            raw = reader.drain_batch()
            events = [dec.decode(r) for r in raw.records()]
            db = bdec.decode(raw)
            assert not db.errors, name
            assert_same(db, events)
            assert dec.decode_batch(raw) == events
            kinds |= {e.kind for e in events}
            total += len(events)
    finally:
        sess.close()
    assert {"exec", "fork", "exit", "file", "net"} <= kinds, kinds
    assert total >= 20


@needs_clang
def test_columns_of_fixed_and_variable_size_runs(producer: Producer, bdecoder: BatchDecoder) -> None:
    reader = producer.reader()
    try:
        reader.drain_batch()
        assert producer.run(SHAPE_FILE, 500, 1000) == (500, 0)
        assert producer.run(SHAPE_SMALL, 700, 5000) == (700, 0)
        assert producer.run(SHAPE_FILE, 300, 1500) == (300, 0)
        raw = reader.drain_batch()
    finally:
        reader.close()
    assert len(raw) == 1500
    db = bdecoder.decode(raw)
    # the 48-byte records are not se_* events: reported, never decoded as something else
    assert [r for r, _ in db.errors] == list(range(500, 1200))
    assert all(msg == "unknown event type 100" for _, msg in db.errors)
    files = db.kind("file")
    assert files is not None
    assert files.column("ino").tolist() == list(range(1000, 1500)) + list(range(1500, 1800))
    template = b"/var/lib/sentinel-bench/tenant-0042/objects/2026/11/24/blob-0123456789abcdef0123456789abcdef"
    plen = [24 + (q & 31) + ((q >> 5) & 15) for q in files.column("ino").tolist()]  # as the producer makes them
    assert files.strings("path") == [template[:n] for n in plen]
    assert files.strings("resolved") == [template[: n + 8] for n in plen]
    assert [files.text("proc.comm", j) for j in (0, 799)] == [b"bench-writer"] * 2
    assert (files.column("proc.pid") == 4000 + (files.column("ino") & 1023)).all()
    small_rows = np.array([r for r, _ in db.errors])
    dt = struct_dtype(producer.btf, "bench_small")
    small = gather(raw, raw.starts[small_rows], dt)
    assert small["seq"].tolist() == list(range(5000, 5700))
    assert (small["a"] == small["seq"] * 3).all()
    assert (small["hdr"]["size"] == 48).all()
