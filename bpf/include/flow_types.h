/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events, written to the bh_events ring buffer: per connection, not
 * per packet. A flow emits one event when it is first seen (allowed: NEW or
 * WOULD_DENY, with the entry created), then REPORT events at most every
 * bh_cfg_report_interval_ns while it carries traffic and at TCP FIN/RST,
 * and REEVAL_DENY when a policy change cuts it. Those carry the entry's
 * cumulative packets and bytes with its created_ns, so the agent takes
 * deltas per flow instance and a lost or duplicated report loses or doubles
 * nothing. A DENY event is one dropped packet (no entry exists for it). */
#ifndef BULKHEAD_FLOW_TYPES_H
#define BULKHEAD_FLOW_TYPES_H

#include <linux/types.h>

struct flow_event {
	__u64 timestamp_ns;
	__u64 packets;      /* the flow's packets so far (DENY: 1) */
	__u64 bytes;        /* the flow's bytes so far (DENY: this packet's) */
	__u64 flow_ns;      /* the entry's created_ns (DENY: 0) */
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 local_identity;
	__u32 peer_identity;
	__u32 rule_id;
	__u32 generation;
	__u32 ifindex;
	__be16 sport;
	__be16 dport;       /* for ICMP: the message type */
	__u8 family;
	__u8 protocol;
	__u8 direction;     /* relative to the local endpoint */
	__u8 event;         /* BH_EVENT_* */
	__u8 action;        /* BH_ACTION_* of the deciding rule */
	__u8 verdict;       /* enforced */
	__u8 would_verdict; /* what full mode would do */
	__u8 mode;
	__u8 reason;        /* BH_REASON_* */
	__u8 flags;         /* BH_FLOW_F_* */
	__u8 pad[6];
};

/* flow_event.flags: the source address is the node's own, standing in for
 * a client it masqueraded (BH_CT_F_SNAT_HIDDEN). */
#define BH_FLOW_F_SNAT_HIDDEN 1
/* flow_event.flags: a pod sent the flow to a Service address; the agent
 * finds which one in the pod's VIA_SERVICE entry (BH_CT_F_TO_SERVICE). */
#define BH_FLOW_F_TO_SERVICE 2

#endif
