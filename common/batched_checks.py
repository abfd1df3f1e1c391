"""One database question for many open sockets at once.

Every open Administration desktop re-checks its user's access at each heartbeat (every 3
s; console/consumers.py): 250 desktops were 83 checks a second, each a thread hop and a
query or three, all on the one thread that every socket's database work shares
(issue 18). Those asked within :data:`WINDOW_SECONDS` of one another are now answered
together: one thread hop and one query for all of them. A re-check is at most that much
later than it was.

Per event loop (a test may run several): each loop's sockets share its batches.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

from channels.db import database_sync_to_async

WINDOW_SECONDS = 0.25


class BatchedCheck:
    """``await check(key)``: whether ``key`` is among ``answer_many(keys)`` for the keys
    asked within one window. ``answer_many`` runs in a thread (it may query the database);
    if it raises, every waiter of its batch gets the exception."""

    def __init__(self, answer_many: Callable[[frozenset[int]], Iterable[int]], window: float = WINDOW_SECONDS) -> None:
        self._answer_many = answer_many
        self._window = window
        self._open: dict[asyncio.AbstractEventLoop, tuple[set[int], asyncio.Future[frozenset[int]]]] = {}

    async def __call__(self, key: int) -> bool:
        loop = asyncio.get_running_loop()
        batch = self._open.get(loop)
        if batch is None:
            batch = self._open[loop] = (set(), loop.create_future())
            loop.call_later(self._window, lambda: loop.create_task(self._answer(loop, batch)))
        keys, answer = batch
        keys.add(key)
        # Shielded: one waiter cancelled (its socket closed) does not cancel the others'.
        return key in await asyncio.shield(answer)

    async def _answer(self, loop: asyncio.AbstractEventLoop, batch: tuple[set[int], asyncio.Future]) -> None:
        if self._open.get(loop) is batch:
            del self._open[loop]
        keys, answer = batch
        try:
            found = await database_sync_to_async(self._answer_many, thread_sensitive=False)(frozenset(keys))
        except Exception as exc:  # noqa: BLE001 (handed to every waiter, as a lone check would raise)
            answer.set_exception(exc)
            answer.exception()  # retrieved here: no "never retrieved" warning when nobody waits any more
        else:
            answer.set_result(frozenset(found))
