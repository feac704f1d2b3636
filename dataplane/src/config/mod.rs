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

/// Which packet I/O backend drives a port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortDriver {
    /// AF_XDP sockets on a kernel interface, with fiberlb's XDP program.
    #[default]
    Afxdp,
    /// A DPDK ethdev (cargo feature `dpdk`): a vdev or a PCI device bound to vfio-pci.
    Dpdk,
}

impl std::fmt::Display for PortDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PortDriver::Afxdp => "afxdp",
            PortDriver::Dpdk => "dpdk",
        })
    }
}

/// `[dpdk]`: the EAL's arguments and the ports' buffer settings.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct DpdkSection {
    /// CPUs of the EAL's main lcore and the threads EAL starts during init (fiberlb's control
    /// thread may use every CPU; workers are pinned by `[workers] cores`).
    pub cores: Vec<usize>,
    /// Memory reserved at start, MiB (`-m`).
    pub memory_mb: Option<u32>,
    /// `--no-huge`: ordinary pages, slower; for tests and machines without hugepages.
    pub no_huge: bool,
    /// `--vdev` arguments, e.g. `net_af_packet0,iface=eth0`.
    pub vdevs: Vec<String>,
    /// PCI devices DPDK may take (`-a`); empty: `--no-pci`, so no real NIC is grabbed by
    /// accident.
    pub pci_allow: Vec<String>,
    /// `--file-prefix`; default `fiberlb-<pid>`. Two DPDK processes need different ones.
    pub file_prefix: Option<String>,
    /// `--in-memory`: a killed process leaves no files in /dev/hugepages.
    pub in_memory: bool,
    /// `--log-level` (e.g. `notice`, `debug`).
    pub log_level: Option<String>,
    /// More EAL arguments, verbatim.
    pub extra_args: Vec<String>,
    /// Packet buffers per NUMA socket (a power of two minus one is the most compact).
    pub mbufs: u32,
    /// Descriptors per RX queue.
    pub rx_desc: u16,
    /// Descriptors per TX queue.
    pub tx_desc: u16,
}

impl Default for DpdkSection {
    fn default() -> Self {
        DpdkSection {
            cores: Vec::new(),
            memory_mb: None,
            no_huge: false,
            vdevs: Vec::new(),
            pci_allow: Vec::new(),
            file_prefix: None,
            in_memory: true,
            log_level: None,
            extra_args: Vec::new(),
            mbufs: 16383,
            rx_desc: 1024,
            tx_desc: 1024,
        }
    }
}

#[cfg(feature = "dpdk")]
impl DpdkSection {
    /// The EAL settings this section gives.
    pub fn eal_config(&self) -> crate::nic::dpdk::EalConfig {
        crate::nic::dpdk::EalConfig {
            cores: self.cores.clone(),
            memory_mb: self.memory_mb,
            no_huge: self.no_huge,
            vdevs: self.vdevs.clone(),
            pci_allow: self.pci_allow.clone(),
            file_prefix: self.file_prefix.clone(),
            in_memory: self.in_memory,
            log_level: self.log_level.clone(),
            extra_args: self.extra_args.clone(),
        }
    }
}

/// Which traffic a port carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortRole {
    /// Faces clients: VIP traffic comes in here, nat replies go out here.
    Client,
    /// Faces backends: forwarded traffic goes out here, nat replies come in here.
    Backend,
    /// One port for both sides (one-armed).
    Both,
}

impl PortRole {
    /// True when the port faces clients.
    pub fn serves_clients(self) -> bool {
        matches!(self, PortRole::Client | PortRole::Both)
    }
    /// True when the port faces backends.
    pub fn serves_backends(self) -> bool {
        matches!(self, PortRole::Backend | PortRole::Both)
    }
}

/// `xdp_mode`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeConfig {
    #[default]
    Auto,
    Native,
    Generic,
}

impl From<XdpModeConfig> for XdpMode {
    fn from(m: XdpModeConfig) -> Self {
        match m {
            XdpModeConfig::Auto => XdpMode::Auto,
            XdpModeConfig::Native => XdpMode::Native,
            XdpModeConfig::Generic => XdpMode::Generic,
        }
    }
}

/// `bind`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BindConfig {
    #[default]
    Auto,
    Copy,
    Zerocopy,
}

