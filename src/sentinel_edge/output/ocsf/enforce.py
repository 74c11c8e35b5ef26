"""OCSF mapping of enforcement events (kind ``enforce``, struct se_enforce and user-space decisions).

=================  ==============================================  ==================================
what was hit       OCSF class and activity                         object
=================  ==============================================  ==================================
exec (kernel)      Process Activity (1007) 1 Launch                ``process``: the denied image
bpf / module load  Kernel Extension Activity (1002) 1 Load         ``driver.file``: the syscall
connect            Network Activity (4001) 1 Open                  ``dst_endpoint``
inbound (XDP)      Network Activity (4001) 5 Refuse                ``src_endpoint``, ``count``
user space         Process Activity (1007) 99 Other                ``unmapped.target``
=================  ==============================================  ==================================

Every object carries the ``security_control`` profile: ``action_id``
(2 Denied for a kill, deny or drop; 3 Observed in audit mode),
``disposition_id`` (2 Blocked, 6 Dropped, 17 Logged, 27 Error when the
action failed) and ``policy`` (the policy id, ``is_applied`` false in audit
mode). The raw decision is in ``unmapped.enforce``.
"""

from __future__ import annotations

import ipaddress
import socket
from typing import Any

from sentinel_edge.model import Event
from sentinel_edge.output.ocsf.common import (
    HostInfo,
    base,
    file_object,
    register,
    text,
)

KIND_ENFORCE = "enforce"
PROFILE = "security_control"

ACTION_ALLOWED, ACTION_DENIED, ACTION_OBSERVED = 1, 2, 3
DISP_ALLOWED, DISP_BLOCKED, DISP_QUARANTINED, DISP_DROPPED, DISP_NO_ACTION, DISP_LOGGED, DISP_ERROR = \
    1, 2, 3, 6, 16, 17, 27
STATUS_FAILURE = 2

ENF_EXEC, ENF_BPF, ENF_MODULE, ENF_CONNECT, ENF_INBOUND = 1, 2, 3, 4, 5
KERNEL_ACTION_NAMES = {0: "audit", 1: "kill", 2: "deny", 3: "drop"}


def security_control(action: str, ok: bool, policy_id: str, mode: str) -> dict[str, Any]:
    """The security_control profile fields of one enforcement decision."""
    if action == "audit":
        aid, disp = ACTION_OBSERVED, DISP_LOGGED
    elif action == "none":
        aid, disp = ACTION_OBSERVED, DISP_NO_ACTION
    elif not ok:
        aid, disp = ACTION_DENIED, DISP_ERROR
    elif action == "drop":
        aid, disp = ACTION_DENIED, DISP_DROPPED
    elif action == "quarantine":
        aid, disp = ACTION_DENIED, DISP_QUARANTINED
    else:  # kill, deny, block
        aid, disp = ACTION_DENIED, DISP_BLOCKED
    return {
        "action_id": aid,
        "action": {ACTION_DENIED: "Denied", ACTION_OBSERVED: "Observed"}[aid],
        "disposition_id": disp,
        "disposition": {DISP_BLOCKED: "Blocked", DISP_DROPPED: "Dropped", DISP_LOGGED: "Logged",
                        DISP_ERROR: "Error", DISP_NO_ACTION: "No Action", DISP_QUARANTINED: "Quarantined"}[disp],
        "policy": {"uid": policy_id, "name": policy_id, "is_applied": mode == "enforce",
                   "type": "SentinelEdge policy"},
    }


def address_text(family: int, raw: bytes) -> str:
    """The text of an se_enforce address (``addr`` bytes of ``family``)."""
    if family == socket.AF_INET6:
        return str(ipaddress.IPv6Address(bytes(raw[:16])))
    return str(ipaddress.IPv4Address(bytes(raw[:4])))


@register(KIND_ENFORCE)
def map_enforce(event: Event, host: HostInfo) -> dict[str, Any]:
    d = event.data
    kind = int(d.get("kind", 0))
    uspace = d.get("uspace")  # set for decisions made in user space (fanotify, responses)
    action = str(uspace["action"]) if isinstance(uspace, dict) else KERNEL_ACTION_NAMES.get(int(d["action"]),
                                                                                            "unknown")
    ok = bool(uspace["ok"]) if isinstance(uspace, dict) else int(d.get("result", 0)) == 0
    policy_id = str(uspace["policy_id"]) if isinstance(uspace, dict) else str(d.get("policy_id", ""))
    mode = str(uspace["mode"]) if isinstance(uspace, dict) else ("audit" if action == "audit" else "enforce")
    path = text(d.get("path")) or ""
    filename = text(d.get("filename")) or ""
    if kind == ENF_EXEC:
        obj = base(event, host, class_uid=1007, category_uid=1, activity_id=1,
                   message=f"exec of {filename or path} {action}")
        obj["process"] = {"pid": int(event.proc.get("pid", 0)), "file": file_object(path or filename)}
        if filename:
            obj["process"]["cmd_line"] = filename
    elif kind in (ENF_BPF, ENF_MODULE):
        what = "bpf(BPF_PROG_LOAD)" if kind == ENF_BPF else "module load"
        obj = base(event, host, class_uid=1002, category_uid=1, activity_id=1, message=f"{what} {action}")
        obj["driver"] = {"file": {"name": what, "type_id": 0}}
    elif kind in (ENF_CONNECT, ENF_INBOUND):
        addr = address_text(int(d.get("family", socket.AF_INET)), bytes(d.get("addr") or b"\0" * 16))
        if kind == ENF_CONNECT:
            obj = base(event, host, class_uid=4001, category_uid=4, activity_id=1,
                       message=f"connect to {addr}:{int(d.get('port', 0))} {action}")
            obj["dst_endpoint"] = {"ip": addr, "port": int(d.get("port", 0))}
            if int(d.get("count", 0)) > 1:  # attempts since the last report (reported once a second)
                obj["count"] = int(d["count"])
        else:
            obj = base(event, host, class_uid=4001, category_uid=4, activity_id=5,
                       message=f"packets from {addr} {action}")
            obj["src_endpoint"] = {"ip": addr}
            obj["count"] = max(1, int(d.get("count", 1)))
    else:
        target = str(uspace.get("target", "")) if isinstance(uspace, dict) else filename
        obj = base(event, host, class_uid=1007, category_uid=1, activity_id=99, activity_name="Enforce",
                   message=f"{target} {action}")
        obj["process"] = {"pid": int(event.proc.get("pid", 0)), "file": file_object(path or target or "?")}
    if not ok or action in ("kill", "deny", "drop"):
        obj["status_id"] = STATUS_FAILURE  # the activity did not happen
    obj["metadata"] = dict(obj["metadata"])
    obj["metadata"]["profiles"] = [*obj["metadata"]["profiles"], PROFILE]
    obj.update(security_control(action, ok, policy_id, mode))
    unm = obj["unmapped"]
    raw = {k: v for k, v in d.items() if k not in ("path", "filename", "addr", "uspace")}
    raw["path"] = path
    raw["filename"] = filename
    if isinstance(uspace, dict):
        raw.update({k: v for k, v in uspace.items() if isinstance(v, (str, int, float, bool)) or v is None})
    unm["enforce"] = raw
    return obj
