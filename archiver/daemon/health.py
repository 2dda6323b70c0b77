"""The daemon's HTTP endpoint: ``/healthz``, ``/readyz`` and ``/metrics`` (Prometheus text format).

A standard-library threading HTTP server on a daemon thread is enough for three
read-only paths polled by a monitor; it binds to loopback by default because the
metrics name sources and the endpoint has no authentication.  Handlers only read
the metrics registry and a health callable, never the archive, so a scrape can
not interfere with a running job.

Two questions, two paths.  ``/healthz`` answers "is the daemon alive" (200 while the
scheduler runs, else 503): a supervisor may restart on it, and restarting cannot
make an unreachable mail server answer, so a failing job does not turn it 503; its
JSON says ``"status": "degraded"`` and lists the failing jobs.  ``/readyz`` answers
"is everything working": 503 also while any job's last run failed (a sync with a
source or message failure, a retention sweep, a verify), for monitors that page.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from archiver.daemon.metrics import CONTENT_TYPE_LATEST
from archiver.errors import ConfigError
from archiver.logging import get_logger

log = get_logger("archiver.daemon.http")

Health = Callable[[], tuple[bool, dict[str, Any]]]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class HealthServer:
    """Serves /healthz (200 while alive), /readyz (200 while no job fails), JSON either way, and /metrics."""

    def __init__(self, host: str, port: int, health: Health, metrics: Callable[[], bytes]) -> None:
        handler = _handler(health, metrics)
        server_cls = _Server6 if ":" in host else _Server
        try:
            self.server: _Server = server_cls((host, port), handler)
        except OSError as exc:
            raise ConfigError(
                f"daemon.listen: cannot listen on {host}:{port} ({exc.strerror or exc}); "
                "choose a free port or another address."
            ) from None
        self.thread = threading.Thread(target=self.server.serve_forever, name="archiver-http", daemon=True)

    @property
    def address(self) -> str:
        addr = self.server.server_address
        host, port = str(addr[0]), int(addr[1])
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _handler(health: Health, metrics: Callable[[], bytes]) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "archiver"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path in ("/healthz", "/readyz"):
                alive, detail = health()
                failing = bool(detail.get("failing"))
                if alive and failing:
                    detail["status"] = "degraded"
                ok = alive and not (failing and path == "/readyz")
                self._send(200 if ok else 503, "application/json", json.dumps(detail).encode() + b"\n")
            elif path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, metrics())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /healthz, /readyz or /metrics\n")

        def _send(self, code: int, ctype: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http request", client=self.client_address[0], request=format % args)

    return Handler
