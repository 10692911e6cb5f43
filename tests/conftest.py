"""Shared test settings and fixtures: no test reaches the internet; :func:`file_server` serves
files from 127.0.0.1 to the tests of downloads."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Weights missing from the torch hub cache are an error, never a download; the tests of
    # downloading clear this and serve files from 127.0.0.1.
    monkeypatch.setenv("OWP_OFFLINE", "1")


class _Handler(http.server.BaseHTTPRequestHandler):
    """GET and HEAD of the server's folder, with ``Range: bytes=N-`` (206) and the failure
    modes the server is told to play."""

    server: _FileServer

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's name)
        self._answer(body=False)

    def do_GET(self) -> None:  # noqa: N802
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        path = self.server.root / self.path.lstrip("/")
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        wanted = self.headers.get("Range")
        if wanted and self.server.ranges and wanted.startswith("bytes=") and wanted.endswith("-"):
            start = int(wanted[len("bytes=") : -1])
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        if not body:
            return
        payload = data[start:]
        cut = self.server.cut_after.pop(self.path, self.server.cut_every.get(self.path))
        if cut is not None:  # the connection drops after `cut` bytes of this response
            self.wfile.write(payload[:cut])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(payload)

    def log_message(self, *args) -> None:
        pass


class _FileServer(http.server.ThreadingHTTPServer):
    root: Path
    requests: list[tuple[str, str, str | None]]
    cut_after: dict[str, int]
    cut_every: dict[str, int]
    ranges: bool


@dataclass
class FileServer:
    """A loopback HTTP server of the files under ``root``: ``url(name)``; ``cut_after[path]``
    drops the next response of ``/path`` after that many bytes, ``cut_every[path]`` every
    response; ``ranges`` off ignores
    ``Range``; ``requests`` lists ``(method, path, Range header)``."""

    root: Path
    server: _FileServer

    def url(self, name: str) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/{name}"

    @property
    def requests(self) -> list[tuple[str, str, str | None]]:
        return self.server.requests

    @property
    def cut_after(self) -> dict[str, int]:
        return self.server.cut_after

    @property
    def cut_every(self) -> dict[str, int]:
        return self.server.cut_every


@pytest.fixture
def file_server(tmp_path: Path) -> Iterator[FileServer]:
    """A :class:`FileServer` on 127.0.0.1 serving ``tmp_path / "served"``."""
    root = tmp_path / "served"
    root.mkdir()
    server = _FileServer(("127.0.0.1", 0), _Handler)
    server.root, server.requests, server.ranges = root, [], True
    server.cut_after, server.cut_every = {}, {}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield FileServer(root, server)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
