"""``gradtui serve`` is no open door: a token, its own origin, a tab limit, one-line start errors.

Real servers on free ports, real HTTP and websocket clients (aiohttp). Refused connections start
no tab's process; the tab-limit test opens one real tab.
"""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest
from test_serve import ROOT, Served, free_port, read_until, start_serve


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory):
    """One server for the tests that open no tab."""
    served = start_serve(tmp_path_factory.mktemp("serve"))
    try:
        yield served
    finally:
        served.stop()


def status(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def ws_status(url: str, headers: dict[str, str] | None = None) -> int:
    """The status of a websocket handshake: 101 when it opened (then closed at once)."""
    import aiohttp

    async def attempt() -> int:
        async with aiohttp.ClientSession() as session:
            try:
                async with session.ws_connect(url, headers=headers or {}):
                    return 101
            except aiohttp.WSServerHandshakeError as exc:
                return exc.status

    return asyncio.run(attempt())


def test_the_printed_url_holds_a_secret_token(shared: Served, tmp_path: Path) -> None:
    line = rf"gradtui serve: open http://127\.0\.0\.1:{shared.port}/\?token=[\w-]{{43}} in a browser\n"
    assert re.fullmatch(line, shared.out[0]), shared.out
    other = start_serve(tmp_path)
    try:
        assert other.token != shared.token  # a new one each start (secrets.token_urlsafe)
    finally:
        other.stop()


def test_the_page_and_the_websocket_refuse_a_missing_or_wrong_token(shared: Served) -> None:
    for url in (
        shared.base + "/",
        shared.base + "/?token=",
        shared.base + "/?token=" + shared.token[:-1] + "x",
    ):
        code, text = status(url)
        assert code == 403 and "token" in text, (url, code)
    assert status(shared.page)[0] == 200
    ws = f"ws://127.0.0.1:{shared.port}"
    for url in (ws + "/ws", ws + "/ws?token=wrong", ws + "/ws/wrong", ws + "/ws?width=80&height=24"):
        assert ws_status(url) == 403, url


def test_the_websocket_refuses_a_foreign_origin(shared: Served) -> None:
    for origin in ("http://evil.example", "null", f"http://127.0.0.1:{shared.port + 1}", "https://127.0.0.1"):
        assert ws_status(shared.ws(), {"Origin": origin}) == 403, origin
    # a page served from another name of this address (DNS rebinding) is refused as a whole
    code, _ = status(shared.page, {"Host": f"evil.example:{shared.port}"})
    assert code == 403
    assert (
        ws_status(
            shared.ws(),
            {"Host": f"evil.example:{shared.port}", "Origin": f"http://evil.example:{shared.port}"},
        )
        == 403
    )


def test_no_directory_listing_and_no_download_route(shared: Served) -> None:
    for path in ("/static/", "/static/js/", "/static/css", "/static/../", "/download/x"):
        code, text = status(shared.base + path)
        assert code in (403, 404) and "Index of" not in text and "textual.js" not in text, (path, code)
    assert status(shared.base + "/static/js/textual.js")[0] == 200  # what the page needs


def test_the_page_points_its_websocket_at_the_host_the_browser_used(tmp_path: Path) -> None:
    """``--host 0.0.0.0``: one line on stderr, a URL that works from elsewhere, and a page whose
    websocket URL is the browser's own host (it was ``ws://0.0.0.0:…``)."""
    served = start_serve(tmp_path, "--host", "0.0.0.0")
    try:
        assert len(served.err) == 1 and "reachable from the network" in served.err[0], served.err
        assert "0.0.0.0" not in "".join(served.out)
        assert f"http://{socket.gethostname()}:{served.port}/?token={served.token}" in served.out[0]
        for host in (f"127.0.0.1:{served.port}", f"gpu-box.lan:{served.port}"):
            code, page = status(served.page, {"Host": host})
            assert code == 200 and f'data-session-websocket-url="ws://{host}/ws/{served.token}"' in page
        code, _ = status(served.page, {"Host": '"><script>x</script>'})
        assert code == 403
    finally:
        served.stop()


def test_a_loopback_server_prints_no_warning(shared: Served) -> None:
    assert shared.err == []


def test_tabs_at_once_are_bounded(tmp_path: Path) -> None:
    """``--max-tabs 1``: a second tab (another process, another training) gets a refusal, on the
    page and on the websocket, until the first one closes."""
    import aiohttp

    served = start_serve(tmp_path, "--max-tabs", "1")

    async def two_tabs() -> None:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(served.ws(width=80, height=24)) as ws,
        ):
            await read_until(ws, b"Builder")
            code, text = await asyncio.to_thread(status, served.page)
            assert code == 503 and "--max-tabs 1" in text, (code, text)
            try:
                async with session.ws_connect(served.ws()):
                    raise AssertionError("a second tab was opened")
            except aiohttp.WSServerHandshakeError as exc:
                assert exc.status == 503
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (await asyncio.to_thread(status, served.page))[0] != 200:
            await asyncio.sleep(0.2)
        assert (await asyncio.to_thread(status, served.page))[0] == 200  # the slot is free again

    try:
        asyncio.run(two_tabs())
    finally:
        served.stop()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--host", "nosuch.invalid"], "--host nosuch.invalid: unknown host"),
        (["--host", "192.0.2.1"], "--host 192.0.2.1: not an address of this machine"),
        (["--max-tabs", "0"], "--max-tabs"),
    ],
)
def test_a_bad_host_is_one_line_and_exit_2(tmp_path: Path, args: list[str], expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gradtui", "serve", *args, "--port", str(free_port())],
        cwd=tmp_path,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert expected in result.stderr, result.stderr


def test_a_busy_port_is_one_line_and_exit_2(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "gradtui", "serve", "--port", str(port)],
            cwd=tmp_path,
            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (
        result.returncode == 2
        and result.stderr
        == f"gradtui: error: --port {port}: already in use on 127.0.0.1; stop what listens there or give another --port\n"
    )


def test_textual_serve_is_what_serving_py_was_written_for() -> None:
    """``gradtui/tui/serving.py`` replaces textual-serve's app and renders its page template
    itself: the template's variables and the page script's URL handling must be what it knows."""
    import textual_serve
    from textual_serve.server import Server

    assert version("textual-serve").startswith("1.1."), version("textual-serve")
    folder = Path(textual_serve.__file__).parent
    template = (folder / "templates" / "app_index.html").read_text()
    for variable in (
        "{{ app_websocket_url }}",
        "{{ font_size }}",
        "{{ config.static.url }}",
        "application.name",
    ):
        assert variable in template, variable
    script = (folder / "static" / "js" / "textual.js").read_text()
    assert 'this.websocket_url+"?width="' in script  # why the token travels in the path
    for method in (
        "handle_websocket",
        "on_shutdown",
        "on_startup",
        "_make_app",
        "initialize_logging",
        "request_exit",
    ):
        assert callable(getattr(Server, method)), method
