//! `dataplane.toml`: the node's own settings (what the services file does not say).
//!
//! ```toml
//! [forwarding]
//! hash_seed = 7379537652274192929   # same on every node behind one ECMP group
//! flow_capacity = 1048576           # flow-table entries per worker (32 bytes each)
//! mtu = 1500                        # largest IP packet towards backends (tunnel check)
//! backend_gateway_mac = "02:00:00:00:02:fe"  # next hop for backends without a MAC
//! client_gateway_mac = "02:00:00:00:01:fe"   # next hop towards clients (nat replies)
//! # backend_side_mac / client_side_mac: source MACs; default: the receiving port's MAC
//! max_listeners = 4096
//! max_backends = 65536
//!
//! [timeouts]                        # flow idle timeouts, seconds
//! tcp_open = 900
//! tcp_closing = 10
//! tcp_syn = 5                       # half-open TCP (SYN, no ACK yet): evicted first
//! udp = 60
//!
//! [[ports]]                         # the NIC ports `run` forwards on
//! name = "clients"
//! driver = "afxdp"                  # afxdp (default) | dpdk (all ports alike)
//! interface = "eth0"                # afxdp: the kernel interface
//! # device = "net_af_xdp0"          # dpdk: the DPDK device (a [dpdk] vdev or a PCI address)
//! role = "client"                   # client | backend | both
//! queues = 1                        # queues used (one per worker); default: one per worker
//! xdp_mode = "auto"                 # auto | native | generic
//! bind = "auto"                     # auto | copy | zerocopy
//! gateway_mac = "02:00:00:00:01:fe" # next hop on this side
//! # mac = "..."                     # this port's own MAC; default /sys/class/net/IF/address
//! # host_interface = "fbtap0"       # dpdk: kernel exception interface (net_tap) for what is
//! #                                 # not fiberlb's (ARP, SSH, BGP...); default: none (dropped)
//!
//! [workers]
//! cores = [1]                       # one worker per core
//! idle_backoff = false              # sleep (up to ~1 ms) when idle: shared machines only
//! burst = 32
//!
//! [shm]
//! path = "/dev/shm/fiberlb"         # default: fiberlb in shm::region::default_dir()
//!
//! [umem]                            # per worker
//! frames = 8192
//! chunk_size = 4096                 # 2048 | 4096
//! fill_ring = 2048                  # frames per socket's fill ring, 64-16384, power of two:
//!                                   # fewer = smaller cache footprint of the receive copy,
//!                                   # but a shorter worker stall already drops packets
//! hugepages = "auto"                # auto | on | off
//!
//! [dpdk]                            # EAL settings, for ports with driver = "dpdk"
//! cores = [0]                       # CPUs of EAL's own threads; default: all allowed
//! memory_mb = 256                   # -m; default: DPDK grows it (hugepages) / 256 (no_huge)
//! no_huge = false                   # --no-huge: ordinary pages (tests, no hugepages)
//! vdevs = ["net_af_xdp0,iface=eth0,start_queue=0,queue_count=1"]
//! pci_allow = ["0000:01:00.0"]      # -a; empty: --no-pci
//! file_prefix = "fiberlb"           # default: fiberlb-<pid>; unique per DPDK process
//! in_memory = true                  # --in-memory: nothing left in /dev/hugepages
//! log_level = "notice"
//! extra_args = []                   # passed to the EAL verbatim
//! mbufs = 16383                     # packet buffers per NUMA socket
//! rx_desc = 1024                    # descriptors per RX / TX queue
//! tx_desc = 1024
//! ```
//! Unknown keys are errors, reported with their line. The ports' roles give the pipeline its
//! MACs: frames towards backends leave with the backend port's MAC to its `gateway_mac` (unless
//! the backend has a MAC of its own), nat replies with the client port's MAC to its
//! `gateway_mac`; values set in `[forwarding]` win.

use std::path::{Path, PathBuf};

use fiberlb_shared::model::Mac;
use serde::Deserialize;

use crate::flow_table::Timeouts;
use crate::nic::afxdp::{BindMode, HugePages, XdpMode};
use crate::pipeline::PipelineConfig;

mod sections;

pub use sections::*;

/// Why dataplane.toml was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("cannot read the MAC address of interface {interface:?} ({file}): {reason}; give it as `mac = \"02:00:00:00:00:01\"` in its [[ports]] entry, or check the interface exists in this network namespace")]
    Mac {
        interface: String,
        file: String,
        reason: String,
    },
}

