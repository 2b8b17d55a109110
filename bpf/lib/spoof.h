/* SPDX-License-Identifier: Apache-2.0 */
/* Anti-spoofing: a packet's sender is known from the interface it arrived
 * on, never from the source address it carries (GHSA-pfhr-pccp-hwmh).
 *
 *   pod veth (bh_ifaces knows it)   source must be an address of that
 *                                   interface's endpoint
 *   pod veth (no endpoint on it)    source must not be an address the agent
 *                                   bound to another interface, nor the host's
 *                                   (an unmanaged pod, or one being added)
 *   host interface                  source must not be a local pod's address
 *
 * IPv6 link-scoped traffic (a link-local source towards a link-local or
 * multicast destination) never leaves the veth, so it is not checked;
 * neighbour discovery and MLD are passed before any of this (parse.h).
 * A spoofed packet is dropped in every mode, counted (BH_CNT_SPOOFED) and
 * reported as a DENY event with reason BH_REASON_SPOOFED, from the
 * interface's endpoint. bh_cfg_anti_spoofing = 0 turns all of it off. */
#ifndef BULKHEAD_LIB_SPOOF_H
#define BULKHEAD_LIB_SPOOF_H

#include "flow.h"
#include "identity.h"

static __always_inline int bh_is_link_scoped(const struct bh_pkt *p)
{
	if (p->family != BH_FAMILY_V6)
		return 0;
	if (p->saddr[0] != 0xfe || (p->saddr[1] & 0xc0) != 0x80)
		return 0;
	return p->daddr[0] == 0xff || (p->daddr[0] == 0xfe && (p->daddr[1] & 0xc0) == 0x80);
}

/* The endpoint behind a pod interface, or 0 when the agent bound none to it. */
static __always_inline struct endpoint_info *bh_interface_endpoint(const struct bh_pkt *p,
								     __u32 ifindex)
{
	return bh_slot_lookup(bh_ifaces, p->generation, &ifindex);
}

/* Whether a packet arriving from pod interface `ifindex` (whose endpoint is
 * `sender`, or 0) carries a source address that is not its own. */
static __always_inline int bh_spoofed_from_endpoint(const struct bh_pkt *p, __u32 ifindex,
						    const struct endpoint_info *sender)
{
	const struct endpoint_info *owner = bh_local_endpoint(p, p->saddr);

	if (sender)
		return !owner || owner->ifindex != ifindex;
	/* An interface the agent has not bound (yet): its own endpoint's
	 * addresses may already carry its ifindex (endpoints are written before
	 * interfaces), anything bound elsewhere is not its to use. */
	return owner && ((owner->flags & BH_EP_F_HOST) ||
			 (owner->ifindex != 0 && owner->ifindex != ifindex));
}

/* Whether a packet arriving on a host interface claims a local pod's address. */
static __always_inline struct endpoint_info *bh_spoofed_on_host(const struct bh_pkt *p)
{
	struct endpoint_info *owner = bh_local_endpoint(p, p->saddr);

	if (owner && !(owner->flags & BH_EP_F_HOST))
		return owner;
	return 0;
}

/* Drops a spoofed packet: counted, and reported from `local` (the sender's
 * endpoint on a pod interface, the receiving one on a host interface). */
static __always_inline int bh_drop_spoofed(struct __sk_buff *skb, const struct bh_pkt *p,
					   const struct endpoint_info *local, __u8 dir, __u32 peer)
{
	struct endpoint_info unknown = { .identity = BH_ID_WORLD, .mode = BH_MODE_FULL };
	struct bh_decision d = {
		.rule_id = 0,
		.action = BH_ACTION_NONE,
		.verdict = BH_VERDICT_DENY,
		.would_verdict = BH_VERDICT_DENY,
		.reason = BH_REASON_SPOOFED,
	};

	/* Not BH_CNT_DENIED: that one counts policy denies. */
	bh_count(BH_CNT_SPOOFED);
	bh_emit(skb, p, local ? local : &unknown, dir, peer, &d, BH_EVENT_DENY, p->generation, 0);
	return BH_DROP;
}

#endif
