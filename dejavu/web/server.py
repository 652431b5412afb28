"""A static file server for a site folder (``dejavu web --serve``), bound to 127.0.0.1 unless told otherwise."""

from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

#: Types the page needs right (module scripts are refused under a wrong MIME type).
MIME = {".js": "text/javascript", ".mjs": "text/javascript", ".json": "application/json", ".bin": "application/octet-stream",
        ".wasm": "application/wasm", ".html": "text/html; charset=utf-8"}


class _Handler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map, **MIME}

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-store")  # a rebuilt site must not mix with a cached avatar
        super().end_headers()

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - the stdlib's signature
        pass


def make_server(directory: str | Path, host: str = "127.0.0.1", port: int = 8000) -> http.server.ThreadingHTTPServer:
    """A threading HTTP server for ``directory`` (port 0: any free port; ``server.server_address`` says which)."""
    handler = functools.partial(_Handler, directory=str(directory))
    return http.server.ThreadingHTTPServer((host, port), handler)


def serve_in_thread(directory: str | Path, host: str = "127.0.0.1", port: int = 0):
    """Start :func:`make_server` on a daemon thread; returns (server, base URL). Call ``server.shutdown()``."""
    server = make_server(directory, host, port)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    h, p = server.server_address[:2]
    return server, f"http://{h}:{p}/"
