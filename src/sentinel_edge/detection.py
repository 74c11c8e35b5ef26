"""The detect and respond stages of the agent: rules over enriched events, alerts out.

    enrich -> DetectionStage.process(event) -> Engine.evaluate -> AlertOutput.emit

Hot reload (SIGHUP, or a rule file changed on disk): the new rule set is
loaded and compiled in a background thread while events keep flowing through
the old one; when it is ready and has no error, the engine is swapped between
two events (nothing is lost, nothing is evaluated twice). A rule set with any
error is rejected with every error logged, and the old set stays active.
Correlation state (open sequences, threshold counts) starts afresh after a
reload.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from sentinel_edge.errors import RuleError, SentinelEdgeError
from sentinel_edge.model import Event
from sentinel_edge.rules.engine import Engine, LoadedRules, load_rules
from sentinel_edge.rules.model import Alert

log = logging.getLogger(__name__)

# how often rule files are checked for changes (stat of each file)
WATCH_INTERVAL_S = 1.0
# expire correlation state this often (event-time clock)
EXPIRE_INTERVAL_S = 1.0
#: upper bounds (seconds) of the rule evaluation time histogram (per event, all candidate rules)
EVAL_BUCKETS = (1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 0.01, 0.1)
_EVAL_BOUNDS_NS = tuple(int(b * 1e9) for b in EVAL_BUCKETS)


class RuleToggles:
    """Rules switched off at run time (API or console), kept across restarts in a JSON file."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.disabled: set[str] = set()
        if path is not None and path.exists():
            try:
                data = json.loads(path.read_text())
                self.disabled = {str(x) for x in data.get("disabled", [])}
            except (OSError, ValueError, AttributeError) as exc:
                raise RuleError(f"{path}: cannot read the rule switches: {exc}") from exc

    def set(self, rule_id: str, enabled: bool) -> None:
        (self.disabled.discard if enabled else self.disabled.add)(rule_id)
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"disabled": sorted(self.disabled)}, indent=1))
            os.replace(tmp, self.path)
        except OSError as exc:
            raise RuleError(f"{self.path}: cannot save the rule switches: {exc}") from exc


class AlertSink(Protocol):
    def emit(self, alert: Alert) -> None: ...
    def tick(self, now_ns: int) -> None: ...
    def close(self) -> None: ...
    def stats(self) -> dict[str, Any]: ...


def format_rule_errors(errors: Sequence[RuleError]) -> str:
    lines: list[str] = []
    for e in errors:
        lines.extend(str(x) for x in (e.errors or [e]))
    return "\n".join(lines)


class RuleSource:
    """Where the rules come from, so they can be loaded again."""

    def __init__(self, paths: Sequence[str | Path] = (), sigma: Sequence[str | Path] = (), *,
                 default: bool = True, state_max_keys: int | None = None) -> None:
        self.paths = [Path(p) for p in paths]
        self.sigma = [Path(p) for p in sigma]
        self.default = default
        self.state_max_keys = state_max_keys

    def load(self) -> LoadedRules:
        return load_rules(self.paths, self.sigma, default=self.default, state_max_keys=self.state_max_keys)

    def load_checked(self) -> LoadedRules:
        """Load, raising one RuleError that lists every error."""
        loaded = self.load()
        if loaded.errors:
            n = sum(len(e.errors) or 1 for e in loaded.errors)
            raise RuleError(f"{n} error(s) in the rules:\n{format_rule_errors(loaded.errors)}",
                            errors=list(loaded.errors))
        return loaded


def _mtimes(files: Sequence[Path], dirs: Sequence[Path]) -> dict[str, float]:
    out: dict[str, float] = {}
    for d in dirs:
        if d.is_dir():
            for q in d.rglob("*"):
                if q.suffix in (".yaml", ".yml"):
                    try:
                        out[str(q)] = q.stat().st_mtime
                    except OSError:
                        pass
    for f in files:
        try:
            out[str(f)] = f.stat().st_mtime
        except OSError:
            out[str(f)] = -1.0
    return out


