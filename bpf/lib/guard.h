/* SPDX-License-Identifier: Apache-2.0 */
/* Guarded interfaces: a pod interface is never open.
 *
 * The endpoint programs know a packet's local endpoint from the rule map. A
 * pod whose endpoint is not there yet (its veth was attached at creation by
 * the CNI plugin, or by the agent's poll, before the operator published it)
 * would otherwise pass every packet: no endpoint, no policy. Every pod
 * interface the agent or the CNI plugin attaches to is written to
 * bh_guarded; on such an interface a packet with no local endpoint is
 * dropped and counted (BH_CNT_UNBOUND) instead of passed (BH_CNT_NOT_LOCAL).
 *
 * What still passes there: non-IP frames, neighbour discovery and MLD
 * (parse.h, before any lookup) and IPv6 link-scoped traffic (lib/spoof.h),
 * as on any other interface. bh_cfg_guard_interfaces = 0 turns it off. */
#ifndef BULKHEAD_LIB_GUARD_H
#define BULKHEAD_LIB_GUARD_H

#include "maps.h"

/* BH_DROP (counted as unbound) for a packet with no local endpoint on a
 * guarded interface, BH_PASS (counted as not local) otherwise. */
static __always_inline int bh_no_endpoint(struct __sk_buff *skb, int link_scoped)
{
	__u32 ifindex = skb->ifindex;

	if (bh_cfg_guard_interfaces && !link_scoped &&
	    bpf_map_lookup_elem(&bh_guarded, &ifindex)) {
		bh_count(BH_CNT_UNBOUND);
		return BH_DROP;
	}
	bh_count(BH_CNT_NOT_LOCAL);
	return BH_PASS;
}

#endif
