//! fiberlb's data plane.
//!
//! - [`wire`]: zero-copy header views and builders.
//! - [`flow_table`]: the per-worker connection table.
//! - [`snapshot`]: immutable forwarding configurations built from the service model.
//! - [`pipeline`]: parse, listener lookup, backend choice, rewrite/encapsulation.
//! - [`packet`]: the packet buffer and burst types the pipeline and the backends share.
//! - [`nic`]: packet I/O backends (AF_XDP, DPDK, memory).
//! - [`worker`]: the poll-mode worker loop and each backend's poll round; pcap replay.
//! - [`cpus`]: pinning threads to cores.
//! - [`config`] — the node's `dataplane.toml`.
//! - [`control`]: the control thread (commands from the region, snapshots, replies).
//! - [`stats`]: the offline `stats` command's report.
//! - [`port_stats`] — the NIC port counters file `<region>.ports.json`, written once a second.
//! - [`doctor`] — the `doctor` subcommand's checks of the machine against a configuration.

pub mod config;
// The control thread maps the shared-memory region, which is not built under loom.
#[cfg(not(loom))]
pub mod control;
pub mod cpus;
pub mod doctor;
pub mod flow_table;
pub mod meminfo;
pub mod nic;
pub mod packet;
pub mod pipeline;
// Stamps the file with the region's clock (shm, not built under loom).
#[cfg(not(loom))]
pub mod port_stats;
pub mod publish;
pub mod snapshot;
// Reads the shared-memory region (not built under loom).
#[cfg(not(loom))]
pub mod stats;
pub mod wire;
pub mod worker;
