#!/usr/bin/env python3
"""The one traffic program of every test and benchmark that sends real packets
between pods (network namespaces). Each test runs it inside a pod with
`ip netns exec`, so what it sees is what any workload would.

Servers
  serve [--tcp P,..] [--udp P,..] [--sctp P,..] [--name NAME]
      TCP and UDP on every address (dual stack) and an SCTP responder on a raw
      socket (no SCTP module needed: every INIT gets an INIT ACK). Without
      --name, TCP and UDP echo what they get; with it, they answer "ok NAME".
      Without port lists, the datapath tests' defaults. Prints "ready" once bound.

Clients (exit 0 when the answer came, 1 otherwise, unless said)
  probe PROTO DST PORT [--src ADDR] [--count N] [--timeout S] [--sport P]
      PROTO is tcp, udp, sctp or icmp (ICMP echo; ICMPv6 for IPv6 DST).
  batch TIMEOUT PROTO,DST,PORT ...
      every request at once, each on a new socket; one line per request, in
      order: "ok ANSWER" or "no WHY". Exits 0.
  conversation DST PORT
      one TCP connection, a request every 100 ms; prints "connected", then one
      line per request: answered, lost (no answer in 500 ms), closed, error ...
  hold DST PORT
      one TCP connection; an exchange now and per line read from stdin;
      prints "ok" or "fail" each time.
  churn DST PORT [--count N] [--bytes B] [--timeout S]
      N connect/request/reply/close in a row, B bytes echoed while still being
      sent; prints one JSON line: done, stalled, slowest_ms, seconds.
  forge PROTO SRC DST PORT
      one UDP datagram or TCP SYN with a forged source address, written on a
      raw socket (needs NET_RAW).
  newflows DST PORT INTERVAL_NS TIMEOUT_NS FIRST_PORT LAST_PORT STOP_AFTER_NS
      one UDP request per interval, each from a new source port: prints
      "ready", then "SEQ SENT_NS ANSWERED(1|0) ANSWER_NS" per request once its
      fate is known (CLOCK_MONOTONIC, shared by every namespace).
  gaps DST PORT [--interval-ms MS]
      one numbered datagram every MS (default 1) to an echo server until stdin
      closes; prints "ready" first and one JSON line at the end: sent,
      received, lost, the longest run of lost datagrams and its length in ms.
  once DST PORT [--count N]
      N numbered datagrams 10 ms apart; prints how many were echoed back.
"""
import collections
import ipaddress
import json
import os
import select
import socket
import struct
import sys
import threading
import time

DEFAULT_TCP = [22, 23, 80, 443, 7000, 8000, 8080, 9000]
DEFAULT_UDP = [53, 80, 5000, 5001, 5353, 6005, 7777, 9999]
IPPROTO_SCTP = 132
# An SCTP common header (12 bytes) and one chunk header (4): the least a
# packet must hold for its first chunk's type to be read.
SCTP_MIN = 16
SCTP_INIT, SCTP_INIT_ACK = 1, 2
IP_PKTINFO = 8
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50


def family(addr):
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def anywhere(fam):
    return "::" if fam == socket.AF_INET6 else "0.0.0.0"


def options(args, defaults):
    """--key value pairs after the positional arguments."""
    opts = dict(defaults)
    for key, value in zip(args[::2], args[1::2]):
        if not key.startswith("--"):
            raise SystemExit("traffic.py: expected an option, got %r" % key)
        opts[key[2:]] = value
    return opts


def ports(text):
    return [int(p) for p in text.split(",") if p]


def wait_readable(s, timeout):
    return bool(select.select([s], [], [], max(0.0, timeout))[0])


def strip_ipv4(fam, data):
    return data[(data[0] & 0x0F) * 4:] if fam == socket.AF_INET else data


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


# ---- servers ---------------------------------------------------------------


def answer_for(name, data):
    return data if name is None else b"ok " + name


def serve_tcp(port, name):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(128)
    return lambda: accept_loop(s, name)


