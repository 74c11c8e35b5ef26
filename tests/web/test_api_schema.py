"""schemathesis against the OpenAPI document of a real agent: no request it generates, valid or not, gets a
server error, and every answer matches the schema and content type the document declares.

schemathesis runs as its own command (``schemathesis run``: coverage and fuzzing phases, bounded by
--max-examples and --max-time, fixed seed) with the admin token, and its JSON report is checked.
Enforcement is switched off by the kill switch (POST /api/v1/enforcement/disarm) before the run, so random
policies cannot harm the machine; the agent keeps its policies in a temporary directory and its enforcement
under a test pin root, removed at the end. Two operations are left out of the generated run: the live stream
(it runs for up to a day) and arming enforcement again; both are tested in test_api_roles.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_fixtures import call, enforce_config, pin_root_for, uninstall_pins

from conftest import AgentHandle, start_agent, stop_agent

pytestmark = pytest.mark.kernel

MAX_EXAMPLES = 10
MAX_TIME_S = 110  # the coverage phase alone makes ~2000 requests; the run stops at this bound
EXCLUDED = ("GET /api/v1/stream", "POST /api/v1/enforcement/arm")
SCHEMATHESIS = str(Path(sys.executable).with_name("schemathesis"))


@dataclass
class Live:
    agent: AgentHandle
    base: str
    token: str
    policy_dir: Path
    pin_root: str
    operations: list[str]


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp = tmp_path_factory.mktemp("api-schema")
    pin = pin_root_for("schema")
    pdir = tmp / "policies"
    pdir.mkdir()
    h = start_agent(tmp, enforce_config(pdir, pin), alerts=True)
    try:
        r = call(h.api_url, "POST", "/api/v1/enforcement/disarm", h.admin_token)
        assert r.status == 200 and r.body == {"armed": False}, r
        doc = call(h.api_url, "GET", "/api/v1/openapi.json").body
        ops = [f"{m.upper()} {p}" for p, item in doc["paths"].items() for m in item]
        yield Live(h, h.api_url, h.admin_token, pdir, pin, ops)
        # still disarmed after the run (nothing generated could arm it), and the agent still serves
        assert call(h.api_url, "GET", "/api/v1/policies", h.admin_token).body["armed"] is False
        assert call(h.api_url, "GET", "/healthz").status == 200
    finally:
        rc = stop_agent(h)
        uninstall_pins(pin)
        assert rc == 0, h.log.read_text()[-3000:]


def test_no_server_error_and_answers_match_the_schema(live: Live, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    cmd = [SCHEMATHESIS, "run", live.base + "/api/v1/openapi.json",
           "--header", f"Authorization: Bearer {live.token}",
           "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
           "--exclude-path", "/api/v1/stream", "--exclude-path", "/api/v1/enforcement/arm",
           "--phases", "examples,coverage,fuzzing", "--max-examples", str(MAX_EXAMPLES),
           "--max-time", str(MAX_TIME_S), "--request-timeout", "60", "--seed", "1", "--workers", "1",
           "--generation-database", "none", "--no-color", "--warnings", "off",
           "--report", "json", "--report-json-path", str(report)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=MAX_TIME_S + 120, cwd=tmp_path)
    out = r.stdout[-20000:] + r.stderr[-5000:]
    assert r.returncode == 0, out
    data = json.loads(report.read_text())
    assert data["exit_code"] == 0 and data["failures"] == [] and data["errors"] == [], out
    assert data["stop_reason"] in ("completed", "max_time"), data["stop_reason"]
    ops = data["operations"]
    assert ops["total"] == len(live.operations) and ops["selected"] == ops["tested"] == ops["total"] - 2, ops
    assert ops["errored"] == 0 and ops["skipped"] == 0
    assert data["phases"]["coverage"]["status"] == "success" and data["phases"]["fuzzing"]["status"] == "success"
    cases = data["test_cases"]
    assert cases["with_failures"] == 0 and cases["errored"] == 0
    assert cases["generated"] >= 10 * ops["tested"], cases
    # every operation was reached with requests that passed validation (not only ones refused with 422);
    # those naming an alert, rule or policy by id found none (404: "unreachable"): the ids schemathesis makes
    # up do not exist. Real ids are worked in test_api_roles.py.
    rates = data["valid_rates"]
    assert set(rates) == {op for op in live.operations if op not in EXCLUDED}
    for op, r in rates.items():
        got = {k: sum(ph.get(k, 0) for ph in r.values()) for k in ("accepted", "unreachable", "rejected")}
        assert sum(got.values()) >= 1, (op, r)
        if op == "POST /api/v1/policies":
            assert got["rejected"] > 0, r  # random YAML is no policy file: 422, located errors
        elif op.startswith(("POST /api/v1/alerts/", "GET /api/v1/alerts/", "DELETE ")):
            assert got["unreachable"] > 0, (op, r)
        else:
            assert got["accepted"] > 0, (op, r)
    # the run went through the agent: its changes are in the audit log, enforcement is still off
    audit: list[dict[str, Any]] = []
    before = ""
    for _ in range(100):  # every page of the log: the run writes more than one page of entries
        page = call(live.base, "GET", f"/api/v1/audit?limit=1000{before}", live.token).body
        audit += page["items"]
        if page["next_before_id"] is None:
            break
        before = f"&before_id={page['next_before_id']}"
    assert len(audit) >= 50 and {a["who"] for a in audit} <= {"admin", "-"}
    # schemathesis also sends requests without the token: refused before anything else
    anonymous = {(a["action"], a["outcome"]) for a in audit if a["who"] == "-"}
    # (or an HTTP method no route has: 405, or a body the server cannot parse at all: 400)
    assert {o for _, o in anonymous} <= {"unauthenticated", "failed (405)", "failed (400)"}, anonymous
    assert ("POST /api/v1/policies", "unauthenticated") in anonymous
    assert {a["outcome"] for a in audit} >= {"ok", "failed (422)"}
    assert not [a for a in audit if a["outcome"].startswith("failed (5")], audit
    assert call(live.base, "GET", "/api/v1/policies", live.token).body["armed"] is False


def test_the_operations_with_a_body_get_a_run_of_their_own(live: Live, tmp_path: Path) -> None:
    """Policy files and comments are the free-form inputs: more examples, only for them."""
    report = tmp_path / "report.json"
    cmd = [SCHEMATHESIS, "run", live.base + "/api/v1/openapi.json",
           "--header", f"Authorization: Bearer {live.token}",
           "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
           "--include-name-regex", r"^POST /api/v1/(policies|alerts/\{uid\}/comment)$",
           "--phases", "fuzzing", "--max-examples", "40", "--max-time", "40", "--request-timeout", "60",
           "--seed", "2", "--workers", "1", "--generation-database", "none", "--no-color", "--warnings", "off",
           "--report", "json", "--report-json-path", str(report)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=160, cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-20000:] + r.stderr[-5000:]
    data = json.loads(report.read_text())
    assert data["exit_code"] == 0 and data["failures"] == [] and data["errors"] == []
    assert data["operations"]["tested"] == 2, data["operations"]
    assert data["test_cases"]["generated"] >= 40, data["test_cases"]
    assert not list(live.policy_dir.glob("*.yaml")) or all(
        p.stat().st_size > 0 for p in live.policy_dir.glob("*.yaml"))
    assert call(live.base, "GET", "/api/v1/policies", live.token).body["armed"] is False
