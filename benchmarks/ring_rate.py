"""Ring buffer to decoded batches: events/s and the highest zero-loss rate (prints figures; not a test).

    sudo .venv/bin/python benchmarks/ring_rate.py [--shape file|small|both] [--seconds 2]

A real BPF producer (benchmarks/bpf/ring_producer.bpf.c, built here with
clang -target bpf) writes records into a BPF ring buffer from a forked
process pinned to CPU 1, paced from user space in 1 ms slices (each slice one
BPF_PROG_TEST_RUN emitting its share with bpf_loop). The consumer runs in
this process, pinned to CPU 0, draining like the agent (back to back while
records come, a 10 ms sleep when the ring is empty). Consumers, same run:

  old     RingReader.drain (one bytes per record) + per-record decode
          (Decoder.decode for SE_EV_FILE records; struct.unpack_from for the
          48-byte records, which have no se_* struct);
  events  RingReader.drain_batch + Decoder.decode_batch (Events, as the agent needs);
  batch-py RingReader.drain_batch with its header walk in Python + columnar
          numpy decode (wire.batch): the batch path before ringwalk.c;
  batch   RingReader.drain_batch with the header walk in C (loader/ringwalk.c,
          _bpf/ringwalk.so via ctypes) + columnar numpy decode.

Shapes: `file` = SE_EV_FILE records, 264..352 bytes (se_hdr + se_proc +
se_file + path + resolved); `small` = 48-byte fixed-size records.
Loss = the producer's failed reservations; zero loss also needs consumed == written.
Each step also reports the consumer's own CPU time per record (process CPU
time while consuming, which other processes sharing CPU 0 do not inflate) and
how often it was preempted (involuntary context switches): with a ring of
8 MiB and ~315-byte records, the consumer may be off CPU for ~26 ms at
1 M/s before the producer finds the ring full.
"""

from __future__ import annotations

import argparse
import gc
import os
import resource
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np
from ringprod import SHAPE_FILE, SHAPE_SMALL, Producer

from sentinel_edge.loader.ringbuf import RingReader
from sentinel_edge.loader.session import default_object_path
from sentinel_edge.wire import Decoder
from sentinel_edge.wire.batch import BatchDecoder, gather, struct_dtype

SLICE_S = 0.001  # producer pacing slice
SAT_CHUNK = 4096  # records per run when unpaced
DRAIN_SLEEP_S = 0.010  # the agent's default drain_interval_ms
BATCH_LIMIT = 65536


@dataclass
class Result:
    target: int  # records/s asked for, 0 = saturation
    written: int
    failed: int
    consumed: int
    seconds: float  # producer's active time
    busy_s: float  # consumer time from first to last record
    cpu_s: float  # consumer process CPU time over the step
    preempted: int  # consumer's involuntary context switches over the step

    @property
    def cpu_us(self) -> float:
        """Consumer CPU time per record consumed, in microseconds."""
        return self.cpu_s / self.consumed * 1e6 if self.consumed else 0.0

    @property
    def zero_loss(self) -> bool:
        return self.failed == 0 and self.consumed == self.written

    @property
    def offered(self) -> float:
        return (self.written + self.failed) / self.seconds if self.seconds else 0.0


def produce(prod: Producer, shape: int, rate: int, seconds: float, wfd: int) -> None:
    """Child process: emit at `rate` records/s (0 = as fast as possible) for `seconds`."""
    os.sched_setaffinity(0, {1})
    written = failed = 0
    seq = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    due = 0.0
    runs = 0
    while runs < 50_000_000:  # bounded; the time check ends it
        now = time.perf_counter()
        if now >= end:
            break
        runs += 1
        if rate:
            due = rate * (now - t0) - seq  # records owed so far
            if due < 1:
                time.sleep(min(SLICE_S, end - now))
                continue
            n = int(min(due, rate * SLICE_S * 4))
        else:
            n = SAT_CHUNK
        ok, bad = prod.run(shape, n, seq)
        written += ok
        failed += bad
        seq += n
    dt = time.perf_counter() - t0
    os.write(wfd, struct.pack("<QQd", written, failed, dt))


