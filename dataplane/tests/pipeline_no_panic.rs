//! The per-packet path never panics (docs/architecture.md, "Rules"): whatever bytes arrive,
//! `Pipeline::process` and `Pipeline::process_burst` return a verdict, count it once, and leave
//! the counters balanced (received = forwarded + to host + dropped). The lint
//! `deny(clippy::indexing_slicing, ...)` in `pipeline/`, `worker/` and `flow_table/` rules
//! panicking code out at compile time; these properties check the same from the outside, for every listener mode (nat, dsr, tunnel
//! IPIP and GUE, both families and the mixed 4in6 / 6in4 encapsulations), with and without
//! the host path, next hops, headroom and a tunnel MTU.
//!
//! Inputs: random bytes; valid frames aimed at each listener (also nat replies, fragments,
//! VLAN tags, IPv4 options, IPv6 extension headers, ICMP "fragmentation needed" / "packet too
//! big" about VIP flows) with random bytes overwritten; and every truncation of those frames.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fiberlb_dataplane::nic::memory::MemoryPort;
use fiberlb_dataplane::packet::{Desc, PacketBuf};
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, PipelineConfig, Verdict, BURST};
use fiberlb_dataplane::snapshot::{Snapshot, SnapshotBuilder};
use fiberlb_dataplane::wire::build::{FrameBuilder, Ip, Ipv6Ext, Transport};
use fiberlb_shared::model::*;
use proptest::prelude::*;

const MAC_LB: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const VIP4: [u8; 4] = [10, 10, 0, 100];
const NAT4: [u8; 4] = [10, 10, 1, 1];
const BACKEND_PORT: u16 = 8080;
/// Listener ports on both VIPs: nat tcp, nat udp, dsr tcp+udp, tunnel IPIP tcp, tunnel GUE
/// udp, dsr tcp with an empty pool.
const PORTS: [u16; 6] = [80, 53, 81, 82, 83, 90];

fn vip6() -> [u8; 16] {
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0x100).octets()
}
fn nat6() -> [u8; 16] {
    Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, 1).octets()
}

/// Every mode on an IPv4 and an IPv6 VIP. The tunnel pools hold a backend of each family,
/// so flows spread over IPIP, IP6IP6, 4in6 and 6in4; one backend per family has no MAC of
/// its own (it needs the gateway MAC).
fn services() -> ServiceSet {
    let mut listeners = Vec::new();
    let mut id = 0;
    for (vip, off) in [(IpAddr::from(VIP4), 0), (IpAddr::from(vip6()), 10)] {
        for (port, protocol, mode, encap, pool) in [
            (80, Protocol::Tcp, Mode::Nat, Encap::Ipip, 1),
            (53, Protocol::Udp, Mode::Nat, Encap::Ipip, 1),
            (81, Protocol::Tcp, Mode::Dsr, Encap::Ipip, 2),
            (81, Protocol::Udp, Mode::Dsr, Encap::Ipip, 2),
            (82, Protocol::Tcp, Mode::Tunnel, Encap::Ipip, 3),
            (83, Protocol::Udp, Mode::Tunnel, Encap::Gue, 3),
            (90, Protocol::Tcp, Mode::Dsr, Encap::Ipip, 4),
        ] {
            id += 1;
            listeners.push(Listener {
                id: ListenerId(id),
                name: format!("{vip}/{port}/{protocol}"),
                vip,
                port,
                protocol,
                mode,
                encap,
                pool: PoolId(pool + off),
            });
        }
    }
    let pool = |id: u32| Pool {
        id: PoolId(id),
        name: format!("pool{id}"),
        algorithm: if id % 2 == 0 {
            Algorithm::MaglevSourceIp
        } else {
            Algorithm::Maglev
        },
        table_size: 251,
    };
    let backend = |id: u32, pool: u32, address: IpAddr, mac: Option<Mac>| Backend {
        id: BackendId(id),
        pool: PoolId(pool),
        address,
        port: BACKEND_PORT,
        weight: 1,
        mac,
        admin: AdminState::Enabled,
        healthy: true,
    };
    let v4 = |last: u8| IpAddr::from([10, 10, last, 1]);
    let v6 = |net: u16| IpAddr::from(Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, 0, 1));
    ServiceSet {
        listeners,
        pools: [1, 2, 3, 4, 11, 12, 13, 14].map(pool).to_vec(),
        backends: vec![
            backend(1, 1, v4(1), Some([2, 0, 0, 0, 2, 1])),
            backend(2, 2, v4(2), None),
            backend(3, 3, v4(3), None),
            backend(4, 3, v6(4), Some([2, 0, 0, 0, 2, 4])),
            backend(11, 11, v6(1), Some([2, 0, 0, 0, 2, 11])),
            backend(12, 12, v6(2), None),
            backend(13, 13, v6(3), Some([2, 0, 0, 0, 2, 13])),
            backend(14, 13, v4(14), None),
        ],
        tunnel: TunnelSettings {
            source_v4: Some(Ipv4Addr::new(10, 10, 0, 1)),
            source_v6: Some(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
            gue_port: 6080,
        },
    }
}

