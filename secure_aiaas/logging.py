"""Structured logs: JSON lines, a request id on every line, secrets and payloads masked.

Logs serve operators; the audit store is the record. A redaction processor masks any field
whose name says it may carry a payload or a secret, wherever it is nested, as a last line of
defence: code must not log such values in the first place.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import orjson
import structlog

SENSITIVE_KEYS = frozenset(
    {
        "text",
        "texts",
        "input",
        "inputs",
        "prompt",
        "data",
        "payload",
        "body",
        "ciphertext",
        "ciphertexts",
        "token",
        "secret",
        "secret_key",
        "key",
        "api_key",
        "authorization",
        "password",
        "passphrase",
        "value",
        "values",
        "output",
        "outputs",
    }
)
REDACTED = "[redacted]"


def _redact(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if str(k).lower() in SENSITIVE_KEYS else _redact(v))
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_redact(v) for v in value]
    return value


_SCALARS = (str, int, float, bool, type(None))


def redact_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    for key, value in event_dict.items():
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif not isinstance(value, _SCALARS):  # scalars hold no nested field names
            event_dict[key] = _redact(value)
    return event_dict


def _native_output(json_logs: bool) -> tuple[Any, Any]:
    """The renderer and logger factory of our own events.

    JSON lines go out as orjson's bytes, written straight to stderr's buffer (structlog's
    documented fast path: this line is on every request's path, 14 -> 7 us).
    """
    if not json_logs:
        return structlog.dev.ConsoleRenderer(colors=False), structlog.WriteLoggerFactory(
            file=sys.stderr
        )
    renderer = structlog.processors.JSONRenderer(serializer=_dumps)
    buffer = getattr(sys.stderr, "buffer", None)
    if buffer is not None:
        return renderer, structlog.BytesLoggerFactory(file=buffer)
    return _decoded(renderer), structlog.WriteLoggerFactory(file=sys.stderr)


def _dumps(event_dict: Any, default: Any = None) -> bytes:
    try:
        return orjson.dumps(event_dict, default=default, option=orjson.OPT_NON_STR_KEYS)
    except TypeError:  # what orjson refuses (an int past 64 bits) the standard library writes
        return json.dumps(event_dict, default=default).encode()


def _decoded(renderer: Any) -> Any:
    """``renderer``'s bytes as text (a stderr without a byte buffer: a test's capture)."""

    def render(logger: Any, name: str, event_dict: MutableMapping[str, Any]) -> str:
        return str(renderer(logger, name, event_dict).decode())

    return render


def configure_logging(level: str = "INFO", *, json_logs: bool = True) -> None:
    """One JSON line per event on stderr, for our loggers and the standard library's alike.

    Our own events take structlog's native path (a filtering logger that drops levels below
    ``level`` before any processor runs, writing rendered lines straight to the stream):
    the request log line is on every request's path. Libraries' stdlib records go through
    the same processors via `ProcessorFormatter`.
    """
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_processor,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    native_renderer, native_factory = _native_output(json_logs)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, native_renderer],
        logger_factory=native_factory,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(lambda record: not record.name.startswith("casbin"))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared[:1], structlog.stdlib.add_log_level, *shared[2:]],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    # uvicorn's access log would print paths with query strings (a key someone put there):
    # the audit store records requests, so the access log stays off.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
