"""Every registered OCSF mapper emits objects that validate against the pinned schema.

Sample events are not written by hand per kind: each one is a raw ring-buffer
record packed from the BTF of the compiled object (so it follows the current
wire contract, fields added by any sensor included) and decoded by the real
decoder. Per kind there is one sample per ``op`` value (when the struct has
one), a failed-syscall variant and a hostile variant whose every string is
4 KiB of newlines, invalid UTF-8 and backslashes. The negative tests show the
validation fails on what it must fail on.
"""

from __future__ import annotations

import copy
import json
import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from sentinel_edge.loader.btf import KIND_ARRAY, KIND_ENUM, KIND_ENUM64, KIND_INT, KIND_STRUCT, Btf
from sentinel_edge.model import Event, ProcessInfo
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import (
    OCSF_VERSION,
    HostInfo,
    mapper_for,
    registered_kinds,
    text,
    untext,
)
from sentinel_edge.output.ocsf.schema import (
    SchemaViolation,
    assert_valid,
    class_schema,
    raw_schema,
    validate,
)
from sentinel_edge.wire.decode import Decoder

OBJ = Path(__file__).resolve().parents[2] / "src" / "sentinel_edge" / "_bpf" / "sentinel.bpf.o"

HOST = HostInfo(
    hostname="edge-test",
    boot_id="5d3c2f4e-0000-4000-8000-000000000001",
    boot_time_ns=1_700_000_000_000_000_000,
    machine_id="0123456789abcdef0123456789abcdef",
    kernel_release="6.18.0",
)

# 4 KiB of what an attacker can put in a path: newline, tab, invalid UTF-8
# (lone continuation, truncated sequence, 0xff), a literal "\x41" and a quote.
HOSTILE = (b'/tmp/evil\n\t"dir\xff\xfe\x80\xc3/\\x41\\' * 200)[:4096]


# ---------------------------------------------------------------- packing records from BTF


def _int_fmt(size: int, signed: bool) -> str:
    return {1: "b", 2: "h", 4: "i", 8: "q"}[size] if signed else {1: "B", 2: "H", 4: "I", 8: "Q"}[size]


class RecordBuilder:
    """Packs one event record of a struct from the object's BTF."""

    def __init__(self, btf: Btf) -> None:
        self.btf = btf

    def build(self, struct_name: str, type_id: int, values: dict[str, Any]) -> bytes:
        st = self.btf.struct(struct_name)
        size = st.size_or_type
        fixed = bytearray(size)
        tail = bytearray()
        self._fill(st, 0, values, fixed, tail, size)
        buf = bytes(fixed) + bytes(tail)
        # header: type, total size (u16 wraps for hostile 24 KiB records: only the decoder's min size matters)
        return struct.pack("<HH", type_id, len(buf) & 0xFFFF) + buf[4:]

    def _fill(
        self, st: Any, base: int, values: dict[str, Any], fixed: bytearray, tail: bytearray, fixed_size: int
    ) -> None:
        for m_name, m_type, m_bits in st.members:
            off = base + m_bits // 8
            if m_name.startswith("_pad") or m_name not in values:
                continue
            self._put(m_type, off, values[m_name], fixed, tail, fixed_size)

    def _put(
        self, tid: int, off: int, value: Any, fixed: bytearray, tail: bytearray, fixed_size: int
    ) -> None:
        btf = self.btf
        t = btf.resolve(tid)
        size = btf.sizeof(tid)
        if t.kind == KIND_INT or t.kind in (KIND_ENUM, KIND_ENUM64):
            signed = t.int_signed if t.kind == KIND_INT else t.kflag
            struct.pack_into("<" + _int_fmt(size, bool(signed)), fixed, off, value)
        elif t.kind == KIND_ARRAY:
            elem = btf.resolve(t.array[0])
            n = t.array[1]
            if isinstance(value, bytes):
                fixed[off : off + n] = value[:n].ljust(n, b"\0")
            else:
                esize = elem.size_or_type
                for k, v in enumerate(value[:n]):
                    struct.pack_into("<" + _int_fmt(esize, bool(elem.int_signed)), fixed, off + k * esize, v)
        elif t.kind == KIND_STRUCT and t.name == "se_str":
            data = bytes(value)
            struct.pack_into("<HH", fixed, off, fixed_size + len(tail), len(data))
            tail += data
        elif t.kind == KIND_STRUCT:
            self._fill(t, off, value, fixed, tail, fixed_size)
        else:  # pragma: no cover - the wire contract has no other member kinds
            raise AssertionError(f"unsupported BTF kind {t.kind}")

    def fields(self, struct_name: str) -> Iterator[tuple[str, str, Any]]:
        """(name, category, BTF type) of each data member after hdr/proc."""
        for m_name, m_type, _ in self.btf.struct(struct_name).members[2:]:
            if m_name.startswith("_pad"):
                continue
            t = self.btf.resolve(m_type)
            if t.kind == KIND_STRUCT and t.name == "se_str":
                yield m_name, "str", t
            elif t.kind == KIND_ARRAY:
                elem = self.btf.resolve(t.array[0])
                is_char = (
                    elem.kind == KIND_INT
                    and elem.size_or_type == 1
                    and (elem.int_char or elem.name == "char")
                )
                yield m_name, "chars" if is_char else "ints", t
            elif t.kind == KIND_STRUCT:
                yield m_name, "struct", t
            else:
                yield m_name, "int", t


