/* SPDX-License-Identifier: Apache-2.0 */
/* Every map of the datapath. Pinned by name, so the endpoint and host
 * objects share them and an agent restart keeps enforcing. */
#ifndef BULKHEAD_LIB_MAPS_H
#define BULKHEAD_LIB_MAPS_H

#include "common.h"
#include "ipcache_types.h"
#include "endpoint_types.h"
#include "policy_types.h"
#include "conntrack_types.h"
#include "flow_types.h"
#include "state_types.h"
#include "hits_types.h"

/* The maps the agent programs come in two slots, _a and _b: one generation
 * of the node's rules each. The agent writes the slot not in force, then
 * flips the generation in bh_state; its parity says which slot is in force
 * (even: _a, odd: _b). A packet reads the generation once (bh_pkt.generation)
 * and looks everything up in that one slot, so it is judged by one complete
 * generation, and a programming pass that fails half-way leaves the slot in
 * force untouched (docs/conntrack.md, "Generations"). Conntrack, counters and
 * events are not slotted: established flows survive a flip and are
 * re-evaluated against the new slot on their next packet. */
#define BH_SLOTTED_MAP(name, map_type, key_type, value_type, max, flags, slot)                   \
	struct {                                                                                 \
		__uint(type, map_type);                                                          \
		__type(key, key_type);                                                           \
		__type(value, value_type);                                                       \
		__uint(max_entries, max);                                                        \
		__uint(map_flags, flags);                                                        \
		__uint(pinning, LIBBPF_PIN_BY_NAME);                                             \
	} name##_##slot SEC(".maps")
#define BH_SLOTTED_MAPS(name, map_type, key_type, value_type, max, flags)                        \
	BH_SLOTTED_MAP(name, map_type, key_type, value_type, max, flags, a);                     \
	BH_SLOTTED_MAP(name, map_type, key_type, value_type, max, flags, b)

/* Looks `key` up in the slot of `generation`. */
#define bh_slot_lookup(name, generation, key)                                                    \
	(((generation) & 1) ? bpf_map_lookup_elem(&name##_b, key)                                \
			    : bpf_map_lookup_elem(&name##_a, key))

/* The LPM tries allocate a node per entry as it is inserted and nothing up
 * front, so their capacities are ceilings, not sizes: what they cost is what
 * the rule map puts in them. The ceilings are far above any node's needs
 * (16M addresses) so that a large
 * cluster never meets a default limit; the agent still refuses a rule map
 * that would not fit, whole, before it writes a slot. */
#define BH_IPCACHE_MAX (1 << 24)
BH_SLOTTED_MAPS(bh_ipcache_v4, BPF_MAP_TYPE_LPM_TRIE, struct ipcache_v4_key,
		struct identity_value, BH_IPCACHE_MAX, BPF_F_NO_PREALLOC);
BH_SLOTTED_MAPS(bh_ipcache_v6, BPF_MAP_TYPE_LPM_TRIE, struct ipcache_v6_key,
		struct identity_value, BH_IPCACHE_MAX, BPF_F_NO_PREALLOC);
BH_SLOTTED_MAPS(bh_endpoints, BPF_MAP_TYPE_HASH, struct endpoint_key, struct endpoint_info,
		4096, 0);
/* Host-side ifindex of a pod veth -> the endpoint behind it. */
BH_SLOTTED_MAPS(bh_ifaces, BPF_MAP_TYPE_HASH, __u32, struct endpoint_info, 4096, 0);
/* The agent sets its ceiling (--policy-max-entries, 262,144 by default). */
BH_SLOTTED_MAPS(bh_policy, BPF_MAP_TYPE_LPM_TRIE, struct policy_key, struct policy_value,
		262144, BPF_F_NO_PREALLOC);
BH_SLOTTED_MAPS(bh_failsafe, BPF_MAP_TYPE_HASH, struct failsafe_key, struct failsafe_value,
		256, 0);

/* Conntrack in two tables (docs/conntrack.md). Flows of full-mode
 * endpoints live in a plain hash: nothing evicts them, a full table refuses
 * new flows instead (dropped, BH_CNT_CT_FULL), and the agent sweeps expired
 * entries. Flows of visibility and selective endpoints, which a lost entry
 * cannot break (their default passes), live in an LRU that makes room for
 * new flows by evicting its least recently used entries. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(max_entries, 131072);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_conntrack SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct ct_key);
	__type(value, struct ct_value);
	__uint(max_entries, 65536);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_conntrack_lru SEC(".maps");

/* Host-side ifindex of a pod interface -> 1: guarded (lib/guard.h). Written
 * by the agent for every pod interface it attaches to and by the CNI plugin
 * when it attaches at veth creation; not slotted, since it says what an
 * interface is, not what the rules are. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, __u8);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_guarded SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, BH_CNT_MAX);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_counters SEC(".maps");

/* Rule id -> hits (include/hits_types.h). Not slotted: hits outlive the
 * generation that made them. The loader sizes it from the policy map's
 * capacity: twice one slot's, for the deciding rules of both slots. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__type(key, __u32);
	__type(value, struct rule_hit_value);
	__uint(max_entries, 2 * 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_rule_hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct datapath_state);
	__uint(max_entries, 1);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_state SEC(".maps");

static __always_inline void bh_count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&bh_counters, &idx);

	if (v)
		*v += 1;
}

/* The generation in force (bh_state); its parity selects the slot. */
static __always_inline __u32 bh_generation(void)
{
	__u32 zero = 0;
	struct datapath_state *s = bpf_map_lookup_elem(&bh_state, &zero);

	return s ? s->generation : 0;
}

#endif
