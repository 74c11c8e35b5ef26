"""API tokens, roles and the audit log, kept in ``<state dir>/auth.db`` (SQLite).

A token is ``se_`` + 43 url-safe characters (256 random bits), shown once
when it is created; only its SHA-256 is stored. A slow password hash would
add nothing for a secret of that entropy, and SHA-256 lets a request be
checked with one indexed lookup. Revocation by the CLI (another process)
takes effect at the next request: every request looks the hash up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sentinel_edge.errors import ApiError

ROLES = ("viewer", "analyst", "operator", "admin")
PERMISSIONS: dict[str, frozenset[str]] = {
    "viewer": frozenset({"read"}),
    "analyst": frozenset({"read", "alerts:write"}),
    "operator": frozenset({"read", "rules:write", "policies:write"}),
    "admin": frozenset({"read", "alerts:write", "rules:write", "policies:write", "enforcement:switch",
                        "audit:read"}),
}
ALL_PERMISSIONS = ("read", "alerts:write", "rules:write", "policies:write", "enforcement:switch", "audit:read")
TOKEN_PREFIX = "se_"
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
# last_used is written at most this often per token (a write per request would be wasted)
LAST_USED_EVERY_MS = 60_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    role TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    last_used INTEGER,
    revoked INTEGER
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    time INTEGER NOT NULL,
    who TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    detail TEXT NOT NULL,
    outcome TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
"""


@dataclass(frozen=True)
class Principal:
    """Who made a request."""

    name: str
    role: str

    @property
    def permissions(self) -> frozenset[str]:
        return PERMISSIONS[self.role]

    def can(self, permission: str) -> bool:
        return permission in PERMISSIONS[self.role]


@dataclass(frozen=True)
class TokenInfo:
    name: str
    role: str
    created: int
    last_used: int | None
    revoked: int | None


@dataclass(frozen=True)
class AuditEntry:
    id: int
    time: int
    who: str
    role: str
    action: str
    target: str
    detail: str
    outcome: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class AuthStore:
    """Tokens and audit log in one SQLite file (WAL; safe to share between the agent and the CLI)."""

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        self.path = os.fspath(path)
        if not create and not Path(self.path).exists():
            raise ApiError(f"no token store at {self.path} (start the agent once, or pass --state-dir)")
        self._lock = threading.Lock()
        self._last_used: dict[str, int] = {}
        try:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # tokens: root only
            os.close(fd)
            self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
            self._conn.execute("PRAGMA busy_timeout=10000")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.executescript(_SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            raise ApiError(f"token store {self.path}: {exc}") from exc

    @contextlib.contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                yield self._conn
            except sqlite3.Error as exc:
                raise ApiError(f"token store {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # -- tokens ---------------------------------------------------------------------------------

    def create(self, name: str, role: str) -> str:
        """A new token for ``name`` with ``role``; returns the token (never stored in clear)."""
        if role not in ROLES:
            raise ApiError(f"unknown role {role!r}: one of {', '.join(ROLES)}")
        if not _NAME.fullmatch(name):
            raise ApiError(f"token name {name!r}: 1-64 ASCII letters, digits or -_.@")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self._db() as db:
            row = db.execute("SELECT revoked FROM tokens WHERE name = ?", (name,)).fetchone()
            if row is not None and row[0] is None:
                raise ApiError(f"a token named {name!r} exists (revoke it first)")
            db.execute("DELETE FROM tokens WHERE name = ?", (name,))
            db.execute("INSERT INTO tokens (name, role, hash, created) VALUES (?, ?, ?, ?)",
                       (name, role, hash_token(token), _now_ms()))
        return token

    def revoke(self, name: str) -> bool:
        with self._db() as db:
            cur = db.execute("UPDATE tokens SET revoked = ? WHERE name = ? AND revoked IS NULL", (_now_ms(), name))
            return cur.rowcount > 0

    def tokens(self) -> list[TokenInfo]:
        with self._db() as db:
            rows = db.execute("SELECT name, role, created, last_used, revoked FROM tokens ORDER BY id").fetchall()
        return [TokenInfo(*r) for r in rows]

    def count_active(self) -> int:
        with self._db() as db:
            return int(db.execute("SELECT count(*) FROM tokens WHERE revoked IS NULL").fetchone()[0])

    def verify(self, token: str) -> Principal | None:
        """The principal of a valid, unrevoked token; None otherwise."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > 128:
            return None
        h = hash_token(token)
        with self._db() as db:
            row = db.execute("SELECT name, role FROM tokens WHERE hash = ? AND revoked IS NULL", (h,)).fetchone()
            if row is None:
                return None
            now = _now_ms()
            if now - self._last_used.get(h, 0) >= LAST_USED_EVERY_MS:
                self._last_used[h] = now
                db.execute("UPDATE tokens SET last_used = ? WHERE hash = ?", (now, h))
        return Principal(row[0], row[1])

    # -- audit ----------------------------------------------------------------------------------

    def audit(self, who: Principal | None, action: str, target: str, detail: str, outcome: str) -> None:
        with self._db() as db:
            db.execute("INSERT INTO audit (time, who, role, action, target, detail, outcome) VALUES (?,?,?,?,?,?,?)",
                       (_now_ms(), who.name if who else "-", who.role if who else "-", action, target,
                        detail[:4096], outcome))

    def audit_log(self, *, limit: int = 100, before_id: int | None = None) -> list[AuditEntry]:
        sql = "SELECT id, time, who, role, action, target, detail, outcome FROM audit"
        args: list[Any] = []
        if before_id is not None:
            sql += " WHERE id < ?"
            args.append(before_id)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        with self._db() as db:
            rows = db.execute(sql, args).fetchall()
        return [AuditEntry(*r) for r in rows]


def ensure_admin_token(store: AuthStore, state_dir: Path) -> Path | None:
    """First start: no token at all -> make an ``admin`` token and write it to ``admin-token`` (0600)."""
    if store.tokens():
        return None
    token = store.create("admin", "admin")
    path = state_dir / "admin-token"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token + "\n")
    except OSError as exc:
        raise ApiError(f"cannot write the first admin token to {path}: {exc}") from exc
    return path
