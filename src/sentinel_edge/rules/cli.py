"""``sentinel-edge rules validate|test|import-sigma``: rule work without a running agent.

- ``validate PATH...`` parses and compiles rule files; every error as file:line:column.
- ``test --events FILE`` replays recorded OCSF event lines through the rules
  (the default set unless ``--no-default``, plus ``--rules`` and ``--sigma``)
  and prints each alert with the line of the event that completed it.
- ``import-sigma DIR...`` loads Sigma rules and says which did not load and why.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO

from sentinel_edge.errors import RuleError, SentinelEdgeError
from sentinel_edge.model import Event

# correlation state is expired (by event time) at most this often during a replay
EXPIRE_EVERY_NS = 1_000_000_000


def add_rules_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``rules`` command (and its subcommands) to the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "rules", help="validate rule files, replay recorded events through rules, import Sigma rules")
    sub = p.add_subparsers(dest="rules_cmd", metavar="{validate,test,import-sigma}")
    sub.required = True
    v = sub.add_parser("validate", help="parse and compile rule files; print every error as file:line:column")
    v.add_argument("paths", nargs="+", metavar="PATH", help="rule file (.yaml) or directory of rule files")
    v.add_argument("--no-default", action="store_true",
                   help="check the files alone (without the shipped set's lists and macros)")
    t = sub.add_parser("test", help="replay recorded OCSF events (JSON lines) and print the alerts")
    t.add_argument("--events", required=True, metavar="FILE", help="OCSF events, one JSON object a line")
    t.add_argument("--rules", nargs="+", action="extend", default=[], metavar="PATH",
                   help="native rule files or directories (in addition to the default set)")
    t.add_argument("--sigma", nargs="+", action="extend", default=[], metavar="PATH",
                   help="Sigma rule files or directories")
    t.add_argument("--no-default", action="store_true", help="leave the shipped default rule set out")
    s = sub.add_parser("import-sigma", help="load Sigma rules; print how many loaded and why the others did not")
    s.add_argument("paths", nargs="+", metavar="DIR", help="Sigma rule files or directories")
    p.set_defaults(fn=run_rules)
    return p


def run_rules(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``rules`` subcommand; 0 on success, 1 when rules or events had problems."""
    out = out or sys.stdout
    err = err or sys.stderr
    cmd = args.rules_cmd
    if cmd == "validate":
        return _validate(args.paths, out, err, default=not args.no_default)
    if cmd == "test":
        return _test(args.events, args.rules, args.sigma, not args.no_default, out, err)
    if cmd == "import-sigma":
        from sentinel_edge.rules.sigma import import_sigma_main

        return import_sigma_main(list(args.paths), out)
    err.write(f"unknown rules command {cmd!r}\n")
    return 2


def _print_errors(errors: list[RuleError], err: TextIO) -> None:
    for e in errors:
        err.write(f"{e}\n")


def _validate(paths: list[str], out: TextIO, err: TextIO, default: bool = True) -> int:
    """Check files as the agent loads them: beside the default set (its lists and macros are
    usable), unless ``default`` is False or a path is the default set itself."""
    from sentinel_edge.rules.loader import DEFAULT_DIR, load_rule_files

    given = [Path(p) for p in paths]
    with_default = default and DEFAULT_DIR.is_dir() and not any(
        p.resolve() == DEFAULT_DIR.resolve() or DEFAULT_DIR.resolve() in p.resolve().parents for p in given)
    rs = load_rule_files([DEFAULT_DIR, *given] if with_default else given)
    if rs.errors:
        _print_errors(rs.errors, err)
        err.write(f"{len(rs.errors)} error{'s' if len(rs.errors) != 1 else ''} in {len(rs.files)} "
                  f"file{'s' if len(rs.files) != 1 else ''}\n")
        return 1
    n = len(rs.rules) + len(rs.disabled)
    extra = f" ({len(rs.disabled)} disabled)" if rs.disabled else ""
    out.write(f"{n} rule{'s' if n != 1 else ''} OK{extra} in {len(rs.files)} file{'s' if len(rs.files) != 1 else ''}\n")
    return 0


def _test(events: str, rules: list[str], sigma: list[str], default: bool, out: TextIO, err: TextIO) -> int:
    from sentinel_edge.rules.engine import Engine, load_rules

    # the OCSF reader (sentinel_edge.rules.replay) is looked up at run time
    iter_events: Callable[[str], Iterator[tuple[int, Event]]] = \
        importlib.import_module("sentinel_edge.rules.replay").iter_events

    loaded = load_rules(rules, sigma, default=default)
    for file, reason in loaded.skipped:
        err.write(f"{file}: Sigma rule not loaded: {reason}\n")
    if loaded.errors:
        _print_errors(loaded.errors, err)
        err.write(f"{len(loaded.errors)} rule error{'s' if len(loaded.errors) != 1 else ''}: nothing replayed\n")
        return 1
    if not loaded.rules:
        err.write("no rules to test (give --rules PATH, or leave out --no-default)\n")
        return 1
    engine = Engine(loaded.rules)
    fired: Counter[str] = Counter()
    severity: dict[str, str] = {}
    n_events = 0
    last_expire = None
    try:
        for line, event in iter_events(events):
            n_events += 1
            for a in engine.evaluate(event):
                fired[a.rule.id] += 1
                severity[a.rule.id] = a.rule.severity
                lines = ""
                if len(a.events) > 1:
                    lines = f" (after {len(a.events) - 1} earlier event{'s' if len(a.events) > 2 else ''})"
                out.write(f"line {line}: {a.rule.id} [{a.rule.severity}] {a.message}{lines}\n")
            if last_expire is None or event.ts_ns - last_expire >= EXPIRE_EVERY_NS:
                engine.expire(event.ts_ns)
                last_expire = event.ts_ns
    except SentinelEdgeError as exc:
        err.write(f"{exc}\n")
        return 1
    total = sum(fired.values())
    out.write(f"{n_events} event{'s' if n_events != 1 else ''} replayed through {len(loaded.rules)} rules: "
              f"{total} alert{'s' if total != 1 else ''}\n")
    for rid, n in sorted(fired.items(), key=lambda kv: (-kv[1], kv[0])):
        out.write(f"  {n:>6}  {rid} [{severity[rid]}]\n")
    errors = engine.summary().get("rule_errors") or {}
    if isinstance(errors, dict) and errors:
        for rid, n in sorted(errors.items()):
            err.write(f"rule {rid} raised on {n} event{'s' if n != 1 else ''}\n")
        return 1
    return 0
