"""The event loop and worker pool that host nodes.

Nodes are asyncio objects. A :class:`Runtime` runs one event loop in one thread and a small
thread pool for blocking work (training, evaluation), so hosting many simulated nodes needs
a constant number of threads. Each standalone :class:`~p2pfl.node.Node` creates its own
runtime; simulations share one.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")


def default_workers() -> int:
    """Worker threads for training: ``P2PFL_WORKERS`` or the number of CPUs (at most 8)."""
    env = os.environ.get("P2PFL_WORKERS")
    return max(1, int(env)) if env else min(8, os.cpu_count() or 1)


class Runtime:
    """An event loop in a background thread plus an executor for blocking work."""

    def __init__(self, workers: int | None = None, name: str = "p2pfl") -> None:
        self.loop = asyncio.new_event_loop()
        self.executor = ThreadPoolExecutor(max_workers=workers or default_workers(), thread_name_prefix=f"{name}-work")
        self.loop.set_default_executor(self.executor)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"{name}-loop", daemon=True)
        self._thread.start()
        self._ready.wait()
        self._closed = False

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._ready.set)
        self.loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (from any thread but the loop's)."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("Runtime.run() called from the event loop thread; await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run a plain function on the loop thread and return its result."""

        async def wrapper() -> T:
            return fn(*args)

        return self.run(wrapper())

    async def in_worker(self, fn: Callable[..., T], *args: Any) -> T:
        """Await ``fn(*args)`` run in the worker pool (from the loop)."""
        return await self.loop.run_in_executor(self.executor, fn, *args)

    def close(self) -> None:
        """Stop the loop and the workers. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.loop.close()

    def __enter__(self) -> Runtime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
