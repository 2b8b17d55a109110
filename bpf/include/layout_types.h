/* SPDX-License-Identifier: Apache-2.0 */
/* Constants shared by the BPF programs and the agent. Struct-only headers
 * live next to this one; every value here has a Rust mirror in
 * node-agent/src/layout.rs, checked by the layout test. */
#ifndef BULKHEAD_LAYOUT_TYPES_H
#define BULKHEAD_LAYOUT_TYPES_H

/* Bumped whenever a map key or value changes shape. Maps are pinned under
 * /sys/fs/bpf/bulkhead/v<BH_LAYOUT_VERSION>/ so an agent of another layout
 * never reads maps it does not understand. */
#define BH_LAYOUT_VERSION 6

/* Reserved identities (api/src/identity.rs). */
#define BH_ID_ANY 0
#define BH_ID_HOST 1
#define BH_ID_WORLD 2

#define BH_DIR_INGRESS 0
#define BH_DIR_EGRESS 1

#define BH_ACTION_NONE 0
#define BH_ACTION_ALLOW 1
#define BH_ACTION_DENY 2
#define BH_ACTION_OVERRIDE_DENY 3

#define BH_MODE_VISIBILITY 0
#define BH_MODE_SELECTIVE 1
#define BH_MODE_FULL 2

#define BH_VERDICT_ALLOW 1
#define BH_VERDICT_DENY 2

/* endpoint_info.flags */
#define BH_EP_F_HOST 1

/* flow_event.event */
#define BH_EVENT_NEW 1        /* first packet of an allowed flow */
#define BH_EVENT_DENY 2       /* a dropped packet */
#define BH_EVENT_WOULD_DENY 3 /* first packet of a flow that full mode would drop */
#define BH_EVENT_REEVAL_DENY 4 /* an established flow the new policy stops */
#define BH_EVENT_REPORT 5     /* an established flow's counters, at intervals and at FIN/RST */

/* flow_event.reason */
#define BH_REASON_POLICY 0   /* a rule decided */
#define BH_REASON_DEFAULT 1  /* no rule matched: the mode's default */
#define BH_REASON_FAILSAFE 2 /* a failsafe port of the host */
/* 3 is the agent's own (re-evaluated), never written by the datapath. */
#define BH_REASON_SPOOFED 4  /* the source address is not the sender's */
#define BH_REASON_UNRELATED 5 /* an ICMP error about no tracked flow */
#define BH_REASON_CT_FULL 6   /* a new flow of a full-mode endpoint; its table is full */

/* Index into the per-CPU counter array. */
#define BH_CNT_PACKETS 0
#define BH_CNT_ALLOWED 1
#define BH_CNT_DENIED 2
#define BH_CNT_WOULD_DENY 3
#define BH_CNT_CT_NEW 4
#define BH_CNT_CT_ESTABLISHED 5
#define BH_CNT_CT_REPLY 6
#define BH_CNT_REEVALUATED 7
#define BH_CNT_REEVAL_DENIED 8
#define BH_CNT_FAILSAFE 9
#define BH_CNT_MALFORMED 10
#define BH_CNT_LATER_FRAGMENT 11
#define BH_CNT_NON_IP 12
#define BH_CNT_EVENTS_LOST 13
#define BH_CNT_NEIGHBOR_DISCOVERY 14
#define BH_CNT_NOT_LOCAL 15
#define BH_CNT_SPOOFED 16
#define BH_CNT_CT_CLOSING 17
#define BH_CNT_ICMP_RELATED 18
#define BH_CNT_ICMP_UNRELATED 19
#define BH_CNT_CT_FULL 20
#define BH_CNT_VIA_SERVICE 21 /* a pod's packet to a Service address, its egress deferred to after the DNAT */
#define BH_CNT_UNBOUND 22 /* dropped: on a guarded pod interface, no endpoint known (lib/guard.h) */
#define BH_CNT_MAX 23

#define BH_FAMILY_V4 4
#define BH_FAMILY_V6 6

#endif
