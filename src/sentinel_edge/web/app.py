"""The REST API (FastAPI), the console's static files, /metrics and health: docs/api.md.

Security in one place:
- every /api/v1 route declares the permission it needs (``need(...)``), checked against the token's role;
- every non-GET request is written to the audit log with its outcome, refused ones included;
- the Host header must name this server (DNS rebinding), and every answer carries a strict CSP.
"""


import asyncio
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Body, Depends, FastAPI, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sentinel_edge import __version__
from sentinel_edge.errors import OutputError, PolicyError, SentinelEdgeError
from sentinel_edge.history.store import AlertChange, StoredEvent
from sentinel_edge.web import metrics
from sentinel_edge.web.auth import ALL_PERMISSIONS, AuditEntry, Principal, TokenInfo
from sentinel_edge.web.backend import Backend
from sentinel_edge.web.live import StreamFilter

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).with_name("static")
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
]
MAX_MS = 1 << 53  # epoch ms bounds accepted by the filters (JSON-safe integers)
POLICY_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
RULE_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$"
STREAM_POLL_S = 0.2
KEEPALIVE_S = 10.0


# ---------------------------------------------------------------- models (the OpenAPI document)


class EventPage(BaseModel):
    items: list[StoredEvent]
    next_before_id: int | None


class AlertOut(BaseModel):
    id: int
    uid: str
    time: int
    rule: str | None
    title: str | None
    severity_id: int | None
    status: str
    pid: int | None
    exec_id: str | None
    exe: str | None
    user: str | None
    obj: dict[str, Any]


class AlertPage(BaseModel):
    items: list[AlertOut]
    next_before_id: int | None


class AlertDetail(BaseModel):
    alert: AlertOut
    changes: list[AlertChange]
    process: dict[str, Any] | None
    ancestry: list[dict[str, Any]]
    events: list[StoredEvent]


class CommentIn(BaseModel):
    comment: str = Field(default="", max_length=4096)


class CommentRequired(BaseModel):
    comment: str = Field(min_length=1, max_length=4096)


class AttackOut(BaseModel):
    technique: str
    technique_name: str | None
    tactic: str


class RuleOut(BaseModel):
    id: str
    title: str
    description: str
    severity: str
    source: str
    kind: str
    enabled: bool
    tags: list[str]
    attack: list[AttackOut]
    file: str


class RuleList(BaseModel):
    items: list[RuleOut]


class ReloadOut(BaseModel):
    reloaded: bool
    rules: int
    error: str | None


class PolicyOut(BaseModel):
    id: str
    name: str
    file: str
    kind: str
    mode: str
    description: str


class PolicyList(BaseModel):
    enabled: bool
    armed: bool | None
    directory: str
    items: list[PolicyOut]
    problems: list[str]


class PolicyIn(BaseModel):
    name: str = Field(pattern=POLICY_NAME, description="file stem in the policy directory")
    yaml: str = Field(min_length=1, max_length=256 * 1024)


class PolicyApplied(BaseModel):
    file: str
    policies: list[str]
    in_force: bool


class PolicyRemoved(BaseModel):
    removed: str


class ArmedOut(BaseModel):
    armed: bool


class WhoAmI(BaseModel):
    name: str
    role: str
    permissions: list[str]


class AuditPage(BaseModel):
    items: list[AuditEntry]
    next_before_id: int | None


class TokenList(BaseModel):
    items: list[TokenInfo]


class Health(BaseModel):
    status: str
    problems: list[str] = []


# ---------------------------------------------------------------- ASGI middleware


