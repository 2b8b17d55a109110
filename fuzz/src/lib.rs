//! Structured inputs for the fuzz targets: `arbitrary` turns the fuzzer's
//! bytes into small clusters and rule maps drawn from a tiny vocabulary, so
//! that selectors match and rules collide as often as they can.

pub mod cluster;
pub mod rule_map;
