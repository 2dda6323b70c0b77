"""structlog setup: JSON lines when not on a terminal, readable console output on one.

Standard-library logging (exchangelib, msal, apscheduler, imapclient, the connectors)
is routed into the same stream so a service has one log format, and the fields such a
logger passes in ``extra={...}`` (the connectors' ``mailbox``, ``wait_s``) are kept as
fields.  Context (job, source, account) is bound per job with ``structlog.contextvars``.
contextvars do not cross threads on their own: code that logs from threads of its own
runs them in a copy of its context (``contextvars.copy_context().run``, as the Graph
connector's fetch pool and archiver/prefetch.py do), so their lines keep the job and source.

Secrets stay out of the log: tracebacks are rendered without frame locals (structlog's
console renderer shows every frame's locals through rich by default, and msal's frames
hold the client secret), fields named like a credential are masked, and HTTP client
libraries, whose request lines carry Graph delta and skip tokens in their URLs, log
only warnings.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: libraries whose debug output is noise, or carries secrets (exchangelib's has the
#: Authorization header): capped at INFO whatever the level asked for.
_CHATTY = ("exchangelib", "msal", "apscheduler", "imapclient", "urllib3")
#: HTTP clients that log every request at INFO, with its full URL (a Graph delta link is
#: a cursor into a mailbox): WARNING, unless debug output was asked for.
_REQUEST_LOGGERS = ("httpx", "httpcore")

#: a field whose name contains one of these is masked, whatever logged it.
_SECRET_WORDS = ("password", "passphrase", "secret", "token", "credential", "authorization")
MASK = "[redacted]"

#: LogRecord attributes that a formatter adds; never ``extra`` (logging refuses them there).
_FORMATTER_ATTRS = ("message", "asctime")

_extra_adder = structlog.stdlib.ExtraAdder()


def _add_extra(logger: WrappedLogger, method: str, event_dict: EventDict) -> EventDict:
    """A stdlib record's ``extra={...}`` fields, as fields of the line."""
    event_dict = _extra_adder(logger, method, event_dict)
    for key in _FORMATTER_ATTRS:  # set on the record when another handler formatted it first
        event_dict.pop(key, None)
    return event_dict


def _mask_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Mask fields named like a credential (``client_secret=``, ``password=``, ``access_token=``).

    A last line of defence: no code here logs such a field on purpose, but a field is
    easy to add and a log is copied to many places.
    """
    for key in list(event_dict):
        if not key.startswith("_") and any(word in key.lower() for word in _SECRET_WORDS):
            event_dict[key] = MASK
    return event_dict


def setup_logging(level: str = "info", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    final: list[Any] = [structlog.stdlib.ProcessorFormatter.remove_processors_meta, _mask_secrets]
    if use_json:
        # A plain traceback text (no locals) instead of ``"exc_info": true``.
        final += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        # Explicitly plain: the default formatter is rich's (or better-exceptions'), which
        # prints every frame's local variables, secrets included.
        final.append(structlog.dev.ConsoleRenderer(colors=False, exception_formatter=structlog.dev.plain_traceback))
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(foreign_pre_chain=[*shared, _add_extra], processors=final))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    wanted = _LEVELS.get(level, logging.INFO)
    root.setLevel(wanted)
    # Chatty libraries: keep their warnings, drop their debug noise.
    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(wanted, logging.INFO))
    for name in _REQUEST_LOGGERS:
        logging.getLogger(name).setLevel(logging.INFO if wanted == logging.DEBUG else max(wanted, logging.WARNING))


def get_logger(name: str = "archiver") -> Any:
    return structlog.get_logger(name)


