"""/healthz, /readyz and the watchdog (docs/api.md, "Health").

- A real agent, its history kept on a small tmpfs the test mounts: healthy, both answer 200 without a token;
  the file system filled up, the history cannot write: /readyz answers 503 naming the problem while /healthz
  (the pipeline runs) stays 200, the status and /metrics say the same; space freed, ready again.
- The watchdog: no worker of a running agent can be crashed from outside (the history writer survives what it
  writes, the API server its requests), so its logic runs in-process on the real parts: a real HistoryStore
  whose writer thread dies on a write, the real Backend watchdog thread, and the real metrics collector over
  a real (unstarted) Agent.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_fixtures import call, make_token, wait_until

from conftest import AgentHandle, run_cmd, start_agent, stop_agent
from sentinel_edge.config import AgentConfig
from sentinel_edge.history.store import HistoryStore
from sentinel_edge.web.backend import LOOP_STALE_S, WATCHDOG_INTERVAL_S, Backend
from sentinel_edge.web.live import LiveHub
from sentinel_edge.web.metrics import registry_for, render

pytestmark = pytest.mark.kernel


@dataclass
class Env:
    agent: AgentHandle
    base: str
    viewer: str
    mnt: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("api-health")
    mnt = tmp / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m,mode=0700", "tmpfs", str(mnt)], check=True, timeout=30)
    h: AgentHandle | None = None
    try:
        h = start_agent(tmp, f"history:\n  path: {mnt / 'history.db'}\n  max_mb: 16\n", alerts=True)
        assert h.state_dir is not None
        yield Env(h, h.api_url, make_token(h.state_dir, "health-viewer", "viewer"), mnt)
    finally:
        rc = stop_agent(h) if h is not None else 0
        subprocess.run(["umount", str(mnt)], check=False, timeout=30)
        assert not os.path.ismount(mnt)
        assert rc == 0, h.log.read_text()[-3000:] if h is not None else ""


def test_a_healthy_agent_is_live_and_ready_without_a_token(env: Env) -> None:
    for headers in ({}, {"Authorization": "Bearer not-a-token"}):
        r = call(env.base, "GET", "/healthz", headers=headers)
        assert r.status == 200 and r.body == {"status": "ok", "problems": []}
        r = call(env.base, "GET", "/readyz", headers=headers)
        assert r.status == 200 and r.body == {"status": "ready", "problems": []}
    st = call(env.base, "GET", "/api/v1/status", env.viewer).body
    assert st["health"] == {"ok": True, "problems": []}
    assert set(st["workers"]) >= {"history-writer", "api-server"}
    for name, w in st["workers"].items():
        assert w["alive"] is True and w["restarts"] == 0 and w["last_error"] is None, name
    assert st["history"]["healthy"] is True and st["history"]["writer_alive"] is True


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the file system is full (bounded)."""
    chunk = b"\0" * 65536
    with open(path, "wb", buffering=0) as f:
        for size in (65536, 512):
            for _ in range(2000):
                try:
                    f.write(chunk[:size])
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC
                    break


def _activity(tmp: Path, n: int) -> None:
    """Events with long distinct paths (file and exec events the history must store)."""
    for i in range(n):
        run_cmd(["sh", "-c", f"ls {tmp}/{'x' * 200}-{time.monotonic_ns()}-{i} 2>/dev/null; true"], check=False)


def test_history_on_a_full_disk_is_not_ready_and_recovers(env: Env, tmp_path: Path) -> None:
    filler = env.mnt / "filler"
    try:
        _fill(filler)

        def not_ready() -> dict[str, Any] | None:
            _activity(tmp_path, 10)
            r = call(env.base, "GET", "/readyz")
            return r.body if r.status == 503 else None

        body = wait_until(not_ready, "readyz 503 on a full history disk", 60, 0.2)
        assert body["status"] == "not ready"
        (problem,) = body["problems"]
        prefix = f"history: history store {env.mnt / 'history.db'}: disk full writing "
        assert problem.startswith(prefix) and problem.endswith(" events: database or disk is full"), problem
        # the pipeline still runs: live, and the status, the health page and /metrics tell the same
        assert call(env.base, "GET", "/healthz").status == 200
        st = call(env.base, "GET", "/api/v1/status", env.viewer).body
        assert st["health"]["ok"] is False and [p.startswith(prefix) for p in st["health"]["problems"]] == [True]
        assert st["history"]["healthy"] is False and st["history"]["dropped_disk"] > 0
        m = call(env.base, "GET", "/metrics", env.viewer).body.splitlines()
        assert "sentinel_edge_history_healthy 0.0" in m
        dropped = [x for x in m if x.startswith('sentinel_edge_history_dropped_total{reason="disk"}')]
        assert dropped and float(dropped[0].split()[-1]) > 0
    finally:
        filler.unlink(missing_ok=True)

    def ready() -> bool:
        _activity(tmp_path, 3)
        return call(env.base, "GET", "/readyz").status == 200

    wait_until(ready, "readyz 200 once the disk has room again", 60, 0.2)
    assert call(env.base, "GET", "/readyz").body == {"status": "ready", "problems": []}
    # and the agent said so in its own event stream: one health event when it broke, one when it recovered
    def health(what: str) -> Callable[[dict[str, Any]], bool]:
        return lambda o: (o.get("class_uid") == 1008 and o.get("unmapped", {}).get("health", {}).get("what") == what
                          and o["unmapped"]["health"].get("component") == "history")
    broke = env.agent.wait_for(health("degraded"), timeout=10)
    assert broke["severity_id"] == 3 and broke["status_id"] == 2
    assert broke["message"].startswith("history store unhealthy: ") and str(env.mnt / "history.db") in broke["message"]
    assert broke["unmapped"]["health"]["dropped_disk"] > 0
    back = env.agent.wait_for(health("recovered"), timeout=10)
    assert back["message"] == "history store writes again" and back["severity_id"] == 1
    assert "sentinel_edge_history_healthy 1.0" in call(env.base, "GET", "/metrics", env.viewer).body.splitlines()