fn snapshot() -> Snapshot {
    SnapshotBuilder::new(64, 64)
        .build(&services(), 1)
        .expect("valid services")
}

/// Node settings the properties vary.
#[derive(Clone, Copy, Debug)]
struct Setup {
    host_path: bool,
    gateways: bool,
    mtu: u16,
    headroom: usize,
}

fn arb_setup() -> impl Strategy<Value = Setup> {
    (
        any::<bool>(),
        any::<bool>(),
        prop_oneof![Just(1500u16), 0u16..200],
        prop_oneof![Just(256usize), 0usize..64],
    )
        .prop_map(|(host_path, gateways, mtu, headroom)| Setup {
            host_path,
            gateways,
            mtu,
            headroom,
        })
}

const NORMAL: Setup = Setup {
    host_path: false,
    gateways: true,
    mtu: 1500,
    headroom: 256,
};

fn config(s: Setup) -> PipelineConfig {
    let gw = |m: [u8; 6]| s.gateways.then_some(m);
    PipelineConfig {
        flow_capacity: 1024,
        client_gateway_mac: gw([2, 0, 0, 0, 1, 0xfe]),
        backend_gateway_mac: gw([2, 0, 0, 0, 2, 0xfe]),
        mtu: s.mtu,
        max_listeners: 64,
        max_backends: 64,
        host_path: s.host_path,
        ..PipelineConfig::default()
    }
}

fn assert_balanced(p: &Pipeline, what: &str) {
    let c = p.counters();
    assert_eq!(
        c.rx_packets,
        c.forwarded + c.to_host + c.dropped(),
        "{what}: {c:?}"
    );
}

/// Runs `frames` through one pipeline, in bursts through the memory port and then one by one
/// through `process`; checks the counters after each. Returns the burst verdicts.
fn run(setup: Setup, snap: &Snapshot, frames: &[Vec<u8>]) -> Vec<Verdict> {
    let chunk = 2048;
    let mut p = Pipeline::new(config(setup)).unwrap();
    let mut verdicts_all = Vec::new();
    for group in frames.chunks(BURST) {
        let mut port = MemoryPort::new(BURST, chunk, setup.headroom);
        for f in group {
            port.inject(f).unwrap();
        }
        let mut descs = [Desc::default(); BURST];
        let n = port.rx_burst(&mut descs);
        assert_eq!(n, group.len());
        let mut verdicts = vec![Verdict::Drop(DropReason::Malformed); n];
        let mut burst = port.burst(&mut descs[..n]);
        assert_eq!(p.process_burst(snap, &mut burst, &mut verdicts, 1000), n);
        assert_balanced(&p, "burst");
        verdicts_all.extend(verdicts);
    }
    for f in frames {
        let mut buf = vec![0u8; setup.headroom + f.len()];
        buf[setup.headroom..].copy_from_slice(f);
        let mut pkt = PacketBuf::new(&mut buf, setup.headroom, f.len()).unwrap();
        let before = p.counters().rx_packets;
        let _ = p.process(snap, &mut pkt, 2000);
        assert_eq!(p.counters().rx_packets, before + 1);
        assert_balanced(&p, "single");
    }
    verdicts_all
}

/// What a valid frame is about.
#[derive(Clone, Debug)]
enum Kind {
    /// Client to a VIP port (one of [`PORTS`], or any port).
    ToVip { port: u16 },
    /// A nat backend's reply to a client.
    NatReply,
    /// ICMP "fragmentation needed" / "packet too big" quoting a VIP flow's reply.
    IcmpAboutVip { port: u16, udp: bool, quote: usize },
}

