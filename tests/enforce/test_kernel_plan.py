"""Planning policy sets into kernel map entries (no kernel needed)."""

from __future__ import annotations

from sentinel_edge.enforce.kernel import EnfMatchVal, KernelPlan, _match_union, _path_key, close_prefixes


def _idx(v: bytes) -> list[int]:
    m = EnfMatchVal.from_buffer_copy(v)
    return sorted(m.idx[i] for i in range(m.n))


def test_longer_prefixes_carry_the_policies_of_the_directories_above_them() -> None:
    plan = KernelPlan()
    t = plan.entries.setdefault("se_enf_exec_path", {})
    keys = {name: bytes(_path_key(name, whole=not name.endswith("/"))) for name in
            ("/tmp/", "/tmp/x/", "/tmp/x/y", "/tmp/xy/", "/var/", "/tmp/x")}
    for i, name in enumerate(keys):
        t[keys[name]] = bytes(_match_union(None, i))
    close_prefixes(plan)
    assert _idx(t[keys["/tmp/"]]) == [0]
    assert _idx(t[keys["/tmp/x/"]]) == [0, 1]
    assert _idx(t[keys["/tmp/x/y"]]) == [0, 1, 2]
    assert _idx(t[keys["/tmp/xy/"]]) == [0, 3]      # /tmp/x/ is not a directory above /tmp/xy/
    assert _idx(t[keys["/var/"]]) == [4]
    assert _idx(t[keys["/tmp/x"]]) == [0, 5]        # a whole path covers nothing, is covered by /tmp/


def test_ten_thousand_unrelated_prefixes_keep_their_own_policy() -> None:
    plan = KernelPlan()
    t = plan.entries.setdefault("se_enf_exec_path", {})
    for i in range(5000):
        t[bytes(_path_key(f"/nonexistent/{i}/", whole=False))] = bytes(_match_union(None, 0))
        t[bytes(_path_key(f"/usr/bin/x{i}", whole=True))] = bytes(_match_union(None, 1))
    close_prefixes(plan)
    assert all(_idx(v) in ([0], [1]) for v in t.values())
