/* SPDX-License-Identifier: Apache-2.0 */
/* Packet parsing into struct bh_pkt, with bpf_skb_load_bytes so that a
 * truncated header is a failed load, never an out-of-bounds read.
 *
 * Outcomes:
 *  - BH_PARSE_OK: addresses, protocol and (for the first fragment or an
 *    unfragmented packet) the L4 ports or ICMP type are known.
 *  - BH_PARSE_NON_IP: not IPv4/IPv6 (ARP...): passed, not ours to judge.
 *  - BH_PARSE_LATER_FRAGMENT: an IPv4 fragment with offset > 0, or an IPv6
 *    fragment header with offset > 0. It has no L4 header. It is passed:
 *    the first fragment carries the ports and gets the verdict for the
 *    whole datagram, and without it the receiver cannot reassemble the
 *    rest (Linux also discards overlapping fragments, and a fragment at
 *    offset >= 8 cannot rewrite the ports).
 *  - BH_PARSE_MALFORMED: an IP header or the L4 header the protocol needs is
 *    truncated or inconsistent (IHL < 5, wrong version, extension-header
 *    chain too long, first fragment too short for the ports). Dropped in
 *    every mode: the IP stack would discard such a packet anyway and it
 *    cannot be matched against policy. An ICMP error whose quoted packet
 *    cannot be read is malformed too: it could not be tied to a flow.
 */
#ifndef BULKHEAD_LIB_PARSE_H
#define BULKHEAD_LIB_PARSE_H

#include "common.h"

#define BH_PARSE_OK 0
#define BH_PARSE_NON_IP 1
#define BH_PARSE_LATER_FRAGMENT 2
#define BH_PARSE_MALFORMED 3

#define BH_MAX_EXT_HEADERS 6

struct bh_pkt {
	__u8 saddr[16];
	__u8 daddr[16];
	__u8 family;
	__u8 protocol;
	__u8 icmp_type;
	__u8 is_icmp;
	__be16 sport;       /* conntrack ports (ICMP echo: the identifier) */
	__be16 dport;
	__u16 policy_port;  /* host order: destination port, or ICMP type */
	__u8 tcp_flags;     /* TCP: the flags byte (BH_TCP_*); 0 otherwise */
	__u8 is_icmp_error; /* an ICMP/ICMPv6 error whose quoted packet is in inner_* */
	__u32 len;
	/* The packet an ICMP error quotes (the one it is about), as sent. */
	__u8 inner_saddr[16];
	__u8 inner_daddr[16];
	__be16 inner_sport;
	__be16 inner_dport;
	__u8 inner_protocol;
	/* Set by the hook, not parsed: the source is the node itself standing
	 * in for a client it masqueraded (BH_MARK_ARRIVED). */
	__u8 snat_hidden;
	/* Set by the hook, not parsed: a pod sent this packet to a Service
	 * address and it is judged on the backend (lib/service.h). */
	__u8 via_service;
	__u8 inner_pad[1];
	/* The maps' generation this packet is judged under, read once by
	 * bh_prologue so that one packet never mixes two slots (maps.h). */
	__u32 generation;
};

struct bh_ipv4_hdr {
	__u8 ver_ihl;
	__u8 tos;
	__be16 tot_len;
	__be16 id;
	__be16 frag_off;
	__u8 ttl;
	__u8 protocol;
	__u16 check;
	__u8 saddr[4];
	__u8 daddr[4];
};

struct bh_ipv6_hdr {
	__u8 ver_tc;
	__u8 tc_flow;
	__be16 flow;
	__be16 payload_len;
	__u8 nexthdr;
	__u8 hop_limit;
	__u8 saddr[16];
	__u8 daddr[16];
};

/* ICMP errors: destination unreachable, source quench, redirect, time
 * exceeded, parameter problem (IPv4); destination unreachable, packet too
 * big, time exceeded, parameter problem (IPv6). */
static __always_inline int bh_is_icmp_error_type(__u8 protocol, __u8 type)
{
	if (protocol == IPPROTO_ICMP_)
		return type == 3 || type == 4 || type == 5 || type == 11 || type == 12;
	return type >= 1 && type <= 4;
}