# -- the watchdog, in-process ------------------------------------------------------------------------------


def test_the_watchdog_restarts_a_crashed_history_writer(env: Env, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from sentinel_edge.agent import Agent
    from sentinel_edge.output.sinks import Sink

    # real events the module's agent wrote
    events = [o for o in env.agent.find_all(lambda o: o.get("class_uid") in (1001, 1007))][:50]
    assert len(events) >= 10
    cfg = AgentConfig()
    cfg.state_dir = str(tmp_path)
    store = HistoryStore(tmp_path / "history.db")
    hub = LiveHub()
    backend = Backend(cfg, store=store, auth=None, hub=hub)
    agent = Agent(cfg, Sink(str(tmp_path / "out.jsonl")), status_path=tmp_path / "status.json", history=store,
                  hub=hub)
    backend.agent = agent
    backend.on_note = agent.health_notes.put  # as the run command wires it
    try:
        backend.watch("history-writer", store.writer_alive, store.restart_writer,
                      error=lambda: store.last_writer_error)
        real = store._write_events
        crashes: list[int] = []

        def crash_once(objs: list[dict[str, Any]]) -> None:
            if not crashes:
                crashes.append(len(objs))
                raise RuntimeError("writer crashed on purpose")
            real(objs)

        monkeypatch.setattr(store, "_write_events", crash_once)
        for o in events[:10]:
            assert store.add_event(o)
        wait_until(lambda: not store.writer_alive(), "the writer thread died", 10, 0.01)
        problems = backend.health()["problems"]
        assert f"history: history store {store.path}: writer stopped: RuntimeError: writer crashed on purpose" \
            in problems
        assert "worker history-writer is not running" in problems
        ok, ready_problems = backend.ready()
        assert ok is False and ready_problems == problems
        assert backend.extra_status()["workers"]["history-writer"]["alive"] is False
        for o in events[10:]:  # queued while the writer is dead: kept for the next one
            assert store.add_event(o)
        # the real watchdog thread finds it within a round or two and restarts it
        t0 = time.monotonic()
        backend.start_watchdog()
        assert backend.watchdog_alive()
        wait_until(lambda: store.writer_alive() and backend.workers["history-writer"].restarts == 1,
                   "the watchdog restarted the writer", 5 * WATCHDOG_INTERVAL_S, 0.02)
        assert time.monotonic() - t0 < 3 * WATCHDOG_INTERVAL_S
        assert store.flush(timeout=20)
        assert crashes == [10]
        assert store.stats()["written_events"] == len(events)  # nothing lost across the crash
        w = backend.extra_status()["workers"]["history-writer"]
        assert w["alive"] is True and w["restarts"] == 1 and w["last_restart"] is not None
        assert backend.worker_restarts_total == {"history-writer": 1}
        note = agent.health_notes.get(timeout=1)
        assert note == ("internal worker history-writer had stopped (RuntimeError: writer crashed on purpose): "
                        "restarted")
        assert w["last_error"] == "RuntimeError: writer crashed on purpose"
        assert agent.health_notes.empty()
        assert not any(p.startswith(("history:", "worker ")) for p in backend.health()["problems"])
        # counted in /metrics by the real collector
        text = render(registry_for(backend)).decode()
        assert 'sentinel_edge_worker_restarts_total{worker="history-writer"} 1.0' in text.splitlines()
        # an agent whose loop has not run is neither live nor up
        assert backend.live() is False and "sentinel_edge_up 0.0" in text.splitlines()
        assert LOOP_STALE_S == 10.0
    finally:
        backend.close()
        assert not backend.watchdog_alive()
        store.close()


def test_a_restart_that_fails_is_reported_and_retried(tmp_path: Path) -> None:
    cfg = AgentConfig()
    cfg.state_dir = str(tmp_path)
    backend = Backend(cfg, store=None, auth=None, hub=LiveHub())
    notes: list[str] = []
    backend.on_note = notes.append
    attempts: list[int] = []

    def restart() -> None:
        attempts.append(1)
        raise OSError(errno.EADDRINUSE, "Address already in use")

    backend.watch("api-server", lambda: False, restart)
    assert backend.check_workers() == [notes[0]]
    assert notes == ["internal worker api-server had stopped and could not be restarted: "
                     "OSError(98, 'Address already in use')"]
    assert backend.workers["api-server"].last_error == "restart failed: OSError(98, 'Address already in use')"
    backend.check_workers()  # the next round tries again
    assert len(attempts) == 2 and backend.worker_restarts_total == {"api-server": 2}
    assert "worker api-server is not running" in backend.health()["problems"]
