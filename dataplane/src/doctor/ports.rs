//! Checks of each AF_XDP port: the interface, its driver and XDP support, queues vs workers,
//! MTU vs UMEM chunks, IRQ affinity.

use super::*;

/// The NIC's driver: the sysfs `device/driver` link for real devices, the ethtool
/// `ETHTOOL_GDRVINFO` query (live only) for virtual ones such as veth.
pub(super) fn port_driver(host: &Host, ifname: &str) -> (Option<String>, Option<String>) {
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
pub(super) struct IfreqData {
    pub(super) name: [u8; 16],
    pub(super) data: *mut u8,
    pub(super) _pad: [u8; 16],
}

/// Driver name and bus address through `SIOCETHTOOL` / `ETHTOOL_GDRVINFO`.
pub(super) fn ethtool_drvinfo(ifname: &str) -> Option<(String, String)> {
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

pub(super) fn check_port(
    r: &mut Report,
    cfg: &DataplaneConfig,
    host: &Host,
    p: &PortConfig,
    kernel: Option<(u32, u32)>,
) {
    let ifname = &p.interface;
    let topic = format!("port {} ({ifname})", p.display_name());
    let netdir = format!("class/net/{ifname}");
    if !host.interface_exists(ifname) {
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
    let rx_queues = host.rx_queues(ifname);
    let want = queues_wanted(cfg, p);
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
pub(super) fn is_pci_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 12
        && b[4] == b':'
        && b[7] == b':'
        && b[10] == b'.'
        && b.iter()
            .enumerate()
            .all(|(i, c)| matches!(i, 4 | 7 | 10) || c.is_ascii_hexdigit())
}
