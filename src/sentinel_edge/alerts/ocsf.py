"""Alerts as OCSF 1.8.0 Detection Findings (class 2004, category 2 Findings).

:func:`to_finding` maps one :class:`~sentinel_edge.rules.model.Alert` to a
Detection Finding that validates with
:func:`sentinel_edge.output.ocsf.schema.validate`. It reuses the event
mapping: every triggering event goes through
:func:`~sentinel_edge.output.ocsf.to_ocsf` once, and the finding's
``actor``, ``evidences`` and ``device`` are taken from those objects; the
metadata, the captions and ``type_uid`` come from the same helpers the event
mappers use (``common._metadata_cached``, ``common.finish``). The complete
mapping is documented in docs/alerts.md.
"""

from __future__ import annotations

import uuid
from typing import Any

from sentinel_edge.errors import OutputError
from sentinel_edge.model import KIND_EXEC, Event
from sentinel_edge.output.ocsf import to_ocsf
from sentinel_edge.output.ocsf.common import (
    HostInfo,
    _device_cached,
    _metadata_cached,
    boot_ns_to_ms,
    finish,
    process_entity,
    text,
)
from sentinel_edge.output.ocsf.enforce import PROFILE as ENFORCE_PROFILE
from sentinel_edge.output.ocsf.enforce import security_control
from sentinel_edge.rules.model import SEVERITY_ID, Alert, Attack

__all__ = [
    "ACTIVITY_CREATE",
    "ACTIVITY_UPDATE",
    "CATEGORY_FINDINGS",
    "CLASS_DETECTION_FINDING",
    "TACTICS",
    "event_uid",
    "finding_uid",
    "tactic_object",
    "technique_objects",
    "to_finding",
]

CLASS_DETECTION_FINDING = 2004
CATEGORY_FINDINGS = 2
ACTIVITY_CREATE = 1
ACTIVITY_UPDATE = 2
STATUS_NEW = 1
ANALYTIC_TYPE_RULE = 1

#: The 14 tactics of the ATT&CK Enterprise matrix: short name -> (TA id, name).
TACTICS: dict[str, tuple[str, str]] = {
    "reconnaissance": ("TA0043", "Reconnaissance"),
    "resource-development": ("TA0042", "Resource Development"),
    "initial-access": ("TA0001", "Initial Access"),
    "execution": ("TA0002", "Execution"),
    "persistence": ("TA0003", "Persistence"),
    "privilege-escalation": ("TA0004", "Privilege Escalation"),
    "defense-evasion": ("TA0005", "Defense Evasion"),
    "credential-access": ("TA0006", "Credential Access"),
    "discovery": ("TA0007", "Discovery"),
    "lateral-movement": ("TA0008", "Lateral Movement"),
    "collection": ("TA0009", "Collection"),
    "command-and-control": ("TA0011", "Command and Control"),
    "exfiltration": ("TA0010", "Exfiltration"),
    "impact": ("TA0040", "Impact"),
}
_TACTIC_BY_ID = {ta: (short, name) for short, (ta, name) in TACTICS.items()}

#: Namespace of the name-based (UUIDv5) finding uids.
_UID_NAMESPACE = uuid.UUID("5e7e1ed9-a1e2-4c0d-9f1b-2004f1d1a600")

#: Evidence attributes (objects of the OCSF ``evidences`` object) taken as they
#: are from the OCSF object of a triggering event; everything else of that
#: object (but ``metadata`` and ``device``, which the finding has) goes to
#: ``evidences[].data``.
EVIDENCE_KEYS = (
    "actor",
    "process",
    "file",
    "src_endpoint",
    "dst_endpoint",
    "connection_info",
    "user",
    "container",
    "api",
    "query",
    "url",
    "script",
    "job",
    "tls",
    "http_request",
    "http_response",
    "email",
    "database",
    "databucket",
)
_NOT_IN_DATA = frozenset({*EVIDENCE_KEYS, "metadata", "device"})


# ---------------------------------------------------------------- ATT&CK


def tactic_object(tactic: str) -> dict[str, Any] | None:
    """OCSF ``tactic`` {uid TA00xx, name} of a tactic short name (or TA id).

    Accepts the ATT&CK short name (``command-and-control``), the Sigma form
    (``command_and_control``), the display name and the TA id. A name outside
    the Enterprise matrix keeps its text as ``name`` without a ``uid``.
    """
    raw = tactic.strip()
    if not raw:
        return None
    if raw.upper() in _TACTIC_BY_ID:
        ta = raw.upper()
        return {"uid": ta, "name": _TACTIC_BY_ID[ta][1]}
    key = raw.lower().replace("_", "-").replace(" ", "-")
    if key in TACTICS:
        ta, name = TACTICS[key]
        return {"uid": ta, "name": name}
    return {"name": raw}


