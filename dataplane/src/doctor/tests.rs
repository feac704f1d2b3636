//! Tests of the doctor's checks on fake /proc and /sys trees.

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
    let cmd =
        "BOOT_IMAGE=/vmlinuz root=/dev/sda1 isolcpus=domain,managed_irq,2-3 nohz_full=2,3 quiet";
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
