"""How the sync clients run the async core: one event loop in a daemon thread per process.

Why not ``asyncio.run`` per call: it refuses to start where a loop already runs in the
calling thread (Jupyter, an async web app calling sync code), and a loop per call would drop
the connection pool between calls. Why not anyio's ``start_blocking_portal``: it is a
context manager that must be exited, and a process-wide loop never is; a plain asyncio loop
in a daemon thread needs no shutdown, so a client nobody closed never holds up interpreter
exit. Every sync client shares the loop (calls from several threads run concurrently on it);
a forked child starts its own. Interrupting a call (Ctrl-C) cancels its request.
"""

from __future__ import annotations

import asyncio
import functools
import os
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
_lock = threading.Lock()
_loop: tuple[int, asyncio.AbstractEventLoop, threading.Thread] | None = None
DELEGATES_TO = "__sdk_delegates_to__"


def _running_loop() -> tuple[asyncio.AbstractEventLoop, threading.Thread]:
    global _loop
    with _lock:
        if _loop is None or _loop[0] != os.getpid() or not _loop[2].is_alive():
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="saiaas-sdk-loop",
                                      daemon=True)  # fmt: skip
            thread.start()
            _loop = (os.getpid(), loop, thread)
        return _loop[1], _loop[2]


def run(coro: Coroutine[Any, Any, R]) -> R:
    """Run `coro` on the SDK's loop thread and wait for its result (or its exception)."""
    loop, thread = _running_loop()
    if threading.current_thread() is thread:
        coro.close()
        raise RuntimeError("a sync SDK client was called from async SDK code: await the async one")
    future = asyncio.run_coroutine_threadsafe(coro, loop)
    try:
        return future.result()
    except BaseException:
        future.cancel()  # KeyboardInterrupt while waiting: stop the request too
        raise


def blocking(
    method: Callable[Concatenate[Any, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Any, P], R]:
    """A sync method that runs the async core's `method` on ``self._core``: the whole body
    of every sync client method, so the two APIs cannot drift apart."""

    def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return run(method(self._core, *args, **kwargs))

    functools.update_wrapper(call, method, assigned=("__module__", "__name__", "__doc__"))
    setattr(call, DELEGATES_TO, method)  # noqa: B010 (read by the tests)
    return call
