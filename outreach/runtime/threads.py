"""Blocking work awaited from the daemon's event loop: the inbox sources block (IMAPClient)."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable


async def in_daemon_thread(work: Callable[[], None], stop: threading.Event) -> None:
    """Run blocking ``work`` in a daemon thread rather than the loop's executor, so a call
    stuck in a socket read never holds up the process's exit. Cancelling sets ``stop``."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def run() -> None:
        error: BaseException | None = None
        try:
            work()
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop may have closed meanwhile
            loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=run, name="inbox-watcher", daemon=True).start()
    try:
        await done
    finally:
        stop.set()
