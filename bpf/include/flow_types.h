/* SPDX-License-Identifier: Apache-2.0 */
/* Flow events, written to the bh_events ring buffer. */
#ifndef BULKHEAD_FLOW_TYPES_H
#define BULKHEAD_FLOW_TYPES_H

#include <linux/types.h>

struct flow_event {
	__u64 timestamp_ns;
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 local_identity;
	__u32 peer_identity;
	__u32 rule_id;
	__u32 bytes;
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
	__u8 pad[3];
};

#endif