/* The quoted packet of an ICMP error at `off` (after the 8-byte ICMP
 * header). Its ports are its first 4 L4 bytes (for a quoted echo: the
 * identifier, as conntrack keys echo). A quote that cannot be read, or an
 * IPv6 one with extension headers, leaves is_icmp_error 0 with
 * BH_PARSE_MALFORMED: an error about nothing we can name is not passed. */
static __always_inline int bh_parse_icmp_quote(struct __sk_buff *skb, __u32 off, struct bh_pkt *p)
{
	__u8 l4[8];
	__u32 l4off;

	if (p->family == BH_FAMILY_V4) {
		struct bh_ipv4_hdr ip;
		__u32 ihl;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return BH_PARSE_MALFORMED;
		ihl = (ip.ver_ihl & 0xf) * 4;
		if ((ip.ver_ihl >> 4) != 4 || ihl < 20)
			return BH_PARSE_MALFORMED;
		__builtin_memset(p->inner_saddr, 0, 16);
		__builtin_memset(p->inner_daddr, 0, 16);
		__builtin_memcpy(p->inner_saddr, ip.saddr, 4);
		__builtin_memcpy(p->inner_daddr, ip.daddr, 4);
		p->inner_protocol = ip.protocol;
		l4off = off + ihl;
	} else {
		struct bh_ipv6_hdr ip;

		if (bpf_skb_load_bytes(skb, off, &ip, sizeof(ip)) < 0)
			return BH_PARSE_MALFORMED;
		if ((ip.ver_tc >> 4) != 6)
			return BH_PARSE_MALFORMED;
		__builtin_memcpy(p->inner_saddr, ip.saddr, 16);
		__builtin_memcpy(p->inner_daddr, ip.daddr, 16);
		p->inner_protocol = ip.nexthdr;
		l4off = off + sizeof(ip);
	}
	switch (p->inner_protocol) {
	case IPPROTO_TCP_:
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_:
		if (bpf_skb_load_bytes(skb, l4off, l4, 4) < 0)
			return BH_PARSE_MALFORMED;
		__builtin_memcpy(&p->inner_sport, &l4[0], 2);
		__builtin_memcpy(&p->inner_dport, &l4[2], 2);
		break;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_:
		if (bpf_skb_load_bytes(skb, l4off, l4, 8) < 0)
			return BH_PARSE_MALFORMED;
		__builtin_memcpy(&p->inner_sport, &l4[4], 2);
		__builtin_memcpy(&p->inner_dport, &l4[4], 2);
		break;
	default:
		/* a port-less protocol: the flow it relates to has ports 0 */
		p->inner_sport = 0;
		p->inner_dport = 0;
		break;
	}
	p->is_icmp_error = 1;
	return BH_PARSE_OK;
}

static __always_inline int bh_parse_l4(struct __sk_buff *skb, __u32 off, struct bh_pkt *p)
{
	__u8 l4[8];

	p->sport = 0;
	p->dport = 0;
	p->policy_port = 0;
	switch (p->protocol) {
	case IPPROTO_TCP_:
		/* the fixed TCP header must be there: 20 bytes */
		if (bpf_skb_load_bytes(skb, off + 12, l4, 8) < 0)
			return BH_PARSE_MALFORMED;
		if ((l4[0] >> 4) < 5)
			return BH_PARSE_MALFORMED;
		p->tcp_flags = l4[1];
		/* fallthrough */
	case IPPROTO_UDP_:
	case IPPROTO_SCTP_:
		if (bpf_skb_load_bytes(skb, off, l4, 8) < 0)
			return BH_PARSE_MALFORMED;
		__builtin_memcpy(&p->sport, &l4[0], 2);
		__builtin_memcpy(&p->dport, &l4[2], 2);
		p->policy_port = bpf_ntohs(p->dport);
		return BH_PARSE_OK;
	case IPPROTO_ICMP_:
	case IPPROTO_ICMPV6_:
		if (bpf_skb_load_bytes(skb, off, l4, 8) < 0)
			return BH_PARSE_MALFORMED;
		p->is_icmp = 1;
		p->icmp_type = l4[0];
		p->policy_port = l4[0];
		if ((p->protocol == IPPROTO_ICMP_) == (p->family == BH_FAMILY_V4) &&
		    bh_is_icmp_error_type(p->protocol, l4[0]))
			return bh_parse_icmp_quote(skb, off + 8, p);
		/* echo request/reply: the identifier ties the reply to the request */
		if (l4[0] == 8 || l4[0] == 0 || l4[0] == 128 || l4[0] == 129) {
			__builtin_memcpy(&p->sport, &l4[4], 2);
			__builtin_memcpy(&p->dport, &l4[4], 2);
		}
		return BH_PARSE_OK;
	default:
		/* other protocols have no ports: only port-less rules match them */
		return BH_PARSE_OK;
	}
}