#[derive(Clone, Debug)]
struct FrameSpec {
    v6: bool,
    udp: bool,
    kind: Kind,
    client: u8,
    sport: u16,
    tcp_flags: u8,
    vlan: Option<u16>,
    options: usize,
    frag: Option<(u16, bool)>,
    payload: Vec<u8>,
}

fn arb_spec() -> impl Strategy<Value = FrameSpec> {
    let port = prop_oneof![proptest::sample::select(PORTS.to_vec()), any::<u16>()];
    let kind = prop_oneof![
        4 => port.clone().prop_map(|port| Kind::ToVip { port }),
        1 => Just(Kind::NatReply),
        1 => (port, any::<bool>(), 0usize..80)
            .prop_map(|(port, udp, quote)| Kind::IcmpAboutVip { port, udp, quote }),
    ];
    (
        (
            any::<bool>(),
            any::<bool>(),
            kind,
            any::<u8>(),
            any::<u16>(),
        ),
        (
            any::<u8>(),
            proptest::option::of(0u16..4096),
            0usize..3,
            proptest::option::of((0u16..64, any::<bool>())),
            proptest::collection::vec(any::<u8>(), 0..64),
        ),
    )
        .prop_map(
            |((v6, udp, kind, client, sport), (tcp_flags, vlan, options, frag, payload))| {
                FrameSpec {
                    v6,
                    udp,
                    kind,
                    client,
                    sport,
                    tcp_flags,
                    vlan,
                    options,
                    frag,
                    payload,
                }
            },
        )
}

/// An IP header of the spec's family between two (v4, v6) address pairs.
fn ip(v6: bool, src: ([u8; 4], [u8; 16]), dst: ([u8; 4], [u8; 16])) -> Ip {
    if v6 {
        Ip::V6 {
            src: src.1,
            dst: dst.1,
        }
    } else {
        Ip::V4 {
            src: src.0,
            dst: dst.0,
        }
    }
}

fn transport(udp: bool, sport: u16, dport: u16, flags: u8) -> Transport {
    let b = if udp {
        FrameBuilder::udp_v4([0; 4], [0; 4], sport, dport)
    } else {
        FrameBuilder::tcp_v4([0; 4], [0; 4], sport, dport).tcp_flags(flags)
    };
    b.transport
}

