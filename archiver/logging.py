"""structlog setup: JSON lines when not on a terminal, readable console output on one.

Standard-library logging (exchangelib, msal, apscheduler, imapclient) is routed
into the same stream so a service has one log format.  Context (source, account,
message id) is bound per job with ``structlog.contextvars``; threads started by a
scheduler must bind their own context, since contextvars do not cross threads.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any = structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(_LEVELS.get(level, logging.INFO))
    # Chatty libraries: keep their warnings, drop their debug noise unless asked for.
    for name in ("exchangelib", "msal", "apscheduler", "imapclient", "httpx", "httpcore", "urllib3"):
        logging.getLogger(name).setLevel(max(_LEVELS.get(level, logging.INFO), logging.INFO))


def get_logger(name: str = "archiver") -> Any:
    return structlog.get_logger(name)
