//! The data plane's NIC port counters file, `<region path>.ports.json`.
//!
//! The data plane's main thread (never a worker) rewrites it about once a second with each
//! port's link state and counters: `rte_eth_stats` and the link for DPDK ports; the kernel
//! interface's counters, the AF_XDP sockets' `XDP_STATISTICS` and the XDP program's own counters
//! for AF_XDP ports. `fiberlb-dataplane stats` and the control plane (Prometheus, the gRPC
//! `Counters` reply) read it.
//!
//! A JSON file beside the region rather than a new area of the shared-memory layout: the fields
//! differ per driver (and will grow with new drivers), they are read at scrape rate, not per
//! packet, and a file changes no layout version. It is written to a temporary file and renamed
//! over the old one, so a reader sees a whole file or the previous one. Readers parse with
//! unknown fields ignored and missing optional ones defaulted, so either side may be newer.
//!
//! A file is only *live* when it belongs to the region's current data plane instance
//! ([`PortsFile::instance_id`]) and is younger than [`STALE_AFTER_MS`]: one left by a data plane
//! that died (or stopped publishing) must not be shown as current numbers.
//!
//! Only types and the path rule live here (both processes agree on them); the data plane
//! writes with `serde_json` (`dataplane/src/port_stats.rs`), the control plane reads with it.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How often the data plane rewrites the file.
pub const PUBLISH_INTERVAL_MS: u64 = 1000;

/// A file older than this is stale: its data plane stopped publishing (dead or stuck).
pub const STALE_AFTER_MS: u64 = 5000;

/// `<region path>.ports.json`.
pub fn ports_path_for(region: &Path) -> PathBuf {
    let mut s = region.as_os_str().to_owned();
    s.push(".ports.json");
    PathBuf::from(s)
}

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortsFile {
    /// Hex instance id of the data plane that wrote it (as in the region's header): a file left
    /// by an earlier instance is not this data plane's.
    pub instance_id: String,
    /// When it was written, `CLOCK_MONOTONIC` nanoseconds (the clock of the region's
    /// heartbeats): what readers compute the age from.
    pub written_monotonic_ns: u64,
    /// When it was written, Unix time in milliseconds (for people and logs).
    #[serde(default)]
    pub written_unix_ms: u64,
    /// How often the data plane rewrites it.
    #[serde(default)]
    pub interval_ms: u64,
    /// Every port of the data plane, in configuration order (DPDK host ports after them).
    #[serde(default)]
    pub ports: Vec<PortCounters>,
}

impl PortsFile {
    /// Milliseconds since it was written, by `now_monotonic_ns`.
    pub fn age_ms(&self, now_monotonic_ns: u64) -> u64 {
        now_monotonic_ns.saturating_sub(self.written_monotonic_ns) / 1_000_000
    }

    /// Older than [`STALE_AFTER_MS`] at `now_monotonic_ns`.
    pub fn is_stale(&self, now_monotonic_ns: u64) -> bool {
        self.age_ms(now_monotonic_ns) > STALE_AFTER_MS
    }
}

/// One port's link state and counters. Counters are totals since the port started (DPDK) or
/// since the interface / socket / program was created (AF_XDP): Prometheus counters, which
/// restart from zero with the data plane.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortCounters {
    /// The port's name in dataplane.toml (`[[ports]] name`); a DPDK host (net_tap) port is
    /// named after its port with `-host` appended.
    pub name: String,
    /// `"afxdp"` or `"dpdk"`.
    pub driver: String,
    /// The kernel interface (AF_XDP) or the DPDK device name (`0000:01:00.0`, `net_af_xdp0`).
    pub device: String,
    /// The DPDK poll-mode driver (`net_ice`, `net_af_packet`, ...); absent for AF_XDP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pmd: Option<String>,
    /// Link (carrier) up.
    pub link_up: bool,
    /// Link speed in Mbit/s; absent when the driver does not say (a DPDK port's link down,
    /// an interface reporting -1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speed_mbps: Option<u32>,
    /// Frames received by the port (DPDK `ipackets`; AF_XDP: the interface's `rx_packets`,
    /// including what XDP passed to the kernel and, on most drivers, what it redirected).
    pub rx_packets: u64,
    /// Frames sent (DPDK `opackets`; AF_XDP: the interface's `tx_packets`).
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Frames lost because a receive ring was full — where a load balancer loses packets first.
    /// DPDK: `imissed` (the NIC's RX descriptors ran out). AF_XDP: the interface's
    /// `rx_missed_errors` + `rx_fifo_errors` plus the sockets' `rx_ring_full` (the worker did not
    /// empty its RX ring in time).
    pub rx_missed: u64,
    /// Erroneous frames received (DPDK `ierrors`; AF_XDP: the interface's `rx_errors`).
    pub rx_errors: u64,
    /// Frames that failed to go out (DPDK `oerrors`; AF_XDP: the interface's `tx_errors`).
    pub tx_errors: u64,
    /// DPDK only: receive buffer allocation failures (`rx_nombuf`: the mbuf pool ran dry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_nombuf: Option<u64>,
    /// AF_XDP only: the kernel interface's `rx_dropped` (frames the kernel stack dropped, e.g.
    /// no protocol, backlog full — the kernel's share of the traffic, not fiberlb's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rx_dropped: Option<u64>,
    /// AF_XDP only: `XDP_STATISTICS` summed over the port's sockets (one per worker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xsk: Option<XskCounters>,
    /// AF_XDP only: the port's XDP program counters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub xdp: Option<XdpCounters>,
    /// What could not be read this time (the other fields then hold what could, zeros else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// An AF_XDP port's sockets' kernel statistics, summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XskCounters {
    /// Sockets summed (one per worker).
    pub sockets: u32,
    /// Dropped for other reasons than a full ring (e.g. frame too large for a UMEM chunk).
    pub rx_dropped: u64,
    /// The RX ring was full: the worker fell behind (also in [`PortCounters::rx_missed`]).
    pub rx_ring_full: u64,
    /// A packet arrived while the fill ring was empty: too few free UMEM frames.
    pub rx_fill_ring_empty: u64,
    pub rx_invalid_descs: u64,
    pub tx_invalid_descs: u64,
    /// The kernel found the TX ring empty when asked to send.
    pub tx_ring_empty: u64,
}

/// An AF_XDP port's XDP program counters (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct XdpCounters {
    /// Frames redirected to a worker's socket (fiberlb's traffic).
    pub redirected: u64,
    /// Frames passed to the kernel (everything else; includes the next two).
    pub passed: u64,
    /// Malformed headers (passed).
    pub parse_errors: u64,
    /// fiberlb's frames on a queue with no socket (passed).
    pub no_socket: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_and_staleness() {
        assert_eq!(
            ports_path_for(Path::new("/dev/shm/fiberlb")),
            PathBuf::from("/dev/shm/fiberlb.ports.json")
        );
        let f = PortsFile {
            written_monotonic_ns: 10_000_000_000,
            ..PortsFile::default()
        };
        assert_eq!(f.age_ms(11_500_000_000), 1500);
        assert!(!f.is_stale(10_000_000_000 + STALE_AFTER_MS * 1_000_000));
        assert!(f.is_stale(10_000_000_000 + (STALE_AFTER_MS + 1) * 1_000_000));
        // A clock before the write (another boot's file) is age 0, not an underflow.
        assert_eq!(f.age_ms(5), 0);
    }
}