def technique_objects(technique: str) -> dict[str, Any]:
    """``technique`` (and ``sub_technique`` for ``Txxxx.yyy``) of an ATT&CK id.

    ``technique.uid`` is the id exactly as the rule gives it (``T1003.008``),
    which is what consumers match on; a sub-technique is also given as OCSF's
    ``sub_technique``. ``name`` comes from the offline ATT&CK catalogue
    (alerts/attack.py; absent for an id it does not know): the technique's
    own name, and for a sub-technique ``Parent: Sub`` on ``technique`` and the
    sub-technique's name on ``sub_technique``. ``src_url`` is the page on
    attack.mitre.org.
    """
    from sentinel_edge.alerts.attack import technique_name

    tid = technique.strip().upper()
    out: dict[str, Any] = {}
    if not tid:
        return out
    url = "https://attack.mitre.org/techniques/" + tid.replace(".", "/") + "/"
    out["technique"] = {"uid": tid, "src_url": url}
    name = technique_name(tid)
    if name:
        out["technique"]["name"] = name
    if "." in tid:
        out["sub_technique"] = {"uid": tid, "src_url": url}
        if name:
            out["sub_technique"]["name"] = name.split(": ", 1)[-1]
    return out


def _attacks(attacks: tuple[Attack, ...]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in attacks:
        obj = technique_objects(a.technique)
        tactic = tactic_object(a.tactic)
        if tactic is not None:
            obj["tactic"] = tactic
        if obj and obj not in out:
            out.append(obj)
    return out


# ---------------------------------------------------------------- ids


def event_uid(event: Event, host: HostInfo) -> str:
    """A stable id of one kernel event, derived from what its OCSF object holds.

    ``<boot id>:<ktime_ns>:<cpu>:<tid>``: the event object of the same event
    has them as ``device.boot_uid``, ``unmapped.proc.ktime_ns``,
    ``unmapped.proc.cpu`` and ``unmapped.proc.tid``.
    """
    return f"{host.boot_id}:{event.ts_ns}:{event.cpu}:{event.proc.get('tid', event.proc.get('pid', 0))}"


def finding_uid(alert: Alert, host: HostInfo) -> str:
    """Deterministic UUID (v5) of an alert: the same alert always gets the same uid.

    Made from the host's boot id, the rule id, the time the alert (or, when
    folded, its first occurrence) was raised and the ids of its events, so a
    retried delivery carries the same uid and two different alerts never do.
    """
    first = alert.first_ns or alert.time_ns
    events = ",".join(event_uid(e, host) for e in alert.events)
    return str(uuid.uuid5(_UID_NAMESPACE, f"{host.boot_id}\n{alert.rule.id}\n{first}\n{events}"))


# ---------------------------------------------------------------- helpers


def _str(value: str) -> str:
    """Text from rules and templates as valid Unicode: lone surrogates (undecodable bytes
    of an ``os.fsdecode`` path in a rendered template) become ``\\xNN`` as in event text."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return text(value) or ""
    return value


def _json_safe(value: Any) -> Any:
    """Rule-kind specifics (``Alert.data``) as JSON: bytes via text(), the rest as str."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return _str(value)
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**63 else str(value)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    if isinstance(value, bytes):
        return text(value)
    if isinstance(value, dict):
        return {_str(str(k)): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_json_safe(v) for v in value]
    return _str(str(value))


def _actor(event: Event, obj: dict[str, Any], host: HostInfo) -> dict[str, Any] | None:
    """The process the alert is about, with its parent and whole ancestry.

    For an exec that is the new image (the event's ``process``); for every
    other kind the calling task (the event's ``actor.process``). The event
    mappers give ``ancestry`` only on exec/fork objects, so it is added here
    from enrichment for the other kinds.
    """
    if event.kind == KIND_EXEC and isinstance(obj.get("process"), dict):
        proc = dict(obj["process"])
    else:
        actor = obj.get("actor")
        if not isinstance(actor, dict) or not isinstance(actor.get("process"), dict):
            return None
        proc = dict(actor["process"])
    if "ancestry" not in proc and event.ancestry:
        proc["ancestry"] = [process_entity(a, host) for a in event.ancestry]
    out: dict[str, Any] = {"process": proc}
    if isinstance(proc.get("user"), dict):
        out["user"] = dict(proc["user"])
    return out


def _evidence(event: Event, obj: dict[str, Any], host: HostInfo) -> dict[str, Any]:
    ev: dict[str, Any] = {"uid": event_uid(event, host), "name": str(obj.get("type_name") or event.kind)}
    for key in EVIDENCE_KEYS:
        if key in obj:
            ev[key] = obj[key]
    ev["data"] = {k: v for k, v in obj.items() if k not in _NOT_IN_DATA}
    return ev


def _related(event: Event, obj: dict[str, Any], host: HostInfo) -> dict[str, Any]:
    rel: dict[str, Any] = {"uid": event_uid(event, host)}
    if isinstance(obj.get("type_uid"), int):
        rel["type_uid"] = obj["type_uid"]
    if obj.get("type_name"):
        rel["type_name"] = obj["type_name"]
    if obj.get("message"):
        rel["desc"] = obj["message"]
    t = obj.get("time")
    rel["created_time"] = t if isinstance(t, int) else boot_ns_to_ms(event.ts_ns, host)
    if isinstance(obj.get("severity_id"), int):
        rel["severity_id"] = obj["severity_id"]
    return rel


def _event_object(event: Event, host: HostInfo) -> dict[str, Any]:
    try:
        return to_ocsf(event, host)
    except OutputError:  # a kind without a mapper: still an evidence, from the raw fields
        return {"time": boot_ns_to_ms(event.ts_ns, host), "unmapped": {"event": event.kind}}


# ---------------------------------------------------------------- the finding


def to_finding(
    alert: Alert,
    host: HostInfo,
    *,
    uid: str | None = None,
    activity_id: int = ACTIVITY_CREATE,
    created_ns: int | None = None,
) -> dict[str, Any]:
    """The OCSF 1.8.0 Detection Finding of an alert.

    ``activity_id`` is 1 Create for a new alert and 2 Update for the
    follow-up of a folded alert, which carries the ``uid`` of the finding it
    updates (:func:`finding_uid` of the alert otherwise) and the total
    ``count``. ``created_ns`` is when that finding was created (default: the
    first occurrence).
    """
    rule = alert.rule
    try:
        severity_id = SEVERITY_ID[rule.severity]
    except KeyError:
        raise OutputError(f"alert of rule {rule.id}: unknown severity {rule.severity!r}") from None
    time_ms = alert.time_ns // 1_000_000
    first_ms = (alert.first_ns or alert.time_ns) // 1_000_000
    objs = [(e, _event_object(e, host)) for e in alert.events]

    metadata = _metadata_cached(alert.events[-1].kind if alert.events else "alert")
    metadata["event_code"] = _str(rule.id)
    fuid = uid or finding_uid(alert, host)
    metadata["uid"] = fuid

    title = _str(rule.title or rule.id)
    desc = _str(rule.description.strip())
    info: dict[str, Any] = {"uid": fuid, "title": title}
    if desc:
        info["desc"] = desc
    analytic: dict[str, Any] = {
        "uid": _str(rule.id),
        "name": title,
        "type_id": ANALYTIC_TYPE_RULE,
        "type": "Rule",
        "category": rule.source,
    }
    if desc:
        analytic["desc"] = desc
    info["analytic"] = analytic
    attacks = _attacks(rule.attack)
    if attacks:
        info["attacks"] = attacks
    info["types"] = [f"{rule.source}/{rule.kind}"]
    if rule.tags:
        info["tags"] = [{"name": "tag", "value": _str(t)} for t in rule.tags]
    info["data_sources"] = sorted({e.kind for e in alert.events})
    info["created_time"] = (created_ns // 1_000_000) if created_ns is not None else first_ms
    if activity_id == ACTIVITY_UPDATE:
        info["modified_time"] = time_ms
    info["first_seen_time"] = first_ms
    info["last_seen_time"] = time_ms
    if objs:
        info["related_events"] = [_related(e, o, host) for e, o in objs]
        info["related_events_count"] = len(objs)

    finding: dict[str, Any] = {
        "class_uid": CLASS_DETECTION_FINDING,
        "category_uid": CATEGORY_FINDINGS,
        "activity_id": activity_id,
        "type_uid": CLASS_DETECTION_FINDING * 100 + activity_id,
        "severity_id": severity_id,
        "status_id": STATUS_NEW,
        "is_alert": True,
        "time": time_ms,
        "message": _str(alert.message) or title,
        "count": alert.count,
        "metadata": metadata,
        "device": _device_cached(host),
        "finding_info": info,
    }
    if objs:
        finding["start_time"] = min(o.get("time", time_ms) for _, o in objs)
        finding["end_time"] = max(o.get("time", time_ms) for _, o in objs)
        last_event, last_obj = objs[-1]
        actor = _actor(last_event, last_obj, host)
        if actor is not None:
            finding["actor"] = actor
        finding["evidences"] = [_evidence(e, o, host) for e, o in objs]
    unmapped: dict[str, Any] = {
        "rule": {
            "id": rule.id,
            "severity": rule.severity,
            "kind": rule.kind,
            "source": rule.source,
            "file": rule.file,
            "line": rule.line,
        }
    }
    if alert.data:
        unmapped["alert"] = _json_safe(alert.data)
    enf = alert.data.get("enforcement") if alert.data else None
    if isinstance(enf, dict):  # an enforcement decision: the security_control profile says what was done
        metadata["profiles"] = [*metadata["profiles"], ENFORCE_PROFILE]
        finding.update(security_control(str(enf.get("action")), bool(enf.get("ok")), str(enf.get("policy_id")),
                                        str(enf.get("mode"))))
    finding["unmapped"] = unmapped
    return finish(finding)
