"""The web console in a real headless Chromium against a real agent (issue 5).

One agent for the module (default rules plus two test rules that fire on markup in a command line or
a file name), its API on a free loopback port, the admin token it writes on first start. The browser
logs in, follows alerts raised by real actions to their detail (ancestry tree, ATT&CK technique,
triggering events), acknowledges and resolves them, watches the live stream, and is fed argv and file
names full of markup that must show up as text and never run. Screenshots go to
``$SENTINEL_EDGE_ARTIFACTS/console`` (default /tmp/sentinel-edge-artifacts/console).
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from console_helpers import (
    CSP,
    XSS_IMG,
    XSS_SCRIPT,
    Api,
    alert_row,
    artifacts_dir,
    chromium,
    console_page,
    login,
    shot,
)
from playwright.sync_api import Browser, Page, Route, expect

from conftest import AgentHandle, Obj, run_cmd, start_agent, stop_agent, wait_until

STATIC = Path(__file__).resolve().parents[2] / "src" / "sentinel_edge" / "web" / "static"
RULE_SHADOW = "se.credential_access.shadow_file_read"
RULE_ARGV = "test.console.xss_argv"
RULE_PATH = "test.console.xss_path"
TEST_RULES = """\
- rule: test.console.xss_argv
  title: Console test - markup in a command line
  description: A command line carries HTML markup (web console XSS test).
  condition: event.kind = exec and proc.cmdline contains "__xss"
  severity: high
  attack:
    - {technique: T1059.004, tactic: execution}
  output: "markup in argv: {proc.cmdline} (pid={proc.pid})"

- rule: test.console.xss_path
  title: Console test - markup in a file name
  description: A file whose name carries HTML markup was opened (web console XSS test).
  condition: event.kind = file and event.op = open and file.path contains "__xss"
  severity: medium
  attack:
    - {technique: T1036, tactic: defense-evasion}
  output: "markup in path: {file.path} (by {proc.name})"
