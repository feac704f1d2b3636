//! Root-only smoke test of the AF_XDP backend on real veths in network namespaces the test
//! creates (and always deletes, also on panic):
//!
//! ```text
//!  ns b (client) [vb 10.77.0.2] ── [va 10.77.0.1] ns a (fiberlb) [vx 10.78.0.1] ── [vc 10.78.0.2] ns c (backend, VIP on lo)
//! ```
//! The XDP program runs on `va`; one UMEM is shared by the AF_XDP sockets on `va` and `vx`.
//! - UDP to VIP:9999 is redirected to the socket on `va`, reflected (MACs, IPs, ports swapped)
//!   and must come back to the client's socket;
//! - UDP to VIP:9997 is received on `va` and transmitted on `vx` (frame forwarded between two
//!   sockets of one UMEM) to the backend, which holds the VIP on `lo`;
//! - UDP to the interface address on a non-VIP port and ping reach ns a's kernel (XDP_PASS);
//! - a missing interface and an out-of-range queue give their clear errors;
//! - the program is detached when dropped.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fiberlb_dataplane::nic::afxdp::{
    AfXdpError, AttachedMode, HugePages, Umem, UmemConfig, XdpCounters, XdpMode, XdpProgram,
    XskConfig, XskPort, XskStats,
};
use fiberlb_dataplane::packet::Desc;

const VIP: Ipv4Addr = Ipv4Addr::new(10, 79, 0, 10);
const REFLECT_PORT: u16 = 9999;
const FORWARD_PORT: u16 = 9997;
const PLAIN_PORT: u16 = 9998;
const MAC_VA: [u8; 6] = [0x02, 0xf5, 0, 0, 0x0a, 0x01];
const MAC_VB: [u8; 6] = [0x02, 0xf5, 0, 0, 0x0b, 0x01];
const MAC_VX: [u8; 6] = [0x02, 0xf5, 0, 0, 0x0a, 0x02];
const MAC_VC: [u8; 6] = [0x02, 0xf5, 0, 0, 0x0c, 0x01];

use fiberlb_tests::is_root;