impl FrameSpec {
    fn build(&self) -> Vec<u8> {
        let client = ([192, 0, 2, self.client], {
            let mut a = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0).octets();
            a[15] = self.client;
            a
        });
        let vip = (VIP4, vip6());
        let nat = (NAT4, nat6());
        let mut b = match &self.kind {
            Kind::ToVip { port } => FrameBuilder::new(
                ip(self.v6, client, vip),
                transport(self.udp, self.sport, *port, self.tcp_flags),
            ),
            Kind::NatReply => FrameBuilder::new(
                ip(self.v6, nat, client),
                transport(self.udp, BACKEND_PORT, self.sport, self.tcp_flags),
            ),
            Kind::IcmpAboutVip { port, udp, quote } => {
                // The quoted packet: a reply VIP:port -> client that was too big.
                let inner = FrameBuilder::new(
                    ip(self.v6, vip, client),
                    transport(*udp, *port, self.sport, 0x10),
                )
                .payload(&self.payload)
                .build_ip();
                let quote = &inner[..(*quote).min(inner.len())];
                let router = ([198, 51, 100, 1], {
                    let mut a = client.1;
                    a[2] = 0xff;
                    a
                });
                let (ty, code, rest) = if self.v6 { (2, 0, 1280) } else { (3, 4, 1400) };
                let b = if self.v6 {
                    FrameBuilder::icmpv6(router.1, vip.1, ty, code, rest)
                } else {
                    FrameBuilder::icmpv4(router.0, vip.0, ty, code, rest)
                };
                b.payload(quote)
            }
        };
        if !matches!(self.kind, Kind::IcmpAboutVip { .. }) {
            b = b.payload(&self.payload);
        }
        b = b.macs(MAC_PEER, MAC_LB);
        if let Some(vid) = self.vlan {
            b = b.vlan(vid);
        }
        if self.options > 0 {
            b = if self.v6 {
                b.ext(Ipv6Ext::DestOptions(vec![0; self.options * 6]))
            } else {
                b.ipv4_options(&vec![1; self.options * 4])
            };
        }
        if let Some((offset, more)) = self.frag {
            b = if self.v6 {
                b.ext(Ipv6Ext::Fragment {
                    offset: offset * 8,
                    more,
                    ident: 7,
                })
            } else {
                b.fragment(offset * 8, more)
            };
        }
        b.build()
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    /// Random bytes, one burst of them, every setup.
    #[test]
    fn random_bytes_never_panic(
        setup in arb_setup(),
        frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..160), 1..40),
    ) {
        run(setup, &snapshot(), &frames);
    }

    /// Random bytes behind a valid Ethernet / IP start, so the parse gets further.
    #[test]
    fn random_ip_packets_never_panic(
        setup in arb_setup(),
        v6 in any::<bool>(),
        vlan in any::<bool>(),
        body in proptest::collection::vec(any::<u8>(), 0..160),
    ) {
        let mut f = Vec::new();
        f.extend_from_slice(&MAC_LB);
        f.extend_from_slice(&MAC_PEER);
        if vlan {
            f.extend_from_slice(&[0x81, 0x00, 0x00, 0x07]);
        }
        f.extend_from_slice(if v6 { &[0x86, 0xdd, 0x60] } else { &[0x08, 0x00, 0x45] });
        f.extend_from_slice(&body);
        run(setup, &snapshot(), &[f]);
    }

    /// Valid frames for every listener mode, with random bytes overwritten (lengths,
    /// offsets, protocol numbers, flags...) and cut at a random length.
    #[test]
    fn corrupted_frames_never_panic(
        setup in arb_setup(),
        specs in proptest::collection::vec(arb_spec(), 1..33),
        flips in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 0..8),
        cut in proptest::option::of((any::<usize>(), any::<usize>())),
    ) {
        let mut frames: Vec<Vec<u8>> = specs.iter().map(FrameSpec::build).collect();
        for (which, at, v) in flips {
            let f = &mut frames[which % specs.len()];
            let i = at % f.len();
            f[i] = v;
        }
        if let Some((which, len)) = cut {
            let f = &mut frames[which % specs.len()];
            let len = len % (f.len() + 1);
            f.truncate(len);
        }
        run(setup, &snapshot(), &frames);
    }

    /// Intact valid frames are processed in a normal setup without a Malformed drop.
    #[test]
    fn valid_frames_are_not_malformed(specs in proptest::collection::vec(arb_spec(), 1..33)) {
        let frames: Vec<Vec<u8>> = specs.iter().map(FrameSpec::build).collect();
        for (v, s) in run(NORMAL, &snapshot(), &frames).iter().zip(&specs) {
            prop_assert_ne!(*v, Verdict::Drop(DropReason::Malformed), "{:?}", s);
        }
    }
}

/// Every strict prefix of a frame of each kind, for each listener: nothing panics, and a
/// prefix is never forwarded (its IP length no longer fits the frame).
#[test]
fn every_truncation_is_dropped_cleanly() {
    let snap = snapshot();
    let mut specs = Vec::new();
    for v6 in [false, true] {
        for udp in [false, true] {
            let base = FrameSpec {
                v6,
                udp,
                kind: Kind::NatReply,
                client: 10,
                sport: 40000,
                tcp_flags: 0x02,
                vlan: Some(7),
                options: 1,
                frag: None,
                payload: vec![0x5a; 24],
            };
            specs.push(base.clone());
            for port in PORTS {
                specs.push(FrameSpec {
                    kind: Kind::ToVip { port },
                    ..base.clone()
                });
                specs.push(FrameSpec {
                    kind: Kind::IcmpAboutVip {
                        port,
                        udp,
                        quote: 80,
                    },
                    frag: None,
                    ..base.clone()
                });
            }
        }
    }
    for spec in &specs {
        let frame = spec.build();
        let full = run(NORMAL, &snap, std::slice::from_ref(&frame));
        assert_ne!(full[0], Verdict::Drop(DropReason::Malformed), "{spec:?}");
        let prefixes: Vec<Vec<u8>> = (0..frame.len()).map(|n| frame[..n].to_vec()).collect();
        for (n, v) in run(NORMAL, &snap, &prefixes).iter().enumerate() {
            assert!(
                matches!(v, Verdict::Drop(_)),
                "{spec:?} cut at {n} bytes: {v:?}"
            );
        }
    }
}
