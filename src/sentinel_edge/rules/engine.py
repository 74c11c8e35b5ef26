"""The detection stage: enriched events in, alerts out.

    enrich -> Engine.evaluate(event) -> [Alert] -> alerts.AlertOutput

Rules arrive compiled (:class:`~sentinel_edge.rules.compiler.CompiledRule`,
from native YAML files or Sigma); the engine only indexes and runs them.
Index: event kind, then operation (``event.op``), so an event meets only
the rules that can match it; a rule whose kinds are unknown (None) meets
every event. A rule that raises is counted and logged (first few times),
never allowed to stop detection for the other rules.

Which sensors the loaded rules need (:meth:`Engine.sensors_needed`) lets the
agent leave the others off unless it is told to record everything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentinel_edge.errors import RuleError
from sentinel_edge.model import Event
from sentinel_edge.rules.ast import Const
from sentinel_edge.rules.compiler import CompiledRule
from sentinel_edge.rules.index import Bucket, Keys, choose_keys, key_options, rule_ops, specialize
from sentinel_edge.rules.model import Alert

log = logging.getLogger(__name__)

# event kind -> the sensor (enum se_sensor / config key) that produces it
KIND_SENSOR = {
    "exec": "process", "fork": "process", "exit": "process", "comm": "process",
    "file": "file",
    "net": "net",
    "cred": "priv", "ns": "priv",
    "mem": "mem", "ptrace": "mem", "memfd": "mem", "module": "mem", "bpf": "mem", "io_uring": "mem",
}
ALL_KINDS = frozenset(KIND_SENSOR) | {"netdet", "dns", "flow"}  # + the network inspector's kinds
# errors of one rule logged before it goes quiet (it is still counted)
LOG_RULE_ERRORS = 3


@dataclass(slots=True)
class RuleStats:
    matches: int = 0
    errors: int = 0


@dataclass
class LoadedRules:
    """What a load produced: the compiled rules and every problem met on the way."""

    rules: list[CompiledRule] = field(default_factory=list)
    errors: list[RuleError] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (file, reason): Sigma rules not supported
    sources: list[Path] = field(default_factory=list)  # every file read, for change watching


def load_rules(paths: Iterable[str | Path] = (), sigma: Iterable[str | Path] = (), *,
               default: bool = True, state_max_keys: int | None = None) -> LoadedRules:
    """Native rule files/dirs (plus the shipped default set) and Sigma rule files/dirs.

    The default set and the user's files are loaded together, so a user's rules
    can use the default lists and macros (names are global; a clash is an error).
    """
    from sentinel_edge.rules import loader

    out = LoadedRules()
    native = [Path(p) for p in paths]
    files = ([loader.DEFAULT_DIR] if default and loader.DEFAULT_DIR.is_dir() else []) + native
    kw = {} if state_max_keys is None else {"state_max_keys": state_max_keys}
    if files:
        rs = loader.load_rule_files(files, **kw)
        out.rules.extend(rs.rules)
        out.errors.extend(rs.errors)
    sigma_paths = [Path(p) for p in sigma]
    if sigma_paths:
        from sentinel_edge.rules.sigma import load_sigma

        sl = load_sigma(list(sigma_paths))
        out.rules.extend(sl.rules)
        out.skipped.extend(sl.skipped)
    seen: dict[str, CompiledRule] = {}
    unique: list[CompiledRule] = []
    for r in out.rules:
        prev = seen.get(r.meta.id)
        if prev is not None:
            out.errors.append(RuleError(
                f"duplicate rule id '{r.meta.id}' (first defined at {prev.meta.file}:{prev.meta.line})",
                file=r.meta.file, line=r.meta.line))
            continue
        seen[r.meta.id] = r
        unique.append(r)
    out.rules = unique
    out.sources = sorted({*_rule_files(native), *_rule_files(sigma_paths)})
    return out


def _rule_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files.extend(sorted(q for q in p.rglob("*") if q.suffix in (".yaml", ".yml") and q.is_file()))
        else:
            files.append(p)
    return files


class Engine:
    """Runs a fixed set of compiled rules over events (swap the whole Engine to change rules)."""

    def __init__(self, rules: list[CompiledRule]) -> None:
        self.rules = list(rules)
        self.stats: dict[str, RuleStats] = {r.meta.id: RuleStats() for r in self.rules}
        self._by_kind: dict[str, tuple[CompiledRule, ...]] = {}
        for kind in ALL_KINDS:
            self._by_kind[kind] = tuple(r for r in self.rules if r.kinds is None or kind in r.kinds)
        self._stateful = tuple(r for r in self.rules if r.correlator is not None)
        self._ops = {r.meta.id: rule_ops(r.node) for r in self.rules}
        self._buckets: dict[tuple[str, str | None], Bucket] = {}
        self._raw_buckets: dict[tuple[str, Any], Bucket] = {}
        from sentinel_edge.rules.fields import FIELDS

        self._op_of = FIELDS["event.op"].get

    def __len__(self) -> int:
        return len(self.rules)

    def kinds_needed(self) -> frozenset[str]:
        kinds: set[str] = set()
        for r in self.rules:
            kinds |= ALL_KINDS if r.kinds is None else r.kinds
        return frozenset(kinds)

    def sensors_needed(self) -> set[str]:
        """Sensors whose events some rule can match (the process sensor is always needed)."""
        return {"process"} | {KIND_SENSOR[k] for k in self.kinds_needed() if k in KIND_SENSOR}

    def bucket(self, ev: Event) -> Bucket:
        """The compiled rules an event of this kind and op can meet (built on first use).

        Buckets are found by the raw op number (``op``, or ``cmd`` for bpf events): one dict
        lookup; the op name is only computed the first time a number is seen.
        """
        d = ev.data
        raw = (ev.kind, d.get("op", d.get("cmd")))
        b = self._raw_buckets.get(raw)
        if b is None:
            kind = ev.kind
            op = self._op_of(ev)
            b = self._buckets.get((kind, op))
            if b is None:
                rules = []
                options: dict[str, list[Keys]] = {}
                for r in self._by_kind.get(kind, ()):
                    ops = self._ops[r.meta.id]
                    if ops is not None and (op is None or op not in ops):
                        continue
                    node = specialize(r.node, kind, op) if r.node is not None else None
                    if isinstance(node, Const) and not node.value:
                        continue  # no branch of the rule can match this kind and op
                    rules.append(r)
                    options[r.meta.id] = key_options(node)
                b = self._buckets[(kind, op)] = Bucket(rules, choose_keys(options))
            self._raw_buckets[raw] = b
        return b

    def candidates(self, ev: Event) -> list[CompiledRule]:
        """The rules an event is evaluated against (a superset of those that match)."""
        b = self.bucket(ev)
        return [b.rules[i] for i in b.candidates(ev)]

    def evaluate(self, ev: Event) -> list[Alert]:
        b = self.bucket(ev)
        slots = b.candidates(ev)
        if not slots:
            return []
        out: list[Alert] = []
        memo = b.new_memo()
        rules = b.rules
        matchers = b.matchers
        step_matchers = b.step_matchers
        for i in slots:
            r = rules[i]
            try:
                if r.correlator is not None:
                    steps = step_matchers[i]
                    if steps is not None:
                        hits = [j for j, sm in enumerate(steps) if sm(ev, memo)]
                        fired = r.correlator.feed(ev, hits) if hits else None
                    elif r.node is None:
                        fired = r.correlator.feed(ev)
                    else:
                        fired = r.correlator.feed(ev, [0]) if matchers[i](ev, memo) else None
                    if fired:
                        self.stats[r.meta.id].matches += len(fired)
                        out.extend(fired)
                elif matchers[i](ev, memo):
                    self.stats[r.meta.id].matches += 1
                    out.append(Alert(r.meta, [ev], r.render(ev) or r.meta.title, time.time_ns()))
            except Exception as exc:  # a broken rule must not stop the others
                st = self.stats[r.meta.id]
                st.errors += 1
                if st.errors <= LOG_RULE_ERRORS:
                    log.error("rule %s (%s:%d) failed on a %s event: %r", r.meta.id, r.meta.file,
                              r.meta.line, ev.kind, exc)
        return out

    def expire(self, now_ns: int) -> None:
        """Drop correlation state older than its window (event-time clock: boot ns)."""
        for r in self._stateful:
            assert r.correlator is not None
            r.correlator.expire(now_ns)

    def index_summary(self) -> dict[str, int]:
        keyed = sum(1 for r in self.rules if key_options(r.node))
        by_op = sum(1 for o in self._ops.values() if o is not None)
        return {"rules": len(self.rules), "keyed": keyed, "op_indexed": by_op}

    def summary(self) -> dict[str, object]:
        by_source: dict[str, int] = {}
        for r in self.rules:
            by_source[r.meta.source] = by_source.get(r.meta.source, 0) + 1
        return {
            "rules": len(self.rules),
            "by_source": by_source,
            "index": self.index_summary(),
            "matches": sum(s.matches for s in self.stats.values()),
            "rule_errors": {k: s.errors for k, s in self.stats.items() if s.errors},
        }
