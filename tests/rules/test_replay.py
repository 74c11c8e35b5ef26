"""Replay round trip: every field reads the same on the live Event and on the Event rebuilt from its OCSF object.

The events come from real actions through an in-process pipeline (see
test_fields.run_scenario). Fields OCSF does not carry (docs/rules.md, Replay)
must come back as None, never as another value.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.errors import RuleError
from sentinel_edge.model import Event
from sentinel_edge.rules.fields import FIELDS
from sentinel_edge.rules.replay import event_from_ocsf, iter_events

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_fields import Live, run_scenario

#: exec-time fields: only exec objects carry them (ReplayContext fills them from the exec in the same file)
EXEC_ONLY = ("proc.args", "proc.argv0", "proc.argc", "proc.filename", "proc.interp", "proc.stdin", "proc.stdout",
             "proc.stderr", "proc.tty", "proc.exe_deleted", "proc.exe_memfd", "proc.ld_preload",
             "proc.ld_library_path", "proc.setuid_exec")
ANCESTRY = ("proc.aname", "proc.aexe", "proc.acmdline", "proc.apid")


def limitations(e: Event) -> set[str]:
    """Fields documented as not replayable for this live event (stateless replay)."""
    out = {"parent.args", "ptrace.target_exe"}
    if e.kind != "exec":
        out.update(EXEC_ONLY)
    if e.kind not in ("exec", "fork"):
        out.update(ANCESTRY)
    p = e.process
    if p is not None and p.euid != p.uid:
        out.add("user.ename")
    if p is not None and p.loginuid != p.uid:
        out.add("user.loginname")
    if e.kind == "ptrace" and not e.data.get("target_comm"):
        out.add("ptrace.target_name")
    return out


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, c_helper: Callable[..., str]) -> Iterator[Live]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    yield run_scenario(tmp_path_factory.mktemp("replay"), c_helper)


def _values(e: Event, name: str) -> list[Any]:
    spec = FIELDS[name]
    out = [spec.get(e)]
    if spec.get_index is not None:
        out += [spec.get_index(e, n) for n in range(5)]
    return out


@pytest.mark.kernel
def test_round_trip_of_every_field(live: Live) -> None:
    checked = 0
    kinds: set[str] = set()
    for e, obj in zip(live.events, live.ocsf, strict=True):
        r = event_from_ocsf(json.loads(json.dumps(obj)))  # as read back from the file
        assert r is not None, obj
        assert (r.kind, r.ts_ns, r.proc) == (e.kind, e.ts_ns, e.proc)
        lim = limitations(e)
        for name in FIELDS:
            want, got = _values(e, name), _values(r, name)
            if name in lim:
                if name in ANCESTRY:  # [0] (the process itself) and [1] (the parent) are still known
                    assert got[0] is None and got[3:] == [None] * 3, (name, e.kind, got)
                    assert got[1:3] == want[1:3], (name, e.kind)
                else:
                    assert all(g is None for g in got), (name, e.kind, got, want)
                continue
            assert got == want, (name, e.kind, e.data.get("op"), want, got)
            checked += 1
        kinds.add(e.kind)
    # the scenario covers every kind the sensors produce here
    assert kinds >= {"exec", "fork", "exit", "file", "net", "cred", "ns", "mem", "ptrace", "memfd", "module", "bpf",
                     "io_uring"}
    assert checked > 1000


@pytest.mark.kernel
def test_iter_events_completes_later_events_from_the_exec(live: Live, tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    with path.open("w") as f:
        for obj in live.ocsf:
            f.write(json.dumps(obj) + "\n")
        f.write(json.dumps({"class_uid": 1008, "unmapped": {"event": "health", "health": {"what": "stop"}}}) + "\n")
    replayed = list(iter_events(path))
    assert [n for n, _ in replayed] == list(range(1, len(live.ocsf) + 1))  # the health line is skipped
    by_pos = {id(e): r for e, (_, r) in zip(live.events, replayed, strict=True)}
    shell = live.out["shell_pid"]
    ex = live.one(lambda e: e.kind == "exec" and e.proc["ppid"] == shell
                  and e.data["filename"].endswith(b"/se-link"), "exec of se-link")
    op = live.one(lambda e: e.kind == "file" and e.proc["pid"] == ex.proc["pid"]
                  and e.data.get("path", b"").endswith(b"in put.txt"), "open by cat")
    r = by_pos[id(op)]
    for name in (*EXEC_ONLY, *ANCESTRY, "parent.args", "proc.cmdline"):
        assert _values(r, name) == _values(op, name), name


def test_iter_events_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text('\n{"unmapped": {"event": "health"}}\n{"unmapped": \n')
    with pytest.raises(RuleError) as err:
        list(iter_events(path))
    assert str(err.value).startswith(f"{path}:3:")
    assert "not JSON" in str(err.value)

    path.write_text('[1, 2]\n')
    with pytest.raises(RuleError, match=r":1:1: expected an OCSF object, got list"):
        list(iter_events(path))

    path.write_text('{"unmapped": {"event": "net", "op": "connect", "proc": {"pid": 1, "ktime_ns": 5}, '
                    '"family": "two"}}\n')
    with pytest.raises(RuleError, match=r":1:1: cannot replay this object: net event: expected an integer, got 'two'"):
        list(iter_events(path))

    path.write_text('{"unmapped": {"event": "exec"}}\n')
    with pytest.raises(RuleError, match=r":1:1: cannot replay this object: exec event without unmapped.proc"):
        list(iter_events(path))

    path.write_text('{"unmapped": {"event": "file", "op": "frobnicate", "proc": {"pid": 1, "ktime_ns": 5}}}\n')
    with pytest.raises(RuleError, match=r":1:1: cannot replay this object: file event: unknown file op 'frobnicate'"):
        list(iter_events(path))

    with pytest.raises(RuleError, match="cannot read events"):
        list(iter_events(tmp_path / "missing.jsonl"))


def test_non_kernel_objects_are_not_events() -> None:
    assert event_from_ocsf({"class_uid": 1008, "unmapped": {"event": "health"}}) is None
    assert event_from_ocsf({"class_uid": 2004, "finding_info": {}}) is None
