"""The agent as a user runs it: start, status, text output, SIGTERM flush, schema."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import AgentHandle, start_agent, stop_agent

pytestmark = pytest.mark.kernel

CLI = [sys.executable, "-m", "sentinel_edge.cli"]


def test_sigterm_flushes_everything_and_exits_0(tmp_path: Path) -> None:
    handle = start_agent(tmp_path, "sensors:\n  file: false\n  net: false\n")
    p = subprocess.run(["/bin/true", "flush-marker-1"])
    assert p.returncode == 0
    handle.proc.send_signal(signal.SIGTERM)  # at once: the event is still in the ring
    assert handle.proc.wait(30) == 0
    handle._read()
    kinds = [o["unmapped"]["event"] for o in handle.objects]
    assert any(o["unmapped"].get("argv") == ["/bin/true", "flush-marker-1"] for o in handle.objects)
    assert kinds[0] == "health" and handle.objects[0]["unmapped"]["health"]["what"] == "start"
    assert kinds[-1] == "health" and handle.objects[-1]["unmapped"]["health"]["what"] == "stop"
    # every program is detached: no link of ours is left
    out = subprocess.run(["bpftool", "-j", "link", "list"], capture_output=True, text=True)
    if out.returncode == 0:
        links = json.loads(out.stdout or "[]")
        mine = [ln for ln in links if ln.get("prog_name", "").startswith(("process_", "file_", "net_"))]
        assert not mine, mine


def test_disabled_sensors_are_not_loaded_and_status_says_so(tmp_path: Path) -> None:
    handle = start_agent(tmp_path, "sensors:\n  net: false\n  mem: false\nstats_interval_s: 0.2\n")
    try:
        time.sleep(0.5)
        res = subprocess.run([*CLI, "status", "--status-file", str(handle.status_file)],
                             capture_output=True, text=True, timeout=30)
        assert res.returncode == 0, res.stderr
        assert f"agent pid {handle.proc.pid}: running" in res.stdout
        assert "kernel counters (emitted / dropped / deduped / filtered):" in res.stdout
        for s in ("process", "file", "net", "priv", "mem"):
            assert f"  {s:<8}" in res.stdout
        st = json.loads(subprocess.run([*CLI, "status", "--json", "--status-file", str(handle.status_file)],
                                       capture_output=True, text=True).stdout)
        progs = {p["name"]: p for p in st["programs"]}
        assert progs["process_exec"]["state"] == "attached"
        net = [p for p in st["programs"] if p["sensor"] == "net"]
        assert net and all(p["state"] == "skipped" and "sensor net is off" in p["reason"] for p in net)
        assert st["kernel"]["net"]["emitted"] == 0
        assert st["kernel"]["process"]["emitted"] > 0
    finally:
        assert stop_agent(handle) == 0
    res = subprocess.run([*CLI, "status", "--status-file", str(handle.status_file)], capture_output=True, text=True)
    assert res.returncode == 1 and "NOT running" in res.stdout


def test_status_of_a_killed_agent_says_it_is_gone(tmp_path: Path) -> None:
    handle = start_agent(tmp_path, "sensors:\n  file: false\n")
    time.sleep(1.2)
    os.kill(handle.proc.pid, signal.SIGKILL)
    handle.proc.wait()
    res = subprocess.run([*CLI, "status", "--status-file", str(handle.status_file)], capture_output=True, text=True)
    assert res.returncode == 1
    assert "no longer running" in res.stdout


def test_text_format_prints_one_readable_line_per_event(tmp_path: Path) -> None:
    out = tmp_path / "events.txt"
    ready = tmp_path / "ready"
    proc = subprocess.Popen([*CLI, "run", "--format", "text", "-o", str(out), "--ready-file", str(ready),
                             "--status-file", str(tmp_path / "st.json")], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.05)
        subprocess.run(["/bin/echo", "text-format-marker\nsecond line"], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    lines = out.read_text().splitlines()
    hits = [ln for ln in lines if "text-format-marker" in ln]
    assert len(hits) == 1
    line = hits[0]
    assert " exec " in line and "exe=/usr/bin/echo" in line
    assert "text-format-marker\\nsecond line" in line  # the newline is escaped, one event stays one line


def test_every_object_the_shared_agent_wrote_validates(agent: AgentHandle) -> None:
    from sentinel_edge.output.ocsf.schema import validate

    mark = agent.mark()
    p = subprocess.run(["/bin/true", "schema-marker"])
    agent.wait_for(lambda o: o["unmapped"].get("argv") == ["/bin/true", "schema-marker"], mark)
    assert p.returncode == 0
    # (the agent fixture's teardown checks the same for every object of the whole session)
    bad = []
    for o in agent.objects:
        errs = validate(o)
        if errs:
            bad.append((o["unmapped"]["event"], errs[:3]))
    assert not bad, bad[:10]


def test_full_disk_is_counted_not_fatal(tmp_path: Path) -> None:
    """Output on a full filesystem: events are counted as dropped, the agent keeps running."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=True)
    try:
        out = mnt / "events.jsonl"
        ready = tmp_path / "ready"
        status = tmp_path / "status.json"
        proc = subprocess.Popen([*CLI, "run", "-o", str(out), "--ready-file", str(ready), "--status-file",
                                 str(status), "-c", str(_write_cfg(tmp_path, "stats_interval_s: 0.2\n"))],
                                stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 60
            while not ready.exists():
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.05)
            for _ in range(40):  # far more than 64 KiB of events
                subprocess.run(["/bin/true", "fill-the-disk"])
            deadline = time.monotonic() + 15
            st: dict[str, object] = {}
            while time.monotonic() < deadline:
                time.sleep(0.3)
                st = json.loads(status.read_text())
                if int(str(st["output_errors"])) > 0:
                    break
            assert proc.poll() is None, "the agent died on a full disk"
            assert int(str(st["output_errors"])) > 0
            assert int(str(st["user_dropped"])) >= int(str(st["output_errors"]))
            assert int(str(st["written"])) > 0
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(30)
            err = proc.stderr.read().decode() if proc.stderr else ""
        assert rc == 0, err
        assert "No space left on device" in err
        assert "Traceback" not in err
        # what was written is whole lines of valid JSON
        for line in out.read_bytes().splitlines():
            json.loads(line)
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _write_cfg(tmp: Path, text: str) -> Path:
    p = tmp / "cfg.yaml"
    p.write_text(text)
    return p


