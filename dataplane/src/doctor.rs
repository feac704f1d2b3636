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

fn check_machine(r: &mut Report, host: &Host) {
    let vm = host.proc("cpuinfo").is_some_and(|c| {
        c.lines()
            .any(|l| l.starts_with("flags") && l.contains(" hypervisor"))
    });
    if vm {
        r.push(
            Level::Info,
            "machine",
            "virtual machine (the CPU reports a hypervisor): expect virtual NICs (veth, virtio_net) \
             without zero-copy; throughput here says little about a bare-metal appliance",
        );
    } else {
        r.push(
            Level::Info,
            "machine",
            "bare metal (no hypervisor flag in /proc/cpuinfo)",
        );
    }
}

fn check_kernel(r: &mut Report, host: &Host) -> Option<(u32, u32)> {
    let release = host
        .proc("sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let v = kernel_version(&release);
    match v {
        None => r.push_fix(
            Level::Warn,
            "kernel",
            format!("cannot read the kernel version ({release:?})"),
            "check that /proc is mounted",
        ),
        Some(v) if v < (5, 4) => r.push_fix(
            Level::Error,
            "kernel",
            format!("Linux {release}: fiberlb needs 5.4 or later (AF_XDP need_wakeup, native XDP on veth, BPF maps of sockets)"),
            "upgrade the kernel (Debian 12 ships 6.1)",
        ),
        Some(v) if v < (5, 11) => r.push_fix(
            Level::Warn,
            "kernel",
            format!("Linux {release}: BPF maps are charged to RLIMIT_MEMLOCK before 5.11"),
            "raise RLIMIT_MEMLOCK (LimitMEMLOCK=infinity) or upgrade to 5.11+",
        ),
        Some(_) => r.push(
            Level::Ok,
            "kernel",
            format!("Linux {release}: AF_XDP, native XDP on veth and memcg-accounted BPF memory are available"),
        ),
    }
    if let Some(cfg) = host.proc("sys/kernel/unprivileged_bpf_disabled") {
        if cfg.trim() != "0" {
            r.push(
                Level::Info,
                "kernel",
                format!(
                    "kernel.unprivileged_bpf_disabled = {}: BPF needs CAP_BPF (or root), as fiberlb's unit grants",
                    cfg.trim()
                ),
            );
        }
    }
    v
}

fn check_privileges(r: &mut Report, host: &Host, kernel: Option<(u32, u32)>) {
    if !host.live {
        return;
    }
    let Some(caps) = host.proc("self/status").as_deref().and_then(effective_caps) else {
        r.push(
            Level::Warn,
            "privileges",
            "cannot read CapEff from /proc/self/status",
        );
        return;
    };
    let has_cap_bpf = kernel.is_none_or(|v| v >= (5, 8));
    let mut missing = Vec::new();
    for (cap, name) in [
        (CAP_NET_ADMIN, "CAP_NET_ADMIN (attach XDP programs)"),
        (CAP_NET_RAW, "CAP_NET_RAW (AF_XDP sockets)"),
    ] {
        if !has_cap(caps, cap) {
            missing.push(name);
        }
    }
    if has_cap_bpf {
        if !has_cap(caps, CAP_BPF) && !has_cap(caps, CAP_SYS_ADMIN) {
            missing.push("CAP_BPF (load the XDP program, create its maps)");
        }
        if !has_cap(caps, CAP_PERFMON) && !has_cap(caps, CAP_SYS_ADMIN) {
            missing.push("CAP_PERFMON (the verifier's pointer rules for the XDP program)");
        }
    } else if !has_cap(caps, CAP_SYS_ADMIN) {
        missing.push("CAP_SYS_ADMIN (BPF before Linux 5.8)");
    }
    if missing.is_empty() {
        r.push(
            Level::Ok,
            "privileges",
            "this process has the capabilities `run` needs (NET_ADMIN, NET_RAW, BPF, PERFMON; \
             IPC_LOCK or RLIMIT_MEMLOCK: see memlock)",
        );
    } else {
        r.push_fix(
            Level::Error,
            "privileges",
            format!("missing {}", missing.join(", ")),
            "run as root, or from the fiberlb-dataplane.service unit (AmbientCapabilities=)",
        );
    }
}

/// Creates (and closes) a one-entry BPF array map: the `bpf` syscall works with our privileges.
fn probe_bpf(r: &mut Report) {
    // union bpf_attr for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, then
    // fields that must be zero.
    let mut attr = [0u32; 30];
    attr[0] = 2; // BPF_MAP_TYPE_ARRAY
    attr[1] = 4;
    attr[2] = 4;
    attr[3] = 1;
    // SAFETY: BPF_MAP_CREATE (0) reads `size_of_val(&attr)` bytes from a live, zero-padded
    // buffer and writes nothing back; the returned fd is ours and closed below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            0,
            attr.as_mut_ptr(),
            std::mem::size_of_val(&attr),
        )
    };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by the kernel and is closed once.
        unsafe { libc::close(fd as libc::c_int) };
        r.push(
            Level::Ok,
            "bpf",
            "the bpf() syscall works (created and closed a test map)",
        );
        return;
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::ENOSYS) => r.push_fix(
            Level::Error,
            "bpf",
            "the kernel has no bpf() syscall (CONFIG_BPF_SYSCALL is off)",
            "use a kernel built with CONFIG_BPF_SYSCALL=y (every distribution kernel is)",
        ),
        Some(libc::EPERM) => r.push_fix(
            Level::Error,
            "bpf",
            "bpf() refused: this process may not use BPF",
            "run as root or with CAP_BPF (see the privileges finding); in a container, allow the bpf syscall",
        ),
        _ => r.push_fix(
            Level::Error,
            "bpf",
            format!("bpf() failed: {e}"),
            "check RLIMIT_MEMLOCK and the kernel log (dmesg)",
        ),
    }
}

