"""Cost of each user-space pipeline stage per event (prints figures; not a test).

    sudo .venv/bin/python benchmarks/pipeline.py

Captures real records from the kernel (an exec loop and file opens, all
sensors on), then times each stage over the captured records: ring drain
(records/s copied out of the mmap), decode, enrich, OCSF mapping, JSON
serialisation. Reports per-event microseconds and events/s per stage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import orjson

from sentinel_edge import config
from sentinel_edge.enrich import Enricher
from sentinel_edge.enrich.host import host_info
from sentinel_edge.loader import probes
from sentinel_edge.loader.session import BpfSession
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import mapper_for
from sentinel_edge.wire import Decoder


def main() -> int:
    if os.geteuid() != 0:
        print("run as root", file=sys.stderr)
        return 2
    cfg = config.load(None)
    cfg.file.dedup_window_ms = 0
    cfg.rings.file_kib = 65536
    cfg.rings.process_kib = 16384
    sess = BpfSession(cfg, probes.probe())
    sess.start()
    raws: list[bytes] = []
    try:
        with tempfile.TemporaryDirectory() as d:
            subprocess.run(["sh", "-c", "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done"], check=True)
            for i in range(20000):
                with open(os.path.join(d, f"f{i % 500}"), "w"):
                    pass
            time.sleep(0.05)
            t0 = time.perf_counter()
            for r in sess.readers.values():
                r.drain(raws)
            t_drain = time.perf_counter() - t0
    finally:
        stats = sess.stats()
        dec = Decoder(sess.btf)
        sess.close()
    n = len(raws)
    dropped = sum(s["dropped"] for s in stats.values())
    print(f"captured {n} records ({sum(map(len, raws)) / max(n, 1):.0f} bytes avg), kernel dropped {dropped}")

    def stage(name: str, fn, items):  # type: ignore[no-untyped-def]
        t = time.perf_counter()
        out = [fn(x) for x in items]
        dt = time.perf_counter() - t
        print(f"  {name:<10} {dt / len(items) * 1e6:7.2f} us/event  {len(items) / dt:>12,.0f} events/s")
        return out

    print(f"  {'drain':<10} {t_drain / n * 1e6:7.2f} us/event  {n / t_drain:>12,.0f} events/s")
    events = stage("decode", dec.decode, raws)
    host = host_info()
    enr = Enricher(host=host)
    enr.seed()
    events = stage("enrich", enr.enrich, events)
    objs = stage("ocsf", lambda e: to_ocsf(e, host), [e for e in events if mapper_for(e.kind)])
    stage("json", lambda o: json.dumps(o, separators=(",", ":")), objs)
    lines = stage("orjson", orjson.dumps, objs)
    print(f"  output {sum(map(len, lines)) / len(lines):.0f} bytes per JSON line on average")
    by_kind: dict[str, list[int]] = {}
    for o, line in zip(objs, lines, strict=True):
        by_kind.setdefault(o["unmapped"]["event"], []).append(len(line))
    print("  bytes per line by kind: " + ", ".join(f"{k} {sum(v) // len(v)}" for k, v in by_kind.items()))
    if os.environ.get("PROFILE"):
        import cProfile
        import pstats

        sample = [e for e in events if mapper_for(e.kind)]
        cProfile.runctx("for e in sample: to_ocsf(e, host)", globals(), locals(), "/tmp/ocsf.prof")
        pstats.Stats("/tmp/ocsf.prof").sort_stats("tottime").print_stats(12)
    kinds: dict[str, int] = {}
    for e in events:
        kinds[e.kind] = kinds.get(e.kind, 0) + 1
    print(f"  kinds: {kinds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
