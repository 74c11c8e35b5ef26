"""Event objects are stored zstd-compressed with a dictionary trained on the store's own first events."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from history_objs import make_event

from sentinel_edge.history import HistoryStore
from sentinel_edge.history import store as store_mod

BASE = 1_790_000_000_000


def _varied(i: int) -> dict[str, object]:
    return make_event(i, time_ms=BASE + i, class_uid=(1007, 1001, 4001)[i % 3],
                      kind=("exec", "open", "connect")[i % 3],
                      pid=1000 + i % 97, exe=f"/usr/bin/tool{i % 13}", user=("root", "alice", "bob")[i % 3],
                      cmd_line=f"tool{i % 13} --job {i} --target /srv/data/{i % 31}.bin",
                      file_path=f"/var/lib/app/{i % 53}/part-{i}.dat" if i % 3 == 1 else None)


def test_events_are_compressed_with_a_trained_dictionary_and_read_back_exactly(tmp_path: Path) -> None:
    path = tmp_path / "h.db"
    n = store_mod.ZDICT_SAMPLES + 500
    objs = [_varied(i) for i in range(n)]
    with HistoryStore(path) as s:
        for o in objs:
            assert s.add_event(o)
        assert s.flush()
        back = {e.obj["metadata"]["uid"]: e.obj for e in s.query_events(limit=1000)}
        back.update({e.obj["metadata"]["uid"]: e.obj for e in s.query_events(text="tool7", limit=1000)})
    conn = sqlite3.connect(path)
    dicts = conn.execute("SELECT id, length(data) FROM zdicts").fetchall()
    assert len(dicts) == 1 and 1024 < dicts[0][1] <= store_mod.ZDICT_BYTES
    rows = conn.execute("SELECT id, obj FROM events ORDER BY id").fetchall()
    assert len(rows) == n
    ids = [int.from_bytes(bytes(v)[1:3], "little") for _, v in rows]
    assert all(isinstance(v, bytes) and v.startswith(b"Z") for _, v in rows)
    # events written before the dictionary existed have none; from the batch that completed the samples
    # on, every event uses it (how many came before depends on how the writer batched them)
    assert set(ids) <= {0, dicts[0][0]} and ids == sorted(ids)
    assert all(i == dicts[0][0] for i in ids[store_mod.ZDICT_SAMPLES - 1:])
    json_len = sum(len(json.dumps(o, separators=(",", ":"))) for o in objs[-500:])
    stored = sum(len(v) for _, v in rows[-500:])
    assert stored * 3 < json_len, (stored, json_len)  # these small test objects: > 3x; real events about 9x
    conn.close()
    for uid, obj in back.items():
        assert obj == objs[int(uid.split("-")[1])]
    assert len(back) > 1000
    # a new store on the same file reads both kinds of rows with the stored dictionary, and keeps using it
    with HistoryStore(path) as s:
        got = s.query_events(pid=objs[5]["actor"]["process"]["pid"], limit=1000)  # type: ignore[index]
        assert sorted(e.obj["metadata"]["uid"] for e in got) == sorted(
            o["metadata"]["uid"] for o in objs if o["actor"]["process"]["pid"] == 1005)  # type: ignore[index]
        s.add_event(_varied(n))
        assert s.flush()
        assert s.query_events(limit=1)[0].obj == _varied(n)
    conn = sqlite3.connect(path)
    last = conn.execute("SELECT obj FROM events ORDER BY id DESC LIMIT 1").fetchone()[0]
    assert int.from_bytes(last[1:3], "little") == dicts[0][0]
    assert conn.execute("SELECT count(*) FROM zdicts").fetchone()[0] == 1
    conn.close()


def test_a_dictionary_whose_transaction_rolled_back_is_not_used(tmp_path: Path) -> None:
    """The dictionary row and its use go together: rows never name a dictionary a rollback took away."""
    conn = sqlite3.connect(tmp_path / "z.db", isolation_level=None)
    conn.execute("CREATE TABLE zdicts (id INTEGER PRIMARY KEY, created INTEGER, data BLOB)")
    codec = store_mod._Codec()
    codec.sample([json.dumps(_varied(i)).encode() for i in range(store_mod.ZDICT_SAMPLES)])
    assert codec.want_training()
    conn.execute("BEGIN IMMEDIATE")
    codec.train(conn)
    conn.execute("ROLLBACK")
    codec.activate(committed=False)
    assert not codec.trained and codec.encode(b"{}")[1:3] == b"\x00\x00"
    assert conn.execute("SELECT count(*) FROM zdicts").fetchone() == (0,)
    assert codec.want_training()  # the samples are kept: the next batch tries again
    conn.execute("BEGIN IMMEDIATE")
    codec.train(conn)
    conn.execute("COMMIT")
    codec.activate(committed=True)
    (zid,) = conn.execute("SELECT id FROM zdicts").fetchone()
    assert codec.trained and int.from_bytes(codec.encode(b"{}")[1:3], "little") == zid
    conn.close()
