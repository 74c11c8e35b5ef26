"""Alerts as OCSF 1.8.0 Detection Findings (2004): schema-valid, every attribute checked."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from alert_kit import (
    BOOT,
    HOST,
    MS,
    NOW,
    SEC,
    SEQ_RULE,
    SHADOW_RULE,
    THRESHOLD_RULE,
    exec_event,
    file_event,
    net_event,
    shadow_alert,
)

from sentinel_edge.alerts.ocsf import (
    TACTICS,
    event_uid,
    finding_uid,
    tactic_object,
    technique_objects,
    to_finding,
)
from sentinel_edge.enrich import Enricher, host_info
from sentinel_edge.enrich.proctable import TICK_NS, read_proc
from sentinel_edge.errors import OutputError
from sentinel_edge.model import KIND_FILE, Event
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.schema import OCSF_VERSION, assert_valid, validate
from sentinel_edge.rules.model import Alert, Attack, RuleMeta


def roundtrip(obj: dict[str, Any]) -> dict[str, Any]:
    """As a consumer reads it: the JSON line."""
    out: dict[str, Any] = json.loads(json.dumps(obj))
    return out


def test_single_event_finding_every_attribute() -> None:
    alert = shadow_alert()
    f = to_finding(alert, HOST)
    assert validate(f) == []
    f = roundtrip(f)
    uid = finding_uid(alert, HOST)
    ev = alert.events[0]
    eobj = to_ocsf(ev, HOST)
    assert {k: f[k] for k in ("class_uid", "class_name", "category_uid", "category_name", "activity_id",
                              "activity_name", "type_uid", "type_name", "severity_id", "severity",
                              "status_id", "status", "is_alert", "time", "message", "count")} == {
        "class_uid": 2004, "class_name": "Detection Finding", "category_uid": 2, "category_name": "Findings",
        "activity_id": 1, "activity_name": "Create", "type_uid": 200401, "type_name": "Detection Finding: Create",
        "severity_id": 4, "severity": "High", "status_id": 1, "status": "New", "is_alert": True,
        "time": NOW // MS, "message": "cat read /etc/shadow", "count": 1,
    }
    assert f["metadata"] == {
        "version": OCSF_VERSION,
        "product": {"name": "SentinelEdge", "vendor_name": "SentinelEdge",
                    "version": eobj["metadata"]["product"]["version"]},
        "profiles": ["container", "host", "linux/linux_users"],
        "extensions": [{"name": "linux", "uid": "1", "version": "1.8.0"}],
        "event_code": "se.credential_access.shadow_read",
        "uid": uid,
    }
    assert f["device"] == eobj["device"] == {
        "hostname": "edge-1", "uid": "m" * 32, "boot_uid": "b00t-1d", "boot_time": BOOT // MS, "type_id": 0,
        "os": {"name": "Linux", "type_id": 200, "kernel_release": "6.18.0"},
    }
    eid = f"b00t-1d:{5_000 * MS}:1:300"
    assert f["finding_info"] == {
        "uid": uid,
        "title": "Shadow file read by a non-system program",
        "desc": "A program outside the allow list opened /etc/shadow.",
        "analytic": {"uid": "se.credential_access.shadow_read", "name": "Shadow file read by a non-system program",
                     "type_id": 1, "type": "Rule", "category": "native",
                     "desc": "A program outside the allow list opened /etc/shadow."},
        "attacks": [{
            "technique": {"uid": "T1003.008", "src_url": "https://attack.mitre.org/techniques/T1003/008/",
                          "name": "OS Credential Dumping: /etc/passwd and /etc/shadow"},
            "sub_technique": {"uid": "T1003.008", "src_url": "https://attack.mitre.org/techniques/T1003/008/",
                              "name": "/etc/passwd and /etc/shadow"},
            "tactic": {"uid": "TA0006", "name": "Credential Access"},
        }],
        "types": ["native/match"],
        "tags": [{"name": "tag", "value": "credentials"}, {"name": "tag", "value": "linux"}],
        "data_sources": ["file"],
        "created_time": NOW // MS,
        "first_seen_time": NOW // MS,
        "last_seen_time": NOW // MS,
        "related_events": [{"uid": eid, "type_uid": 100114, "type_name": "File System Activity: Open",
                            "desc": "open /etc/shadow", "created_time": (BOOT + 5_000 * MS) // MS,
                            "severity_id": 1}],
        "related_events_count": 1,
    }
    assert f["start_time"] == f["end_time"] == (BOOT + 5_000 * MS) // MS
    # the actor: the process that opened the file, with its parent and its whole ancestry
    proc = f["actor"]["process"]
    assert (proc["pid"], proc["uid"], proc["name"], proc["path"], proc["cmd_line"]) == (
        300, "x-300", "cat", "/usr/bin/cat", "cat /etc/shadow")
    assert proc["user"] == {"uid": "1000", "name": "alice"} == f["actor"]["user"]
    assert proc["parent_process"]["uid"] == "x-200" and proc["parent_process"]["pid"] == 200
    assert [a["uid"] for a in proc["ancestry"]] == ["x-200", "x-100"]
    assert [a["name"] for a in proc["ancestry"]] == ["bash", "sshd"]
    assert proc["ancestry"][1]["cmd_line"] == "sshd: alice [priv]"
    # the evidence: the triggering event's OCSF object, typed parts as typed attributes
    (evd,) = f["evidences"]
    assert evd["uid"] == eid and evd["name"] == "File System Activity: Open"
    assert evd["actor"] == eobj["actor"]
    assert evd["file"] == eobj["file"] and evd["file"]["path"] == "/etc/shadow"
    assert set(evd["data"]) == set(eobj) - {"actor", "file", "metadata", "device"}
    assert evd["data"]["class_uid"] == 1001 and evd["data"]["unmapped"] == eobj["unmapped"]
    assert evd["data"]["unmapped"]["proc"]["ktime_ns"] == 5_000 * MS
    assert f["unmapped"] == {"rule": {"id": "se.credential_access.shadow_read", "severity": "high",
                                      "kind": "match", "source": "native", "file": "/etc/se/rules.yaml",
                                      "line": 12}}
    assert set(f) == {"class_uid", "class_name", "category_uid", "category_name", "activity_id", "activity_name",
                      "type_uid", "type_name", "severity_id", "severity", "status_id", "status", "is_alert", "time",
                      "message", "count", "metadata", "device", "finding_info", "start_time", "end_time", "actor",
                      "evidences", "unmapped"}


def test_exec_alert_actor_is_the_new_image_with_its_tree() -> None:
    ev = exec_event()
    rule = RuleMeta(id="se.exec.curl", title="curl", severity="low", attack=(Attack("T1105", "command-and-control"),))
    f = to_finding(Alert(rule, [ev], "curl ran", NOW), HOST)
    assert validate(f) == []
    proc = f["actor"]["process"]
    assert (proc["uid"], proc["path"], proc["cmd_line"]) == ("x-400", "/usr/bin/curl", "curl -s http://x")
    assert proc["parent_process"]["uid"] == "x-200"
    assert [a["uid"] for a in proc["ancestry"]] == ["x-200", "x-100"]
    assert f["severity_id"] == 2 and f["severity"] == "Low"
    assert f["finding_info"]["attacks"] == [{
        "technique": {"uid": "T1105", "src_url": "https://attack.mitre.org/techniques/T1105/",
                      "name": "Ingress Tool Transfer"},
        "tactic": {"uid": "TA0011", "name": "Command and Control"}}]  # no sub_technique for a technique
    assert f["evidences"][0]["process"]["uid"] == "x-400"  # exec: process = new image, actor = parent
    assert f["evidences"][0]["actor"]["process"]["uid"] == "x-200"


def test_folded_update_finding() -> None:
    first = shadow_alert(NOW)
    uid = finding_uid(first, HOST)
    last = shadow_alert(NOW + 8 * SEC, ts_ms=13_000)
    folded = Alert(last.rule, last.events, last.message, last.time_ns, count=7, first_ns=NOW)
    f = to_finding(folded, HOST, uid=uid, activity_id=2, created_ns=NOW)
    assert validate(f) == []
    assert (f["activity_id"], f["activity_name"], f["type_uid"], f["type_name"]) == (
        2, "Update", 200402, "Detection Finding: Update")
    assert f["count"] == 7
    info = f["finding_info"]
    assert info["uid"] == uid == f["metadata"]["uid"]
    assert info["created_time"] == info["first_seen_time"] == NOW // MS
    assert info["last_seen_time"] == info["modified_time"] == (NOW + 8 * SEC) // MS == f["time"]
    assert info["related_events"][0]["created_time"] == (BOOT + 13_000 * MS) // MS == f["start_time"]


def test_sequence_finding_has_every_step() -> None:
    steps = [exec_event(4_000), net_event(4_500)]
    alert = Alert(SEQ_RULE, steps, "curl connected to 10.0.0.9:4444 after exec", NOW,
                  data={"key": b"x-400", "steps": ("exec", "net"), "big": 2**70})
    f = to_finding(alert, HOST)
    assert validate(f) == []
    f = roundtrip(f)
    assert f["severity_id"] == 5 and f["severity"] == "Critical"
    info = f["finding_info"]
    assert info["types"] == ["native/sequence"] and info["data_sources"] == ["exec", "net"]
    assert [r["uid"] for r in info["related_events"]] == [event_uid(e, HOST) for e in steps]
    assert [r["type_uid"] for r in info["related_events"]] == [100701, 400101]
    assert info["related_events_count"] == 2
    assert f["start_time"] == (BOOT + 4_000 * MS) // MS and f["end_time"] == (BOOT + 4_500 * MS) // MS
    assert [e["uid"] for e in f["evidences"]] == [event_uid(e, HOST) for e in steps]
    assert f["evidences"][1]["dst_endpoint"] == {"ip": "10.0.0.9", "port": 4444}
    assert f["evidences"][1]["connection_info"]["protocol_name"] == "tcp"
    assert info["attacks"][0]["tactic"] == {"uid": "TA0011", "name": "Command and Control"}
    assert info["attacks"][1]["tactic"] == {"uid": "TA0002", "name": "Execution"}
    assert info["attacks"][1]["sub_technique"]["uid"] == "T1059.004"
    # actor: the process of the last step (a net event carries no ancestry; the finding adds it)
    proc = f["actor"]["process"]
    assert proc["uid"] == "x-400" and [a["uid"] for a in proc["ancestry"]] == ["x-200", "x-100"]
    assert "ancestry" not in f["evidences"][1]["actor"]["process"]
    assert f["unmapped"]["alert"] == {"key": "x-400", "steps": ["exec", "net"], "big": str(2**70)}


def test_threshold_finding_and_unenriched_event() -> None:
    evs = [file_event(5_000 + i, path=f"/srv/f{i}".encode(), enriched=False) for i in range(3)]
    alert = Alert(THRESHOLD_RULE, evs, "3 files", NOW, data={"count": 3, "by": "x-300"})
    f = to_finding(alert, HOST)
    assert validate(f) == []
    assert f["finding_info"]["types"] == ["native/threshold"]
    assert len(f["evidences"]) == 3 and [e["file"]["path"] for e in f["evidences"]] == ["/srv/f0", "/srv/f1",
                                                                                           "/srv/f2"]
    proc = f["actor"]["process"]  # from the raw kernel fields: no exec_id, no ancestry
    assert proc["pid"] == 300 and proc["name"] == "cat" and "uid" not in proc and "ancestry" not in proc
    assert f["unmapped"]["alert"] == {"count": 3, "by": "x-300"}
    assert "desc" not in f["finding_info"] and "tags" not in f["finding_info"]


def test_hostile_bytes_stay_valid_json() -> None:
    ev = file_event(path=b'/tmp/\xff\xfe"\n]\\evil')
    f = to_finding(Alert(SHADOW_RULE, [ev], 'read /tmp/\udcff "x"', NOW, data={"p": "/tmp/\udcfe"}), HOST)
    assert validate(f) == []
    assert f["message"] == 'read /tmp/\\xff "x"' and f["unmapped"]["alert"] == {"p": "/tmp/\\xfe"}
    assert f["evidences"][0]["file"]["path"] == '/tmp/\\xff\\xfe"\n]\\\\evil'


def test_finding_uid_is_stable_and_distinct() -> None:
    a, b = shadow_alert(NOW), shadow_alert(NOW)
    assert finding_uid(a, HOST) == finding_uid(b, HOST) == to_finding(b, HOST)["finding_info"]["uid"]
    assert finding_uid(shadow_alert(NOW + 1), HOST) != finding_uid(a, HOST)
    assert finding_uid(shadow_alert(NOW, ts_ms=5_001), HOST) != finding_uid(a, HOST)


def test_event_uid_matches_the_event_object() -> None:
    ev = file_event()
    obj = to_ocsf(ev, HOST)
    proc = obj["unmapped"]["proc"]
    assert event_uid(ev, HOST) == f"{obj['device']['boot_uid']}:{proc['ktime_ns']}:{proc['cpu']}:{proc['tid']}"


def test_tactic_table_covers_the_enterprise_matrix() -> None:
    assert len(TACTICS) == 14 and len({ta for ta, _ in TACTICS.values()}) == 14
    assert tactic_object("privilege-escalation") == {"uid": "TA0004", "name": "Privilege Escalation"}
    assert tactic_object("privilege_escalation") == tactic_object("Privilege Escalation") == \
        tactic_object("ta0004") == {"uid": "TA0004", "name": "Privilege Escalation"}
    assert tactic_object("exfiltration") == {"uid": "TA0010", "name": "Exfiltration"}
    assert tactic_object("impact") == {"uid": "TA0040", "name": "Impact"}
    assert tactic_object("made-up") == {"name": "made-up"}
    assert tactic_object("") is None
    assert technique_objects("t1003.008")["technique"]["uid"] == "T1003.008"
    assert technique_objects("") == {}
    # names from the offline ATT&CK catalogue; an unknown id keeps its uid only
    assert technique_objects("T1059.004")["technique"]["name"] == "Command and Scripting Interpreter: Unix Shell"
    assert technique_objects("T1059.004")["sub_technique"]["name"] == "Unix Shell"
    assert technique_objects("T9999") == {"technique": {"uid": "T9999",
                                                        "src_url": "https://attack.mitre.org/techniques/T9999/"}}
    rule = RuleMeta(id="r", title="t", severity="info", attack=(Attack("", "discovery"), Attack("T1082", "")))
    f = to_finding(Alert(rule, [file_event()], "", NOW), HOST)
    assert validate(f) == []
    assert f["finding_info"]["attacks"] == [
        {"tactic": {"uid": "TA0007", "name": "Discovery"}},
        {"technique": {"uid": "T1082", "src_url": "https://attack.mitre.org/techniques/T1082/",
                       "name": "System Information Discovery"}},
    ]
    assert f["message"] == "t" and f["severity"] == "Informational"


def test_unknown_severity_is_an_output_error() -> None:
    rule = RuleMeta(id="r.bad", title="t", severity="urgent")
    with pytest.raises(OutputError, match=r"r\.bad: unknown severity 'urgent'"):
        to_finding(Alert(rule, [file_event()], "m", NOW), HOST)


def test_validation_is_not_vacuous() -> None:
    good = to_finding(shadow_alert(), HOST)
    for mutate, expect in (
        (lambda f: f["finding_info"].pop("uid"), "finding_info"),
        (lambda f: f["finding_info"]["analytic"].update(type_id=42), "finding_info.analytic.type_id"),
        (lambda f: f["finding_info"]["attacks"][0].update(technique={"uid": 1003}), "technique.uid"),
        (lambda f: f["evidences"][0].update(bogus=1), "evidences[0]"),
        (lambda f: f.update(severity="Low"), "severity"),
    ):
        bad = copy.deepcopy(good)
        mutate(bad)
        errors = validate(bad)
        assert errors and any(expect in e for e in errors), (expect, errors)


def _schema_samples() -> Any:
    path = Path(__file__).resolve().parents[1] / "output" / "test_ocsf_schema.py"
    spec = importlib.util.spec_from_file_location("_se_ocsf_schema_samples", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def test_a_finding_of_every_event_kind_validates() -> None:
    """Every variant of every registered mapper (packed from the BTF, decoded) as the evidence of an alert."""
    mod = _schema_samples()
    from sentinel_edge.loader.btf import Btf
    from sentinel_edge.wire.decode import Decoder

    btf = Btf.from_elf(str(mod.OBJ))
    decoder = Decoder(btf)
    kinds = sorted({lay.kind for lay in decoder.layouts.values()})
    checked = 0
    for kind in kinds:
        for label, ev, _ in mod._samples(btf, decoder, kind):
            for enriched in (False, True):
                e = copy.copy(ev)
                if enriched:
                    mod._enrich(e)
                rule = RuleMeta(id=f"t.{kind}", title=label, severity="medium",
                                attack=(Attack("T1059", "execution"),))
                f = to_finding(Alert(rule, [e], label, NOW), HOST)
                errors = validate(f)
                assert errors == [], (label, enriched, errors[:5])
                checked += 1
    assert len(kinds) >= 10 and checked >= 40


def test_finding_from_a_real_enriched_event() -> None:
    """This pytest process, enriched from /proc by the real Enricher, as the actor of an alert."""
    host = host_info()
    enr = Enricher(host=host)
    assert enr.seed() > 0
    me, parent = read_proc(os.getpid()), read_proc(os.getppid())
    assert me is not None and parent is not None
    p = {"pid": os.getpid(), "tid": os.getpid(), "ppid": os.getppid(), "ns_pid": os.getpid(), "uid": os.getuid(),
         "euid": os.geteuid(), "gid": os.getgid(), "egid": os.getegid(), "loginuid": 0xFFFFFFFF,
         "sessionid": 0xFFFFFFFF, "mnt_ns": 1, "pid_ns": 2, "net_ns": 3, "cgroup_id": 1,
         "start_ns": me.start_ticks * TICK_NS, "parent_start_ns": parent.start_ticks * TICK_NS, "comm": b"pytest"}
    ev = enr.enrich(Event(KIND_FILE, 2, time.clock_gettime_ns(time.CLOCK_BOOTTIME), 0, p,
                          {"op": 1, "ret": 3, "path": b"/etc/shadow", "resolved": b"/etc/shadow", "flags": 0}))
    assert ev.process is not None and ev.ancestry
    f = to_finding(Alert(SHADOW_RULE, [ev], "pytest read /etc/shadow", time.time_ns()), host)
    assert_valid(f)
    proc = f["actor"]["process"]
    assert proc["pid"] == os.getpid() and proc["path"] == os.path.realpath(sys.executable)
    assert proc["uid"] == ev.process.exec_id
    assert proc["parent_process"]["pid"] == os.getppid()
    assert [a["pid"] for a in proc["ancestry"]] == [a.pid for a in ev.ancestry]
    assert f["device"]["hostname"] == host.hostname and f["device"]["boot_uid"] == host.boot_id
    assert abs(f["start_time"] - time.time() * 1000) < 5_000  # boot-time ns became wall-clock ms