"""


@dataclass
class Console:
    handle: AgentHandle
    api: Api
    url: str
    token: str
    state_dir: Path


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Console]:
    if os.geteuid() != 0:
        pytest.skip("needs root")
    tmp = tmp_path_factory.mktemp("console")
    rules = tmp / "console-rules.yaml"
    rules.write_text(TEST_RULES)
    state = tmp / "state"
    handle = start_agent(tmp, extra=["--state-dir", str(state), "--api-listen", "127.0.0.1:0", "--rules", str(rules)],
                         alerts=True)
    try:
        url = wait_until(lambda: (handle.status().get("api") or {}).get("url"), "the agent's API url", timeout=20)
        token = (state / "admin-token").read_text().strip()
        yield Console(handle, Api(url, token), url, token, state)
    finally:
        rc = stop_agent(handle, read_output=False)
        shutil.copy(handle.log, artifacts_dir() / "agent.log")
        assert rc == 0, f"agent exited with {rc}:\n{handle.log.read_text()[-3000:]}"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path("/usr/bin/chromium").exists():
        pytest.skip("Debian chromium is not installed")
    with chromium() as b:
        yield b


def stored_alert(c: Console, uid: str, pred: Callable[[Obj], bool] = lambda d: True) -> Obj:
    """The alert's detail once the history writer has committed it (and ``pred`` holds: events are
    written in their own batches, possibly after the alert)."""
    def fetch() -> Obj | None:
        r = c.api.request("GET", f"/api/v1/alerts/{uid}")
        return r.body if r.status == 200 and pred(r.body) else None
    detail: Obj = wait_until(fetch, f"alert {uid} in the history", timeout=15)
    return detail


def no_script_ran(page: Page) -> None:
    assert page.evaluate("typeof window.__xss") == "undefined"
    # nothing from the API became an element: no <img>, and the only script is app.js
    assert page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.evaluate("Array.from(document.scripts).map(s => s.getAttribute('src'))") == ["/static/app.js"]
    assert page.evaluate("document.querySelectorAll('#app script, #app img, #app iframe, #app object').length") == 0


def texts(page: Page, testid: str) -> list[str]:
    return [t for t in page.get_by_test_id(testid).all_inner_texts()]


# -- static checks (no agent) ---------------------------------------------------------------------------


def test_console_sources_never_parse_api_strings_as_html() -> None:
    js = (STATIC / "app.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function",
                 "DOMParser", "createContextualFragment", ".style.cssText", "setHTMLUnsafe"):
        assert sink not in code, f"app.js uses {sink}"
    # timers only with functions, never with code strings
    assert not re.search(r"set(Timeout|Interval)\(\s*[\"'`]", code)
    html = (STATIC / "index.html").read_text()
    assert re.findall(r"<script\b[^>]*>", html) == ['<script src="/static/app.js" defer>']
    assert "</script>" in html and re.search(r"<script[^>]*>\s*</script>", html), "inline script code"
    assert "<style" not in html and "style=" not in html
    assert re.findall(r'<link rel="stylesheet"[^>]*>', html) == ['<link rel="stylesheet" href="/static/app.css">']
    assert not re.search(r"\bon[a-z]+=", html)


# -- the walk ---------------------------------------------------------------------------------------------


@pytest.mark.kernel
def test_walk_login_alert_detail_ancestry_ack(console: Console, browser: Browser) -> None:
    c = console
    with console_page(browser) as (page, watch):
        resp = page.goto(c.url + "/")
        assert resp is not None and resp.status == 200
        assert_csp(resp.headers["content-security-policy"])
        expect(page.get_by_test_id("login-form")).to_be_visible()
        shot(page, "01-login")

        # a wrong token is refused with a message; the right one shows who is logged in
        page.get_by_test_id("login-token").fill("se_not-a-token")
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("login-error")).to_have_text("Unknown or revoked token.")
        page.get_by_test_id("login-token").fill(c.token)
        page.get_by_test_id("login-submit").click()
        expect(page.get_by_test_id("whoami-name")).to_have_text("admin")
        expect(page.get_by_test_id("whoami-role")).to_have_text("admin")
        expect(page).to_have_url(re.compile(r"#/overview$"))
        assert page.evaluate("sessionStorage.getItem('sentinel-edge-token')") == c.token

        # a real action: pytest -> sh -> sh -> cat /etc/shadow
        m = c.handle.alert_mark()
        proc = subprocess.Popen(["sh", "-c", "echo $$; sh -c 'echo $$; cat /etc/shadow >/dev/null; true'; true"],
                                stdout=subprocess.PIPE, text=True)
        out, _ = proc.communicate(timeout=30)
        outer_pid, inner_pid = (int(x) for x in out.split())
        assert outer_pid == proc.pid
        alert = c.handle.wait_alert(
            RULE_SHADOW, m, lambda a: a["actor"]["process"].get("parent_process", {}).get("pid") == inner_pid)
        uid = alert["finding_info"]["uid"]
        cat_pid = alert["actor"]["process"]["pid"]
        detail = stored_alert(c, uid, lambda d: any(e["obj"].get("message") == "open /etc/shadow"
                                                    for e in d["events"]))
        assert detail["alert"]["status"] == "new"

        # the alerts list, filtered by rule, shows it
        page.goto(f"{c.url}/#/alerts?rule={RULE_SHADOW}")
        row = alert_row(page, uid)
        expect(row).to_be_visible()
        expect(row.get_by_test_id("severity")).to_have_text("High")
        expect(row.get_by_test_id("alert-status")).to_have_text("new")
        expect(row.get_by_test_id("alert-exe")).to_have_text(os.path.realpath(shutil.which("cat") or "cat"))
        expect(row.get_by_test_id("alert-pid")).to_have_text(f"[{cat_pid}]")
        expect(row.get_by_test_id("alert-message")).to_have_text(alert["message"])
        for r in page.get_by_test_id("alert-row").all():
            expect(r.get_by_test_id("alert-rule")).to_have_text(RULE_SHADOW)
        shot(page, "02-alerts")

        # its detail
        row.get_by_test_id("alert-link").click()
        expect(page).to_have_url(re.compile("#/alerts/" + re.escape(uid) + "$"))
        expect(page.get_by_test_id("detail-title")).to_have_text("Password hashes read by an untrusted program")
        expect(page.get_by_test_id("detail-severity")).to_have_text("High")
        expect(page.get_by_test_id("detail-status")).to_have_text("new")
        expect(page.get_by_test_id("detail-rule")).to_have_text(RULE_SHADOW)
        expect(page.get_by_test_id("detail-message")).to_have_text(alert["message"])
        assert "/etc/shadow read by cat" in alert["message"]

        # ATT&CK: id, name, tactic
        attack = page.get_by_test_id("attack")
        expect(attack).to_have_count(1)
        expect(attack.get_by_test_id("technique-id")).to_have_text("T1003.008")
        expect(attack.get_by_test_id("technique-name")).to_have_text(
            "OS Credential Dumping: /etc/passwd and /etc/shadow")
        expect(attack.get_by_test_id("tactic-id")).to_have_text("TA0006")
        expect(attack.get_by_test_id("tactic-name")).to_have_text("Credential Access")

        # the ancestry tree: oldest first, each node nested under its parent, ending pytest -> sh -> sh -> cat
        nodes = page.get_by_test_id("ancestry-node")
        expected_chain = [*reversed(detail["ancestry"]), detail["process"]]
        expect(nodes).to_have_count(len(expected_chain))
        pids = [int(p) for p in page.eval_on_selector_all('[data-testid="ancestry-node"]',
                                                          "ns => ns.map(n => n.dataset.pid)")]
        assert pids == [p["pid"] for p in expected_chain]
        assert pids[-4:] == [os.getpid(), outer_pid, inner_pid, cat_pid]
        assert pids.index(os.getpid()) == len(pids) - 4
        nested = page.eval_on_selector_all(
            '[data-testid="ancestry-node"]',
            "ns => ns.slice(1).map((n, i) => ns[i].parentElement.contains(n) && !n.parentElement.contains(ns[i]))")
        assert all(nested) and len(nested) == len(pids) - 1
        sh = os.path.realpath(shutil.which("sh") or "")
        cat = os.path.realpath(shutil.which("cat") or "")
        want = [
            (outer_pid, sh, "sh -c echo $$; sh -c 'echo $$; cat /etc/shadow >/dev/null; true'; true"),
            (inner_pid, sh, "sh -c echo $$; cat /etc/shadow >/dev/null; true"),
            (cat_pid, cat, "cat /etc/shadow"),
        ]
        for i, (pid, exe, cmd) in enumerate(want):
            node = nodes.nth(len(pids) - 3 + i)
            expect(node.get_by_test_id("node-pid")).to_have_text(str(pid))
            expect(node.get_by_test_id("node-exe")).to_have_text(exe)
            expect(node.get_by_test_id("node-cmd")).to_have_text(cmd)
            expect(node.get_by_test_id("node-execid")).to_have_text(expected_chain[len(pids) - 3 + i]["uid"])
            assert expected_chain[len(pids) - 3 + i]["uid"]
        current = nodes.last
        expect(current).to_have_attribute("data-current", "1")
        expect(current.get_by_test_id("node-user")).to_have_text("root")
        expect(current.get_by_test_id("node-execid")).to_have_text(alert["actor"]["process"]["uid"])
        expect(nodes.nth(len(pids) - 4).get_by_test_id("node-pid")).to_have_text(str(os.getpid()))

        # the triggering event and the process's own stored events
        ev = page.get_by_test_id("evidence-row")
        expect(ev).to_have_count(len(alert["evidences"]))
        expect(ev.first.get_by_test_id("evidence-pid")).to_have_text(str(cat_pid))
        expect(ev.first.get_by_test_id("evidence-summary")).to_have_text("open /etc/shadow")
        pev = page.get_by_test_id("process-event-row")
        assert detail["events"] and all(e["pid"] == cat_pid for e in detail["events"])
        expect(pev.filter(has_text="open /etc/shadow").first).to_be_visible()
        expect(page.get_by_test_id("change-row")).to_have_count(0)
        shot(page, "03-alert-detail")

        # acknowledge with a comment: the page shows the new status and the change; so does the API
        page.get_by_test_id("comment-input").fill("seen by the console test <b>bold?</b>")
        page.get_by_test_id("ack").click()
        expect(page.get_by_test_id("detail-status")).to_have_text("acknowledged")
        change = page.get_by_test_id("change-row")
        expect(change).to_have_count(1)
        expect(change).to_contain_text("admin")
        expect(change).to_contain_text("new → acknowledged")
        expect(change.get_by_test_id("change-comment")).to_have_text("seen by the console test <b>bold?</b>")
        expect(page.get_by_test_id("flash")).to_have_text("Alert acknowledged.")
        expect(page.get_by_test_id("ack")).to_have_count(0)
        got = c.api.get(f"/alerts/{uid}")
        assert got["alert"]["status"] == "acknowledged"
        assert [(ch["who"], ch["action"], ch["old_status"], ch["new_status"], ch["comment"]) for ch in got["changes"]] \
            == [("admin", "ack", "new", "acknowledged", "seen by the console test <b>bold?</b>")]
        shot(page, "04-alert-acknowledged")

        # resolve it from the list
        page.get_by_test_id("back-to-alerts").click()
        page.goto(f"{c.url}/#/alerts?rule={RULE_SHADOW}&status=acknowledged")
        row = alert_row(page, uid)
        expect(row.get_by_test_id("alert-status")).to_have_text("acknowledged")
        expect(row.get_by_test_id("ack")).to_have_count(0)
        row.get_by_test_id("resolve").click()
        expect(row.get_by_test_id("alert-status")).to_have_text("resolved")
        expect(row.get_by_test_id("resolve")).to_have_count(0)
        assert c.api.get(f"/alerts/{uid}")["alert"]["status"] == "resolved"

        # the other pages show this agent's data
        page.goto(f"{c.url}/#/overview")
        expect(page.get_by_test_id("chart-bar").first).to_be_attached()
        expect(page.get_by_test_id("top-rule-row").filter(has_text=RULE_SHADOW)).to_have_count(1)
        # other tests on this host raise alerts too: the count only has to be there and cover this one
        expect(page.get_by_test_id("card-alerts-value")).to_have_text(re.compile(r"^[1-9][0-9,]*$"))
        shot(page, "05-overview")

        page.goto(f"{c.url}/#/search?exec_id={alert['actor']['process']['uid']}")
        expect(page.get_by_test_id("search-row").filter(has_text="open /etc/shadow")).to_have_count(1)
        for r in page.get_by_test_id("search-row").all():
            expect(r).to_have_attribute("data-pid", str(cat_pid))
        shot(page, "06-search")

        # paging: "Older events" loads the next page (before_id = the last id shown), no gap, no repeat
        page.goto(f"{c.url}/#/search?kind=file")
        expect(page.get_by_test_id("search-row")).to_have_count(100)
        page.get_by_test_id("search-more").click()
        expect(page.get_by_test_id("search-row")).to_have_count(200)
        ids = [int(i) for i in page.eval_on_selector_all('[data-testid="search-row"]',
                                                         "rs => rs.map(r => r.dataset.id)")]
        assert ids == sorted(ids, reverse=True) and len(set(ids)) == 200
        first = c.api.get("/events?kind=file&limit=100")
        assert ids[100:] == [e["id"] for e in c.api.get(f"/events?kind=file&limit=100&before_id={ids[99]}")["items"]]
        assert first["items"][0]["id"] >= ids[0]

        st = c.api.get("/status")
        page.goto(f"{c.url}/#/health")
        expect(page.get_by_test_id("program-row")).to_have_count(len(st["programs"]))
        attached = sum(1 for p in st["programs"] if p["state"] == "attached")
        expect(page.get_by_test_id("card-programs-value")).to_have_text(f"{attached:,} / {len(st['programs']):,}")
        expect(page.get_by_test_id("sensor-row")).to_have_count(len(st["kernel"]))
        expect(page.get_by_test_id("worker-row")).to_have_count(len(st["workers"]))
        expect(page.get_by_test_id("health-status")).to_have_attribute("data-ok", "1" if st["health"]["ok"] else "0")
        shot(page, "07-health")

        # rules: disable and enable a rule with the buttons (admin may)
        page.goto(f"{c.url}/#/rules")
        rrow = page.locator(f'[data-testid="rule-row"][data-rule="{RULE_PATH}"]')
        expect(rrow.get_by_test_id("rule-enabled")).to_have_text("yes")
        expect(rrow.get_by_test_id("rule-attack")).to_have_text("T1036 Masquerading defense-evasion")
        rrow.get_by_test_id("rule-toggle").click()
        expect(rrow.get_by_test_id("rule-enabled")).to_have_text("no")
        assert {r["id"]: r["enabled"] for r in c.api.get("/rules")["items"]}[RULE_PATH] is False
        rrow.get_by_test_id("rule-toggle").click()
        expect(rrow.get_by_test_id("rule-enabled")).to_have_text("yes")
        assert {r["id"]: r["enabled"] for r in c.api.get("/rules")["items"]}[RULE_PATH] is True
        shot(page, "08-rules")

        pol = c.api.get("/policies")
        page.goto(f"{c.url}/#/policies")
        armed = "n/a" if pol["armed"] is None else "armed" if pol["armed"] else "disarmed"
        expect(page.get_by_test_id("card-policies-armed-value")).to_have_text(armed)
        expect(page.get_by_test_id("policy-row")).to_have_count(len(pol["items"]))
        shot(page, "09-policies")

        page.get_by_test_id("logout").click()
        expect(page.get_by_test_id("login-form")).to_be_visible()
        assert page.evaluate("sessionStorage.getItem('sentinel-edge-token')") is None
        assert watch.errors == [] and watch.dialogs == []
        assert watch.csp_violations() == []


@pytest.mark.kernel
def test_viewer_sees_no_change_buttons_and_a_refused_change_is_explained(console: Console, browser: Browser) -> None:
    c = console
    name = f"viewer-{secrets.token_hex(3)}"
    res = subprocess.run([sys.executable, "-m", "sentinel_edge.cli", "token", "create", "--name", name,
                          "--role", "viewer", "--state-dir", str(c.state_dir)],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    viewer = res.stdout.strip().splitlines()[0]
    m = c.handle.alert_mark()
    pid, _ = run_cmd(["cat", "/etc/shadow"])
    alert = c.handle.wait_alert(RULE_SHADOW, m, lambda a: a["actor"]["process"]["pid"] == pid)
    uid = alert["finding_info"]["uid"]
    stored_alert(c, uid)
    with console_page(browser) as (page, watch):
        login(page, c.url, viewer)
        expect(page.get_by_test_id("whoami-name")).to_have_text(name)
        expect(page.get_by_test_id("whoami-role")).to_have_text("viewer")
        page.goto(f"{c.url}/#/alerts?rule={RULE_SHADOW}")
        row = alert_row(page, uid)
        expect(row.get_by_test_id("alert-status")).to_have_text("new")
        expect(row.get_by_test_id("ack")).to_have_count(0)
        expect(row.get_by_test_id("resolve")).to_have_count(0)
        row.get_by_test_id("alert-link").click()
        expect(page.get_by_test_id("readonly-note")).to_have_text('The role "viewer" cannot change alerts.')
        expect(page.get_by_test_id("comment-input")).to_have_count(0)
        expect(page.get_by_test_id("ack")).to_have_count(0)
        page.goto(f"{c.url}/#/rules")
        expect(page.get_by_test_id("rule-row").first).to_be_visible()
        expect(page.get_by_test_id("rule-toggle")).to_have_count(0)
        expect(page.get_by_test_id("rules-reload")).to_have_count(0)
        page.goto(f"{c.url}/#/policies")
        expect(page.get_by_test_id("card-policies-armed")).to_be_visible()
        expect(page.get_by_test_id("arm")).to_have_count(0)
        expect(page.get_by_test_id("disarm")).to_have_count(0)
        expect(page.get_by_test_id("policy-apply")).to_have_count(0)
        shot(page, "10-viewer")
        assert watch.errors == [] and watch.csp_violations() == []

    # A console that believes it may (whoami rewritten in flight to claim alerts:write) shows the
    # buttons; the server still refuses, and the page says why instead of failing silently.
    with console_page(browser) as (page, watch):
        def claim_more(route: Route) -> None:
            real = route.fetch()
            me = real.json()
            me["permissions"] = [*me["permissions"], "alerts:write", "rules:write"]
            route.fulfill(response=real, json=me)

        page.route("**/api/v1/whoami", claim_more)
        login(page, c.url, viewer)
        page.goto(f"{c.url}/#/alerts/{uid}")
        page.get_by_test_id("ack").click()
        expect(page.get_by_test_id("error")).to_have_text(
            'Not allowed (403): the role "viewer" may not do this. role viewer lacks the alerts:write permission')
        expect(page.get_by_test_id("detail-status")).to_have_text("new")
        assert c.api.get(f"/alerts/{uid}")["alert"]["status"] == "new"
        page.goto(f"{c.url}/#/rules")
        page.locator(f'[data-testid="rule-row"][data-rule="{RULE_PATH}"]').get_by_test_id("rule-toggle").click()
        expect(page.get_by_test_id("error")).to_contain_text("Not allowed (403)")
        assert {r["id"]: r["enabled"] for r in c.api.get("/rules")["items"]}[RULE_PATH] is True
        shot(page, "11-viewer-refused")
        # both refusals are in the audit log with who tried
        audit = c.api.get("/audit?limit=50")["items"]
        refused = [(a["who"], a["outcome"]) for a in audit if a["who"] == name]
        assert refused.count((name, "refused")) == 2, audit[:5]
        assert watch.errors == []


# -- markup in argv and file names ------------------------------------------------------------------------


@pytest.mark.kernel
def test_markup_in_argv_and_file_names_is_shown_as_text_and_never_runs(console: Console, browser: Browser) -> None:
    c = console
    base = Path(tempfile.mkdtemp(prefix="se-console-xss-"))
    try:
        # a file named <img ...> and one whose path ends in <script>...</script> (the "/" makes a directory)
        img_path = base / XSS_IMG
        script_dir = base / XSS_SCRIPT.rsplit("/", 1)[0]
        script_dir.mkdir()
        script_path = script_dir / XSS_SCRIPT.rsplit("/", 1)[1]
        assert str(script_path).endswith(XSS_SCRIPT)
        m = c.handle.alert_mark()
        echo_pid, _ = run_cmd(["/bin/echo", XSS_IMG, XSS_SCRIPT])
        touch_img, _ = run_cmd(["touch", str(img_path)])
        touch_script, _ = run_cmd(["touch", str(script_path)])
        argv_alert = c.handle.wait_alert(RULE_ARGV, m, lambda a: a["actor"]["process"]["pid"] == echo_pid)
        path_alerts = {pid: c.handle.wait_alert(RULE_PATH, m, lambda a, p=pid: a["actor"]["process"]["pid"] == p)
                       for pid in (touch_img, touch_script)}
        argv_uid = argv_alert["finding_info"]["uid"]
        stored_alert(c, argv_uid)
        for a in path_alerts.values():
            stored_alert(c, a["finding_info"]["uid"])
        assert XSS_IMG in argv_alert["message"] and XSS_SCRIPT in argv_alert["message"]

        with console_page(browser) as (page, watch):
            resp = page.goto(c.url + "/")
            assert resp is not None
            assert resp.headers["content-security-policy"] == api_csp(c)
            assert resp.headers["x-content-type-options"] == "nosniff"
            login(page, c.url, c.token)

            # the list
            page.goto(f"{c.url}/#/alerts?rule={RULE_ARGV}")
            row = alert_row(page, argv_uid)
            expect(row.get_by_test_id("alert-message")).to_have_text(argv_alert["message"])
            page.goto(f"{c.url}/#/alerts?rule={RULE_PATH}")
            prow = alert_row(page, path_alerts[touch_script]["finding_info"]["uid"])
            expect(prow.get_by_test_id("alert-message")).to_contain_text(str(script_path))
            irow = alert_row(page, path_alerts[touch_img]["finding_info"]["uid"])
            expect(irow.get_by_test_id("alert-message")).to_contain_text(str(img_path))
            no_script_ran(page)
            shot(page, "20-xss-alerts")

            # the detail: message, ancestry command line, evidence, all as literal text
            page.goto(f"{c.url}/#/alerts/{argv_uid}")
            expect(page.get_by_test_id("detail-message")).to_have_text(argv_alert["message"])
            cur = page.get_by_test_id("ancestry-node").last
            expect(cur.get_by_test_id("node-cmd")).to_have_text(f"/bin/echo {XSS_IMG} {XSS_SCRIPT}")
            expect(cur.get_by_test_id("node-pid")).to_have_text(str(echo_pid))
            no_script_ran(page)
            shot(page, "21-xss-detail-argv")
            page.goto(f"{c.url}/#/alerts/{path_alerts[touch_script]['finding_info']['uid']}")
            expect(page.get_by_test_id("detail-message")).to_have_text(path_alerts[touch_script]["message"])
            expect(page.get_by_test_id("evidence-summary").first).to_contain_text(str(script_path))
            expect(page.get_by_test_id("ancestry-node").last.get_by_test_id("node-cmd")).to_have_text(
                f"touch {script_path}")
            no_script_ran(page)
            shot(page, "22-xss-detail-path")

            # the live page: a new process with the same markup streams in as text
            page.goto(f"{c.url}/#/live?text=__xss")
            expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "live")
            live_pid, _ = run_cmd(["/bin/echo", "live", XSS_IMG, XSS_SCRIPT])
            live_row = page.locator(f'[data-testid="live-row"][data-kind="event"][data-pid="{live_pid}"]').filter(
                has_text=f"/bin/echo live {XSS_IMG} {XSS_SCRIPT}")
            expect(live_row.first).to_be_visible()
            alert_live = page.locator('[data-testid="live-row"][data-kind="alert"]').filter(
                has_text=f"markup in argv: /bin/echo live {XSS_IMG} {XSS_SCRIPT}")
            expect(alert_live.first).to_be_visible()
            no_script_ran(page)
            shot(page, "23-xss-live")

            # history search
            page.goto(f"{c.url}/#/search?text=__xss&pid={touch_script}")
            expect(page.get_by_test_id("search-summary").filter(has_text=str(script_path)).first).to_be_visible()
            page.goto(f"{c.url}/#/search?text=__xss&kind=exec")
            expect(page.get_by_test_id("search-summary").filter(has_text=f"/bin/echo {XSS_IMG} {XSS_SCRIPT}").first
                   ).to_be_visible()
            no_script_ran(page)
            shot(page, "24-xss-search")

            assert watch.dialogs == [] and watch.errors == []
            assert watch.csp_violations() == [], watch.csp_violations()

            # the CSP is the second line of defence: markup injected as HTML on purpose is blocked by it
            page.evaluate("""() => { const d = document.createElement('div');
                d.innerHTML = '<img src="data:," onerror="window.__csp_probe=1">';
                document.body.appendChild(d); }""")
            wait_until(lambda: watch.csp_violations(), "the CSP report of the injected handler", timeout=5)
            assert page.evaluate("typeof window.__csp_probe") == "undefined"
            assert page.evaluate("typeof window.__xss") == "undefined"
            assert all("inline event handler" in v or "script-src" in v for v in watch.csp_violations())
    finally:
        shutil.rmtree(base, ignore_errors=True)


def assert_csp(header: str) -> None:
    """Every directive of the documented policy is in ``header`` (the server may add more)."""
    for directive in CSP.split("; "):
        assert directive in header.split("; "), f"{directive!r} missing from {header!r}"


def api_csp(c: Console) -> str:
    """The CSP the server sends on every answer (the same on the page, static files and the API)."""
    seen = {c.api.request("GET", p).headers.get("content-security-policy", "")
            for p in ("/", "/static/app.js", "/static/app.css", "/api/v1/whoami", "/api/v1/alerts?limit=1")}
    assert len(seen) == 1, seen
    csp = seen.pop()
    assert_csp(csp)
    return csp


# -- live -------------------------------------------------------------------------------------------------


@pytest.mark.kernel
def test_live_page_streams_new_events_pauses_and_resumes(console: Console, browser: Browser) -> None:
    c = console
    marker = "selive" + secrets.token_hex(6)
    with console_page(browser) as (page, watch):
        login(page, c.url, c.token)
        page.goto(f"{c.url}/#/live?text={marker}&alerts=0")
        expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "live")
        pid, _ = run_cmd(["/bin/echo", marker, "one"])
        row = page.locator(f'[data-testid="live-row"][data-pid="{pid}"]').filter(has_text=f"{marker} one")
        expect(row.first).to_be_visible()
        # every row passed the agent-side filter (command line contains the marker)
        rows = page.get_by_test_id("live-row")
        assert rows.count() >= 1
        for i in range(rows.count()):
            assert rows.nth(i).get_attribute("data-pid") == str(pid)
        shot(page, "30-live")

        page.get_by_test_id("live-pause").click()
        expect(page.get_by_test_id("live-pause")).to_have_text("Resume")
        before = rows.count()
        pid2, _ = run_cmd(["/bin/echo", marker, "two"])
        expect(page.get_by_test_id("live-held")).to_contain_text("Paused: ")
        assert page.locator(f'[data-testid="live-row"][data-pid="{pid2}"]').count() == 0
        assert rows.count() == before
        page.get_by_test_id("live-pause").click()
        expect(page.locator(f'[data-testid="live-row"][data-pid="{pid2}"]').filter(has_text=f"{marker} two").first
               ).to_be_visible()
        expect(page.get_by_test_id("live-held")).to_have_text("")
        assert watch.errors == [] and watch.csp_violations() == []


@pytest.mark.kernel
def test_live_page_says_when_the_agent_samples_and_keeps_at_most_500_rows(console: Console, browser: Browser) -> None:
    c = console
    marker = "seburst" + secrets.token_hex(6)
    work = Path(tempfile.mkdtemp(prefix="se-console-burst-"))
    # ~2000 file creations a second for ~3.5 s, all matching the filter: over the agent's 200 events/s per
    # subscriber (api.stream_max_rate), so it samples and says so; 3.5 s x 200/s is over the page's 500 rows
    burst = """
