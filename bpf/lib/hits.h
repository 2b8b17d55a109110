/* SPDX-License-Identifier: Apache-2.0 */
/* Counting rule hits (include/hits_types.h). Called once per decision about
 * a new flow or a denied packet, never on the established path. */
#ifndef BULKHEAD_LIB_HITS_H
#define BULKHEAD_LIB_HITS_H

#include "maps.h"
#include "policy.h"

static __always_inline void bh_hit(const struct bh_decision *d, __u64 now)
{
	struct rule_hit_value first = { .count = 1, .last_hit_ns = now };
	struct rule_hit_value *v;
	__u32 id = d->rule_id;

	/* The mode's default and failsafe ports are no rule's doing. */
	if (d->reason != BH_REASON_POLICY || id == 0)
		return;
	v = bpf_map_lookup_elem(&bh_rule_hits, &id);
	if (!v) {
		/* The first hit of this rule on any CPU. Another CPU may insert
		 * it meanwhile (EEXIST): then this hit goes to its entry. */
		if (bpf_map_update_elem(&bh_rule_hits, &id, &first, BPF_NOEXIST) == 0)
			return;
		v = bpf_map_lookup_elem(&bh_rule_hits, &id);
		if (!v)
			return;
	}
	v->count += 1;
	v->last_hit_ns = now;
}

#endif
