"""Loss accounting: nothing is lost silently.

With a tiny process ring and nobody draining it, every event the kernel
tried to send is either delivered or counted as dropped, exactly.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from sentinel_edge import config
from sentinel_edge.loader import probes
from sentinel_edge.loader.session import BpfSession
from sentinel_edge.wire import Decoder

pytestmark = pytest.mark.kernel


def test_tiny_ring_paused_consumer_counts_every_drop() -> None:
    cfg = config.load(None)
    for s in ("file", "net", "priv", "mem"):
        setattr(cfg.sensors, s, False)
    cfg.rings.process_kib = 4  # one page: a handful of exec events
    sess = BpfSession(cfg, probes.probe())
    sess.start()
    try:
        dec = Decoder(sess.btf)
        before = sess.stats()["process"]
        # drain whatever the host produced so far, then pause the consumer
        pre: list[bytes] = []
        sess.readers["process"].drain(pre)
        before = sess.stats()["process"]
        n = 60
        procs = subprocess.run(
            ["sh", "-c", f"i=0; while [ $i -lt {n} ]; do /bin/true; i=$((i+1)); done; echo $$"],
            capture_output=True, text=True, check=True,
        )
        shell_pid = int(procs.stdout.strip())
        time.sleep(0.05)
        after = sess.stats()["process"]
        out: list[bytes] = []
        sess.readers["process"].drain(out)
        final = sess.stats()["process"]
        emitted = final["emitted"] - before["emitted"]
        dropped = final["dropped"] - before["dropped"]
        # everything emitted after the first drain is delivered; the rest was counted
        assert len(out) == emitted
        assert dropped > 0, "a 4 KiB ring cannot hold 180 events: drops must be counted"
        assert after["dropped"] == final["dropped"]
        ours = [e for e in map(dec.decode, out) if e.proc["pid"] == shell_pid or e.proc["ppid"] == shell_pid]
        # the shell forks, each child execs and exits: 3 events per iteration
        assert len(ours) < 3 * n
        assert len(ours) + dropped >= 3 * n
    finally:
        sess.close()


def test_agent_raises_a_health_event_when_events_are_lost(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from conftest import start_agent, stop_agent

    handle = start_agent(tmp_path, "rings:\n  process_kib: 4\nstats_interval_s: 0.2\n")
    try:
        os.kill(handle.proc.pid, signal.SIGSTOP)  # a paused consumer
        try:
            subprocess.run(["sh", "-c", "i=0; while [ $i -lt 100 ]; do /bin/true; i=$((i+1)); done"], check=True)
        finally:
            os.kill(handle.proc.pid, signal.SIGCONT)
        loss = handle.wait_for(
            lambda o: o.get("unmapped", {}).get("health", {}).get("what") == "loss", timeout=15
        )
        assert loss["class_uid"] == 1008
        assert loss["status_id"] == 2
        health = loss["unmapped"]["health"]
        assert health["kernel_dropped_delta"]["process"] > 0
        assert "in kernel ring process" in loss["message"]
        time.sleep(0.5)
        st = handle.status()
        assert st["kernel"]["process"]["dropped"] >= health["kernel_dropped_delta"]["process"]
    finally:
        assert stop_agent(handle) == 0
    # the final stop event carries the totals
    stop = [o for o in handle.objects if o.get("unmapped", {}).get("health", {}).get("what") == "stop"]
    assert len(stop) == 1 and stop[0]["unmapped"]["health"]["kernel_dropped"] > 0


def test_file_flood_costs_no_exec_event(tmp_path: Path) -> None:
    """Separate rings: a flood that overflows the file ring leaves every exec event intact."""
    cfg = config.load(None)
    for s in ("net", "priv", "mem"):
        setattr(cfg.sensors, s, False)
    cfg.rings.file_kib = 4  # overflows at once
    cfg.file.dedup_window_ms = 0
    sess = BpfSession(cfg, probes.probe())
    sess.start()
    try:
        dec = Decoder(sess.btf)
        for r in sess.readers.values():
            r.drain([])
        before = sess.stats()
        script = (
            f"i=0; while [ $i -lt 30 ]; do /bin/true flood-exec; "
            f"j=0; while [ $j -lt 50 ]; do : > {tmp_path}/f$j; j=$((j+1)); done; i=$((i+1)); done; echo $$"
        )
        res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, check=True)
        shell = int(res.stdout.strip())
        time.sleep(0.05)
        out: list[bytes] = []
        sess.readers["process"].drain(out)
        after = sess.stats()
        assert after["file"]["dropped"] - before["file"]["dropped"] > 0, "the file ring must overflow"
        assert after["process"]["dropped"] == before["process"]["dropped"]
        execs = [e for e in map(dec.decode, out)
                 if e.kind == "exec" and e.proc["ppid"] == shell and e.data["argv"] == b"/bin/true\0flood-exec\0"]
        assert len(execs) == 30
    finally:
        sess.close()
