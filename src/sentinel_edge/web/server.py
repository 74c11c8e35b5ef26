"""The API server: uvicorn in a thread of the agent, on a socket the agent binds itself.

Binding here (not in uvicorn) gives bind errors with their cause and lets
``port 0`` pick a free port that the status then names. The server runs in
its own thread with its own event loop; the watchdog restarts it (new
socket, same address) if that thread dies.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import time
from typing import Any

import uvicorn

from sentinel_edge.config import ApiConfig, is_loopback, split_listen
from sentinel_edge.errors import ApiError

log = logging.getLogger(__name__)


class ApiServer:
    def __init__(self, app: Any, cfg: ApiConfig) -> None:
        self.app = app
        self.cfg = cfg
        self.host, self.port = split_listen(cfg.listen)
        if not is_loopback(self.host) and not (cfg.tls_cert and cfg.tls_key):
            raise ApiError(f"api.listen {cfg.listen}: not a loopback address, and TLS is not configured "
                           "(api.tls_cert, api.tls_key): refusing to serve the API in clear text")
        self.scheme = "https" if cfg.tls_cert else "http"
        self.bound_port = 0
        self.error: str | None = None
        self.started_at = 0.0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None

    def _bind(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        host = "127.0.0.1" if self.host == "localhost" else self.host
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.bound_port or self.port))
            sock.listen(128)
            sock.set_inheritable(False)
        except OSError as exc:
            sock.close()
            raise ApiError(f"api.listen {self.cfg.listen}: cannot listen: {exc.strerror or exc}") from exc
        return sock

    def start(self, timeout: float = 10.0) -> None:
        sock = self._bind()
        self.bound_port = sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                                ssl_certfile=self.cfg.tls_cert, ssl_keyfile=self.cfg.tls_key,
                                timeout_graceful_shutdown=2, server_header=False)
        try:
            config.load()  # TLS files are read here: a bad certificate is an error now, not in the thread
        except (OSError, ValueError) as exc:
            sock.close()
            raise ApiError(f"api.tls_cert / api.tls_key: {exc}") from exc
        server = uvicorn.Server(config)
        self._server = server
        self._crash = None

        def serve() -> None:
            try:
                asyncio.run(server.serve(sockets=[sock]))
            except BaseException as exc:  # recorded for the watchdog and the status
                self._crash = exc
                log.error("API server stopped: %r", exc)
            finally:
                sock.close()

        self._thread = threading.Thread(target=serve, name="api-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            raise ApiError(f"API server on {self.cfg.listen} did not start: {self._crash!r}")
        self.started_at = time.time()
        self.error = None
        log.info("console and API at %s", self.url)

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.bound_port}"

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def last_error(self) -> str | None:
        return repr(self._crash) if self._crash is not None else self.error

    def restart(self) -> None:
        self.stop()
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(1.0)

    def describe(self) -> dict[str, Any]:
        return {"state": "listening" if self.alive() else "stopped", "url": self.url, "listen": self.cfg.listen,
                "tls": self.scheme == "https", "error": self.last_error()}
