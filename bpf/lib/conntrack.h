/* SPDX-License-Identifier: Apache-2.0 */
/* Conntrack: lookups of a packet as an established flow (its own tuple and
 * direction) or as the reply of one (the reversed tuple, the opposite
 * direction). Entries idle longer than bh_cfg_ct_timeout_ns count as gone;
 * TCP entries that saw a FIN or RST (BH_CT_F_CLOSING) only live
 * bh_cfg_ct_closing_timeout_ns after their last packet, and a SYN on a
 * closing entry's tuple opens a new flow: a reused 4-tuple is judged by
 * policy again, and counted as a new flow.
 *
 * Time: every CPU reads bpf_ktime_get_ns() on its own and writes
 * last_seen_ns without a lock, so an entry's last_seen_ns may be later than
 * the `now` this CPU read a moment ago (the other end of the flow, on another
 * CPU, refreshed it in between). Times are therefore only ever compared
 * through bh_ct_age(), which reads such an entry as fresh, and last_seen_ns
 * only ever moves forward. An unsigned `now - last_seen` would wrap to ~2^64
 * there and delete a live entry as expired. */
#ifndef BULKHEAD_LIB_CONNTRACK_H
#define BULKHEAD_LIB_CONNTRACK_H

#include "maps.h"
#include "parse.h"
#include "policy.h"

static __always_inline void bh_ct_key(struct ct_key *k, const struct bh_pkt *p, __u8 dir,
				      int reply)
{
	if (reply) {
		__builtin_memcpy(k->saddr, p->daddr, 16);
		__builtin_memcpy(k->daddr, p->saddr, 16);
		k->sport = p->dport;
		k->dport = p->sport;
	} else {
		__builtin_memcpy(k->saddr, p->saddr, 16);
		__builtin_memcpy(k->daddr, p->daddr, 16);
		k->sport = p->sport;
		k->dport = p->dport;
	}
	k->protocol = p->protocol;
	k->family = p->family;
	k->direction = dir;
	k->pad = 0;
}

/* The entry of the flow an ICMP error quotes, by the quoted packet's tuple:
 * a packet this endpoint's flow sent the other way (`!dir`, as sent), or
 * one the far end's flow sent to it (`dir`, reversed). */
static __always_inline void bh_ct_key_quoted(struct ct_key *k, const struct bh_pkt *p, __u8 dir,
					     int reply)
{
	if (reply) {
		__builtin_memcpy(k->saddr, p->inner_daddr, 16);
		__builtin_memcpy(k->daddr, p->inner_saddr, 16);
		k->sport = p->inner_dport;
		k->dport = p->inner_sport;
	} else {
		__builtin_memcpy(k->saddr, p->inner_saddr, 16);
		__builtin_memcpy(k->daddr, p->inner_daddr, 16);
		k->sport = p->inner_sport;
		k->dport = p->inner_dport;
	}
	k->protocol = p->inner_protocol;
	k->family = p->family;
	k->direction = dir;
	k->pad = 0;
}

/* Nanoseconds since the entry was last seen; 0 when another CPU saw it
 * after `now` was read. */
static __always_inline __u64 bh_ct_age(const struct ct_value *ct, __u64 now)
{
	__u64 seen = *(volatile const __u64 *)&ct->last_seen_ns;

	return now > seen ? now - seen : 0;
}

static __always_inline __u64 bh_ct_timeout(const struct ct_value *ct)
{
	return (ct->flags & BH_CT_F_CLOSING) ? bh_cfg_ct_closing_timeout_ns : bh_cfg_ct_timeout_ns;
}

static __always_inline int bh_is_syn(const struct bh_pkt *p)
{
	return p->protocol == IPPROTO_TCP_ && (p->tcp_flags & (BH_TCP_SYN | BH_TCP_ACK)) == BH_TCP_SYN;
}

/* Forgets a flow, in whichever table holds it. */
static __always_inline void bh_ct_delete(struct ct_key *k)
{
	bpf_map_delete_elem(&bh_conntrack, k);
	bpf_map_delete_elem(&bh_conntrack_lru, k);
}

/* Both tables: an endpoint whose mode changed keeps its older flows in the
 * table of its old mode until they end. */
