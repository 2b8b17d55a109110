// The baseline program for bench/rr.sh: attached to the same TCX hooks as
// Bulkhead's endpoint programs, it passes every packet, so the difference
// between it and no program is the hooks' own cost.
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int bench_noop(struct __sk_buff *skb) {
    (void)skb;
    return TC_ACT_OK;
}

char LICENSE[] SEC("license") = "GPL";
