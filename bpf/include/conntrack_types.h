/* SPDX-License-Identifier: Apache-2.0 */
/* Connection tracking (LRU hash). The key is the tuple of the packet that
 * opened the flow plus the direction it was evaluated in, relative to the
 * local endpoint: an egress entry belongs to the source endpoint, an ingress
 * entry to the destination. Two local endpoints talking to each other thus
 * each keep their own entry, and neither side's verdict lets a packet skip
 * the other side's policy. For ICMP echo both ports carry the identifier. */
#ifndef BULKHEAD_CONNTRACK_TYPES_H
#define BULKHEAD_CONNTRACK_TYPES_H

#include <linux/types.h>

struct ct_key {
	__u8 saddr[16];
	__u8 daddr[16];
	__be16 sport;
	__be16 dport;
	__u8 protocol;
	__u8 family;
	__u8 direction; /* BH_DIR_* the flow was evaluated in */
	__u8 pad;
};

struct ct_value {
	__u64 last_seen_ns;
	__u64 packets;        /* since the entry was created */
	__u64 bytes;
	__u64 created_ns;     /* with the key, names this flow instance in events */
	__u64 report_ns;      /* when the last flow event of this flow was emitted */
	__u32 generation;     /* bh_state.generation when last evaluated */
	__u32 rule_id;
	__u32 peer_identity;
	__u16 policy_port;    /* host order; the port (or ICMP type) evaluated */
	__u8 action;
	__u8 verdict;         /* enforced verdict */
	__u8 would_verdict;   /* full-mode verdict */
	__u8 reason;
	__u8 flags;           /* BH_CT_F_* */
	__u8 pad[5];
};

/* ct_value.flags: a FIN or RST was seen; the entry lives only
 * bh_cfg_ct_closing_timeout_ns after its last packet, and a new SYN on its
 * tuple is a new flow, judged by policy again. */
#define BH_CT_F_CLOSING 1
/* ct_value.flags: a pod's flow to a Service address (lib/service.h). It
 * carries no verdict of its own: the pod's egress is judged on the backend
 * kube-proxy picks, in the entry of the translated tuple. This one only lets
 * the Service's replies (source rewritten to the Service address) back in. */
#define BH_CT_F_VIA_SERVICE 2
/* ct_value.flags: the flow's source is the node masquerading a client it
 * received from outside (BH_MARK_ARRIVED): its reports say so. */
#define BH_CT_F_SNAT_HIDDEN 4
/* ct_value.flags: the translated tuple of a pod's flow to a Service address
 * (the entry that judges it on the backend): its events say so, and the
 * agent looks up the Service address only for those. */
#define BH_CT_F_TO_SERVICE 8

#endif
