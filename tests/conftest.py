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
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "tests" / "helpers"
ARTIFACTS = ROOT / "test-artifacts"

Obj = dict[str, Any]
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    # Every agent and CLI started by a test keeps its state (history, tokens, rule switches) here, never in
    # /var/lib/sentinel-edge; start_agent gives each agent a directory of its own on top of that.
    if "SENTINEL_EDGE_STATE_DIR" not in os.environ:
        os.environ["SENTINEL_EDGE_STATE_DIR"] = tempfile.mkdtemp(prefix="sentinel-edge-test-state-")
        config.stash[_STATE_KEY] = os.environ["SENTINEL_EDGE_STATE_DIR"]
    # A fresh machine may not have tracefs mounted yet; the agent mounts it on
    # start, but tests also look at it before any agent runs.
    if os.geteuid() == 0:
        from sentinel_edge.loader.probes import find_tracefs

        find_tracefs(mount_if_missing=True)


_STATE_KEY = pytest.StashKey[str]()


def pytest_unconfigure(config: pytest.Config) -> None:
    made = config.stash.get(_STATE_KEY, None)
    if made:
        shutil.rmtree(made, ignore_errors=True)


DEFAULT_PIN_ROOT = Path("/sys/fs/bpf/sentinel-edge/enforce")


