"""What the API, the console and /metrics see of a running agent, and the watchdog of its workers.

    Agent (pipeline thread) --publish--> LiveHub --> /api/v1/stream
    Agent._write / alert sinks --> HistoryStore --> /api/v1/events, /alerts
    API thread --submit(fn)--> Agent (run between two rounds) : rule switches, policy changes

The API never touches pipeline state directly: changes go through
``Agent.submit`` (run on the pipeline thread between rounds) and reads use
the status snapshot the agent publishes every ``stats_interval_s``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentinel_edge.alerts.sinks import BaseSink
from sentinel_edge.errors import SentinelEdgeError
from sentinel_edge.web.auth import AuthStore
from sentinel_edge.web.live import LiveHub

if TYPE_CHECKING:
    from sentinel_edge.agent import Agent
    from sentinel_edge.config import AgentConfig
    from sentinel_edge.history.store import HistoryStore
    from sentinel_edge.web.server import ApiServer

log = logging.getLogger(__name__)

#: the pipeline loop must have run within this many seconds for /healthz
LOOP_STALE_S = 10.0
WATCHDOG_INTERVAL_S = 1.0


class HistoryAlertSink(BaseSink):
    """An alert output that stores every finding in the history and shows it on the live stream."""

    def __init__(self, store: HistoryStore | None, hub: LiveHub) -> None:
        super().__init__("history")
        self.store = store
        self.hub = hub

    def write(self, finding: dict[str, Any], line: bytes) -> None:
        if self.store is not None:
            self.store.add_alert(finding)  # never blocks; a full queue keeps the alert in memory
        self.hub.publish("alert", finding)
        self.written += 1


@dataclass
class Worker:
    """One internal thread the watchdog looks after."""

    name: str
    alive: Callable[[], bool]
    restart: Callable[[], None]
    restarts: int = 0
    last_error: str | None = None
    last_restart_ms: int | None = None
    error: Callable[[], str | None] | None = None  # why it stopped (read before a restart)


class Backend:
    """Everything the API needs, owned by the ``run`` command."""

    def __init__(self, cfg: AgentConfig, *, store: HistoryStore | None, auth: AuthStore | None,
                 hub: LiveHub) -> None:
        self.cfg = cfg
        self.store = store
        self.auth = auth
        self.hub = hub
        self.agent: Agent | None = None
        self.server: ApiServer | None = None
        self.workers: dict[str, Worker] = {}
        self.worker_restarts_total: dict[str, int] = {}
        self.on_note: Callable[[str], None] | None = None  # watchdog messages (the agent's health events)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state_dir = Path(cfg.state_dir)

    def policy_dir(self) -> Path:
        from sentinel_edge.config import policy_dir

        return policy_dir(self.cfg)

    # -- pipeline access --------------------------------------------------------------------------

    def call(self, fn: Callable[[Agent], Any], timeout: float = 30.0) -> Any:
        """Run ``fn(agent)`` on the pipeline thread and return its result (raises what it raised)."""
        if self.agent is None:
            raise SentinelEdgeError("the agent is not running")
        fut: Future[Any] = self.agent.submit(fn)
        return fut.result(timeout)

    def extra_status(self) -> dict[str, Any]:
        """What the agent's status gains from the services around it."""
        return {
            "history": self.store.stats() if self.store is not None else None,
            "api": self.server.describe() if self.server is not None else {"state": "off"},
            "workers": {w.name: {"alive": _safe(w.alive), "restarts": w.restarts, "last_error": w.last_error,
                                 "last_restart": w.last_restart_ms} for w in self.workers.values()},
            "stream_subscribers": self.hub.subscribers(),
            "health": self.health(),
        }

    def status(self) -> dict[str, Any]:
        st = dict(self.agent.last_status) if self.agent is not None else {}
        st.update(self.extra_status())
        return st

    def live(self) -> bool:
        """/healthz: the pipeline loop ran recently."""
        a = self.agent
        return a is not None and a.loop_at > 0 and time.monotonic() - a.loop_at < LOOP_STALE_S

    def health(self) -> dict[str, Any]:
        problems: list[str] = []
        a = self.agent
        if a is None or a.report is None:
            problems.append("the sensors are not attached yet")
        elif not self.live():
            problems.append(f"the pipeline loop has not run for {LOOP_STALE_S:.0f} s")
        if a is not None and a.report is not None:
            failed = [p.name for p in a.report.programs if p.state == "failed"]
            if failed:
                problems.append(f"programs failed to attach: {', '.join(failed)}")
        if self.store is not None:
            st = self.store.stats()
            if not st.get("healthy", True):
                problems.append(f"history: {st.get('health')}")
        for w in self.workers.values():
            if not _safe(w.alive):
                problems.append(f"worker {w.name} is not running")
        return {"ok": not problems, "problems": problems}

    def ready(self) -> tuple[bool, list[str]]:
        h = self.health()
        return h["ok"], h["problems"]

    # -- watchdog ---------------------------------------------------------------------------------

    def watch(self, name: str, alive: Callable[[], bool], restart: Callable[[], None],
              error: Callable[[], str | None] | None = None) -> None:
        self.workers[name] = Worker(name, alive, restart, error=error)
        self.worker_restarts_total.setdefault(name, 0)

    def start_watchdog(self) -> None:
        self._thread = threading.Thread(target=self._watchdog, name="watchdog", daemon=True)
        self._thread.start()

    def watchdog_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def check_workers(self) -> list[str]:
        """One watchdog round: restart every dead worker; the messages of what was done."""
        done: list[str] = []
        for w in list(self.workers.values()):
            if _safe(w.alive):
                continue
            w.restarts += 1
            self.worker_restarts_total[w.name] = self.worker_restarts_total.get(w.name, 0) + 1
            w.last_restart_ms = time.time_ns() // 1_000_000
            if w.error is not None:
                try:
                    w.last_error = w.error() or w.last_error
                except Exception:  # the error text is a nicety; the restart is not
                    log.exception("watchdog: reading why %s stopped failed", w.name)
            try:
                w.restart()
                msg = f"internal worker {w.name} had stopped ({w.last_error or 'no error recorded'}): restarted"
            except Exception as exc:  # the watchdog itself must keep going
                w.last_error = f"restart failed: {exc!r}"
                msg = f"internal worker {w.name} had stopped and could not be restarted: {exc!r}"
            log.error("%s", msg)
            done.append(msg)
            if self.on_note is not None:
                self.on_note(msg)
        return done

    def _watchdog(self) -> None:
        while not self._stop.wait(WATCHDOG_INTERVAL_S):
            try:
                self.check_workers()
            except Exception:  # never let the watchdog die
                log.exception("watchdog round failed")

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self.server is not None:
            self.server.stop()
        if self.auth is not None:
            self.auth.close()


def _safe(fn: Callable[[], bool]) -> bool:
    try:
        return bool(fn())
    except Exception:
        return False