def accept_loop(s, name):
    while True:
        c, _ = s.accept()
        threading.Thread(target=converse, args=(c, name), daemon=True).start()


def converse(c, name):
    try:
        c.settimeout(30)
        while True:
            data = c.recv(65536)
            if not data:
                break
            c.sendall(answer_for(name, data))
    except OSError:
        pass
    finally:
        c.close()


def serve_udp(port, fam, name):
    # Answer from the address the datagram was sent to: a pod with several
    # addresses would otherwise pick a source by route, and conntrack would
    # rightly not see a reply.
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    s.bind((anywhere(fam), port))
    return lambda: udp_loop(s, fam, name)


def udp_loop(s, fam, name):
    while True:
        data, anc, _, addr = s.recvmsg(65536, socket.CMSG_SPACE(64))
        reply_anc = []
        for level, kind, cdata in anc:
            if fam == socket.AF_INET and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                local = cdata[8:12]
                reply_anc = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, local, bytes(4)))]
            if fam == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
                reply_anc = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, cdata[:16] + struct.pack("=i", 0))]
        s.sendmsg([answer_for(name, data)], reply_anc, 0, addr)


def crc32c_table():
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


CRC32C = crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    for b in data:
        c = CRC32C[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def sctp_packet(sport, dport, chunk_type):
    # A common header and one 20-byte chunk, with a real CRC32c (stored
    # little-endian, as the kernel does): netfilter's conntrack marks a bad
    # one invalid, and kube-proxy drops invalid packets it forwards.
    packet = struct.pack("!HHII", sport, dport, 0, 0) + struct.pack("!BBH", chunk_type, 0, 20) + bytes(16)
    return packet[:8] + struct.pack("<I", crc32c(packet)) + packet[12:]


def serve_sctp(fam, only):
    s = socket.socket(fam, socket.SOCK_RAW, IPPROTO_SCTP)
    return lambda: sctp_loop(s, fam, only)


def sctp_loop(s, fam, only):
    while True:
        data, addr = s.recvfrom(4096)
        data = strip_ipv4(fam, data)
        if len(data) < SCTP_MIN or data[12] != SCTP_INIT:
            continue
        sport, dport = struct.unpack("!HH", data[:4])
        if only and dport not in only:
            continue
        s.sendto(sctp_packet(dport, sport, SCTP_INIT_ACK), (addr[0], 0))


def serve(args):
    opts = options(args, {})
    name = opts["name"].encode() if "name" in opts else None
    tcp = ports(opts["tcp"]) if "tcp" in opts else DEFAULT_TCP
    udp = ports(opts["udp"]) if "udp" in opts else DEFAULT_UDP
    # An SCTP responder answers every port unless told which.
    sctp = ports(opts["sctp"]) if "sctp" in opts else []
    want_sctp = "sctp" not in opts or bool(sctp)
    # Bind everything before saying "ready", so a test never races a bind.
    loops = [serve_tcp(p, name) for p in tcp]
    for p in udp:
        for fam in (socket.AF_INET, socket.AF_INET6):
            loops.append(serve_udp(p, fam, name))
    if want_sctp:
        for fam in (socket.AF_INET, socket.AF_INET6):
            loops.append(serve_sctp(fam, set(sctp)))
    for loop in loops:
        threading.Thread(target=loop, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()
    return 0


# ---- one request -----------------------------------------------------------


def request_tcp(dst, port, src, timeout):
    s = socket.socket(family(dst), socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        if src:
            s.bind((src, 0))
        s.connect((dst, port))
        s.sendall(b"bulkhead")
        data = s.recv(4096)
        return bool(data), data.decode(errors="replace") if data else "closed"
    except OSError as e:
        return False, "no answer: %s" % e
    finally:
        s.close()


def request_udp(dst, port, src, timeout, sport):
    fam = family(dst)
    s = socket.socket(fam, socket.SOCK_DGRAM)
    try:
        s.bind((src or anywhere(fam), sport))
        s.sendto(b"bulkhead", (dst, port))
        if not wait_readable(s, timeout):
            return False, "no answer within %.3f s" % timeout
        data = s.recv(4096)
        return bool(data), data.decode(errors="replace")
    except OSError as e:
        return False, "no answer: %s" % e
    finally:
        s.close()


def request_sctp(dst, port, src, timeout, sport):
    fam = family(dst)
    s = socket.socket(fam, socket.SOCK_RAW, IPPROTO_SCTP)
    try:
        if src:
            s.bind((src, 0))
        s.sendto(sctp_packet(sport, port, SCTP_INIT), (dst, 0))
        deadline = time.monotonic() + timeout
        while wait_readable(s, deadline - time.monotonic()):
            data, addr = s.recvfrom(4096)
            data = strip_ipv4(fam, data)
            if (addr[0] == dst and len(data) >= SCTP_MIN
                    and struct.unpack("!HH", data[:4]) == (port, sport)
                    and data[12] == SCTP_INIT_ACK):
                return True, "INIT ACK"
        return False, "no INIT ACK"
    except OSError as e:
        return False, "no answer: %s" % e
    finally:
        s.close()


def request_icmp(dst, src, timeout, ident):
    fam = family(dst)
    proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
    s = socket.socket(fam, socket.SOCK_RAW, proto)
    try:
        if src:
            s.bind((src, 0))
        req, rep = (128, 129) if fam == socket.AF_INET6 else (8, 0)
        body = struct.pack("!BBHHH", req, 0, 0, ident, 1) + b"bulkhead"
        if fam == socket.AF_INET:
            body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
        s.sendto(body, (dst, 0))
        deadline = time.monotonic() + timeout
        while wait_readable(s, deadline - time.monotonic()):
            data, addr = s.recvfrom(4096)
            data = strip_ipv4(fam, data)
            if addr[0] == dst and data[0] == rep and struct.unpack("!H", data[4:6])[0] == ident:
                return True, "echo reply"
        return False, "no echo reply"
    finally:
        s.close()


def request(proto, dst, port, src, timeout, sport):
    if proto == "tcp":
        return request_tcp(dst, port, src, timeout)
    if proto == "udp":
        return request_udp(dst, port, src, timeout, sport)
    if proto == "sctp":
        return request_sctp(dst, port, src, timeout, sport)
    if proto == "icmp":
        return request_icmp(dst, src, timeout, sport & 0xFFFF)
    raise SystemExit("traffic.py: unknown protocol %r" % proto)


def default_sport():
    return 20000 + os.getpid() % 20000


def probe(args):
    proto, dst, port = args[0], args[1], int(args[2])
    opts = options(args[3:], {"count": "1", "timeout": "1.0", "sport": str(default_sport())})
    ok = True
    for _ in range(int(opts["count"])):
        answered, _ = request(proto, dst, port, opts.get("src"), float(opts["timeout"]), int(opts["sport"]))
        ok &= answered
    return 0 if ok else 1


def batch(args):
    timeout = float(args[0])
    targets = [t.split(",") for t in args[1:]]
    results = [None] * len(targets)
    base = 20000 + os.getpid() % 30000

    def run(i):
        proto, dst, port = targets[i]
        # SCTP and ICMP name their own flow; UDP takes the kernel's port.
        sport = 0 if proto == "udp" else base + i
        results[i] = request(proto, dst, int(port), None, timeout, sport)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for ok, detail in results:
        print("%s %s" % ("ok" if ok else "no", detail.replace("\n", " ")))
    return 0


# ---- connections that last -------------------------------------------------


def conversation(args):
    s = socket.create_connection((args[0], int(args[1])), timeout=2)
    s.settimeout(0.5)
    print("connected", flush=True)
    while True:
        try:
            s.sendall(b"ping")
            data = s.recv(64)
            print("answered" if data else "closed", flush=True)
            if not data:
                return 0
        except socket.timeout:
            print("lost", flush=True)
        except OSError as e:
            print("error %s" % e, flush=True)
            return 0
        time.sleep(0.1)


def hold(args):
    s = socket.create_connection((args[0], int(args[1])), timeout=2)
    s.settimeout(1.0)
    line = "start"
    while line:
        try:
            s.sendall(b"x")
            ok = s.recv(16) == b"x"
        except OSError:
            ok = False
        print("ok" if ok else "fail", flush=True)
        line = sys.stdin.readline()
    return 0


def churn(args):
    """A new connection per exchange, client closing first. The request is
    `bytes` long and echoed as it arrives, so segments flow both ways at once
    and both ends' CPUs refresh the flow's conntrack entries together. An
    exchange that does not complete within `timeout` is a stall (a dropped
    reply that TCP would retransmit until it gives up)."""
    dst, port = args[0], int(args[1])
    opts = options(args[2:], {"count": "1000", "bytes": "8", "timeout": "3.0"})
    count, size, timeout = int(opts["count"]), int(opts["bytes"]), float(opts["timeout"])
    payload = (b"bulkhead" * (size // 8 + 1))[:size]
    stalled, slowest, start = 0, 0.0, time.monotonic()
    for _ in range(count):
        t0 = time.monotonic()
        s = socket.socket(family(dst), socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            s.sendall(payload)
            got = 0
            while got < size:
                chunk = s.recv(65536)
                if not chunk:
                    break
                got += len(chunk)
            if got != size:
                stalled += 1
        except OSError:
            stalled += 1
        finally:
            s.close()
        slowest = max(slowest, time.monotonic() - t0)
    print(json.dumps({"done": count, "stalled": stalled, "slowest_ms": round(slowest * 1000, 1),
                      "seconds": round(time.monotonic() - start, 2)}), flush=True)
    return 0 if stalled == 0 else 1


def forge(args):
    """One packet from SRC (not ours) to DST:PORT, IP header and all."""
    proto, src, dst, port = args[0], args[1], args[2], int(args[3])
    v6 = family(dst) == socket.AF_INET6
    number = 6 if proto == "tcp" else 17
    s_b, d_b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    sport = default_sport()
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, port, 1, 0, 0x50, 0x02, 0xFFFF, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, port, 8 + 4, 0) + b"spof"
    if v6:
        pseudo = s_b + d_b + struct.pack("!I3xB", len(l4), number)
    else:
        pseudo = s_b + d_b + struct.pack("!xBH", number, len(l4))
    offset = 16 if proto == "tcp" else 6
    l4 = l4[:offset] + struct.pack("!H", checksum(pseudo + l4)) + l4[offset + 2:]
    if v6:
        ip = struct.pack("!IHBB", 6 << 28, len(l4), number, 64) + s_b + d_b
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 1, 0, 64, number, 0) + s_b + d_b
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.sendto(ip + l4, (dst, 0))
    return 0


# ---- probers over time -----------------------------------------------------


def newflows(args):
    dst, port = args[0], int(args[1])
    interval, timeout = int(args[2]), int(args[3])
    first_port, last_port, stop_after = int(args[4]), int(args[5]), int(args[6])
    fam = family(dst)
    poller = select.epoll()
    pending = {}
    order = collections.deque()
    state = {"seq": 0, "sport": first_port}
    clock = time.monotonic_ns
    start = clock()
    next_send = start
    print("ready", flush=True)

    def fresh_socket():
        for _ in range(last_port - first_port + 1):
            s = socket.socket(fam, socket.SOCK_DGRAM)
            s.setblocking(False)
            p = state["sport"]
            state["sport"] = first_port if p >= last_port else p + 1
            try:
                s.bind((anywhere(fam), p))
                return s
            except OSError:
                s.close()
        raise SystemExit("traffic.py: no free source port")

    while clock() - start < stop_after:
        now = clock()
        if now >= next_send:
            s = fresh_socket()
            sent = clock()
            try:
                s.sendto(b"probe", (dst, port))
            except OSError:
                pass
            seq = state["seq"]
            pending[s.fileno()] = (seq, s, sent)
            order.append((sent, s.fileno(), seq))
            poller.register(s.fileno(), select.EPOLLIN)
            state["seq"] = seq + 1
            next_send += interval
            if next_send < now:
                next_send = now + interval
        lines = []
        while order:
            sent, fd, n = order[0]
            if fd in pending and pending[fd][0] == n and sent + timeout > clock():
                break
            order.popleft()
            if fd in pending and pending[fd][0] == n:
                _, s, _ = pending.pop(fd)
                poller.unregister(fd)
                s.close()
                lines.append("%d %d 0 0\n" % (n, sent))
        wake = min(next_send, order[0][0] + timeout if order else next_send)
        for fd, _ in poller.poll(max(0, wake - clock()) / 1e9):
            got = clock()
            n, s, sent = pending.pop(fd)
            poller.unregister(fd)
            try:
                answered = bool(s.recv(64))
            except OSError:
                answered = False
            s.close()
            lines.append("%d %d %d %d\n" % (n, sent, 1 if answered else 0, got if answered else 0))
        if lines:
            sys.stdout.write("".join(lines))
            sys.stdout.flush()
    return 0


MARK = 1 << 62  # the number of the datagrams that only check the path


def once(args):
    dst, port = args[0], int(args[1])
    count = int(options(args[2:], {"count": "20"})["count"])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    got = set()

    def receive_until(deadline):
        while len(got) < count and wait_readable(s, deadline - time.monotonic()):
            try:
                got.add(struct.unpack("!Q", s.recv(64)[:8])[0])
            except OSError:
                return

    for n in range(count):
        s.send(struct.pack("!Q", n))
        receive_until(time.monotonic() + 0.01)
    # Late echoes still count: a loaded machine answers in more than 10 ms.
    receive_until(time.monotonic() + 0.3)
    print(len(got), flush=True)
    return 0


def gaps(args):
    dst, port = args[0], int(args[1])
    interval_ms = float(options(args[2:], {"interval-ms": "1"})["interval-ms"])
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((dst, port))
    s.settimeout(0.05)
    deadline = time.monotonic() + 10
    while True:  # the path must work before anything counts
        s.send(struct.pack("!Q", MARK))
        try:
            if struct.unpack("!Q", s.recv(64)[:8])[0] == MARK:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            print(json.dumps({"error": "no echo"}), flush=True)
            return 1
    got = set()
    stop = threading.Event()

    def receive():
        s.settimeout(0.3)
        while True:
            try:
                n = struct.unpack("!Q", s.recv(64)[:8])[0]
                if n < MARK:
                    got.add(n)
            except OSError:
                if stop.is_set():
                    return

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    print("ready", flush=True)
    sent = 0
    start = time.monotonic()
    while not stop.is_set():
        s.send(struct.pack("!Q", sent))
        sent += 1
        # An absolute schedule: a late wake-up does not stretch the period.
        wait = start + sent * interval_ms / 1000 - time.monotonic()
        if wait > 0:
            time.sleep(wait)
    elapsed = time.monotonic() - start
    receiver.join()
    lost = [n for n in range(sent) if n not in got]
    gap, run, prev = 0, 0, None
    for n in lost:
        run = run + 1 if prev == n - 1 else 1
        gap = max(gap, run)
        prev = n
    print(json.dumps({
        "sent": sent,
        "received": len(got),
        "lost": len(lost),
        "first_lost": lost[:10],
        "longest_gap": gap,
        "longest_gap_ms": gap * interval_ms,
        "seconds": round(elapsed, 3),
        "achieved_interval_ms": round(elapsed * 1000 / max(sent, 1), 3),
    }), flush=True)
    return 0


COMMANDS = {
    "serve": serve,
    "probe": probe,
    "batch": batch,
    "conversation": conversation,
    "hold": hold,
    "churn": churn,
    "forge": forge,
    "newflows": newflows,
    "gaps": gaps,
    "once": once,
}


def main(argv):
    if not argv or argv[0] not in COMMANDS:
        sys.stderr.write(__doc__)
        return 2
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
