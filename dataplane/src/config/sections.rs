//! The sections of `dataplane.toml` below the top level: ports, workers, shm, umem,
//! forwarding, timeouts, dpdk; their defaults and conversions to the backends' settings.

use super::*;

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
pub(super) fn shm_default_dir() -> PathBuf {
    PathBuf::from("/dev/shm")
}

/// `[umem]`: each worker's packet memory.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UmemSection {
    pub frames: u32,
    pub chunk_size: u32,
    /// Frames each AF_XDP socket keeps in its fill ring (the ring's size; power of two). The
    /// kernel writes received packets into them oldest first, so this is both how many packets
    /// a stalled worker can fall behind before the kernel drops (`fill_ring_empty`) and how many
    /// frames' worth of memory the receive copies cycle through (their cache footprint).
    pub fill_ring: u32,
    pub hugepages: HugePagesConfig,
}

impl Default for UmemSection {
    fn default() -> Self {
        UmemSection {
            frames: 8192,
            chunk_size: 4096,
            fill_ring: 2048,
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

pub(super) fn opt_mac<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Mac>, D::Error> {
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

pub(super) fn opt_ifname<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    let s = String::deserialize(d)?;
    check_interface_name(&s)
        .map(|()| Some(s))
        .map_err(serde::de::Error::custom)
}