fn mac(m: [u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn run(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {args:?}: {e} (install with scripts/deps-afxdp.sh)")
        });
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Deletes the namespaces (and with them the veths) when dropped, also on panic.
struct Namespaces(Vec<String>);

impl Drop for Namespaces {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// Runs `f` on a new thread that has entered network namespace `ns`; sockets it creates stay in
/// that namespace wherever they are used later.
fn in_netns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/var/run/netns/{ns}");
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: setns on a valid namespace fd; CLONE_NEWNET only moves this thread.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
}

struct Topology {
    a: String,
    b: String,
    c: String,
    va: String,
    vx: String,
    _guard: Namespaces,
}

fn topology(tag: &str) -> Topology {
    let pid = std::process::id();
    let (a, b, c) = (
        format!("fxs-{pid}-{tag}a"),
        format!("fxs-{pid}-{tag}b"),
        format!("fxs-{pid}-{tag}c"),
    );
    let guard = Namespaces(vec![a.clone(), b.clone(), c.clone()]);
    let (va, vb, vx, vc) = ("fxva".to_string(), "fxvb", "fxvx".to_string(), "fxvc");
    for ns in [&a, &b, &c] {
        run(&["ip", "netns", "add", ns]);
        run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    run(&[
        "ip",
        "-n",
        &a,
        "link",
        "add",
        &va,
        "address",
        &mac(MAC_VA),
        "type",
        "veth",
        "peer",
        "name",
        vb,
        "address",
        &mac(MAC_VB),
        "netns",
        &b,
    ]);
    run(&[
        "ip",
        "-n",
        &a,
        "link",
        "add",
        &vx,
        "address",
        &mac(MAC_VX),
        "type",
        "veth",
        "peer",
        "name",
        vc,
        "address",
        &mac(MAC_VC),
        "netns",
        &c,
    ]);
    run(&["ip", "-n", &a, "addr", "add", "10.77.0.1/24", "dev", &va]);
    run(&["ip", "-n", &b, "addr", "add", "10.77.0.2/24", "dev", vb]);
    run(&["ip", "-n", &a, "addr", "add", "10.78.0.1/24", "dev", &vx]);
    run(&["ip", "-n", &c, "addr", "add", "10.78.0.2/24", "dev", vc]);
    run(&[
        "ip",
        "-n",
        &c,
        "addr",
        "add",
        &format!("{VIP}/32"),
        "dev",
        "lo",
    ]);
    for (ns, dev) in [(&a, va.as_str()), (&b, vb), (&a, vx.as_str()), (&c, vc)] {
        run(&["ip", "-n", ns, "link", "set", dev, "up"]);
    }
    run(&[
        "ip",
        "-n",
        &b,
        "route",
        "add",
        &format!("{VIP}/32"),
        "via",
        "10.77.0.1",
    ]);
    // veth leaves L4 checksums to offload; AF_XDP passes the raw bytes on.
    run(&["ip", "netns", "exec", &b, "ethtool", "-K", vb, "tx", "off"]);
    Topology {
        a,
        b,
        c,
        va,
        vx,
        _guard: guard,
    }
}

/// Swaps MACs, IPv4 addresses and UDP ports in place (checksums stay valid). `None` if the
/// frame is not IPv4/UDP.
fn reflect(f: &mut [u8]) -> Option<()> {
    let (_, l4) = udp_dst_port(f)?;
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    for i in 0..4 {
        f.swap(14 + 12 + i, 14 + 16 + i);
    }
    for i in 0..2 {
        f.swap(l4 + i, l4 + 2 + i);
    }
    Some(())
}

/// (UDP destination port, L4 offset) of an untagged IPv4/UDP frame.
fn udp_dst_port(f: &[u8]) -> Option<(u16, usize)> {
    if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
        return None;
    }
    let l4 = 14 + usize::from(f[14] & 0x0f) * 4;
    let p = f.get(l4 + 2..l4 + 4)?;
    Some((u16::from_be_bytes([p[0], p[1]]), l4))
}

#[derive(Debug)]
struct LbReport {
    mode: AttachedMode,
    hugepages: bool,
    zerocopy: bool,
    reflected: u64,
    forwarded: u64,
    unexpected: u64,
    counters: XdpCounters,
    stats: XskStats,
    free_after: usize,
    fill_levels: u32,
    frames: u32,
}

/// The fiberlb side, in ns a: program on `va`, sockets on `va` and `vx` sharing one UMEM.
fn lb(
    va: String,
    vx: String,
    ready: mpsc::Sender<Result<(), String>>,
    stop: Arc<AtomicBool>,
) -> Result<LbReport, String> {
    let setup = || -> Result<_, AfXdpError> {
        // The clear errors first.
        match XdpProgram::load_and_attach("fxs-missing0", XdpMode::Auto) {
            Err(AfXdpError::InterfaceNotFound { .. }) => {}
            other => panic!("missing interface: expected InterfaceNotFound, got {other:?}"),
        }
        let prog = XdpProgram::load_and_attach(&va, XdpMode::Auto)?;
        let mut umem = Umem::new(&UmemConfig {
            frame_count: 8192,
            hugepages: HugePages::Auto,
            ..UmemConfig::default()
        })?;
        match XskPort::open(
            &mut umem,
            &XskConfig {
                ifname: va.clone(),
                queue: 7,
                ..Default::default()
            },
        ) {
            Err(AfXdpError::QueueOutOfRange {
                queue: 7, count: 1, ..
            }) => {}
            other => panic!("queue 7 of a 1-queue veth: expected QueueOutOfRange, got {other:?}"),
        }
        match XskPort::open(
            &mut umem,
            &XskConfig {
                ifname: "fxs-missing0".into(),
                ..Default::default()
            },
        ) {
            Err(AfXdpError::InterfaceNotFound { .. }) => {}
            other => panic!("missing interface: expected InterfaceNotFound, got {other:?}"),
        }
        let pa = XskPort::open(
            &mut umem,
            &XskConfig {
                ifname: va.clone(),
                ..Default::default()
            },
        )?;
        let px = XskPort::open(
            &mut umem,
            &XskConfig {
                ifname: vx.clone(),
                ..Default::default()
            },
        )?;
        Ok((prog, umem, pa, px))
    };
    let (mut prog, mut umem, mut pa, mut px) = match setup() {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e.to_string()));
            return Err(e.to_string());
        }
    };
    let vips = [
        (IpAddr::V4(VIP), REFLECT_PORT, 17u8),
        (IpAddr::V4(VIP), FORWARD_PORT, 17u8),
    ];
    let configure = |prog: &mut XdpProgram| -> Result<(), AfXdpError> {
        // Stale entries must go: set a bigger set first, then the real one.
        prog.set_vips(&[(IpAddr::V4(VIP), PLAIN_PORT, 17), vips[0]])?;
        prog.set_vips(&vips)?;
        prog.set_nat_returns(&[(IpAddr::V4(Ipv4Addr::new(10, 78, 0, 2)), 8080, 6)])?;
        prog.register_socket(0, pa.fd())
    };
    if let Err(e) = configure(&mut prog) {
        let _ = ready.send(Err(e.to_string()));
        return Err(e.to_string());
    }
    let _ = ready.send(Ok(()));

    let (mut reflected, mut forwarded, mut unexpected) = (0u64, 0u64, 0u64);
    let mut rx = [Desc::default(); 32];
    let mut to_a = [Desc::default(); 32];
    let mut to_x = [Desc::default(); 32];
    while !stop.load(Ordering::Relaxed) {
        let n = pa.rx_burst(&mut umem, &mut rx);
        let (mut na, mut nx) = (0, 0);
        for d in &rx[..n] {
            let kind = match umem.packet_buf(d) {
                Some(mut buf) => {
                    let f = buf.data_mut();
                    match udp_dst_port(f) {
                        Some((REFLECT_PORT, _)) => reflect(f).map(|_| 0),
                        Some((FORWARD_PORT, _)) => {
                            f[0..6].copy_from_slice(&MAC_VC);
                            f[6..12].copy_from_slice(&MAC_VX);
                            Some(1)
                        }
                        _ => None,
                    }
                }
                None => None,
            };
            match kind {
                Some(0) => {
                    to_a[na] = *d;
                    na += 1;
                }
                Some(_) => {
                    to_x[nx] = *d;
                    nx += 1;
                }
                None => {
                    unexpected += 1;
                    umem.free(d);
                }
            }
        }
        let sa = pa.tx_burst(&mut umem, &to_a[..na]);
        let sx = px.tx_burst(&mut umem, &to_x[..nx]);
        for d in to_a[sa..na].iter().chain(&to_x[sx..nx]) {
            umem.free(d);
        }
        reflected += sa as u64;
        forwarded += sx as u64;
        pa.complete(&mut umem);
        px.complete(&mut umem);
        if n == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    // Let the last transmissions complete, then account for every frame.
    let t = Instant::now();
    while t.elapsed() < Duration::from_millis(200) {
        pa.complete(&mut umem);
        px.complete(&mut umem);
        let n = pa.rx_burst(&mut umem, &mut rx); // refills the fill ring
        for d in &rx[..n] {
            unexpected += 1;
            umem.free(d);
        }
    }
    let counters = prog.counters().map_err(|e| e.to_string())?;
    let stats = pa.stats().map_err(|e| e.to_string())?;
    Ok(LbReport {
        mode: prog.attached_mode(),
        hugepages: umem.hugepages(),
        zerocopy: pa.zerocopy(),
        reflected,
        forwarded,
        unexpected,
        counters,
        stats,
        free_after: umem.free_frames(),
        fill_levels: pa.fill_level() + px.fill_level(),
        frames: umem.frame_count(),
    })
}