static __always_inline struct ct_value *bh_ct_lookup(struct ct_key *k, __u64 now)
{
	struct ct_value *ct = bpf_map_lookup_elem(&bh_conntrack, k);

	if (!ct)
		ct = bpf_map_lookup_elem(&bh_conntrack_lru, k);
	if (ct && bh_ct_age(ct, now) > bh_ct_timeout(ct)) {
		bh_ct_delete(k);
		return 0;
	}
	return ct;
}

/* The entry a packet of its own direction continues, or 0; a SYN on a
 * closing entry's tuple is a new connection, so the old entry goes. */
static __always_inline struct ct_value *bh_ct_lookup_own(struct ct_key *k, const struct bh_pkt *p,
							 __u64 now)
{
	struct ct_value *ct = bh_ct_lookup(k, now);

	if (ct && (ct->flags & BH_CT_F_CLOSING) && bh_is_syn(p)) {
		bh_ct_delete(k);
		return 0;
	}
	return ct;
}

/* FIN or RST: the connection ends; one write, the first time. */
static __always_inline void bh_ct_note_close(struct ct_value *ct, const struct bh_pkt *p)
{
	if (p->protocol == IPPROTO_TCP_ && (p->tcp_flags & (BH_TCP_FIN | BH_TCP_RST)) &&
	    !(ct->flags & BH_CT_F_CLOSING)) {
		ct->flags |= BH_CT_F_CLOSING;
		bh_count(BH_CNT_CT_CLOSING);
	}
}

static __always_inline void bh_ct_set_decision(struct ct_value *ct, const struct bh_decision *d,
					       __u32 generation, __u32 peer)
{
	ct->generation = generation;
	ct->rule_id = d->rule_id;
	ct->peer_identity = peer;
	ct->action = d->action;
	ct->verdict = d->verdict;
	ct->would_verdict = d->would_verdict;
	ct->reason = d->reason;
}

static __always_inline void bh_ct_touch(struct ct_value *ct, const struct bh_pkt *p, __u64 now)
{
	/* Never backwards: a CPU with an older `now` must not age an entry that
	 * another CPU has just refreshed. */
	if (now > *(volatile const __u64 *)&ct->last_seen_ns)
		ct->last_seen_ns = now;
	bh_ct_note_close(ct, p);
	__sync_fetch_and_add(&ct->packets, 1);
	__sync_fetch_and_add(&ct->bytes, p->len);
}

/* A new entry, in the table of `mode`; < 0 when the full-mode table is full. */
static __always_inline int bh_ct_create(struct ct_key *k, const struct bh_pkt *p,
					const struct bh_decision *d, __u32 generation, __u32 peer,
					__u64 now, __u8 mode)
{
	struct ct_value v = {};

	v.last_seen_ns = now;
	v.created_ns = now;
	v.report_ns = now;
	v.packets = 1;
	v.bytes = p->len;
	v.policy_port = p->policy_port;
	if (p->protocol == IPPROTO_TCP_ && (p->tcp_flags & (BH_TCP_FIN | BH_TCP_RST)))
		v.flags = BH_CT_F_CLOSING;
	if (p->snat_hidden)
		v.flags |= BH_CT_F_SNAT_HIDDEN;
	if (p->via_service)
		v.flags |= BH_CT_F_TO_SERVICE;
	bh_ct_set_decision(&v, d, generation, peer);
	if (mode == BH_MODE_FULL)
		return bpf_map_update_elem(&bh_conntrack, k, &v, BPF_ANY);
	return bpf_map_update_elem(&bh_conntrack_lru, k, &v, BPF_ANY);
}

/* Whether this packet of an established flow should carry the flow's
 * counters to the agent: the report interval has passed, or TCP is closing.
 * Two CPUs may both say yes at once; the event holds cumulative counts, so
 * the duplicate costs an event, never a double count. */
static __always_inline int bh_ct_report_due(struct ct_value *ct, const struct bh_pkt *p, __u64 now)
{
	__u64 last = *(volatile const __u64 *)&ct->report_ns;
	int closing = p->protocol == IPPROTO_TCP_ && (p->tcp_flags & (BH_TCP_FIN | BH_TCP_RST));

	if (!closing && !(now > last && now - last >= bh_cfg_report_interval_ns))
		return 0;
	ct->report_ns = now;
	return 1;
}

static __always_inline void bh_decision_from_ct(const struct ct_value *ct, struct bh_decision *d)
{
	d->rule_id = ct->rule_id;
	d->action = ct->action;
	d->verdict = ct->verdict;
	d->would_verdict = ct->would_verdict;
	d->reason = ct->reason;
}

#endif
