"""/metrics scraped by a real Prometheus server (the Debian package) from a real agent: the series of
docs/api.md are there with the labels they promise, the target is up, and the values move with activity.

Prometheus runs as a subprocess on a free loopback port with its TSDB in the test's directory, scraping every
second with a viewer token (credentials_file); it is stopped by its pid at the end.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from api_fixtures import SHADOW_RULE, call, make_token, read_shadow, wait_stored_alert, wait_until

from conftest import AgentHandle, run_cmd, start_agent, stop_agent

pytestmark = pytest.mark.kernel

PROMETHEUS = "/usr/bin/prometheus"


@dataclass
class Prom:
    url: str
    agent: AgentHandle
    viewer: str

    def query(self, q: str) -> list[dict[str, Any]]:
        """The instant vector of PromQL ``q`` (each ``{"metric": {...}, "value": [t, "v"]}``)."""
        r = call(self.url, "GET", "/api/v1/query?" + urllib.parse.urlencode({"query": q}))
        assert r.status == 200 and r.body["status"] == "success", r.body
        assert r.body["data"]["resultType"] == "vector"
        result: list[dict[str, Any]] = r.body["data"]["result"]
        return result

    def wait(self, q: str, what: str, timeout: float = 20.0) -> list[dict[str, Any]]:
        return wait_until(lambda: self.query(q), f"{what} ({q}) in Prometheus", timeout, 0.25)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Prom]:
    if not Path(PROMETHEUS).exists():
        pytest.skip("the prometheus package is not installed")
    tmp = tmp_path_factory.mktemp("api-metrics")
    h = start_agent(tmp, alerts=True)
    proc: subprocess.Popen[bytes] | None = None
    pdir = tmp / "prometheus"
    try:
        assert h.state_dir is not None
        viewer = make_token(h.state_dir, "prometheus", "viewer")
        pdir.mkdir()
        cred = pdir / "token"
        cred.write_text(viewer + "\n")
        cred.chmod(0o600)
        target = h.api_url.split("://", 1)[1]
        (pdir / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{
                "job_name": "sentinel-edge",
                "metrics_path": "/metrics",
                "authorization": {"type": "Bearer", "credentials_file": str(cred)},
                "static_configs": [{"targets": [target]}],
            }],
        }))
        port = _free_port()
        log = (pdir / "prometheus.log").open("wb")
        proc = subprocess.Popen([PROMETHEUS, f"--config.file={pdir / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={pdir / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                 "--storage.tsdb.retention.time=1h", "--log.level=warn"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(pdir))
        url = f"http://127.0.0.1:{port}"

        def ready() -> bool:
            assert proc is not None and proc.poll() is None, (pdir / "prometheus.log").read_text()[-3000:]
            try:
                return call(url, "GET", "/-/ready", timeout=2).status == 200
            except OSError:
                return False

        wait_until(ready, "prometheus ready", 30, 0.2)
        yield Prom(url, h, viewer)
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        rc = stop_agent(h)
        shutil.rmtree(pdir, ignore_errors=True)
        assert rc == 0, h.log.read_text()[-3000:]


def _value(sample: dict[str, Any]) -> float:
    return float(sample["value"][1])


def test_prometheus_scrapes_the_agent_and_the_target_is_up(prom: Prom) -> None:
    def up() -> list[dict[str, Any]]:
        r = call(prom.url, "GET", "/api/v1/targets?state=active")
        return [t for t in r.body["data"]["activeTargets"] if t["health"] == "up"]

    (target,) = wait_until(up, "the agent's target up in Prometheus", 20)
    assert target["labels"]["job"] == "sentinel-edge" and target["lastError"] == ""
    assert target["scrapeUrl"] == prom.agent.api_url + "/metrics"
    (s,) = prom.wait('up{job="sentinel-edge"} == 1', "the scrape")
    (s,) = prom.wait("sentinel_edge_up", "sentinel_edge_up")
    assert _value(s) == 1.0


def test_the_documented_series_are_there(prom: Prom) -> None:
    # a real alert, so that alerts_total has a sample
    pid = read_shadow()
    wait_stored_alert(prom.agent.api_url, prom.viewer, SHADOW_RULE, pid)
    run_cmd(["ls", "/"])

    ev = prom.wait("sentinel_edge_events_total", "events by class and kind")
    by = {(x["metric"]["class"], x["metric"]["kind"]): _value(x) for x in ev}
    assert by[("Process Activity", "exec")] >= 1 and by[("File System Activity", "file")] >= 1, by
    sensors = {x["metric"]["sensor"] for x in prom.wait("sentinel_edge_kernel_dropped_total", "kernel drops")}
    assert {"process", "file"} <= sensors
    assert {x["metric"]["sensor"] for x in prom.wait("sentinel_edge_kernel_events_total", "kernel events")} \
        == sensors
    reasons = {x["metric"]["reason"] for x in prom.wait("sentinel_edge_user_dropped_total", "user drops")}
    assert reasons == {"wire", "output", "queue"}
    (qd,) = prom.wait("sentinel_edge_queue_depth", "queue depth")
    assert _value(qd) >= 0
    al = prom.wait(f'sentinel_edge_alerts_total{{rule="{SHADOW_RULE}"}}', "alerts by severity and rule")
    assert len(al) == 1 and al[0]["metric"]["severity"] in ("high", "critical") and _value(al[0]) >= 1
    buckets = prom.wait("sentinel_edge_rule_eval_seconds_bucket", "rule evaluation histogram")
    les = {x["metric"]["le"] for x in buckets}
    assert "+Inf" in les and len(les) >= 5
    (count,) = prom.wait("sentinel_edge_rule_eval_seconds_count", "rule evaluation count")
    (inf,) = [x for x in buckets if x["metric"]["le"] == "+Inf"]
    assert _value(inf) == _value(count) > 0
    hw = prom.wait('sentinel_edge_history_write_seconds_bucket{le="+Inf"}', "history write latency")
    assert {x["metric"]["what"] for x in hw} == {"events", "alerts"}
    assert all(_value(x) >= 1 for x in hw), hw  # an event batch and the alert were committed
    (hb,) = prom.wait("sentinel_edge_history_bytes", "history size")
    assert _value(hb) > 4096
    hd = prom.wait("sentinel_edge_history_dropped_total", "history drops")
    assert {x["metric"]["reason"] for x in hd} >= {"queue_full", "disk"}
    pa = prom.wait("sentinel_edge_program_attached", "program attach states")
    states = {(x["metric"]["program"], x["metric"]["state"]): _value(x) for x in pa}
    assert {s for _, s in states} == {"attached", "skipped", "failed"}
    programs = {p for p, _ in states}
    for p in programs:  # exactly one state per program
        assert sum(states[(p, s)] for s in ("attached", "skipped", "failed")) == 1.0, p
    attached = {p for p in programs if states[(p, "attached")] == 1.0}
    status = prom.agent.status()
    assert attached == {p["name"] for p in status["programs"] if p["state"] == "attached"}
    wr = prom.wait("sentinel_edge_worker_restarts_total", "worker restarts")
    assert {x["metric"]["worker"] for x in wr} >= {"history-writer", "api-server"}
    assert all(_value(x) == 0 for x in wr)
    # every sample carries the scrape's job and instance
    assert all(x["metric"]["job"] == "sentinel-edge" for x in ev + al + pa)


def test_counters_move_with_activity(prom: Prom) -> None:
    q = 'sum(sentinel_edge_events_total{kind="exec"})'
    (before,) = prom.wait(q, "exec events")
    for _ in range(20):
        run_cmd(["true"])

    def grown() -> bool:
        res = prom.query(q)
        return bool(res) and _value(res[0]) >= _value(before) + 20

    wait_until(grown, "20 more exec events in Prometheus", 20, 0.25)
    (hw,) = prom.wait('sentinel_edge_history_write_seconds_count{what="events"}', "event commits")
    assert _value(hw) > 0


def test_metrics_need_a_token_with_read(prom: Prom) -> None:
    base = prom.agent.api_url
    r = call(base, "GET", "/metrics")
    assert r.status == 401 and r.headers.get("www-authenticate") == "Bearer"
    assert call(base, "GET", "/metrics", "se_" + "x" * 43).status == 401
    r = call(base, "GET", "/metrics", prom.viewer)
    assert r.status == 200 and r.headers["content-type"].startswith("text/plain; version=0.0.4")
    lines = r.body.splitlines()
    assert "# TYPE sentinel_edge_events_total counter" in lines
    assert "# TYPE sentinel_edge_rule_eval_seconds histogram" in lines
    assert "# TYPE sentinel_edge_queue_depth gauge" in lines
    assert "sentinel_edge_up 1.0" in lines
