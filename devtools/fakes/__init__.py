"""Protocol-level fakes of the push providers, and the two pieces they share.

`fcm.FcmFake` and `apns.ApnsFake` are servers that firebase-admin and aioapns talk to for real
(OAuth2 + FCM v1 over HTTP; APNs over HTTP/2 with TLS). Each runs its own event loop in a
background thread (`LoopThread`): a client that blocks its loop (google-auth fetches tokens with
synchronous `requests`) cannot deadlock against the fake, and `time.thread_time()` in the test's
thread measures the client's CPU alone. What a fake accepted lands in a `Recorder`, which tests
read and wait on (`await recorder.wait_for(predicate, timeout)`) instead of sleeping.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Future
from typing import Any, Generic, Self, TypeVar

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError(f"{self._name} is not running")
        return self._loop

    def start(self) -> None:
        ready = threading.Event()
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            loop.run_forever()
            # As asyncio.run does: cancel what is left (a handler still delaying its answer) and
            # let it unwind, so its transport is closed here rather than left for the garbage
            # collector to find, which pytest reports as an unclosed-socket ResourceWarning.
            leftovers = asyncio.all_tasks(loop)
            for task in leftovers:
                task.cancel()
            loop.run_until_complete(asyncio.gather(*leftovers, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=self._name, daemon=True)
        self._thread.start()
        ready.wait()

    def submit(self, coroutine: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule `coroutine` on the thread's loop (callable from any thread)."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop)

    async def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the thread's loop and await its result from the caller's loop."""
        return await asyncio.wrap_future(self.submit(coroutine))

    @property
    def running(self) -> bool:
        return self._loop is not None

    async def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        await asyncio.to_thread(self._thread.join)
        self._loop = None
        self._thread = None


class ThreadedFake:
    """The lifecycle both fakes share: serve on 127.0.0.1 from a `LoopThread` of their own.

    Subclasses implement `_serve()` (start listening on the thread's loop, return the port) and
    `_shutdown()` (stop serving and drop open connections).
    """

    def __init__(self, thread_name: str) -> None:
        self._thread = LoopThread(thread_name)
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._port

    async def start(self) -> None:
        self._thread.start()
        self._port = await self._thread.run(self._serve())

    async def stop(self) -> None:
        if self._port is not None and self._thread.running:
            await self._thread.run(self._shutdown())
        await self._thread.stop()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _serve(self) -> int:
        raise NotImplementedError

    async def _shutdown(self) -> None:
        raise NotImplementedError


class Recorder(Generic[T]):
    """A thread-safe append-only list that coroutines on any loop can wait on."""

    def __init__(self) -> None:
        self._items: list[T] = []
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    def append(self, item: T) -> None:
        with self._lock:
            self._items.append(item)
            waiters = list(self._waiters)
        for loop, event in waiters:
            loop.call_soon_threadsafe(event.set)

    @property
    def items(self) -> list[T]:
        with self._lock:
            return list(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    # The timeout is a parameter (like asyncio.wait_for) so that no test can forget to bound a wait.
    async def wait_for(
        self,
        predicate: Callable[[Sequence[T]], bool],
        timeout: float,  # noqa: ASYNC109
    ) -> list[T]:
        """Return the recorded items once `predicate(items)` holds; TimeoutError after `timeout` s."""
        waiter = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.add(waiter)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    waiter[1].clear()
                    items = self.items
                    if predicate(items):
                        return items
                    await waiter[1].wait()
        finally:
            with self._lock:
                self._waiters.discard(waiter)
