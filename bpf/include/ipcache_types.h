/* SPDX-License-Identifier: Apache-2.0 */
/* Address prefix -> identity: two LPM tries, one per family. Addresses are in
 * network byte order; prefixlen counts bits of addr. */
#ifndef BULKHEAD_IPCACHE_TYPES_H
#define BULKHEAD_IPCACHE_TYPES_H

#include <linux/types.h>

struct ipcache_v4_key {
	__u32 prefixlen;
	__u8 addr[4];
};

struct ipcache_v6_key {
	__u32 prefixlen;
	__u8 addr[16];
};

struct identity_value {
	__u32 identity;
	__u32 pad;
};

#endif