class DetectionStage:
    """Owns the engine and the alert output; not thread-safe except request_reload()."""

    def __init__(self, source: RuleSource, loaded: LoadedRules, alerts: AlertSink, *, watch: bool = True,
                 toggles: RuleToggles | None = None) -> None:
        self.source = source
        self.watch = watch
        self.toggles = toggles or RuleToggles(None)
        self.all_rules = list(loaded.rules)
        self.engine = Engine(self._enabled(self.all_rules))
        self.alerts = alerts
        self.skipped = list(loaded.skipped)
        self.reloads = 0
        self.reload_failures = 0
        self.alerts_raised = 0
        self.emit_errors = 0
        self.last_reload_error: str | None = None
        # rule evaluation time per event: bucket counts (last = +Inf), sum in ns
        self.eval_counts = [0] * (len(EVAL_BUCKETS) + 1)
        self.eval_sum_ns = 0
        # alerts raised by (severity, rule id)
        self.alerts_by: dict[tuple[str, str], int] = {}
        self._reload_wanted = threading.Event()
        self._pending: LoadedRules | RuleError | None = None
        self._loader: threading.Thread | None = None
        self._watch_dirs = [p for p in [*source.paths, *source.sigma] if p.is_dir()]
        self._watch_files = [p for p in [*source.paths, *source.sigma] if not p.is_dir()]
        self._mtimes = _mtimes(self._watch_files, self._watch_dirs)
        self._next_watch = time.monotonic() + WATCH_INTERVAL_S
        self._next_expire = time.monotonic() + EXPIRE_INTERVAL_S
        # runs the response actions of a rule's alert, returns their alerts (set by the agent)
        self.responder: Callable[[Alert], list[Alert]] | None = None

    # -- per event ------------------------------------------------------------------

    def _enabled(self, rules: list[Any]) -> list[Any]:
        off = self.toggles.disabled
        return [r for r in rules if r.meta.id not in off] if off else list(rules)

    def process(self, ev: Event) -> None:
        t0 = time.perf_counter_ns()
        alerts = self.engine.evaluate(ev)
        dt = time.perf_counter_ns() - t0
        self.eval_counts[bisect.bisect_left(_EVAL_BOUNDS_NS, dt)] += 1
        self.eval_sum_ns += dt
        for alert in alerts:
            self.emit(alert)

    def set_enabled(self, rule_id: str, enabled: bool) -> bool:
        """Switch one loaded rule on or off (pipeline thread); False when no such rule is loaded."""
        if not any(r.meta.id == rule_id for r in self.all_rules):
            return False
        if (rule_id not in self.toggles.disabled) == enabled:
            return True
        self.toggles.set(rule_id, enabled)
        self.engine = Engine(self._enabled(self.all_rules))
        log.info("rule %s %s (correlation state starts afresh)", rule_id, "enabled" if enabled else "disabled")
        return True

    def emit(self, alert: Alert) -> None:
        """Write one alert (a rule's, or an enforcement decision's); run the rule's response actions."""
        self.alerts_raised += 1
        key = (alert.rule.severity, alert.rule.id)
        self.alerts_by[key] = self.alerts_by.get(key, 0) + 1
        try:
            self.alerts.emit(alert)
        except SentinelEdgeError as exc:  # outputs count their own failures; never stop detection
            self.emit_errors += 1
            if self.emit_errors <= 10:
                log.error("alert %s not written: %s", alert.rule.id, exc)
        if alert.rule.actions and self.responder is not None:
            for follow in self.responder(alert):
                self.emit(follow)

    # -- between batches ------------------------------------------------------------

    def tick(self, event_clock_ns: int) -> None:
        """Periodic work from the agent loop: folds, expiry, reload checks and swaps."""
        now = time.monotonic()
        self.alerts.tick(time.time_ns())
        if now >= self._next_expire:
            self.engine.expire(event_clock_ns)
            self._next_expire = now + EXPIRE_INTERVAL_S
        if self.watch and now >= self._next_watch:
            self._next_watch = now + WATCH_INTERVAL_S
            m = _mtimes(self._watch_files, self._watch_dirs)
            if m != self._mtimes:
                self._mtimes = m
                log.info("rule files changed, reloading")
                self._reload_wanted.set()
        if self._reload_wanted.is_set() and self._loader is None:
            self._reload_wanted.clear()
            self._loader = threading.Thread(target=self._load_in_background, name="rule-reload", daemon=True)
            self._loader.start()
        if self._loader is not None and not self._loader.is_alive():
            self._loader = None
            self._swap()

    def request_reload(self) -> None:
        """Ask for a reload (signal-handler safe)."""
        self._reload_wanted.set()

    def _load_in_background(self) -> None:
        try:
            self._pending = self.source.load_checked()
        except RuleError as exc:
            self._pending = exc
        except Exception as exc:  # a crash in a loader must not take the agent down
            self._pending = RuleError(f"loading rules failed: {exc!r}")

    def _swap(self) -> None:
        pending, self._pending = self._pending, None
        if isinstance(pending, RuleError):
            self.last_reload_error = str(pending)
            self.reload_failures += 1
            log.error("rule reload rejected, the previous %d rules stay active: %s", len(self.engine), pending)
            return
        if pending is None:
            return
        old = len(self.engine)
        self.all_rules = list(pending.rules)
        self.last_reload_error = None
        self.engine = Engine(self._enabled(self.all_rules))
        self.skipped = list(pending.skipped)
        self.reloads += 1
        log.info("rules reloaded: %d rules active (were %d)", len(self.engine), old)

    def wait_reload(self, timeout: float) -> None:
        """Finish a reload in progress (for shutdown and tests)."""
        if self._loader is not None:
            self._loader.join(timeout)

    def close(self) -> None:
        self.alerts.close()

    def status(self) -> dict[str, Any]:
        return {
            **self.engine.summary(),
            "alerts_raised": self.alerts_raised,
            "alert_emit_errors": self.emit_errors,
            "sigma_skipped": len(self.skipped),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
            "alerts_output": self.alerts.stats(),
        }
