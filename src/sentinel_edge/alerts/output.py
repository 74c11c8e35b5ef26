"""AlertOutput: alerts in, Detection Findings out to every configured sink, with folding.

``emit(alert)`` is called by the detection stage for every alert and never
waits for a network sink: file and stdout sinks are written synchronously
(one write per alert, so a reader sees it as soon as ``emit`` returns);
syslog and webhook sinks are fed through bounded queues to their own threads.

Folding: alerts with the same fold key (:func:`fold_key`: rule id, the
acting process's exec_id and the rendered message) within ``fold_window_s``
are one finding. The first is written at once (activity Create, count 1);
repeats are only counted. When the window closes (``tick(now_ns)`` from the
agent loop, or the next alert of the key) and there were repeats, an Update
of the same finding (same ``finding_info.uid``) is written with the total
``count``, ``first_seen_time`` of the first and ``last_seen_time`` of the
latest occurrence, and the latest occurrence's events; the window then starts
again, so a continuous flood gives one Update per window with a growing
count. A window with no repeat closes the fold.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sentinel_edge.alerts.config import AlertsConfig, validate_alerts
from sentinel_edge.alerts.ocsf import ACTIVITY_UPDATE, to_finding
from sentinel_edge.alerts.sinks import (
    BaseSink,
    FileSink,
    QueuedSink,
    RateLimitedLog,
    RotatingFileSink,
    StdoutSink,
    SyslogSink,
    WebhookSink,
)
from sentinel_edge.errors import OutputError
from sentinel_edge.output.ocsf.common import HostInfo
from sentinel_edge.output.sinks import _dumps
from sentinel_edge.rules.model import Alert

log = logging.getLogger(__name__)

#: open folds kept at most; the oldest is closed (its Update written) beyond this
FOLD_MAX = 10_000


def fold_key(alert: Alert) -> tuple[str, str, str]:
    """(rule id, exec_id of the acting process, rendered message).

    The acting process is that of the last triggering event; without
    enrichment it is ``pid:start_ns`` from the kernel. Alerts without events
    fold by rule and message alone.
    """
    proc = ""
    if alert.events:
        ev = alert.events[-1]
        if ev.process is not None:
            proc = ev.process.exec_id
        else:
            proc = f"{ev.proc.get('pid', '')}:{ev.proc.get('start_ns', '')}"
    return (alert.rule.id, proc, alert.message)


@dataclass(slots=True)
class _Fold:
    uid: str  # finding_info.uid of the Create
    first_ns: int  # time_ns of the first occurrence
    start_ns: int  # when the current window opened
    end_ns: int  # when the current window closes
    total: int  # occurrences since the Create
    pending: int  # occurrences not yet reported
    last: Alert | None  # the latest unreported occurrence


def build_sinks(cfg: AlertsConfig, host: HostInfo) -> list[BaseSink]:
    """The sinks an AlertsConfig asks for (slow ones wrapped in a QueuedSink)."""
    sinks: list[BaseSink] = []
    if cfg.file:
        sinks.append(FileSink(cfg.file, fsync=cfg.fsync))
    if cfg.stdout:
        sinks.append(StdoutSink())
    if cfg.rotating is not None:
        r = cfg.rotating
        sinks.append(RotatingFileSink(r.path, max_bytes=r.max_bytes, backups=r.backups, fsync=cfg.fsync))
    if cfg.syslog is not None:
        s = cfg.syslog
        sinks.append(QueuedSink(SyslogSink(s.host, s.port, protocol=s.protocol, app_name=s.app_name,
                                           facility=s.facility_code, hostname=host.hostname,
                                           timeout_s=s.timeout_s), s.queue_max))
    if cfg.webhook is not None:
        w = cfg.webhook
        sinks.append(QueuedSink(WebhookSink(w.url, timeout_s=w.timeout_s, retries=w.retries, headers=w.headers,
                                            backoff_s=w.backoff_s, backoff_max_s=w.backoff_max_s), w.queue_max))
    return sinks


class AlertOutput:
    """The alert stage of the agent. Not thread-safe: emit/tick/close come from the agent loop.

    ``AlertOutput(cfg.alerts, host_info())`` opens every sink the config
    names (OutputError when a file cannot be opened). ``sinks`` adds sinks
    built by the caller (tests, embedding); a slow sink given there is wrapped
    in a QueuedSink of ``queue_max``.
    """

    def __init__(self, config: AlertsConfig, host: HostInfo, *, sinks: Sequence[BaseSink] = (),
                 queue_max: int = 1000, fold_max: int = FOLD_MAX) -> None:
        validate_alerts(config)
        self.config = config
        self.host = host
        self.window_ns = int(config.fold_window_s * 1e9)
        self.fold_max = fold_max
        self.sinks: list[BaseSink] = []
        try:
            self.sinks = build_sinks(config, host)
            for s in sinks:
                self.sinks.append(QueuedSink(s, queue_max) if s.slow and not isinstance(s, QueuedSink) else s)
        except (OutputError, OSError) as exc:
            self._close_sinks(0.5)
            if isinstance(exc, OutputError):
                raise
            raise OutputError(f"cannot open alert outputs: {exc}") from exc
        self._folds: OrderedDict[tuple[str, str, str], _Fold] = OrderedDict()
        self._last_tick = 0
        self._closed = False
        self._err_log = RateLimitedLog()
        self.received = 0  # alerts given to emit
        self.emitted = 0  # findings written (Create + Update)
        self.updates = 0  # of which fold Updates
        self.folded = 0  # alerts counted into an open fold instead of written
        self.fold_evictions = 0  # folds closed early because FOLD_MAX were open
        self.errors = 0  # findings that could not be built or encoded, sink write errors

    # -- per alert ------------------------------------------------------------------

    def emit(self, alert: Alert) -> None:
        """Write (or fold) one alert. Never blocks on a network sink; never raises for a sink failure."""
        if self._closed:
            raise OutputError("alert output is closed")
        self.received += 1
        if self.window_ns <= 0:
            self._write(alert)
            return
        now = alert.time_ns
        key = fold_key(alert)
        fold = self._folds.get(key)
        if fold is not None:
            if fold.start_ns <= now < fold.end_ns:
                fold.total += 1
                fold.pending += 1
                fold.last = alert
                self.folded += 1
                return
            self._close_window(key, fold, now, reopen=False)
        uid = self._write(alert)
        if uid is None:
            return
        self._folds[key] = _Fold(uid, alert.time_ns, now, now + self.window_ns, 1, 0, None)
        while len(self._folds) > self.fold_max:
            old_key, old = next(iter(self._folds.items()))
            self.fold_evictions += 1
            self._close_window(old_key, old, now, reopen=False)

    def _write(self, alert: Alert, **kw: Any) -> str | None:
        """Map and write one finding to every sink; its finding uid (None when it could not be built)."""
        try:
            finding = to_finding(alert, self.host, **kw)
            line = _dumps(finding) + b"\n"
        except (OutputError, ValueError, KeyError, TypeError) as exc:
            self.errors += 1
            self._err_log(logging.ERROR, "alert of rule %s not written: cannot build its finding: %s",
                          alert.rule.id, exc)
            return None
        for sink in self.sinks:
            try:
                sink.write(finding, line)
            except OutputError as exc:
                self.errors += 1
                self._err_log(logging.ERROR, "%s", exc)
        self.emitted += 1
        return str(finding["finding_info"]["uid"])

    def _close_window(self, key: tuple[str, str, str], fold: _Fold, now: int, *, reopen: bool) -> None:
        """Report the repeats of a closing window; keep the fold open for another window when asked."""
        if fold.pending and fold.last is not None:
            last = fold.last
            update = Alert(rule=last.rule, events=last.events, message=last.message, time_ns=last.time_ns,
                           count=fold.total, first_ns=fold.first_ns, data=last.data)
            self._write(update, uid=fold.uid, activity_id=ACTIVITY_UPDATE, created_ns=fold.first_ns)
            self.updates += 1
            fold.pending = 0
            fold.last = None
            if reopen:
                fold.start_ns = now
                fold.end_ns = now + self.window_ns
                self._folds.move_to_end(key)
                return
        del self._folds[key]

    # -- periodic -------------------------------------------------------------------

    def tick(self, now_ns: int | None = None) -> None:
        """Close the fold windows that ended by ``now_ns`` (wall-clock ns, default now)."""
        now = time.time_ns() if now_ns is None else now_ns
        if now < self._last_tick:  # the wall clock went back: close every window now
            for key, fold in list(self._folds.items()):
                self._close_window(key, fold, now, reopen=True)
        self._last_tick = now
        while self._folds:  # ordered by window end: only the expired ones are looked at
            key, fold = next(iter(self._folds.items()))
            if fold.end_ns > now:
                break
            self._close_window(key, fold, now, reopen=True)

    def close(self, timeout: float | None = None) -> None:
        """Write the pending fold Updates, then deliver queued alerts within ``timeout`` (config close_timeout_s)."""
        if self._closed:
            return
        now = time.time_ns()
        for key, fold in list(self._folds.items()):
            self._close_window(key, fold, now, reopen=False)
        self._closed = True
        self._close_sinks(self.config.close_timeout_s if timeout is None else timeout)

    def _close_sinks(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for sink in self.sinks:
            try:
                if isinstance(sink, QueuedSink):
                    sink.close(max(0.0, deadline - time.monotonic()))
                else:
                    sink.close()
            except (OutputError, OSError) as exc:
                self.errors += 1
                log.error("closing alert sink %s: %s", sink.name, exc)

    # -- status ---------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        sinks = {s.name: s.stats() for s in self.sinks}
        return {
            "received": self.received,
            "emitted": self.emitted,
            "updates": self.updates,
            "folded": self.folded,
            "open_folds": len(self._folds),
            "fold_evictions": self.fold_evictions,
            "errors": self.errors,
            "dropped": sum(int(s.get("dropped", 0)) for s in sinks.values()),
            "sinks": sinks,
        }
