//! Checks of the machine as a whole: kernel, privileges, BPF and AF_XDP probes, bpffs,
//! RLIMIT_MEMLOCK, cores (isolation, IRQs), hugepages and the shared-memory region.

use super::*;

pub(super) fn check_machine(r: &mut Report, host: &Host) {
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

pub(super) fn check_kernel(r: &mut Report, host: &Host) -> Option<(u32, u32)> {
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

pub(super) fn check_privileges(r: &mut Report, host: &Host, kernel: Option<(u32, u32)>) {
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
pub(super) fn probe_bpf(r: &mut Report) {
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
pub(super) fn probe_af_xdp(r: &mut Report) {
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

pub(super) fn check_bpffs(r: &mut Report, host: &Host) {
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

pub(super) fn check_memlock(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
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

pub(super) fn online_cpus(host: &Host) -> Vec<usize> {
    if host.live {
        return crate::cpus::available_cores();
    }
    host.sys("devices/system/cpu/online")
        .map(|s| parse_cpu_list(&s))
        .unwrap_or_default()
}

pub(super) fn check_cores(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
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

pub(super) fn check_hugepages(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
    let meminfo = host.proc("meminfo").unwrap_or_default();
    let total = meminfo_field(&meminfo, "HugePages_Total").unwrap_or(0);
    let free = meminfo_field(&meminfo, "HugePages_Free").unwrap_or(0);
    let size = meminfo_field(&meminfo, "Hugepagesize").unwrap_or(2048) * 1024;
    let workers = cfg.workers.cores.len() as u64;
    let need = umem_hugepages_needed(cfg, size);
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
