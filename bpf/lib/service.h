/* SPDX-License-Identifier: Apache-2.0 */
/* Pod egress to a Service: judged on the backend, not the Service address.
 *
 *   pod ─► veth TC ingress ─► PREROUTING (kube-proxy DNAT) ─► routing ─►
 *          [defer: mark]                                      ├─ veth TC egress  (backend on this node)
 *                                                             └─ host TC egress  (backend elsewhere)
 *                                                                 [judge the pod's egress on the backend]
 *
 * The endpoint program on the sending pod's veth sees the Service address,
 * which names no workload. It keeps a VIA_SERVICE entry for the tuple as
 * sent (so the Service's replies, whose source kube-proxy rewrites back to
 * the Service address, find the flow) and marks the packet. The first hook
 * after the DNAT that sees a marked packet judges the sender's egress
 * exactly as for a packet sent to the backend directly: same entry key, same
 * policy lookup, same re-evaluation. The decision is made once, there; the
 * VIA_SERVICE entry never decides anything (docs/policy-semantics.md). */
#ifndef BULKHEAD_LIB_SERVICE_H
#define BULKHEAD_LIB_SERVICE_H

#include "conntrack.h"
#include "maps.h"

/* Whether `addr` lies in the configured Service range of its family. */
static __always_inline int bh_is_service_addr(__u8 family, const __u8 *addr)
{
	if (family == BH_FAMILY_V4) {
		__u32 len = bh_cfg_svc_v4_len, a, mask;

		if (len == 0 || len > 32)
			return 0;
		__builtin_memcpy(&a, addr, 4);
		mask = bpf_htonl(len == 32 ? ~0U : ~(~0U >> len));
		return (a & mask) == (bh_cfg_svc_v4 & mask);
	}
	__u32 len6 = bh_cfg_svc_v6_len;
	int i;

	if (len6 == 0 || len6 > 128)
		return 0;
#pragma unroll
	for (i = 0; i < 16; i++) {
		int bits = (int)len6 - 8 * i;
		__u8 mask;

		if (bits <= 0)
			break;
		mask = bits >= 8 ? 0xff : (__u8)(0xff << (8 - bits));
		if ((addr[i] & mask) != (bh_cfg_svc_v6[i] & mask))
			return 0;
	}
	return 1;
}

/* The sending pod's side of a packet to a Service address: pass it on,
 * marked, with a VIA_SERVICE entry for its tuple. Full mode's table being
 * full refuses the flow, as for any other new flow. */
static __always_inline int bh_defer_to_backend(struct __sk_buff *skb, const struct bh_pkt *p,
					       const struct endpoint_info *ep)
{
	struct bh_decision d = {
		.rule_id = 0,
		.action = BH_ACTION_NONE,
		.verdict = BH_VERDICT_ALLOW,
		.would_verdict = BH_VERDICT_ALLOW,
		.reason = BH_REASON_POLICY,
	};
	__u64 now = bpf_ktime_get_ns();
	struct ct_value *ct;
	struct ct_key k;

	bh_ct_key(&k, p, BH_DIR_EGRESS, 0);
	ct = bh_ct_lookup_own(&k, p, now);
	if (ct) {
		bh_ct_touch(ct, p, now);
	} else {
		if (bh_ct_create(&k, p, &d, bh_generation(), BH_ID_WORLD, now, ep->mode) < 0) {
			d.verdict = BH_VERDICT_DENY;
			d.reason = BH_REASON_CT_FULL;
			bh_count(BH_CNT_CT_FULL);
			bh_count(BH_CNT_DENIED);
			bh_emit(skb, p, ep, BH_DIR_EGRESS, BH_ID_WORLD, &d, BH_EVENT_DENY,
				bh_generation(), 0);
			return BH_DROP;
		}
		ct = bh_ct_lookup(&k, now);
		if (ct)
			ct->flags |= BH_CT_F_VIA_SERVICE;
	}
	skb->mark |= BH_MARK_VIA_SERVICE;
	bh_count(BH_CNT_VIA_SERVICE);
	return BH_PASS;
}

/* A packet whose sender's egress was deferred to the backend. */
static __always_inline int bh_via_service(const struct __sk_buff *skb)
{
	return (skb->mark & BH_MARK_VIA_SERVICE) != 0;
}

#endif
