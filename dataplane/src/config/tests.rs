//! Tests of [`super`].

use super::*;

#[test]
fn parses_and_reports_lines() {
    let c = DataplaneConfig::parse(
            "[forwarding]\nhash_seed = 5\nclient_gateway_mac = \"02:00:00:00:01:fe\"\n[timeouts]\nudp = 30\n",
            "t.toml",
        )
        .unwrap();
    let p = c.pipeline();
    assert_eq!(p.hash_seed, 5);
    assert_eq!(p.client_gateway_mac, Some([2, 0, 0, 0, 1, 0xfe]));
    assert_eq!(p.timeouts.udp_ms, 30_000);
    let e = DataplaneConfig::parse("[forwarding]\n\nmtux = 3\n", "t.toml").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("line 3") && msg.contains("mtux"), "{msg}");
    let e = DataplaneConfig::parse("[forwarding]\nclient_gateway_mac = \"zz\"\n", "t.toml")
        .unwrap_err();
    assert!(
        e.to_string().contains("line 2") && e.to_string().contains("not a MAC"),
        "{e}"
    );
    let e = DataplaneConfig::parse("[timeouts]\nudp = 0\n", "t.toml").unwrap_err();
    assert!(e.to_string().contains("timeouts.udp"), "{e}");
}

const NODE: &str = r#"
[[ports]]
name = "c"
interface = "lo"
role = "client"
gateway_mac = "02:00:00:00:01:fe"
mac = "02:00:00:00:01:01"

[[ports]]
interface = "eth9"
role = "backend"
xdp_mode = "native"
bind = "copy"
gateway_mac = "02:00:00:00:02:fe"
mac = "02:00:00:00:02:01"

[workers]
cores = [0, 1]
idle_backoff = true

[shm]
path = "/dev/shm/x"

[umem]
frames = 4096
chunk_size = 2048
fill_ring = 512
hugepages = "off"
"#;

#[test]
fn ports_workers_umem_and_role_macs() {
    let c = DataplaneConfig::parse(NODE, "n.toml").unwrap();
    assert_eq!(c.ports.len(), 2);
    assert_eq!(c.ports[1].display_name(), "eth9");
    assert_eq!(c.ports[1].xdp_mode, XdpModeConfig::Native);
    assert_eq!(BindMode::from(c.ports[1].bind), BindMode::Copy);
    assert_eq!(c.workers.cores, vec![0, 1]);
    assert!(c.workers.idle_backoff);
    assert_eq!(c.workers.burst, 32);
    assert_eq!(c.shm.resolved_path(), PathBuf::from("/dev/shm/x"));
    assert_eq!(HugePages::from(c.umem.hugepages), HugePages::Never);
    assert_eq!(c.umem.bytes(), 4096 * 2048);
    assert_eq!(c.umem.fill_ring, 512);
    assert_eq!(c.port_roles(), Some((0, 1)));
    let p = c.pipeline_with_ports().unwrap();
    assert_eq!(p.client_side_mac, Some([2, 0, 0, 0, 1, 1]));
    assert_eq!(p.backend_side_mac, Some([2, 0, 0, 0, 2, 1]));
    assert_eq!(p.client_gateway_mac, Some([2, 0, 0, 0, 1, 0xfe]));
    assert_eq!(p.backend_gateway_mac, Some([2, 0, 0, 0, 2, 0xfe]));
    // [forwarding] wins over the ports.
    let c = DataplaneConfig::parse(
        &format!("[forwarding]\nbackend_gateway_mac = \"02:00:00:00:00:01\"\n{NODE}"),
        "n.toml",
    )
    .unwrap();
    assert_eq!(
        c.pipeline_with_ports().unwrap().backend_gateway_mac,
        Some([2, 0, 0, 0, 0, 1])
    );
}

#[test]
fn own_mac_from_sysfs_or_a_clear_error() {
    let c = DataplaneConfig::parse("[[ports]]\ninterface = \"lo\"\nrole = \"both\"\n", "n.toml")
        .unwrap();
    assert_eq!(c.port_roles(), Some((0, 0)));
    if Path::new("/sys/class/net/lo/address").exists() {
        let p = c.pipeline_with_ports().unwrap();
        assert_eq!(p.client_side_mac, Some([0; 6]));
    }
    let c = DataplaneConfig::parse(
        "[[ports]]\ninterface = \"fe2e-nonexist\"\nrole = \"both\"\n",
        "n.toml",
    )
    .unwrap();
    let e = c.pipeline_with_ports().unwrap_err().to_string();
    assert!(e.contains("fe2e-nonexist") && e.contains("mac ="), "{e}");
}

