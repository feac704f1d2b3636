//! `fiberlb-dataplane doctor`: checks the machine against a `dataplane.toml` before `run` and
//! explains every finding with how to fix it — kernel (AF_XDP, BPF), privileges, each port's
//! driver and its XDP native / zero-copy support, queues vs workers, MTU vs UMEM chunks,
//! hugepages, isolated cores, IRQ affinity, RLIMIT_MEMLOCK and NICs bound to vfio-pci (DPDK).
//!
//! Everything read from `/proc` and `/sys` goes through [`Host`], so tests run the checks on a
//! fake tree; the probes that need the live kernel (the `bpf` syscall, an AF_XDP socket, the
//! ethtool driver query for virtual devices) only run when [`Host::live`] is set.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{
    BindConfig, DataplaneConfig, HugePagesConfig, PortConfig, PortDriver, XdpModeConfig,
};
use crate::nic::afxdp::XDP_PACKET_HEADROOM;

/// How bad a finding is. `Error` means `run` will fail (or cannot work) on this machine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Checked and fine.
    Ok,
    /// Worth knowing; nothing to fix.
    Info,
    /// fiberlb runs, but slower or less robustly than it could.
    Warn,
    /// fiberlb cannot run until this is fixed.
    Error,
}

impl Level {
    fn tag(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Info => "info",
            Level::Warn => "WARN",
            Level::Error => "ERROR",
        }
    }
}

/// One finding: what was checked, what was found and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub level: Level,
    /// Short topic: `kernel`, `port client (eth1)`, `hugepages`, ...
    pub topic: String,
    pub what: String,
    pub fix: Option<String>,
}

/// Every finding of one run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
}

impl Report {
    fn push(&mut self, level: Level, topic: impl Into<String>, what: impl Into<String>) {
        self.findings.push(Finding {
            level,
            topic: topic.into(),
            what: what.into(),
            fix: None,
        });
    }

    fn push_fix(
        &mut self,
        level: Level,
        topic: impl Into<String>,
        what: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            level,
            topic: topic.into(),
            what: what.into(),
            fix: Some(fix.into()),
        });
    }

    /// Findings at `level`.
    pub fn count(&self, level: Level) -> usize {
        self.findings.iter().filter(|f| f.level == level).count()
    }

    /// False when at least one finding is an [`Level::Error`].
    pub fn can_run(&self) -> bool {
        self.count(Level::Error) == 0
    }

    /// The findings of one topic prefix (tests and tools).
    pub fn about<'a>(&'a self, topic: &'a str) -> impl Iterator<Item = &'a Finding> + 'a {
        self.findings
            .iter()
            .filter(move |f| f.topic.starts_with(topic))
    }

    /// The human report: one line per finding, its fix indented below, a verdict at the end.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for f in &self.findings {
            let _ = writeln!(s, "{:<5}  {:<22} {}", f.level.tag(), f.topic, f.what);
            if let Some(fix) = &f.fix {
                let _ = writeln!(s, "{:<5}  {:<22} fix: {}", "", "", fix);
            }
        }
        let _ = writeln!(
            s,
            "\nresult: {} ok, {} info, {} warning(s), {} error(s): {}",
            self.count(Level::Ok),
            self.count(Level::Info),
            self.count(Level::Warn),
            self.count(Level::Error),
            if self.can_run() {
                "fiberlb can run here"
            } else {
                "fiberlb cannot run here until the errors are fixed"
            }
        );
        s
    }
}

/// Where the checks read the machine from.
#[derive(Clone, Debug)]
pub struct Host {
    /// `/proc` (or a fake tree).
    pub proc_root: PathBuf,
    /// `/sys` (or a fake tree).
    pub sys_root: PathBuf,
    /// Run the probes that need the live kernel and this process's privileges.
    pub live: bool,
}

impl Host {
    /// This machine, in the current network namespace.
    pub fn live() -> Host {
        Host {
            proc_root: PathBuf::from("/proc"),
            sys_root: PathBuf::from("/sys"),
            live: true,
        }
    }

    /// True when the network interface `ifname` exists (for the live host: in this process's
    /// network namespace). Also used by `run`'s preflight.
    pub fn interface_exists(&self, ifname: &str) -> bool {
        !ifname.is_empty()
            && !ifname.contains('/')
            && self.sys_root.join("class/net").join(ifname).exists()
    }

