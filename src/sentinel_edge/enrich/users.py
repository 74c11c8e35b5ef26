"""uid / gid to names, through the host's NSS (``pwd`` / ``grp``) with a bounded cache.

Names are the *host's* view. A process in a container with its own
``/etc/passwd`` (and, with a user namespace, its own id mapping) may call uid
1000 something else, or nothing at all; the host cannot know, so the numeric
id is the authority and the name is a hint. Ids are the kernel's view from
the initial user namespace (``cred->uid`` read by the sensors).

NSS lookups can be slow (LDAP, sssd), so every answer is cached, unknown ids
included (``None``), up to ``max_entries`` per table; entries older than
``ttl_s`` are looked up again so users created after the agent started get
their names.
"""

from __future__ import annotations

import grp
import pwd
import time
from collections.abc import Callable

_UNSET_ID = 0xFFFFFFFF  # (u32)-1: "no id" (e.g. loginuid unset)


class _NameCache:
    """A bounded id -> name cache with expiry; oldest entries evicted first."""

    __slots__ = ("_clock", "_entries", "_lookup", "_max", "_ttl")

    def __init__(
        self,
        lookup: Callable[[int], str | None],
        *,
        max_entries: int,
        ttl_s: float,
        clock: Callable[[], float],
    ) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be >= 1, got {max_entries}")
        self._lookup = lookup
        self._max = max_entries
        self._ttl = ttl_s
        self._clock = clock
        self._entries: dict[int, tuple[str | None, float]] = {}

    def get(self, ident: int) -> str | None:
        hit = self._entries.get(ident)
        now = self._clock()
        if hit is not None and now - hit[1] < self._ttl:
            return hit[0]
        name = self._lookup(ident) if 0 <= ident < _UNSET_ID else None
        if hit is not None:
            del self._entries[ident]  # re-inserted at the young end
        elif len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
        self._entries[ident] = (name, now)
        return name

    def __len__(self) -> int:
        return len(self._entries)


def _user_name(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except (KeyError, OverflowError):
        return None


def _group_name(gid: int) -> str | None:
    try:
        return grp.getgrgid(gid).gr_name
    except (KeyError, OverflowError):
        return None


class UserNames:
    """Cached uid -> user name and gid -> group name; ``None`` for unknown ids."""

    def __init__(
        self,
        *,
        max_entries: int = 4096,
        ttl_s: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        user_lookup: Callable[[int], str | None] = _user_name,
        group_lookup: Callable[[int], str | None] = _group_name,
    ) -> None:
        self._users = _NameCache(user_lookup, max_entries=max_entries, ttl_s=ttl_s, clock=clock)
        self._groups = _NameCache(group_lookup, max_entries=max_entries, ttl_s=ttl_s, clock=clock)

    def user(self, uid: int | None) -> str | None:
        """Name of ``uid`` on this host, or ``None`` (unknown, unset, or ``None`` given)."""
        return None if uid is None else self._users.get(uid)

    def group(self, gid: int | None) -> str | None:
        """Name of ``gid`` on this host, or ``None``."""
        return None if gid is None else self._groups.get(gid)

    def cached(self) -> tuple[int, int]:
        """Number of cached (users, groups)."""
        return len(self._users), len(self._groups)
