"""The web UI served from the daemon (``daemon.serve_web: true``).

The web server gets its own Archive object (its own SQLite connections and index
reader) over the same folder, so the scheduler's worker thread and the web
request threads never share a connection; it reuses the keys the daemon already
unlocked instead of deriving them from the passphrase a second time.

On SIGHUP the daemon hands the reloaded config to :meth:`WebServer.reconfigure`: the web
users and walls take effect from the next request, and the sessions of removed users or
changed passwords end.  The other ``web`` settings need a restart (each change is logged).
"""

from __future__ import annotations

import threading
from typing import Any

from archiver.archive import Archive
from archiver.config import Config, parse_listen
from archiver.logging import get_logger

log = get_logger("archiver.daemon.web")


class WebServer:
    """uvicorn in a background thread; ``stop()`` asks it to finish its requests and exit."""

    def __init__(self, cfg: Config, archive: Archive) -> None:
        import uvicorn

        from archiver.web.app import create_app, uvicorn_options

        self.archive = archive.sibling(cfg)
        host, port = parse_listen(cfg.web.listen, "web.listen")
        self.app = create_app(cfg, self.archive)
        self.address = f"{host}:{port}"
        self.server: Any = uvicorn.Server(
            uvicorn.Config(self.app, host=host, port=port, lifespan="on", **uvicorn_options(cfg.web))
        )
        # uvicorn installs signal handlers only in the main thread: the daemon keeps its own.
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self) -> None:
        self.thread.start()
        log.info("web UI started", listen=self.address)

    def reconfigure(self, cfg: Config) -> None:
        """Use the web users and walls of a reloaded config (ConfigError, and no change, when they do not load)."""
        self.app.state.web.reconfigure(cfg)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.archive.close()
