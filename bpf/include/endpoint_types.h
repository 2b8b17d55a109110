/* SPDX-License-Identifier: Apache-2.0 */
/* Local address -> the endpoint it belongs to (pods, and the host itself),
 * and pod interface -> the endpoint behind it (bh_ifaces, keyed by the
 * host-side ifindex, same value). A packet's sender is the endpoint of the
 * interface it arrived on; its source address must be one of that
 * endpoint's (anti-spoofing, lib/spoof.h). */
#ifndef BULKHEAD_ENDPOINT_TYPES_H
#define BULKHEAD_ENDPOINT_TYPES_H

#include <linux/types.h>

struct endpoint_key {
	__u8 family;   /* BH_FAMILY_V4 or BH_FAMILY_V6 */
	__u8 pad[3];
	__u8 addr[16]; /* network order; IPv4 in the first 4 bytes, rest zero */
};

struct endpoint_info {
	__u32 identity; /* the subject identity policy keys use */
	__u8 mode;      /* BH_MODE_* */
	__u8 flags;     /* BH_EP_F_* */
	__u16 pad;
	__u32 ifindex;  /* host side of its veth; 0 when the agent found none (host: 0) */
};

#endif