/// The whole file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    #[serde(default)]
    pub timeouts: TimeoutsConfig,
    /// The ports to forward on (`run` needs at least one).
    #[serde(default)]
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub workers: WorkersConfig,
    #[serde(default)]
    pub shm: ShmConfig,
    #[serde(default)]
    pub umem: UmemSection,
    /// EAL and pool settings; used when the ports have `driver = "dpdk"`.
    #[serde(default)]
    pub dpdk: Option<DpdkSection>,
}

const MAX_TIMEOUT_S: u32 = 2_000_000; // < 2^31 ms, the flow table's clock range

impl DataplaneConfig {
    /// Parses the file's text; `path` names it in errors.
    ///
    /// # Errors
    /// With the line and the reason.
    pub fn parse(text: &str, path: &str) -> Result<Self, ConfigError> {
        let cfg: DataplaneConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.to_string(),
        })?;
        let t = &cfg.timeouts;
        for (name, v) in [
            ("tcp_open", t.tcp_open),
            ("tcp_closing", t.tcp_closing),
            ("udp", t.udp),
            ("tcp_syn", t.tcp_syn),
        ] {
            if v == 0 || v > MAX_TIMEOUT_S {
                return Err(ConfigError::Parse {
                    path: path.to_string(),
                    message: format!("timeouts.{name} = {v}: must be 1-{MAX_TIMEOUT_S} seconds"),
                });
            }
        }
        cfg.check_node(path)?;
        if cfg.forwarding.mtu < 576 {
            return Err(ConfigError::Parse {
                path: path.to_string(),
                message: format!(
                    "forwarding.mtu = {}: must be at least 576",
                    cfg.forwarding.mtu
                ),
            });
        }
        Ok(cfg)
    }

    /// Checks of the ports, workers and UMEM that need no system access.
    fn check_node(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Parse {
            path: path.to_string(),
            message,
        };
        let w = &self.workers;
        if w.burst == 0 || w.burst > crate::pipeline::BURST {
            return Err(bad(format!(
                "workers.burst = {}: must be 1-{}",
                w.burst,
                crate::pipeline::BURST
            )));
        }
        if w.cores.is_empty() {
            return Err(bad("workers.cores is empty: list at least one core".into()));
        }
        let mut seen = std::collections::HashSet::new();
        for c in &w.cores {
            if !seen.insert(*c) {
                return Err(bad(format!(
                    "workers.cores lists core {c} twice: one worker per core"
                )));
            }
        }
        let u = &self.umem;
        if u.chunk_size != 2048 && u.chunk_size != 4096 {
            return Err(bad(format!(
                "umem.chunk_size = {}: must be 2048 or 4096",
                u.chunk_size
            )));
        }
        if !(1024..=(1 << 24)).contains(&u.frames) {
            return Err(bad(format!(
                "umem.frames = {}: must be 1024-16777216 (every port's fill ring takes \
                 umem.fill_ring frames, 2048 by default; twice that per port is comfortable)",
                u.frames
            )));
        }
        if !(64..=16384).contains(&u.fill_ring) || !u.fill_ring.is_power_of_two() {
            return Err(bad(format!(
                "umem.fill_ring = {}: must be a power of two from 64 to 16384",
                u.fill_ring
            )));
        }
        let mut names = std::collections::HashSet::new();
        let mut ifaces = std::collections::HashSet::new();
        self.check_drivers(path)?;
        for p in &self.ports {
            if !names.insert(p.display_name().to_string()) {
                return Err(bad(format!(
                    "two [[ports]] entries are named {:?}",
                    p.display_name()
                )));
            }
            if !p.interface.is_empty() && !ifaces.insert(p.interface.clone()) {
                return Err(bad(format!(
                    "interface {:?} is listed in two [[ports]] entries",
                    p.interface
                )));
            }
            if let Some(q) = p.queues {
                if (q as usize) < w.cores.len() {
                    return Err(bad(format!(
                        "port {:?}: queues = {q} but there are {} workers: each worker needs \
                         its own queue (queue = worker index)",
                        p.display_name(),
                        w.cores.len()
                    )));
                }
            }
        }
        let clients = self
            .ports
            .iter()
            .filter(|p| p.role.serves_clients())
            .count();
        let backends = self
            .ports
            .iter()
            .filter(|p| p.role.serves_backends())
            .count();
        if !self.ports.is_empty() && (clients != 1 || backends != 1) {
            return Err(bad(format!(
                "[[ports]]: need exactly one port facing clients (role client or both) and one \
                 facing backends (role backend or both); found {clients} and {backends}"
            )));
        }
        Ok(())
    }

    /// Per-driver port checks: afxdp ports name an interface and no device, dpdk ports a
    /// device; all ports use one driver; `[dpdk]` comes only with dpdk ports.
    fn check_drivers(&self, path: &str) -> Result<(), ConfigError> {
        let bad = |message: String| ConfigError::Parse {
            path: path.to_string(),
            message,
        };
        let mut devices = std::collections::HashSet::new();
        let mut host_ifaces = std::collections::HashSet::new();
        for p in &self.ports {
            match p.driver {
                PortDriver::Afxdp => {
                    if p.interface.is_empty() {
                        return Err(bad(format!(
                            "port {:?}: driver \"afxdp\" needs `interface = \"eth0\"` (the kernel \
                             interface to open AF_XDP sockets on)",
                            p.display_name()
                        )));
                    }
                    if let Some(d) = &p.device {
                        return Err(bad(format!(
                            "port {:?}: `device = {d:?}` is for driver = \"dpdk\"; AF_XDP ports \
                             name their kernel interface only",
                            p.display_name()
                        )));
                    }
                    if let Some(h) = &p.host_interface {
                        return Err(bad(format!(
                            "port {:?}: `host_interface = {h:?}` is for driver = \"dpdk\"; on \
                             AF_XDP the XDP program already passes what is not fiberlb's to \
                             {:?} itself: remove the key",
                            p.display_name(),
                            p.interface
                        )));
                    }
                }
                PortDriver::Dpdk => {
                    let Some(d) = p.device.as_deref().filter(|d| !d.is_empty()) else {
                        return Err(bad(format!(
                            "port {:?}: driver = \"dpdk\" needs `device = \"...\"`: a vdev name \
                             from [dpdk] vdevs (e.g. \"net_af_xdp0\") or a PCI address from \
                             [dpdk] pci_allow",
                            p.display_name()
                        )));
                    };
                    if !devices.insert(d.to_string()) {
                        return Err(bad(format!(
                            "DPDK device {d:?} is listed in two [[ports]] entries"
                        )));
                    }
                    if let Some(h) = &p.host_interface {
                        if !host_ifaces.insert(h.as_str()) {
                            return Err(bad(format!(
                                "host_interface {h:?} is listed in two [[ports]] entries: each \
                                 port needs its own"
                            )));
                        }
                        if let Some(o) = self.ports.iter().find(|o| o.interface == *h) {
                            return Err(bad(format!(
                                "port {:?}: host_interface {h:?} is the interface of port {:?}; \
                                 fiberlb creates the host interface, pick a new name (e.g. \
                                 \"fbtap0\")",
                                p.display_name(),
                                o.display_name()
                            )));
                        }
                    }
                    if let Some(sec) = &self.dpdk {
                        let known = sec.vdevs.iter().any(|v| v.split(',').next() == Some(d))
                            || sec.pci_allow.iter().any(|a| {
                                a.split(',').next().is_some_and(|a| {
                                    a == d
                                        || a.strip_prefix("0000:") == Some(d)
                                        || d.strip_prefix("0000:") == Some(a)
                                })
                            });
                        if !known {
                            return Err(bad(format!(
                                "port {:?}: DPDK device {d:?} is neither a vdev of [dpdk] vdevs \
                                 nor in [dpdk] pci_allow; add it there",
                                p.display_name()
                            )));
                        }
                    }
                }
            }
        }
        let dpdk = self
            .ports
            .iter()
            .filter(|p| p.driver == PortDriver::Dpdk)
            .count();
        if dpdk > 0 && dpdk < self.ports.len() {
            return Err(bad(
                "[[ports]] mix driver = \"afxdp\" and driver = \"dpdk\": use one driver for \
                 every port"
                    .into(),
            ));
        }
        if dpdk > 0 && self.dpdk.is_none() {
            return Err(bad(
                "ports with driver = \"dpdk\" need a [dpdk] section (vdevs or pci_allow naming \
                 their devices)"
                    .into(),
            ));
        }
        if let Some(sec) = &self.dpdk {
            if sec.mbufs < 1024 {
                return Err(bad(format!(
                    "dpdk.mbufs = {}: must be at least 1024 (every RX queue holds rx_desc \
                     buffers)",
                    sec.mbufs
                )));
            }
            for (name, v) in [("rx_desc", sec.rx_desc), ("tx_desc", sec.tx_desc)] {
                if !(64..=16384).contains(&v) {
                    return Err(bad(format!("dpdk.{name} = {v}: must be 64-16384")));
                }
            }
            let need =
                u64::from(sec.rx_desc) * self.workers.cores.len() as u64 * self.ports.len() as u64;
            if dpdk > 0 && u64::from(sec.mbufs) < need * 2 {
                return Err(bad(format!(
                    "dpdk.mbufs = {}: {} port(s) x {} worker queue(s) x rx_desc {} need at least \
                     {} (twice what the RX rings hold); raise mbufs or lower rx_desc",
                    sec.mbufs,
                    self.ports.len(),
                    self.workers.cores.len(),
                    sec.rx_desc,
                    need * 2
                )));
            }
        }
        Ok(())
    }

    /// The driver of the ports (all alike, see the checks); afxdp without ports.
    pub fn driver(&self) -> PortDriver {
        self.ports.first().map_or(PortDriver::Afxdp, |p| p.driver)
    }

    /// The client-facing and backend-facing ports (indices into `ports`; equal for a single
    /// `both` port). `None` without ports.
    pub fn port_roles(&self) -> Option<(usize, usize)> {
        let c = self.ports.iter().position(|p| p.role.serves_clients())?;
        let b = self.ports.iter().position(|p| p.role.serves_backends())?;
        Some((c, b))
    }

    /// The pipeline settings with the ports' MACs filled in: own MACs from the config or
    /// sysfs, gateways from the ports (values in `[forwarding]` win).
    ///
    /// # Errors
    /// When a port's own MAC is neither given nor readable.
    pub fn pipeline_with_ports(&self) -> Result<PipelineConfig, ConfigError> {
        let mut p = self.pipeline();
        let Some((ci, bi)) = self.port_roles() else {
            return Ok(p);
        };
        let own = |i: usize| -> Result<Mac, ConfigError> {
            let port = &self.ports[i];
            match port.mac {
                Some(m) => Ok(m),
                None => interface_mac(&port.interface),
            }
        };
        if p.client_side_mac.is_none() {
            p.client_side_mac = Some(own(ci)?);
        }
        if p.backend_side_mac.is_none() {
            p.backend_side_mac = Some(own(bi)?);
        }
        if p.client_gateway_mac.is_none() {
            p.client_gateway_mac = self.ports[ci].gateway_mac;
        }
        if p.backend_gateway_mac.is_none() {
            p.backend_gateway_mac = self.ports[bi].gateway_mac;
        }
        Ok(p)
    }

    /// The pipeline settings with the ports' MACs filled in, the ports' own MACs coming from
    /// `port_mac(index)` when not in the configuration (DPDK: the device reports it). Values
    /// in `[forwarding]` win, as in [`Self::pipeline_with_ports`].
    pub fn pipeline_with_port_macs(&self, port_mac: impl Fn(usize) -> Mac) -> PipelineConfig {
        let mut p = self.pipeline();
        let Some((ci, bi)) = self.port_roles() else {
            return p;
        };
        let own = |i: usize| self.ports[i].mac.unwrap_or_else(|| port_mac(i));
        p.client_side_mac = p.client_side_mac.or_else(|| Some(own(ci)));
        p.backend_side_mac = p.backend_side_mac.or_else(|| Some(own(bi)));
        p.client_gateway_mac = p.client_gateway_mac.or(self.ports[ci].gateway_mac);
        p.backend_gateway_mac = p.backend_gateway_mac.or(self.ports[bi].gateway_mac);
        p
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// When it cannot be read or is invalid.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&text, &p)
    }

    /// The pipeline settings this file gives.
    pub fn pipeline(&self) -> PipelineConfig {
        let f = &self.forwarding;
        PipelineConfig {
            hash_seed: f.hash_seed,
            flow_capacity: f.flow_capacity,
            timeouts: Timeouts {
                tcp_open_ms: self.timeouts.tcp_open * 1000,
                tcp_closing_ms: self.timeouts.tcp_closing * 1000,
                udp_ms: self.timeouts.udp * 1000,
                tcp_syn_ms: self.timeouts.tcp_syn * 1000,
            },
            backend_side_mac: f.backend_side_mac,
            client_side_mac: f.client_side_mac,
            backend_gateway_mac: f.backend_gateway_mac,
            client_gateway_mac: f.client_gateway_mac,
            mtu: f.mtu,
            max_listeners: f.max_listeners,
            max_backends: f.max_backends,
            host_path: self.ports.iter().any(|p| p.host_interface.is_some()),
        }
    }
}

#[cfg(test)]
mod tests;