class Guard:
    """Host check, security headers and the audit of every change (pure ASGI: streaming safe)."""

    def __init__(self, app: ASGIApp, backend: Backend, allowed_hosts: set[str]) -> None:
        self.app = app
        self.backend = backend
        self.allowed_hosts = allowed_hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        host = ""
        for k, v in scope.get("headers", []):
            if k == b"host":
                host = v.decode("latin-1").lower()
                break
        api = scope["path"].startswith("/api/")
        if host not in self.allowed_hosts:
            resp = JSONResponse({"detail": "Host header not allowed"}, status_code=400)
            await resp(scope, receive, self._secure(send, api))
            return
        status = [0]

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        scope.setdefault("state", {})
        try:
            await self.app(scope, receive, self._secure(send_wrapper, api))
        finally:
            if scope["method"] not in ("GET", "HEAD", "OPTIONS") and scope["path"].startswith("/api/"):
                self._audit(scope, status[0] or 500)

    def _secure(self, send: Send, api: bool) -> Send:
        """Security headers on every answer; ``Cache-Control: no-store`` on API answers (docs/api.md)."""
        async def wrapped(message: Message) -> None:
            if message["type"] == "http.response.start":
                drop = (b"server", b"cache-control") if api else (b"server",)
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() not in drop]
                headers.extend(SECURITY_HEADERS)
                if api:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)
        return wrapped

    def _audit(self, scope: Scope, status: int) -> None:
        auth = self.backend.auth
        if auth is None:
            return
        state = scope.get("state", {})
        who: Principal | None = state.get("principal")
        outcome = ("ok" if status < 400 else "unauthenticated" if status == 401 else "refused" if status == 403
                   else f"failed ({status})")
        try:
            auth.audit(who, f"{scope['method']} {_route_of(scope)}", scope["path"],
                       str(state.get("audit_detail", "")), outcome)
        except SentinelEdgeError as exc:
            log.error("audit log: %s", exc)


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else str(scope["path"])


# ---------------------------------------------------------------- the app


