/* SPDX-License-Identifier: Apache-2.0 */
#ifndef BULKHEAD_LIB_COMMON_H
#define BULKHEAD_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "layout_types.h"

#ifndef __always_inline
#define __always_inline inline __attribute__((always_inline))
#endif

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD

#define IPPROTO_ICMP_ 1
#define IPPROTO_TCP_ 6
/* TCP flags (the header's 14th byte) */
#define BH_TCP_SYN 0x02
#define BH_TCP_ACK 0x10
#define BH_TCP_FIN 0x01
#define BH_TCP_RST 0x04
#define IPPROTO_UDP_ 17
#define IPPROTO_ICMPV6_ 58
#define IPPROTO_SCTP_ 132

/* Pass means "not our business to stop it": TCX_NEXT (TC_ACT_UNSPEC) lets
 * other programs on the hook (a CNI's, a host firewall's) still run. */
#define BH_PASS TC_ACT_UNSPEC
#define BH_DROP TC_ACT_SHOT

/* Load-time settings, written by the agent before loading (never recompiled). */
volatile const __u64 bh_cfg_ct_timeout_ns = 600ULL * 1000000000ULL;
/* A TCP entry that saw FIN or RST: idle time before it is gone. */
volatile const __u64 bh_cfg_ct_closing_timeout_ns = 10ULL * 1000000000ULL;
/* Drop (and report) packets whose source address is not their sender's. */
volatile const __u32 bh_cfg_anti_spoofing = 1;
/* How often an established flow reports its counters (BH_EVENT_REPORT). */
volatile const __u64 bh_cfg_report_interval_ns = 5ULL * 1000000000ULL;
/* Emit BH_EVENT_NEW for allowed flows (denies and would-be denies always are). */
volatile const __u32 bh_cfg_emit_new_flows = 1;
/* Drop packets of a guarded pod interface that no endpoint owns (lib/guard.h). */
volatile const __u32 bh_cfg_guard_interfaces = 1;
/* The Service address ranges (kube-apiserver's --service-cluster-ip-range),
 * network order; a length of 0 means none. A pod's packet to one of them is
 * judged after kube-proxy's DNAT, on its backend (lib/service.h). */
volatile const __u32 bh_cfg_svc_v4 = 0;
volatile const __u32 bh_cfg_svc_v4_len = 0;
volatile const __u8 bh_cfg_svc_v6[16] = {};
volatile const __u32 bh_cfg_svc_v6_len = 0;

/* skb->mark bit: this packet left a pod for a Service address and its
 * sender's egress is still to be judged once the backend is known. Set on
 * the pod veth's TC ingress, read by the hooks after routing (the
 * destination pod's veth, the host interface); the mark does not cross into
 * another namespace. kube-proxy only ever touches its own bits (0x4000
 * masquerade, 0x8000 drop). */
#define BH_MARK_VIA_SERVICE 0x00200000
/* skb->mark: the packet came in through one of the node's host interfaces
 * (set by bh_host_ingress on every packet it passes). A packet that carries
 * it and yet has one of the node's own addresses as its source was
 * masqueraded by the node (kube-proxy's SNAT of NodePort and LoadBalancer
 * traffic under externalTrafficPolicy: Cluster): its real client is hidden,
 * and its flow is reported as such (flow/v1 `sourceHiddenBySnat`). The
 * node's own processes never carry it; kube-proxy's MASQUERADE keeps it
 * (it clears only its own 0x4000). */
#define BH_MARK_ARRIVED 0x00400000

#endif