/// Opens (and closes) an AF_XDP socket: the kernel has XDP sockets and we may open them.
fn probe_af_xdp(r: &mut Report) {
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_XDP, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
    if fd >= 0 {
        // SAFETY: `fd` was just returned by the kernel and is closed once.
        unsafe { libc::close(fd) };
        r.push(Level::Ok, "af_xdp", "AF_XDP sockets can be opened");
        return;
    }
    let e = std::io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAFNOSUPPORT) => r.push_fix(
            Level::Error,
            "af_xdp",
            "the kernel has no AF_XDP sockets (CONFIG_XDP_SOCKETS is off)",
            "use a kernel built with CONFIG_XDP_SOCKETS=y (Debian's is)",
        ),
        Some(libc::EPERM) => r.push_fix(
            Level::Error,
            "af_xdp",
            "opening an AF_XDP socket was refused",
            "grant CAP_NET_RAW (or run as root)",
        ),
        _ => r.push_fix(
            Level::Error,
            "af_xdp",
            format!("cannot open an AF_XDP socket: {e}"),
            "check the kernel log (dmesg)",
        ),
    }
}

fn check_bpffs(r: &mut Report, host: &Host) {
    let mounted = host.proc("mounts").is_some_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"/sys/fs/bpf") && f.get(2) == Some(&"bpf")
        })
    });
    if mounted {
        r.push(Level::Ok, "bpffs", "bpffs is mounted on /sys/fs/bpf");
    } else {
        r.push_fix(
            Level::Warn,
            "bpffs",
            "bpffs is not mounted on /sys/fs/bpf: fiberlb works without it, but bpftool cannot \
             inspect pinned objects",
            "mount -t bpf bpf /sys/fs/bpf (systemd does it at boot; else the installed fiberlb-bpffs.service)",
        );
    }
}

fn check_memlock(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
    if !host.live {
        return;
    }
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into a live local.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) } != 0 {
        r.push(Level::Warn, "memlock", "cannot read RLIMIT_MEMLOCK");
        return;
    }
    let need = cfg.umem.bytes() * cfg.workers.cores.len() as u64;
    let ipc_lock = host
        .proc("self/status")
        .as_deref()
        .and_then(effective_caps)
        .is_some_and(|c| has_cap(c, CAP_IPC_LOCK));
    if lim.rlim_cur == libc::RLIM_INFINITY {
        r.push(Level::Ok, "memlock", "RLIMIT_MEMLOCK is unlimited");
    } else if ipc_lock {
        r.push(
            Level::Ok,
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {}, but CAP_IPC_LOCK lifts it for the UMEMs ({})",
                mib(lim.rlim_cur),
                mib(need)
            ),
        );
    } else if lim.rlim_cur < need {
        r.push_fix(
            Level::Error,
            "memlock",
            format!(
                "RLIMIT_MEMLOCK is {}, the UMEMs need {} locked ({} worker(s) x {}): registering them fails",
                mib(lim.rlim_cur),
                mib(need),
                cfg.workers.cores.len(),
                mib(cfg.umem.bytes())
            ),
            "LimitMEMLOCK=infinity in the unit, `ulimit -l unlimited`, or grant CAP_IPC_LOCK",
        );
    } else {
        r.push(
            Level::Ok,
            "memlock",
            format!(
                "RLIMIT_MEMLOCK {} covers the UMEMs ({})",
                mib(lim.rlim_cur),
                mib(need)
            ),
        );
    }
}

fn online_cpus(host: &Host) -> Vec<usize> {
    if host.live {
        return crate::cpus::available_cores();
    }
    host.sys("devices/system/cpu/online")
        .map(|s| parse_cpu_list(&s))
        .unwrap_or_default()
}

