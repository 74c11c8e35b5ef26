"""The live stream hub: the pipeline publishes OCSF objects, API subscribers read them.

``publish`` runs on the pipeline thread for every event, so with no
subscriber it costs one attribute test. Each subscriber has its own filter
(checked on the pipeline thread, cheap) and a bounded deque; the async side
drains it. Events beyond ``max_rate`` per second for one subscriber are
sampled out for that subscriber only (counted and reported with a
``sampled`` message); alerts are never sampled, and nothing here touches
history or the outputs.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from sentinel_edge.history.store import _get
from sentinel_edge.history.store import _texts as search_texts

#: items waiting for a slow subscriber before the oldest events are dropped (alerts are kept)
SUBSCRIBER_BUFFER = 5000


@dataclass
class StreamFilter:
    events: bool = True
    alerts: bool = True
    class_uids: frozenset[int] = frozenset()
    text: str = ""  # case-insensitive substring of the process command line, exe or file path

    def wants(self, kind: str, obj: dict[str, Any]) -> bool:
        if kind == "alert":
            return self.alerts and (not self.text or self._text_in(obj))
        if not self.events:
            return False
        if self.class_uids and obj.get("class_uid") not in self.class_uids:
            return False
        return not self.text or self._text_in(obj)

    def _text_in(self, obj: dict[str, Any]) -> bool:
        needle = self.text.lower()
        for hay in _texts(obj):
            if needle in hay.lower():
                return True
        return False


def _texts(obj: dict[str, Any]) -> list[str]:
    """What the text filter looks in: the history's full-text fields, process names, message and title."""
    cmds, paths = search_texts(obj)
    out = [*cmds.split("\n"), *paths.split("\n")]
    for v in (_get(obj, "actor", "process", "name"), _get(obj, "process", "name"), obj.get("message"),
              _get(obj, "finding_info", "title")):
        if isinstance(v, str):
            out.append(v)
    return [t for t in out if t]


@dataclass
class Subscriber:
    filter: StreamFilter
    max_rate: int
    items: deque[tuple[str, dict[str, Any]]] = field(default_factory=deque)
    window_start: float = 0.0
    shown: int = 0  # events passed in the current 1 s window
    matched: int = 0  # events that matched in the current window
    reports: deque[dict[str, int]] = field(default_factory=deque)  # finished windows that sampled
    lost_slow: int = 0  # events dropped because the reader did not keep up
    wake: threading.Event = field(default_factory=threading.Event)


class LiveHub:
    def __init__(self, max_rate: int = 200) -> None:
        self.max_rate = max_rate
        self._subs: tuple[Subscriber, ...] = ()
        self._lock = threading.Lock()
        self.published = 0

    @property
    def active(self) -> bool:
        return bool(self._subs)

    def subscribe(self, flt: StreamFilter) -> Subscriber:
        sub = Subscriber(flt, self.max_rate)
        with self._lock:
            self._subs = (*self._subs, sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        with self._lock:
            self._subs = tuple(s for s in self._subs if s is not sub)

    def subscribers(self) -> int:
        return len(self._subs)

    def publish(self, kind: str, obj: dict[str, Any]) -> None:
        """From the pipeline thread: ``kind`` is "event" or "alert"."""
        subs = self._subs
        if not subs:
            return
        self.published += 1
        now = time.monotonic()
        for s in subs:
            if not s.filter.wants(kind, obj):
                continue
            if kind == "event":
                if now - s.window_start >= 1.0:
                    if s.matched > s.shown:
                        s.reports.append({"shown": s.shown, "matched": s.matched, "window_s": 1})
                    s.window_start, s.shown, s.matched = now, 0, 0
                s.matched += 1
                if s.shown >= s.max_rate:
                    continue
                s.shown += 1
                if len(s.items) >= SUBSCRIBER_BUFFER:
                    s.lost_slow += 1
                    continue
            s.items.append((kind, obj))
            s.wake.set()

    def take(self, sub: Subscriber, limit: int = 500) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, int]]]:
        """From the reader: what is waiting (at most ``limit``), and sampling reports."""
        out: list[tuple[str, dict[str, Any]]] = []
        while sub.items and len(out) < limit:
            out.append(sub.items.popleft())
        reports: list[dict[str, int]] = []
        while sub.reports:
            reports.append(sub.reports.popleft())
        if not sub.items:
            sub.wake.clear()
        return out, reports
