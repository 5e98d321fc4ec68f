"""The outermost layer of every request: request id, body cap, and the audit record.

Pure ASGI (no BaseHTTPMiddleware), so it can hold back the response's first message until
the request's audit record is durably committed. If the record cannot be written, the caller
gets a 503 instead of whatever the handler produced: never a success without a record.

While the audit writer is known to be failing, nothing new starts: requests are refused
(503) before any handler runs. Requests without a valid key get an individual record only
within the anonymous budgets (`scheduling.anonymous`); beyond them they get 429 and are
counted into periodic aggregate records instead.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import structlog
from starlette.requests import ClientDisconnect
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secure_aiaas.api.errors import error_body, status_for
from secure_aiaas.audit import utc_now
from secure_aiaas.errors import (
    AuditError,
    AuthenticationError,
    PayloadTooLargeError,
    RateLimitedError,
    StoreUnavailableError,
)
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.scheduling import Admission
from secure_aiaas.types import AuditEvent, Decision, Outcome, Principal

log = structlog.get_logger(__name__)

# Public and unaudited: the probes (no identity) and the API's own documentation (the same
# for everyone, no tenant data): the OpenAPI document, the interactive docs and their assets.
UNAUDITED_PREFIXES = ("/v2/health/", "/docs-assets/")
UNAUDITED_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# Recorded as sent; any other method (a token the caller made up) is recorded as "OTHER".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Query parameters that would put a credential into URLs, proxies' logs and browser history.
CREDENTIAL_PARAMS = frozenset({"api_key", "apikey", "key", "token", "access_token", "auth",
                               "authorization", "bearer"})


@dataclass
class AuditContext:
    """What the handlers learned about the request, for its audit record."""

    request_id: str
    method: str
    route: str
    principal: Principal | None = None
    action: str | None = None
    object: str | None = None
    decision: Decision | None = None
    details: dict[str, object] = field(default_factory=dict)
    # The request's quota slot (released once the response is sent); not recorded.
    admission: Admission | None = None

    def outcome(self, status: int) -> Outcome:
        if status >= 500:
            return "error"
        if status == 401:
            return "unauthenticated"
        if self.decision is not None:
            return "allow" if self.decision.allowed else "deny"
        return "error"

    def attempt_event(self, latency_ms: float) -> AuditEvent:
        """The write-ahead record of a side effect about to happen (status 0: no answer yet)."""
        return self._event(0, "attempt", latency_ms)

    def to_event(self, status: int, latency_ms: float) -> AuditEvent:
        return self._event(status, self.outcome(status), latency_ms)

    def _event(self, status: int, decision: Outcome, latency_ms: float) -> AuditEvent:
        p, d = self.principal, self.decision
        return AuditEvent(
            ts=utc_now(), request_id=self.request_id, method=self.method, route=self.route,
            status=status, decision=decision, latency_ms=latency_ms,
            tenant=p.tenant if p else None, subject=p.subject if p else None,
            key_id=p.key_id if p else None, role=p.role if p else None,
            action=self.action, object=self.object,
            rule=d.rule_text if d else None, policy_version=d.policy_version if d else None,
            details=self.details,
        )


def _json_response(status: int, body: dict[str, object]) -> list[Message]:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(payload)).encode())]
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": payload}]


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, pipeline_getter: Any, max_body_bytes: int,
                 large_body_prefixes: dict[str, int] | None = None) -> None:
        self.app = app
        self._pipeline_getter = pipeline_getter
        self._max_body = max_body_bytes
        # Routes whose bodies are legitimately bigger (ciphertexts, keys); each such route
        # applies its own exact cap below this one.
        self._large = dict(large_body_prefixes or {})

    def _cap(self, path: str) -> int:
        for prefix, cap in self._large.items():
            if path.startswith(prefix):
                return cap
        return self._max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in UNAUDITED_PATHS \
                or scope["path"].startswith(UNAUDITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        cap = self._cap(scope["path"])
        pipeline: Pipeline = self._pipeline_getter()
        exchange = _AuditedExchange(scope, receive, send, pipeline, cap)
        structlog.contextvars.bind_contextvars(request_id=exchange.ctx.request_id)
        try:
            try:
                # Known to be unable to record: start nothing (a probe says when it recovers).
                await pipeline.audit.ensure_writable()
            except AuditError:
                await exchange.send_unrecorded(503, AuditError.public_message, AuditError.code)
                return
            refusal = _refuse_early(scope, cap)
            if refusal is not None:
                await exchange.respond(*refusal)
                return
            # Every route but the probes and the docs needs a key: authenticate first, so an
            # anonymous caller's body is never read and its path never routed.
            try:
                principal = await pipeline.authenticate(_bearer_token(scope))
            except (AuthenticationError, StoreUnavailableError) as exc:
                headers = (((b"www-authenticate", b"Bearer"),)
                           if isinstance(exc, AuthenticationError) else ())
                await exchange.respond(status_for(exc), exc.public_message, exc.code, headers)
                return
            exchange.ctx.principal = principal
            scope["state"]["principal"] = principal
            try:
                await self.app(scope, exchange.receive, exchange.send)
            except PayloadTooLargeError:
                if not exchange.started:
                    await exchange.respond(413, PayloadTooLargeError.public_message,
                                           PayloadTooLargeError.code)
            except ClientDisconnect:
                # The caller went away mid-request: nothing to answer, but it is recorded
                # (499, nginx's "client closed request").
                if not exchange.started:
                    await exchange.record_only(499)
            except Exception:
                log.exception("request.unhandled_error", route=exchange.ctx.route)
                if not exchange.started:
                    await exchange.respond(500, "internal error", "internal_error")
        finally:
            if exchange.ctx.admission is not None:
                await exchange.ctx.admission.release()
            structlog.contextvars.unbind_contextvars("request_id")


class _AuditedExchange:
    """One request/response pair, whose response waits for its audit record."""

    def __init__(self, scope: Scope, receive: Receive, send: Send, pipeline: Pipeline,
                 max_body: int) -> None:
        self._scope = scope
        self._receive = receive
        self._send = send
        self._pipeline = pipeline
        self._max_body = max_body
        self._started_at = time.perf_counter()
        self._bytes_in = 0
        self._replaced = False
        self.started = False
        client = scope.get("client")
        self._address = str(client[0]) if client else "unknown"
        # The route *template* is recorded once routing matched, never the raw path: a
        # caller could put personal data into a URL.
        method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        self.ctx = AuditContext(request_id=uuid.uuid4().hex, method=method, route="unmatched")
        state = scope.setdefault("state", {})
        state["audit"] = self.ctx
        state["write_ahead"] = self.write_ahead

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._bytes_in += len(message.get("body", b""))
            if self._bytes_in > self._max_body:
                raise PayloadTooLargeError()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.started = True
            replacement = await self._record(int(message["status"]))
            if replacement is not None:
                self._replaced = True
                await self._send_json(*replacement)
                return
            message = {**message, "headers": [*message.get("headers", []), self._id_header()]}
        elif self._replaced:
            return  # the handler's body is dropped with its status
        await self._send(message)

    async def record_only(self, status: int) -> None:
        """Audit a request that gets no response (the client disconnected)."""
        self.started = True
        await self._record(status)

    async def send_unrecorded(self, status: int, message: str, code: str) -> None:
        """Answer without a record (the store is known to be failing: nothing was done)."""
        self.started = True
        await self._send_json(status, message, code)

    async def write_ahead(self) -> None:
        """Commit the attempt record of a side effect before it happens (AuditError → 503:
        the side effect must then not happen)."""
        latency = (time.perf_counter() - self._started_at) * 1000
        matched = self._scope.get("route")
        if matched is not None and hasattr(matched, "path"):
            self.ctx.route = matched.path
        await self._pipeline.record(self.ctx.attempt_event(latency))

    async def respond(self, status: int, message: str, code: str,
                      headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """Answer without calling the app (still audited like any response)."""
        start, body = _json_response(status, error_body(message, code, self.ctx.request_id))
        start["headers"].extend(headers)
        await self.send(start)
        await self.send(body)

    async def _send_json(self, status: int, message: str, code: str,
                         headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        start, body = _json_response(status, error_body(message, code, self.ctx.request_id))
        start["headers"].extend([self._id_header(), *headers])
        await self._send(start)
        await self._send(body)

    def _id_header(self) -> tuple[bytes, bytes]:
        return (b"x-request-id", self.ctx.request_id.encode())

    async def _record(self, status: int) -> tuple[int, str, str, tuple[tuple[bytes, bytes], ...]] | None:
        """Durably record the outcome. None: recorded, send the response as it is;
        otherwise the (status, message, code, headers) to answer instead."""
        ctx = self.ctx
        matched = self._scope.get("route")
        if matched is not None and hasattr(matched, "path"):
            ctx.route = matched.path
        ctx.details.setdefault("bytes_in", self._bytes_in)
        event = ctx.to_event(status, (time.perf_counter() - self._started_at) * 1000)
        if ctx.principal is None and not await self._pipeline.admit_anonymous(self._address):
            # Over the anonymous budget: counted into an aggregate record, not one per request.
            self._observe(event, 429)
            return (429, RateLimitedError.public_message, RateLimitedError.code,
                    ((b"retry-after", b"60"),))
        appending = time.perf_counter()
        try:
            await self._pipeline.record(event)
        except AuditError:
            log.error("audit.record_refused", status=status, route=ctx.route)
            self._observe(event, 503)
            return 503, AuditError.public_message, AuditError.code, ()
        metrics = self._pipeline.metrics
        if metrics is not None:
            metrics.audit_append.observe(time.perf_counter() - appending)
        self._observe(event, status)
        log.info("request.completed", method=ctx.method, route=ctx.route, status=status,
                 decision=event.decision, latency_ms=round(event.latency_ms, 2))
        return None

    def _observe(self, event: AuditEvent, status: int) -> None:
        """Request metrics: the route template, never the raw path (see `metrics`)."""
        metrics = self._pipeline.metrics
        if metrics is None:
            return
        decision = event.decision if status == event.status else "error"
        try:
            metrics.observe_request(route=event.route, method=event.method, decision=decision,
                                    status=status, seconds=time.perf_counter() - self._started_at,
                                    tenant=event.tenant, details=event.details)
        except Exception:
            log.exception("metrics.observe_failed")


def _bearer_token(scope: Scope) -> str:
    """The API key from ``Authorization: Bearer …`` (AuthenticationError otherwise)."""
    for name, value in scope.get("headers", []):
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise AuthenticationError()


def _refuse_early(scope: Scope, max_body: int) -> tuple[int, str, str] | None:
    """Requests refused before any handler runs: keys in URLs, declared oversize bodies."""
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name.lower() in CREDENTIAL_PARAMS or value.startswith("saiaas_"):
                return (400, "credentials in the query string are refused; use the "
                        "Authorization header", "credentials_in_query")
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return 400, "invalid Content-Length", "invalid_input"
            if declared > max_body:
                return 413, PayloadTooLargeError.public_message, PayloadTooLargeError.code
    return None
