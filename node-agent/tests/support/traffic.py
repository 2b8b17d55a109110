#!/usr/bin/env python3
"""Real test traffic for the datapath tests, run inside network namespaces.

  traffic.py serve                       echo servers: TCP and UDP on PORTS (dual stack),
                                         an SCTP responder on a raw socket (no SCTP module needed)
  traffic.py probe PROTO DST PORT [--src ADDR] [--count N] [--timeout S]
                                         exit 0 when every probe got its answer, 1 otherwise
  traffic.py hold DST PORT               TCP: connect and exchange; then one exchange per
                                         line read from stdin; prints "ok" or "fail" each time
  traffic.py churn DST PORT --count N [--bytes B] [--timeout S]
                                         TCP connect/request/reply/close, N times in a row, each
                                         request B bytes echoed back while it is still being sent;
                                         prints one JSON line: done, stalled, slowest_ms, seconds
  traffic.py forge PROTO SRC DST PORT     one UDP datagram or TCP SYN with a forged source
                                         address, written on a raw socket (needs NET_RAW)
PROTO is tcp, udp, sctp or icmp (ICMP echo; ICMPv6 for IPv6 destinations).
"""
import ipaddress
import os
import select
import socket
import struct
import sys
import threading

TCP_PORTS = [22, 23, 80, 443, 7000, 8000, 8080, 9000]
UDP_PORTS = [53, 80, 5000, 5001, 5353, 6005, 7777, 9999]


def family(addr):
    return socket.AF_INET6 if ipaddress.ip_address(addr).version == 6 else socket.AF_INET


def serve_tcp(port):
    s = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    s.listen(64)
    while True:
        c, _ = s.accept()
        threading.Thread(target=echo_conn, args=(c,), daemon=True).start()


def echo_conn(c):
    try:
        while True:
            data = c.recv(4096)
            if not data:
                break
            c.sendall(data)
    except OSError:
        pass
    finally:
        c.close()


IP_PKTINFO = 8
IPV6_RECVPKTINFO = 49
IPV6_PKTINFO = 50


def serve_udp(port, fam):
    # Answer from the address the datagram was sent to (a host with several
    # addresses would otherwise pick a source by route, and conntrack would
    # rightly not see a reply).
    s = socket.socket(fam, socket.SOCK_DGRAM)
    if fam == socket.AF_INET6:
        s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        s.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVPKTINFO, 1)
        s.bind(("::", port))
    else:
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.bind(("0.0.0.0", port))
    while True:
        data, anc, _, addr = s.recvmsg(4096, socket.CMSG_SPACE(64))
        reply_anc = []
        for level, kind, cdata in anc:
            if fam == socket.AF_INET and level == socket.IPPROTO_IP and kind == IP_PKTINFO:
                local = cdata[8:12]
                reply_anc = [(socket.IPPROTO_IP, IP_PKTINFO, struct.pack("=i4s4s", 0, local, bytes(4)))]
            if fam == socket.AF_INET6 and level == socket.IPPROTO_IPV6 and kind == IPV6_PKTINFO:
                reply_anc = [(socket.IPPROTO_IPV6, IPV6_PKTINFO, cdata[:16] + struct.pack("=i", 0))]
        s.sendmsg([data], reply_anc, 0, addr)


def sctp_packet(sport, dport, chunk_type):
    # common header (checksum left 0: nothing here verifies it) + one chunk
    return struct.pack("!HHII", sport, dport, 0, 0) + struct.pack("!BBH", chunk_type, 0, 20) + bytes(16)


def serve_sctp(fam):
    s = socket.socket(fam, socket.SOCK_RAW, 132)
    while True:
        data, addr = s.recvfrom(4096)
        if fam == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if len(data) < 13 or data[12] != 1:  # answer INIT chunks only
            continue
        sport, dport = struct.unpack("!HH", data[:4])
        s.sendto(sctp_packet(dport, sport, 2), (addr[0], 0))


def serve():
    for p in TCP_PORTS:
        threading.Thread(target=serve_tcp, args=(p,), daemon=True).start()
    for p in UDP_PORTS:
        for fam in (socket.AF_INET, socket.AF_INET6):
            threading.Thread(target=serve_udp, args=(p, fam), daemon=True).start()
    for fam in (socket.AF_INET, socket.AF_INET6):
        threading.Thread(target=serve_sctp, args=(fam,), daemon=True).start()
    print("serving", flush=True)
    threading.Event().wait()


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    return ~total & 0xFFFF


def wait_readable(s, timeout):
    return bool(select.select([s], [], [], timeout)[0])


def probe_icmp(dst, src, timeout, ident):
    fam = family(dst)
    proto = socket.IPPROTO_ICMPV6 if fam == socket.AF_INET6 else socket.IPPROTO_ICMP
    s = socket.socket(fam, socket.SOCK_RAW, proto)
    if src:
        s.bind((src, 0))
    req, rep = (128, 129) if fam == socket.AF_INET6 else (8, 0)
    body = struct.pack("!BBHHH", req, 0, 0, ident, 1) + b"bulkhead"
    if fam == socket.AF_INET:
        body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    s.sendto(body, (dst, 0))
    while wait_readable(s, timeout):
        data, addr = s.recvfrom(4096)
        if fam == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if addr[0] == dst and data[0] == rep and struct.unpack("!H", data[4:6])[0] == ident:
            return True
    return False