    /// The interface's receive queues (`queues/rx-*` in sysfs); 0 when unknown.
    pub fn rx_queues(&self, ifname: &str) -> usize {
        std::fs::read_dir(self.sys_root.join("class/net").join(ifname).join("queues"))
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                    .count()
            })
            .unwrap_or(0)
    }

    fn proc(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.proc_root.join(rel)).ok()
    }

    fn sys(&self, rel: &str) -> Option<String> {
        std::fs::read_to_string(self.sys_root.join(rel))
            .ok()
            .map(|s| s.trim().to_string())
    }
}

/// XDP support of a NIC driver, as upstream Linux has it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DriverXdp {
    /// Native (driver-mode) XDP; without it only generic (skb) XDP, which copies every packet.
    pub native: bool,
    /// AF_XDP zero-copy from this kernel version on (`None`: not supported).
    pub zero_copy_since: Option<(u32, u32)>,
    /// Virtual device (no interrupts of its own).
    pub virtual_dev: bool,
}

/// Known drivers. Anything else: assume generic XDP only and say so.
pub fn driver_xdp(driver: &str) -> Option<DriverXdp> {
    let (native, zc, virtual_dev) = match driver {
        "ice" | "i40e" | "ixgbe" | "mlx5_core" | "stmmaceth" => (true, Some((5, 4)), false),
        "igc" => (true, Some((5, 14)), false),
        "igb" => (true, Some((6, 14)), false),
        "nfp" => (true, Some((5, 18)), false),
        "mlx4_en" | "mlx4_core" | "bnxt_en" | "ena" | "qede" | "ixgbevf" | "sfc" | "hv_netvsc"
        | "gve" | "tsnep" | "dpaa2-eth" | "mvneta" | "mvpp2" | "cpsw" => (true, None, false),
        "virtio_net" => (true, Some((6, 11)), false),
        "veth" | "tun" | "netdevsim" => (true, None, true),
        "e1000e" | "e1000" | "r8169" | "igbvf" | "tg3" | "bnx2" => (false, None, false),
        "bridge" | "dummy" | "macvlan" | "ipvlan" | "vxlan" | "bond" | "team" | "wireguard" => {
            (false, None, true)
        }
        _ => return None,
    };
    Some(DriverXdp {
        native,
        zero_copy_since: zc,
        virtual_dev,
    })
}

/// `(major, minor)` of a kernel release string such as `6.18.44-fc-v657`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut it = release.trim().split(|c: char| !c.is_ascii_digit());
    let major = it.next()?.parse().ok()?;
    let minor = it.next()?.parse().ok()?;
    Some((major, minor))
}

