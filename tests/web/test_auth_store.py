"""Token store and audit log (web/auth.py) and the token / audit commands, on real SQLite files."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from sentinel_edge.errors import ApiError
from sentinel_edge.web.auth import PERMISSIONS, ROLES, AuthStore, Principal, ensure_admin_token


def test_tokens_are_stored_hashed_and_verified(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.db")
    tok = store.create("alice", "analyst")
    assert tok.startswith("se_") and len(tok) == 3 + 43
    assert store.verify(tok) == Principal("alice", "analyst")
    raw = (tmp_path / "auth.db").read_bytes() + (tmp_path / "auth.db-wal").read_bytes()
    assert tok.encode() not in raw  # never in clear, in the file or its WAL
    rows = sqlite3.connect(tmp_path / "auth.db").execute("SELECT name, role, hash FROM tokens").fetchall()
    assert rows == [("alice", "analyst", hashlib.sha256(tok.encode()).hexdigest())]
    assert stat.S_IMODE(os.stat(tmp_path / "auth.db").st_mode) == 0o600
    assert store.verify(tok[:-1] + ("A" if tok[-1] != "A" else "B")) is None
    assert store.verify("not-a-token") is None
    assert store.verify("se_" + "x" * 500) is None
    info = store.tokens()
    assert [(t.name, t.role, t.revoked) for t in info] == [("alice", "analyst", None)]
    assert info[0].last_used is not None and info[0].created <= info[0].last_used


def test_revoke_takes_effect_at_once_also_from_another_connection(tmp_path: Path) -> None:
    agent_side = AuthStore(tmp_path / "auth.db")
    tok = agent_side.create("bob", "operator")
    assert agent_side.verify(tok) is not None
    cli_side = AuthStore(tmp_path / "auth.db", create=False)
    assert cli_side.revoke("bob") is True
    assert cli_side.revoke("bob") is False  # already revoked
    assert agent_side.verify(tok) is None
    # the name can be used again after revocation, with a new secret
    tok2 = cli_side.create("bob", "viewer")
    assert agent_side.verify(tok2) == Principal("bob", "viewer") and agent_side.verify(tok) is None


def test_bad_names_roles_and_duplicates_are_refused(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.db")
    with pytest.raises(ApiError, match="unknown role 'root'"):
        store.create("x", "root")
    for bad in ("", "a b", "x\ny", "é" * 3, "a" * 65):
        with pytest.raises(ApiError, match="token name"):
            store.create(bad, "viewer")
    store.create("carol", "viewer")
    with pytest.raises(ApiError, match="exists"):
        store.create("carol", "admin")
    with pytest.raises(ApiError, match="no token store"):
        AuthStore(tmp_path / "missing" / "auth.db", create=False)


def test_permission_table_matches_the_documented_one() -> None:
    doc = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    table = [line for line in doc.splitlines() if line.startswith("| `")]
    seen: dict[str, set[str]] = {}
    for line in table:
        cells = [c.strip() for c in line.strip("|").split("|")]
        perm = cells[0].strip("`")
        if perm not in {p for ps in PERMISSIONS.values() for p in ps}:
            continue
        seen[perm] = {role for role, cell in zip(ROLES, cells[2:6], strict=True) if cell == "yes"}
    assert set(seen) == {p for ps in PERMISSIONS.values() for p in ps}, "permission table of docs/api.md"
    for perm, roles in seen.items():
        assert roles == {r for r in ROLES if perm in PERMISSIONS[r]}, perm


def test_audit_log_and_first_admin_token(tmp_path: Path) -> None:
    store = AuthStore(tmp_path / "auth.db")
    path = ensure_admin_token(store, tmp_path)
    assert path == tmp_path / "admin-token"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    tok = path.read_text().strip()
    assert store.verify(tok) == Principal("admin", "admin")
    assert ensure_admin_token(store, tmp_path) is None  # only when there is no token at all
    who = store.verify(tok)
    store.audit(who, "POST /api/v1/alerts/{uid}/ack", "/api/v1/alerts/u1/ack", "looked at it", "ok")
    store.audit(None, "POST /api/v1/rules/reload", "/api/v1/rules/reload", "", "unauthenticated")
    log = store.audit_log()
    assert [(e.who, e.role, e.action, e.target, e.detail, e.outcome) for e in log] == [
        ("-", "-", "POST /api/v1/rules/reload", "/api/v1/rules/reload", "", "unauthenticated"),
        ("admin", "admin", "POST /api/v1/alerts/{uid}/ack", "/api/v1/alerts/u1/ack", "looked at it", "ok"),
    ]
    assert [e.id for e in store.audit_log(limit=1, before_id=log[0].id)] == [log[1].id]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "sentinel_edge.cli", *args], capture_output=True, text=True,
                          timeout=60)


def test_token_and_audit_commands(tmp_path: Path) -> None:
    state = str(tmp_path)
    r = _cli("token", "create", "--name", "dave", "--role", "viewer", "--state-dir", state)
    assert r.returncode == 0, r.stderr
    tok = r.stdout.strip()
    assert "shown only now" in r.stderr
    store = AuthStore(tmp_path / "auth.db", create=False)
    assert store.verify(tok) == Principal("dave", "viewer")
    r = _cli("token", "list", "--json", "--state-dir", state)
    rows = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(x["name"], x["role"], x["revoked"]) for x in rows] == [("dave", "viewer", None)]
    r = _cli("token", "create", "--name", "dave", "--role", "admin", "--state-dir", state)
    assert r.returncode == 2 and "exists" in r.stderr
    r = _cli("token", "create", "--name", "eve", "--role", "root", "--state-dir", state)
    assert r.returncode == 2 and "invalid choice" in r.stderr
    store.audit(Principal("dave", "viewer"), "POST /x", "/x\n\x1b[31m", "", "refused")
    r = _cli("audit", "--state-dir", state)
    assert r.returncode == 0 and "dave (viewer) POST /x /x\\x0a\\x1b[31m -> refused" in r.stdout
    r = _cli("token", "revoke", "dave", "--state-dir", state)
    assert r.returncode == 0 and store.verify(tok) is None
    r = _cli("token", "revoke", "dave", "--state-dir", state)
    assert r.returncode == 1 and "no active token" in r.stderr