@pytest.fixture(scope="module")
def btf() -> Btf:
    if not OBJ.exists():
        pytest.fail(f"{OBJ} is missing: run `make` first")
    return Btf.from_elf(str(OBJ))


@pytest.fixture(scope="module")
def decoder(btf: Btf) -> Decoder:
    return Decoder(btf)


PROC = {
    "pid": 4242,
    "tid": 4243,
    "ppid": 4000,
    "ns_pid": 7,
    "uid": 1000,
    "euid": 1000,
    "gid": 1000,
    "egid": 1000,
    "loginuid": 1000,
    "sessionid": 3,
    "mnt_ns": 4026531841,
    "pid_ns": 4026531836,
    "net_ns": 4026531840,
    "cgroup_id": 8812,
    "start_ns": 5_000_000_000,
    "parent_start_ns": 4_000_000_000,
    "comm": b"sample",
}

_INT_DEFAULTS = {
    "ret": 0,
    "ret32": 0,
    "fd": 3,
    "dirfd": -100,
    "dirfd2": -100,
    "ring_fd": 5,
    "family": 2,
    "sock_type": 1,
    "protocol": 6,
    "sport": 40000,
    "dport": 8080,
    "cmd": 5,
    "op": 1,
    "exit_code": 0,
    "child_pid": 5000,
    "child_tid": 5000,
    "child_start_ns": 6_000_000_000,
    "argc": 2,
    "exe_mode": 0o100755,
    "exe_nlink": 1,
}


def _sample_values(rb: RecordBuilder, struct_name: str, *, hostile: bool) -> dict[str, Any]:
    """A plausible value for every member, by name and type."""
    vals: dict[str, Any] = {
        "hdr": {"type": 0, "size": 0, "cpu": 1, "ts_ns": 7_000_000_000},
        "proc": dict(PROC, comm=b"c\n\xff\\" + HOSTILE[20:31] if hostile else PROC["comm"]),
    }
    for name, cat, t in rb.fields(struct_name):
        if cat == "str":
            if hostile:  # distinct per field, so a dropped field cannot hide behind another
                own = name.encode() + b":" + HOSTILE
                vals[name] = (
                    own[:4096] if name != "argv" else b"\0".join([own[:2000], b"2:" + HOSTILE[:2000]])
                )
            elif name == "argv":
                vals[name] = b"sample\0--flag\0"
            else:
                vals[name] = b"/tmp/sample-" + name.encode()
        elif cat == "chars":
            own = name.encode()[:6] + b":\n\xff\\" + HOSTILE[9:] if hostile else b"sample-" + name.encode()
            vals[name] = own[: t.array[1] - 1]
        elif cat == "ints":
            n = t.array[1]
            if name in ("saddr", "daddr"):
                vals[name] = [127, 0, 0, 1] + [0] * (n - 4)
            elif name == "fd_kind":
                vals[name] = [1, 2, 4][:n]
            else:
                vals[name] = [1] * n
        elif cat == "struct":
            vals[name] = {m: 1000 for m, _, _ in t.members}
        else:
            vals[name] = _INT_DEFAULTS.get(name, 1)
    return vals