/// A CPU list (`1-3,5`), as in `isolcpus=` or `smp_affinity_list`. Flags such as
/// `isolcpus=domain,managed_irq,2-3` are skipped. Malformed parts are ignored.
pub fn parse_cpu_list(s: &str) -> Vec<usize> {
    let mut v = Vec::new();
    for part in s.trim().split(',') {
        if let Some((a, b)) = part.split_once('-') {
            if let (Ok(a), Ok(b)) = (a.parse::<usize>(), b.parse::<usize>()) {
                if a <= b && b - a < 4096 {
                    v.extend(a..=b);
                }
            }
        } else if let Ok(n) = part.parse() {
            v.push(n);
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// The CPU list of a kernel command-line parameter (`isolcpus`, `nohz_full`, `rcu_nocbs`).
pub fn cmdline_cpus(cmdline: &str, key: &str) -> Vec<usize> {
    cmdline
        .split_whitespace()
        .filter_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .flat_map(parse_cpu_list)
        .collect()
}

/// Interrupts in `/proc/interrupts` whose name mentions one of `names` (the interface name,
/// or its PCI address for drivers such as mlx5 that name IRQs by device): `(irq, name)`.
pub fn nic_irqs(interrupts: &str, names: &[&str]) -> Vec<(u32, String)> {
    let mut v = Vec::new();
    for line in interrupts.lines() {
        let Some((num, rest)) = line.trim_start().split_once(':') else {
            continue;
        };
        let Ok(irq) = num.trim().parse::<u32>() else {
            continue;
        };
        let Some(name) = rest.split_whitespace().last() else {
            continue;
        };
        if names
            .iter()
            .any(|n| !n.is_empty() && name_mentions(name, n))
        {
            v.push((irq, name.to_string()));
        }
    }
    v
}

/// `eth1-TxRx-0` mentions `eth1` but `eth10-TxRx-0` does not.
fn name_mentions(irq_name: &str, dev: &str) -> bool {
    irq_name.match_indices(dev).any(|(i, _)| {
        let before = irq_name[..i].chars().next_back();
        let after = irq_name[i + dev.len()..].chars().next();
        let edge = |c: Option<char>| c.is_none_or(|c| !c.is_ascii_alphanumeric());
        edge(before) && edge(after)
    })
}

use crate::meminfo::field as meminfo_field;

/// Effective capabilities (`CapEff:` of `/proc/self/status`).
pub fn effective_caps(status: &str) -> Option<u64> {
    let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

const CAP_NET_ADMIN: u32 = 12;
const CAP_NET_RAW: u32 = 13;
const CAP_IPC_LOCK: u32 = 14;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// The capabilities `run` needs that this process's effective set lacks (names; empty when
/// everything is there, or when /proc cannot tell, so `run` then fails at the real call
/// with its own message). Measured on Linux 6.18: NET_ADMIN (XDP attach, BPF maps for
/// networking), NET_RAW (AF_XDP sockets), BPF and PERFMON (loading the XDP program);
/// SYS_ADMIN is not needed from 5.8 on.
pub fn missing_run_capabilities() -> Vec<&'static str> {
    let Some(caps) = std::fs::read_to_string("/proc/self/status")
        .ok()
        .as_deref()
        .and_then(effective_caps)
    else {
        return Vec::new();
    };
    let sys_admin = has_cap(caps, CAP_SYS_ADMIN);
    let mut v = Vec::new();
    if !has_cap(caps, CAP_NET_ADMIN) {
        v.push("CAP_NET_ADMIN");
    }
    if !has_cap(caps, CAP_NET_RAW) {
        v.push("CAP_NET_RAW");
    }
    if !has_cap(caps, CAP_BPF) && !sys_admin {
        v.push("CAP_BPF");
    }
    if !has_cap(caps, CAP_PERFMON) && !sys_admin {
        v.push("CAP_PERFMON");
    }
    v
}

fn mib(bytes: u64) -> String {
    format!("{:.0} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// Receive queues port `p` needs: its `queues`, else one per worker.
pub fn queues_wanted(cfg: &DataplaneConfig, p: &PortConfig) -> usize {
    p.queues.map_or(cfg.workers.cores.len(), |q| q as usize)
}

/// Hugepages of `page_size` bytes the workers' UMEMs need (one UMEM per worker).
pub fn umem_hugepages_needed(cfg: &DataplaneConfig, page_size: u64) -> u64 {
    cfg.umem.bytes().div_ceil(page_size.max(1)) * cfg.workers.cores.len() as u64
}

/// Runs every check for `cfg` on `host`.
pub fn diagnose(cfg: &DataplaneConfig, host: &Host) -> Report {
    let mut r = Report::default();
    check_machine(&mut r, host);
    let kernel = check_kernel(&mut r, host);
    check_privileges(&mut r, host, kernel);
    if host.live {
        probe_bpf(&mut r);
        probe_af_xdp(&mut r);
    }
    check_bpffs(&mut r, host);
    check_memlock(&mut r, cfg, host);
    check_cores(&mut r, cfg, host);
    check_hugepages(&mut r, cfg, host);
    if cfg.ports.is_empty() {
        r.push_fix(
            Level::Error,
            "ports",
            "the configuration has no [[ports]]",
            "add a [[ports]] section per interface (role = client / backend, or one with role = both)",
        );
    }
    for p in &cfg.ports {
        if p.driver == PortDriver::Dpdk {
            check_dpdk_port(&mut r, cfg, host, p);
        } else {
            check_port(&mut r, cfg, host, p, kernel);
        }
    }
    if cfg.ports.iter().any(|p| p.driver == PortDriver::Dpdk) {
        check_dpdk_memory(&mut r, cfg, host);
    }
    check_vfio(&mut r, host);
    r
}

mod dpdk;
mod ports;
mod system;
#[cfg(test)]
mod tests;

use dpdk::*;
use ports::*;
use system::*;
