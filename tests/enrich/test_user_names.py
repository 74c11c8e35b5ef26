"""uid/gid -> names through NSS with a bounded, expiring cache."""

from __future__ import annotations

import grp
import os
import pwd

import pytest

from sentinel_edge.enrich.users import UserNames

# above any id a Debian host allocates, below (u32)-1
UNKNOWN_ID = 3_999_999_999


def test_real_names_of_this_host() -> None:
    names = UserNames()
    assert names.user(0) == "root"
    assert names.group(0) == "root"
    me = os.getuid()
    assert names.user(me) == pwd.getpwuid(me).pw_name
    nobody = pwd.getpwnam("nobody")
    assert names.user(nobody.pw_uid) == "nobody"
    assert names.group(nobody.pw_gid) == grp.getgrgid(nobody.pw_gid).gr_name


def test_unknown_unset_and_none_ids_give_none() -> None:
    names = UserNames()
    assert names.user(UNKNOWN_ID) is None
    assert names.group(UNKNOWN_ID) is None
    assert names.user(0xFFFFFFFF) is None  # (u32)-1, e.g. an unset loginuid
    assert names.user(-1) is None
    assert names.user(None) is None
    assert names.group(None) is None


class CountingLookup:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, ident: int) -> str | None:
        self.calls.append(ident)
        return None if ident == 13 else f"u{ident}"


def test_answers_are_cached_unknown_ones_too() -> None:
    users = CountingLookup()
    names = UserNames(user_lookup=users)
    assert [names.user(5), names.user(5), names.user(13), names.user(13)] == ["u5", "u5", None, None]
    assert users.calls == [5, 13]


def test_cache_is_bounded_oldest_first() -> None:
    users = CountingLookup()
    names = UserNames(max_entries=2, user_lookup=users)
    for uid in (1, 2, 3):
        names.user(uid)
    assert names.cached() == (2, 0)
    names.user(3)
    names.user(2)
    assert users.calls == [1, 2, 3]  # 2 and 3 still cached
    names.user(1)  # evicted first: looked up again
    assert users.calls == [1, 2, 3, 1]
    assert names.cached() == (2, 0)


def test_entries_expire_so_new_users_get_names() -> None:
    now = [100.0]
    users = CountingLookup()
    names = UserNames(ttl_s=10.0, clock=lambda: now[0], user_lookup=users)
    names.user(7)
    now[0] += 9.0
    names.user(7)
    assert users.calls == [7]
    now[0] += 2.0
    names.user(7)
    assert users.calls == [7, 7]


def test_bad_size_is_rejected() -> None:
    with pytest.raises(ValueError, match="max_entries must be >= 1, got 0"):
        UserNames(max_entries=0)