def consume_loop(take: Callable[[], int], pid: int, rfd: int, deadline: float) -> tuple[int, float, bytes]:
    """Consume until the producer reported and the ring is empty; returns (count, busy seconds, report)."""
    total = 0
    first = last = 0.0
    report = b""
    done = False
    while time.perf_counter() < deadline:
        n = take()
        if n:
            now = time.perf_counter()
            if not total:
                first = now
            last = now
            total += n
            continue
        if done:
            break
        if not report:
            try:
                report = os.read(rfd, 24)
            except BlockingIOError:
                report = b""
            if report:
                done = True
                continue  # one more pass: what was produced before the report
        time.sleep(DRAIN_SLEEP_S)
    return total, last - first, report


def make_consumer(kind: str, shape: int, reader: RingReader, prod: Producer) -> Callable[[], int]:
    """The consumer `kind` (batch and batch-py differ only in the reader given: C or Python header walk)."""
    if shape == SHAPE_FILE:
        dec = Decoder.from_object(default_object_path())
        bdec = BatchDecoder.from_object(default_object_path())
        if kind == "old":
            def take_old() -> int:
                out: list[bytes] = []
                reader.drain(out, 2048)
                decode = dec.decode
                for r in out:
                    decode(r)
                return len(out)
            return take_old
        if kind == "events":
            def take_events() -> int:
                return len(dec.decode_batch(reader.drain_batch(BATCH_LIMIT)))
            return take_events

        def take_batch() -> int:
            db = bdec.decode(reader.drain_batch(BATCH_LIMIT))
            if db.errors:
                raise SystemExit(f"wire errors: {db.errors[:3]}")
            return len(db)
        return take_batch
    dt = struct_dtype(prod.btf, "bench_small")
    if kind == "old":
        unpack = struct.Struct(_fmt_of(dt)).unpack_from

        def take_old_small() -> int:
            out: list[bytes] = []
            reader.drain(out, 2048)
            for r in out:
                unpack(r)
            return len(out)
        return take_old_small

    def take_batch_small() -> int:
        raw = reader.drain_batch(BATCH_LIMIT)
        if len(raw) and not (raw.lengths >= dt.itemsize).all():
            raise SystemExit("short record")
        return len(gather(raw, raw.starts, dt))
    return take_batch_small


def _fmt_of(dt: np.dtype[Any]) -> str:
    """struct format of a flat-or-nested numpy dtype (leaves in offset order), from the BTF-built dtype."""
    leaves: list[tuple[int, np.dtype[Any]]] = []

    def walk(d: np.dtype[Any], base: int) -> None:
        assert d.fields is not None
        for name in d.names or ():
            sub, off = d.fields[name][:2]
            if sub.names:
                walk(sub, base + off)
            else:
                leaves.append((base + off, sub))

    walk(dt, 0)
    fmt = "<"
    pos = 0
    for off, d in sorted(leaves, key=lambda x: x[0]):
        if off > pos:
            fmt += f"{off - pos}x"
        fmt += {"u": "BHIQ", "i": "bhiq"}[d.kind]["\x01\x02\x04\x08".index(chr(d.itemsize))]
        pos = off + d.itemsize
    return fmt + (f"{dt.itemsize - pos}x" if dt.itemsize > pos else "")


def run_one(prod: Producer, reader: RingReader, consumer: Callable[[], int], shape: int, rate: int,
            seconds: float) -> Result:
    reader.drain_batch()  # start empty
    r, w = os.pipe()
    os.set_blocking(r, False)
    pid = os.fork()
    if pid == 0:  # the producer
        try:
            os.close(r)
            produce(prod, shape, rate, seconds, w)
        finally:
            os._exit(0)
    os.close(w)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    cpu0 = time.process_time()
    try:
        consumed, busy, report = consume_loop(consumer, pid, r, time.perf_counter() + seconds + 10)
        cpu = time.process_time() - cpu0
        preempted = resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw - ru0.ru_nivcsw
    finally:
        os.waitpid(pid, 0)
        os.close(r)
    if len(report) != 24:
        raise SystemExit("producer did not report")
    written, failed, dt = struct.unpack("<QQd", report)
    return Result(rate, written, failed, consumed, dt, busy, cpu, preempted)


