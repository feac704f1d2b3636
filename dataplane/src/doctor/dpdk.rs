//! Checks for `driver = "dpdk"` ports: the device (vdev, or a PCI NIC bound to vfio-pci with
//! an IOMMU), DPDK's hugepage memory, vfio.

use super::*;

/// A `driver = "dpdk"` port: the binary's feature, the device (a vdev, or a PCI NIC that must
/// be bound to vfio-pci, with an IOMMU).
pub(super) fn check_dpdk_port(r: &mut Report, cfg: &DataplaneConfig, host: &Host, p: &PortConfig) {
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

pub(super) fn check_dpdk_memory(r: &mut Report, cfg: &DataplaneConfig, host: &Host) {
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

pub(super) fn check_vfio(r: &mut Report, host: &Host) {
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