#[test]
fn node_errors_name_the_problem() {
    for (text, want) in [
            ("[[ports]]\ninterface = \"a\"\nrole = \"sideways\"\n", "line 3"),
            ("[[ports]]\ninterface = \"a\"\nrole = \"client\"\n", "exactly one port"),
            (
                "[[ports]]\ninterface = \"a\"\nrole = \"both\"\n[[ports]]\ninterface = \"b\"\nrole = \"backend\"\n",
                "found 1 and 2",
            ),
            (
                "[[ports]]\ninterface = \"a\"\nrole = \"both\"\nqueues = 1\n[workers]\ncores = [0, 1]\n",
                "queues = 1",
            ),
            ("[workers]\ncores = []\n", "workers.cores is empty"),
            ("[workers]\ncores = [1, 1]\n", "twice"),
            ("[workers]\nburst = 64\n", "workers.burst"),
            ("[umem]\nchunk_size = 1000\n", "umem.chunk_size"),
            ("[umem]\nframes = 10\n", "umem.frames"),
            ("[umem]\nfill_ring = 1000\n", "umem.fill_ring"),
            ("[umem]\nfill_ring = 32\n", "umem.fill_ring"),
            ("[umem]\nhugepages = \"maybe\"\n", "line 2"),
            ("[[ports]]\ninterface = \"a\"\nrole = \"both\"\ncolour = 1\n", "colour"),
        ] {
            let e = DataplaneConfig::parse(text, "n.toml").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
}

const DPDK_NODE: &str = r#"
[[ports]]
name = "client"
driver = "dpdk"
device = "net_af_xdp0"
role = "client"
gateway_mac = "02:00:00:00:01:fe"

[[ports]]
driver = "dpdk"
device = "0000:01:00.0"
role = "backend"
mac = "02:00:00:00:02:01"

[workers]
cores = [1]

[dpdk]
cores = [0]
memory_mb = 512
vdevs = ["net_af_xdp0,iface=eth0,start_queue=0,queue_count=1"]
pci_allow = ["0000:01:00.0"]
file_prefix = "lb1"
log_level = "notice"
mbufs = 8191
"#;

#[test]
fn dpdk_ports_and_section() {
    let c = DataplaneConfig::parse(DPDK_NODE, "n.toml").unwrap();
    assert_eq!(c.driver(), PortDriver::Dpdk);
    assert_eq!(c.ports[0].device.as_deref(), Some("net_af_xdp0"));
    assert_eq!(c.ports[1].display_name(), "0000:01:00.0");
    let d = c.dpdk.as_ref().unwrap();
    assert_eq!(d.cores, vec![0]);
    assert_eq!(d.memory_mb, Some(512));
    assert!(d.in_memory && !d.no_huge);
    assert_eq!(d.pci_allow, vec!["0000:01:00.0".to_string()]);
    assert_eq!(d.file_prefix.as_deref(), Some("lb1"));
    assert_eq!((d.mbufs, d.rx_desc, d.tx_desc), (8191, 1024, 1024));
    // Own MACs: the device's unless configured; gateways from the ports.
    let p = c.pipeline_with_port_macs(|i| [2, 0, 0, 0, 9, i as u8]);
    assert_eq!(p.client_side_mac, Some([2, 0, 0, 0, 9, 0]));
    assert_eq!(p.backend_side_mac, Some([2, 0, 0, 0, 2, 1]));
    assert_eq!(p.client_gateway_mac, Some([2, 0, 0, 0, 1, 0xfe]));
    assert_eq!(p.backend_gateway_mac, None);
    // AF_XDP configurations keep their default driver and need no [dpdk].
    let c = DataplaneConfig::parse(NODE, "n.toml").unwrap();
    assert_eq!(c.driver(), PortDriver::Afxdp);
    assert!(c.dpdk.is_none());
}

#[cfg(feature = "dpdk")]
#[test]
fn dpdk_section_gives_the_eal_arguments() {
    let c = DataplaneConfig::parse(DPDK_NODE, "n.toml").unwrap();
    let args = c.dpdk.unwrap().eal_config().args();
    for want in [
        "--lcores=0@(0)",
        "--file-prefix=lb1",
        "--in-memory",
        "-m512",
        "-a0000:01:00.0",
        "--vdev=net_af_xdp0,iface=eth0,start_queue=0,queue_count=1",
        "--log-level=notice",
    ] {
        assert!(
            args.iter().any(|a| a == want),
            "{want} missing from {args:?}"
        );
    }
    assert!(!args.iter().any(|a| a == "--no-pci"), "{args:?}");
}

#[test]
fn dpdk_example_file_parses() {
    let c = DataplaneConfig::parse(
        include_str!("../../../examples/dataplane-dpdk.toml"),
        "examples/dataplane-dpdk.toml",
    )
    .unwrap();
    assert_eq!(c.driver(), PortDriver::Dpdk);
    assert_eq!(c.port_roles(), Some((0, 1)));
    assert_eq!(c.dpdk.unwrap().pci_allow.len(), 2);
}

#[test]
fn dpdk_errors_name_the_problem() {
    let sec = "[dpdk]\nvdevs = [\"net_null0\", \"net_null1\"]\n";
    for (text, want) in [
            (
                format!("[[ports]]\ndriver = \"dpdk\"\nrole = \"both\"\n{sec}"),
                "needs `device",
            ),
            (
                format!("[[ports]]\ndriver = \"dpdk\"\ndevice = \"net_null7\"\nrole = \"both\"\n{sec}"),
                "neither a vdev",
            ),
            (
                "[[ports]]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\nrole = \"both\"\n".into(),
                "need a [dpdk] section",
            ),
            (
                format!("[[ports]]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\nrole = \"client\"\n\
                         [[ports]]\ninterface = \"eth1\"\nrole = \"backend\"\n{sec}"),
                "mix driver",
            ),
            (
                format!("[[ports]]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\nrole = \"client\"\n\
                         [[ports]]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\nrole = \"backend\"\n{sec}"),
                "two [[ports]]",
            ),
            (
                "[[ports]]\ninterface = \"a\"\ndevice = \"net_null0\"\nrole = \"both\"\n".into(),
                "is for driver = \"dpdk\"",
            ),
            ("[[ports]]\nrole = \"both\"\n".into(), "needs `interface"),
            (
                "[[ports]]\ninterface = \"a\"\ndriver = \"vpp\"\nrole = \"both\"\n".into(),
                "line 3",
            ),
            (format!("{sec}mbufs = 100\n"), "dpdk.mbufs = 100"),
            (format!("{sec}rx_desc = 8\n"), "dpdk.rx_desc"),
            (
                format!("[[ports]]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\nrole = \"both\"\n\
                         [workers]\ncores = [0, 1]\n{sec}mbufs = 2048\n"),
                "raise mbufs",
            ),
            (format!("{sec}hugepages = 1\n"), "hugepages"),
        ] {
            let e = DataplaneConfig::parse(&text, "n.toml").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
}

#[test]
fn host_interface_key() {
    let base = "[[ports]]\ndriver = \"dpdk\"\ndevice = \"net_null0\"\nrole = \"both\"\n";
    let sec = "[dpdk]\nvdevs = [\"net_null0\", \"net_null1\"]\n";
    let c = DataplaneConfig::parse(&format!("{base}{sec}"), "n.toml").unwrap();
    assert_eq!(c.ports[0].host_interface, None);
    assert!(!c.pipeline().host_path, "default: no host path");
    let c = DataplaneConfig::parse(
        &format!("{base}host_interface = \"fbtap0\"\n{sec}"),
        "n.toml",
    )
    .unwrap();
    assert_eq!(c.ports[0].host_interface.as_deref(), Some("fbtap0"));
    assert!(c.pipeline().host_path);
    for (text, want) in [
            (
                format!("{base}host_interface = \"a-very-long-name0\"\n{sec}"),
                "line 5",
            ),
            (format!("{base}host_interface = \"\"\n{sec}"), "1-15 characters"),
            (format!("{base}host_interface = \"tap,0\"\n{sec}"), "contains ','"),
            (format!("{base}host_interface = \"a b\"\n{sec}"), "line 5"),
            (format!("{base}host_interface = \"..\"\n{sec}"), "not a valid"),
            (format!("{base}host_interface = 3\n{sec}"), "line 5"),
            (
                "[[ports]]\ninterface = \"a\"\nrole = \"both\"\nhost_interface = \"t0\"\n".into(),
                "is for driver = \"dpdk\"",
            ),
            (
                format!("{base}host_interface = \"t0\"\n[[ports]]\ndriver = \"dpdk\"\n\
                         device = \"net_null1\"\nrole = \"backend\"\nhost_interface = \"t0\"\n{sec}")
                .replace("role = \"both\"", "role = \"client\""),
                "two [[ports]]",
            ),
            (
                format!("{base}interface = \"eth1\"\nhost_interface = \"eth1\"\n{sec}"),
                "pick a new name",
            ),
        ] {
            let e = DataplaneConfig::parse(&text, "n.toml").unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
    assert!(check_interface_name("fbtap0").is_ok());
    assert!(check_interface_name("fb_tap.1-x").is_ok());
    assert!(check_interface_name("123456789012345").is_ok());
    assert!(check_interface_name("1234567890123456").is_err());
    assert!(check_interface_name("tap=1").is_err());
    assert!(check_interface_name("t/1").is_err());
}

#[test]
fn mac_parsing() {
    assert_eq!(
        parse_mac("02:aa:00:00:01:ff"),
        Some([2, 0xaa, 0, 0, 1, 0xff])
    );
    assert_eq!(parse_mac("02:aa:00:00:01"), None);
    assert_eq!(parse_mac("02:aa:00:00:01:ff:00"), None);
    assert_eq!(parse_mac("2:aa:00:00:01:ff"), None);
}
