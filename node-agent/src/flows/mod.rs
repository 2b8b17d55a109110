//! Flow events from the ring buffer, aggregated into `flow/v1` records.
//!
//! ```text
//!  bh_events ─► FlowReader ─► FlowAggregator ─(drain at each interval)─► Edge counts
//!   (per connection:            per flow instance: cumulative → delta        │
//!    first packet, REPORTs,     per edge (ephemeral port dropped):            ▼
//!    denies)                    flows, packets, bytes                 Resolver (rule map +
//!                                                                     identity shards) ─► FlowRecord
//!                                                              ServiceIndex (cluster mode's
//!                                                              Services) names `service`
//! ```
//!
//! A flow instance is its conntrack tuple, direction and creation time. The
//! datapath reports cumulative counters, so a lost or duplicated report
//! neither loses nor doubles anything: the next report carries the total.
//! A flow whose first event was lost is counted once when it is first seen.

pub mod aggregate;
pub mod export;
mod resolve;
pub mod services;
mod sink;

use aya::maps::{MapData, RingBuf};
use aya::Ebpf;

pub use aggregate::{EdgeCounts, FlowAggregator, RawEdge, ServiceTuples};
pub use resolve::Resolver;
pub use services::ServiceIndex;
pub use sink::FlowSink;

use crate::error::Result;
use crate::layout::FlowEvent;
use crate::maps::{take, wrap};

const NAME: &str = "bh_events";

/// The consumer side of `bh_events`.
pub struct FlowReader {
    ring: RingBuf<MapData>,
    malformed: u64,
}

impl std::fmt::Debug for FlowReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlowReader")
            .field("malformed", &self.malformed)
            .finish_non_exhaustive()
    }
}

impl FlowReader {
    pub(crate) fn take(ebpf: &mut Ebpf) -> Result<Self> {
        let ring = RingBuf::try_from(take(ebpf, NAME)?).map_err(wrap(NAME, "open"))?;
        Ok(FlowReader { ring, malformed: 0 })
    }

    /// Moves every pending event into `agg`; returns how many. The first
    /// event of a flow sent to a Service that `agg` cannot name yet makes it
    /// ask `service_tuples` (a walk of conntrack), at most once per call:
    /// reads without such flows walk nothing.
    pub fn read_into(
        &mut self,
        agg: &mut FlowAggregator,
        mut service_tuples: impl FnMut() -> ServiceTuples,
    ) -> usize {
        let (mut n, mut walked) = (0, false);
        while let Some(item) = self.ring.next() {
            match FlowEvent::from_bytes(&item) {
                Some(event) => {
                    if !walked && agg.needs_service_tuples(&event) {
                        agg.set_service_tuples(service_tuples());
                        walked = true;
                    }
                    agg.add(&event);
                    n += 1;
                }
                None => self.malformed += 1,
            }
        }
        n
    }
}
