"""The REST API's access control against a real agent (docs/api.md): every role against every endpoint class,
401 for a missing, unknown or revoked token, the audit log of every change (API and CLI), the alert workflow on
a real alert, rule switches (surviving a restart), policies applied and removed, the Host header, the security
headers, and TLS for a non-loopback listen address.

One agent (default rule set, enforcement pinned under a test pin root, policies in a temporary directory) serves
the module; the rule-restart and TLS tests run short agents of their own.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_fixtures import (
    ROLES,
    SHADOW_RULE,
    Reply,
    call,
    cli,
    enforce_config,
    make_token,
    pin_root_for,
    read_shadow,
    stored_alerts,
    uninstall_pins,
    wait_stored_alert,
    wait_until,
)

from conftest import AgentHandle, by_pid, run_cmd, start_agent, stop_agent

pytestmark = pytest.mark.kernel

# docs/api.md, "Transport safety"
CSP_DIRECTIVES = {
    "default-src": "'none'", "script-src": "'self'", "style-src": "'self'", "img-src": "'self' data:",
    "connect-src": "'self'", "base-uri": "'none'", "form-action": "'none'", "frame-ancestors": "'none'",
}
BAD_YAML = "policies:\n  - id: broken\n    mode: sometimes\n    exec:\n      deny:\n        prefixes: [relative/]\n"


@dataclass
class Env:
    agent: AgentHandle
    base: str
    admin: str
    tokens: dict[str, str]
    state: Path
    policy_dir: Path
    tmp: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    tmp = tmp_path_factory.mktemp("api-roles")
    pin = pin_root_for("roles")
    pdir = tmp / "policies"
    pdir.mkdir()
    h = start_agent(tmp, enforce_config(pdir, pin), alerts=True)
    try:
        assert h.state_dir is not None
        tokens = {role: make_token(h.state_dir, f"{role}-user", role) for role in ROLES}
        yield Env(h, h.api_url, h.admin_token, tokens, h.state_dir, pdir, tmp)
    finally:
        rc = stop_agent(h)
        uninstall_pins(pin)
        assert rc == 0, h.log.read_text()[-3000:]


# -- every role against every endpoint class -------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    permission: str
    method: str
    path: str
    allowed: int  # the answer when the permission is there (404 for an unknown id is still "allowed")
    body: Any = None

    @property
    def id(self) -> str:
        return f"{self.method} {self.path.split('?')[0]}"


ENDPOINTS = [
    Endpoint("read", "GET", "/api/v1/whoami", 200),
    Endpoint("read", "GET", "/api/v1/events?limit=5", 200),
    Endpoint("read", "GET", "/api/v1/alerts?limit=5", 200),
    Endpoint("read", "GET", "/api/v1/alerts/no-such-alert", 404),
    Endpoint("read", "GET", "/api/v1/overview?hours=1", 200),
    Endpoint("read", "GET", "/api/v1/rules", 200),
    Endpoint("read", "GET", "/api/v1/policies", 200),
    Endpoint("read", "GET", "/api/v1/status", 200),
    Endpoint("read", "GET", "/api/v1/network", 200),
    Endpoint("read", "GET", "/api/v1/stream?seconds=1", 200),
    Endpoint("read", "GET", "/metrics", 200),
    Endpoint("alerts:write", "POST", "/api/v1/alerts/no-such-alert/ack", 404, {"comment": "seen"}),
    Endpoint("alerts:write", "POST", "/api/v1/alerts/no-such-alert/resolve", 404),
    Endpoint("alerts:write", "POST", "/api/v1/alerts/no-such-alert/comment", 404, {"comment": "a note"}),
    Endpoint("rules:write", "POST", "/api/v1/rules/no.such.rule/disable", 404),
    Endpoint("rules:write", "POST", "/api/v1/rules/no.such.rule/enable", 404),
    Endpoint("rules:write", "POST", "/api/v1/rules/reload", 200),
    Endpoint("policies:write", "POST", "/api/v1/policies", 422, {"name": "roles-bad", "yaml": BAD_YAML}),
    Endpoint("policies:write", "DELETE", "/api/v1/policies/no-such-policy", 404),
    Endpoint("enforcement:switch", "POST", "/api/v1/enforcement/disarm", 200),
    Endpoint("enforcement:switch", "POST", "/api/v1/enforcement/arm", 200),
    Endpoint("audit:read", "GET", "/api/v1/audit?limit=5", 200),
    Endpoint("audit:read", "GET", "/api/v1/tokens", 200),
]

# docs/api.md, the permission table
GRANTED = {
    "viewer": {"read"},
    "analyst": {"read", "alerts:write"},
    "operator": {"read", "rules:write", "policies:write"},
    "admin": {"read", "alerts:write", "rules:write", "policies:write", "enforcement:switch", "audit:read"},
}


def test_the_table_covers_every_operation_of_the_openapi_document(env: Env) -> None:
    r = call(env.base, "GET", "/api/v1/openapi.json", env.admin)
    assert r.status == 200
    ops = {f"{m.upper()} {p}" for p, item in r.body["paths"].items() for m in item}
    table = {e.id for e in ENDPOINTS}
    # every documented operation has a row (path templates stand for the concrete ids of the table)
    for op in ops:
        method, path = op.split(" ", 1)
        pattern = path.replace("{uid}", "no-such-alert").replace("{rule_id}", "no.such.rule") \
                      .replace("{name}", "no-such-policy")
        assert f"{method} {pattern}" in table or op in ("GET /healthz", "GET /readyz"), f"no role row for {op}"


@pytest.mark.parametrize("ep", ENDPOINTS, ids=lambda e: e.id)
@pytest.mark.parametrize("role", ROLES)
def test_every_role_against_every_endpoint(env: Env, role: str, ep: Endpoint) -> None:
    r = call(env.base, ep.method, ep.path, env.tokens[role], ep.body)
    if ep.permission in GRANTED[role]:
        assert r.status == ep.allowed, (role, ep.id, r.status, r.body)
        _check_allowed_answer(role, ep, r)
    else:
        assert r.status == 403, (role, ep.id, r.status, r.body)
        assert r.body == {"detail": f"role {role} lacks the {ep.permission} permission"}


def _check_allowed_answer(role: str, ep: Endpoint, r: Reply) -> None:
    """What an allowed request answered (beyond its status)."""
    path = ep.path.split("?")[0]
    if path == "/api/v1/whoami":
        assert r.body == {"name": f"{role}-user", "role": role,
                          "permissions": [p for p in ("read", "alerts:write", "rules:write", "policies:write",
                                                      "enforcement:switch", "audit:read") if p in GRANTED[role]]}
    elif path in ("/api/v1/events", "/api/v1/alerts", "/api/v1/audit"):
        assert set(r.body) == {"items", "next_before_id"} and len(r.body["items"]) <= 5
    elif ep.allowed == 404:
        assert isinstance(r.body, dict) and set(r.body) == {"detail"} and r.body["detail"]
    elif path == "/api/v1/stream":
        assert r.headers["content-type"].startswith("text/event-stream")
        assert r.body.startswith(": stream open")
    elif path == "/metrics":
        assert "sentinel_edge_up 1.0" in r.body.splitlines()
    elif path == "/api/v1/rules/reload":
        assert r.body["reloaded"] is True and r.body["error"] is None and r.body["rules"] > 50
    elif path == "/api/v1/policies" and ep.method == "POST":
        assert "/policies/roles-bad.yaml:3:" in r.body["detail"] and "mode" in r.body["detail"]
    elif path == "/api/v1/enforcement/disarm":
        assert r.body == {"armed": False}
    elif path == "/api/v1/enforcement/arm":
        assert r.body == {"armed": True}
    elif path == "/api/v1/tokens":
        names = {t["name"]: t for t in r.body["items"]}
        assert {f"{x}-user" for x in ROLES} | {"admin"} <= set(names)
        assert names["viewer-user"]["role"] == "viewer" and names["viewer-user"]["revoked"] is None
        assert all("hash" not in t and "token" not in t for t in r.body["items"])
    elif path == "/api/v1/status":
        assert r.body["running"] is True and r.body["health"] == {"ok": True, "problems": []}
    elif path == "/api/v1/policies":
        assert r.body["enabled"] is True and r.body["directory"].endswith("/policies")
    elif path == "/api/v1/overview":
        assert {"alerts_over_time", "alerts_by_severity", "top_rules", "rates", "loss"} <= set(r.body)
    elif path == "/api/v1/rules":
        assert any(x["id"] == SHADOW_RULE for x in r.body["items"])
    elif path == "/api/v1/network":  # this agent inspects no interface: the inspector is off
        assert r.body["enabled"] is False and r.body["blocks_in_force"] == []
        assert r.body["settings"]["port_scan_ports"] == 30 and r.body["interfaces"] == {}
    else:
        raise AssertionError(f"no check for {ep.id}")


# -- authentication ------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/whoami", "/api/v1/events", "/metrics", "/api/v1/audit"])
def test_a_missing_or_unknown_token_is_401(env: Env, path: str) -> None:
    for token in (None, "se_" + "A" * 43, "not-a-token", env.admin + "x"):
        r = call(env.base, "GET", path, token)
        assert r.status == 401, (path, token, r)
        assert r.headers.get("www-authenticate") == "Bearer"
    # another scheme than Bearer
    r = call(env.base, "GET", path, headers={"Authorization": f"Basic {env.admin}"})
    assert r.status == 401


def test_a_revoked_token_is_401_at_the_next_request(env: Env) -> None:
    token = make_token(env.state, "soon-revoked", "analyst")
    assert call(env.base, "GET", "/api/v1/whoami", token).body["name"] == "soon-revoked"
    r = cli("token", "revoke", "soon-revoked", "--state-dir", str(env.state))
    assert r.returncode == 0 and "revoked" in r.stdout
    r2 = call(env.base, "GET", "/api/v1/whoami", token)
    assert r2.status == 401 and r2.body == {"detail": "unknown or revoked token"}
    listed = [json.loads(x) for x in cli("token", "list", "--json", "--state-dir", str(env.state)).stdout.split("\n")
              if x]
    (t,) = [x for x in listed if x["name"] == "soon-revoked"]
    assert t["role"] == "analyst" and t["revoked"] is not None and t["last_used"] is not None
    r3 = call(env.base, "GET", "/api/v1/tokens", env.admin)
    (t2,) = [x for x in r3.body["items"] if x["name"] == "soon-revoked"]
    assert t2["revoked"] == t["revoked"]


def test_a_body_that_is_not_json_is_401_without_a_token(env: Env) -> None:
    """The body is parsed before the token is checked: without a valid token the answer is still 401."""
    for token in (None, "se_" + "B" * 43):
        r = call(env.base, "POST", "/api/v1/policies", token, raw=b"{not json")
        assert r.status == 401 and r.body == {"detail": "a bearer token is required"}, r
    r = call(env.base, "POST", "/api/v1/alerts/x/comment", env.tokens["analyst"], raw=b"{not json")
    assert r.status == 422 and r.body["detail"][0]["type"] == "json_invalid"
    (last,) = _audit(env)[:1]
    assert (last["who"], last["role"], last["outcome"]) == ("analyst-user", "analyst", "failed (422)")


# -- the audit log ------------------------------------------------------------------------------------------


def _audit(env: Env) -> list[dict[str, Any]]:
    r = call(env.base, "GET", "/api/v1/audit?limit=1000", env.admin)
    assert r.status == 200
    items: list[dict[str, Any]] = r.body["items"]
    return items


def test_every_change_allowed_or_refused_is_audited(env: Env) -> None:
    old = _audit(env)
    before = old[0]["id"] if old else 0
    assert call(env.base, "POST", "/api/v1/rules/no.such.audit/disable", env.tokens["viewer"]).status == 403
    assert call(env.base, "POST", "/api/v1/rules/no.such.audit/disable", env.tokens["operator"]).status == 404
    assert call(env.base, "POST", "/api/v1/enforcement/disarm", env.tokens["operator"]).status == 403
    assert call(env.base, "POST", "/api/v1/enforcement/arm", env.tokens["admin"]).status == 200
    assert call(env.base, "POST", "/api/v1/alerts/no-such-audit/ack", None).status == 401
    assert call(env.base, "POST", "/api/v1/alerts/no-such-audit/comment", env.tokens["analyst"],
                {"comment": "who did this"}).status == 404
    assert call(env.base, "GET", "/api/v1/whoami", env.tokens["viewer"]).status == 200  # a read: not audited
    new = [a for a in _audit(env) if a["id"] > before]
    got = [(a["who"], a["role"], a["action"], a["target"], a["outcome"]) for a in reversed(new)]
    assert got == [
        ("viewer-user", "viewer", "POST /api/v1/rules/{rule_id}/disable", "/api/v1/rules/no.such.audit/disable",
         "refused"),
        ("operator-user", "operator", "POST /api/v1/rules/{rule_id}/disable", "/api/v1/rules/no.such.audit/disable",
         "failed (404)"),
        ("operator-user", "operator", "POST /api/v1/enforcement/disarm", "/api/v1/enforcement/disarm", "refused"),
        ("admin-user", "admin", "POST /api/v1/enforcement/arm", "/api/v1/enforcement/arm", "ok"),
        ("-", "-", "POST /api/v1/alerts/{uid}/ack", "/api/v1/alerts/no-such-audit/ack", "unauthenticated"),
        ("analyst-user", "analyst", "POST /api/v1/alerts/{uid}/comment", "/api/v1/alerts/no-such-audit/comment",
         "failed (404)"),
    ]
    assert new[0]["detail"] == "who did this"
    assert all(isinstance(a["time"], int) and a["time"] > 1_600_000_000_000 for a in new)
    # the same entries through the CLI (oldest first, one JSON object a line)
    r = cli("audit", "--json", "--limit", "1000", "--state-dir", str(env.state))
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.splitlines() if x]
    assert [x for x in lines if x["id"] > before] == list(reversed(new))
    text = cli("audit", "--limit", "6", "--state-dir", str(env.state)).stdout.splitlines()
    assert text[0].endswith("viewer-user (viewer) POST /api/v1/rules/{rule_id}/disable "
                            "/api/v1/rules/no.such.audit/disable -> refused")


# -- a real alert: acknowledge, comment, resolve ---------------------------------------------------------------


def test_analyst_works_a_real_alert(env: Env) -> None:
    pid = read_shadow()
    a = wait_stored_alert(env.base, env.tokens["viewer"], SHADOW_RULE, pid)
    uid = a["uid"]
    assert a["status"] == "new" and a["rule"] == SHADOW_RULE and a["pid"] == pid and a["exe"] == "/usr/bin/cat"
    assert a["severity_id"] >= 4 and a["title"]
    (attack,) = [x for x in a["obj"]["finding_info"]["attacks"] if x["technique"]["uid"] == "T1003.008"]
    assert attack["technique"]["name"] == "OS Credential Dumping: /etc/passwd and /etc/shadow"
    assert attack["technique"]["src_url"] == "https://attack.mitre.org/techniques/T1003/008/"
    assert attack["tactic"]["uid"] == "TA0006" and attack["tactic"]["name"] == "Credential Access"
    # who may not
    for role in ("viewer", "operator"):
        r = call(env.base, "POST", f"/api/v1/alerts/{uid}/ack", env.tokens[role])
        assert r.status == 403
    # the analyst may
    r = call(env.base, "POST", f"/api/v1/alerts/{uid}/ack", env.tokens["analyst"], {"comment": "looking"})
    assert r.status == 200 and r.body["status"] == "acknowledged" and r.body["uid"] == uid
    r = call(env.base, "POST", f"/api/v1/alerts/{uid}/comment", env.tokens["analyst"], {"comment": "it was me"})
    assert r.status == 200 and r.body["status"] == "acknowledged"
    r = call(env.base, "POST", f"/api/v1/alerts/{uid}/comment", env.tokens["analyst"], {"comment": ""})
    assert r.status == 422  # a comment needs text
    r = call(env.base, "POST", f"/api/v1/alerts/{uid}/comment", env.tokens["analyst"], {"comment": " \t\u2028"})
    assert r.status == 422 and r.body == {"detail": "comment: empty comment"}  # white space only (was a 500)
    r = call(env.base, "POST", f"/api/v1/alerts/{uid}/resolve", env.tokens["analyst"])
    assert r.status == 200 and r.body["status"] == "resolved"
    d = call(env.base, "GET", f"/api/v1/alerts/{uid}", env.tokens["viewer"])
    assert d.status == 200
    assert d.body["alert"]["status"] == "resolved" and d.body["alert"]["uid"] == uid
    changes = [(c["who"], c["action"], c["old_status"], c["new_status"], c["comment"]) for c in d.body["changes"]]
    assert changes == [("analyst-user", "ack", "new", "acknowledged", "looking"),
                       ("analyst-user", "comment", "acknowledged", "acknowledged", "it was me"),
                       ("analyst-user", "resolve", "acknowledged", "resolved", "")]
    times = [c["time"] for c in d.body["changes"]]
    assert times == sorted(times) and times[0] >= a["time"]
    proc = d.body["process"]
    assert proc["pid"] == pid and proc["name"] == "cat" and proc["file"]["path"] == "/usr/bin/cat"
    assert proc["cmd_line"] == "cat /etc/shadow"
    assert d.body["ancestry"] and all("pid" in p for p in d.body["ancestry"])
    assert any(e["pid"] == pid for e in d.body["events"])
    # the list filters by status
    got = call(env.base, "GET", f"/api/v1/alerts?status=resolved&pid={pid}", env.tokens["viewer"]).body["items"]
    assert [x["uid"] for x in got] == [uid]
    assert call(env.base, "GET", f"/api/v1/alerts?status=new&pid={pid}", env.tokens["viewer"]).body["items"] == []
    # and the audit log has the three changes with the analyst's name
    mine = [x for x in _audit(env) if x["target"].startswith(f"/api/v1/alerts/{uid}/")]
    assert sorted((x["who"], x["action"], x["outcome"]) for x in mine) == sorted([
        ("viewer-user", "POST /api/v1/alerts/{uid}/ack", "refused"),
        ("operator-user", "POST /api/v1/alerts/{uid}/ack", "refused"),
        ("analyst-user", "POST /api/v1/alerts/{uid}/ack", "ok"),
        ("analyst-user", "POST /api/v1/alerts/{uid}/comment", "ok"),
        ("analyst-user", "POST /api/v1/alerts/{uid}/comment", "failed (422)"),
        ("analyst-user", "POST /api/v1/alerts/{uid}/comment", "failed (422)"),
        ("analyst-user", "POST /api/v1/alerts/{uid}/resolve", "ok"),
    ])


# -- rules on and off ---------------------------------------------------------------------------------------------


def _shadow_event_seen(env: Env, pid: int) -> bool:
    """The pipeline saw the read (the file event of pid is written): an absent alert is not a missed event."""
    return bool(env.agent.find_all(by_pid(pid)))


def test_operator_switches_a_rule_off_and_on(env: Env) -> None:
    op = env.tokens["operator"]
    try:
        r = call(env.base, "POST", f"/api/v1/rules/{SHADOW_RULE}/disable", op)
        assert r.status == 200 and r.body["id"] == SHADOW_RULE and r.body["enabled"] is False
        off = call(env.base, "GET", "/api/v1/rules?enabled=false", op).body["items"]
        assert [x["id"] for x in off] == [SHADOW_RULE]
        state = json.loads((env.state / "rules-state.json").read_text())
        assert SHADOW_RULE in json.dumps(state)
        pid = read_shadow()
        wait_until(lambda: _shadow_event_seen(env, pid), "the file event of the shadow read")
        # the alert sinks run after the events: give a (wrong) alert the time to arrive
        assert not env.agent.find_alerts(SHADOW_RULE, pred=by_alert_pid(pid))
        env.agent.assert_no_alert(SHADOW_RULE, pred=by_alert_pid(pid), settle=2.0)
        assert stored_alerts(env.base, op, SHADOW_RULE, pid) == []
        r = call(env.base, "POST", f"/api/v1/rules/{SHADOW_RULE}/enable", op)
        assert r.status == 200 and r.body["enabled"] is True
        assert call(env.base, "GET", "/api/v1/rules?enabled=false", op).body["items"] == []
        pid2 = read_shadow()
        wait_stored_alert(env.base, op, SHADOW_RULE, pid2)
    finally:
        call(env.base, "POST", f"/api/v1/rules/{SHADOW_RULE}/enable", env.admin)


def by_alert_pid(pid: int) -> Any:
    return lambda a: a.get("actor", {}).get("process", {}).get("pid") == pid


def test_a_rule_switched_off_stays_off_after_a_restart(tmp_path: Path) -> None:
    (tmp_path / "one").mkdir()
    first = start_agent(tmp_path / "one", alerts=True)
    state = first.state_dir
    assert state is not None
    try:
        r = call(first.api_url, "POST", f"/api/v1/rules/{SHADOW_RULE}/disable", first.admin_token)
        assert r.status == 200 and r.body["enabled"] is False
    finally:
        assert stop_agent(first) == 0
    (tmp_path / "two").mkdir()
    second = start_agent(tmp_path / "two", alerts=True, extra=["--state-dir", str(state)])
    try:
        token = (state / "admin-token").read_text().strip()
        rules = call(second.api_url, "GET", "/api/v1/rules", token).body["items"]
        (rule,) = [x for x in rules if x["id"] == SHADOW_RULE]
        assert rule["enabled"] is False
        assert all(x["enabled"] for x in rules if x["id"] != SHADOW_RULE)
        assert "rules switched off through the API: " + SHADOW_RULE in second.log.read_text()
        pid = read_shadow()
        wait_until(lambda: second.find_all(by_pid(pid)), "the file event of the shadow read")
        second.assert_no_alert(SHADOW_RULE, pred=by_alert_pid(pid), settle=2.0)
        r = call(second.api_url, "POST", f"/api/v1/rules/{SHADOW_RULE}/enable", token)
        assert r.status == 200 and r.body["enabled"] is True
        pid2 = read_shadow()
        second.wait_alert(SHADOW_RULE, pred=by_alert_pid(pid2))
    finally:
        assert stop_agent(second) == 0
    assert SHADOW_RULE not in (state / "rules-state.json").read_text()


# -- policies -------------------------------------------------------------------------------------------------------


def test_operator_applies_lists_and_removes_an_audit_policy(env: Env) -> None:
    op = env.tokens["operator"]
    drop = env.tmp / "drop"
    drop.mkdir(exist_ok=True)
    text = ("policies:\n  - id: api-audit-drop\n    description: Audit what runs from the drop directory\n"
            "    mode: audit\n    severity: low\n    techniques: [T1204.002]\n"
            f"    exec:\n      deny:\n        prefixes: [{drop}/]\n")
    assert call(env.base, "POST", "/api/v1/enforcement/arm", env.admin).body == {"armed": True}
    r = call(env.base, "POST", "/api/v1/policies", op, {"name": "api-audit", "yaml": text})
    assert r.status == 200, r.body
    target = env.policy_dir / "api-audit.yaml"
    assert r.body == {"file": str(target), "policies": ["api-audit-drop"], "in_force": True}
    assert target.read_text() == text
    lst = call(env.base, "GET", "/api/v1/policies", env.tokens["viewer"]).body
    assert lst["enabled"] is True and lst["armed"] is True and lst["problems"] == []
    assert lst["directory"] == str(env.policy_dir)
    assert lst["items"] == [{"id": "api-audit-drop", "name": "api-audit", "file": str(target), "kind": "exec",
                             "mode": "audit", "description": "Audit what runs from the drop directory"}]
    # audit mode: the program runs, and the policy raises an alert
    exe = Path(shutil.copy("/usr/bin/true", drop / "payload"))
    pid, res = run_cmd([str(exe)])
    assert res.returncode == 0
    alert = wait_stored_alert(env.base, op, "policy:api-audit-drop", pid)
    assert alert["exe"] == str(exe)
    assert alert["obj"]["unmapped"]["alert"]["enforcement"]["mode"] == "audit"
    # an invalid file: 422 with every error located, nothing written
    bad = call(env.base, "POST", "/api/v1/policies", op, {"name": "api-bad", "yaml": BAD_YAML})
    assert bad.status == 422
    where = env.policy_dir / "api-bad.yaml"
    errors = bad.body["detail"].splitlines()
    assert len(errors) == 2, errors  # every error, each located in the file as it would be named
    assert errors[0].startswith(f"{where}:3:") and "mode" in errors[0]
    assert errors[1].startswith(f"{where}:6:") and "prefixes" in errors[1]
    assert not (env.policy_dir / "api-bad.yaml").exists()
    not_yaml = call(env.base, "POST", "/api/v1/policies", op, {"name": "api-bad", "yaml": "policies: [\n"})
    assert not_yaml.status == 422 and not_yaml.body["detail"].startswith(f"{where}:")
    # a name that is not a file stem is refused before anything is written
    assert call(env.base, "POST", "/api/v1/policies", op, {"name": "../evil", "yaml": text}).status == 422
    assert call(env.base, "DELETE", "/api/v1/policies/..%2Fevil", op).status in (404, 422)
    # remove
    r = call(env.base, "DELETE", "/api/v1/policies/api-audit", op)
    assert r.status == 200 and r.body == {"removed": str(target)}
    assert not target.exists()
    assert call(env.base, "GET", "/api/v1/policies", op).body["items"] == []
    assert call(env.base, "DELETE", "/api/v1/policies/api-audit", op).status == 404
    # the viewer and the analyst may do none of it
    for role in ("viewer", "analyst"):
        assert call(env.base, "POST", "/api/v1/policies", env.tokens[role],
                    {"name": "api-audit", "yaml": text}).status == 403
    assert not target.exists()


# -- transport safety -----------------------------------------------------------------------------------------------


def test_a_foreign_host_header_is_400(env: Env) -> None:
    port = env.base.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", f"127.0.0.1:{int(port) + 1}",
                 f"sentinel.attacker.test:{port}"):
        for path in ("/api/v1/whoami", "/", "/healthz", "/metrics"):
            r = call(env.base, "GET", path, env.admin, headers={"Host": host})
            assert r.status == 400, (host, path, r.status)
            assert r.body == {"detail": "Host header not allowed"}
            assert r.headers["content-security-policy"]
    # a refused change is refused before it is made (and not audited as done)
    r = call(env.base, "POST", "/api/v1/enforcement/disarm", env.admin, headers={"Host": "evil.example"})
    assert r.status == 400
    assert call(env.base, "GET", "/api/v1/policies", env.admin).body["armed"] is not False
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "localhost", "127.0.0.1"):
        assert call(env.base, "GET", "/api/v1/whoami", env.admin, headers={"Host": host}).status == 200, host


def _csp(value: str) -> dict[str, str]:
    out = {}
    for part in value.split(";"):
        name, _, rest = part.strip().partition(" ")
        out[name] = rest.strip()
    return out


@pytest.mark.parametrize("path,token", [("/api/v1/whoami", True), ("/api/v1/alerts", True), ("/", False),
                                        ("/static/app.js", False), ("/static/app.css", False),
                                        ("/healthz", False), ("/metrics", True), ("/api/v1/nothing-here", True),
                                        ("/api/v1/whoami", False)])
def test_security_headers_on_every_answer(env: Env, path: str, token: bool) -> None:
    r = call(env.base, "GET", path, env.admin if token else None)
    csp = _csp(r.headers["content-security-policy"])
    for name, value in CSP_DIRECTIVES.items():
        assert csp.get(name) == value, (path, name, csp)
    assert not any("unsafe" in v or "*" in v or "http" in v for v in csp.values()), csp
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["x-frame-options"] == "DENY"
    assert "server" not in r.headers
    if path.startswith("/api/"):
        assert r.headers["cache-control"] == "no-store", (path, r.headers)


def test_a_non_loopback_listen_address_needs_tls(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "run", "--api-listen", "0.0.0.0:0",
                        "--state-dir", str(tmp_path / "state")], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert "api.listen" in r.stderr and "0.0.0.0:0" in r.stderr and "TLS" in r.stderr
    assert "api.tls_cert" in r.stderr
    assert not (tmp_path / "state" / "auth.db").exists()
    # a certificate without its key
    cfg = tmp_path / "half.yaml"
    cfg.write_text(f"api:\n  tls_cert: {tmp_path / 'cert.pem'}\n")
    r = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "run", "--config", str(cfg), "--api-listen",
                        "0.0.0.0:0", "--state-dir", str(tmp_path / "state")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "api.tls_cert" in r.stderr and "api.tls_key" in r.stderr


def test_with_tls_the_agent_serves_https_on_a_non_loopback_address(tmp_path: Path) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run([openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], check=True, capture_output=True,
                   timeout=60)
    h = start_agent(tmp_path, f"api:\n  tls_cert: {cert}\n  tls_key: {key}\n",
                    extra=["--api-listen", "0.0.0.0:0", "--no-default-rules"])
    try:
        api = h.status()["api"]
        assert api["tls"] is True and api["listen"] == "0.0.0.0:0" and api["state"] == "listening"
        port = int(api["url"].rsplit(":", 1)[1])
        assert api["url"] == f"https://0.0.0.0:{port}"
        ctx = ssl.create_default_context(cafile=str(cert))
        base = f"https://127.0.0.1:{port}"
        r = call(base, "GET", "/api/v1/whoami", h.admin_token, context=ctx)
        assert r.status == 200 and r.body["role"] == "admin"
        assert call(base, "GET", "/api/v1/whoami", None, context=ctx).status == 401
        assert call(base, "GET", "/healthz", None, context=ctx).body == {"status": "ok", "problems": []}
        # the server's certificate is the one configured (an unknown CA fails verification)
        with pytest.raises(urllib.error.URLError) as exc:
            call(base, "GET", "/healthz", None, context=ssl.create_default_context())
        assert isinstance(exc.value.reason, ssl.SSLCertVerificationError)
        # no clear text on the TLS port
        with pytest.raises((urllib.error.URLError, ConnectionError, OSError)):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10).read()
    finally:
        assert stop_agent(h) == 0
