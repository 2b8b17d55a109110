/* SPDX-License-Identifier: Apache-2.0 */
/* The verdict for (local endpoint, direction, peer identity, protocol, port).
 * See policy_types.h for the key layout and the fixed wildcard lookup order. */
#ifndef BULKHEAD_LIB_POLICY_H
#define BULKHEAD_LIB_POLICY_H

#include "maps.h"

struct bh_decision {
	__u32 rule_id;
	__u8 action;        /* BH_ACTION_*, NONE when nothing matched */
	__u8 verdict;       /* enforced under the endpoint's mode */
	__u8 would_verdict; /* the full-mode verdict */
	__u8 reason;
};

static __always_inline int bh_is_failsafe(const struct bh_pkt *p, const struct endpoint_info *ep,
					  __u8 dir, __u8 proto, __u16 port)
{
	struct failsafe_key k = {};

	if (!(ep->flags & BH_EP_F_HOST))
		return 0;
	k.protocol = proto;
	k.direction = dir;
	k.port = bpf_htons(port);
	return bh_slot_lookup(bh_failsafe, p->generation, &k) != 0;
}

/* A TCP segment past the opening SYN (ACK set) that comes from a failsafe
 * port of the other direction: the far end of a failsafe connection whose
 * start these programs never saw (it was open before they were attached, or
 * its entry was evicted). Judged as a new flow it would be read backwards,
 * as traffic to the local ephemeral port, and a strict policy would cut the
 * node off its API server. A bare SYN never matches, so no connection can
 * be opened this way. */
static __always_inline int bh_is_failsafe_reply(const struct bh_pkt *p,
						const struct endpoint_info *ep, __u8 dir,
						__u8 proto, __u8 tcp_flags, __u16 sport)
{
	if (proto != IPPROTO_TCP_ || !(tcp_flags & BH_TCP_ACK))
		return 0;
	return bh_is_failsafe(p, ep, !dir, proto, sport);
}

static __always_inline void bh_failsafe_decision(struct bh_decision *d)
{
	d->rule_id = 0;
	d->action = BH_ACTION_ALLOW;
	d->verdict = BH_VERDICT_ALLOW;
	d->would_verdict = BH_VERDICT_ALLOW;
	d->reason = BH_REASON_FAILSAFE;
}

static __always_inline struct policy_value *bh_policy_lookup(const struct bh_pkt *p,
							       __u32 subject, __u8 dir, __u32 peer,
							       __u8 proto, __u16 port)
{
	struct policy_key k = {};
	struct policy_value *v;

	k.prefixlen = BH_POLICY_FULL_PREFIX;
	k.subject = subject;
	k.peer = peer;
	k.direction = dir;
	k.protocol = proto;
	k.port = bpf_htons(port);
	v = bh_slot_lookup(bh_policy, p->generation, &k);
	if (v || peer == BH_ID_ANY)
		return v;
	k.peer = BH_ID_ANY;
	return bh_slot_lookup(bh_policy, p->generation, &k);
}

static __always_inline void bh_decide(const struct bh_pkt *p, const struct endpoint_info *ep,
				      __u8 dir, __u32 peer, __u8 proto, __u16 port,
				      struct bh_decision *d)
{
	struct policy_value *v;

	d->rule_id = 0;
	if (bh_is_failsafe(p, ep, dir, proto, port)) {
		bh_failsafe_decision(d);
		return;
	}
	v = bh_policy_lookup(p, ep->identity, dir, peer, proto, port);
	if (v) {
		d->action = v->action;
		d->rule_id = v->rule_id;
		d->reason = BH_REASON_POLICY;
	} else {
		d->action = BH_ACTION_NONE;
		d->reason = BH_REASON_DEFAULT;
	}
	d->would_verdict = d->action == BH_ACTION_ALLOW ? BH_VERDICT_ALLOW : BH_VERDICT_DENY;
	switch (ep->mode) {
	case BH_MODE_FULL:
		d->verdict = d->would_verdict;
		break;
	case BH_MODE_SELECTIVE:
		d->verdict = (d->action == BH_ACTION_DENY || d->action == BH_ACTION_OVERRIDE_DENY)
				     ? BH_VERDICT_DENY
				     : BH_VERDICT_ALLOW;
		break;
	default: /* visibility, and any mode this program does not know */
		d->verdict = BH_VERDICT_ALLOW;
		break;
	}
}

#endif
