// rr: request/response load for bench/rr.sh, one process per side.
//
//   rr server PORT                      TCP and UDP echo of 1-byte requests
//   rr client MODE ADDR PORT SECONDS    MODE: tcp_rr | tcp_crr | udp_rr
//   rr probe ADDR PORT TIMEOUT_MS       exit 0 if a TCP connect succeeds
//
// The client prints one line: `MODE ops=N ops_per_s=X mean_us=X p50_us=X
// p99_us=X errors=N`. tcp_rr is one connection and a 1-byte request and reply
// at a time (netperf's TCP_RR); tcp_crr opens, asks, reads the reply and the
// server's close, and closes, every connection new (TCP_CRR); udp_rr is
// UDP_RR. Latencies are kept in 100 ns buckets up to 10 ms, so percentiles
// are exact to 0.1 us below that.
//
// The server closes a CRR connection first (after its reply), so TIME_WAIT
// stays on the server side and the client never runs out of ports.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUCKET_NS 100
#define BUCKETS 100000 /* 10 ms */

static uint64_t hist[BUCKETS + 1];

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what) {
    fprintf(stderr, "rr: %s: %s\n", what, strerror(errno));
    exit(2);
}

static struct sockaddr_in addr_of(const char *ip, const char *port) {
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    if (inet_pton(AF_INET, ip, &a.sin_addr) != 1) {
        fprintf(stderr, "rr: not an IPv4 address: %s\n", ip);
        exit(2);
    }
    return a;
}

static void nodelay(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static _Noreturn void server(const char *port) {
    struct sockaddr_in a = addr_of("0.0.0.0", port);
    int one = 1;
    int lt = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int us = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (lt < 0 || us < 0) die("socket");
    setsockopt(lt, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lt, (struct sockaddr *)&a, sizeof a) < 0) die("bind tcp");
    if (listen(lt, 4096) < 0) die("listen");
    if (bind(us, (struct sockaddr *)&a, sizeof a) < 0) die("bind udp");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lt};
    epoll_ctl(ep, EPOLL_CTL_ADD, lt, &ev);
    ev.data.fd = us;
    epoll_ctl(ep, EPOLL_CTL_ADD, us, &ev);
    struct epoll_event evs[64];
    char buf[64];
    for (;;) {
        int n = epoll_wait(ep, evs, 64, -1);
        if (n < 0 && errno != EINTR) die("epoll_wait");
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lt) {
                int c;
                while ((c = accept4(lt, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
                    nodelay(c);
                    struct epoll_event cev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
            } else if (fd == us) {
                struct sockaddr_in from;
                socklen_t len = sizeof from;
                ssize_t r;
                while ((r = recvfrom(us, buf, sizeof buf, 0, (struct sockaddr *)&from, &len)) > 0) {
                    sendto(us, buf, (size_t)r, 0, (struct sockaddr *)&from, len);
                    len = sizeof from;
                }
            } else {
                ssize_t r = read(fd, buf, sizeof buf);
                if (r > 0) {
                    /* 'c' asks for one reply and a close: the CRR request */
                    if (write(fd, buf, (size_t)r) < 0 || buf[0] == 'c') {
                        epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                        close(fd);
                    }
                } else if (r == 0 || (errno != EAGAIN && errno != EINTR)) {
                    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
                    close(fd);
                }
            }
        }
    }
}

static void record(uint64_t ns) {
    uint64_t b = ns / BUCKET_NS;
    hist[b > BUCKETS ? BUCKETS : b]++;
}

static double percentile(uint64_t total, double p) {
    uint64_t want = (uint64_t)((double)total * p);
    uint64_t seen = 0;
    for (int i = 0; i <= BUCKETS; i++) {
        seen += hist[i];
        if (seen > want) return (i + 0.5) * BUCKET_NS / 1000.0;
    }
    return BUCKETS * BUCKET_NS / 1000.0;
}

/* One request and its reply on a connected socket; 0 on success. */
static int ask(int fd, char req) {
    char buf[1];
    if (write(fd, &req, 1) != 1) return -1;
    return read(fd, buf, 1) == 1 ? 0 : -1;
}

static int connect_to(const struct sockaddr_in *a, int type) {
    int fd = socket(AF_INET, type, 0);
    if (fd < 0) return -1;
    struct timeval tv = {.tv_sec = 1};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (type == SOCK_STREAM) nodelay(fd);
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int client(const char *mode, const char *ip, const char *port, const char *secs) {
    struct sockaddr_in a = addr_of(ip, port);
    uint64_t end = now_ns() + (uint64_t)(atof(secs) * 1e9);
    uint64_t ops = 0, errors = 0, sum = 0;
    int crr = strcmp(mode, "tcp_crr") == 0;
    int udp = strcmp(mode, "udp_rr") == 0;
    if (!crr && !udp && strcmp(mode, "tcp_rr") != 0) {
        fprintf(stderr, "rr: unknown mode %s\n", mode);
        return 2;
    }
    int fd = -1;
    uint64_t start = now_ns(), t;
    while ((t = now_ns()) < end) {
        int ok;
        if (crr) {
            int c = connect_to(&a, SOCK_STREAM);
            char eof;
            ok = c >= 0 && ask(c, 'c') == 0 && read(c, &eof, 1) == 0;
            if (c >= 0) close(c);
        } else {
            if (fd < 0) fd = connect_to(&a, udp ? SOCK_DGRAM : SOCK_STREAM);
            ok = fd >= 0 && ask(fd, 'r') == 0;
            if (!ok && fd >= 0) {
                close(fd);
                fd = -1;
            }
        }
        uint64_t d = now_ns() - t;
        if (!ok) {
            errors++;
            continue;
        }
        ops++;
        sum += d;
        record(d);
    }
    double elapsed = (double)(now_ns() - start) / 1e9;
    printf("%s ops=%llu ops_per_s=%.0f mean_us=%.2f p50_us=%.1f p99_us=%.1f errors=%llu\n", mode,
           (unsigned long long)ops, ops / elapsed, ops ? sum / 1000.0 / ops : 0.0,
           percentile(ops, 0.50), percentile(ops, 0.99), (unsigned long long)errors);
    return ops ? 0 : 1;
}

static int probe(const char *ip, const char *port, const char *timeout_ms) {
    struct sockaddr_in a = addr_of(ip, port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) die("socket");
    if (connect(fd, (struct sockaddr *)&a, sizeof a) == 0) return 0;
    if (errno != EINPROGRESS) return 1;
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    if (poll(&p, 1, atoi(timeout_ms)) != 1) return 1;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
    return err == 0 ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && strcmp(argv[1], "server") == 0) server(argv[2]);
    if (argc == 6 && strcmp(argv[1], "client") == 0) return client(argv[2], argv[3], argv[4], argv[5]);
    if (argc == 5 && strcmp(argv[1], "probe") == 0) return probe(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: rr server PORT | rr client tcp_rr|tcp_crr|udp_rr ADDR PORT SECONDS | "
                    "rr probe ADDR PORT TIMEOUT_MS\n");
    return 2;
}
