/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events to the ring buffer. A full ring loses the event, never the
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
				    const struct bh_decision *d, __u8 event, __u32 generation)
{
	struct flow_event *e = bpf_ringbuf_reserve(&bh_events, sizeof(*e), 0);

	if (!e) {
		bh_count(BH_CNT_EVENTS_LOST);
		return;
	}
	e->timestamp_ns = bpf_ktime_get_ns();
	__builtin_memcpy(e->saddr, p->saddr, 16);
	__builtin_memcpy(e->daddr, p->daddr, 16);
	e->local_identity = ep->identity;
	e->peer_identity = peer;
	e->rule_id = d->rule_id;
	e->bytes = p->len;
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
	e->pad[0] = 0;
	e->pad[1] = 0;
	e->pad[2] = 0;
	bpf_ringbuf_submit(e, 0);
}

#endif
