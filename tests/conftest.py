"""Shared test settings, fixtures and helpers: no test reaches the internet; :func:`file_server`
serves files from 127.0.0.1 to the tests of downloads; :func:`run_owp`, :func:`run_cli` and
:func:`run_quietly` run the ``owp`` command line in-process."""

from __future__ import annotations

import contextlib
import http.server
import io
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from owp.cli import main

COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco-mini"
"""343 real COCO train images beside the checkout (``../shared``); absent from a fresh clone, so
the tests that read them skip."""


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    # Weights missing from the torch hub cache are an error, never a download; the tests of
    # downloading clear this and serve files from 127.0.0.1.
    monkeypatch.setenv("OWP_OFFLINE", "1")


@pytest.fixture(scope="session")
def _small_default_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session's ``OWP_HOME``, where the default synthetic set is generated small."""
    return tmp_path_factory.mktemp("owp-home")


@pytest.fixture(autouse=True)
def _small_default_set(_small_default_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # ``data.train: synthetic`` (a checkpoint's saved default config, a preset) names the
    # default set: 1000 photo images at 640 px, minutes to generate. Tests never build it or
    # read the user's cache: OWP_HOME is a session folder and the default there is 8 + 4 flat
    # images at 96 px. tests/data/test_default_set.py checks the real default's config.
    import functools

    import owp.data.locate
    from owp.data.synthetic import SynthConfig

    small = functools.partial(SynthConfig, num_train=8, num_val=4, image_size=96, style="flat")
    monkeypatch.setenv("OWP_HOME", str(_small_default_home))
    monkeypatch.setattr(owp.data.locate, "SynthConfig", small)


class Run(NamedTuple):
    """One ``owp`` call: exit status and captured output."""

    code: int
    out: str
    err: str


@contextlib.contextmanager
def owp_logger_restored() -> Iterator[None]:
    """main() installs a handler on the "owp" logger bound to the current sys.stderr and stops
    propagation; put the logger back so other test modules (and caplog) are unaffected."""
    logger = logging.getLogger("owp")
    handlers, level, propagate = list(logger.handlers), logger.level, logger.propagate
    try:
        yield
    finally:
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate


def run_owp(*argv: object) -> int:
    """``owp ARGV`` in-process (arguments as strings), leaving the ``owp`` logger as it was;
    returns the exit status."""
    with owp_logger_restored():
        return main([str(arg) for arg in argv])


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> Run:
    """:func:`run_owp`, with the output ``capsys`` captured."""
    code = run_owp(*argv)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)


def run_quietly(*argv: object) -> Run:
    """Like :func:`run_cli`, for module-scoped fixtures where capsys is not available."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = run_owp(*argv)
    return Run(code, out.getvalue(), err.getvalue())


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


@pytest.fixture(scope="session")
def synthetic_set_factory(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """``factory(**SynthConfig options)``: a small synthetic open-world set generated into a new
    temporary folder (one per call, so tests never share what they may write into it). The
    style is ``flat`` unless named: the engine and CLI tests need any labelled set, and the flat
    one renders about 10x faster at 96 px; the data and demo tests ask for ``photo``."""
    from owp.data.synthetic import SynthConfig, generate_synthetic_dataset

    def make(**options: Any) -> Path:
        folder = tmp_path_factory.mktemp("synth")
        generate_synthetic_dataset(folder, SynthConfig(**{"style": "flat", **options}))
        return folder

    return make


def small_run_config(preset: str, folder: Path, size: int, *overrides: str) -> Any:
    """The ``RunConfig`` of ``preset`` trained and evaluated on the synthetic set in ``folder``
    at ``size`` px, in-process data loading, AR@10/100, then ``overrides`` (``key=value``)."""
    from owp.config import apply_overrides, load_preset

    common = [
        f"data.train={folder}",
        f"data.val={folder}",
        "data.num_workers=0",
        f"model.min_size={size}",
        f"model.max_size={size}",
        "eval.max_dets=[10, 100]",
    ]
    return apply_overrides(load_preset(preset), [*common, *overrides])
