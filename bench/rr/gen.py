#!/usr/bin/env python3
"""Rule maps for bench/rr.sh: pods a (10.98.0.10), b (10.98.0.11) and d
(10.98.1.11, b's identity) where a may reach b and d on TCP and UDP 8000 and nothing else, plus N filler rules and N filler
address->identity entries that no packet of the run matches, so the maps are
as large as a real node's at N rules.

  gen.py --rules N --mode full|visibility --out DIR --node NAME=a,b [--node NAME=b ...]

Writes DIR/identities.json and DIR/rule-map-NAME.json for each node, with the
named pods local to it.
"""
import argparse
import ipaddress
import json
import os

# d, on the second node, has the labels (and so the identity) of b.
PODS = {"a": ("10.98.0.10", 1000), "b": ("10.98.0.11", 1001), "d": ("10.98.1.11", 1001)}
FILLER_PEERS = 1000  # distinct peer identities the filler rules name
FILLER_BASE = ipaddress.IPv4Address("10.64.0.1")


def rules(n):
    out = []
    rid = 1
    for proto in ("TCP", "UDP"):
        port = [{"protocol": proto, "first": 8000, "last": 8000}]
        out.append({"id": rid, "policy": "a-out", "rule": f"to-b-{proto}", "direction": "egress",
                    "action": "allow", "subjects": [1000], "peers": [1001], "ports": port})
        out.append({"id": rid + 1, "policy": "b-in", "rule": f"from-a-{proto}", "direction": "ingress",
                    "action": "allow", "subjects": [1001], "peers": [1000], "ports": port})
        rid += 2
    for i in range(max(n - len(out), 0)):
        port = 9000 + i // FILLER_PEERS
        out.append({"id": rid + i, "policy": "filler", "rule": f"r{i}",
                    "direction": "egress" if i % 2 else "ingress", "action": "allow",
                    "subjects": [1000 + i % 2], "peers": [2000 + i % FILLER_PEERS],
                    "ports": [{"protocol": "TCP", "first": port, "last": port}]})
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rules", type=int, required=True)
    p.add_argument("--mode", choices=["full", "visibility"], default="full")
    p.add_argument("--out", required=True)
    p.add_argument("--node", action="append", required=True, help="NAME=a,b")
    args = p.parse_args()
    os.makedirs(args.out, exist_ok=True)
    prefixes = [{"cidr": f"{ip}/32", "identity": ident} for ip, ident in PODS.values()]
    prefixes += [{"cidr": f"{FILLER_BASE + i}/32", "identity": 2000 + i % FILLER_PEERS}
                 for i in range(args.rules)]
    with open(os.path.join(args.out, "identities.json"), "w") as f:
        json.dump({"shard": 0, "shards": 1, "identities": [], "prefixes": prefixes}, f)
    compiled = rules(args.rules)
    for k, spec in enumerate(args.node):
        name, pods = spec.split("=")
        endpoints = [{"name": f"default/{p}", "identity": PODS[p][1], "mode": args.mode,
                      "addresses": [PODS[p][0]]} for p in pods.split(",")]
        rule_map = {
            "nodeKind": "Node",
            "host": {"name": name, "identity": 500 + k, "mode": "full",
                     "addresses": [f"10.99.{k}.1"]},
            "endpoints": endpoints,
            "rules": compiled,
            "failsafePorts": [],
        }
        with open(os.path.join(args.out, f"rule-map-{name}.json"), "w") as f:
            json.dump(rule_map, f)


if __name__ == "__main__":
    main()
