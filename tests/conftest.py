"""Shared fixtures: one running agent for all kernel tests, C helper builds.

The ``agent`` fixture starts the real ``sentinel-edge run`` as a subprocess
(the agent ignores its own pid, so actions are done by other processes),
writing OCSF JSON lines to a file the handle tails.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "tests" / "helpers"
ARTIFACTS = ROOT / "test-artifacts"

Obj = dict[str, Any]


def pytest_configure(config: pytest.Config) -> None:
    # A fresh machine may not have tracefs mounted yet; the agent mounts it on
    # start, but tests also look at it before any agent runs.
    if os.geteuid() == 0:
        from sentinel_edge.loader.probes import find_tracefs

        find_tracefs(mount_if_missing=True)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="kernel tests load eBPF programs and need root")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


class AgentHandle:
    """A running agent and the OCSF objects it has written so far."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, status: Path, log: Path) -> None:
        self.proc = proc
        self.out = out
        self.status_file = status
        self.log = log
        self.objects: list[Obj] = []
        self._fh = out.open("rb")
        self._partial = b""

    def _read(self) -> None:
        chunk = self._fh.read()
        if not chunk:
            return
        data = self._partial + chunk
        lines = data.split(b"\n")
        self._partial = lines.pop()
        for line in lines:
            if line:
                self.objects.append(json.loads(line))

    def mark(self) -> int:
        """Position after everything written so far (wait one drain so it is complete)."""
        time.sleep(0.05)
        self._read()
        return len(self.objects)

    def find_all(self, pred: Callable[[Obj], bool], since: int = 0) -> list[Obj]:
        self._read()
        return [o for o in self.objects[since:] if pred(o)]

    def wait_for(self, pred: Callable[[Obj], bool], since: int = 0, timeout: float = 10.0) -> Obj:
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            for o in self.objects[since:]:
                if pred(o):
                    return o
            if time.monotonic() > deadline:
                recent = self.objects[since:][-15:]
                raise AssertionError(
                    f"no matching event within {timeout}s; last {len(recent)} events since mark:\n"
                    + "\n".join(summary(o) for o in recent)
                )
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def wait_all(self, pred: Callable[[Obj], bool], count: int, since: int = 0, timeout: float = 10.0) -> list[Obj]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_all(pred, since)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)

    def status(self) -> Obj:
        data: Obj = json.loads(self.status_file.read_text())
        return data


def summary(o: Obj) -> str:
    """One short line per object for failure messages."""
    um = o.get("unmapped", {})
    actor = o.get("actor", {}).get("process", {})
    proc = o.get("process", {})
    extra = {k: um[k] for k in ("op", "filename", "argv", "path", "ret") if k in um}
    return (f"{um.get('event')} class={o.get('class_uid')}/{o.get('activity_id')} actor={actor.get('name')}"
            f"[{actor.get('pid')}] process={proc.get('name')}[{proc.get('pid')}] "
            f"file={o.get('file', {}).get('path')} {json.dumps(extra)[:300]} msg={o.get('message', '')[:120]}")


def by_pid(pid: int, kind: str | None = None) -> Callable[[Obj], bool]:
    """Predicate: objects whose actor process is `pid` (and of event kind `kind`)."""

    def pred(o: Obj) -> bool:
        um = o.get("unmapped", {})
        if kind is not None and um.get("event") != kind:
            return False
        return bool(um.get("proc", {}).get("pid") == pid)

    return pred


def run_helper(binary: str, *args: str) -> dict[str, int]:
    """Run a C test helper that prints key=integer lines; returns them."""
    res = subprocess.run([binary, *args], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, f"{binary} {args}: rc={res.returncode}\n{res.stdout}\n{res.stderr}"
    out: dict[str, int] = {}
    for line in res.stdout.splitlines():
        k, _, v = line.partition("=")
        out[k] = int(v)
    return out


def start_agent(tmp: Path, config_text: str | None = None, extra: list[str] | None = None) -> AgentHandle:
    out = tmp / "events.jsonl"
    out.touch()
    ready = tmp / "ready"
    status = tmp / "status.json"
    log = tmp / "agent.log"
    cmd = [sys.executable, "-m", "sentinel_edge.cli", "run", "--format", "json", "--output", str(out),
           "--ready-file", str(ready), "--status-file", str(status)]
    if config_text is not None:
        cfg = tmp / "config.yaml"
        cfg.write_text(config_text)
        cmd += ["--config", str(cfg)]
    cmd += extra or []
    logf = log.open("wb")
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, cwd=str(tmp))
    deadline = time.monotonic() + 60
    while not ready.exists():
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode}:\n{log.read_text()[-5000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"agent not ready after 60 s:\n{log.read_text()[-5000:]}")
        time.sleep(0.05)
    return AgentHandle(proc, out, status, log)


def stop_agent(handle: AgentHandle, timeout: float = 30, read_output: bool = True) -> int:
    if handle.proc.poll() is None:
        handle.proc.send_signal(signal.SIGTERM)
        try:
            handle.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            handle.proc.kill()
            handle.proc.wait()
    if read_output:
        handle._read()
    return handle.proc.returncode


@pytest.fixture(scope="session")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AgentHandle]:
    """One agent on the embedded defaults, shared by every kernel test."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tmp = tmp_path_factory.mktemp("agent")
    handle = start_agent(tmp)
    try:
        yield handle
    finally:
        rc = stop_agent(handle)
        ARTIFACTS.mkdir(exist_ok=True)
        shutil.copy(handle.log, ARTIFACTS / "agent.log")
        if rc != 0:
            raise AssertionError(f"agent exited with {rc} on SIGTERM:\n{handle.log.read_text()[-3000:]}")
        # every object the shared agent wrote during the whole session is valid OCSF
        from sentinel_edge.output.ocsf.schema import validate

        bad = [(summary(o), validate(o)[:3]) for o in handle.objects if validate(o)]
        if bad:
            raise AssertionError(f"{len(bad)} of {len(handle.objects)} objects are not valid OCSF: {bad[:5]}")


@pytest.fixture(scope="session")
def c_helper(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    """Compile tests/helpers/<name>.c once per session; returns the binary path."""
    out_dir = tmp_path_factory.mktemp("helpers")
    built: dict[str, str] = {}

    def build(name: str, libs: list[str] | None = None) -> str:
        if name in built:
            return built[name]
        src = HELPERS / f"{name}.c"
        binary = out_dir / name
        cmd = ["gcc", "-O1", "-Wall", "-o", str(binary), str(src), *(libs or [])]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise RuntimeError(f"compiling {src} failed:\n{res.stderr}")
        built[name] = str(binary)
        return built[name]

    return build
