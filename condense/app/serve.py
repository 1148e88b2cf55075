"""Serve a ``condense app`` site on the loopback interface.

Module scripts and WebAssembly do not load from ``file://`` (CORS), so the site is served over
HTTP. Cross-origin isolation headers (COOP / COEP) give the page a fine ``performance.now()``
clock; ``no-store`` keeps a browser from scoring with a model file from an earlier site.
"""

from __future__ import annotations

import functools
import http.server
from pathlib import Path

__all__ = ["make_server", "SITE_HEADERS"]

#: Headers sent with every file of the site.
SITE_HEADERS = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
}


class _SiteHandler(http.server.SimpleHTTPRequestHandler):
    extensions_map = {**http.server.SimpleHTTPRequestHandler.extensions_map,
                      ".js": "text/javascript", ".wasm": "application/wasm", ".json": "application/json",
                      ".tflite": "application/octet-stream"}

    def end_headers(self):
        for name, value in SITE_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        if self.server.verbose:
            super().log_message(format, *args)


def make_server(site, *, host: str = "127.0.0.1", port: int = 8000, verbose: bool = False):
    """A :class:`http.server.ThreadingHTTPServer` serving the folder ``site`` (``port=0``: any free
    port; ``server.server_address`` tells which). Call ``serve_forever()``; ``shutdown()`` stops it."""
    site = Path(site)
    if not (site / "index.html").is_file():
        raise FileNotFoundError(f"{site} is not a condense app site (no index.html): run `condense app` first")
    handler = functools.partial(_SiteHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer((host, port), handler)
    server.verbose = verbose
    return server