impl From<BindConfig> for BindMode {
    fn from(m: BindConfig) -> Self {
        match m {
            BindConfig::Auto => BindMode::Auto,
            BindConfig::Copy => BindMode::Copy,
            BindConfig::Zerocopy => BindMode::ZeroCopy,
        }
    }
}

/// `hugepages` of `[umem]`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HugePagesConfig {
    #[default]
    Auto,
    On,
    Off,
}

impl From<HugePagesConfig> for HugePages {
    fn from(m: HugePagesConfig) -> Self {
        match m {
            HugePagesConfig::Auto => HugePages::Auto,
            HugePagesConfig::On => HugePages::Require,
            HugePagesConfig::Off => HugePages::Never,
        }
    }
}

/// One `[[ports]]` entry.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    /// A name for messages and stats; default: the interface (or DPDK device) name.
    #[serde(default)]
    pub name: Option<String>,
    /// The packet I/O backend; every port of a configuration uses the same one.
    #[serde(default)]
    pub driver: PortDriver,
    /// The kernel interface (afxdp: required; dpdk: optional, only for messages).
    #[serde(default)]
    pub interface: String,
    /// The DPDK device (dpdk only): a vdev name from `[dpdk] vdevs` (`net_af_xdp0`) or a PCI
    /// address from `[dpdk] pci_allow`.
    #[serde(default)]
    pub device: Option<String>,
    pub role: PortRole,
    /// Queues used, one per worker; default: the number of workers.
    #[serde(default)]
    pub queues: Option<u32>,
    #[serde(default)]
    pub xdp_mode: XdpModeConfig,
    #[serde(default)]
    pub bind: BindConfig,
    /// Next hop on this port's side (backends without a MAC / clients for nat replies).
    #[serde(default, deserialize_with = "opt_mac")]
    pub gateway_mac: Option<Mac>,
    /// This port's own MAC; default: read from /sys/class/net/IF/address (afxdp) or from the
    /// DPDK device (dpdk).
    #[serde(default, deserialize_with = "opt_mac")]
    pub mac: Option<Mac>,
    /// dpdk only: the kernel interface (a `net_tap` created at start with this port's MAC)
    /// that receives what is not fiberlb's — ARP, traffic to the host's own addresses (SSH,
    /// BGP), other protocols — and whose transmissions go out of this port. Give the host's
    /// addresses to it. Default: none, such packets are dropped (as AF_XDP's XDP program
    /// passes them to the kernel interface itself, afxdp ports need none).
    #[serde(default, deserialize_with = "opt_ifname")]
    pub host_interface: Option<String>,
}

impl PortConfig {
    /// The name used in messages.
    pub fn display_name(&self) -> &str {
        match (&self.name, &self.device) {
            (Some(n), _) => n,
            (None, Some(d)) if self.interface.is_empty() => d,
            _ => &self.interface,
        }
    }
}

/// `[workers]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkersConfig {
    /// One worker per listed core, pinned to it.
    pub cores: Vec<usize>,
    /// Sleep with exponential back-off (up to ~1 ms) after a run of empty polls; for machines
    /// where the workers share cores with other work (tests, CI). Adds latency after idle.
    pub idle_backoff: bool,
    /// Packets per receive burst (1-32).
    pub burst: usize,
}

impl Default for WorkersConfig {
    fn default() -> Self {
        WorkersConfig {
            cores: vec![1],
            idle_backoff: false,
            burst: crate::pipeline::BURST,
        }
    }
}

/// `[shm]`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShmConfig {
    /// Region file; default: `fiberlb` in [`fiberlb_shared::shm::region::default_dir`].
    pub path: Option<PathBuf>,
}

impl ShmConfig {
    /// The region path in force.
    pub fn resolved_path(&self) -> PathBuf {
        self.path
            .clone()
            .unwrap_or_else(|| shm_default_dir().join("fiberlb"))
    }
}

#[cfg(not(loom))]
use fiberlb_shared::shm::region::default_dir as shm_default_dir;
/// The region module is not built under `--cfg loom` (model checks of `publish` only).
#[cfg(loom)]
fn shm_default_dir() -> PathBuf {
    PathBuf::from("/dev/shm")
}

/// `[umem]`: each worker's packet memory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UmemSection {
    pub frames: u32,
    pub chunk_size: u32,
    pub hugepages: HugePagesConfig,
}

