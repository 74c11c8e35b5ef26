"""OCSF objects shaped like the agent's, for the history tests."""

from __future__ import annotations

from typing import Any


def make_event(i: int, *, time_ms: int, class_uid: int = 1007, kind: str = "exec", pid: int = 1000,
               exe: str = "/usr/bin/sleep", user: str = "root", cmd_line: str = "sleep 5",
               file_path: str | None = None) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "class_uid": class_uid,
        "category_uid": 1,
        "activity_id": 1,
        "severity_id": 1,
        "time": time_ms,
        "metadata": {"version": "1.8.0", "event_code": kind, "uid": f"ev-{i}"},
        "actor": {
            "process": {"pid": pid, "uid": f"exec-{pid}", "name": exe.rsplit("/", 1)[-1], "path": exe,
                        "file": {"name": exe.rsplit("/", 1)[-1], "path": exe}, "cmd_line": cmd_line,
                        "user": {"uid": "0", "name": user}},
            "user": {"uid": "0", "name": user},
        },
        "unmapped": {"event": kind, "seq": i},
    }
    if file_path is not None:
        obj["file"] = {"path": file_path, "name": file_path.rsplit("/", 1)[-1]}
    return obj


def make_alert(uid: str, *, time_ms: int, rule: str = "se.test.rule", title: str = "Test rule fired",
               severity_id: int = 3, pid: int = 2000, exe: str = "/usr/bin/curl", user: str = "alice",
               cmd_line: str = "curl http://example.invalid/x.sh") -> dict[str, Any]:
    return {
        "class_uid": 2004,
        "category_uid": 2,
        "activity_id": 1,
        "type_uid": 200401,
        "severity_id": severity_id,
        "status_id": 1,
        "is_alert": True,
        "time": time_ms,
        "message": f"{title} by {exe}",
        "metadata": {"version": "1.8.0", "event_code": rule, "uid": uid},
        "finding_info": {"uid": uid, "title": title, "analytic": {"uid": rule, "name": title, "type_id": 1}},
        "actor": {
            "process": {"pid": pid, "uid": f"exec-{pid}", "name": exe.rsplit("/", 1)[-1], "path": exe,
                        "file": {"name": exe.rsplit("/", 1)[-1], "path": exe}, "cmd_line": cmd_line,
                        "user": {"uid": "1000", "name": user}},
            "user": {"uid": "1000", "name": user},
        },
    }