@pytest.fixture(autouse=True)
def no_enforcement_left_at_the_default_pin_root() -> Iterator[None]:
    """Tests pin enforcement under roots of their own: one that leaves it at the default root (where every
    later default agent would adopt it) fails, and the pins are removed."""
    before = DEFAULT_PIN_ROOT.exists()
    yield
    if not before and DEFAULT_PIN_ROOT.exists():
        from sentinel_edge.enforce.kernel import EnforceKernel

        EnforceKernel(pin_root=str(DEFAULT_PIN_ROOT)).uninstall()
        pytest.fail(f"the test left kernel enforcement pinned at {DEFAULT_PIN_ROOT} (removed now)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.geteuid() == 0:
        return
    skip = pytest.mark.skip(reason="kernel tests load eBPF programs and need root")
    for item in items:
        if "kernel" in item.keywords:
            item.add_marker(skip)


class JsonlTail:
    """The JSON objects of a file that another process appends lines to."""

    def __init__(self, path: Path) -> None:
        path.touch()
        self.path = path
        self.objects: list[Obj] = []
        self._fh = path.open("rb")
        self._partial = b""

    def read(self) -> None:
        chunk = self._fh.read()
        if not chunk:
            return
        lines = (self._partial + chunk).split(b"\n")
        self._partial = lines.pop()
        self.objects.extend(json.loads(line) for line in lines if line)


def _shape(v: Any, key: str = "") -> Any:
    """What the schema can tell apart: keys, types, bools, enum numbers (``*_id``, ``*_uid``) and
    their caption strings (``*_name``, ``type``, ``severity``, ``status``...); other values of a
    type count as one."""
    if isinstance(v, dict):
        return tuple(sorted((k, _shape(x, k)) for k, x in v.items()))
    if isinstance(v, list):
        return ("[]", tuple(sorted({repr(_shape(x, key)) for x in v})))
    if isinstance(v, str):
        caption = key.endswith("_name") or key in ("type", "severity", "status", "version")
        return ("s", v if caption else None)
    if isinstance(v, bool) or key.endswith(("_id", "_uid")):
        return (type(v).__name__, v)
    return (type(v).__name__, None)


SAMPLE = 300


def unique_shapes(objs: list[Obj]) -> list[Obj]:
    """One object per distinct shape: validating a whole session's objects one by one took
    minutes; objects of the same shape validate alike (the OCSF mapper tests in tests/output
    validate every variant of every mapper besides)."""
    seen: dict[str, Obj] = {}
    for o in objs:
        seen.setdefault(repr(_shape(o)), o)
    # and an even sample of the rest, values and all
    step = max(1, len(objs) // SAMPLE)
    return list(seen.values()) + objs[::step]


def alert_rule(a: Obj) -> str:
    """The rule id of an alert (OCSF Detection Finding)."""
    return str(a.get("finding_info", {}).get("analytic", {}).get("uid"))


def alert_techniques(a: Obj) -> list[str]:
    """ATT&CK technique ids of an alert."""
    return [t.get("technique", {}).get("uid", "") for t in a.get("finding_info", {}).get("attacks", [])]


class AgentHandle:
    """A running agent and the OCSF objects it has written so far."""

    def __init__(self, proc: subprocess.Popen[bytes], out: Path, status: Path, log: Path,
                 alerts: Path | None = None, state_dir: Path | None = None) -> None:
        self.proc = proc
        self.state_dir = state_dir
        self.out = out
        self.status_file = status
        self.log = log
        self._events = JsonlTail(out)
        self.objects = self._events.objects
        self.alerts_file = alerts
        self._alerts = JsonlTail(alerts) if alerts is not None else None

    def _read(self) -> None:
        self._events.read()

    # -- alerts (OCSF Detection Findings written to --alerts-file) --------------

    @property
    def alerts(self) -> list[Obj]:
        assert self._alerts is not None, "this agent was started without --alerts-file"
        self._alerts.read()
        return self._alerts.objects

    def alert_mark(self) -> int:
        """Position after every alert written so far (waits one drain round)."""
        time.sleep(0.05)
        return len(self.alerts)

    def find_alerts(self, rule_id: str | None = None, since: int = 0,
                    pred: Callable[[Obj], bool] | None = None) -> list[Obj]:
        return [a for a in self.alerts[since:]
                if (rule_id is None or alert_rule(a) == rule_id) and (pred is None or pred(a))]

    def wait_alert(self, rule_id: str, since: int = 0, pred: Callable[[Obj], bool] | None = None,
                   timeout: float = 10.0) -> Obj:
        """The first alert of `rule_id` (and matching `pred`) written after `since`."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.find_alerts(rule_id, since, pred)
            if found:
                return found[0]
            if time.monotonic() > deadline:
                recent = [f"{alert_rule(a)}: {a.get('message', '')[:150]}" for a in self.alerts[since:][-15:]]
                raise AssertionError(f"no alert {rule_id} within {timeout}s; alerts since mark:\n"
                                     + "\n".join(recent))
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}: {self.log.read_text()[-3000:]}")
            time.sleep(0.02)

    def assert_no_alert(self, rule_id: str, since: int = 0, pred: Callable[[Obj], bool] | None = None,
                        settle: float = 1.0) -> None:
        """No alert of `rule_id` after `since`, waiting `settle` seconds for a late one."""
        time.sleep(settle)
        found = self.find_alerts(rule_id, since, pred)
        assert not found, f"unexpected alert {rule_id}: {found[0].get('message')}"

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

    # -- the console / REST API (docs/api.md) ------------------------------------

    @property
    def api_url(self) -> str:
        """Base URL of the agent's API (it listens on a free loopback port in tests)."""
        url: str = self.status()["api"]["url"]
        return url

    @property
    def admin_token(self) -> str:
        assert self.state_dir is not None
        return (self.state_dir / "admin-token").read_text().strip()

    def api(self, method: str, path: str, body: Obj | None = None, token: str | None = None,
            timeout: float = 30) -> tuple[int, Any]:
        """One API call: (HTTP status, decoded JSON answer or text)."""
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.api_url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token or self.admin_token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                code, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            code, raw = exc.code, exc.read()
        try:
            return code, json.loads(raw)
        except ValueError:
            return code, raw.decode(errors="replace")


@dataclass
class Marks:
    """Positions in an agent's event and alert streams before a test acts."""

    events: int
    alerts: int


def marks(agent: AgentHandle) -> Marks:
    return Marks(agent.mark(), agent.alert_mark())


def expect_alert(agent: AgentHandle, rule_id: str, m: Marks, pred: Callable[[Obj], bool],
                 techniques: list[str], timeout: float = 10.0) -> Obj:
    """The alert of ``rule_id`` matching ``pred``; it carries every technique of ``techniques``."""
    a = agent.wait_alert(rule_id, m.alerts, pred, timeout=timeout)
    assert alert_rule(a) == rule_id
    got = alert_techniques(a)
    for t in techniques:
        assert t in got, f"{rule_id}: technique {t} missing from {got}"
    return a


def wait_until(fn: Callable[[], T | None], what: str, timeout: float = 15.0, interval: float = 0.1) -> T:
    """The first true value of ``fn()`` within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        got = fn()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(interval)


def run_cmd(cmd: list[str], *, check: bool = True, input: bytes | None = None, timeout: float = 60,
            **popen: Any) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    """Run ``cmd`` to completion (bounded; Popen keywords such as cwd, env, user pass through);
    returns its pid (the actor of its events) and the result."""
    p = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, **popen)
    try:
        out, err = p.communicate(input, timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()
        raise
    res = subprocess.CompletedProcess(cmd, p.returncode, out, err)
    if check:
        assert p.returncode == 0, f"{cmd}: rc={p.returncode}\n{out.decode()[-2000:]}\n{err.decode()[-2000:]}"
    return p.pid, res


def run_py(code: str, **kw: Any) -> tuple[int, subprocess.CompletedProcess[bytes]]:
    """Run ``code`` in a fresh Python process (its pid is the actor)."""
    return run_cmd([sys.executable, "-c", code], **kw)


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


def start_agent(tmp: Path, config_text: str | None = None, extra: list[str] | None = None,
                alerts: bool = False) -> AgentHandle:
    out = tmp / "events.jsonl"
    out.touch()
    ready = tmp / "ready"
    status = tmp / "status.json"
    log = tmp / "agent.log"
    alerts_file = tmp / "alerts.jsonl" if alerts else None
    cmd = [sys.executable, "-m", "sentinel_edge.cli", "run", "--format", "json", "--output", str(out),
           "--ready-file", str(ready), "--status-file", str(status)]
    if alerts_file is not None:
        alerts_file.touch()
        cmd += ["--alerts-file", str(alerts_file)]
    if config_text is not None:
        cfg = tmp / "config.yaml"
        cfg.write_text(config_text)
        cmd += ["--config", str(cfg)]
    extra = list(extra or [])
    state_dir = tmp / "state"
    if "--state-dir" not in extra:
        extra += ["--state-dir", str(state_dir)]
    else:
        state_dir = Path(extra[extra.index("--state-dir") + 1])
    if "--api-listen" not in extra and "--no-api" not in extra:
        extra += ["--api-listen", "127.0.0.1:0"]  # a free port: several agents may run at once
    cmd += extra
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
    return AgentHandle(proc, out, status, log, alerts_file, state_dir)


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
    """One agent on the embedded defaults (default rule set, alerts to a file), shared by every kernel test."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tmp = tmp_path_factory.mktemp("agent")
    handle = start_agent(tmp, alerts=True)
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

        objs = unique_shapes(handle.objects)
        bad = [(summary(o), errs[:3]) for o in objs if (errs := validate(o))]
        if bad:
            raise AssertionError(f"{len(bad)} of {len(objs)} object shapes are not valid OCSF: {bad[:5]}")
        # and so is every alert (OCSF Detection Finding) it raised
        alerts = unique_shapes(handle.alerts)
        bad = [(alert_rule(a), errs[:3]) for a in alerts if (errs := validate(a))]
        if bad:
            raise AssertionError(f"{len(bad)} of {len(alerts)} alerts are not valid OCSF: {bad[:5]}")
        if alerts:
            shutil.copy(handle.alerts_file or "", ARTIFACTS / "alerts.jsonl")


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
