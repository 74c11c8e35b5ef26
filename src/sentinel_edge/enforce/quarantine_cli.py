"""``sentinel-edge quarantine list|restore QID``: the files the quarantine response action moved away."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from typing import Any

from sentinel_edge import config
from sentinel_edge.errors import SentinelEdgeError


def _store(args: argparse.Namespace) -> Any:
    from sentinel_edge.enforce.quarantine import Quarantine

    directory = args.dir or config.load(args.config).response.quarantine_dir
    return Quarantine(directory)


def _cmd_list(args: argparse.Namespace) -> int:
    records = _store(args).list()
    if args.json:
        print(json.dumps([r.to_json() for r in records], indent=1))
        return 0
    if not records:
        print("quarantine is empty")
    for r in records:
        when = dt.datetime.fromtimestamp(r.quarantined_ns / 1e9, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
        print(f"{r.qid}  {when}Z  {r.size:>10} B  sha256 {r.sha256[:16]}  rule {r.rule_id or '-'}  "
              f"{json.dumps(r.path_text, ensure_ascii=True)}")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    rec = _store(args).restore(args.qid, args.to)
    print(f"restored {json.dumps(rec.path_text if args.to is None else args.to, ensure_ascii=True)} "
          f"(mode {rec.mode:o}, owner {rec.uid}:{rec.gid})")
    return 0


def run(args: argparse.Namespace) -> int:
    try:
        return int(args.quarantine_fn(args))
    except SentinelEdgeError as exc:
        print(f"sentinel-edge quarantine: {exc}", file=sys.stderr)
        return 1


def add_quarantine_parser(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "quarantine", help="files moved away by the quarantine response action: list, restore")
    sub = p.add_subparsers(dest="quarantine_cmd")
    sub.required = True
    for name, fn, helptext in (("list", _cmd_list, "every quarantined file, oldest first"),
                               ("restore", _cmd_restore, "put a file back with its mode, owner, times, xattrs")):
        s = sub.add_parser(name, help=helptext)
        s.add_argument("-c", "--config", help="agent config (for response.quarantine_dir)")
        s.add_argument("--dir", help="quarantine directory (default: response.quarantine_dir)")
        if name == "list":
            s.add_argument("--json", action="store_true")
        else:
            s.add_argument("qid", help="the id 'list' shows")
            s.add_argument("--to", help="restore to this path instead of the original one")
        s.set_defaults(quarantine_fn=fn)
    p.set_defaults(fn=run)
    return p
