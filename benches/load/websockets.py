"""Websockets for the S5 and S7 scenarios of `run`.

- The backend answers every upgrade with a 101, then echoes every frame it receives:
  a client frame is unmasked and sent back unmasked with the same opcode (a Ping is
  answered with a Pong, a Close with a Close, after which it closes). It never sends
  anything of its own, so S5's connections, whose clients send nothing, stay silent.
- `hold` (S5) opens many upgraded connections through a proxy from several 127.0.0.x
  source addresses and keeps them open, idle.
- `ping_pong` (S7) opens a few and has each send a 64-byte masked binary frame, wait
  for the echo, and repeat; run as `websockets.py ping-pong ...` (pinned by `run`).

Plain asyncio and RFC 6455's handshake and framing: no packages.

    websockets.py PORT                                              # the backend
    websockets.py ping-pong PORT COUNT WARMUP DURATION [PROXY_PID]  # S7's client, prints JSON
"""

import asyncio
import base64
import hashlib
import json
import os
import sys
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _unmask(payload, mask):
    n = len(payload)
    if not n:
        return b""
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def _header(b0, n, mask=b""):
    """A frame header: first byte b0, payload length n, masked when mask is given."""
    bit = 0x80 if mask else 0
    if n < 126:
        head = bytes([b0, bit | n])
    elif n < 65536:
        head = bytes([b0, bit | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([b0, bit | 127]) + n.to_bytes(8, "big")
    return head + mask


def _echo(buf):
    """The echo of every complete frame at the start of `buf`: (bytes to send, bytes
    consumed, whether a Close was among them)."""
    out, pos, end = bytearray(), 0, len(buf)
    while end - pos >= 2:
        b0, b1 = buf[pos], buf[pos + 1]
        n, i = b1 & 0x7F, pos + 2
        if n == 126:
            if end - i < 2:
                break
            n, i = int.from_bytes(buf[i:i + 2], "big"), i + 2
        elif n == 127:
            if end - i < 8:
                break
            n, i = int.from_bytes(buf[i:i + 8], "big"), i + 8
        mask = b""
        if b1 & 0x80:
            if end - i < 4:
                break
            mask, i = bytes(buf[i:i + 4]), i + 4
        if end - i < n:
            break
        payload = bytes(buf[i:i + n])
        if mask:
            payload = _unmask(payload, mask)
        pos = i + n
        opcode = b0 & 0x0F
        if opcode == 0x9:  # Ping: Pong
            b0 = (b0 & 0xF0) | 0xA
        out += _header(b0, n) + payload
        if opcode == 0x8:
            return bytes(out), pos, True
    return bytes(out), pos, False


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
        buf = bytearray()
        while True:
            data = await reader.read(65536)
            if not data:
                break
            buf += data
            out, used, closing = _echo(buf)
            del buf[:used]
            if out:
                writer.write(out)
                await writer.drain()
            if closing:
                break
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
    return reader, writer


async def hold(port, count, path="/ws", sources=40, concurrency=200, on_open=None):
    """Opens `count` upgraded connections (source addresses 127.0.0.10 onwards),
    calls `on_open(opened, failed)` once all are open, then closes them."""
    semaphore = asyncio.Semaphore(concurrency)
    writers, failed = [], [0]
    reasons = {}

    async def one(i):
        async with semaphore:
            try:
                _, writer = await asyncio.wait_for(
                    _open_one(port, f"127.0.0.{10 + i % sources}", path), 20)
                writers.append(writer)
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


def cpu_seconds(pid):
    """utime + stime of a process, from /proc (as `run` reads it)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


async def ping_pong(port, count, warmup, duration, pid=None, path="/ws", sources=4, size=64):
    """S7: `count` websockets through the proxy (source addresses 127.0.0.10 onwards,
    `sources` of them), each sending a `size`-byte masked binary frame, waiting for
    the backend's echo and checking it, and repeating: `warmup` seconds, then
    `duration` measured seconds, over which the proxy's (pid) CPU time is read.
    A round trip is two messages relayed by the proxy, one each way."""
    opened = await asyncio.gather(
        *(asyncio.wait_for(_open_one(port, f"127.0.0.{10 + i % sources}", path), 20) for i in range(count)),
        return_exceptions=True)
    conns = [c for c in opened if not isinstance(c, BaseException)]
    reasons = {}
    for c in opened:
        if isinstance(c, BaseException):
            reason = f"{type(c).__name__}: {c}"[:80]
            reasons[reason] = reasons.get(reason, 0) + 1
    state = {"measuring": False, "stop": False, "trips": 0, "errors": 0}
    latencies = []
    clock = time.perf_counter

    async def loop(reader, writer):
        payload, mask = os.urandom(size), os.urandom(4)
        frame = _header(0x82, size, mask) + _unmask(payload, mask)
        expect = _header(0x82, size) + payload
        try:
            while not state["stop"]:
                t = clock()
                writer.write(frame)
                got = await reader.readexactly(len(expect))
                if got != expect:
                    state["errors"] += 1
                    reasons["echo differs"] = reasons.get("echo differs", 0) + 1
                    return
                if state["measuring"]:
                    state["trips"] += 1
                    latencies.append(clock() - t)
        except (OSError, asyncio.IncompleteReadError) as e:
            if not state["stop"]:
                state["errors"] += 1
                reason = f"{type(e).__name__}: {e}"[:80]
                reasons[reason] = reasons.get(reason, 0) + 1

    tasks = [asyncio.ensure_future(loop(r, w)) for r, w in conns]
    try:
        await asyncio.sleep(warmup)
        cpu0, t0 = (cpu_seconds(pid) if pid else 0.0), clock()
        state["measuring"] = True
        await asyncio.sleep(duration)
        state["measuring"] = False
        cpu1, t1 = (cpu_seconds(pid) if pid else 0.0), clock()
        trips = state["trips"]
        state["stop"] = True
    finally:
        state["stop"] = True
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for _, w in conns:
            try:
                w.transport.abort()
            except OSError:
                pass
    latencies.sort()
    pct = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1e3 if latencies else float("nan")
    messages = 2 * trips
    return {"open": len(conns), "failed": count - len(conns), "errors": state["errors"],
            "seconds": t1 - t0, "messages": messages, "rate": messages / (t1 - t0),
            "cpu_us": (cpu1 - cpu0) * 1e6 / max(messages, 1) if pid else float("nan"),
            "p50": pct(0.50), "p99": pct(0.99), "reasons": reasons}


if __name__ == "__main__":
    if sys.argv[1] == "ping-pong":
        port, count, warmup, duration = (int(a) for a in sys.argv[2:6])
        pid = int(sys.argv[6]) if len(sys.argv) > 6 else None
        print(json.dumps(asyncio.run(ping_pong(port, count, warmup, duration, pid))))
    else:
        serve(int(sys.argv[1]))