def main() -> int:
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shape", choices=("file", "small", "both"), default="both")
    ap.add_argument("--seconds", type=float, default=2.0, help="producer time per step")
    ap.add_argument("--ring-kib", type=int, default=8192, help="ring size (the agent's file ring: 8192)")
    ap.add_argument("--rates", default="100000,200000,300000,500000,750000,1000000,1500000,2000000,"
                                       "3000000,4000000,6000000,8000000")
    args = ap.parse_args()
    if os.cpu_count() is None or (os.cpu_count() or 0) < 2:
        print("needs 2 CPUs (producer and consumer pinned apart)", file=sys.stderr)
        return 2
    rates = [int(x) for x in args.rates.split(",")]
    os.sched_setaffinity(0, {0})
    prod = Producer(args.ring_kib * 1024)
    reader = prod.reader()
    reader_py = prod.reader(native=False)
    if not reader.native:
        print("src/sentinel_edge/_bpf/ringwalk.so is missing (run make): 'batch' walks headers in Python too",
              file=sys.stderr)
    summary: list[str] = []
    try:
        shapes = [("file", SHAPE_FILE), ("small", SHAPE_SMALL)]
        for shape_name, shape in shapes:
            if args.shape not in (shape_name, "both"):
                continue
            kinds = ["old", "events", "batch-py", "batch"] if shape == SHAPE_FILE else ["old", "batch-py", "batch"]
            sat: dict[str, float] = {}
            best: dict[str, int] = {}
            cpu_us: dict[str, float] = {}
            print(f"== {shape_name} records, ring {args.ring_kib} KiB, {args.seconds:.1f} s per step")
            for kind in kinds:
                consumer = make_consumer(kind.removesuffix("-py"), shape,
                                         reader_py if kind.endswith("-py") else reader, prod)
                gc.collect()
                res = run_one(prod, reader, consumer, shape, 0, args.seconds)
                rate = res.consumed / res.busy_s if res.busy_s else 0.0
                sat[kind] = rate
                bound = "  (kept up: producer-bound)" if res.zero_loss else ""
                print(f"  {kind:<8} saturation: producer offered {res.offered:,.0f}/s, consumer {rate:,.0f} events/s "
                      f"(written {res.written:,}, failed {res.failed:,}, consumed {res.consumed:,}), "
                      f"consumer CPU {res.cpu_us:.2f} us/record, preempted {res.preempted}x{bound}")
                cpu_us[kind] = res.cpu_us
                best[kind] = 0
                for target in rates:
                    res = run_one(prod, reader, consumer, shape, target, args.seconds)
                    reached = res.offered >= 0.95 * target
                    verdict = "zero loss" if res.zero_loss else f"LOSS {res.failed:,} failed"
                    print(f"    paced {target:>9,}/s: offered {res.offered:>11,.0f}/s  {verdict}"
                          f"{'' if reached else '  (producer fell short)'}"
                          f"  consumed {res.consumed:,}/{res.written:,}  CPU {res.cpu_us:.2f} us/record, "
                          f"preempted {res.preempted}x")
                    if res.zero_loss and reached:
                        best[kind] = target
                    else:
                        break
            for kind in kinds:
                line = (f"{shape_name:<5} {kind:<8} saturation {sat[kind]:>11,.0f} events/s, "
                        f"highest zero-loss paced rate {best[kind]:>9,}/s, consumer CPU at saturation "
                        f"{cpu_us[kind]:.2f} us/record")
                summary.append(line)
            for kind in kinds[1:]:
                summary.append(f"{shape_name:<5} {kind}/old ratio: saturation x{sat[kind] / sat['old']:.1f}, "
                               f"zero-loss rate x{best[kind] / max(best['old'], 1):.1f}")
            summary.append(f"{shape_name:<5} batch/batch-py ratio (C vs Python header walk): saturation "
                           f"x{sat['batch'] / sat['batch-py']:.1f}, zero-loss rate "
                           f"x{best['batch'] / max(best['batch-py'], 1):.1f}")
    finally:
        reader.close()
        reader_py.close()
        prod.close()
    print("\n".join(["== summary", *summary]))
    # our program by id: other processes may load the same producer meanwhile (tests/wire/test_batch.py)
    left = subprocess.run(["bpftool", "prog", "show", "id", str(prod.prog_id)], capture_output=True, text=True)
    print("programs left loaded by this benchmark:",
          "none" if prod.prog_id and left.returncode != 0 else f"SOME (bug): prog id {prod.prog_id} still loaded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
