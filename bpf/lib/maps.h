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

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_v4_key);
	__type(value, struct identity_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_ipcache_v4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct ipcache_v6_key);
	__type(value, struct identity_value);
	__uint(max_entries, 65536);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_ipcache_v6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct endpoint_key);
	__type(value, struct endpoint_info);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_endpoints SEC(".maps");

/* Host-side ifindex of a pod veth -> the endpoint behind it. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, __u32);
	__type(value, struct endpoint_info);
	__uint(max_entries, 4096);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct policy_key);
	__type(value, struct policy_value);
	__uint(max_entries, 262144);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_policy SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct failsafe_key);
	__type(value, struct failsafe_value);
	__uint(max_entries, 256);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} bh_failsafe SEC(".maps");

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

static __always_inline __u32 bh_generation(void)
{
	__u32 zero = 0;
	struct datapath_state *s = bpf_map_lookup_elem(&bh_state, &zero);

	return s ? s->generation : 0;
}

#endif
