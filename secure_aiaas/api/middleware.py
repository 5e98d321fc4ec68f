"""The outermost layer of every request: request id, body cap, and the audit record.

Pure ASGI (no BaseHTTPMiddleware), so it can hold back the response's first message until
the request's audit record is durably committed. If the record cannot be written, the caller
gets a 503 instead of whatever the handler produced: never a success without a record.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from secure_aiaas.api.errors import error_body
from secure_aiaas.audit import utc_now
from secure_aiaas.errors import AuditError, PayloadTooLargeError
from secure_aiaas.pipeline import Pipeline
from secure_aiaas.types import AuditEvent, Decision, Outcome, Principal

log = structlog.get_logger(__name__)

UNAUDITED_PREFIXES = ("/v2/health/",)
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

    def outcome(self, status: int) -> Outcome:
        if status >= 500:
            return "error"
        if status == 401:
            return "unauthenticated"
        if self.decision is not None:
            return "allow" if self.decision.allowed else "deny"
        return "error"

    def to_event(self, status: int, latency_ms: float) -> AuditEvent:
        p, d = self.principal, self.decision
        return AuditEvent(
            ts=utc_now(), request_id=self.request_id, method=self.method, route=self.route,
            status=status, decision=self.outcome(status), latency_ms=latency_ms,
            tenant=p.tenant if p else None, subject=p.subject if p else None,
            key_id=p.key_id if p else None, role=p.role if p else None,
            action=self.action, object=self.object,
            rule=d.rule_text if d else None, policy_version=d.policy_version if d else None,
            details=self.details,
        )


def _json_response(status: int, body: dict[str, object], request_id: str) -> list[Message]:
    import json

    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
               (b"x-request-id", request_id.encode())]
    return [{"type": "http.response.start", "status": status, "headers": headers},
            {"type": "http.response.body", "body": payload}]


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, pipeline_getter: Any, max_body_bytes: int) -> None:
        self.app = app
        self._pipeline_getter = pipeline_getter
        self._max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(UNAUDITED_PREFIXES):
            await self.app(scope, receive, send)
            return
        pipeline: Pipeline = self._pipeline_getter()
        request_id = uuid.uuid4().hex
        # The route *template* is recorded once routing matched (see `finish`), never the raw
        # path: a caller could put personal data into a URL.
        ctx = AuditContext(request_id=request_id, method=scope["method"], route="unmatched")
        scope.setdefault("state", {})["audit"] = ctx
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        state = {"replaced": False, "started": False}

        async def finish(status: int) -> bool:
            """Record the outcome; False when it could not be recorded (caller sends 503)."""
            matched = scope.get("route")
            if matched is not None and hasattr(matched, "path"):
                ctx.route = matched.path
            ctx.details.setdefault("bytes_in", received["bytes"])
            event = ctx.to_event(status, (time.perf_counter() - started) * 1000)
            try:
                await pipeline.record(event)
            except AuditError:
                log.error("audit.record_refused", status=status, route=ctx.route)
                return False
            return True

        async def send_audited(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["started"] = True
                if not await finish(int(message["status"])):
                    state["replaced"] = True
                    for m in _json_response(503, error_body(AuditError.public_message,
                                                            AuditError.code, request_id),
                                            request_id):
                        await send(m)
                    return
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", request_id.encode())]}
            elif state["replaced"]:
                return  # the handler's body is dropped with its status
            await send(message)

        received = {"bytes": 0}

        async def receive_capped() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                received["bytes"] += len(message.get("body", b""))
                if received["bytes"] > self._max_body:
                    raise PayloadTooLargeError()
            return message

        refusal = self._refuse_early(scope)
        if refusal is not None:
            status, body = refusal
            for m in _json_response(status, error_body(body[0], body[1], request_id),
                                    request_id):
                await send_audited(m)
            return
        try:
            await self.app(scope, receive_capped, send_audited)
        except PayloadTooLargeError:
            if not state["started"]:
                for m in _json_response(413, error_body(PayloadTooLargeError.public_message,
                                                        PayloadTooLargeError.code, request_id),
                                        request_id):
                    await send_audited(m)
        except Exception:
            log.exception("request.unhandled_error", route=ctx.route)
            if not state["started"]:
                for m in _json_response(500, error_body("internal error", "internal_error",
                                                        request_id), request_id):
                    await send_audited(m)
        finally:
            structlog.contextvars.unbind_contextvars("request_id")

    def _refuse_early(self, scope: Scope) -> tuple[int, tuple[str, str]] | None:
        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            for name, value in parse_qsl(query, keep_blank_values=True):
                if name.lower() in CREDENTIAL_PARAMS or value.startswith("saiaas_"):
                    return 400, ("credentials in the query string are refused; use the "
                                 "Authorization header", "credentials_in_query")
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    if int(value) > self._max_body:
                        return 413, (PayloadTooLargeError.public_message,
                                     PayloadTooLargeError.code)
                except ValueError:
                    return 400, ("invalid Content-Length", "invalid_input")
        return None
