"""Sequences and thresholds: order, keys, `same` constraints, windows by event time, bounded state, proc.tree."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.rules import fields as fieldtab
from sentinel_edge.rules.ast import Field
from sentinel_edge.rules.compiler import compile_condition, compile_getter, compile_template
from sentinel_edge.rules.correlate import (
    MAX_OPEN_PER_KEY,
    MAX_SAMPLES,
    SequenceCorrelator,
    Step,
    ThresholdCorrelator,
    parse_duration,
    tree_key,
    tree_root,
)
from sentinel_edge.rules.lang import parse_condition
from sentinel_edge.rules.model import RuleMeta

S = 1_000_000_000


@pytest.fixture(autouse=True)
def test_fields(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # t.op / t.path / t.exe / t.key / t.mode read event.data
    for name, typ in (("t.op", "str"), ("t.path", "str"), ("t.exe", "str"), ("t.key", "str"), ("t.mode", "int")):
        key = name[2:]
        monkeypatch.setitem(fieldtab.FIELDS, name, fieldtab.FieldSpec(name, typ, lambda e, k=key: e.data.get(k)))
    yield


def ev(ts_s: float, op: str, key: str | None = "k1", **data: Any) -> Event:
    d = {"op": op, **data}
    if key is not None:
        d["key"] = key
    return Event("file", 1, int(ts_s * S), 0, {"comm": b"x"}, d)


META = RuleMeta("t.seq", "written, chmod, run", "high", kind="sequence")


def cond(text: str) -> Any:
    return compile_condition(parse_condition(text))


def dropped_binary(within_s: float = 30, max_keys: int = 100) -> SequenceCorrelator:
    steps = [
        Step("write", cond("t.op = write")),
        Step("chmod", cond("t.op = chmod and t.mode bitand 0o111"), [(compile_getter(Field("t.path")), 0, "t.path")]),
        Step("run", cond("t.op = exec"), [(compile_getter(Field("t.exe")), 0, "t.path")]),
    ]
    return SequenceCorrelator(META, steps, "t.key", int(within_s * S), compile_template("ran {t.exe}"),
                              max_keys=max_keys)


def test_sequence_fires_on_ordered_steps_with_same_values() -> None:
    c = dropped_binary()
    evs = [ev(1, "write", path="/tmp/a"), ev(2, "chmod", path="/tmp/a", mode=0o755), ev(3, "exec", exe="/tmp/a")]
    assert c.feed(evs[0]) == [] and c.feed(evs[1]) == []
    [a] = c.feed(evs[2])
    assert a.events == evs and a.rule is META and a.message == "ran /tmp/a"
    assert a.data == {"key": "k1", "steps": ["write", "chmod", "run"]}
    assert len(c) == 0            # a completed sequence leaves no state


def test_sequence_needs_order_same_values_same_key() -> None:
    c = dropped_binary()
    # out of order: chmod before write
    assert c.feed(ev(1, "chmod", path="/tmp/a", mode=0o755)) == []
    c.feed(ev(2, "write", path="/tmp/a"))
    assert c.feed(ev(3, "exec", exe="/tmp/a")) == []
    # a different file is chmod-ed
    c2 = dropped_binary()
    c2.feed(ev(1, "write", path="/tmp/a"))
    c2.feed(ev(2, "chmod", path="/tmp/b", mode=0o755))
    assert c2.feed(ev(3, "exec", exe="/tmp/a")) == []
    # chmod without an execute bit
    c3 = dropped_binary()
    c3.feed(ev(1, "write", path="/tmp/a"))
    c3.feed(ev(2, "chmod", path="/tmp/a", mode=0o644))
    assert c3.feed(ev(3, "exec", exe="/tmp/a")) == []
    # another key (another process tree) runs it
    c4 = dropped_binary()
    c4.feed(ev(1, "write", path="/tmp/a"))
    c4.feed(ev(2, "chmod", path="/tmp/a", mode=0o755))
    assert c4.feed(ev(3, "exec", key="k2", exe="/tmp/a")) == []
    # events without a key are not correlated
    c5 = dropped_binary()
    assert c5.feed(ev(1, "write", key=None, path="/tmp/a")) == [] and len(c5) == 0


def test_sequence_window_is_event_time() -> None:
    c = dropped_binary(within_s=10)
    c.feed(ev(100, "write", path="/tmp/a"))
    c.feed(ev(105, "chmod", path="/tmp/a", mode=0o700))
    assert c.feed(ev(111, "exec", exe="/tmp/a")) == []          # 11 s after the first step
    c.feed(ev(200, "write", path="/tmp/b"))
    c.feed(ev(201, "chmod", path="/tmp/b", mode=0o700))
    assert len(c.feed(ev(210, "exec", exe="/tmp/b"))) == 1      # exactly at the edge


def test_sequence_restarts_on_a_repeated_first_step() -> None:
    c = dropped_binary(within_s=10)
    c.feed(ev(100, "write", path="/tmp/a"))
    c.feed(ev(108, "write", path="/tmp/a"))                      # rewritten: the window starts again
    assert c.open_sequences() == 1
    c.feed(ev(109, "chmod", path="/tmp/a", mode=0o700))
    assert len(c.feed(ev(115, "exec", exe="/tmp/a"))) == 1


def test_sequence_state_is_bounded() -> None:
    c = dropped_binary(max_keys=5)
    for i in range(20):
        c.feed(ev(1, "write", key=f"k{i}", path="/tmp/a"))
    assert len(c) == 5 and c.evicted == 15
    # the oldest keys went first: k19 is still open, k0 is not
    c.feed(ev(2, "chmod", key="k19", path="/tmp/a", mode=0o755))
    assert len(c.feed(ev(3, "exec", key="k19", exe="/tmp/a"))) == 1
    c.feed(ev(2, "chmod", key="k0", path="/tmp/a", mode=0o755))
    assert c.feed(ev(3, "exec", key="k0", exe="/tmp/a")) == []
    # open sequences per key are bounded too
    c2 = dropped_binary()
    for i in range(MAX_OPEN_PER_KEY * 3):
        c2.feed(ev(1, "write", path=f"/tmp/f{i}"))
    assert c2.open_sequences() == MAX_OPEN_PER_KEY


def test_sequence_expire() -> None:
    c = dropped_binary(within_s=10)
    c.feed(ev(100, "write", key="old", path="/tmp/a"))
    c.feed(ev(105, "write", key="new", path="/tmp/a"))
    c.expire(112 * S)
    assert len(c) == 1 and c.expired == 1
    c.expire(116 * S)
    assert len(c) == 0 and c.expired == 2


THRESH_META = RuleMeta("t.thr", "many deletions", "high", kind="threshold")


def deletions(count: int = 5, within_s: float = 10, distinct: str | None = "t.path",
              max_keys: int = 100) -> ThresholdCorrelator:
    return ThresholdCorrelator(THRESH_META, cond("t.op = unlink"), "t.key", count, int(within_s * S),
                               compile_template("{t.path}"), distinct=distinct, max_keys=max_keys)


def test_threshold_distinct_values() -> None:
    c = deletions()
    for i in range(4):
        assert c.feed(ev(1 + i, "unlink", path=f"/d/{i}")) == []
    assert c.feed(ev(5, "unlink", path="/d/0")) == []           # the same file again does not count
    assert c.feed(ev(5, "write", path="/d/9")) == []            # not a deletion
    [a] = c.feed(ev(6, "unlink", path="/d/4"))
    assert a.data == {"key": "k1", "count": 5, "window_ns": 10 * S, "distinct": "t.path"}
    assert [e.data["path"] for e in a.events] == ["/d/0", "/d/1", "/d/2", "/d/3", "/d/0", "/d/4"]
    assert a.message == "/d/4"
    # the counter starts again after firing
    assert len(c) == 0 and c.feed(ev(7, "unlink", path="/d/5")) == []


def test_threshold_window_slides() -> None:
    c = deletions(count=3, within_s=10)
    c.feed(ev(0, "unlink", path="/a"))
    c.feed(ev(5, "unlink", path="/b"))
    assert c.feed(ev(11, "unlink", path="/c")) == []            # /a is out of the window
    assert len(c.feed(ev(12, "unlink", path="/d"))) == 1        # /b /c /d within 10 s


def test_threshold_counts_events_and_keeps_few_samples() -> None:
    c = deletions(count=50, distinct=None)
    out = []
    for i in range(50):
        out += c.feed(ev(i * 0.01, "unlink", path="/same"))
    [a] = out
    assert a.data["count"] == 50 and len(a.events) == MAX_SAMPLES
    assert "distinct" not in a.data


def test_threshold_keys_are_separate_and_bounded() -> None:
    c = deletions(count=2, max_keys=3)
    for i in range(6):
        c.feed(ev(1, "unlink", key=f"k{i}", path="/x"))
    assert len(c) == 3 and c.evicted == 3
    assert c.feed(ev(2, "unlink", key="k0", path="/y")) == []   # k0 was evicted: counting starts over
    assert len(c.feed(ev(2, "unlink", key="k5", path="/y"))) == 1
    c.expire(100 * S)
    assert len(c) == 0


def test_durations() -> None:
    assert parse_duration("500ms") == 500_000_000 and parse_duration("30s") == 30 * S
    assert parse_duration("5m") == 300 * S and parse_duration("1h") == 3600 * S
    for bad in ("", "10", "0s", "-1s", "1.5s", "1d", "s"):
        assert parse_duration(bad) is None, bad


# ---------------------------------------------------------------- proc.tree

def proc(pid: int, comm: str, ppid: int) -> ProcessInfo:
    return ProcessInfo(pid=pid, start_ns=pid * 1000, exec_id=f"x{pid}", parent_exec_id=None, ppid=ppid, comm=comm)


def tree_event(chain: list[tuple[int, str]]) -> Event:
    """``chain``: (pid, comm) from the process up to the oldest ancestor."""
    infos = [proc(pid, comm, chain[i + 1][0] if i + 1 < len(chain) else 0) for i, (pid, comm) in enumerate(chain)]
    return Event("exec", 1, 0, 0, {"comm": b"x"}, {}, process=infos[0], parent=infos[1] if len(infos) > 1 else None,
                 ancestry=infos[1:])


def test_proc_tree_roots() -> None:
    # an SSH login: the login shell is the root, sshd and systemd start trees
    ssh = tree_event([(500, "curl"), (400, "bash"), (300, "sshd-session"), (200, "sshd"), (1, "systemd")])
    root = tree_root(ssh)
    assert root is not None and root.pid == 400
    assert tree_key(ssh) == "400:400000"
    # the same session, another command: same key; another session: another key
    assert tree_key(tree_event([(501, "chmod"), (400, "bash"), (300, "sshd-session"), (1, "systemd")])) == "400:400000"
    assert tree_key(tree_event([(601, "chmod"), (410, "bash"), (301, "sshd-session"), (1, "systemd")])) != "400:400000"
    # a service: its main process is the root of all its workers' children
    web = tree_event([(900, "sh"), (800, "nginx"), (700, "nginx"), (1, "systemd")])
    assert tree_key(web) == "700:700000"
    # a container: below the shim
    ctr = tree_event([(50, "sh"), (40, "python3"), (30, "containerd-shim"), (1, "systemd")])
    assert tree_key(ctr) == "40:40000"
    # cut-short ancestry: the oldest known ancestor; a launcher's own event: itself
    assert tree_key(tree_event([(10, "a"), (9, "b")])) == "9:9000"
    assert tree_key(tree_event([(200, "sshd"), (1, "systemd")])) == "200:200000"
    assert tree_key(Event("exec", 1, 0, 0, {}, {})) is None
