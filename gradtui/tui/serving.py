"""``gradtui serve``'s web server: textual-serve's, made to end its tabs at once when stopped.

textual-serve stops a tab's process only when that tab's websocket handler returns, and on
SIGTERM/Ctrl+C aiohttp first waits for the handlers, which wait for their browsers: with a tab
open the server took 11-23 s to go. Here the shutdown cancels the handlers, whose own cleanup
sends each tab's process textual's ``quit`` (it stops a training as ``q`` does, so the run
directory is finished) and waits for it.

This overrides two methods of textual-serve's ``Server`` that are not a documented extension
point (``handle_websocket``, ``on_shutdown``; written against textual-serve 1.1.3 and aiohttp
3.14): ``tests/test_serve.py::test_a_stopped_server_ends_its_tabs_at_once`` says whether it
still holds.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual_serve.server import Server

#: how long a shutdown waits for the tabs' handlers (a tab that quits still closes its
#: websocket, which waits for the browser's answer)
SHUTDOWN_WAIT_S = 10.0


class GradtuiServer(Server):
    """A textual-serve ``Server`` whose shutdown ends the open tabs first."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handlers: set[asyncio.Task[Any]] = set()

    async def handle_websocket(self, request: Any) -> Any:
        task = asyncio.current_task()
        if task is not None:
            self._handlers.add(task)
        try:
            return await super().handle_websocket(request)
        finally:
            self._handlers.discard(task)  # type: ignore[arg-type]

    async def on_shutdown(self, app: Any) -> None:
        await super().on_shutdown(app)
        handlers = list(self._handlers)
        for task in handlers:
            task.cancel()
        if handlers:
            await asyncio.wait(handlers, timeout=SHUTDOWN_WAIT_S)
