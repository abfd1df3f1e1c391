"""A small TCP proxy on loopback whose path can be slowed or stalled: a real network fault.

Used where a test needs the way to a live node to be slow (a congested or lossy path)
while the node itself is fine: the bytes really travel through sockets, late or not at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator


class TcpProxy:
    """Forwards 127.0.0.1:``port`` to ``target_port``. ``delay`` (seconds) holds each chunk
    from the client that long before forwarding it; ``stalled`` holds it until unstalled."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0
        self.port = 0
        self.connections = 0  # accepted so far
        self._flowing: asyncio.Event | None = None
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._serve, name="tcp-proxy", daemon=True)

    def start(self) -> TcpProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def stall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.clear)

    def unstall(self) -> None:
        self._loop.call_soon_threadsafe(self._flowing.set)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    async def _shutdown(self) -> None:
        """Close the listening socket and every connection, so nothing is left to a closed loop."""
        self._server.close()
        tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server = self._loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self._server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()

    async def _handle(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            node_reader, node_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_writer.close()
            return
        await asyncio.gather(
            self._pipe(client_reader, node_writer, slowed=True),
            self._pipe(node_reader, client_writer, slowed=False),
            return_exceptions=True,
        )

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, slowed: bool) -> None:
        try:
            while chunk := await reader.read(65536):
                if slowed:
                    await self._flowing.wait()
                    if self.delay:
                        await asyncio.sleep(self.delay)
                writer.write(chunk)
                await writer.drain()
        finally:
            writer.close()


@contextlib.contextmanager
def tcp_proxy(target_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_port).start()
    try:
        yield proxy
    finally:
        proxy.stop()
