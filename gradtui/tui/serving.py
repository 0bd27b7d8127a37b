"""``gradtui serve``'s web server: textual-serve's, made to end its tabs at once when stopped.

textual-serve stops a tab's process only when that tab's websocket handler returns, and on
SIGTERM/Ctrl+C aiohttp first waits for the handlers, which wait for their browsers: with a tab
open the server took ~23 s to go. Here the shutdown cancels the handlers, whose own cleanup
sends each tab's process textual's ``quit`` (it stops a training as ``q`` does, so the run
directory is finished) and waits for it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from textual_serve.server import Server

#: how long a shutdown waits for the tabs' handlers (a tab that quits still closes its
#: websocket, which waits for the browser's answer)
SHUTDOWN_WAIT_S = 10.0


def make_server(command: str, *, host: str, port: int, title: str) -> Any:
    """A textual-serve ``Server`` for ``command`` whose shutdown ends the open tabs first."""

    class GradtuiServer(Server):
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

    return GradtuiServer(command, host=host, port=port, title=title)
