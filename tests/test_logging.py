"""archiver.logging: the fields, context and secrets of what reaches the log stream."""

from __future__ import annotations

import contextvars
import io
import json
import logging
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import structlog
from structlog.contextvars import bound_contextvars

from archiver.logging import MASK, get_logger, setup_logging

SECRET = "Sup3r-Secr3t-Client-Value"


class _Stream(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """setup_logging reconfigures the process: give the next test the logging it had."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    names = ("exchangelib", "msal", "apscheduler", "imapclient", "urllib3", "httpx", "httpcore")
    levels = {n: logging.getLogger(n).level for n in names}
    config = structlog.get_config()
    try:
        yield
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
        for n, lv in levels.items():
            logging.getLogger(n).setLevel(lv)
        structlog.configure(**config)


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_stdlib_extra_fields_are_kept() -> None:
    out = _Stream(tty=False)
    setup_logging("info", "json", out)
    with bound_contextvars(job="sync:exo", source="exo"):
        logging.getLogger("connectors.graph").warning(
            "graph mailbox failed", extra={"source": "exo", "mailbox": "jeff@example.com"}
        )
    [line] = lines(out)
    assert line["event"] == "graph mailbox failed"
    assert line["mailbox"] == "jeff@example.com" and line["job"] == "sync:exo" and line["source"] == "exo"
    assert "message" not in line and "_record" not in line


def test_the_graph_fetch_pool_logs_with_the_jobs_context() -> None:
    """Graph fetches messages in a thread pool of its own; each fetch runs in a copy of the
    syncing thread's context, so its lines keep the job, source and account the daemon bound.
    Threads that copy nothing (the scheduler's, the HTTP server's) carry no job's context."""
    import inspect

    from connectors import graph

    assert "copy_context().run" in inspect.getsource(graph), "the fetch pool must copy the caller's context"
    out = _Stream(tty=False)
    setup_logging("info", "json", out)
    log = logging.getLogger("connectors.graph")
    with bound_contextvars(job="sync:exo", source="exo", account="jeff@example.com"), ThreadPoolExecutor(2) as pool:
        futures = [pool.submit(contextvars.copy_context().run, log.info, "graph request retried", extra={"wait_s": 2})
                   for _ in range(2)]  # fmt: skip
        for f in futures:
            f.result()
        # the same pool's threads, reused without a copied context, log without the job
        pool.submit(log.info, "reused thread").result()
    retried = [e for e in lines(out) if e["event"] == "graph request retried"]
    assert len(retried) == 2
    for e in retried:
        assert (e["job"], e["source"], e["account"], e["wait_s"]) == ("sync:exo", "exo", "jeff@example.com", 2)
    [reused] = [e for e in lines(out) if e["event"] == "reused thread"]
    assert "job" not in reused


def _fail_with_a_secret_local() -> None:
    client_credential = SECRET  # what msal's ClientApplication.__init__ frame holds
    raise ValueError(f"bad ca_file ({len(client_credential)} chars of secret in this frame)")


@pytest.mark.parametrize("tty", [True, False], ids=["console", "json"])
def test_tracebacks_never_show_frame_locals(tty: bool) -> None:
    out = _Stream(tty=tty)
    setup_logging("info", "auto", out)
    for logger in (get_logger("archiver.daemon").exception, logging.getLogger("msal").exception):
        try:
            _fail_with_a_secret_local()
        except ValueError:
            logger("sync failed unexpectedly")
    text = out.getvalue()
    assert text.count("_fail_with_a_secret_local") >= 2, text  # a traceback is there ...
    assert SECRET not in text and "client_credential =" not in text  # ... without the frame's locals


def test_fields_named_like_secrets_are_masked() -> None:
    out = _Stream(tty=False)
    setup_logging("info", "json", out)
    get_logger("archiver").info("token refreshed", client_secret=SECRET, access_token=SECRET, mailbox="a@b")
    logging.getLogger("connectors.x").info("login", extra={"password": SECRET})
    text = out.getvalue()
    assert SECRET not in text
    first, second = lines(out)
    assert first["client_secret"] == MASK and first["access_token"] == MASK and first["mailbox"] == "a@b"
    assert second["password"] == MASK


@pytest.mark.parametrize(("level", "expected"), [("info", logging.WARNING), ("debug", logging.INFO)])
def test_http_client_request_lines_are_quiet(level: str, expected: int) -> None:
    """httpx logs every Graph request at INFO with its URL (delta and skip tokens)."""
    out = _Stream(tty=False)
    setup_logging(level, "json", out)
    for name in ("httpx", "httpcore"):
        assert logging.getLogger(name).getEffectiveLevel() == expected
    if level == "info":
        url = "https://graph.microsoft.com/v1.0/users/x/mailFolders/y/messages/delta?$deltatoken=abc"
        logging.getLogger("httpx").info('HTTP Request: GET %s "HTTP/1.1 200 OK"', url)
        assert "deltatoken" not in out.getvalue()
