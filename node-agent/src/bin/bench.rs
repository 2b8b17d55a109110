//! Placeholder; replaced by the datapath benchmark.
fn main() {}
