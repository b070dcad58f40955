"""Structured logs: one JSON object per line on standard error, for the service's own lines and
every library's (the standard `logging` records go through the same renderer), each carrying the
request id of the request it belongs to. Request ids: taken from the caller's `X-Request-Id` when
well-formed, else generated; sent back on every response and in every error body.

Nothing here logs a body, a header value or a query string: card data, tokens and secrets never
reach the log (tests/integration/test_observability.py reads every line of a card's story)."""

from __future__ import annotations

import logging
import re
import sys
import uuid
from contextvars import ContextVar

import structlog

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's request id is used when it is 1 to 64 of these characters; anything else is replaced.
REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

_SHARED_PROCESSORS = [
    structlog.contextvars.merge_contextvars,
    structlog.stdlib.add_log_level,
    structlog.stdlib.add_logger_name,
    structlog.processors.TimeStamper(fmt="iso", utc=True),
]


def request_id_of(header_value: str | None) -> str:
    """The caller's request id when well-formed, else a new one."""
    if header_value is not None and REQUEST_ID_PATTERN.match(header_value):
        return header_value
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    return request_id_var.get()


def configure_structlog() -> None:
    """structlog's events go to the standard library's loggers (and so to its handlers)."""
    structlog.configure(
        processors=[*_SHARED_PROCESSORS, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )


def json_formatter() -> logging.Formatter:
    """Every record, structlog's or a library's, as one JSON object."""
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_SHARED_PROCESSORS,
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    structlog.processors.format_exc_info,
                    structlog.processors.JSONRenderer()],
    )


def configure_logging(level: int = logging.INFO, stream=None) -> None:
    """JSON lines on standard error for everything logged in the process."""
    configure_structlog()
    handler = logging.StreamHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(json_formatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("pgserver").setLevel(logging.WARNING)  # its start-up chatter is not ours