def _op_values(btf: Btf, kind: str) -> list[int]:
    for enum_name in (f"se_{kind}_op",):
        try:
            return sorted(set(btf.enum(enum_name).values()))
        except Exception:
            pass
    return [1]


def _samples(btf: Btf, decoder: Decoder, kind: str) -> Iterator[tuple[str, Event, dict[str, Any]]]:
    """(label, decoded event, values packed) for every variant of one kind."""
    rb = RecordBuilder(btf)
    layout = next(lay for lay in decoder.layouts.values() if lay.kind == kind)
    has_op = "op" in layout.fields
    has_ret = "ret" in layout.fields
    for op in _op_values(btf, kind) if has_op else [None]:
        for variant in ("ok", "failed", "hostile"):
            if variant == "failed" and not has_ret:
                continue
            vals = _sample_values(rb, layout.struct_name, hostile=variant == "hostile")
            if op is not None:
                vals["op"] = op
            if variant == "failed":
                vals["ret"] = -13
            rec = rb.build(layout.struct_name, layout.type_id, vals)
            yield f"{kind}/op={op}/{variant}", decoder.decode(rec), vals


# kinds made by user space (no struct in the wire contract): their data as the agent builds it
def _enf(kind: int, action: int, result: int = 0, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind, "action": action, "result": result, "policy_idx": 0, "gen": 3, "match": 1,
                         "dev": 65024, "igen": 7, "ino": 1234, "family": 2, "port": 0, "protocol": 0,
                         "addr": bytes(16), "ifindex": 0, "count": 0, "aux": 0, "path": b"/tmp/x",
                         "filename": b"/tmp/x", "policy_id": "p1"}
    d.update(kw)
    return d


def _netdet(kind: int, **kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"kind": kind, "ifindex": 3, "family": 2, "protocol": 6, "port": 22,
                         "saddr": bytes([192, 0, 2, 1]) + bytes(12), "daddr": bytes([192, 0, 2, 2]) + bytes(12),
                         "count": 30, "threshold": 30, "window_ns": 1_000_000_000, "window_start_ns": 6_500_000_000,
                         "ifname": "eth0", "netns": None, "response": None}
    d.update(kw)
    return d


_DNS_QUERY = bytes.fromhex("1f2e01000001000000000000") + b"\x04mail\x08sentinel\x04test\x00" + bytes.fromhex("00010001")
_DNS_RESPONSE = (bytes.fromhex("1f2e81800001000100000000") + b"\x04mail\x08sentinel\x04test\x00"
                 + bytes.fromhex("00010001") + bytes.fromhex("c00c000100010000003c0004") + bytes([10, 66, 0, 78]))
# a name with a newline, 0xff, a backslash and a dot inside its labels
_DNS_HOSTILE = (bytes.fromhex("000701000001000000000000") + b"\x06a\nb\xff\\.\x07example\x00"
                + bytes.fromhex("00100001"))


def _dns_sample(msg: bytes, tcp: bool, direction: int) -> dict[str, Any]:
    from sentinel_edge.netinspect.dns import parse_dns

    wire = (len(msg).to_bytes(2, "big") + msg) if tcp else msg
    out = direction == 1
    a, b = bytes([192, 0, 2, 1]) + bytes(12), bytes([192, 0, 2, 53]) + bytes(12)
    return {"ifindex": 3, "dir": direction, "family": 2, "proto": 6 if tcp else 17, "flags": 0,
            "sport": 40000 if out else 53, "dport": 53 if out else 40000, "payload_len": len(wire),
            "saddr": a if out else b, "daddr": b if out else a, "cookie": 4097 if out else 0, "msg": wire,
            "ifname": "eth0", "netns": "ns1", "parsed": parse_dns(wire, tcp=tcp).as_dict()}


