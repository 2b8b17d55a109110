/* SPDX-License-Identifier: Apache-2.0 */
/* Host programs, attached to the node's own interfaces (eth0, bond0...).
 * They judge traffic to and from the host endpoint's addresses and pass
 * everything else: pod traffic is the endpoint programs' business, and
 * forwarded traffic is nobody's here. One exception: a packet arriving
 * with a local pod's address as its source is spoofed (pods' packets never
 * enter through a host interface) and dropped, whatever its destination.
 * And one duty for pods: a pod's packet to a Service whose backend is not on
 * this node leaves here, translated; its egress, deferred by the endpoint
 * program (lib/service.h), is judged here on the backend. */
#include "common.h"
#include "enforce.h"
#include "service.h"
#include "spoof.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("classifier")
int bh_host_ingress(struct __sk_buff *skb)
{
	struct endpoint_info *dst, *claimed;
	struct bh_pkt p = {};
	int ret;

	ret = bh_prologue(skb, &p);
	if (ret != BH_CONTINUE)
		return ret;
	/* NodePort, LoadBalancer and forwarded traffic alike: what masquerading
	 * does to it later is seen by the hooks after routing. */
	skb->mark |= BH_MARK_ARRIVED;
	dst = bh_local_endpoint(&p, p.daddr);
	if (bh_cfg_anti_spoofing) {
		claimed = bh_spoofed_on_host(&p);
		if (claimed)
			return bh_drop_spoofed(skb, &p, dst, BH_DIR_INGRESS, BH_ID_WORLD);
	}
	if (!dst || !(dst->flags & BH_EP_F_HOST)) {
		bh_count(BH_CNT_NOT_LOCAL);
		return BH_PASS;
	}
	return bh_enforce(skb, &p, dst, BH_DIR_INGRESS);
}

SEC("classifier")
int bh_host_egress(struct __sk_buff *skb)
{
	struct endpoint_info *src;
	struct bh_pkt p = {};
	int ret;

	ret = bh_prologue(skb, &p);
	if (ret != BH_CONTINUE)
		return ret;
	src = bh_local_endpoint(&p, p.saddr);
	if (src && !(src->flags & BH_EP_F_HOST) && bh_via_service(skb)) {
		p.via_service = 1;
		return bh_enforce(skb, &p, src, BH_DIR_EGRESS);
	}
	if (!src || !(src->flags & BH_EP_F_HOST)) {
		bh_count(BH_CNT_NOT_LOCAL);
		return BH_PASS;
	}
	/* Received and masqueraded to this node's address: forwarded to a
	 * backend elsewhere, for a client the record cannot name. */
	p.snat_hidden = (skb->mark & BH_MARK_ARRIVED) != 0;
	return bh_enforce(skb, &p, src, BH_DIR_EGRESS);
}
