"""Idle websockets for the S5 scenario of `run`: a websocket backend that answers
every upgrade with a 101 and then holds the connection silently, and a client that
opens many upgraded connections through a proxy from several 127.0.0.x source
addresses and keeps them open. Plain asyncio and RFC 6455's handshake: no packages.
"""

import asyncio
import base64
import hashlib
import sys

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


async def _read_head(reader):
    head = await reader.readuntil(b"\r\n\r\n")
    return head.decode("latin-1")


async def _serve(reader, writer):
    try:
        head = await _read_head(reader)
        key = ""
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-key":
                key = value.strip()
        accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        writer.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        await writer.drain()
        while await reader.read(65536):
            pass
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
        pass
    finally:
        writer.close()


def serve(port):
    """Runs the backend on 127.0.0.1:port until killed."""
    async def main():
        server = await asyncio.start_server(_serve, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()
    asyncio.run(main())


async def _open_one(port, source, path):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, local_addr=(source, 0))
    key = base64.b64encode(hashlib.md5(f"{source}{id(writer)}".encode()).digest()).decode()
    writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                  "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    await writer.drain()
    head = await _read_head(reader)
    if not head.startswith("HTTP/1.1 101"):
        writer.close()
        raise ConnectionError(head.split("\r\n", 1)[0])
    return writer


async def hold(port, count, path="/ws", sources=40, concurrency=200, on_open=None):
    """Opens `count` upgraded connections (source addresses 127.0.0.10 onwards),
    calls `on_open(opened, failed)` once all are open, then closes them."""
    semaphore = asyncio.Semaphore(concurrency)
    writers, failed = [], [0]
    reasons = {}

    async def one(i):
        async with semaphore:
            try:
                writers.append(await asyncio.wait_for(
                    _open_one(port, f"127.0.0.{10 + i % sources}", path), 20))
            except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as e:
                failed[0] += 1
                reason = f"{type(e).__name__}: {e}"[:80]
                reasons[reason] = reasons.get(reason, 0) + 1

    await asyncio.gather(*(one(i) for i in range(count)))
    if reasons:
        print("websockets that failed to open: " + "; ".join(f"{k} ({v})" for k, v in reasons.items()),
              file=sys.stderr)
    try:
        if on_open:
            await on_open(len(writers), failed[0])
    finally:
        for w in writers:
            try:
                w.transport.abort()
            except OSError:
                pass
    return len(writers), failed[0]


if __name__ == "__main__":
    import sys
    serve(int(sys.argv[1]))