fn check_cores(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
    let cores = &cfg.workers.cores;
    if cores.is_empty() {
        r.push_fix(
            Level::Error,
            "cores",
            "workers.cores is empty",
            "list one core per worker, e.g. cores = [1]",
        );
        return;
    }
    let online = online_cpus(host);
    let absent: Vec<_> = cores.iter().filter(|c| !online.contains(c)).collect();
    if !absent.is_empty() {
        r.push_fix(
            Level::Error,
            "cores",
            format!("workers.cores {absent:?} are not available to this process (available: {online:?})"),
            "use cores from the available list (check taskset/CPUAffinity and `nproc`)",
        );
    } else {
        r.push(
            Level::Ok,
            "cores",
            format!("{} worker(s) on cores {cores:?} of {online:?}", cores.len()),
        );
    }
    if cores.contains(&0) && online.len() > 1 {
        r.push_fix(
            Level::Warn,
            "cores",
            "a worker runs on core 0, where the system's interrupts and housekeeping run",
            "keep core 0 for the system: workers.cores from 1 up",
        );
    }
    let cmdline = host.proc("cmdline").unwrap_or_default();
    let isolated = cmdline_cpus(&cmdline, "isolcpus");
    let nohz = cmdline_cpus(&cmdline, "nohz_full");
    let list = cores
        .iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(",");
    let not_isolated: Vec<_> = cores.iter().filter(|c| !isolated.contains(c)).collect();
    let not_nohz: Vec<_> = cores.iter().filter(|c| !nohz.contains(c)).collect();
    if not_isolated.is_empty() && not_nohz.is_empty() {
        r.push(
            Level::Ok,
            "isolation",
            format!("worker cores {cores:?} are isolated (isolcpus, nohz_full)"),
        );
    } else {
        let level = if cfg.workers.idle_backoff {
            Level::Info
        } else {
            Level::Warn
        };
        r.push_fix(
            level,
            "isolation",
            format!(
                "worker cores not isolated: {not_isolated:?} lack isolcpus, {not_nohz:?} lack \
                 nohz_full; the scheduler and timer ticks interrupt the poll loop{}",
                if cfg.workers.idle_backoff {
                    " (idle_backoff = true: fine for a shared machine)"
                } else {
                    ""
                }
            ),
            format!(
                "on a dedicated appliance add `isolcpus={list} nohz_full={list} rcu_nocbs={list}` to \
                 GRUB_CMDLINE_LINUX in /etc/default/grub, run update-grub and reboot"
            ),
        );
    }
}

fn check_hugepages(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
    let meminfo = host.proc("meminfo").unwrap_or_default();
    let total = meminfo_field(&meminfo, "HugePages_Total").unwrap_or(0);
    let free = meminfo_field(&meminfo, "HugePages_Free").unwrap_or(0);
    let size = meminfo_field(&meminfo, "Hugepagesize").unwrap_or(2048) * 1024;
    let workers = cfg.workers.cores.len() as u64;
    let need = cfg.umem.bytes().div_ceil(size.max(1)) * workers;
    let what = format!(
        "{total} hugepages of {} reserved, {free} free; the UMEMs want {need} ({} worker(s) x {})",
        mib(size),
        workers,
        mib(cfg.umem.bytes())
    );
    let fix = format!(
        "reserve more: `sysctl vm.nr_hugepages={}` now, and at boot in a sysctl.d file \
         (install.sh installs 90-fiberlb-hugepages.conf: raise vm.nr_hugepages there)",
        total + need.saturating_sub(free) + 8
    );
    match cfg.umem.hugepages {
        HugePagesConfig::Off => r.push(
            Level::Info,
            "hugepages",
            format!("{what}; umem.hugepages = \"off\": UMEMs use ordinary pages"),
        ),
        _ if free >= need => r.push(Level::Ok, "hugepages", what),
        HugePagesConfig::On => r.push_fix(
            Level::Error,
            "hugepages",
            format!("{what}; umem.hugepages = \"on\" refuses to start without them"),
            fix,
        ),
        HugePagesConfig::Auto => r.push_fix(
            Level::Warn,
            "hugepages",
            format!("{what}; UMEMs fall back to ordinary pages (more TLB misses)"),
            fix,
        ),
    }
    let shm = cfg.shm.resolved_path();
    let huge_dir = host.proc("mounts").is_some_and(|m| {
        m.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(2) == Some(&"hugetlbfs")
                && shm
                    .parent()
                    .is_some_and(|p| p.starts_with(f.get(1).unwrap_or(&"")))
        })
    });
    r.push(
        Level::Info,
        "shm",
        format!(
            "shared-memory region {} ({})",
            shm.display(),
            if huge_dir {
                "in hugetlbfs"
            } else {
                "in ordinary pages"
            }
        ),
    );
}

/// The NIC's driver: the sysfs `device/driver` link for real devices, the ethtool
/// `ETHTOOL_GDRVINFO` query (live only) for virtual ones such as veth.
fn port_driver(host: &Host, ifname: &str) -> (Option<String>, Option<String>) {
    let dev = host.sys_root.join("class/net").join(ifname).join("device");
    let base = |p: &Path| {
        std::fs::read_link(p)
            .ok()
            .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    let bus = base(&dev);
    if let Some(d) = base(&dev.join("driver")) {
        return (Some(d), bus);
    }
    if host.live {
        if let Some((d, b)) = ethtool_drvinfo(ifname) {
            return (Some(d), bus.or(if b.is_empty() { None } else { Some(b) }));
        }
    }
    (None, bus)
}

/// `struct ifreq` with `ifr_data` (the only member SIOCETHTOOL uses), padded to its 40 bytes.
#[repr(C)]
struct IfreqData {
    name: [u8; 16],
    data: *mut u8,
    _pad: [u8; 16],
}

/// Driver name and bus address through `SIOCETHTOOL` / `ETHTOOL_GDRVINFO`.
fn ethtool_drvinfo(ifname: &str) -> Option<(String, String)> {
    if ifname.len() >= 16 {
        return None;
    }
    // struct ethtool_drvinfo: cmd (u32), driver[32], version[32], fw_version[32],
    // bus_info[32], erom_version[32], reserved2[12], five u32 counts = 196 bytes.
    let mut info = [0u8; 196];
    info[..4].copy_from_slice(&3u32.to_ne_bytes()); // ETHTOOL_GDRVINFO
    let mut req = IfreqData {
        name: [0; 16],
        data: info.as_mut_ptr(),
        _pad: [0; 16],
    };
    req.name[..ifname.len()].copy_from_slice(ifname.as_bytes());
    // SAFETY: plain socket(2); closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: SIOCETHTOOL reads the NUL-terminated name and writes at most
    // sizeof(struct ethtool_drvinfo) = 196 bytes through `data`, which points to `info`
    // (196 bytes), alive until after the call.
    let rc = unsafe { libc::ioctl(fd, 0x8946, &mut req as *mut IfreqData) };
    // SAFETY: `fd` is ours and closed once.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let cstr = |b: &[u8]| {
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    };
    let driver = cstr(&info[4..36]);
    let bus = cstr(&info[100..132]);
    if driver.is_empty() {
        None
    } else {
        Some((driver, bus))
    }
}

