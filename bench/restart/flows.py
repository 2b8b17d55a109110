#!/usr/bin/env python3
"""Traffic for bench/restart.sh, run inside the pods' network namespaces.

  flows.py server PORT [PORT...]
      echo server on every PORT (one thread, selectors)
  flows.py client --server ADDR --flows N --allowed PORT --denied PORT
                  --ready FILE --stop FILE --out FILE
      opens N connections to ADDR:allowed and holds them; while FILE --stop
      does not exist: every 0.2 s sends a message on each and expects its
      echo within 3 s (a flow that errors or stays silent is dropped and
      counted), and every 20 ms tries a new connection, alternately to the
      allowed port (it must connect within 0.9 s, before TCP's first SYN
      retransmission) and to the denied one (it must not connect within
      0.3 s). Writes its counts as JSON to --out.
"""
import argparse
import json
import os
import resource
import selectors
import socket
import sys
import threading
import time


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def serve(ports):
    raise_nofile()
    sel = selectors.DefaultSelector()
    for port in ports:
        ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        ls.bind(("0.0.0.0", port))
        ls.listen(4096)
        ls.setblocking(False)
        sel.register(ls, selectors.EVENT_READ, None)
    while True:
        for key, _ in sel.select():
            if key.data is None:
                try:
                    conn, _ = key.fileobj.accept()
                except OSError:
                    continue
                conn.setblocking(False)
                sel.register(conn, selectors.EVENT_READ, "conn")
                continue
            conn = key.fileobj
            try:
                data = conn.recv(4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                data = b""
            if not data:
                sel.unregister(conn)
                conn.close()
                continue
            try:
                conn.sendall(data)
            except OSError:
                sel.unregister(conn)
                conn.close()


def retransmissions():
    """TcpRetransSegs of this network namespace."""
    with open("/proc/net/snmp") as f:
        lines = [l.split() for l in f if l.startswith("Tcp:")]
    return int(lines[1][lines[0].index("RetransSegs")])


class Established:
    """The held flows and their check rounds."""

    def __init__(self, server, port, n):
        self.socks = []
        for i in range(n):
            s = socket.create_connection((server, port), timeout=5)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            self.socks.append(s)
        self.dropped = 0
        self.rounds = 0
        self.seq = 0

    def round(self, deadline_s):
        """One message on every live flow; those that fail are dropped."""
        self.seq += 1
        msg = b"%08d" % (self.seq % 10**8)
        sel = selectors.DefaultSelector()
        waiting = {}
        for s in self.socks:
            try:
                s.send(msg)
                sel.register(s, selectors.EVENT_READ)
                waiting[s] = b""
            except OSError:
                self.drop(s)
        end = time.monotonic() + deadline_s
        while waiting and time.monotonic() < end:
            for key, _ in sel.select(timeout=max(end - time.monotonic(), 0)):
                s = key.fileobj
                try:
                    data = s.recv(64)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(s)
                    del waiting[s]
                    self.drop(s)
                    continue
                waiting[s] += data
                if len(waiting[s]) >= len(msg):
                    sel.unregister(s)
                    del waiting[s]
        for s in list(waiting):
            self.drop(s)
        sel.close()
        self.rounds += 1

    def drop(self, s):
        self.dropped += 1
        self.socks.remove(s)
        s.close()


def try_connect(server, port, timeout):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((server, port))
        s.sendall(b"x")
        return s.recv(1) == b"x"
    except OSError:
        return False
    finally:
        s.close()


def client(args):
    raise_nofile()
    counts = {"allowed_ok": 0, "allowed_refused": 0, "denied_refused": 0, "denied_let_through": 0}
    retrans0 = retransmissions()
    held = Established(args.server, args.allowed, args.flows)
    open(args.ready, "w").close()
    stop = threading.Event()

    def new_flows():
        allowed = True
        while not stop.is_set():
            if allowed:
                ok = try_connect(args.server, args.allowed, 0.9)
                counts["allowed_ok" if ok else "allowed_refused"] += 1
            else:
                through = try_connect(args.server, args.denied, 0.3)
                counts["denied_let_through" if through else "denied_refused"] += 1
            allowed = not allowed
            time.sleep(0.02)

    worker = threading.Thread(target=new_flows, daemon=True)
    worker.start()
    while not os.path.exists(args.stop):
        held.round(3.0)
        time.sleep(0.2)
    stop.set()
    worker.join()
    held.round(5.0)
    result = dict(counts, flows=args.flows, established_dropped=held.dropped,
                  established_held=len(held.socks), rounds=held.rounds,
                  client_retransmissions=retransmissions() - retrans0)
    with open(args.out, "w") as f:
        json.dump(result, f)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "server":
        serve([int(p) for p in sys.argv[2:]])
        return
    p = argparse.ArgumentParser()
    p.add_argument("mode", choices=["client"])
    p.add_argument("--server", required=True)
    p.add_argument("--flows", type=int, required=True)
    p.add_argument("--allowed", type=int, required=True)
    p.add_argument("--denied", type=int, required=True)
    p.add_argument("--ready", required=True)
    p.add_argument("--stop", required=True)
    p.add_argument("--out", required=True)
    client(p.parse_args())


if __name__ == "__main__":
    main()