def _flow_sample(**kw: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"ifindex": 3, "ifname": "eth0", "netns": None, "family": 2, "proto": 6, "lport": 40000,
                         "rport": 443, "laddr": bytes([192, 0, 2, 1]) + bytes(12),
                         "raddr": bytes([192, 0, 2, 2]) + bytes(12), "first_ns": 6_000_000_000,
                         "last_ns": 7_000_000_000, "pkts_in": 10, "bytes_in": 9000, "pkts_out": 8, "bytes_out": 800,
                         "cookie": 4097, "flags_in": 0x12, "flags_out": 0x02, "initiator": 2, "state": "active",
                         "community_id": ""}
    d.update(kw)
    return d


SYNTHESIZED: dict[str, list[dict[str, Any]]] = {
    # enforcement events come from enforce.bpf.o (not the sensor object) and from user space
    "enforce": [
        _enf(1, 1), _enf(1, 0), _enf(1, 1, result=-3, path=b"/tmp/\xff\nbad"), _enf(2, 1, aux=5),
        _enf(3, 1, aux=313),
        _enf(4, 2, family=2, port=443, addr=bytes([192, 0, 2, 1]) + bytes(12)),
        _enf(4, 2, family=10, port=22, addr=bytes.fromhex("20010db8000000000000000000000001")),
        _enf(5, 3, family=2, addr=bytes([198, 51, 100, 7]) + bytes(12), count=12, ifindex=2, protocol=1),
        _enf(0, 0, uspace={"policy_id": "p2", "mode": "enforce", "action": "deny", "ok": True,
                           "target": "/etc/shadow", "mechanism": "fanotify", "error": None}),
        _enf(0, 0, uspace={"policy_id": "enforcement-gap", "mode": "enforce", "action": "none", "ok": False,
                           "target": "fanotify policies", "mechanism": "fanotify", "error": "agent gone"}),
    ],
    "health": [
        {"what": "start", "message": "SentinelEdge started", "attached": ["process_exec"], "skipped": {}},
        {"what": "stop", "message": "SentinelEdge stopped", "decoded": 10, "written": 10},
        {"what": "loss", "message": "events lost", "kernel_dropped": 3, "user_dropped": 0},
        {"what": "degraded", "message": "queue full", "queue_dropped": 1},
    ],
    # network inspector: se_netdet / se_dns come from netinspect.bpf.o, flow records from its flow table;
    # each as the stage completes it (ifname, netns, response, parsed)
    "netdet": [_netdet(k, **kw) for k, kw in (
        (1, {"response": {"action": "block", "ok": True, "ttl_s": 600.0, "address": "192.0.2.1"}}),
        (2, {"family": 0, "saddr": bytes(16)}),
        (3, {"response": {"action": "block", "ok": False, "ttl_s": 60.0, "address": "192.0.2.1",
                          "error": "192.0.2.1 is a gateway"}}),
        (4, {"family": 10, "protocol": 58, "port": 0, "saddr": bytes.fromhex("20010db8" + "00" * 11 + "01"),
             "daddr": bytes.fromhex("20010db8" + "00" * 11 + "02")}),
        (77, {}),
    )],
    "dns": [_dns_sample(*a) for a in (
        (_DNS_QUERY, False, 1), (_DNS_RESPONSE, False, 0), (_DNS_QUERY, True, 1), (_DNS_RESPONSE[:40], False, 0),
        (_DNS_HOSTILE, False, 1), (HOSTILE[:300], False, 0), (b"", True, 1),
    )],
    "flow": [_flow_sample(**kw) for kw in (
        {}, {"initiator": 1, "state": "closed"}, {"initiator": 0, "state": "idle", "cookie": 0},
        {"family": 10, "proto": 58, "laddr": bytes.fromhex("20010db8" + "00" * 11 + "01"),
         "raddr": bytes.fromhex("20010db8" + "00" * 11 + "02"), "lport": 7, "rport": 128 << 8},
        {"proto": 47, "lport": 0, "rport": 0},
    )],
}