def _stuck_report(proc: subprocess.Popen[bytes], errf: Path, status: Path) -> str:
    """What a stuck agent is doing: its Python stacks (SIGUSR1), kernel wait channel and stack, status."""
    parts = []
    for name in ("wchan", "stack", "status"):
        try:
            parts.append(f"/proc/{proc.pid}/{name}:\n{Path(f'/proc/{proc.pid}/{name}').read_text()}")
        except OSError as exc:
            parts.append(f"/proc/{proc.pid}/{name}: {exc}")
    try:
        os.kill(proc.pid, signal.SIGUSR1)  # faulthandler: every thread's stack to stderr
        time.sleep(1)
    except ProcessLookupError:
        pass
    parts.append(f"status file:\n{status.read_text() if status.exists() else '(none)'}")
    parts.append(f"stderr:\n{errf.read_text() if errf.exists() else ''}")
    return "\n".join(parts)


def test_closed_stdout_stops_the_agent_cleanly(tmp_path: Path) -> None:
    """The reader of the agent's stdout pipe reads three events and closes it: the agent stops, exit 0."""
    errf = tmp_path / "stderr.txt"
    status = tmp_path / "st.json"
    with errf.open("wb") as err_out:
        proc = subprocess.Popen([*CLI, "run", "--status-file", str(status)], stdout=subprocess.PIPE,
                                stderr=err_out, start_new_session=True)
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    try:
        buf = b""
        deadline = time.monotonic() + 60
        while buf.count(b"\n") < 3 and time.monotonic() < deadline and proc.poll() is None:
            subprocess.run(["/bin/true"])  # keep events coming
            if select.select([fd], [], [], 0.2)[0]:
                buf += os.read(fd, 1 << 16)
        assert buf.count(b"\n") >= 3, f"fewer than 3 lines in 60 s\n{_stuck_report(proc, errf, status)}"
        proc.stdout.close()  # the reader goes away
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:
            subprocess.run(["/bin/true"])
            time.sleep(0.2)
        assert proc.poll() is not None, (
            f"the agent kept running after its reader exited\n{_stuck_report(proc, errf, status)}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == 0
    for line in buf.splitlines()[:3]:
        assert json.loads(line)["metadata"]["product"]["name"] == "SentinelEdge"
    err = errf.read_text()
    assert "output closed by its reader, stopping" in err
    assert "Traceback" not in err


def test_idle_agent_notices_its_reader_is_gone(tmp_path: Path) -> None:
    """With no event to write, a closed pipe is still noticed (POLLERR on the write end)."""
    cfg = _write_cfg(tmp_path, "sensors: {process: false, file: false, net: false, priv: false, mem: false}\n")
    errf = tmp_path / "stderr.txt"
    cmd = (f"{sys.executable} -m sentinel_edge.cli run --config {cfg} --status-file {tmp_path}/st.json "
           f"2>{errf} | head -n 1; echo pipestatus=${{PIPESTATUS[0]}}")
    proc = subprocess.Popen(["bash", "-c", cmd], stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=30)
    lines = out.splitlines()
    err = errf.read_text()
    assert len(lines) == 2, err
    assert json.loads(lines[0])["unmapped"]["health"]["what"] == "start"
    assert lines[1] == "pipestatus=0"
    assert "output closed by its reader, stopping" in err
