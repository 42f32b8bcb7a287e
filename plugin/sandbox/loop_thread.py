"""Runs an asyncio server object on its own event loop in a daemon thread, for synchronous code
(tests that drive a real `switchboard` process, the sandbox, benchmarks)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar


class Server(Protocol):
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


S = TypeVar("S", bound=Server)


class LoopThread(Generic[S]):
    """`start()` builds the server with `factory` inside the thread's loop and returns it once
    it listens; `call()` runs work on that loop; `stop()` stops the server and the thread."""

    name = "server"

    def __init__(self, factory: Callable[[], S]) -> None:
        self._factory = factory
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.simulator: S | None = None

    def start(self) -> S:
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            try:
                self.simulator = self._factory()
                loop.run_until_complete(self.simulator.start())
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(self.simulator.stop())
                loop.close()

        self._thread = threading.Thread(target=run, name=self.name, daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        assert self.simulator is not None
        return self.simulator

    def call(self, coro_or_fn: Coroutine[Any, Any, Any] | Callable[[], Any]) -> Any:
        """Run a coroutine (or a plain function) on the server's loop and return its result;
        a function's coroutine result is awaited too."""
        assert self._loop is not None, "not started"

        async def invoke() -> Any:
            result = coro_or_fn if asyncio.iscoroutine(coro_or_fn) else coro_or_fn()
            if asyncio.iscoroutine(result):
                result = await result
            return result

        return asyncio.run_coroutine_threadsafe(invoke(), self._loop).result()

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if loop.is_running():
            loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._loop = None
        self._thread = None

    def __enter__(self) -> S:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
