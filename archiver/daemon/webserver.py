"""The web UI served from the daemon (``daemon.serve_web: true``).

The web server gets its own Archive object (its own SQLite connections and index
reader) over the same folder, so the scheduler's worker thread and the web
request threads never share a connection; it reuses the keys the daemon already
unlocked instead of deriving them from the passphrase a second time.
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

        from archiver.web.app import create_app

        self.archive = archive.sibling(cfg)
        host, port = parse_listen(cfg.web.listen, "web.listen")
        app = create_app(cfg, self.archive)
        self.address = f"{host}:{port}"
        self.server: Any = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False, lifespan="on")
        )
        # uvicorn installs signal handlers only in the main thread: the daemon keeps its own.
        self.thread = threading.Thread(target=self.server.run, name="web", daemon=True)

    def start(self) -> None:
        self.thread.start()
        log.info("web UI started", listen=self.address)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        self.archive.close()
