"""Stateful rules: sequences of steps and thresholds, per key, within a time window.

Time is the events' own time (``Event.ts_ns``, boot-time ns), so a replayed
recording correlates the same way as live events. State is bounded: at most
``max_keys`` keys (the least recently touched is evicted first, and counted
in ``evicted``), a few open sequences per key, a few sample events per
counter; everything older than the window is dropped as events arrive for
its key and by :meth:`Correlator.expire`, which the engine calls with the
current time.

``by: proc.tree`` groups a process with its whole tree: see :func:`tree_key`.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.rules.ast import Field
from sentinel_edge.rules.compiler import Getter, Predicate, compile_getter
from sentinel_edge.rules.model import Alert, RuleMeta

DEFAULT_MAX_KEYS = 10_000
MAX_OPEN_PER_KEY = 16      # open sequences kept for one key (the oldest goes first)
MAX_SAMPLES = 10           # events a threshold alert carries (the latest ones counted)
UNITS_NS = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}

# Processes that start a new tree below them: init, session and job launchers.
# Names are comm (15 characters at most).
TREE_BOUNDARIES = frozenset({
    "systemd", "init", "sshd", "sshd-session", "login", "agetty", "getty", "cron", "crond", "atd", "anacron",
    "tmux: server", "screen", "SCREEN", "conmon", "runc", "crun", "containerd", "dockerd", "kthreadd",
})
TREE_BOUNDARY_PREFIXES = ("containerd-shim", "systemd-")


def parse_duration(text: str) -> int | None:
    """``500ms``, ``30s``, ``5m``, ``1h`` in ns; None when it is not a duration."""
    t = text.strip()
    for unit in ("ms", "s", "m", "h"):
        if t.endswith(unit):
            num = t[: -len(unit)].strip()
            if num.isdigit() and int(num) > 0:
                return int(num) * UNITS_NS[unit]
            return None
    return None


def _is_boundary(p: ProcessInfo) -> bool:
    return p.pid <= 2 or p.comm in TREE_BOUNDARIES or p.comm.startswith(TREE_BOUNDARY_PREFIXES)


def tree_root(e: Event) -> ProcessInfo | None:
    """The root of the event's process tree.

    Walking up from the process (itself, parent, grandparent, ...) the root is
    the last process met before one that starts trees: pid 1 and kernel
    threads, a session or job launcher (sshd, login, getty, cron, atd, tmux or
    screen server, container shims and runtimes, systemd's helpers). So the
    commands of one SSH login, one cron job, one container or one service
    (nginx and its workers) share a root; two logins do not. When the ancestry
    is cut short, the oldest known ancestor is the root; a launcher's own
    events have itself as root.
    """
    p = e.process
    if p is None:
        return None
    root = p
    for a in e.ancestry:
        if _is_boundary(a):
            break
        root = a
    return root


def tree_key(e: Event) -> str | None:
    """``pid:start_ns`` of :func:`tree_root` (a process identity, kept across exec)."""
    r = tree_root(e)
    return None if r is None else f"{r.pid}:{r.start_ns}"


def key_getter(by: str) -> Callable[[Event], Any]:
    """The key function for ``by``: ``proc.tree`` or any field (lists become tuples, to be hashable)."""
    if by == "proc.tree":
        return tree_key
    get = compile_getter(Field(by))

    def key(e: Event) -> Any:
        v = get(e)
        return tuple(v) if isinstance(v, list) else v

    return key


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, list) else v


S = TypeVar("S")


@dataclass(slots=True)
class _Slot(Generic[S]):
    last_ns: int
    state: S


class Correlator:
    """State of one stateful rule: ``feed`` events, get alerts; ``expire`` old state."""

    def __init__(self, meta: RuleMeta, by: str, within_ns: int, render: Callable[[Event], str],
                 max_keys: int = DEFAULT_MAX_KEYS) -> None:
        self.meta = meta
        self.by = by
        self.key = key_getter(by)
        self.within_ns = within_ns
        self.render = render
        self.max_keys = max(1, max_keys)
        self.evicted = 0          # keys dropped because the table was full
        self.expired = 0          # keys dropped because their window passed

    def feed(self, event: Event, hits: list[int] | None = None) -> list[Alert]:
        """Take one event; ``hits``: the indexes of the steps (sequence) or [0] (threshold) the
        caller already found the event matches, to spare testing them again (None: test here)."""
        raise NotImplementedError

    def expire(self, now_ns: int) -> None:
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError

    def _alert(self, events: list[Event], data: dict[str, Any]) -> Alert:
        last = events[-1]
        try:
            message = self.render(last) or self.meta.title
        except Exception:  # a template must never lose an alert
            message = self.meta.title
        return Alert(self.meta, events, message, time.time_ns(), data=data)


@dataclass(slots=True)
class _Open:
    start_ns: int
    events: list[Event]
    captured: dict[tuple[int, str], Any]


@dataclass
class Step:
    """One step of a sequence: its condition, and ``same`` constraints on values captured earlier.

    ``same`` holds (getter on this event, earlier step index, field name
    captured from that step): ``same: {proc.exe: write.file.path}``.
    """

    name: str
    match: Predicate
    same: list[tuple[Getter, int, str]] = field(default_factory=list)


class SequenceCorrelator(Correlator):
    """Steps matched in order by events with the same key, the last within ``within_ns`` of the first."""

    def __init__(self, meta: RuleMeta, steps: Sequence[Step], by: str, within_ns: int,
                 render: Callable[[Event], str], max_keys: int = DEFAULT_MAX_KEYS) -> None:
        super().__init__(meta, by, within_ns, render, max_keys)
        self.steps = list(steps)
        # what each step must capture for the steps after it
        self.captures: list[list[tuple[str, Getter]]] = [[] for _ in self.steps]
        for st in self.steps:
            for _get, idx, fname in st.same:
                if all(n != fname for n, _ in self.captures[idx]):
                    self.captures[idx].append((fname, compile_getter(Field(fname))))
        self._keys: OrderedDict[Any, _Slot[list[_Open]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def open_sequences(self) -> int:
        return sum(len(s.state) for s in self._keys.values())

    def _capture(self, i: int, e: Event, into: dict[tuple[int, str], Any]) -> None:
        for fname, get in self.captures[i]:
            into[(i, fname)] = get(e)

    @staticmethod
    def _same(step: Step, o: _Open, e: Event) -> bool:
        for get, idx, fname in step.same:
            want = o.captured.get((idx, fname))
            have = get(e)
            if want is None or have is None:
                return False
            ws = want if isinstance(want, list) else (want,)
            hs = have if isinstance(have, list) else (have,)
            if not any(w == h for w in ws for h in hs):
                return False
        return True

    def feed(self, event: Event, hits: list[int] | None = None) -> list[Alert]:
        if hits is None:
            hits = [i for i, st in enumerate(self.steps) if st.match(event)]
        if not hits:
            return []
        key = self.key(event)
        if key is None:
            return []
        now = event.ts_ns
        slot = self._keys.get(key)
        alerts: list[Alert] = []
        if slot is not None:
            opened = [o for o in slot.state if now - o.start_ns <= self.within_ns]
            done: list[_Open] = []
            for o in opened:
                j = len(o.events)
                if j in hits and j > 0 and self._same(self.steps[j], o, event):
                    self._capture(j, event, o.captured)
                    o.events.append(event)
                    if len(o.events) == len(self.steps):
                        done.append(o)
            for o in done:
                opened.remove(o)
                alerts.append(self._alert(o.events, {"key": str(key), "steps": [s.name for s in self.steps]}))
            slot.state = opened
            slot.last_ns = max(slot.last_ns, now)
        if 0 in hits:
            captured: dict[tuple[int, str], Any] = {}
            self._capture(0, event, captured)
            if len(self.steps) == 1:
                alerts.append(self._alert([event], {"key": str(key), "steps": [self.steps[0].name]}))
            else:
                if slot is None:
                    slot = _Slot(now, [])
                    self._keys[key] = slot
                    self._bound()
                # the same first step again (a file rewritten) restarts its sequence instead of adding one
                for o in slot.state:
                    if len(o.events) == 1 and o.captured == captured:
                        o.start_ns, o.events = now, [event]
                        break
                else:
                    slot.state.append(_Open(now, [event], captured))
                    if len(slot.state) > MAX_OPEN_PER_KEY:
                        del slot.state[0]
                slot.last_ns = max(slot.last_ns, now)
        if slot is not None:
            if slot.state:
                self._keys.move_to_end(key)
            else:
                self._keys.pop(key, None)
        return alerts

    def _bound(self) -> None:
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
            self.evicted += 1

    def expire(self, now_ns: int) -> None:
        """Drop every open sequence whose window ended before ``now_ns``."""
        horizon = now_ns - self.within_ns
        for key in list(self._keys):
            slot = self._keys[key]
            if slot.last_ns >= horizon:
                slot.state = [o for o in slot.state if o.start_ns >= horizon]
                if slot.state:
                    continue
            del self._keys[key]
            self.expired += 1


@dataclass(slots=True)
class _Count:
    times: deque[int] = field(default_factory=deque)               # count mode: event times
    values: OrderedDict[Any, int] = field(default_factory=OrderedDict)  # distinct mode: value -> last time
    samples: deque[Event] = field(default_factory=lambda: deque(maxlen=MAX_SAMPLES))


class ThresholdCorrelator(Correlator):
    """``count`` matching events (or distinct values of a field) for one key within ``within_ns``.

    On reaching the count the rule fires once and the key's counter starts
    again from zero, so a long burst fires once per ``count`` events, not on
    every event after the threshold.
    """

    def __init__(self, meta: RuleMeta, match: Predicate, by: str, count: int, within_ns: int,
                 render: Callable[[Event], str], distinct: str | None = None,
                 max_keys: int = DEFAULT_MAX_KEYS) -> None:
        super().__init__(meta, by, within_ns, render, max_keys)
        self.match = match
        self.count = count
        self.distinct = distinct
        self._distinct_get = compile_getter(Field(distinct)) if distinct else None
        self._keys: OrderedDict[Any, _Slot[_Count]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def feed(self, event: Event, hits: list[int] | None = None) -> list[Alert]:
        if not (self.match(event) if hits is None else hits):
            return []
        key = self.key(event)
        if key is None:
            return []
        value = None
        if self._distinct_get is not None:
            value = _hashable(self._distinct_get(event))
            if value is None:
                return []
        now = event.ts_ns
        horizon = now - self.within_ns
        slot = self._keys.get(key)
        if slot is None:
            slot = _Slot(now, _Count())
            self._keys[key] = slot
            self._bound()
        else:
            self._keys.move_to_end(key)
            slot.last_ns = max(slot.last_ns, now)
        c = slot.state
        if self._distinct_get is None:
            while c.times and c.times[0] < horizon:
                c.times.popleft()
            c.times.append(now)
            n = len(c.times)
        else:
            c.values[value] = now
            c.values.move_to_end(value)
            while c.values:
                first = next(iter(c.values.items()))
                if first[1] >= horizon:
                    break
                c.values.popitem(last=False)
            n = len(c.values)
        c.samples.append(event)
        if n < self.count:
            return []
        del self._keys[key]
        data: dict[str, Any] = {"key": str(key), "count": n, "window_ns": self.within_ns}
        if self.distinct:
            data["distinct"] = self.distinct
        return [self._alert(list(c.samples), data)]

    def _bound(self) -> None:
        while len(self._keys) > self.max_keys:
            self._keys.popitem(last=False)
            self.evicted += 1

    def expire(self, now_ns: int) -> None:
        """Drop the counters of keys with no event inside the window ending at ``now_ns``."""
        horizon = now_ns - self.within_ns
        for key in list(self._keys):
            if self._keys[key].last_ns < horizon:
                del self._keys[key]
                self.expired += 1
