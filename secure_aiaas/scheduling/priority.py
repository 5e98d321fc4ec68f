"""The calling tenant's priority, carried with the request to the compute queues.

`Pipeline.admit` sets it once the caller is known; the plaintext batcher and the HE pool
read it through a callable injected by the lifespan (`current_priority`), so neither
concern package imports this one. Higher runs first; equal priorities keep arrival order.
"""

from __future__ import annotations

from contextvars import ContextVar, Token

_PRIORITY: ContextVar[int] = ContextVar("saiaas_priority", default=0)


def current_priority() -> int:
    """The priority of the request being served in this context (0 outside requests)."""
    return _PRIORITY.get()


def set_priority(priority: int) -> Token[int]:
    """Set the priority for the rest of this request (tasks it spawns inherit it)."""
    return _PRIORITY.set(int(priority))
