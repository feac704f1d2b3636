//! fiberlb's data plane.
//!
//! - [`wire`]: zero-copy header views and builders.
//! - [`flow_table`]: the per-worker connection table.
//! - [`pipeline`]: classify, flow lookup, backend choice, rewrite/encap.
//! - [`nic`]: packet I/O backends (memory, pcap).

pub mod wire;
