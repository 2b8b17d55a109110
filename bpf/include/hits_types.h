/* SPDX-License-Identifier: Apache-2.0 */
/* Rule hits (per-CPU hash, rule id -> value; lib/hits.h). A hit is a
 * decision a rule made about something new: a flow whose conntrack entry is
 * being created, or a packet it denies (a denied flow keeps no entry, so its
 * every retransmission is a hit). Established flows and their replies never
 * touch this map; re-evaluations after a policy change do not count.
 *
 * The key is the deciding rule of the policy value (policy_types.h): the
 * lowest id of the winning action. A rule shadowed by a lower-numbered rule
 * of the same action, or by a rule of a stronger action, never gets hits.
 *
 * Per CPU, so a hit is a plain add on this CPU's copy: no atomics, no cache
 * line shared between CPUs. The agent sums counts and takes the latest
 * last_hit_ns over CPUs. The map is sized by the loader from the policy
 * map's capacity (every deciding rule is the value of some policy entry),
 * never a fixed number of rules. */
#ifndef BULKHEAD_HITS_TYPES_H
#define BULKHEAD_HITS_TYPES_H

#include <linux/types.h>

struct rule_hit_value {
	__u64 count;       /* hits on this CPU since the map was created */
	__u64 last_hit_ns; /* bpf_ktime_get_ns() of this CPU's latest hit */
};

#endif
