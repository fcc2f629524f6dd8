#!/usr/bin/env python3
"""Splits a proxy's added latency into its legs, from a packet capture on loopback.

Usage: timeline.py PCAP_TEXT FRONT_PORT APP_PORT LABEL

PCAP_TEXT is `tcpdump -nn -tt -r FILE` output of one fixed-rate HTTP/1.1 keep-alive run (one
request in flight per connection). Per connection, a request starts with the first data segment
toward the server after the server last sent, and its response ends with the server's last data
segment before the next request. On FRONT_PORT (the proxy, or the app itself for the direct
path) that gives `wire`: request in -> response out, exact per request. With a proxy, APP_PORT
gives the app's exchanges, and each request splits into `in` (the client's request reaches the
proxy -> the proxy's request to the app starts), `app` (-> the app's answer ends) and `out`
(-> the response to the client ends). The encrypted bytes do not say which app exchange carried
which client request, so they are matched in time order within a busy period (between two busy
periods no request is in flight, so both sides hold the same requests): exact when the proxy
keeps arrival order, and the means are exact in any case.

Prints one markdown table row: LABEL | requests | wire p50/p99 | matched | in p50/mean |
app p50/mean | out p50/mean | requests per burst (arrivals within 100 us of the previous one).
"""

import re
import sys
from collections import defaultdict

LINE = re.compile(
    r"^(\d+\.\d+) IP (\d+\.\d+\.\d+\.\d+)\.(\d+) > (\d+\.\d+\.\d+\.\d+)\.(\d+):.* length (\d+)"
)


def exchanges(segments, server_port):
    """(request start, answer end) per exchange of each connection."""
    by_conn = defaultdict(list)
    for t, sport, dport, n in segments:
        if n == 0:
            continue
        if dport == server_port:
            by_conn[sport].append((t, "req"))
        elif sport == server_port:
            by_conn[dport].append((t, "resp"))
    out = []
    for segs in by_conn.values():
        start = end = None
        for t, kind in segs:
            if kind == "req":
                if end is not None:
                    out.append((start, end))
                    start = end = None
                if start is None:
                    start = t
            elif start is not None:
                end = t
        # the last exchange of a connection may be cut by the capture's end: dropped
    return out


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(len(v) * p))]


def mean(values):
    return sum(values) / len(values) if values else float("nan")


def busy_periods(front):
    """The client exchanges grouped into busy periods (between two of them, nothing in flight)."""
    periods, cur, until = [], [], None
    for x in sorted(front):
        if until is not None and x[0] > until:
            periods.append((cur, until))
            cur, until = [], None
        cur.append(x)
        until = x[1] if until is None else max(until, x[1])
    if cur:
        periods.append((cur, until))
    return periods


def legs(front, app):
    """`in`, `app` and `out` of every request, matched in time order within each busy period.

    A busy period holds the same requests on both sides, so nothing drifts past its end; periods
    whose counts differ (cut by the capture) are skipped.
    """
    app = sorted(app)
    leg_in, leg_app, leg_out, j = [], [], [], 0
    for period, until in busy_periods(front):
        begin = period[0][0]
        while j < len(app) and app[j][0] < begin:
            j += 1
        mine = []
        while j < len(app) and app[j][0] <= until:
            mine.append(app[j])
            j += 1
        if len(mine) != len(period):
            continue
        starts = sorted(s for s, _ in period)
        ends = sorted(e for _, e in period)
        app_starts = sorted(s for s, _ in mine)
        app_ends = sorted(e for _, e in mine)
        leg_in += [a - s for s, a in zip(starts, app_starts)]
        leg_app += [e - s for s, e in mine]
        leg_out += [e - a for a, e in zip(app_ends, ends)]
    return leg_in, leg_app, leg_out


def main():
    path, front, app, label = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    segs = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line)
            if m:
                segs.append((float(m[1]), int(m[3]), int(m[5]), int(m[6])))
    us = 1e6
    fx = exchanges(segs, front)
    wire = [(e - s) * us for s, e in fx]
    arrivals = sorted(s for s, _ in fx)
    groups, last = 0, None
    for t in arrivals:
        if last is None or t - last > 100e-6:
            groups += 1
        last = t
    burst = len(arrivals) / groups if groups else float("nan")
    if app == front:
        print(f"| {label} | {len(fx)} | {pct(wire, .5):.0f} / {pct(wire, .99):.0f} | – | – | – | – | {burst:.1f} |")
        return
    leg_in, leg_app, leg_out = (
        [d * us for d in v] for v in legs(fx, exchanges(segs, app))
    )
    print(
        f"| {label} | {len(fx)} | {pct(wire, .5):.0f} / {pct(wire, .99):.0f} | {len(leg_in)}"
        f" | {pct(leg_in, .5):.0f} / {mean(leg_in):.0f} | {pct(leg_app, .5):.0f} / {mean(leg_app):.0f}"
        f" | {pct(leg_out, .5):.0f} / {mean(leg_out):.0f} | {burst:.1f} |"
    )


if __name__ == "__main__":
    main()
