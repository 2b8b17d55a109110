/* SPDX-License-Identifier: Apache-2.0 */
/* Datapath-wide state the agent writes after each programming (array, 1 entry). */
#ifndef BULKHEAD_STATE_TYPES_H
#define BULKHEAD_STATE_TYPES_H

#include <linux/types.h>

struct datapath_state {
	/* Bumped after every change of the maps; conntrack entries of an older
	 * generation are re-evaluated on their next packet. */
	__u32 generation;
	__u32 pad;
};

#endif