def _synthesized(kind: str) -> Iterator[tuple[str, Event, dict[str, Any]]]:
    for i, data in enumerate(SYNTHESIZED[kind]):
        yield f"{kind}/{i}", Event(kind, 90, 7_000_000_000, 0, dict(PROC), data), {}


#: kinds whose events may have no process at all (packets belong to no task): their samples also go
#: through the mapper with an empty se_proc and no enrichment
UNATTRIBUTED_KINDS = ("netdet", "dns", "flow")


def _enrich(event: Event) -> None:
    """What enrichment adds, with hostile names when the event is hostile."""
    comm = text(event.proc["comm"]) or ""
    exe = "/usr/bin/" + comm
    event.process = ProcessInfo(
        pid=event.proc["pid"],
        start_ns=event.proc["start_ns"],
        exec_id="exec-4242",
        parent_exec_id="exec-4000",
        ppid=event.proc["ppid"],
        comm=comm,
        exe=exe,
        cmdline=[exe, "-x"],
        cwd="/root",
        uid=1000,
        euid=1000,
        gid=1000,
        user="alice",
        group="alice",
        loginuid=1000,
        container_id="c0ffee",
        container_runtime="containerd",
        exec_ts_ns=5_500_000_000,
    )
    event.parent = ProcessInfo(
        pid=event.proc["ppid"],
        start_ns=event.proc["parent_start_ns"],
        exec_id="exec-4000",
        parent_exec_id=None,
        ppid=1,
        comm="bash",
        exe="/usr/bin/bash",
        cmdline=["bash"],
        uid=1000,
        gid=1000,
        user="alice",
    )
    event.ancestry = [
        event.parent,
        ProcessInfo(
            pid=1,
            start_ns=1,
            exec_id="exec-1",
            parent_exec_id=None,
            ppid=0,
            comm="systemd",
            exe="/usr/lib/systemd/systemd",
        ),
    ]


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _strings(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _strings(v)


def _all_samples() -> list[str]:
    return registered_kinds()


# ---------------------------------------------------------------- positive


def test_registered_mappers_include_the_process_family() -> None:
    assert {"exec", "fork", "exit", "comm"} <= set(registered_kinds())


@pytest.mark.parametrize("kind", _all_samples())
@pytest.mark.parametrize("enriched", [False, True], ids=["raw", "enriched"])
def test_every_sample_of_every_mapper_validates(
    btf: Btf, decoder: Decoder, kind: str, enriched: bool
) -> None:
    if any(lay.kind == kind for lay in decoder.layouts.values()):
        samples = list(_samples(btf, decoder, kind))
    elif kind in SYNTHESIZED:
        samples = list(_synthesized(kind))
    else:
        pytest.fail(f"mapper registered for {kind!r}: no struct in the object and no SYNTHESIZED sample")
    count = 0
    for label, event, vals in samples:
        if enriched:
            _enrich(event)
        mapper = mapper_for(kind)
        assert mapper is not None
        obj = to_ocsf(event, HOST)
        errors = validate(obj)
        assert errors == [], f"{label}: {errors}"
        assert obj["metadata"]["version"] == OCSF_VERSION
        assert obj["unmapped"]["event"] == kind

        # JSON text as written: valid UTF-8, one line, round-trips exactly
        line = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        assert "\n" not in line
        assert json.loads(line.encode("utf-8").decode("utf-8")) == obj

        # nothing lost: every string the kernel sent shows up (escaped) in the object
        if label.endswith("/hostile"):
            found = "\n".join(_strings(obj))
            for name, raw in vals.items():
                if isinstance(raw, bytes) and raw:
                    for part in raw.split(b"\0"):
                        if part:
                            assert (text(part) or "?") in found, f"{label}: data field {name!r} lost"
            assert (text(vals["proc"]["comm"]) or "?") in found
        count += 1
    assert count > 0


@pytest.mark.parametrize("kind", UNATTRIBUTED_KINDS)
def test_samples_without_a_process_validate(kind: str) -> None:
    from sentinel_edge.output.ocsf import netinspect  # noqa: F401  (registers the inspector's mappers)

    mapper = mapper_for(kind)
    assert mapper is not None
    for i, data in enumerate(SYNTHESIZED[kind]):
        obj = mapper(Event(kind, 90, 7_000_000_000, 0, {}, dict(data)), HOST)
        assert validate(obj) == [], f"{kind}/{i}: {validate(obj)}"
        assert "actor" not in obj and "proc" not in obj["unmapped"]
        json.loads(json.dumps(obj, ensure_ascii=False, allow_nan=False))


def test_hostile_text_is_lossless_and_escaped() -> None:
    s = text(HOSTILE)
    assert s is not None
    assert "\\xff" in s and "\\xfe" in s and "\\x80" in s and "\\xc3" in s
    assert "\\\\x41" in s  # a literal backslash-x41 stays distinguishable from byte 0x41
    assert untext(s) == HOSTILE
    s.encode("utf-8")  # no surrogates
    assert json.loads(json.dumps(s)) == s
    # a str from os.fsdecode() (surrogate escapes) takes the same path
    assert text(os.fsdecode(HOSTILE)) == s
    assert text("plain ünïcode") == "plain ünïcode"


def test_schema_is_the_pinned_export() -> None:
    raw = raw_schema()
    assert raw["version"] == OCSF_VERSION == "1.8.0"
    js = class_schema(1007, ["host", "container", "linux/linux_users"])
    assert js["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert js["additionalProperties"] is False
    assert {"activity_id", "actor", "device", "metadata", "process", "time", "type_uid"} <= set(
        js["required"]
    )
    assert sorted(js["properties"]["activity_id"]["enum"]) == [0, 1, 2, 3, 4, 5, 99]


@pytest.mark.parametrize("class_uid", [1001, 1002, 1004, 1007, 2004, 4001])
def test_every_class_we_emit_has_a_schema(class_uid: int) -> None:
    js = class_schema(class_uid, ["host"])
    assert js["properties"]["class_uid"]["const"] == class_uid


# ---------------------------------------------------------------- negative


@pytest.fixture
def good(btf: Btf, decoder: Decoder) -> dict[str, Any]:
    _label, event, _ = next(_samples(btf, decoder, "exec"))
    _enrich(event)
    obj = to_ocsf(event, HOST)
    assert validate(obj) == []
    return obj


def _broken(good: dict[str, Any], mutate: Any) -> list[str]:
    obj = copy.deepcopy(good)
    mutate(obj)
    return validate(obj)


def test_wrong_type_fails(good: dict[str, Any]) -> None:
    errs = _broken(good, lambda o: o["process"].__setitem__("pid", "4242"))
    assert any(e.startswith("process.pid:") and "not of type 'integer'" in e for e in errs), errs
    errs = _broken(good, lambda o: o.__setitem__("time", 1.5))
    assert any(e.startswith("time:") for e in errs), errs
    errs = _broken(good, lambda o: o["process"]["user"].__setitem__("uid", 1000))
    assert any(e.startswith("process.user.uid:") for e in errs), errs


def test_missing_required_fails(good: dict[str, Any]) -> None:
    for key in ("device", "process", "actor", "metadata", "time", "severity_id"):
        errs = _broken(good, lambda o, k=key: o.pop(k))
        assert any(f"'{key}' is a required property" in e for e in errs), (key, errs)
    errs = _broken(good, lambda o: o["process"]["file"].pop("type_id"))
    assert any(e.startswith("process.file:") and "'type_id' is a required property" in e for e in errs), errs
    errs = _broken(good, lambda o: o["metadata"]["product"].clear())
    assert any(e.startswith("metadata.product:") for e in errs), errs


def test_unknown_enum_value_fails(good: dict[str, Any]) -> None:
    def bad_activity(o: dict[str, Any]) -> None:
        o["activity_id"] = 6
        o["type_uid"] = 100706

    errs = _broken(good, bad_activity)
    assert any(e.startswith("activity_id:") and "is not one of" in e for e in errs), errs
    errs = _broken(good, lambda o: o.__setitem__("launch_type_id", 7))
    assert any(e.startswith("launch_type_id:") for e in errs), errs
    errs = _broken(good, lambda o: o["device"]["os"].__setitem__("type_id", 999))
    assert any(e.startswith("device.os.type_id:") for e in errs), errs


def test_unknown_attribute_fails(good: dict[str, Any]) -> None:
    errs = _broken(good, lambda o: o["process"].__setitem__("exe", "/bin/sh"))
    assert any(e.startswith("process:") and "'exe' was unexpected" in e for e in errs), errs
    errs = _broken(good, lambda o: o.__setitem__("pid", 1))
    assert any("'pid' was unexpected" in e for e in errs), errs


def test_null_and_non_json_values_fail(good: dict[str, Any]) -> None:
    errs = _broken(good, lambda o: o["process"].__setitem__("name", None))
    assert any(e.startswith("process.name:") for e in errs), errs
    errs = _broken(good, lambda o: o["process"].__setitem__("name", b"raw"))
    assert any(e.startswith("process.name:") and "bytes is not a JSON type" in e for e in errs), errs
    errs = _broken(good, lambda o: o["process"].__setitem__("name", "bad\udcff"))
    assert any(e.startswith("process.name:") and "not valid Unicode" in e for e in errs), errs
    errs = _broken(good, lambda o: o["unmapped"].__setitem__("huge", 2**64))
    assert any(e.startswith("unmapped.huge:") for e in errs), errs


def test_ocsf_rules_beyond_json_schema_fail(good: dict[str, Any]) -> None:
    errs = _broken(good, lambda o: o["metadata"].__setitem__("version", "1.3.0"))
    assert any(e.startswith("metadata.version:") for e in errs), errs
    errs = _broken(good, lambda o: o.__setitem__("type_uid", 100702))
    assert any(e.startswith("type_uid:") for e in errs), errs
    errs = _broken(good, lambda o: o.__setitem__("activity_name", "Terminate"))
    assert any(e.startswith("activity_name:") for e in errs), errs
    errs = _broken(good, lambda o: o.__setitem__("class_name", "File System Activity"))
    assert any(e.startswith("class_name:") for e in errs), errs
    errs = _broken(good, lambda o: o["process"].__setitem__("lineage", ["/bin/bash"]))
    assert errs == ["process.lineage: attribute is deprecated in OCSF 1.8.0"], errs
    errs = _broken(good, lambda o: o["process"].__setitem__("tid", 1))
    assert errs == ["process.tid: attribute is deprecated in OCSF 1.8.0"], errs


def test_profiles_gate_attributes(good: dict[str, Any]) -> None:
    # euid/egid/auid/group exist only with the Linux users profile
    errs = _broken(good, lambda o: o["metadata"]["profiles"].remove("linux/linux_users"))
    assert any("'euid'" in e and "unexpected" in e for e in errs), errs
    errs = _broken(good, lambda o: o["metadata"].pop("extensions"))
    assert any(e.startswith("metadata.extensions:") for e in errs), errs
    errs = _broken(good, lambda o: o["metadata"]["profiles"].append("no-such-profile"))
    assert any("'no-such-profile' is not a profile" in e for e in errs), errs


def test_unknown_class_and_non_object_fail(good: dict[str, Any]) -> None:
    assert validate({"class_uid": 9999}) == ["class_uid: 9999 is not a class of OCSF 1.8.0"]
    assert validate([]) == ["<root>: an OCSF event is a JSON object, not list"]  # type: ignore[arg-type]
    assert validate({}) == ["class_uid: None is not an integer class id"]


def test_assert_valid_raises_with_every_error(good: dict[str, Any]) -> None:
    assert_valid(good)
    obj = copy.deepcopy(good)
    obj["process"]["pid"] = "x"
    del obj["device"]
    with pytest.raises(SchemaViolation) as info:
        assert_valid(obj)
    assert len(info.value.errors) == 2
    assert "process.pid" in str(info.value) and "'device' is a required property" in str(info.value)
