/* SPDX-License-Identifier: Apache-2.0 */
/* The policy map: an LPM trie whose key is
 *
 *   prefixlen | subject(32) | peer(32) | direction(8) | protocol(8) | port(16, big-endian)
 *
 * subject, peer and direction are always fully covered by prefixlen (>= 72
 * bits); protocol and port are prefix bits. A rule that names no ports is an
 * entry of prefixlen 72 (every protocol and port); a whole protocol is 80; a
 * port range is cut by the agent into aligned power-of-two blocks, each an
 * entry of prefixlen 80 + (16 - log2(block size)).
 *
 * Fixed wildcard lookup order: one lookup with the exact peer identity, then,
 * only if it finds nothing, one with peer = BH_ID_ANY. The agent flattens the
 * compiled rules so that this is exact: the entries of (subject, direction,
 * peer P) are built from the rules naming P *plus* the any-peer rules, and
 * every block carries the resolved (action, rule id) of all rules whose
 * blocks contain it (overrideDeny > allow > deny, lowest rule id of the
 * winning action). Blocks are aligned, so they nest or are disjoint, and the
 * longest match for a packet is contained in every block that contains the
 * packet: its value is the verdict over every rule that matches. The peer=ANY
 * entries are built from the any-peer rules alone and serve peers no rule
 * names. For ICMP and ICMPv6 the "port" is the message type. */
#ifndef BULKHEAD_POLICY_TYPES_H
#define BULKHEAD_POLICY_TYPES_H

#include <linux/types.h>

/* Bits of policy_key after prefixlen. */
#define BH_POLICY_FULL_PREFIX 96
#define BH_POLICY_FIXED_PREFIX 72

struct policy_key {
	__u32 prefixlen;
	__u32 subject;
	__u32 peer;
	__u8 direction;
	__u8 protocol;
	__be16 port;
};

struct policy_value {
	__u32 rule_id; /* the deciding rule: lowest id of the winning action */
	__u8 action;   /* BH_ACTION_* */
	__u8 pad[3];
};

/* Failsafe ports of the host endpoint (hash). */
struct failsafe_key {
	__u8 protocol;
	__u8 direction;
	__be16 port;
};

struct failsafe_value {
	__u32 present;
};

#endif