def probe_sctp(dst, port, src, timeout, sport):
    fam = family(dst)
    s = socket.socket(fam, socket.SOCK_RAW, 132)
    if src:
        s.bind((src, 0))
    s.sendto(sctp_packet(sport, port, 1), (dst, 0))
    while wait_readable(s, timeout):
        data, addr = s.recvfrom(4096)
        if fam == socket.AF_INET:
            data = data[(data[0] & 0x0F) * 4:]
        if addr[0] == dst and len(data) >= 4 and struct.unpack("!HH", data[:4]) == (port, sport):
            return True
    return False


def probe_udp(dst, port, src, timeout, sport):
    s = socket.socket(family(dst), socket.SOCK_DGRAM)
    s.bind((src or ("::" if family(dst) == socket.AF_INET6 else "0.0.0.0"), sport))
    s.sendto(b"bulkhead", (dst, port))
    if not wait_readable(s, timeout):
        return False
    return s.recv(4096) == b"bulkhead"


def probe_tcp(dst, port, src, timeout):
    s = socket.socket(family(dst), socket.SOCK_STREAM)
    s.settimeout(timeout)
    if src:
        s.bind((src, 0))
    try:
        s.connect((dst, port))
        s.sendall(b"bulkhead")
        return s.recv(4096) == b"bulkhead"
    except OSError:
        return False
    finally:
        s.close()


def churn(dst, port, count, size, timeout):
    """A new connection per exchange, client closing first. The request is
    `size` bytes that the server echoes as they arrive, so segments flow both
    ways at once and both ends' CPUs refresh the flow's conntrack entries
    together. An exchange that does not complete within `timeout` is a stall
    (a dropped reply that TCP would retransmit until it gives up)."""
    import json
    import time

    request = (b"bulkhead" * (size // 8 + 1))[:size]
    stalled, slowest, start = 0, 0.0, time.monotonic()
    for _ in range(count):
        t0 = time.monotonic()
        s = socket.socket(family(dst), socket.SOCK_STREAM)
        s.settimeout(timeout)
        try:
            s.connect((dst, port))
            s.sendall(request)
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


def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def forge(proto, src, dst, port):
    """One packet from SRC (not ours) to DST:PORT, IP header and all."""
    v6 = family(dst) == socket.AF_INET6
    number = 6 if proto == "tcp" else 17
    s_b, d_b = ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed
    sport = 20000 + os.getpid() % 20000
    if proto == "tcp":
        l4 = struct.pack("!HHIIBBHHH", sport, port, 1, 0, 0x50, 0x02, 0xFFFF, 0, 0)
    else:
        l4 = struct.pack("!HHHH", sport, port, 8 + 4, 0) + b"spof"
    if v6:
        pseudo = s_b + d_b + struct.pack("!I3xB", len(l4), number)
    else:
        pseudo = s_b + d_b + struct.pack("!xBH", number, len(l4))
    csum = checksum(pseudo + l4)
    offset = 16 if proto == "tcp" else 6
    l4 = l4[:offset] + struct.pack("!H", csum) + l4[offset + 2:]
    if v6:
        ip = struct.pack("!IHBB", 6 << 28, len(l4), number, 64) + s_b + d_b
        sock = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
    else:
        ip = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(l4), 1, 0, 64, number, 0) + s_b + d_b
        sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    sock.sendto(ip + l4, (dst, 0))
    return 0


def main():
    args = sys.argv[1:]
    if args[0] == "forge":
        return forge(args[1], args[2], args[3], int(args[4]))
    if args[0] == "churn":
        opts = dict(zip(args[3::2], args[4::2]))
        return churn(args[1], int(args[2]), int(opts.get("--count", "1000")),
                     int(opts.get("--bytes", "8")), float(opts.get("--timeout", "3.0")))
    if args[0] == "serve":
        serve()
        return 0
    if args[0] == "hold":
        dst, port = args[1], int(args[2])
        s = socket.create_connection((dst, port), timeout=2)
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
    proto, dst, port = args[1], args[2], int(args[3])
    opts = dict(zip(args[4::2], args[5::2]))
    src = opts.get("--src")
    count = int(opts.get("--count", "1"))
    timeout = float(opts.get("--timeout", "1.0"))
    sport = int(opts.get("--sport", str(20000 + os.getpid() % 20000)))
    ok = True
    for _ in range(count):
        if proto == "tcp":
            ok &= probe_tcp(dst, port, src, timeout)
        elif proto == "udp":
            ok &= probe_udp(dst, port, src, timeout, sport)
        elif proto == "sctp":
            ok &= probe_sctp(dst, port, src, timeout, sport)
        elif proto == "icmp":
            ok &= probe_icmp(dst, src, timeout, sport & 0xFFFF)
        else:
            raise SystemExit("unknown protocol " + proto)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
