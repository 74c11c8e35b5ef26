"""``sentinel-edge token create|list|revoke`` and ``sentinel-edge audit``: API access from the host's shell."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from pathlib import Path
from typing import Any

from sentinel_edge import config
from sentinel_edge.web.auth import ROLES, AuthStore


def _store(args: argparse.Namespace, create: bool = False) -> AuthStore:
    state = Path(args.state_dir or config.load(args.config).state_dir)
    return AuthStore(state / "auth.db", create=create)


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _safe(text: str) -> str:
    """Control characters shown escaped (names and details can come from API callers)."""
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _cmd_create(args: argparse.Namespace) -> int:
    store = _store(args, create=True)
    try:
        token = store.create(args.name, args.role)
    finally:
        store.close()
    print(token)
    print(f"token {args.name!r} ({args.role}) created; it is shown only now", file=sys.stderr)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = store.tokens()
    finally:
        store.close()
    if args.json:
        for t in rows:
            print(json.dumps(vars(t)))
        return 0
    print(f"{'name':<24} {'role':<9} {'created':<21} {'last used':<21} revoked")
    for t in rows:
        print(f"{_safe(t.name):<24} {t.role:<9} {_when(t.created):<21} {_when(t.last_used):<21} {_when(t.revoked)}")
    return 0


def _cmd_revoke(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        done = store.revoke(args.name)
    finally:
        store.close()
    if not done:
        print(f"no active token named {args.name!r}", file=sys.stderr)
        return 1
    print(f"token {args.name!r} revoked")
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    store = _store(args)
    try:
        rows = store.audit_log(limit=args.limit)
    finally:
        store.close()
    for r in reversed(rows):
        if args.json:
            print(json.dumps(vars(r)))
        else:
            print(f"{_when(r.time)} {_safe(r.who)} ({r.role}) {_safe(r.action)} {_safe(r.target)} -> {r.outcome}"
                  + (f" [{_safe(r.detail)}]" if r.detail else ""))
    return 0


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", help="agent config file (for state_dir)")
    p.add_argument("--state-dir", help="the agent's state directory (default: state_dir of the config)")


def add_token_parsers(sub: Any) -> None:
    tok = sub.add_parser("token", help="API tokens for the REST API and the console (docs/api.md)")
    tsub = tok.add_subparsers(dest="token_command", required=True)
    c = tsub.add_parser("create", help="make a token and print it (once)")
    c.add_argument("--name", required=True)
    c.add_argument("--role", required=True, choices=ROLES)
    _common(c)
    c.set_defaults(fn=_cmd_create)
    ls = tsub.add_parser("list", help="tokens, their roles and when they were last used")
    ls.add_argument("--json", action="store_true")
    _common(ls)
    ls.set_defaults(fn=_cmd_list)
    rv = tsub.add_parser("revoke", help="revoke a token by name (effective at the next request)")
    rv.add_argument("name")
    _common(rv)
    rv.set_defaults(fn=_cmd_revoke)
    au = sub.add_parser("audit", help="the API audit log: every change, who, when, outcome")
    au.add_argument("--limit", type=int, default=100)
    au.add_argument("--json", action="store_true")
    _common(au)
    au.set_defaults(fn=_cmd_audit)
