"""``gradtui serve``: the TUI in a browser through textual-serve, on localhost."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(tmp_path: Path):
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADTUI_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradtui", "serve", "he-relu", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(url + "/", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            raise AssertionError("the server did not answer within 20 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_answers_the_page_and_the_websocket_draws_the_app(server: str) -> None:
    with urllib.request.urlopen(server + "/", timeout=5) as r:
        page = r.read().decode()
    assert "gradtui" in page and "/ws" in page

    async def talk() -> bytes:
        import aiohttp

        got = b""
        url = server.replace("http", "ws") + "/ws?width=100&height=30"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and b"Builder" not in got:
                try:
                    msg = await ws.receive(timeout=5)
                except asyncio.TimeoutError:
                    continue
                if msg.type == aiohttp.WSMsgType.BINARY:
                    got += msg.data
                elif msg.type == aiohttp.WSMsgType.TEXT:
                    got += msg.data.encode()
                else:
                    break
        return got

    drawn = asyncio.run(talk())
    assert b"Builder" in drawn  # the app's own tab title, drawn through the websocket


def test_serve_refuses_a_bad_preset_in_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from gradtui.cli import app

    result = CliRunner().invoke(app, ["serve", "no-such-preset", "--port", "1"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1


def start_own_server(tmp_path: Path) -> tuple[subprocess.Popen, int, Callable[[], list[str]]]:
    """``gradtui serve`` of a preset at a path of its own (to find the tab's process by):
    the server, its port (answering), and a function listing the tabs' process ids."""
    preset = tmp_path / "mine-he-relu.toml"
    preset.write_text((ROOT / "presets" / "he-relu.toml").read_text())
    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADTUI_STATE_DIR=str(tmp_path / "state"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradtui", "serve", str(preset), "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def tabs() -> list[str]:
        out = subprocess.run(["pgrep", "-f", f"gradtui tui {preset}"], capture_output=True, text=True).stdout
        return out.split()

    for _ in range(200):
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                break
        except OSError:
            time.sleep(0.1)
    return proc, port, tabs


async def read_until(ws: Any, text: bytes, seconds: float = 60) -> None:
    """Read the tab's screen updates until ``text`` was drawn."""
    deadline = time.monotonic() + seconds
    got = b""
    while time.monotonic() < deadline and text not in got:
        try:
            msg = await ws.receive(timeout=5)
        except asyncio.TimeoutError:
            continue
        got += msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
    assert text in got


def test_a_tabs_process_quits_when_the_server_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the server leaves no browser tab's process running (TensorFlow loaded,
    no one to see it): each one watches its parent and quits as ``q`` does."""
    import aiohttp

    proc, port, tabs = start_own_server(tmp_path)

    async def connect_then_kill() -> None:
        url = f"ws://127.0.0.1:{port}/ws?width=80&height=24"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await read_until(ws, b"Builder")
            assert len(tabs()) == 1
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    try:
        asyncio.run(connect_then_kill())
        deadline = time.monotonic() + 20
        while tabs() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert tabs() == [], "the tab's process outlived the server"
    finally:
        proc.kill()
        for pid in tabs():
            os.kill(int(pid), signal.SIGKILL)


def test_a_stopped_server_ends_its_tabs_at_once(tmp_path: Path) -> None:
    """SIGTERM (or Ctrl+C) to the server quits an open tab's process within seconds (it took
    textual-serve 11-23 s, waiting for the browser first) and the server follows."""
    import aiohttp

    proc, port, tabs = start_own_server(tmp_path)
    timings: dict[str, float] = {}

    async def connect_then_stop() -> None:
        url = f"ws://127.0.0.1:{port}/ws?width=80&height=24"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            await read_until(ws, b"TensorFlow loaded")  # the tab's import holds its GIL
            assert len(tabs()) == 1
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            while time.monotonic() - began < 30 and (proc.poll() is None or tabs()):
                if "tab" not in timings and not tabs():
                    timings["tab"] = time.monotonic() - began
                try:  # a browser reads on: it answers the server's close
                    await ws.receive(timeout=0.2)
                except (asyncio.TimeoutError, RuntimeError):
                    await asyncio.sleep(0.1)
            timings["server"] = time.monotonic() - began

    try:
        asyncio.run(connect_then_stop())
        assert proc.poll() == 0 and tabs() == [], timings
        assert timings.get("tab", 99.0) < 5.0, timings
    finally:
        proc.kill()
        for pid in tabs():
            os.kill(int(pid), signal.SIGKILL)
