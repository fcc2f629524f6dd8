"""Latency of a keep-alive client's request after a pause (bench/pause.sh).

For each round and each pause: one new keep-alive HTTPS connection per target, three requests
to warm it, the pause, then one timed request on each target in turn (rotated each round, so
no target is always first). Prints a table of the median per target and pause, in ms.

Usage: pause_client.py CA_PEM ROUNDS PAUSES(comma-separated s) NAME=PORT...
"""

import http.client
import ssl
import statistics
import sys
import time


def connect(ctx, port):
    c = http.client.HTTPSConnection("localhost", port, context=ctx, timeout=10)
    for _ in range(3):
        c.request("GET", "/1k")
        r = c.getresponse()
        r.read()
        assert r.status == 200, (port, r.status)
    return c


def timed(c):
    t = time.perf_counter()
    c.request("GET", "/1k")
    r = c.getresponse()
    r.read()
    ms = (time.perf_counter() - t) * 1000
    assert r.status == 200, r.status
    assert r.getheader("connection", "").lower() != "close", "the connection was not kept"
    return ms


def main():
    ca, rounds, pauses = sys.argv[1], int(sys.argv[2]), [float(p) for p in sys.argv[3].split(",")]
    targets = [a.split("=") for a in sys.argv[4:]]
    ctx = ssl.create_default_context(cafile=ca)
    seen = {(n, p): [] for n, _ in targets for p in pauses}
    for r in range(rounds):
        order = targets[r % len(targets):] + targets[: r % len(targets)]
        for p in pauses:
            conns = [(n, connect(ctx, int(port))) for n, port in order]
            time.sleep(p)
            for n, c in conns:
                seen[(n, p)].append(timed(c))
                c.close()
        print(f"round {r + 1} of {rounds} done", file=sys.stderr, flush=True)
    names = [n for n, _ in targets]
    print("| pause before the request | " + " | ".join(names) + " |")
    print("|---|" + "---:|" * len(names))
    for p in pauses:
        cells = [f"{statistics.median(seen[(n, p)]):.2f}" for n in names]
        print(f"| {p:g} s | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
