"""Shared helpers of the REST API tests (test_api_*.py): an HTTP client that shows headers and sends any
token (or none), the token CLI, test pin roots, bounded waits and a real alert trigger."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conftest import run_cmd, wait_until

ROLES = ("viewer", "analyst", "operator", "admin")
SHADOW_RULE = "se.credential_access.shadow_file_read"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: Any


def call(base: str, method: str, path: str, token: str | None = None, body: Any = None,
         headers: dict[str, str] | None = None, timeout: float = 30.0,
         context: ssl.SSLContext | None = None, raw: bytes | None = None) -> Reply:
    """One HTTP request: (status, lower-case headers, JSON body or text). No token: no Authorization header.
    ``raw``: the request body as is (sent as JSON)."""
    data = json.dumps(body).encode() if body is not None else raw
    req = urllib.request.Request(base + path, data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    for k, v in (headers or {}).items():
        req.add_header(k, v)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
            status, raw, hdrs = resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        status, raw, hdrs = exc.code, exc.read(), exc.headers
    text = raw.decode("utf-8", "replace")
    try:
        parsed: Any = json.loads(text) if text else None
    except ValueError:
        parsed = text
    return Reply(status, {k.lower(): v for k, v in hdrs.items()}, parsed)


def cli(*args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``sentinel-edge ARGS`` as a subprocess."""
    return subprocess.run([sys.executable, "-m", "sentinel_edge.cli", *args], capture_output=True, text=True,
                          timeout=timeout)


def make_token(state_dir: Path, name: str, role: str) -> str:
    """A new API token made with ``sentinel-edge token create`` (printed once on stdout)."""
    r = cli("token", "create", "--name", name, "--role", role, "--state-dir", str(state_dir))
    assert r.returncode == 0, r.stderr
    token = r.stdout.strip()
    assert token.startswith("se_") and len(token) == 46, token
    return token




def pin_root_for(tag: str) -> str:
    """A pin root of this test process (never the default /sys/fs/bpf/sentinel-edge)."""
    return f"/sys/fs/bpf/sentinel-edge-test-{tag}-{os.getpid()}"



def uninstall_pins(pin_root: str) -> None:
    from sentinel_edge.enforce.kernel import EnforceKernel

    EnforceKernel(pin_root=pin_root).uninstall()
    assert not Path(pin_root).exists(), f"{pin_root} left behind"


def enforce_config(policy_dir: Path, pin_root: str, extra: str = "") -> str:
    """An agent config whose policies live in ``policy_dir`` and whose enforcement is pinned at ``pin_root``."""
    return f"enforce:\n  policies: [{policy_dir}]\n  pin_root: {pin_root}\n  fanotify: false\n{extra}"


def read_shadow() -> int:
    """Read /etc/shadow with cat (a real credential access: rule se.credential_access.shadow_file_read);
    returns the pid of the reader."""
    pid, _ = run_cmd(["cat", "/etc/shadow"])
    return pid


def stored_alerts(base: str, token: str, rule: str, pid: int) -> list[dict[str, Any]]:
    """The alerts of ``rule`` raised for ``pid`` that the history holds (GET /api/v1/alerts)."""
    r = call(base, "GET", f"/api/v1/alerts?rule={rule}&pid={pid}", token)
    assert r.status == 200, r
    items: list[dict[str, Any]] = r.body["items"]
    return items


def wait_stored_alert(base: str, token: str, rule: str, pid: int, timeout: float = 15.0) -> dict[str, Any]:
    found = wait_until(lambda: stored_alerts(base, token, rule, pid), f"alert {rule} for pid {pid} in the API",
                       timeout)
    assert len(found) == 1, found
    return found[0]