import os, sys, time
d = sys.argv[1]
end = time.monotonic() + 3.5
i = 0
while time.monotonic() < end and i < 20000:
    os.close(os.open(os.path.join(d, "f%d" % i), os.O_CREAT | os.O_WRONLY, 0o600))
    i += 1
    if i % 100 == 0:
        time.sleep(0.05)
print(i)
"""
    try:
        with console_page(browser) as (page, watch):
            login(page, c.url, c.token)
            page.goto(f"{c.url}/#/live?text={marker}&alerts=0")
            expect(page.get_by_test_id("live-state")).to_have_attribute("data-state", "live")
            pid, res = run_cmd([sys.executable, "-c", burst, str(work), marker], timeout=60)
            created = int(res.stdout)
            assert created > 2000
            banner = page.get_by_test_id("live-sampled")
            expect(banner).to_be_visible()
            got = re.search(r"showing ([\d,]+) of ([\d,]+) events/s", banner.inner_text())
            assert got, banner.inner_text()
            shown, matched = (int(g.replace(",", "")) for g in got.groups())
            assert shown <= 200 < matched, (shown, matched)
            lost = re.search(r"; ([\d,]+) matching events not shown", banner.inner_text())
            assert lost and int(lost.group(1).replace(",", "")) >= matched - shown
            body = page.get_by_test_id("live-body")
            expect(body).to_have_attribute("data-rows", "500")
            assert page.get_by_test_id("live-row").count() == 500
            for r in page.get_by_test_id("live-row").all()[:50]:
                assert r.get_attribute("data-pid") == str(pid)
            expect(page.get_by_test_id("live-rate")).to_contain_text("received/s")
            shot(page, "31-live-sampled")
            assert watch.errors == [] and watch.csp_violations() == []
    finally:
        shutil.rmtree(work, ignore_errors=True)
