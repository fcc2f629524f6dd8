#!/usr/bin/env python3
"""Holds N idle TLS client connections to one proxy (bench/idle.sh; issue 20).

Opens COUNT TLS connections (ALPN h2 or http/1.1), sends one GET on each and reads its whole
answer, then prints "ready OK FAILED" on one line and keeps every connection open and silent
until its standard input closes. Python's asyncio and OpenSSL, so the benchmark needs no build
of its own; only the proxy's memory is measured, never this process's.

HTTP/2 is spoken by hand (one stream is all it takes): the preface, an empty SETTINGS, one
HEADERS frame with END_STREAM whose HPACK block uses the static table and literals, a SETTINGS
ACK for the server's SETTINGS, then frames are read until stream 1 ends.
"""

import argparse
import asyncio
import ssl
import struct
import sys

H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1
DATA, HEADERS, SETTINGS, GOAWAY = 0x0, 0x1, 0x4, 0x7


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(index: int, value: str) -> bytes:
    """A header field without indexing, name from the static table (RFC 7541 §6.2.2)."""
    v = value.encode()
    assert index < 15 and len(v) < 127
    return bytes([index, len(v)]) + v


def h2_request(authority: str, path: str) -> bytes:
    # :method GET (2), :scheme https (7) indexed; :path (4) and :authority (1) as literals
    block = bytes([0x82, 0x87]) + literal(4, path) + literal(1, authority)
    return H2_PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_STREAM | END_HEADERS, 1, block)


async def h2_exchange(reader, writer, authority: str, path: str) -> None:
    writer.write(h2_request(authority, path))
    await writer.drain()
    status_seen = False
    while True:
        head = await reader.readexactly(9)
        length = int.from_bytes(head[:3], "big")
        kind, flags = head[3], head[4]
        stream = int.from_bytes(head[5:9], "big") & 0x7FFFFFFF
        payload = await reader.readexactly(length)
        if kind == SETTINGS and not flags & ACK:
            writer.write(frame(SETTINGS, ACK, 0, b""))
            await writer.drain()
        elif kind == GOAWAY:
            raise ConnectionError("GOAWAY before the answer")
        elif stream == 1 and kind == HEADERS:
            # ":status 200" is index 8 of the static table: 0x88
            if not status_seen and payload[:1] != b"\x88":
                raise ConnectionError(f"answer was not 200: {payload[:8].hex()}")
            status_seen = True
        if stream == 1 and kind in (DATA, HEADERS) and flags & END_STREAM:
            return


async def h1_exchange(reader, writer, authority: str, path: str) -> None:
    writer.write(f"GET {path} HTTP/1.1\r\nHost: {authority}\r\n\r\n".encode())
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = head.split(b" ", 2)[1]
    if status != b"200":
        raise ConnectionError(f"answer was {status.decode()}")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)


async def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--connect", required=True, help="HOST:PORT of the proxy")
    ap.add_argument("--name", default="localhost", help="SNI and Host")
    ap.add_argument("--ca", required=True, help="PEM file of the CA to verify the proxy with")
    ap.add_argument("--proto", choices=["h1", "h2"], required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--path", default="/")
    ap.add_argument("--parallel", type=int, default=100, help="handshakes in flight at once")
    args = ap.parse_args()
    host, _, port = args.connect.rpartition(":")

    ctx = ssl.create_default_context(cafile=args.ca)
    ctx.set_alpn_protocols(["h2"] if args.proto == "h2" else ["http/1.1"])
    exchange = h2_exchange if args.proto == "h2" else h1_exchange
    gate = asyncio.Semaphore(args.parallel)
    held, failures = [], []

    async def one() -> None:
        async with gate:
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, int(port), ssl=ctx, server_hostname=args.name), 60)
                await asyncio.wait_for(exchange(reader, writer, args.name, args.path), 60)
                held.append(writer)
            except Exception as e:  # counted and reported: one failure must not stop the others
                failures.append(e)

    await asyncio.gather(*(one() for _ in range(args.count)))
    for e in failures[:3]:
        print(f"idle-clients: {type(e).__name__}: {e}", file=sys.stderr)
    print(f"ready {len(held)} {len(failures)}", flush=True)
    # hold until stdin closes
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for w in held:
        w.transport.abort()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
