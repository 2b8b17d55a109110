/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events to the ring buffer. bh_emit describes one packet (a deny, or
 * the first packet of a new flow whose entry was created at `flow_ns`);
 * bh_emit_ct describes a tracked flow from its entry. A full ring loses the event, never the
 * packet; the loss is counted. */
#ifndef BULKHEAD_LIB_FLOW_H
#define BULKHEAD_LIB_FLOW_H

#include "maps.h"
#include "parse.h"
#include "policy.h"

/* The ring buffer carries no type, so nothing else would put struct
 * flow_event into the object's BTF, where the agent's layout test reads it. */
struct flow_event *const volatile bh_btf_anchor_flow_event = 0;

static __always_inline void bh_emit(struct __sk_buff *skb, const struct bh_pkt *p,
				    const struct endpoint_info *ep, __u8 dir, __u32 peer,
				    const struct bh_decision *d, __u8 event, __u32 generation,
				    __u64 flow_ns)
{
	struct flow_event *e = bpf_ringbuf_reserve(&bh_events, sizeof(*e), 0);

	if (!e) {
		bh_count(BH_CNT_EVENTS_LOST);
		return;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	e->packets = 1;
	e->bytes = p->len;
	e->flow_ns = flow_ns;
	__builtin_memcpy(e->saddr, p->saddr, 16);
	__builtin_memcpy(e->daddr, p->daddr, 16);
	e->local_identity = ep->identity;
	e->peer_identity = peer;
	e->rule_id = d->rule_id;
	e->generation = generation;
	e->ifindex = skb->ifindex;
	e->sport = p->is_icmp ? 0 : p->sport;
	e->dport = p->is_icmp ? bpf_htons(p->icmp_type) : p->dport;
	e->family = p->family;
	e->protocol = p->protocol;
	e->direction = dir;
	e->event = event;
	e->action = d->action;
	e->verdict = d->verdict;
	e->would_verdict = d->would_verdict;
	e->mode = ep->mode;
	e->reason = d->reason;
	e->flags = (p->snat_hidden ? BH_FLOW_F_SNAT_HIDDEN : 0) |
		   (p->via_service ? BH_FLOW_F_TO_SERVICE : 0);
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_ringbuf_submit(e, 0);
}

/* An event about a tracked flow, described by its entry: the tuple and
 * direction it was opened with (whichever way this packet goes), the port it
 * was judged on, and its counters so far. */
static __always_inline void bh_emit_ct(struct __sk_buff *skb, const struct ct_key *k,
				       const struct ct_value *ct, const struct endpoint_info *ep,
				       const struct bh_decision *d, __u8 event, __u32 generation)
{
	struct flow_event *e = bpf_ringbuf_reserve(&bh_events, sizeof(*e), 0);

	if (!e) {
		bh_count(BH_CNT_EVENTS_LOST);
		return;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	e->packets = ct->packets;
	e->bytes = ct->bytes;
	e->flow_ns = ct->created_ns;
	__builtin_memcpy(e->saddr, k->saddr, 16);
	__builtin_memcpy(e->daddr, k->daddr, 16);
	e->local_identity = ep->identity;
	e->peer_identity = ct->peer_identity;
	e->rule_id = d->rule_id;
	e->generation = generation;
	e->ifindex = skb->ifindex;
	e->sport = (k->protocol == IPPROTO_ICMP_ || k->protocol == IPPROTO_ICMPV6_) ? 0 : k->sport;
	e->dport = bpf_htons(ct->policy_port);
	e->family = k->family;
	e->protocol = k->protocol;
	e->direction = k->direction;
	e->event = event;
	e->action = d->action;
	e->verdict = d->verdict;
	e->would_verdict = d->would_verdict;
	e->mode = ep->mode;
	e->reason = d->reason;
	e->flags = ((ct->flags & BH_CT_F_SNAT_HIDDEN) ? BH_FLOW_F_SNAT_HIDDEN : 0) |
		   ((ct->flags & BH_CT_F_TO_SERVICE) ? BH_FLOW_F_TO_SERVICE : 0);
	__builtin_memset(e->pad, 0, sizeof(e->pad));
	bpf_ringbuf_submit(e, 0);
}

#endif
