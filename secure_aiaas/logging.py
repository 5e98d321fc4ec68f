"""Structured logs: JSON lines, a request id on every line, secrets and payloads masked.

Logs serve operators; the audit store is the record. A redaction processor masks any field
whose name says it may carry a payload or a secret, wherever it is nested, as a last line of
defence: code must not log such values in the first place.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

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


def redact_processor(_logger: Any, _name: str, event_dict: MutableMapping[str, Any]) -> Any:
    for key in list(event_dict):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact(event_dict[key])
    return event_dict


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
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
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
