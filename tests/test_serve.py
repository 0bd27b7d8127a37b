"""``gradtui serve``: the TUI in a browser through textual-serve, on localhost."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A ``gradtui serve`` process, answering: its page's URL (token included) and its output."""

    proc: subprocess.Popen
    port: int
    page: str
    token: str
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws(self, **query: object) -> str:
        """The websocket URL a client with the token connects to."""
        extra = "".join(f"&{k}={v}" for k, v in query.items())
        return f"ws://127.0.0.1:{self.port}/ws?token={self.token}{extra}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_serve(cwd: Path, *args: str, port: int | None = None) -> Served:
    """``gradtui serve ARGS --port PORT`` in ``cwd``, once it printed its URL and answers it."""
    port = port or free_port()
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADTUI_STATE_DIR=str(cwd / "state"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "gradtui", "serve", *args, "--port", str(port)],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out: list[str] = []
    err: list[str] = []
    for stream, lines in ((proc.stdout, out), (proc.stderr, err)):  # read on: never a full pipe
        threading.Thread(
            target=lambda s=stream, lines=lines: lines.extend(iter(s.readline, "")), daemon=True
        ).start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        found = [m for line in out if (m := re.search(r"(http://\S+/\?token=([\w-]+))", line))]
        if found:
            served = Served(proc, port, found[0].group(1), found[0].group(2), out, err)
            try:
                with urllib.request.urlopen(served.base + f"/?token={served.token}", timeout=2):
                    return served
            except OSError:
                pass
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"gradtui serve did not answer within 60 s: {out} {err}")


@pytest.fixture
def server(tmp_path: Path):
    served = start_serve(tmp_path, "he-relu")
    try:
        yield served
    finally:
        served.stop()


def test_serve_answers_the_page_and_the_websocket_draws_the_app(server: Served) -> None:
    """As a browser does: the printed URL's page, then the websocket URL the page names (with
    ``?width=…`` appended, as its script does), from the page's own origin."""
    with urllib.request.urlopen(server.page, timeout=5) as r:
        page = r.read().decode()
    assert "gradtui" in page
    ws_url = re.search(r'data-session-websocket-url="([^"]+)"', page).group(1)
    assert ws_url == f"ws://127.0.0.1:{server.port}/ws/{server.token}"

    async def talk() -> bytes:
        import aiohttp

        got = b""
        url = ws_url + "?width=100&height=30"
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(url, headers={"Origin": server.base}) as ws,
        ):
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


def start_own_server(tmp_path: Path) -> tuple[Served, Callable[[], list[str]]]:
    """``gradtui serve`` of a preset at a path of its own (to find the tab's process by):
    the server, answering, and a function listing the tabs' process ids."""
    preset = tmp_path / "mine-he-relu.toml"
    preset.write_text((ROOT / "presets" / "he-relu.toml").read_text())

    def tabs() -> list[str]:
        out = subprocess.run(["pgrep", "-f", f"gradtui tui {preset}"], capture_output=True, text=True).stdout
        return out.split()

    return start_serve(tmp_path, str(preset)), tabs


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

    served, tabs = start_own_server(tmp_path)
    proc = served.proc

    async def connect_then_kill() -> None:
        url = served.ws(width=80, height=24)
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

    served, tabs = start_own_server(tmp_path)
    proc = served.proc
    timings: dict[str, float] = {}

    async def connect_then_stop() -> None:
        url = served.ws(width=80, height=24)
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


STUCK_TAB = """
import asyncio, os, sys, time
from pathlib import Path
from gradtui.tui.app import create_app, follow_parent

app = create_app("he-relu", load_keras=False, runs_root=Path("runs"), state=Path("state"))
follow_parent(app, poll=0.1, grace=1.0)

async def main():
    async with app.run_test():
        print(os.getpid(), flush=True)
        time.sleep(120)  # the app's loop answers nothing (seen: a render failing on a dead pipe)

asyncio.run(main())
"""

SERVER_STAND_IN = """
import os, subprocess, sys
child = subprocess.Popen([sys.executable, "-c", sys.argv[1]], stdout=subprocess.PIPE, text=True,
                         stderr=subprocess.DEVNULL, env=dict(os.environ, GRADTUI_SERVED_BY=str(os.getpid())))
print(child.stdout.readline().strip(), flush=True)  # the tab is up: the "server" goes
"""


def _gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/status").read_text().split("State:")[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def test_a_tab_whose_app_is_stuck_still_quits_when_the_server_is_gone(tmp_path: Path) -> None:
    """The parent watcher asked the app to quit and waited for its answer: a tab whose app
    could not answer (orphaned after its browser and server were gone) ran on for minutes at
    full CPU. It now leaves ``grace`` seconds after the server, answer or not."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), GRADTUI_STATE_DIR=str(tmp_path / "state"))
    server = subprocess.run(
        [sys.executable, "-c", SERVER_STAND_IN, STUCK_TAB],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    pid = int(server.stdout.split()[0])
    deadline = time.monotonic() + 15
    while not _gone(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    try:
        assert _gone(pid), "the tab's process outlived its server"
    finally:
        if not _gone(pid):
            os.kill(pid, signal.SIGKILL)