def create_app(backend: Backend) -> FastAPI:
    cfg = backend.cfg.api
    app = FastAPI(title="SentinelEdge", version=__version__, openapi_url="/api/v1/openapi.json",
                  docs_url=None, redoc_url=None,
                  description="Events, alerts, rules, policies and status of one SentinelEdge agent. "
                              "Authenticate with `Authorization: Bearer <token>` (docs/api.md).")
    bearer = HTTPBearer(auto_error=False)
    registry = metrics.registry_for(backend)

    def principal(request: Request,
                  creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> Principal:
        if backend.auth is None:
            raise HTTPException(503, "the token store is not available")
        if creds is None or creds.scheme.lower() != "bearer":
            raise HTTPException(401, "a bearer token is required", headers={"WWW-Authenticate": "Bearer"})
        who = backend.auth.verify(creds.credentials)
        if who is None:
            raise HTTPException(401, "unknown or revoked token", headers={"WWW-Authenticate": "Bearer"})
        request.state.principal = who
        return who

    def need(permission: str) -> Callable[..., Principal]:
        def check(who: Annotated[Principal, Depends(principal)]) -> Principal:
            if not who.can(permission):
                raise HTTPException(403, f"role {who.role} lacks the {permission} permission")
            return who
        check.__name__ = f"need_{permission.replace(':', '_')}"
        return check

    Read = Annotated[Principal, Depends(need("read"))]
    AlertsWrite = Annotated[Principal, Depends(need("alerts:write"))]
    RulesWrite = Annotated[Principal, Depends(need("rules:write"))]
    PoliciesWrite = Annotated[Principal, Depends(need("policies:write"))]
    Switch = Annotated[Principal, Depends(need("enforcement:switch"))]
    AuditRead = Annotated[Principal, Depends(need("audit:read"))]

    def store() -> Any:
        if backend.store is None:
            raise HTTPException(503, "the history store is off (history.enabled: false)")
        return backend.store

    async def blocking(fn: Callable[[], Any]) -> Any:
        """Run a store or pipeline call off the event loop; storage errors become 503."""
        try:
            return await asyncio.to_thread(fn)
        except OutputError as exc:
            raise HTTPException(503, str(exc)) from exc

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> Response:
        """A body that is not JSON fails before the dependencies run: without a valid token that is 401 (not a
        422 telling an anonymous client about the request), with one the audit names who sent it."""
        if getattr(request.state, "principal", None) is None and (
                request.url.path.startswith("/api/") or request.url.path == "/metrics"):
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            who = backend.auth.verify(token.strip()) if backend.auth is not None and scheme.lower() == "bearer" \
                else None
            if who is None:
                return JSONResponse({"detail": "a bearer token is required"}, status_code=401,
                                    headers={"WWW-Authenticate": "Bearer"})
            request.state.principal = who
        return await request_validation_exception_handler(request, exc)

    @app.exception_handler(SentinelEdgeError)
    async def on_error(_request: Request, exc: SentinelEdgeError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=503)

    # -- health, metrics, console --------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def healthz() -> JSONResponse:
        ok = backend.live()
        return JSONResponse({"status": "ok" if ok else "stalled", "problems": []}, status_code=200 if ok else 503)

    @app.get("/readyz", response_model=Health, tags=["health"], responses={503: {"model": Health}})
    def readyz() -> JSONResponse:
        ok, problems = backend.ready()
        return JSONResponse({"status": "ready" if ok else "not ready", "problems": problems},
                            status_code=200 if ok else 503)

    def metrics_auth(request: Request,
                     creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]) -> None:
        if cfg.metrics_auth:
            need("read")(principal(request, creds))

    @app.get("/metrics", tags=["health"], response_class=Response,
             responses={200: {"content": {metrics.CONTENT_TYPE: {}}}})
    def get_metrics(_: Annotated[None, Depends(metrics_auth)]) -> Response:
        return Response(metrics.render(registry), media_type=metrics.CONTENT_TYPE)

    @app.get("/", include_in_schema=False)
    def index() -> Response:
        page = STATIC_DIR / "index.html"
        if not page.exists():
            return Response("console files are missing from this build", status_code=404)
        return FileResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]) -> Response:
        f = STATIC_DIR / name
        if name.startswith(".") or not f.is_file():
            raise HTTPException(404, "no such file")
        return FileResponse(f, headers={"Cache-Control": "no-cache"})

    # -- identity -----------------------------------------------------------------------------

    @app.get("/api/v1/whoami", response_model=WhoAmI, tags=["auth"])
    def whoami(who: Read) -> WhoAmI:
        return WhoAmI(name=who.name, role=who.role, permissions=[p for p in ALL_PERMISSIONS if who.can(p)])

    # -- events and alerts ----------------------------------------------------------------------

    Ms = Annotated[int | None, Query(ge=0, le=MAX_MS)]
    Limit = Annotated[int, Query(ge=1, le=1000)]
    Text = Annotated[str | None, Query(min_length=1, max_length=256)]
    Name = Annotated[str | None, Query(min_length=1, max_length=4096)]
    Pid = Annotated[int | None, Query(ge=0, le=(1 << 32) - 1)]
    BeforeId = Annotated[int | None, Query(ge=1, le=MAX_MS)]

    @app.get("/api/v1/events", response_model=EventPage, tags=["events"])
    async def events(_: Read, since: Ms = None, until: Ms = None,
                     class_uid: Annotated[int | None, Query(ge=0, le=999_999)] = None,
                     kind: Annotated[str | None, Query(min_length=1, max_length=64)] = None,
                     pid: Pid = None, exec_id: Name = None, exe: Name = None, user: Name = None,
                     text: Text = None, limit: Limit = 100, before_id: BeforeId = None) -> EventPage:
        st = store()
        rows = await blocking(lambda: st.query_events(
            since=since, until=until, class_uid=class_uid, kind=kind, pid=pid, exec_id=exec_id, exe=exe,
            user=user, text=_clean(text), limit=limit, before_id=before_id))
        items = list(rows)
        return EventPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)

    @app.get("/api/v1/alerts", response_model=AlertPage, tags=["alerts"])
    async def alerts(_: Read, since: Ms = None, until: Ms = None,
                     rule: Annotated[str | None, Query(min_length=1, max_length=256)] = None,
                     severity: Annotated[int | None, Query(ge=0, le=6, description="minimum severity id")] = None,
                     status: Literal["new", "acknowledged", "resolved"] | None = None,
                     pid: Pid = None, exec_id: Name = None, exe: Name = None, user: Name = None,
                     text: Text = None, limit: Limit = 100, before_id: BeforeId = None) -> AlertPage:
        st = store()
        rows = await blocking(lambda: st.query_alerts(
            since=since, until=until, rule=rule, min_severity=severity, status=status, pid=pid, exec_id=exec_id,
            exe=exe, user=user, text=_clean(text), limit=limit, before_id=before_id))
        items = [AlertOut(**_row(r)) for r in rows]
        return AlertPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)

    Uid = Annotated[str, PathParam(min_length=1, max_length=256)]

    @app.get("/api/v1/alerts/{uid}", response_model=AlertDetail, tags=["alerts"],
             responses={404: {"description": "no such alert"}})
    async def alert_detail(_: Read, uid: Uid) -> AlertDetail:
        st = store()
        a = await blocking(lambda: st.get_alert(uid))
        if a is None:
            raise HTTPException(404, f"no alert {uid!r}")
        proc = _actor_process(a.obj)
        ancestry = [p for p in (proc or {}).get("ancestry", []) if isinstance(p, dict)] if proc else []
        exec_id = (proc or {}).get("uid") or a.exec_id
        evs = await blocking(lambda: st.query_events(exec_id=exec_id, limit=100)) if exec_id else []
        return AlertDetail(alert=AlertOut(**_row(a)), changes=list(a.changes),
                           process={k: v for k, v in proc.items() if k != "ancestry"} if proc else None,
                           ancestry=ancestry, events=list(evs))

    async def _change(request: Request, who: Principal, uid: str, action: str, comment: str) -> AlertOut:
        st = store()
        request.state.audit_detail = comment
        try:
            if action == "ack":
                a = await asyncio.to_thread(st.ack, uid, who.name, comment)
            elif action == "resolve":
                a = await asyncio.to_thread(st.resolve, uid, who.name, comment)
            else:
                a = await asyncio.to_thread(st.comment, uid, who.name, comment)
        except ValueError as exc:  # a comment of white space only (the store wants text)
            raise HTTPException(422, f"comment: {exc}") from exc
        except OutputError as exc:
            if "no alert" in str(exc):
                raise HTTPException(404, f"no alert {uid!r}") from exc
            raise HTTPException(503, str(exc)) from exc
        return AlertOut(**_row(a))

    @app.post("/api/v1/alerts/{uid}/ack", response_model=AlertOut, tags=["alerts"],
              responses={404: {"description": "no such alert"}})
    async def ack(request: Request, who: AlertsWrite, uid: Uid,
                  body: Annotated[CommentIn | None, Body()] = None) -> AlertOut:
        return await _change(request, who, uid, "ack", body.comment if body else "")

    @app.post("/api/v1/alerts/{uid}/resolve", response_model=AlertOut, tags=["alerts"],
              responses={404: {"description": "no such alert"}})
    async def resolve(request: Request, who: AlertsWrite, uid: Uid,
                      body: Annotated[CommentIn | None, Body()] = None) -> AlertOut:
        return await _change(request, who, uid, "resolve", body.comment if body else "")

    @app.post("/api/v1/alerts/{uid}/comment", response_model=AlertOut, tags=["alerts"],
              responses={404: {"description": "no such alert"}})
    async def comment(request: Request, who: AlertsWrite, uid: Uid, body: CommentRequired) -> AlertOut:
        return await _change(request, who, uid, "comment", body.comment)

    @app.get("/api/v1/overview", tags=["alerts"])
    async def overview(_: Read, hours: Annotated[int, Query(ge=1, le=720)] = 24) -> dict[str, Any]:
        st = store()
        until = time.time_ns() // 1_000_000
        since = until - hours * 3_600_000
        out: dict[str, Any] = await blocking(lambda: st.overview(since=since, until=until, buckets=24))
        status = backend.status()
        out["rates"] = status.get("rates", {"events_per_s": 0.0, "alerts_per_s": 0.0})
        hist = status.get("history") or {}
        out["loss"] = {"kernel_dropped": status.get("kernel_dropped", 0),
                       "user_dropped": status.get("user_dropped", 0),
                       "history_dropped": int(hist.get("dropped_full_queue", 0)) + int(hist.get("dropped_disk", 0))}
        return out

    # -- rules ------------------------------------------------------------------------------------

    def _detection() -> Any:
        det = backend.agent.detection if backend.agent is not None else None
        if det is None:
            raise HTTPException(503, "detection is not running")
        return det

    @app.get("/api/v1/rules", response_model=RuleList, tags=["rules"])
    def rules(_: Read, source: Literal["native", "sigma"] | None = None,
              enabled: bool | None = None) -> RuleList:
        det = _detection()
        off = det.toggles.disabled
        items = [_rule_out(r.meta, r.meta.id not in off) for r in list(det.all_rules)]
        items = [r for r in items if (source is None or r.source == source) and (enabled is None or
                                                                                  r.enabled == enabled)]
        return RuleList(items=items)

    RuleId = Annotated[str, PathParam(pattern=RULE_ID)]

    async def _toggle(request: Request, rule_id: str, on: bool) -> RuleOut:
        det = _detection()
        request.state.audit_detail = "enable" if on else "disable"
        found = await blocking(lambda: backend.call(lambda a: det.set_enabled(rule_id, on)))
        if not found:
            raise HTTPException(404, f"no loaded rule {rule_id!r}")
        meta = next(r.meta for r in det.all_rules if r.meta.id == rule_id)
        return _rule_out(meta, rule_id not in det.toggles.disabled)

    @app.post("/api/v1/rules/{rule_id}/enable", response_model=RuleOut, tags=["rules"],
              responses={404: {"description": "no such rule"}})
    async def enable_rule(request: Request, _: RulesWrite, rule_id: RuleId) -> RuleOut:
        return await _toggle(request, rule_id, True)

    @app.post("/api/v1/rules/{rule_id}/disable", response_model=RuleOut, tags=["rules"],
              responses={404: {"description": "no such rule"}})
    async def disable_rule(request: Request, _: RulesWrite, rule_id: RuleId) -> RuleOut:
        return await _toggle(request, rule_id, False)

    @app.post("/api/v1/rules/reload", response_model=ReloadOut, tags=["rules"])
    async def reload_rules(_: RulesWrite) -> ReloadOut:
        det = _detection()
        before = (det.reloads, det.reload_failures)
        det.request_reload()
        deadline = time.monotonic() + 60
        while (det.reloads, det.reload_failures) == before and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        ok = det.reloads > before[0]
        return ReloadOut(reloaded=ok, rules=len(det.engine),
                         error=None if ok else (det.last_reload_error or "the reload did not finish in 60 s"))

    # -- policies ---------------------------------------------------------------------------------

    @app.get("/api/v1/policies", response_model=PolicyList, tags=["policies"])
    async def policies(_: Read) -> PolicyList:
        return PolicyList(**await blocking(lambda: backend.call(lambda a: a.policies_view())))

    @app.post("/api/v1/policies", response_model=PolicyApplied, tags=["policies"],
              responses={422: {"description": "the policy file is invalid (every error, located)"}})
    async def apply_policy(request: Request, _: PoliciesWrite, body: PolicyIn) -> PolicyApplied:
        request.state.audit_detail = f"{body.name}.yaml ({len(body.yaml)} bytes)"
        try:
            out = await asyncio.to_thread(_write_policy, backend, body.name, body.yaml)
        except PolicyError as exc:
            raise HTTPException(422, str(exc)) from exc
        return PolicyApplied(**out)

    @app.delete("/api/v1/policies/{name}", response_model=PolicyRemoved, tags=["policies"],
                responses={404: {"description": "no such policy file"}})
    async def remove_policy(request: Request, _: PoliciesWrite,
                            name: Annotated[str, PathParam(pattern=POLICY_NAME)]) -> PolicyRemoved:
        request.state.audit_detail = name
        pdir = backend.policy_dir()
        target = next((pdir / f"{name}{ext}" for ext in (".yaml", ".yml") if (pdir / f"{name}{ext}").is_file()),
                      None)
        if target is None:
            raise HTTPException(404, f"no policy file {name}.yaml in {pdir}")
        try:
            target.unlink()
        except OSError as exc:
            raise HTTPException(503, f"cannot remove {target}: {exc.strerror}") from exc
        await blocking(lambda: backend.call(lambda a: a.reload_policies()))
        return PolicyRemoved(removed=str(target))

    @app.post("/api/v1/enforcement/arm", response_model=ArmedOut, tags=["policies"])
    async def arm(_: Switch) -> ArmedOut:
        return ArmedOut(armed=await blocking(lambda: backend.call(lambda a: a.set_armed(True))))

    @app.post("/api/v1/enforcement/disarm", response_model=ArmedOut, tags=["policies"])
    async def disarm(_: Switch) -> ArmedOut:
        return ArmedOut(armed=await blocking(lambda: backend.call(lambda a: a.set_armed(False))))

    # -- network inspector ------------------------------------------------------------------------

    @app.get("/api/v1/network", tags=["status"])
    async def network(_: Read) -> dict[str, Any]:
        """The packet inspector: interfaces, kernel counters per hook, detections, flows, DNS, blocks in force."""
        out: dict[str, Any] = await blocking(lambda: backend.call(lambda a: a.network_view()))
        return out

    # -- status, audit ------------------------------------------------------------------------------

    @app.get("/api/v1/status", tags=["status"])
    def status(_: Read) -> dict[str, Any]:
        return backend.status()

    @app.get("/api/v1/audit", response_model=AuditPage, tags=["auth"])
    async def audit(_: AuditRead, limit: Limit = 100, before_id: BeforeId = None) -> AuditPage:
        auth = backend.auth
        assert auth is not None
        rows = await blocking(lambda: auth.audit_log(limit=limit, before_id=before_id))
        items = list(rows)
        return AuditPage(items=items, next_before_id=items[-1].id if len(items) == limit else None)

    @app.get("/api/v1/tokens", response_model=TokenList, tags=["auth"])
    async def tokens(_: AuditRead) -> TokenList:
        auth = backend.auth
        assert auth is not None
        rows = await blocking(auth.tokens)
        return TokenList(items=list(rows))

    # -- live stream ------------------------------------------------------------------------------

    @app.get("/api/v1/stream", tags=["events"], response_class=StreamingResponse,
             responses={200: {"content": {"text/event-stream": {}}}})
    async def stream(_: Read, events: bool = True, alerts: bool = True,
                     class_uid: Annotated[list[int] | None, Query(max_length=32)] = None,
                     text: Text = None,
                     seconds: Annotated[int, Query(ge=1, le=86400, description="end the stream after")] = 3600,
                     ) -> StreamingResponse:
        flt = StreamFilter(events=events, alerts=alerts, class_uids=frozenset(class_uid or ()), text=text or "")
        return StreamingResponse(_sse(backend, flt, seconds), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    allowed = _allowed_hosts(backend)
    return Guard(app, backend, allowed)  # type: ignore[return-value]


async def _sse(backend: Backend, flt: StreamFilter, seconds: int) -> AsyncIterator[bytes]:
    hub = backend.hub
    sub = hub.subscribe(flt)
    end = time.monotonic() + seconds
    last = time.monotonic()
    try:
        yield b": stream open\n\n"
        while time.monotonic() < end:
            items, reports = hub.take(sub)
            chunks: list[bytes] = []
            for kind, obj in items:
                chunks.append(b"event: " + kind.encode() + b"\ndata: " + _json(obj) + b"\n\n")
            for r in reports:
                chunks.append(b"event: sampled\ndata: " + _json(r) + b"\n\n")
            if sub.lost_slow:
                chunks.append(b"event: sampled\ndata: " + _json({"lost_slow_reader": sub.lost_slow}) + b"\n\n")
                sub.lost_slow = 0
            now = time.monotonic()
            if chunks:
                last = now
                yield b"".join(chunks)
            elif now - last >= KEEPALIVE_S:
                last = now
                yield b": keepalive\n\n"
            if not sub.items:
                await asyncio.sleep(STREAM_POLL_S)
    finally:
        hub.unsubscribe(sub)


def _json(obj: Any) -> bytes:
    import orjson

    try:
        return orjson.dumps(obj)
    except TypeError:
        return json.dumps(obj, default=str).encode()


def _allowed_hosts(backend: Backend) -> set[str]:
    from sentinel_edge.config import split_listen

    cfg = backend.cfg.api
    host, port = split_listen(cfg.listen)
    names = {host, "localhost", "127.0.0.1", "[::1]", *(h.lower() for h in cfg.allowed_hosts)}
    if ":" in host:
        names.add(f"[{host}]")
    ports = {port}
    if backend.server is not None and backend.server.bound_port:
        ports.add(backend.server.bound_port)

    class Hosts(set[str]):
        """Host values accepted: name:port for the bound port (known only once listening)."""

        def __contains__(self, value: object) -> bool:
            if not isinstance(value, str):
                return False
            name, sep, p = value.rpartition(":")
            if not sep or "]" in p:
                name, p = value, ""
            if name not in names:
                return False
            if not p:
                return True  # default port of the scheme
            bound = backend.server.bound_port if backend.server is not None else 0
            return p.isdigit() and int(p) in (ports | {bound})

    return Hosts()


def _clean(text: str | None) -> str | None:
    if text is None:
        return None
    t = text.replace("\x00", " ").strip()
    return t or None


def _row(r: Any) -> dict[str, Any]:
    d = dict(vars(r)) if not hasattr(r, "__dataclass_fields__") else {k: getattr(r, k) for k in
                                                                        r.__dataclass_fields__}
    d.pop("changes", None)
    return d


def _actor_process(obj: dict[str, Any]) -> dict[str, Any] | None:
    actor = obj.get("actor")
    if isinstance(actor, dict) and isinstance(actor.get("process"), dict):
        return dict(actor["process"])
    ev = obj.get("evidences")
    if isinstance(ev, list) and ev and isinstance(ev[-1], dict):
        p = ev[-1].get("process") or (ev[-1].get("actor") or {}).get("process")
        if isinstance(p, dict):
            return dict(p)
    return None


def _rule_out(meta: Any, enabled: bool) -> RuleOut:
    from sentinel_edge.alerts.attack import technique_name

    return RuleOut(id=meta.id, title=meta.title, description=meta.description, severity=meta.severity,
                   source=meta.source, kind=meta.kind, enabled=enabled, tags=list(meta.tags),
                   attack=[AttackOut(technique=a.technique, technique_name=technique_name(a.technique),
                                     tactic=a.tactic) for a in meta.attack],
                   file=meta.file)


def _policy_errors(exc: PolicyError, tmp: Path, target: Path) -> PolicyError:
    """Every error of an invalid policy set, one a line, those of the new file located in it as it would be
    named (validation reads a temporary copy)."""
    errs = exc.errors or [exc]
    lines = [str(e).replace(str(tmp), str(target), 1) if e.file == str(tmp) else str(e) for e in errs]
    return PolicyError("\n".join(lines), errors=errs)


def _write_policy(backend: Backend, name: str, text: str) -> dict[str, Any]:
    """Validate ``text`` with the policies already in the directory, write it there, apply the set."""
    from sentinel_edge.enforce.policy import load_policy_files, policy_files

    pdir = backend.policy_dir()
    existing = policy_files([pdir])[0] if pdir.is_dir() else []
    fname = f"{name}.yaml"
    with tempfile.TemporaryDirectory(prefix="se-policy-") as tmpd:
        tmp = Path(tmpd) / fname
        tmp.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            pset = load_policy_files([*(q for q in existing if q.name != fname), tmp])
        except PolicyError as exc:
            raise _policy_errors(exc, tmp, pdir / fname) from exc
        ids = [p.id for p in pset.policies if Path(p.file).name == fname]
        try:
            pdir.mkdir(parents=True, exist_ok=True, mode=0o700)
            part = pdir / f".{fname}.tmp"
            shutil.copyfile(tmp, part)
            os.replace(part, pdir / fname)
        except OSError as exc:
            raise SentinelEdgeError(f"cannot write {pdir / fname}: {exc.strerror}") from exc
    in_force = bool(backend.call(lambda a: a.reload_policies()))
    return {"file": str(pdir / fname), "policies": ids, "in_force": in_force}
