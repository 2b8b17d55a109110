#!/usr/bin/env python3
"""Prints bench/rr.sh's tables (markdown) from the run directory's TSV files:
medians over the rounds, and ratios to no program and to the nftables set."""
import collections
import os
import statistics
import sys

work, load, rounds, seconds = sys.argv[1:5]


def rows(name):
    path = os.path.join(work, name)
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


runs = collections.defaultdict(list)
order = []
for rnd, cfg, path, line in rows("results.tsv"):
    fields = line.split()
    mode, kv = fields[0], dict(f.split("=") for f in fields[1:])
    runs[(cfg, path, mode)].append({k: float(v) for k, v in kv.items()})
    if cfg not in order:
        order.append(cfg)


def med(cfg, path, mode, key):
    vals = [r[key] for r in runs.get((cfg, path, mode), [])]
    return statistics.median(vals) if vals else None


def ratio(v, base):
    return f" ({v / base:.2f})" if v is not None and base else ""


refused = {(c, p): v for c, p, v in rows("refused.tsv")}
print(f"rounds: {rounds} x {seconds} s per measurement, medians; load before the run: {load}")
print("ratios: (to no program) [to the nftables set]\n")
for path in sorted({k[1] for k in runs}, key=lambda p: p != "same"):
    print(f"### {path}-node: a -> {'b' if path == 'same' else 'd on the other node'}\n")
    print("| config | TCP_RR mean us | p50 | p99 | TCP_RR/s | TCP_CRR/s | UDP_RR/s | port 8001 |")
    print("|---|---|---|---|---|---|---|---|")
    for cfg in order:
        cells = []
        for mode, key in (("tcp_rr", "mean_us"), ("tcp_rr", "p50_us"), ("tcp_rr", "p99_us"),
                          ("tcp_rr", "ops_per_s"), ("tcp_crr", "ops_per_s"), ("udp_rr", "ops_per_s")):
            v = med(cfg, path, mode, key)
            if v is None:
                cells.append("-")
                continue
            text = f"{v / 1000:.1f}k" if key == "ops_per_s" else f"{v:.1f}"
            if key in ("mean_us", "ops_per_s", "p99_us"):
                text += ratio(v, med("none", path, mode, key))
                nft = med("nft-10k", path, mode, key)
                if nft and cfg != "nft-10k":
                    text += f" [{v / nft:.2f}]"
            cells.append(text)
        errors = sum(r.get("errors", 0) for m in ("tcp_rr", "tcp_crr", "udp_rr")
                     for r in runs.get((cfg, path, m), []))
        cells.append(refused.get((cfg, path), "-") + (f", {errors:.0f} errors" if errors else ""))
        print(f"| {cfg} | " + " | ".join(cells) + " |")
    print()

agent = rows("agent.tsv")
stats = {c: (ns, cnt) for c, ns, cnt in rows("bpfstats.tsv")}
if agent or stats:
    print("| Bulkhead config | to enforcing ms (median) | agent RSS MiB (max) | ns per program run (bpf_stats, TCP_RR) |")
    print("|---|---|---|---|")
    by = collections.defaultdict(list)
    for cfg, ms, rss in agent:
        by[cfg].append((float(ms), float(rss) / 1024))
    for cfg in order:
        if cfg not in by and cfg not in stats:
            continue
        vals = by.get(cfg, [])
        ms = f"{statistics.median(v[0] for v in vals):.0f}" if vals else "-"
        rss = f"{max(v[1] for v in vals):.0f}" if vals else "-"
        ns = stats.get(cfg, ("-", 0))[0]
        print(f"| {cfg} | {ms} | {rss} | {ns} |")