fn check_port(
    r: &mut Report,
    cfg: &DataplaneConfig,
    host: &Host,
    p: &PortConfig,
    kernel: Option<(u32, u32)>,
) {
    let ifname = &p.interface;
    let topic = format!("port {} ({ifname})", p.display_name());
    let netdir = format!("class/net/{ifname}");
    if ifname.is_empty() || ifname.contains('/') || !host.sys_root.join(&netdir).exists() {
        r.push_fix(
            Level::Error,
            topic,
            format!("interface {ifname:?} does not exist in this network namespace"),
            "check `ip link`; run fiberlb-dataplane (and doctor) in the interface's namespace",
        );
        return;
    }
    // IFF_UP (administrative state) decides; the carrier may lag a second behind it.
    let admin_up = host
        .sys(&format!("{netdir}/flags"))
        .and_then(|f| u32::from_str_radix(f.trim_start_matches("0x"), 16).ok())
        .is_none_or(|f| f & 1 != 0);
    let operstate = host.sys(&format!("{netdir}/operstate")).unwrap_or_default();
    if !admin_up {
        r.push_fix(
            Level::Warn,
            topic.clone(),
            "interface is administratively down",
            format!("ip link set {ifname} up"),
        );
    } else if operstate == "down" {
        r.push_fix(
            Level::Warn,
            topic.clone(),
            "interface is up but has no carrier",
            "check the cable, the switch port or the veth peer",
        );
    }
    // Driver and XDP support.
    let (driver, bus) = port_driver(host, ifname);
    let driver_name = driver.clone().unwrap_or_else(|| "unknown".into());
    let known = driver.as_deref().and_then(driver_xdp);
    let bus_desc = bus
        .as_deref()
        .map(|b| format!(" at {b}"))
        .unwrap_or_default();
    match known {
        None => {
            let level = if p.xdp_mode == XdpModeConfig::Native {
                Level::Warn
            } else {
                Level::Info
            };
            r.push_fix(
                level,
                topic.clone(),
                format!(
                    "driver {driver_name}{bus_desc}: not in fiberlb's list; native XDP and zero-copy unknown"
                ),
                "try xdp_mode = \"auto\": `run` logs which mode it attached in",
            );
        }
        Some(x) => {
            let zc_now = x
                .zero_copy_since
                .is_some_and(|v| kernel.is_none_or(|k| k >= v));
            let zc_desc = match x.zero_copy_since {
                None => "no AF_XDP zero-copy (copy mode)".to_string(),
                Some(v) if zc_now => format!("AF_XDP zero-copy (since {}.{})", v.0, v.1),
                Some(v) => format!("AF_XDP zero-copy only from Linux {}.{} on", v.0, v.1),
            };
            let native_desc = if x.native {
                "native XDP"
            } else {
                "no native XDP (generic/skb mode only)"
            };
            let what = format!("driver {driver_name}{bus_desc}: {native_desc}, {zc_desc}");
            if !x.native && p.xdp_mode == XdpModeConfig::Native {
                r.push_fix(
                    Level::Error,
                    topic.clone(),
                    format!("{what}; xdp_mode = \"native\" cannot attach"),
                    "set xdp_mode = \"auto\" (generic XDP, slow) or use a NIC with native XDP (ice, i40e, mlx5, ixgbe, igc)",
                );
            } else if !x.native {
                r.push_fix(
                    Level::Warn,
                    topic.clone(),
                    format!("{what}; fiberlb will attach in generic mode (every packet copied through an skb)"),
                    "for line rate use a NIC with native XDP (ice, i40e, mlx5_core, ixgbe, igc)",
                );
            } else if !zc_now && p.bind == BindConfig::Zerocopy {
                r.push_fix(
                    Level::Error,
                    topic.clone(),
                    format!("{what}; bind = \"zerocopy\" will be refused"),
                    "set bind = \"auto\" (copy mode) for this port",
                );
            } else {
                r.push(Level::Ok, topic.clone(), what);
            }
        }
    }
    // Queues vs workers.
    let rx_queues = std::fs::read_dir(host.sys_root.join(&netdir).join("queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count()
        })
        .unwrap_or(0);
    let workers = cfg.workers.cores.len();
    let want = p.queues.map_or(workers, |q| q as usize);
    if rx_queues < want {
        let fix = if known.is_some_and(|x| x.virtual_dev) {
            format!("recreate the veth with `numrxqueues {want} numtxqueues {want}`, or use fewer workers")
        } else {
            format!("ethtool -L {ifname} combined {want}, or use fewer workers")
        };
        r.push_fix(
            Level::Error,
            topic.clone(),
            format!(
                "{rx_queues} receive queue(s), the configuration needs {want} (one per worker)"
            ),
            fix,
        );
    } else {
        r.push(
            Level::Ok,
            topic.clone(),
            format!("{rx_queues} receive queue(s) for {want} worker queue(s){}",
                if rx_queues > want {
                    " — make RSS spread only over the served queues (`ethtool -X IF equal N`), or traffic on the others is never seen"
                } else { "" }),
        );
    }
    // MTU vs UMEM chunk: a frame must fit in a chunk after the kernel's headroom.
    if let Some(mtu) = host
        .sys(&format!("{netdir}/mtu"))
        .and_then(|m| m.parse::<u32>().ok())
    {
        let room = cfg.umem.chunk_size.saturating_sub(XDP_PACKET_HEADROOM);
        let frame = mtu + 18;
        if frame > room {
            r.push_fix(
                Level::Error,
                topic.clone(),
                format!(
                    "MTU {mtu}: frames of {frame} bytes do not fit a {}-byte UMEM chunk after {XDP_PACKET_HEADROOM} bytes of headroom",
                    cfg.umem.chunk_size
                ),
                if frame + XDP_PACKET_HEADROOM <= 4096 && cfg.umem.chunk_size < 4096 {
                    format!(
                        "ip link set {ifname} mtu {}, or umem.chunk_size = 4096",
                        room.saturating_sub(18)
                    )
                } else {
                    format!(
                        "ip link set {ifname} mtu {} (AF_XDP frames are one chunk: no jumbo frames)",
                        room.saturating_sub(18)
                    )
                },
            );
        } else if u32::from(cfg.forwarding.mtu) > mtu {
            r.push_fix(
                Level::Warn,
                topic.clone(),
                format!("interface MTU {mtu} is below forwarding.mtu {}", cfg.forwarding.mtu),
                "make forwarding.mtu equal to the smallest port MTU (it decides when tunnels send 'fragmentation needed')",
            );
        }
    }
    // IRQ affinity of the NIC's queues.
    let cores = &cfg.workers.cores;
    if known.is_some_and(|x| x.virtual_dev) {
        let threaded = host.sys(&format!("{netdir}/threaded")).unwrap_or_default();
        r.push(
            Level::Info,
            topic.clone(),
            format!(
                "virtual device: no IRQs; its receive work runs on the sending CPU{}",
                if threaded == "1" {
                    " (threaded NAPI on: pin the napi/* kthreads away from the workers)"
                } else {
                    ""
                }
            ),
        );
    } else {
        let interrupts = host.proc("interrupts").unwrap_or_default();
        let irqs = nic_irqs(&interrupts, &[ifname, bus.as_deref().unwrap_or("")]);
        if irqs.is_empty() {
            r.push(
                Level::Info,
                topic.clone(),
                "no IRQs found in /proc/interrupts under its name or PCI address",
            );
        } else {
            let mut on_workers = Vec::new();
            for (irq, _) in &irqs {
                let aff = host
                    .proc(&format!("irq/{irq}/smp_affinity_list"))
                    .map(|s| parse_cpu_list(&s))
                    .unwrap_or_default();
                if aff.iter().any(|c| cores.contains(c)) {
                    on_workers.push(*irq);
                }
            }
            if on_workers.is_empty() {
                r.push(
                    Level::Ok,
                    topic.clone(),
                    format!("{} IRQ(s), none allowed on a worker core", irqs.len()),
                );
            } else {
                r.push_fix(
                    Level::Warn,
                    topic.clone(),
                    format!(
                        "{} of {} IRQ(s) may fire on worker cores {cores:?} (IRQs {on_workers:?}): \
                         softirq work then competes with the poll loop",
                        on_workers.len(),
                        irqs.len()
                    ),
                    "stop irqbalance (systemctl disable --now irqbalance) and pin each queue's IRQ \
                     off the worker cores: echo 0 > /proc/irq/N/smp_affinity_list",
                );
            }
        }
    }
}