static __always_inline int bh_parse_ipv4(struct __sk_buff *skb, struct bh_pkt *p)
{
	struct bh_ipv4_hdr ip;
	__u32 ihl;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return BH_PARSE_MALFORMED;
	if ((ip.ver_ihl >> 4) != 4)
		return BH_PARSE_MALFORMED;
	ihl = (ip.ver_ihl & 0xf) * 4;
	if (ihl < 20)
		return BH_PARSE_MALFORMED;
	p->family = BH_FAMILY_V4;
	p->protocol = ip.protocol;
	__builtin_memset(p->saddr, 0, 16);
	__builtin_memset(p->daddr, 0, 16);
	__builtin_memcpy(p->saddr, ip.saddr, 4);
	__builtin_memcpy(p->daddr, ip.daddr, 4);
	if (bpf_ntohs(ip.frag_off) & 0x1fff)
		return BH_PARSE_LATER_FRAGMENT;
	return bh_parse_l4(skb, ETH_HLEN + ihl, p);
}

static __always_inline int bh_parse_ipv6(struct __sk_buff *skb, struct bh_pkt *p)
{
	struct bh_ipv6_hdr ip;
	__u32 off = ETH_HLEN + sizeof(ip);
	__u8 nexthdr;
	__u8 ext[4];
	int i;

	if (bpf_skb_load_bytes(skb, ETH_HLEN, &ip, sizeof(ip)) < 0)
		return BH_PARSE_MALFORMED;
	if ((ip.ver_tc >> 4) != 6)
		return BH_PARSE_MALFORMED;
	p->family = BH_FAMILY_V6;
	__builtin_memcpy(p->saddr, ip.saddr, 16);
	__builtin_memcpy(p->daddr, ip.daddr, 16);
	nexthdr = ip.nexthdr;

#pragma unroll
	for (i = 0; i < BH_MAX_EXT_HEADERS; i++) {
		switch (nexthdr) {
		case 0:  /* hop-by-hop */
		case 43: /* routing */
		case 60: /* destination options */
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
				return BH_PARSE_MALFORMED;
			nexthdr = ext[0];
			off += ((__u32)ext[1] + 1) * 8;
			continue;
		case 51: /* authentication header */
			if (bpf_skb_load_bytes(skb, off, ext, 2) < 0)
				return BH_PARSE_MALFORMED;
			nexthdr = ext[0];
			off += ((__u32)ext[1] + 2) * 4;
			continue;
		case 44: /* fragment */
			if (bpf_skb_load_bytes(skb, off, ext, 4) < 0)
				return BH_PARSE_MALFORMED;
			nexthdr = ext[0];
			p->protocol = nexthdr;
			if (((ext[2] << 8) | ext[3]) & 0xfff8)
				return BH_PARSE_LATER_FRAGMENT;
			off += 8;
			continue;
		default:
			p->protocol = nexthdr;
			return bh_parse_l4(skb, off, p);
		}
	}
	/* more extension headers than any sane packet carries */
	return BH_PARSE_MALFORMED;
}

static __always_inline int bh_parse(struct __sk_buff *skb, struct bh_pkt *p)
{
	p->is_icmp = 0;
	p->is_icmp_error = 0;
	p->icmp_type = 0;
	p->protocol = 0;
	p->len = skb->len;
	if (skb->protocol == bpf_htons(ETH_P_IP))
		return bh_parse_ipv4(skb, p);
	if (skb->protocol == bpf_htons(ETH_P_IPV6))
		return bh_parse_ipv6(skb, p);
	return BH_PARSE_NON_IP;
}

/* ICMPv6 neighbor discovery and MLD keep the link working; they never leave
 * the link, so they pass whatever the policy says. */
static __always_inline int bh_is_link_control(const struct bh_pkt *p)
{
	if (p->protocol != IPPROTO_ICMPV6_)
		return 0;
	return (p->icmp_type >= 130 && p->icmp_type <= 137) || p->icmp_type == 143;
}

#endif
