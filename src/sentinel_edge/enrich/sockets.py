"""Socket cookie -> the process that owns the socket, from the net sensor's events.

Every net sensor event carries the socket cookie; the packet inspector's TC
egress program reads the same cookie from the packet (``bpf_get_socket_cookie``).
This table is how a flow or a DNS message gets its process: by the socket
that sent it, never by guessing from addresses and ports. Bounded: the least
recently noted sockets are forgotten first.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from sentinel_edge.model import KIND_NET, Event

# se_net_op values whose se_proc is the socket's owner but not the calling task (state changes
# run in softirq context with the owner recorded at connect): they only fill a gap
_OP_CONNECT_DONE = 3
_OP_STATE = 8


class SocketTable:
    """Cookie -> se_proc dict of the process that used the socket."""

    def __init__(self, max_entries: int = 65536) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self._t: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self.noted = 0

    def __len__(self) -> int:
        return len(self._t)

    def note(self, ev: Event) -> None:
        """Remember the owner of the socket of a net sensor event (other kinds are ignored)."""
        if ev.kind != KIND_NET:
            return
        cookie = ev.data.get("cookie")
        if not cookie or not ev.proc or not ev.proc.get("pid"):
            return
        t = self._t
        if ev.data.get("op") in (_OP_STATE, _OP_CONNECT_DONE) and cookie in t:
            return
        t[cookie] = ev.proc
        t.move_to_end(cookie)
        self.noted += 1
        if len(t) > self.max_entries:
            t.popitem(last=False)

    def owner(self, cookie: int) -> dict[str, Any] | None:
        """The se_proc of the socket's process, or None when this table never saw the socket."""
        if not cookie:
            return None
        return self._t.get(cookie)