/// `dddd:bb:dd.f`.
fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}

/// A `driver = "dpdk"` port: the binary's feature, the device (a vdev, or a PCI NIC that must
/// be bound to vfio-pci, with an IOMMU).
fn check_dpdk_port(r: &mut Report, cfg: &DataplaneConfig, host: &Host, p: &PortConfig) {
    let topic = format!("port {} (dpdk)", p.display_name());
    if !cfg!(feature = "dpdk") {
        r.push_fix(
            Level::Error,
            topic.clone(),
            "driver = \"dpdk\", but this binary was built without the dpdk feature",
            "cargo build --release -p fiberlb-dataplane --features dpdk (DPDK from scripts/deps-dpdk.sh)",
        );
    }
    let Some(dev) = p.device.as_deref() else {
        r.push_fix(
            Level::Error,
            topic,
            "no `device`",
            "set device = a PCI address from [dpdk] pci_allow, or a vdev name from [dpdk] vdevs",
        );
        return;
    };
    if !is_pci_address(dev) {
        let vdev = cfg
            .dpdk
            .as_ref()
            .and_then(|d| d.vdevs.iter().find(|v| v.split(',').next() == Some(dev)));
        match vdev {
            None => r.push_fix(
                Level::Error,
                topic,
                format!("device {dev:?} is neither a PCI address nor a vdev of [dpdk] vdevs"),
                "add it to [dpdk] vdevs (e.g. \"net_af_xdp0,iface=eth1\") or use the NIC's PCI address",
            ),
            Some(v) => {
                let iface = v
                    .split(',')
                    .find_map(|kv| kv.strip_prefix("iface="))
                    .unwrap_or("");
                if !iface.is_empty() && !host.sys_root.join("class/net").join(iface).exists() {
                    r.push_fix(
                        Level::Error,
                        topic,
                        format!("vdev {dev} uses interface {iface:?}, which does not exist here"),
                        "check `ip link`; run in the interface's network namespace",
                    );
                } else {
                    r.push(
                        Level::Info,
                        topic,
                        format!("virtual DPDK device {v} (tests and veths; a NIC would be bound to vfio-pci)"),
                    );
                }
            }
        }
        return;
    }
    let pci = host.sys_root.join("bus/pci/devices").join(dev);
    if !pci.exists() {
        r.push_fix(
            Level::Error,
            topic,
            format!("PCI device {dev} does not exist"),
            "check `lspci -D` for the NIC's address",
        );
        return;
    }
    let driver = std::fs::read_link(pci.join("driver"))
        .ok()
        .and_then(|l| l.file_name().map(|n| n.to_string_lossy().into_owned()));
    match driver.as_deref() {
        Some("vfio-pci") => r.push(Level::Ok, topic.clone(), format!("{dev} is bound to vfio-pci")),
        Some(d) => r.push_fix(
            Level::Error,
            topic.clone(),
            format!("{dev} is bound to the kernel driver {d}; DPDK needs vfio-pci"),
            format!("modprobe vfio-pci && dpdk-devbind.py -b vfio-pci {dev} (the NIC leaves the kernel: keep management on another one)"),
        ),
        None => r.push_fix(
            Level::Error,
            topic.clone(),
            format!("{dev} is bound to no driver"),
            format!("modprobe vfio-pci && dpdk-devbind.py -b vfio-pci {dev}"),
        ),
    }
    let iommu = std::fs::read_dir(host.sys_root.join("kernel/iommu_groups"))
        .map(|d| d.count() > 0)
        .unwrap_or(false);
    if !iommu {
        r.push_fix(
            Level::Warn,
            topic,
            "no IOMMU groups: vfio-pci needs an IOMMU (or the unsafe no-IOMMU mode)",
            "enable VT-d/AMD-Vi in the firmware and boot with intel_iommu=on iommu=pt (or amd_iommu=on)",
        );
    }
}

