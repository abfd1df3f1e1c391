"""Keep-alive HTTP/1.1 connections as a browser keeps them to one host (at most 6), for the
benchmarks' emulated pages (``bench/_desktop_clients.py``, ``bench/_agent_clients.py``).

Hand-written on asyncio streams rather than an HTTP client library: hundreds of emulated
pages in one process, and what is measured is each answer's bytes on the wire (headers
included), which the libraries do not report.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

MAX_CONNECTIONS = 6  # a browser's connections per host (HTTP/1.1)

Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(frozen=True)
class Answer:
    status: int
    size: int  # bytes received: status line, headers and body
    headers: dict[bytes, bytes]  # names in lower case
    body: bytes

    def number(self, name: bytes) -> int | None:
        value = self.headers.get(name, b"").strip()
        return int(value) if value.isdigit() else None


class HttpPool:
    """Keep-alive HTTP/1.1 connections to the node; a GET reads the whole answer."""

    def __init__(self, port: int, cookie: str) -> None:
        self.port = port
        self.head = (
            f"Host: 127.0.0.1:{port}\r\nCookie: {cookie}\r\nX-Requested-With: fetch\r\nAccept: */*\r\n"
            "Accept-Encoding: gzip, deflate, br, zstd\r\nCache-Control: no-cache\r\nPragma: no-cache\r\n"
            "Connection: keep-alive\r\n\r\n"
        )
        self.idle: list[Connection] = []
        self.open = 0
        self.freed = asyncio.Condition()

    async def _take(self, fresh: bool) -> tuple[Connection, bool]:
        """(a connection, whether it was used before)."""
        async with self.freed:
            while not self.idle and self.open >= MAX_CONNECTIONS:
                await self.freed.wait()
            if self.idle and not fresh:
                return self.idle.pop(), True
            if not self.idle:
                self.open += 1
            else:
                self.idle.pop()[1].close()  # a new one in its place
        try:
            return await asyncio.open_connection("127.0.0.1", self.port, limit=2**20), False
        except BaseException:
            await self._give(None)
            raise

    async def _give(self, conn: Connection | None) -> None:
        async with self.freed:
            if conn is None:
                self.open -= 1
            else:
                self.idle.append(conn)
            self.freed.notify()

    async def get(self, path: str, headers: dict[str, str] | None = None) -> Answer:
        """One GET. A kept-alive connection the server has closed meanwhile (uvicorn closes
        them after 5 s idle) is retried once on a new one, as a browser does."""
        for fresh in (False, True):
            conn, reused = await self._take(fresh)
            try:
                reader, writer = conn
                extra = "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
                writer.write(f"GET {path} HTTP/1.1\r\n{extra}{self.head}".encode())
                await writer.drain()
                answer = await read_answer(reader)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                conn[1].close()
                await self._give(None)
                if reused and not isinstance(exc, asyncio.IncompleteReadError):
                    continue
                raise
            except BaseException:
                conn[1].close()
                await self._give(None)
                raise
            await self._give(conn)
            return answer
        raise ConnectionError("unreachable")


async def read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("connection closed")
    size = len(status_line)
    headers: dict[bytes, bytes] = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        size += len(line)
        name, _, value = line.partition(b":")
        headers[name.strip().lower()] = value.strip()
    size += 2
    if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
        parts = []
        while True:
            header = await reader.readline()
            chunk = int(header.split(b";")[0], 16)
            parts.append((await reader.readexactly(chunk + 2))[:-2])
            size += len(header) + chunk + 2
            if chunk == 0:
                break
        body = b"".join(parts)
    else:
        length = int(headers.get(b"content-length", b"0") or 0)
        body = await reader.readexactly(length) if length else b""
        size += length
    return Answer(int(status_line.split()[1]), size, headers, body)
