"""``gradtui serve``: the TUI in a browser through textual-serve, on localhost."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

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


def test_a_tabs_process_quits_when_the_server_is_killed(tmp_path: Path) -> None:
    """``kill -9`` of the server leaves no browser tab's process running (TensorFlow loaded,
    no one to see it): each one watches its parent and quits as ``q`` does."""
    import signal

    import aiohttp

    preset = tmp_path / "mine-he-relu.toml"  # a path of its own, to find the tab's process by
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

    async def connect_then_kill() -> None:
        url = f"ws://127.0.0.1:{port}/ws?width=80&height=24"
        async with aiohttp.ClientSession() as session, session.ws_connect(url) as ws:
            deadline = time.monotonic() + 60
            got = b""
            while time.monotonic() < deadline and b"Builder" not in got:
                try:
                    msg = await ws.receive(timeout=5)
                except asyncio.TimeoutError:
                    continue
                got += msg.data if isinstance(msg.data, bytes) else str(msg.data).encode()
            assert b"Builder" in got
            assert len(tabs()) == 1
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)

    try:
        for _ in range(200):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1):
                    break
            except OSError:
                time.sleep(0.1)
        asyncio.run(connect_then_kill())
        deadline = time.monotonic() + 20
        while tabs() and time.monotonic() < deadline:
            time.sleep(0.5)
        assert tabs() == [], "the tab's process outlived the server"
    finally:
        proc.kill()
        for pid in tabs():
            os.kill(int(pid), signal.SIGKILL)