fn check_dpdk_memory(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
    let no_huge = cfg.dpdk.as_ref().is_some_and(|d| d.no_huge);
    let meminfo = host.proc("meminfo").unwrap_or_default();
    let free = meminfo_field(&meminfo, "HugePages_Free").unwrap_or(0);
    if no_huge {
        r.push(
            Level::Info,
            "dpdk memory",
            "[dpdk] no_huge = true: ordinary pages (fine for tests, slow for traffic)",
        );
    } else if free == 0 {
        r.push_fix(
            Level::Error,
            "dpdk memory",
            "DPDK needs hugepages and none are free",
            "sysctl vm.nr_hugepages=512 (and in a sysctl.d file for boot), or [dpdk] no_huge = true for tests",
        );
    } else {
        r.push(
            Level::Ok,
            "dpdk memory",
            format!("{free} hugepages free for the EAL"),
        );
    }
}

fn check_vfio(r: &mut Report, host: &Host) {
    let dir = host.sys_root.join("bus/pci/drivers/vfio-pci");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        r.push(
            Level::Info,
            "dpdk",
            "vfio-pci is not loaded: no NIC is bound to DPDK",
        );
        return;
    };
    let mut devs: Vec<String> = entries
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.len() == 12 && n.as_bytes().get(4) == Some(&b':'))
        .collect();
    devs.sort();
    if devs.is_empty() {
        r.push(
            Level::Info,
            "dpdk",
            "vfio-pci is loaded, no device is bound to it",
        );
    } else {
        r.push_fix(
            Level::Info,
            "dpdk",
            format!(
                "bound to vfio-pci (DPDK): {}; these NICs have no kernel interface, the AF_XDP \
                 ports cannot use them",
                devs.join(", ")
            ),
            "use them with the DPDK backend (cargo feature `dpdk`), or give them back to the kernel: \
             dpdk-devbind.py -b <kernel driver> <address>",
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v657"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic\n"), Some((5, 4)));
        assert_eq!(kernel_version("garbage"), None);
        assert_eq!(kernel_version(""), None);
    }

    #[test]
    fn cpu_lists_and_cmdline() {
        assert_eq!(parse_cpu_list("0-2,5\n"), vec![0, 1, 2, 5]);
        assert_eq!(parse_cpu_list("3-1,x,7"), vec![7]);
        let cmd = "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=domain,managed_irq,2-3 nohz_full=2,3 quiet";
        assert_eq!(cmdline_cpus(cmd, "isolcpus"), vec![2, 3]);
        assert_eq!(cmdline_cpus(cmd, "nohz_full"), vec![2, 3]);
        assert!(cmdline_cpus(cmd, "rcu_nocbs").is_empty());
        // `isolcpus_x=` is another parameter.
        assert!(cmdline_cpus("isolcpus_x=1", "isolcpus").is_empty());
    }

    #[test]
    fn irqs_by_name_and_pci_address() {
        let text = "           CPU0       CPU1\n\
             24:          0        100  IR-PCI-MSI 1048576-edge      eth1-TxRx-0\n\
             25:          0        100  IR-PCI-MSI 1048577-edge      eth10-TxRx-0\n\
             26:          5          0  IR-PCI-MSI 1048578-edge      mlx5_comp0@pci:0000:3b:00.0\n\
            NMI:          0          0   Non-maskable interrupts\n";
        let v = nic_irqs(text, &["eth1", "0000:3b:00.0"]);
        assert_eq!(
            v,
            vec![
                (24, "eth1-TxRx-0".to_string()),
                (26, "mlx5_comp0@pci:0000:3b:00.0".to_string())
            ]
        );
        assert!(nic_irqs(text, &["eth2", ""]).is_empty());
    }

    #[test]
    fn meminfo_and_caps() {
        let m = "MemTotal:  4000 kB\nHugePages_Total:      64\nHugePages_Free:       60\nHugepagesize:       2048 kB\n";
        assert_eq!(meminfo_field(m, "HugePages_Free"), Some(60));
        assert_eq!(meminfo_field(m, "Hugepagesize"), Some(2048));
        assert_eq!(meminfo_field(m, "HugePages_Rsvd"), None);
        let caps = effective_caps("Name:\tx\nCapEff:\t000001ffffffffff\n").unwrap();
        assert!(has_cap(caps, CAP_BPF) && has_cap(caps, CAP_NET_ADMIN));
        let caps = effective_caps("CapEff:\t0000000000003000\n").unwrap();
        assert!(has_cap(caps, CAP_NET_ADMIN) && has_cap(caps, CAP_NET_RAW));
        assert!(!has_cap(caps, CAP_IPC_LOCK));
    }

    #[test]
    fn pci_addresses() {
        assert!(is_pci_address("0000:3b:00.0"));
        assert!(!is_pci_address("net_af_xdp0"));
        assert!(!is_pci_address("0000:3b:00:0"));
        assert!(!is_pci_address("0000:3g:00.0"));
    }

    #[test]
    fn dpdk_ports() {
        let dir = std::env::temp_dir().join(format!("fiberlb-doctor-dpdk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let host = fake_host(&dir);
        // 0000:5e:00.1 is bound to vfio-pci in the fake tree; eth1's NIC (0000:3b:00.0) to ice.
        let vfio_dev = host.sys_root.join("bus/pci/devices/0000:5e:00.1");
        std::fs::create_dir_all(&vfio_dev).unwrap();
        std::os::unix::fs::symlink(
            host.sys_root.join("bus/pci/drivers/vfio-pci"),
            vfio_dev.join("driver"),
        )
        .unwrap();
        let ice_dev = host.sys_root.join("bus/pci/devices/0000:3b:00.0");
        std::fs::create_dir_all(ice_dev.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(
            host.sys_root.join("devices/pci0000:00/0000:3b:00.0"),
            &ice_dev,
        )
        .unwrap();
        let cfg = config(
            "[[ports]]\nname = \"c\"\ndriver = \"dpdk\"\ndevice = \"0000:5e:00.1\"\nrole = \"client\"\n\
             [[ports]]\nname = \"b\"\ndriver = \"dpdk\"\ndevice = \"0000:3b:00.0\"\nrole = \"backend\"\n\
             [workers]\ncores = [1]\n[dpdk]\ncores = [0]\npci_allow = [\"0000:5e:00.1\", \"0000:3b:00.0\"]\n",
        );
        let r = diagnose(&cfg, &host);
        let text = r.render();
        assert!(text.contains("0000:5e:00.1 is bound to vfio-pci"), "{text}");
        assert!(
            text.contains("0000:3b:00.0 is bound to the kernel driver ice; DPDK needs vfio-pci"),
            "{text}"
        );
        assert!(
            text.contains("dpdk-devbind.py -b vfio-pci 0000:3b:00.0"),
            "{text}"
        );
        assert!(text.contains("no IOMMU groups"), "{text}");
        assert!(
            text.contains("DPDK needs hugepages and none are free"),
            "{text}"
        );
        assert!(!r.can_run());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn driver_table() {
        let veth = driver_xdp("veth").unwrap();
        assert!(veth.native && veth.zero_copy_since.is_none() && veth.virtual_dev);
        let ice = driver_xdp("ice").unwrap();
        assert!(ice.native && ice.zero_copy_since.is_some() && !ice.virtual_dev);
        assert!(!driver_xdp("e1000e").unwrap().native);
        assert!(driver_xdp("somethingelse").is_none());
    }

    /// A fake /proc and /sys: a bare-metal box with an ice NIC (4 queues, IRQs on every core),
    /// a NIC bound to vfio-pci, no hugepages and no isolated cores.
    fn fake_host(dir: &Path) -> Host {
        let proc_root = dir.join("proc");
        let sys_root = dir.join("sys");
        let w = |rel: &Path, s: &str| {
            std::fs::create_dir_all(rel.parent().unwrap()).unwrap();
            std::fs::write(rel, s).unwrap();
        };
        w(&proc_root.join("sys/kernel/osrelease"), "6.1.0-18-amd64\n");
        w(
            &proc_root.join("cpuinfo"),
            "processor : 0\nflags : fpu sse\n",
        );
        w(&proc_root.join("cmdline"), "root=/dev/sda1 quiet\n");
        w(
            &proc_root.join("meminfo"),
            "HugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n",
        );
        w(&proc_root.join("mounts"), "sysfs /sys sysfs rw 0 0\n");
        w(
            &proc_root.join("interrupts"),
            " 40: 1 2 3 4 IR-PCI-MSI eth1-TxRx-0\n 41: 1 2 3 4 IR-PCI-MSI eth1-TxRx-1\n",
        );
        w(&proc_root.join("irq/40/smp_affinity_list"), "0-3\n");
        w(&proc_root.join("irq/41/smp_affinity_list"), "0\n");
        w(&sys_root.join("devices/system/cpu/online"), "0-3\n");
        let net = sys_root.join("class/net/eth1");
        w(&net.join("operstate"), "up\n");
        w(&net.join("mtu"), "1500\n");
        for q in 0..4 {
            std::fs::create_dir_all(net.join(format!("queues/rx-{q}"))).unwrap();
        }
        let pci = sys_root.join("devices/pci0000:00/0000:3b:00.0");
        std::fs::create_dir_all(&pci).unwrap();
        let drv = sys_root.join("bus/pci/drivers/ice");
        std::fs::create_dir_all(&drv).unwrap();
        std::os::unix::fs::symlink(&pci, net.join("device")).unwrap();
        std::os::unix::fs::symlink(&drv, pci.join("driver")).unwrap();
        let vfio = sys_root.join("bus/pci/drivers/vfio-pci");
        std::fs::create_dir_all(vfio.join("0000:5e:00.1")).unwrap();
        std::fs::write(vfio.join("new_id"), "").unwrap();
        Host {
            proc_root,
            sys_root,
            live: false,
        }
    }

    fn config(text: &str) -> DataplaneConfig {
        DataplaneConfig::parse(text, "test.toml").unwrap()
    }

    #[test]
    fn fake_bare_metal_box() {
        let dir = std::env::temp_dir().join(format!("fiberlb-doctor-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let host = fake_host(&dir);
        let cfg = config(
            "[[ports]]\ninterface = \"eth1\"\nrole = \"both\"\nbind = \"zerocopy\"\n\
             [workers]\ncores = [1, 2]\n[umem]\nframes = 4096\nchunk_size = 2048\nhugepages = \"on\"\n",
        );
        let r = diagnose(&cfg, &host);
        let text = r.render();
        println!("{text}");
        // ice on 6.1 has native XDP and zero-copy: the port line is fine.
        let port: Vec<_> = r.about("port eth1").collect();
        assert!(
            port.iter().any(|f| f.level == Level::Ok
                && f.what
                    .contains("driver ice at 0000:3b:00.0: native XDP, AF_XDP zero-copy")),
            "{text}"
        );
        // Queue 0's IRQ may fire on cores 1-2 (the workers): a warning with a fix.
        assert!(port
            .iter()
            .any(|f| f.level == Level::Warn && f.what.contains("IRQs [40]")));
        // hugepages = "on" without any reserved: an error, so doctor fails.
        let hp: Vec<_> = r.about("hugepages").collect();
        assert_eq!(hp[0].level, Level::Error);
        assert!(hp[0].fix.as_deref().unwrap().contains("vm.nr_hugepages"));
        // Not isolated, busy-polling: a warning naming the kernel parameters.
        let iso: Vec<_> = r.about("isolation").collect();
        assert_eq!(iso[0].level, Level::Warn);
        assert!(iso[0]
            .fix
            .as_deref()
            .unwrap()
            .contains("isolcpus=1,2 nohz_full=1,2"));
        assert!(r
            .about("dpdk")
            .any(|f| f.what.contains("0000:5e:00.1") && !f.what.contains("new_id")));
        assert!(r.about("machine").any(|f| f.what.starts_with("bare metal")));
        assert!(!r.can_run());
        assert!(text.contains("cannot run here"));

        // Fewer queues than workers, an interface that is missing, an MTU too big for the chunk.
        let cfg = config(
            "[[ports]]\ninterface = \"eth1\"\nrole = \"client\"\nqueues = 8\n\
             [[ports]]\ninterface = \"eth9\"\nrole = \"backend\"\n\
             [workers]\ncores = [1]\n[umem]\nchunk_size = 2048\nhugepages = \"off\"\n",
        );
        std::fs::write(host.sys_root.join("class/net/eth1/mtu"), "9000\n").unwrap();
        let r = diagnose(&cfg, &host);
        let text = r.render();
        assert!(
            text.contains("4 receive queue(s), the configuration needs 8"),
            "{text}"
        );
        assert!(text.contains("ethtool -L eth1 combined 8"), "{text}");
        assert!(text.contains("\"eth9\" does not exist"), "{text}");
        assert!(text.contains("MTU 9000"), "{text}");
        assert!(!r.can_run());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
