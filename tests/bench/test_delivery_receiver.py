"""The delivery bench's receiver: a CRM stand-in answering 200 to every HTTP/1.1 request on a
kept-alive connection, whatever way the requests arrive in the socket's reads."""

from __future__ import annotations

import asyncio

import aiohttp

from bench.delivery_bench import ANSWER, _Receiver


class _Counting(_Receiver):
    connections = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        _Counting.connections += 1
        super().connection_made(transport)


async def _serve() -> tuple[asyncio.Server, int]:
    _Counting.connections = 0
    server = await asyncio.get_running_loop().create_server(_Counting, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[1]


async def test_an_aiohttp_client_gets_200_for_every_post_on_one_connection() -> None:
    server, port = await _serve()
    async with server:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
            for size in (0, 15, 70_000, 3):  # bodies above the socket's read size too
                async with session.post(
                    f"http://127.0.0.1:{port}/hook", data=b"x" * size
                ) as response:
                    assert response.status == 200
                    assert await response.read() == b'{"status":"ok"}'
            async with session.get(f"http://127.0.0.1:{port}/health") as response:
                assert response.status == 200
        assert _Counting.connections == 1  # kept alive: every request on the first connection


async def test_requests_split_anywhere_or_pipelined_are_each_answered_once() -> None:
    server, port = await _serve()
    request = (
        b"POST /hook HTTP/1.1\r\nHost: x\r\ncontent-LENGTH: 5\r\n\r\nhello"
        b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    )
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        # Each request answered as soon as its last byte is in (not when more comes), its
        # body not mistaken for a head even when it looks like one.
        for body in (b"GET / HTTP/1.1\r\n\r\n", b""):
            writer.write(b"POST / HTTP/1.1\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            assert await asyncio.wait_for(reader.readexactly(len(ANSWER)), 5) == ANSWER
        # Byte by byte: heads and bodies cut at every possible place.
        for byte in request:
            writer.write(bytes([byte]))
            await writer.drain()
        # Then three at once in one write.
        writer.write(request[: request.index(b"GET")] * 3)
        await writer.drain()
        expected = ANSWER * 5
        got = await asyncio.wait_for(reader.readexactly(len(expected)), 5)
        assert got == expected
        writer.close()


async def test_a_head_that_never_ends_closes_the_connection() -> None:
    server, port = await _serve()
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"POST /hook HTTP/1.1\r\n" + b"X-Long: " + b"a" * 70_000)
        await writer.drain()
        assert await asyncio.wait_for(reader.read(), 5) == b""
        writer.close()
