/* SPDX-License-Identifier: Apache-2.0 */
/* One endpoint's side of a packet: conntrack, then policy for new flows.
 *
 *   established (own tuple, own direction)  -> pass; re-evaluate first if the
 *                                             maps' generation moved on
 *   reply (reversed tuple, other direction) -> pass; same re-evaluation of the
 *                                             original flow
 *   new                                     -> decide (a hit of the deciding
 *                                             rule, lib/hits.h); allowed flows
 *                                             get an entry, denied packets are
 *                                             dropped
 *
 * A re-evaluation that now denies deletes the entry and drops the packet, so
 * a policy change stops established connections at their next packet.
 *
 * A pod's VIA_SERVICE entry (lib/service.h) is only ever found here as the
 * flow a Service's reply answers: it passes the reply and is never
 * re-evaluated or reported itself, since the pod's egress was judged (and is
 * re-evaluated) on the backend's tuple.
 *
 * ICMP and ICMPv6 errors (GHSA-c66w-hq56-4q97) are judged with the flow
 * whose packet they quote, never as flows of their own:
 *   quoted packet of a tracked flow   -> that flow's verdict (pass; its
 *                                        re-evaluation first), no new entry,
 *                                        the flow is not kept alive by it
 *   quoted packet of no tracked flow  -> dropped in full and selective mode
 *                                        whatever the rules say, a would-be
 *                                        deny in visibility mode; no entry.
 *                                        Errors the node itself sends pass
 *                                        (it is its pods' router). */
#ifndef BULKHEAD_LIB_ENFORCE_H
#define BULKHEAD_LIB_ENFORCE_H

#include "conntrack.h"
#include "flow.h"
#include "hits.h"
#include "identity.h"

#define BH_CONTINUE -2

static __always_inline int bh_reevaluate(struct __sk_buff *skb, const struct bh_pkt *p,
					 const struct endpoint_info *ep, __u8 flow_dir, __u32 peer,
					 struct ct_key *k, struct ct_value *ct, __u32 gen)
{
	struct bh_decision d;

	bh_count(BH_CNT_REEVALUATED);
	bh_decide(p, ep, flow_dir, peer, k->protocol, ct->policy_port, &d);
	if (d.verdict == BH_VERDICT_DENY) {
		bh_count(BH_CNT_REEVAL_DENIED);
		bh_count(BH_CNT_DENIED);
		ct->peer_identity = peer;
		bh_emit_ct(skb, k, ct, ep, &d, BH_EVENT_REEVAL_DENY, gen);
		bh_ct_delete(k);
		return BH_DROP;
	}
	bh_ct_set_decision(ct, &d, gen, peer);
	return BH_CONTINUE;
}

static __always_inline int bh_enforce_icmp_error(struct __sk_buff *skb, const struct bh_pkt *p,
						 const struct endpoint_info *ep, __u8 dir,
						 __u32 peer, __u32 gen, __u64 now)
{
	struct bh_decision d = {
		.rule_id = 0,
		.action = BH_ACTION_NONE,
		.verdict = BH_VERDICT_DENY,
		.would_verdict = BH_VERDICT_DENY,
		.reason = BH_REASON_UNRELATED,
	};
	struct ct_value *ct;
	struct ct_key k;
	__u8 flow_dir = !dir;

	bh_ct_key_quoted(&k, p, !dir, 0);
	ct = bh_ct_lookup(&k, now);
	if (!ct) {
		flow_dir = dir;
		bh_ct_key_quoted(&k, p, dir, 1);
		ct = bh_ct_lookup(&k, now);
	}
	if (ct) {
		/* The flow's own peer: the error may come from a router on the way. */
		if (ct->generation != gen && !(ct->flags & BH_CT_F_VIA_SERVICE) &&
		    bh_reevaluate(skb, p, ep, flow_dir, ct->peer_identity, &k, ct, gen) == BH_DROP)
			return BH_DROP;
		bh_count(BH_CNT_ICMP_RELATED);
		bh_count(BH_CNT_ALLOWED);
		return BH_PASS;
	}
	/* The node routes its pods' traffic: the errors it sends quote packets
	 * it forwarded, flows of no endpoint of its own (PMTU discovery). */
	if ((ep->flags & BH_EP_F_HOST) && dir == BH_DIR_EGRESS)
		return BH_PASS;
	bh_count(BH_CNT_ICMP_UNRELATED);
	if (ep->mode == BH_MODE_VISIBILITY) {
		d.verdict = BH_VERDICT_ALLOW;
		bh_count(BH_CNT_WOULD_DENY);
		bh_emit(skb, p, ep, dir, peer, &d, BH_EVENT_WOULD_DENY, gen, 0);
		return BH_PASS;
	}
	bh_count(BH_CNT_DENIED);
	bh_emit(skb, p, ep, dir, peer, &d, BH_EVENT_DENY, gen, 0);
	return BH_DROP;
}

