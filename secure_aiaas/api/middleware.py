"""The outermost layer of every request: request id, body cap, authentication, the record.

Pure ASGI (no BaseHTTPMiddleware), so it can hold back the response's first message until
the request's audit record is durably committed. If the record cannot be written, the caller
gets a 503 instead of whatever the handler produced: never a success without a record.

It only *stores* the record: what the request established arrives as an immutable
`AuditFacts` value that the route layer hands back in the request state (``facts``); the
middleware adds what only it knows (request id, route template, status, latency, bytes in).

While the audit writer is known to be failing, nothing new starts: requests are refused
(503) before any handler runs. Requests without a valid key get an individual record only
within the anonymous budgets (`scheduling.anonymous`); beyond them they get 429 and are
counted into periodic aggregate records instead.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import secrets
import time
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
    CredentialsInQueryError,
    MalformedRequestError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceError,
)
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.types import AuditEvent, AuditFacts, Outcome

log = structlog.get_logger(__name__)

# Public and unaudited: the probes (no identity) and the API's own documentation (the same
# for everyone, no tenant data): the OpenAPI document, the interactive docs and their assets.
UNAUDITED_PREFIXES = ("/v2/health/", "/docs-assets/")
UNAUDITED_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})
# Recorded as sent; any other method (a token the caller made up) is recorded as "OTHER".
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Query parameters that would put a credential into URLs, proxies' logs and browser history.
CREDENTIAL_PARAMS = frozenset(
    {"api_key", "apikey", "key", "token", "access_token", "auth", "authorization", "bearer"}
)
_Headers = tuple[tuple[bytes, bytes], ...]


def outcome_of(status: int, facts: AuditFacts) -> Outcome:
    if status >= 500:
        return "error"
    if status == 401:
        return "unauthenticated"
    if facts.decision is not None:
        return "allow" if facts.decision.allowed else "deny"
    return "error"


def _json_response(status: int, body: dict[str, object], headers: _Headers = ()) -> list[Message]:
    payload = json.dumps(body).encode()
    start_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(payload)).encode()),
        *headers,
    ]
    return [
        {"type": "http.response.start", "status": status, "headers": start_headers},
        {"type": "http.response.body", "body": payload},
    ]


# Request ids: a random prefix per process and a counter, 32 hex digits like a uuid4. Unique
# across processes and restarts (64 random bits per process), and no system call per request
# (uuid4 read the kernel's random source on every request: ~10 % of handling time here).
# Not secrets: nothing is granted by knowing one.
_ids: tuple[str, itertools.count[int]] = (secrets.token_hex(8), itertools.count())


def _renew_ids() -> None:
    global _ids
    _ids = (secrets.token_hex(8), itertools.count())


os.register_at_fork(after_in_child=_renew_ids)  # a forked worker never repeats its parent's


def _next_request_id() -> str:
    prefix, counter = _ids
    return f"{prefix}{next(counter):016x}"


class AuditMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        pipeline_getter: Any,
        max_body_bytes: int,
        large_body_prefixes: dict[str, int] | None = None,
    ) -> None:
        self.app = app
        self._pipeline_getter = pipeline_getter
        self._max_body = max_body_bytes
        # Routes whose bodies are legitimately bigger or smaller (ciphertexts; texts).
        self._caps = dict(large_body_prefixes or {})

    def _cap(self, path: str) -> int:
        for prefix, cap in self._caps.items():
            if path.startswith(prefix):
                return cap
        return self._max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if (
            scope["type"] != "http"
            or path in UNAUDITED_PATHS
            or path.startswith(UNAUDITED_PREFIXES)
        ):
            await self.app(scope, receive, send)
            return
        pipeline: Pipeline = self._pipeline_getter()
        cap = self._cap(path)
        exchange = _Exchange(scope, receive, send, pipeline, cap)
        structlog.contextvars.bind_contextvars(request_id=exchange.request_id)
        state = scope["state"]
        try:
            try:
                # Known to be unable to record: start nothing (a probe says when it recovers).
                await pipeline.audit.ensure_writable()
            except AuditError:
                await exchange.send_unrecorded(AuditError())
                return
            refusal = _refuse_early(scope, cap)
            if refusal is not None:
                await exchange.respond(refusal)
                return
            # Every route but the probes and the docs needs a key: authenticate first, so an
            # anonymous caller's body is never read and its path never routed.
            try:
                principal = await pipeline.authenticate(_bearer_token(scope))
            except ServiceError as exc:
                await exchange.respond(exc)
                return
            state["principal"] = principal
            state["facts"] = AuditFacts(principal=principal)
            try:
                await self.app(scope, exchange.receive, exchange.send)
                await exchange.finish_deferred()
            except PayloadTooLargeError as exc:
                if not exchange.started:
                    await exchange.respond(exc)
            except (ClientDisconnect, OSError):
                # The caller went away mid-request: nothing to answer, but it is recorded
                # (499, nginx's "client closed request").
                if not exchange.started:
                    await exchange.record_only(499)
                await exchange.finish_deferred()
            except Exception:
                log.exception("request.unhandled_error", route=exchange.route)
                if not exchange.started:
                    await exchange.respond(ServiceError())
        finally:
            if exchange.outcome_pending:
                # The stream was cut off (the server cancels a request whose client left):
                # its outcome is still recorded, even while this task is being cancelled.
                pending = asyncio.ensure_future(exchange.finish_deferred())
                try:
                    await asyncio.shield(pending)
                except asyncio.CancelledError:
                    pass  # the shielded task goes on and records it
            admission = state.get("admission")
            if admission is not None:
                await admission.release()
            structlog.contextvars.unbind_contextvars("request_id")


class _Exchange:
    """One request/response pair, whose response waits for its audit record."""

    def __init__(
        self, scope: Scope, receive: Receive, send: Send, pipeline: Pipeline, max_body: int
    ) -> None:
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
        self.request_id = _next_request_id()
        self.method = scope["method"] if scope["method"] in _METHODS else "OTHER"
        state = scope.setdefault("state", {})
        state["request_id"] = self.request_id
        state["write_ahead"] = self.write_ahead
        state["record_outcome"] = self.record_outcome
        # A streamed answer: its outcome is recorded when it ends (see `record_outcome`).
        self._deferred_status: int | None = None
        self._outcome_recorded = False

    @property
    def route(self) -> str:
        """The route *template* once routing matched, never the raw path: a caller could
        put personal data into a URL."""
        matched = self._scope.get("route")
        return (
            str(matched.path) if matched is not None and hasattr(matched, "path") else "unmatched"
        )

    def _facts(self) -> AuditFacts:
        facts = self._scope["state"].get("facts")
        return facts if isinstance(facts, AuditFacts) else AuditFacts()

    def _event(self, status: int, decision: Outcome, facts: AuditFacts) -> AuditEvent:
        p, d = facts.principal, facts.decision
        details = dict(facts.details)
        details.setdefault("bytes_in", self._bytes_in)
        return AuditEvent(
            ts=utc_now(),
            request_id=self.request_id,
            method=self.method,
            route=self.route,
            status=status,
            decision=decision,
            latency_ms=(time.perf_counter() - self._started_at) * 1000,
            tenant=p.tenant if p else None,
            subject=p.subject if p else None,
            key_id=p.key_id if p else None,
            role=p.role if p else None,
            action=facts.action,
            object=facts.object,
            rule=d.rule_text if d else None,
            policy_version=d.policy_version if d else None,
            details=details,
        )

    async def receive(self) -> Message:
        message = await self._receive()
        if message["type"] == "http.request":
            self._bytes_in += len(message.get("body", b""))
            if self._bytes_in > self._max_body:
                raise PayloadTooLargeError()
        return message

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start" and self._scope["state"].get("deferred"):
            # Its attempt is durable already; the outcome follows when the stream ends.
            self.started = True
            self._deferred_status = int(message["status"])
            message = {**message, "headers": [*message.get("headers", []), self._id_header()]}
            await self._send(message)
            return
        if message["type"] == "http.response.start":
            self.started = True
            replacement = await self._record(int(message["status"]))
            if replacement is not None:
                self._replaced = True
                await self._send_error(*replacement)
                return
            message = {**message, "headers": [*message.get("headers", []), self._id_header()]}
        elif self._replaced:
            return  # the handler's body is dropped with its status
        await self._send(message)

    async def write_ahead(self, facts: AuditFacts) -> None:
        """Commit the attempt record of a side effect before it happens (AuditError → 503:
        the side effect must then not happen)."""
        await self._pipeline.record(self._event(0, "attempt", facts))

    async def record_outcome(self, facts: AuditFacts) -> None:
        """Record a streamed answer's outcome (before its last event). AuditError if not."""
        status = self._deferred_status or 200
        event = self._event(status, outcome_of(status, facts), facts)
        try:
            await self._pipeline.record(event)
        finally:
            self._outcome_recorded = True  # recorded, or failed: never a second outcome
        self._observe(event, status)
        log.info(
            "request.completed",
            method=event.method,
            route=event.route,
            status=status,
            decision=event.decision,
            latency_ms=round(event.latency_ms, 2),
        )

    @property
    def outcome_pending(self) -> bool:
        return self._deferred_status is not None and not self._outcome_recorded

    async def finish_deferred(self) -> None:
        """A stream that ended without its outcome (the client went away): record 499."""
        if self._deferred_status is None or self._outcome_recorded:
            return
        facts = self._facts()
        event = self._event(499, outcome_of(499, facts), facts)
        self._outcome_recorded = True
        try:
            await self._pipeline.record(event)
        except AuditError:
            log.error("audit.record_refused", status=499, route=event.route)

    async def record_only(self, status: int) -> None:
        """Audit a request that gets no response (the client disconnected)."""
        self.started = True
        await self._record(status)

    async def respond(self, exc: ServiceError) -> None:
        """Answer with ``exc`` without calling the app (still audited like any response)."""
        headers: _Headers = (
            ((b"www-authenticate", b"Bearer"),) if isinstance(exc, AuthenticationError) else ()
        )
        retry_after = getattr(exc, "retry_after", None)
        if retry_after is not None:
            headers = (*headers, (b"retry-after", str(max(1, round(retry_after))).encode()))
        status = status_for(exc)
        start, body = _json_response(
            status,
            error_body(
                exc.public_message, exc.code, self.request_id, self._scope.get("path", ""), status
            ),
            headers,
        )
        await self.send(start)
        await self.send(body)

    async def send_unrecorded(self, exc: ServiceError) -> None:
        """Answer without a record (the store is known to be failing: nothing was done)."""
        self.started = True
        await self._send_error(status_for(exc), exc.public_message, exc.code, ())

    async def _send_error(self, status: int, message: str, code: str, headers: _Headers) -> None:
        start, body = _json_response(
            status,
            error_body(message, code, self.request_id, self._scope.get("path", ""), status),
            (*headers, self._id_header()),
        )
        await self._send(start)
        await self._send(body)

    def _id_header(self) -> tuple[bytes, bytes]:
        return (b"x-request-id", self.request_id.encode())

    async def _record(self, status: int) -> tuple[int, str, str, _Headers] | None:
        """Durably record the outcome. None: recorded, send the response as it is;
        otherwise the (status, message, code, headers) to answer instead."""
        facts = self._facts()
        event = self._event(status, outcome_of(status, facts), facts)
        if facts.principal is None and not await self._pipeline.admit_anonymous(self._address):
            # Over the anonymous budget: counted into an aggregate record, not one per request.
            self._observe(event, 429)
            return (
                429,
                RateLimitedError.public_message,
                RateLimitedError.code,
                ((b"retry-after", b"60"),),
            )
        appending = time.perf_counter()
        try:
            await self._pipeline.record(event)
        except AuditError:
            log.error("audit.record_refused", status=status, route=event.route)
            self._observe(event, 503)
            return 503, AuditError.public_message, AuditError.code, ()
        metrics = self._pipeline.metrics
        if metrics is not None:
            metrics.audit_append.observe(time.perf_counter() - appending)
        self._observe(event, status)
        log.info(
            "request.completed",
            method=event.method,
            route=event.route,
            status=status,
            decision=event.decision,
            latency_ms=round(event.latency_ms, 2),
        )
        return None

    def _observe(self, event: AuditEvent, status: int) -> None:
        """Request metrics: the route template, never the raw path (see `metrics`)."""
        metrics = self._pipeline.metrics
        if metrics is None:
            return
        decision = event.decision if status == event.status else "error"
        try:
            metrics.observe_request(
                route=event.route,
                method=event.method,
                decision=decision,
                status=status,
                seconds=time.perf_counter() - self._started_at,
                tenant=event.tenant,
                details=event.details,
            )
        except Exception:
            log.exception("metrics.observe_failed")


def _bearer_token(scope: Scope) -> str:
    """The API key from ``Authorization: Bearer …`` (AuthenticationError otherwise)."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for name, value in headers:
        if name == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
            break
    raise AuthenticationError()


def _refuse_early(scope: Scope, max_body: int) -> ServiceError | None:
    """Requests refused before anything else: keys in URLs, declared oversize bodies."""
    query = scope.get("query_string", b"").decode("latin-1")
    if query:
        for name, value in parse_qsl(query, keep_blank_values=True):
            if name.lower() in CREDENTIAL_PARAMS or value.startswith("saiaas_"):
                return CredentialsInQueryError()
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                declared = int(value)
            except ValueError:
                return MalformedRequestError("invalid Content-Length")
            if declared > max_body:
                return PayloadTooLargeError()
    return None
