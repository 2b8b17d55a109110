#!/usr/bin/env python3
"""A UDP prober at 1 ms resolution, for the upgrade test.

  prober.py DST PORT [--interval-ms MS]
      prints "ready" once its first echo came back, then sends one numbered
      datagram every MS (default 1) until stdin closes; waits 300 ms for
      late echoes and prints one JSON line: sent, received, lost, the
      longest run of consecutive lost datagrams (gap) and its length in ms.
  prober.py once DST PORT [--count N]
      N datagrams 10 ms apart; prints the number echoed back.
The echo server is the test's (it returns each datagram as is).
"""
import json
import select
import socket
import struct
import sys
import threading
import time


def args():
    a = sys.argv[1:]
    interval = 1.0
    count = 20
    if "--interval-ms" in a:
        i = a.index("--interval-ms")
        interval = float(a[i + 1])
        del a[i : i + 2]
    if "--count" in a:
        i = a.index("--count")
        count = int(a[i + 1])
        del a[i : i + 2]
    return a, interval, count


def once(dst, port, count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    got = set()
    for n in range(count):
        s.send(struct.pack("!Q", n))
        deadline = time.monotonic() + 0.01
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([s], [], [], left)[0]:
                break
            try:
                got.add(struct.unpack("!Q", s.recv(64)[:8])[0])
            except OSError:
                break
    print(len(got), flush=True)


def probe(dst, port, interval_ms):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    s.settimeout(0.05)
    # Wait for the path to work before counting.
    deadline = time.monotonic() + 10
    while True:
        s.send(struct.pack("!Q", 1 << 62))
        try:
            if struct.unpack("!Q", s.recv(64)[:8])[0] == 1 << 62:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no echo"}), flush=True)
            return
    s.settimeout(None)
    got = set()
    stop = threading.Event()

    def receive():
        s.settimeout(0.3)
        while True:
            try:
                n = struct.unpack("!Q", s.recv(64)[:8])[0]
                if n < 1 << 62:
                    got.add(n)
            except socket.timeout:
                if stop.is_set():
                    return
            except OSError:
                if stop.is_set():
                    return

    t = threading.Thread(target=receive, daemon=True)
    t.start()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    sent = 0
    start = time.monotonic()
    while not stop.is_set():
        s.send(struct.pack("!Q", sent))
        sent += 1
        # Absolute schedule: a late wake-up does not stretch the period.
        wait = start + sent * interval_ms / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    elapsed = time.monotonic() - start
    t.join()
    lost = [n for n in range(sent) if n not in got]
    gap, run, prev = 0, 0, None
    for n in lost:
        run = run + 1 if prev == n - 1 else 1
        gap = max(gap, run)
        prev = n
    print(
        json.dumps(
            {
                "sent": sent,
                "received": len(got),
                "lost": len(lost),
                "first_lost": lost[:10],
                "longest_gap": gap,
                "longest_gap_ms": gap * interval_ms,
                "seconds": round(elapsed, 3),
                "achieved_interval_ms": round(elapsed * 1000 / max(sent, 1), 3),
            }
        ),
        flush=True,
    )


def main():
    a, interval, count = args()
    if a and a[0] == "once":
        once(a[1], int(a[2]), count)
    else:
        probe(a[0], int(a[1]), interval)


main()
