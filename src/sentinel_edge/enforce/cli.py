"""``sentinel-edge policy ...``: policy work from the command line.

- ``validate FILE...`` reads policy files (or directories of them) as the
  agent does; every problem is printed as ``file:line:column: field: reason``.
- ``dry-run --events REC.jsonl FILE...`` shows what the policies would have
  hit over a recording of OCSF events (``sentinel-edge run -o REC.jsonl``).

Each subcommand is one ``_add_<name>`` function (its arguments) and one
``_cmd_<name>`` function (``(args, out, err) -> exit code``), listed in
:data:`SUBCOMMANDS`; a new subcommand is one more pair and one more entry.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

from sentinel_edge.enforce.manage import MANAGE_SUBCOMMANDS
from sentinel_edge.enforce.model import PolicySet
from sentinel_edge.errors import PolicyError, SentinelEdgeError

Command = Callable[[argparse.Namespace, TextIO, TextIO], int]


def _plural(n: int, word: str, many: str | None = None) -> str:
    return f"{n} {word if n == 1 else (many or word + 's')}"


def _load(paths: list[str], err: TextIO) -> PolicySet | None:
    """The policy set of ``paths``, or None after printing every error to ``err``."""
    from sentinel_edge.enforce.policy import load_policy_files

    try:
        return load_policy_files(paths)
    except PolicyError as exc:
        errors = exc.errors or [exc]
        for e in errors:
            err.write(f"{e}\n")
        files = len({e.file for e in errors})
        err.write(f"{_plural(len(errors), 'error')} in {_plural(files, 'file')}\n")
        return None


# ---------------------------------------------------------------- validate


def _add_validate(sub: Any) -> None:
    v = sub.add_parser("validate", help="check policy files; print every error as file:line:column: field: reason")
    v.add_argument("paths", nargs="+", metavar="FILE", help="policy file (.yaml) or directory of policy files")
    v.set_defaults(policy_fn=_cmd_validate)


def _cmd_validate(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sentinel_edge.enforce.policy import spec_summary

    ps = _load(args.paths, err)
    if ps is None:
        return 1
    kinds = Counter(p.kind for p in ps.policies)
    modes = Counter(p.mode for p in ps.policies)
    detail = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    out.write(f"{_plural(len(ps.policies), 'policy', 'policies')} OK in {_plural(len(ps.files), 'file')}"
              + (f": {detail}; {modes['enforce']} enforce, {modes['audit']} audit" if ps.policies else "") + "\n")
    for p in ps.policies:
        scope = "" if p.scope.everybody else " (scoped)"
        out.write(f"  {p.id} [{p.kind}, {p.mode}, {p.severity}]{scope} {spec_summary(p)}\n")
    return 0


# ---------------------------------------------------------------- dry-run


def _add_dry_run(sub: Any) -> None:
    d = sub.add_parser("dry-run", help="show what policies would have hit over recorded OCSF events")
    d.add_argument("--events", required=True, metavar="REC.jsonl",
                   help="OCSF events, one JSON object a line (sentinel-edge run --format json -o REC.jsonl)")
    d.add_argument("--max-hits", type=int, default=50, metavar="N", help="hits listed per policy (default 50)")
    d.add_argument("paths", nargs="+", metavar="FILE", help="policy file (.yaml) or directory of policy files")
    d.set_defaults(policy_fn=_cmd_dry_run)


def _cmd_dry_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from sentinel_edge.enforce.dryrun import dry_run_file

    ps = _load(args.paths, err)
    if ps is None:
        return 1
    try:
        report = dry_run_file(ps, args.events)
    except SentinelEdgeError as exc:
        err.write(f"{exc}\n")
        return 1
    out.write(report.render(max_hits=max(args.max_hits, 0)))
    return 0


# ---------------------------------------------------------------- the command

#: one function per subcommand, each adding its parser (with ``policy_fn`` set to its command)
SUBCOMMANDS: list[Callable[[Any], None]] = [_add_validate, _add_dry_run, *MANAGE_SUBCOMMANDS]


def add_policy_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the ``policy`` command (and its subcommands) to the main parser's subparsers."""
    p: argparse.ArgumentParser = subparsers.add_parser(
        "policy", help="enforcement policies: validate, dry-run, apply, list, remove, arm/disarm, uninstall")
    sub = p.add_subparsers(dest="policy_cmd")
    sub.required = True
    for add in SUBCOMMANDS:
        add(sub)
    sub.metavar = "{" + ",".join(sub.choices) + "}"
    p.set_defaults(fn=run_policy)
    return p


def run_policy(args: argparse.Namespace, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run one ``policy`` subcommand; its exit code (0 success, 1 bad policies or events)."""
    fn: Command = args.policy_fn
    return fn(args, out or sys.stdout, err or sys.stderr)
