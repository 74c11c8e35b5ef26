"""Helpers for the web console tests: a small REST client, the real Chromium, artifacts."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright.sync_api import Browser, ConsoleMessage, Dialog, Page, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# docs/api.md, "Transport safety"
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

# Markup that would run script if the console ever parsed API strings as HTML.
XSS_IMG = "<img src=x onerror=window.__xss=1>"
XSS_SCRIPT = "<script>window.__xss=2</script>"



def artifacts_dir() -> Path:
    from conftest import ARTIFACTS  # test-artifacts/ in the checkout, beside the agent logs

    d = Path(os.environ.get("SENTINEL_EDGE_ARTIFACTS", str(ARTIFACTS))) / "console"
    d.mkdir(parents=True, exist_ok=True)
    return d




@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: Any


@dataclass
class Api:
    """The agent's REST API as a client sees it (urllib, Bearer token)."""

    url: str
    token: str

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> Response:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {token if token is not None else self.token}")
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                status, headers = r.status, {k.lower(): v for k, v in r.headers.items()}
        except urllib.error.HTTPError as e:
            raw = e.read()
            status, headers = e.code, {k.lower(): v for k, v in e.headers.items()}
        try:
            parsed: Any = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return Response(status, headers, parsed)

    def get(self, path: str) -> Any:
        r = self.request("GET", "/api/v1" + path)
        assert r.status == 200, f"GET {path}: {r.status} {r.body}"
        return r.body

    def post(self, path: str, body: Any = None) -> Any:
        r = self.request("POST", "/api/v1" + path, body)
        assert r.status == 200, f"POST {path}: {r.status} {r.body}"
        return r.body


@dataclass
class PageWatch:
    """What a page reported: console messages, uncaught errors, dialogs (dismissed)."""

    console: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        def on_console(m: ConsoleMessage) -> None:
            self.console.append(f"{m.type}: {m.text}")

        def on_dialog(d: Dialog) -> None:
            self.dialogs.append(f"{d.type}: {d.message}")
            d.dismiss()

        page.on("console", on_console)
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("dialog", on_dialog)

    def csp_violations(self) -> list[str]:
        return [m for m in self.console if "Content Security Policy" in m]


@contextmanager
def chromium() -> Iterator[Browser]:
    """Headless Debian Chromium driven by Playwright; closed on exit."""
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def console_page(browser: Browser) -> Iterator[tuple[Page, PageWatch]]:
    """A fresh browser context (empty sessionStorage) and page, watched."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        page = context.new_page()
        page.set_default_timeout(15000)
        watch = PageWatch()
        watch.attach(page)
        yield page, watch
    finally:
        context.close()


def login(page: Page, base: str, token: str) -> None:
    page.goto(base + "/")
    page.get_by_test_id("login-token").fill(token)
    page.get_by_test_id("login-submit").click()
    page.get_by_test_id("whoami-role").wait_for()


def shot(page: Page, name: str) -> Path:
    path = artifacts_dir() / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def alert_row(page: Page, uid: str) -> Any:
    return page.locator(f'[data-testid="alert-row"][data-uid="{uid}"]')
