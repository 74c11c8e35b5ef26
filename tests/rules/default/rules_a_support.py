"""Helpers for the default-rule tests of the rules-a half (execution, persistence,
privilege escalation, defense evasion, credential access).

Every test does the real behaviour on this machine while the session ``agent``
(default rules, alerts to a file) watches, then either waits for the alert of
its rule (and checks the ATT&CK techniques) or, for a near-miss, first waits
until the agent has seen the near-miss's own event and then checks that the
rule stayed quiet for it. Alerts are always scoped to the test's own process
or unique path: other things happen on the host at the same time.
"""

from __future__ import annotations

import json
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from conftest import AgentHandle, Marks, expect_alert, marks  # noqa: F401  (re-exported for the tests)
from conftest import run_cmd as run
from conftest import run_py as py  # noqa: F401

Obj = dict[str, Any]
Pred = Callable[[Obj], bool]

PYTHON = sys.executable


def token() -> str:
    """A unique marker for paths and command lines of one test."""
    return "se" + secrets.token_hex(5)


def actor_pid(a: Obj) -> int | None:
    pid = a.get("actor", {}).get("process", {}).get("pid")
    return pid if isinstance(pid, int) else None


def for_pid(pid: int) -> Pred:
    """Alerts whose actor process is ``pid``."""
    return lambda a: actor_pid(a) == pid


def mentions(text: str) -> Pred:
    """Objects (alerts or events) whose JSON mentions ``text`` anywhere."""
    return lambda o: text in json.dumps(o)


def event_of(pid: int, kind: str) -> Pred:
    """OCSF event objects of kind ``kind`` done by process ``pid``."""

    def pred(o: Obj) -> bool:
        um = o.get("unmapped", {})
        return bool(um.get("event") == kind and um.get("proc", {}).get("pid") == pid)

    return pred


def file_event(path: str) -> Pred:
    """OCSF file events about ``path`` (old or new name)."""

    def pred(o: Obj) -> bool:
        if o.get("unmapped", {}).get("event") != "file":
            return False
        return path in json.dumps(o.get("file", {})) or path in json.dumps(o.get("unmapped", {}))

    return pred




def expect_quiet(agent: AgentHandle, rule_id: str, m: Marks, pred: Pred, seen: Pred,
                 settle: float = 0.4) -> None:
    """No alert of ``rule_id`` matching ``pred`` once the agent has processed the near-miss.

    ``seen`` names the near-miss's own event: waiting for it proves the agent
    observed the behaviour (a rule cannot be quiet about something never seen).
    """
    agent.wait_for(seen, m.events, timeout=10)
    agent.assert_no_alert(rule_id, m.alerts, pred, settle=settle)


@contextmanager
def scratch_dir(base: str = "/tmp") -> Iterator[Path]:
    """A world-readable unique directory under ``base``, removed afterwards."""
    d = Path(tempfile.mkdtemp(prefix="se-ra-", dir=base))
    try:
        d.chmod(0o755)
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@contextmanager
def temp_file(path: str | Path, content: str = "# sentinel-edge test file\n", mode: int = 0o644) -> Iterator[int]:
    """Create ``path`` (which must not exist) from a fresh process; yields that process's pid.

    A fresh process per file matters: the file sensor drops an open of the same
    (device, inode) with the same flags by the same process within a second, and
    a quickly deleted test file's inode is often reused by the next one.
    The file is always removed afterwards.
    """
    p = Path(path)
    assert not p.exists(), f"{p} already exists"
    code = ("import os, sys\n"
            "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_EXCL, int(sys.argv[3]))\n"
            "os.write(fd, sys.argv[2].encode())\n"
            "os.close(fd)\n")
    try:
        pid, _ = run([PYTHON, "-S", "-c", code, str(p), content, str(mode)])
        yield pid
    finally:
        p.unlink(missing_ok=True)


def copy_exe(src: str, dst: Path, mode: int = 0o755) -> Path:
    shutil.copyfile(src, dst)
    dst.chmod(mode)
    return dst