/// Sends `n` numbered datagrams from `sock` and waits for each to come back (3 tries each).
fn ping_pong(sock: &UdpSocket, n: usize) -> usize {
    let mut ok = 0;
    let mut buf = [0u8; 256];
    for i in 0..n {
        let msg = format!("fiberlb-smoke-{i}");
        'tries: for _ in 0..3 {
            sock.send(msg.as_bytes()).expect("send");
            let deadline = Instant::now() + Duration::from_millis(500);
            while Instant::now() < deadline {
                match sock.recv(&mut buf) {
                    Ok(len) if &buf[..len] == msg.as_bytes() => {
                        ok += 1;
                        break 'tries;
                    }
                    Ok(_) => continue, // a late reply to an earlier try
                    Err(_) => break,
                }
            }
        }
    }
    ok
}

#[test]
fn afxdp_redirects_vip_traffic_and_passes_the_rest() {
    if !is_root() {
        eprintln!("skipping afxdp_smoke: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    let topo = topology("s");

    // Kernel sockets, created inside their namespaces.
    let plain = in_netns(&topo.a, || {
        let s = UdpSocket::bind(("10.77.0.1", PLAIN_PORT)).expect("bind plain");
        s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        s
    })
    .join()
    .unwrap();
    let backend = in_netns(&topo.c, || {
        let s = UdpSocket::bind((VIP, FORWARD_PORT)).expect("bind backend");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    })
    .join()
    .unwrap();
    let client = in_netns(&topo.b, || {
        let s = UdpSocket::bind(("10.77.0.2", 0)).expect("bind client");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        s
    })
    .join()
    .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    let lb_thread = {
        let (va, vx, stop) = (topo.va.clone(), topo.vx.clone(), stop.clone());
        in_netns(&topo.a, move || lb(va, vx, ready_tx, stop))
    };
    let ready = ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("lb thread started");
    if let Err(e) = ready {
        stop.store(true, Ordering::Relaxed);
        let _ = lb_thread.join();
        panic!("AF_XDP setup failed: {e}");
    }

    let attached = run(&["ip", "-n", &topo.a, "link", "show", &topo.va]);
    assert!(attached.contains("xdp"), "program not attached: {attached}");

    // 1. VIP traffic is redirected, reflected, and comes back.
    client
        .connect(SocketAddr::from((VIP, REFLECT_PORT)))
        .unwrap();
    let echoed = ping_pong(&client, 50);

    // 2. VIP traffic forwarded from one socket to another of the same UMEM.
    let mut got = 0;
    let mut buf = [0u8; 256];
    for i in 0..20 {
        let msg = format!("forward-{i}");
        client.send_to(msg.as_bytes(), (VIP, FORWARD_PORT)).unwrap();
        if let Ok(len) = backend.recv(&mut buf) {
            if &buf[..len] == msg.as_bytes() {
                got += 1;
            }
        }
    }

    // 3. Non-VIP traffic reaches the kernel: a UDP port that is not a VIP port, and ping.
    client.send_to(b"plain", ("10.77.0.1", PLAIN_PORT)).unwrap();
    let mut pbuf = [0u8; 16];
    let plain_rx = plain.recv(&mut pbuf).map(|n| pbuf[..n].to_vec());
    let ping = Command::new("ip")
        .args([
            "netns",
            "exec",
            &topo.b,
            "ping",
            "-c",
            "2",
            "-W",
            "2",
            "10.77.0.1",
        ])
        .output()
        .expect("ping (iputils-ping, see scripts/deps-afxdp.sh)");

    stop.store(true, Ordering::Relaxed);
    let report = lb_thread.join().expect("lb thread").expect("lb loop");
    eprintln!("afxdp_smoke: {report:?}");

    assert_eq!(echoed, 50, "VIP packets reflected back to the client");
    assert_eq!(
        got, 20,
        "VIP packets forwarded to the backend through the second socket"
    );
    assert_eq!(
        plain_rx.as_deref().ok(),
        Some(&b"plain"[..]),
        "non-VIP UDP reaches the kernel"
    );
    assert!(
        ping.status.success(),
        "ping through XDP_PASS: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    assert!(
        report.reflected >= 50 && report.forwarded >= 20,
        "{report:?}"
    );
    assert!(report.counters.redirected >= 70, "{report:?}");
    assert!(
        report.counters.passed >= 3,
        "ARP/ping/plain UDP passed: {report:?}"
    );
    assert_eq!(
        report.unexpected, 0,
        "only VIP traffic is redirected: {report:?}"
    );
    // Every frame is accounted for: on the free stack or in a fill ring (copy mode).
    assert_eq!(
        report.free_after + report.fill_levels as usize,
        report.frames as usize,
        "{report:?}"
    );
    assert_eq!(report.mode, AttachedMode::Native, "veth has native XDP");
    assert!(!report.zerocopy, "veth has no zero-copy: {report:?}");
    let _ = report.hugepages;
    assert_eq!(
        report.stats.rx_invalid_descs + report.stats.tx_invalid_descs,
        0,
        "{report:?}"
    );

    // The program is detached with the XdpProgram.
    let after = run(&["ip", "-n", &topo.a, "link", "show", &topo.va]);
    assert!(!after.contains("xdp"), "program still attached: {after}");
    let _ = (&topo.b, &topo.c);
}
