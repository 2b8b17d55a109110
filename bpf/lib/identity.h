/* SPDX-License-Identifier: Apache-2.0 */
/* Who is at an address: a peer's identity (LPM, longest prefix wins, WORLD
 * when nothing matches) and whether an address is a local endpoint. The
 * agent writes the node's own addresses into the tries as HOST, which is how
 * the host override of the IdentityMap happens. */
#ifndef BULKHEAD_LIB_IDENTITY_H
#define BULKHEAD_LIB_IDENTITY_H

#include "maps.h"
#include "parse.h"

static __always_inline __u32 bh_peer_identity(const struct bh_pkt *p, const __u8 *addr)
{
	struct identity_value *v;

	if (p->family == BH_FAMILY_V4) {
		struct ipcache_v4_key k = { .prefixlen = 32 };

		__builtin_memcpy(k.addr, addr, 4);
		v = bh_slot_lookup(bh_ipcache_v4, p->generation, &k);
	} else {
		struct ipcache_v6_key k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, addr, 16);
		v = bh_slot_lookup(bh_ipcache_v6, p->generation, &k);
	}
	return v ? v->identity : BH_ID_WORLD;
}

static __always_inline struct endpoint_info *bh_local_endpoint(const struct bh_pkt *p,
								  const __u8 *addr)
{
	struct endpoint_key k = {};

	k.family = p->family;
	__builtin_memcpy(k.addr, addr, 16);
	return bh_slot_lookup(bh_endpoints, p->generation, &k);
}

#endif