impl Default for UmemSection {
    fn default() -> Self {
        UmemSection {
            frames: 8192,
            chunk_size: 4096,
            hugepages: HugePagesConfig::Auto,
        }
    }
}

impl UmemSection {
    /// Bytes of one worker's UMEM.
    pub fn bytes(&self) -> u64 {
        u64::from(self.frames) * u64::from(self.chunk_size)
    }
}

/// `[forwarding]`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForwardingConfig {
    pub hash_seed: u64,
    pub flow_capacity: usize,
    pub mtu: u16,
    #[serde(deserialize_with = "opt_mac")]
    pub backend_gateway_mac: Option<Mac>,
    #[serde(deserialize_with = "opt_mac")]
    pub client_gateway_mac: Option<Mac>,
    #[serde(deserialize_with = "opt_mac")]
    pub backend_side_mac: Option<Mac>,
    #[serde(deserialize_with = "opt_mac")]
    pub client_side_mac: Option<Mac>,
    pub max_listeners: usize,
    pub max_backends: usize,
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        let d = PipelineConfig::default();
        ForwardingConfig {
            hash_seed: d.hash_seed,
            flow_capacity: d.flow_capacity,
            mtu: d.mtu,
            backend_gateway_mac: None,
            client_gateway_mac: None,
            backend_side_mac: None,
            client_side_mac: None,
            max_listeners: d.max_listeners,
            max_backends: d.max_backends,
        }
    }
}

/// `[timeouts]`, in seconds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TimeoutsConfig {
    pub tcp_open: u32,
    pub tcp_closing: u32,
    pub udp: u32,
    /// Half-open TCP flows (SYN seen, no ACK yet): short, so a SYN flood's entries recycle.
    pub tcp_syn: u32,
}

impl Default for TimeoutsConfig {
    fn default() -> Self {
        let t = Timeouts::default();
        TimeoutsConfig {
            tcp_open: t.tcp_open_ms / 1000,
            tcp_closing: t.tcp_closing_ms / 1000,
            udp: t.udp_ms / 1000,
            tcp_syn: t.tcp_syn_ms / 1000,
        }
    }
}

/// The one MAC parser and formatter (`aa:bb:cc:dd:ee:ff`, or `-` separators).
pub use fiberlb_shared::model::{format_mac, parse_mac};

/// Reads an interface's MAC from sysfs (in the calling thread's network namespace).
///
/// # Errors
/// When the interface does not exist or the file does not hold a MAC.
pub fn interface_mac(interface: &str) -> Result<Mac, ConfigError> {
    let file = format!("/sys/class/net/{interface}/address");
    let err = |reason: String| ConfigError::Mac {
        interface: interface.to_string(),
        file: file.clone(),
        reason,
    };
    if interface.is_empty() || interface.contains('/') || interface.contains("..") {
        return Err(err("not an interface name".into()));
    }
    let text = std::fs::read_to_string(&file).map_err(|e| err(e.to_string()))?;
    parse_mac(text.trim()).ok_or_else(|| err(format!("{:?} is not a MAC", text.trim())))
}

fn opt_mac<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
    let s = String::deserialize(d)?;
    parse_mac(&s).map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "{s:?} is not a MAC address (expected 02:00:00:00:01:01)"
        ))
    })
}

/// Checks a kernel interface name fiberlb creates: what Linux accepts (1-15 bytes, not `.` or
/// `..`), narrowed to letters, digits, `-`, `_` and `.` because the name also goes into a DPDK
/// device argument list (where `,` and `=` are separators).
pub fn check_interface_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 {
        return Err(format!(
            "interface name {name:?} must be 1-15 characters long (Linux's limit), it has {}",
            name.len()
        ));
    }
    if name == "." || name == ".." {
        return Err(format!("{name:?} is not a valid interface name"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "interface name {name:?} contains {c:?}: use letters, digits, '-', '_' or '.'"
        ));
    }
    Ok(())
}

fn opt_ifname<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_interface_name(&s)
        .map(|()| Some(s))
        .map_err(serde::de::Error::custom)
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
                "umem.frames = {}: must be 1024-16777216 (every port's fill ring takes 2048 \
                 frames' worth of room; 4096 or more per port is comfortable)",
                u.frames
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
