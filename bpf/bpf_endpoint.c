/* SPDX-License-Identifier: Apache-2.0 */
/* Endpoint programs, attached to the host side of each pod veth.
 *
 *   pod ──veth──► [bh_from_endpoint: TC ingress]  the pod's egress
 *   pod ◄──veth── [bh_to_endpoint:   TC egress ]  the pod's ingress
 *
 * The sending endpoint is the one the agent bound to the interface (from
 * the host routes of the pod's addresses); a source address that is not
 * its own is dropped as spoofed (lib/spoof.h). The receiving endpoint is
 * found by the destination address. On a guarded interface (lib/guard.h) a
 * packet with no local endpoint is dropped: a pod that is not in the rule
 * map yet is closed, not open. Traffic between two pods of the node is
 * seen by both programs: the sender's egress and the receiver's ingress.
 * Traffic between a pod and its own node never crosses a host interface, so
 * these programs also judge the host endpoint's side of it.
 *
 * A pod's packet to a Service address is not judged on that address: its
 * egress is deferred to the backend kube-proxy translates it to
 * (lib/service.h), judged by bh_to_endpoint when that backend is a pod of
 * this node and by the host program otherwise. */
#include "common.h"
#include "enforce.h"
#include "guard.h"
#include "service.h"
#include "spoof.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("classifier")
int bh_from_endpoint(struct __sk_buff *skb)
{
	struct endpoint_info *src, *dst;
	struct bh_pkt p = {};
	int ret;

	ret = bh_prologue(skb, &p);
	if (ret != BH_CONTINUE)
		return ret;
	if (bh_cfg_anti_spoofing && !bh_is_link_scoped(&p)) {
		src = bh_interface_endpoint(&p, skb->ifindex);
		if (bh_spoofed_from_endpoint(&p, skb->ifindex, src))
			return bh_drop_spoofed(skb, &p, src, BH_DIR_EGRESS,
					       bh_peer_identity(&p, p.daddr));
		if (!src)
			src = bh_local_endpoint(&p, p.saddr);
	} else {
		src = bh_local_endpoint(&p, p.saddr);
	}
	if (!src)
		return bh_no_endpoint(skb, bh_is_link_scoped(&p));
	if (!p.is_icmp_error && bh_is_service_addr(p.family, p.daddr))
		return bh_defer_to_backend(skb, &p, src);
	if (bh_enforce(skb, &p, src, BH_DIR_EGRESS) == BH_DROP)
		return BH_DROP;
	dst = bh_local_endpoint(&p, p.daddr);
	if (dst && (dst->flags & BH_EP_F_HOST))
		return bh_enforce(skb, &p, dst, BH_DIR_INGRESS);
	return BH_PASS;
}

SEC("classifier")
int bh_to_endpoint(struct __sk_buff *skb)
{
	struct endpoint_info *src, *dst;
	struct bh_pkt p = {};
	int ret;

	ret = bh_prologue(skb, &p);
	if (ret != BH_CONTINUE)
		return ret;
	dst = bh_local_endpoint(&p, p.daddr);
	if (!dst)
		return bh_no_endpoint(skb, bh_is_link_scoped(&p));
	src = bh_local_endpoint(&p, p.saddr);
	/* From the node's own address, yet received from outside: the node
	 * masqueraded a client (NodePort or LoadBalancer, externalTrafficPolicy
	 * Cluster). Both records below say the client is hidden. */
	if (src && (src->flags & BH_EP_F_HOST) && (skb->mark & BH_MARK_ARRIVED))
		p.snat_hidden = 1;
	/* The host's egress, and a pod's that it sent to a Service whose
	 * backend is this one (both sides' records name the Service). */
	p.via_service = src && !(src->flags & BH_EP_F_HOST) && bh_via_service(skb);
	if (src && ((src->flags & BH_EP_F_HOST) || p.via_service) &&
	    bh_enforce(skb, &p, src, BH_DIR_EGRESS) == BH_DROP)
		return BH_DROP;
	return bh_enforce(skb, &p, dst, BH_DIR_INGRESS);
}
