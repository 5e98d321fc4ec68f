"""`X-Served-By`: which replica answered (plain ASGI, no web framework imported)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

SERVED_BY = b"x-served-by"

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class ServedBy:
    """ASGI middleware: every HTTP response names the replica that produced it.

    Outermost, so refusals (401, 413, 429, 503) carry it too: operators see which replica
    answered, and the acceptance test sees both replicas serve.
    """

    def __init__(self, app: ASGIApp, replica: str) -> None:
        self.app = app
        self.replica = replica.encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_named(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", []), (SERVED_BY, self.replica)]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_named)