static __always_inline int bh_enforce_inline(struct __sk_buff *skb, const struct bh_pkt *p,
					     const struct endpoint_info *ep, __u8 dir)
{
	const __u8 *peer_addr = dir == BH_DIR_EGRESS ? p->daddr : p->saddr;
	__u32 peer = bh_peer_identity(p, peer_addr);
	__u32 gen = p->generation;
	__u64 now = bpf_ktime_get_ns();
	struct bh_decision d;
	struct ct_value *ct;
	struct ct_key k;

	if (p->is_icmp_error)
		return bh_enforce_icmp_error(skb, p, ep, dir, peer, gen, now);
	bh_ct_key(&k, p, dir, 0);
	ct = bh_ct_lookup_own(&k, p, now);
	if (ct) {
		if (ct->generation != gen &&
		    bh_reevaluate(skb, p, ep, dir, peer, &k, ct, gen) == BH_DROP)
			return BH_DROP;
		bh_ct_touch(ct, p, now);
		bh_count(BH_CNT_CT_ESTABLISHED);
		bh_count(BH_CNT_ALLOWED);
		if (ct->would_verdict == BH_VERDICT_DENY)
			bh_count(BH_CNT_WOULD_DENY);
		if (bh_ct_report_due(ct, p, now)) {
			bh_decision_from_ct(ct, &d);
			bh_emit_ct(skb, &k, ct, ep, &d, BH_EVENT_REPORT, gen);
		}
		return BH_PASS;
	}

	bh_ct_key(&k, p, !dir, 1);
	ct = bh_ct_lookup(&k, now);
	if (ct) {
		int via_service = ct->flags & BH_CT_F_VIA_SERVICE;

		if (ct->generation != gen && !via_service &&
		    bh_reevaluate(skb, p, ep, !dir, peer, &k, ct, gen) == BH_DROP)
			return BH_DROP;
		bh_ct_touch(ct, p, now);
		bh_count(BH_CNT_CT_REPLY);
		bh_count(BH_CNT_ALLOWED);
		if (!via_service && bh_ct_report_due(ct, p, now)) {
			bh_decision_from_ct(ct, &d);
			bh_emit_ct(skb, &k, ct, ep, &d, BH_EVENT_REPORT, gen);
		}
		return BH_PASS;
	}

	if (bh_is_failsafe_reply(p, ep, dir, p->protocol, p->tcp_flags, bpf_ntohs(p->sport))) {
		/* Recorded the right way round: as the flow the far end answers,
		 * so both directions and any re-evaluation see a failsafe flow. */
		bh_failsafe_decision(&d);
		bh_ct_key(&k, p, !dir, 1);
		/* Failsafe traffic passes even when it cannot be tracked. */
		if (bh_ct_create(&k, p, &d, gen, peer, now, ep->mode) < 0)
			bh_count(BH_CNT_CT_FULL);
		ct = bh_ct_lookup(&k, now);
		if (ct)
			ct->policy_port = bpf_ntohs(p->sport);
		bh_count(BH_CNT_FAILSAFE);
		bh_count(BH_CNT_CT_NEW);
		bh_count(BH_CNT_ALLOWED);
		return BH_PASS;
	}

	bh_decide(p, ep, dir, peer, p->protocol, p->policy_port, &d);
	bh_hit(&d, now);
	if (d.reason == BH_REASON_FAILSAFE)
		bh_count(BH_CNT_FAILSAFE);
	if (d.verdict == BH_VERDICT_DENY) {
		bh_count(BH_CNT_DENIED);
		bh_emit(skb, p, ep, dir, peer, &d, BH_EVENT_DENY, gen, 0);
		return BH_DROP;
	}
	bh_ct_key(&k, p, dir, 0);
	if (bh_ct_create(&k, p, &d, gen, peer, now, ep->mode) < 0) {
		/* Full mode's table is full: the flow is refused rather than an
		 * established one evicted. Its sender retries; the agent's sweep
		 * frees the entries of ended flows. */
		d.verdict = BH_VERDICT_DENY;
		d.reason = BH_REASON_CT_FULL;
		bh_count(BH_CNT_CT_FULL);
		bh_emit(skb, p, ep, dir, peer, &d, BH_EVENT_DENY, gen, 0);
		return BH_DROP;
	}
	bh_count(BH_CNT_CT_NEW);
	bh_count(BH_CNT_ALLOWED);
	if (d.would_verdict == BH_VERDICT_DENY) {
		bh_count(BH_CNT_WOULD_DENY);
		bh_emit(skb, p, ep, dir, peer, &d, BH_EVENT_WOULD_DENY, gen, now);
	} else if (bh_cfg_emit_new_flows) {
		bh_emit(skb, p, ep, dir, peer, &d, BH_EVENT_NEW, gen, now);
	}
	return BH_PASS;
}

/* One endpoint's side of a packet, as a global (non-inlined) BPF function:
 * the verifier checks it once, on its own, instead of once per call site
 * with every state of its caller. Inlined, the endpoint program's two calls
 * (its sender's egress and the host's ingress) made it explore over a
 * million instructions without CAP_PERFMON (Spectre v1 checks of the
 * speculative paths): BPF_PROG_LOAD failed with E2BIG after minutes of
 * logging. Its pointers are checked for NULL because the verifier cannot
 * know a caller's are not. */
__attribute__((noinline)) int bh_enforce(struct __sk_buff *skb, const struct bh_pkt *p,
					 const struct endpoint_info *ep, __u32 dir)
{
	if (!p || !ep)
		return BH_PASS;
	return bh_enforce_inline(skb, p, ep, dir == BH_DIR_EGRESS ? BH_DIR_EGRESS : BH_DIR_INGRESS);
}

/* Parsing outcomes that end the program before any endpoint is looked up. */
static __always_inline int bh_prologue(struct __sk_buff *skb, struct bh_pkt *p)
{
	bh_count(BH_CNT_PACKETS);
	switch (bh_parse(skb, p)) {
	case BH_PARSE_NON_IP:
		bh_count(BH_CNT_NON_IP);
		return BH_PASS;
	case BH_PARSE_LATER_FRAGMENT:
		bh_count(BH_CNT_LATER_FRAGMENT);
		return BH_PASS;
	case BH_PARSE_MALFORMED:
		bh_count(BH_CNT_MALFORMED);
		return BH_DROP;
	default:
		break;
	}
	if (bh_is_link_control(p)) {
		bh_count(BH_CNT_NEIGHBOR_DISCOVERY);
		return BH_PASS;
	}
	p->generation = bh_generation();
	return BH_CONTINUE;
}

#endif
