//! Table-driven golden tests of the forwarding pipeline: for each case, an input frame, the
//! expected verdict and the exact expected output frame, run through the memory port.
//!
//! Expected frames are built independently with `wire::build` (full checksum computation),
//! so a match also proves the pipeline's incremental checksum updates.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use fiberlb_dataplane::nic::memory::MemoryPort;
use fiberlb_dataplane::packet::{Burst, Desc};
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, PipelineConfig, Verdict};
use fiberlb_dataplane::snapshot::{Snapshot, SnapshotBuilder};
use fiberlb_dataplane::wire::build::{FrameBuilder, Ip, Ipv6Ext, Transport};
use fiberlb_dataplane::wire::tcp::flags;
use fiberlb_shared::flow_hash::FlowHasher;
use fiberlb_shared::model::*;

mod cases;

use cases::cases;

const MAC_LB: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const MAC_CLIENT_GW: [u8; 6] = [0x02, 0, 0, 0, 0x01, 0xfe];
const MAC_BACKEND_GW: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0xfe];
const MAC_B_NAT: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x01];
const MAC_B_DSR: [u8; 6] = [0x02, 0, 0, 0, 0x02, 0x02];
const MAC_BACKEND_SRC: [u8; 6] = [0x02, 0, 0, 0, 0x03, 0x01];

const CLIENT4: [u8; 4] = [192, 0, 2, 10];
const VIP4: [u8; 4] = [10, 10, 0, 100];
const NAT4: [u8; 4] = [10, 10, 1, 1];
const DSR4: [u8; 4] = [10, 10, 2, 1];
const TUN4: [u8; 4] = [10, 10, 3, 1];
const TUNSRC4: [u8; 4] = [10, 10, 0, 1];
const ROUTER4: [u8; 4] = [198, 51, 100, 1];

fn v6(last: u16, net: u16) -> [u8; 16] {
    Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, 0, last).octets()
}
fn client6() -> [u8; 16] {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 10).octets()
}
fn router6() -> [u8; 16] {
    Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1).octets()
}
fn vip6() -> [u8; 16] {
    v6(0x100, 0)
}
fn nat6() -> [u8; 16] {
    v6(1, 1)
}
fn dsr6() -> [u8; 16] {
    v6(1, 2)
}
fn tun6() -> [u8; 16] {
    v6(1, 3)
}
fn tunsrc6() -> [u8; 16] {
    v6(1, 0)
}

const SEED: u64 = 42;

/// Listener ports on both VIPs.
const P_NAT_TCP: u16 = 80;
const P_NAT_UDP: u16 = 53;
const P_DSR: u16 = 81;
const P_IPIP: u16 = 82;
const P_GUE: u16 = 83;
const P_EMPTY: u16 = 90;
const GUE_PORT: u16 = 6080;
const BACKEND_PORT: u16 = 8080;

fn services() -> ServiceSet {
    let mut listeners = Vec::new();
    let mut id = 0;
    let mut add = |vip: IpAddr, port, protocol, mode, encap, pool| {
        id += 1;
        listeners.push(Listener {
            id: ListenerId(id),
            name: format!("{vip}/{port}/{protocol}"),
            vip,
            port,
            protocol,
            mode,
            encap,
            pool: PoolId(pool),
        });
    };
    for (vip, off) in [(IpAddr::from(VIP4), 0), (IpAddr::from(vip6()), 10)] {
        add(
            vip,
            P_NAT_TCP,
            Protocol::Tcp,
            Mode::Nat,
            Encap::Ipip,
            1 + off,
        );
        add(
            vip,
            P_NAT_UDP,
            Protocol::Udp,
            Mode::Nat,
            Encap::Ipip,
            1 + off,
        );
        add(vip, P_DSR, Protocol::Tcp, Mode::Dsr, Encap::Ipip, 2 + off);
        add(vip, P_DSR, Protocol::Udp, Mode::Dsr, Encap::Ipip, 2 + off);
        add(
            vip,
            P_IPIP,
            Protocol::Tcp,
            Mode::Tunnel,
            Encap::Ipip,
            3 + off,
        );
        add(vip, P_GUE, Protocol::Udp, Mode::Tunnel, Encap::Gue, 3 + off);
        add(vip, P_EMPTY, Protocol::Tcp, Mode::Dsr, Encap::Ipip, 4 + off);
    }
    let pool = |id: u32, name: &str| Pool {
        id: PoolId(id),
        name: name.into(),
        algorithm: Algorithm::Maglev,
        table_size: 251,
    };
    let backend = |id: u32, pool: u32, addr: IpAddr, mac: Option<Mac>| Backend {
        id: BackendId(id),
        pool: PoolId(pool),
        address: addr,
        port: BACKEND_PORT,
        weight: 1,
        mac,
        admin: AdminState::Enabled,
        healthy: true,
    };
    ServiceSet {
        listeners,
        pools: vec![
            pool(1, "nat4"),
            pool(2, "dsr4"),
            pool(3, "tun4"),
            pool(4, "empty4"),
            pool(11, "nat6"),
            pool(12, "dsr6"),
            pool(13, "tun6"),
            pool(14, "empty6"),
        ],
        backends: vec![
            backend(1, 1, NAT4.into(), Some(MAC_B_NAT)),
            backend(2, 2, DSR4.into(), Some(MAC_B_DSR)),
            backend(3, 3, TUN4.into(), None),
            backend(11, 11, nat6().into(), Some(MAC_B_NAT)),
            backend(12, 12, dsr6().into(), Some(MAC_B_DSR)),
            backend(13, 13, tun6().into(), None),
        ],
        tunnel: TunnelSettings {
            source_v4: Some(Ipv4Addr::from(TUNSRC4)),
            source_v6: Some(Ipv6Addr::from(tunsrc6())),
            gue_port: GUE_PORT,
        },
    }
}

fn config() -> PipelineConfig {
    PipelineConfig {
        hash_seed: SEED,
        flow_capacity: 1 << 16,
        client_gateway_mac: Some(MAC_CLIENT_GW),
        backend_gateway_mac: Some(MAC_BACKEND_GW),
        max_listeners: 64,
        max_backends: 64,
        ..PipelineConfig::default()
    }
}

fn snapshot() -> Snapshot {
    SnapshotBuilder::new(64, 64)
        .build(&services(), 1)
        .expect("valid services")
}

/// Runs frames through a fresh pipeline via the memory port, one burst.
fn run(
    cfg: PipelineConfig,
    snap: &Snapshot,
    frames: &[Vec<u8>],
) -> (Vec<Verdict>, Vec<Vec<u8>>, Pipeline) {
    let mut p = Pipeline::new(cfg).unwrap();
    let mut port = MemoryPort::new(64, 2048, 256);
    for f in frames {
        port.inject(f).unwrap();
    }
    let mut descs = [Desc::default(); 32];
    let n = port.rx_burst(&mut descs);
    let mut verdicts = vec![Verdict::Drop(DropReason::Malformed); n];
    {
        let mut burst = port.burst(&mut descs[..n]);
        assert_eq!(p.process_burst(snap, &mut burst, &mut verdicts, 1000), n);
        assert_eq!(burst.len(), n);
    }
    for (i, v) in verdicts.iter().enumerate() {
        match v {
            Verdict::Drop(_) => port.free(descs[i]),
            _ => port.transmit(descs[i]),
        }
    }
    let mut out = Vec::new();
    port.drain_tx(|b| out.push(b.to_vec()));
    (verdicts, out, p)
}

struct Case {
    name: &'static str,
    input: Vec<u8>,
    verdict: Verdict,
    output: Option<Vec<u8>>,
}

fn hash_of(v6: bool, src: &[u8], dst: &[u8], sport: u16, dport: u16, proto: u8) -> u64 {
    let h = FlowHasher::new(SEED);
    if v6 {
        h.hash_v6(
            src.try_into().unwrap(),
            dst.try_into().unwrap(),
            sport,
            dport,
            proto,
        )
    } else {
        h.hash_v4(
            src.try_into().unwrap(),
            dst.try_into().unwrap(),
            sport,
            dport,
            proto,
        )
    }
}

fn gue_sport(hash: u64) -> u16 {
    0x8000 | ((hash >> 16) as u16 & 0x7fff)
}

fn ipv4_outer(inner: &FrameBuilder, proto: u8, dst: [u8; 4], mac: [u8; 6]) -> Vec<u8> {
    let mut b = FrameBuilder::new(
        Ip::V4 { src: TUNSRC4, dst },
        Transport::Raw { protocol: proto },
    )
    .macs(MAC_LB, mac)
    .payload(&inner.build_ip());
    b.dont_frag = inner.dont_frag;
    b.tos = inner.tos;
    b.vlan = inner.vlan;
    b.build()
}

fn set_dport(t: &mut Transport, port: u16) {
    match t {
        Transport::Tcp { dst_port, .. } | Transport::Udp { dst_port, .. } => *dst_port = port,
        _ => panic!("not tcp/udp"),
    }
}

fn set_sport(t: &mut Transport, port: u16) {
    match t {
        Transport::Tcp { src_port, .. } | Transport::Udp { src_port, .. } => *src_port = port,
        _ => panic!("not tcp/udp"),
    }
}

/// Writes an IPv6 flow label into a built frame (the builder has no field for it).
fn set_flow_label(frame: &mut [u8], l3: usize, label: u32) {
    let w = u32::from_be_bytes(frame[l3..l3 + 4].try_into().unwrap());
    let w = (w & 0xfff0_0000) | label;
    frame[l3..l3 + 4].copy_from_slice(&w.to_be_bytes());
}

fn hex(b: &[u8]) -> String {
    b.chunks(16)
        .map(|c| {
            c.iter()
                .map(|x| format!("{x:02x}"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn golden_cases() {
    let snap = snapshot();
    let mut failures = Vec::new();
    let all = cases();
    assert!(all.len() >= 35, "table shrank: {}", all.len());
    for case in &all {
        let (verdicts, out, _) = run(config(), &snap, std::slice::from_ref(&case.input));
        if verdicts[0] != case.verdict {
            failures.push(format!(
                "{}: verdict {:?}, expected {:?}",
                case.name, verdicts[0], case.verdict
            ));
            continue;
        }
        match (&case.output, out.first()) {
            (None, None) => {}
            (Some(exp), Some(got)) if exp == got => {}
            (exp, got) => failures.push(format!(
                "{}: output differs\n--- expected\n{}\n--- got\n{}",
                case.name,
                exp.as_deref().map(hex).unwrap_or_default(),
                got.map(|g| hex(g)).unwrap_or_default()
            )),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n\n")
    );
}

#[test]
fn every_case_counts_once() {
    let snap = snapshot();
    let all = cases();
    let frames: Vec<Vec<u8>> = all.iter().map(|c| c.input.clone()).collect();
    let mut p = Pipeline::new(config()).unwrap();
    let mut port = MemoryPort::new(128, 2048, 256);
    for f in &frames {
        port.inject(f).unwrap();
    }
    let mut total = 0;
    loop {
        let mut descs = [Desc::default(); 32];
        let n = port.rx_burst(&mut descs);
        if n == 0 {
            break;
        }
        let mut verdicts = vec![Verdict::Drop(DropReason::Malformed); n];
        p.process_burst(&snap, &mut port.burst(&mut descs[..n]), &mut verdicts, 5);
        total += n;
    }
    let c = p.counters();
    assert_eq!(total, frames.len());
    assert_eq!(c.rx_packets as usize, frames.len());
    assert_eq!(c.forwarded + c.dropped(), c.rx_packets);
    let expected_drops = all
        .iter()
        .filter(|c| matches!(c.verdict, Verdict::Drop(_)))
        .count();
    assert_eq!(c.dropped() as usize, expected_drops);
    assert_eq!(c.nat_replies, 4);
    assert_eq!(c.icmp_to_backend, 4);
    for r in DropReason::ALL {
        let want = all.iter().filter(|c| c.verdict == Verdict::Drop(r)).count() as u64;
        assert_eq!(c.drops[r as usize], want, "drop reason {}", r.name());
    }
}

#[test]
fn nat_reply_without_client_gateway_is_dropped_and_counted() {
    let snap = snapshot();
    let cfg = PipelineConfig {
        client_gateway_mac: None,
        ..config()
    };
    let reply = FrameBuilder::tcp_v4(NAT4, CLIENT4, BACKEND_PORT, 40000)
        .macs(MAC_B_NAT, MAC_LB)
        .build();
    let (v, out, p) = run(cfg, &snap, &[reply]);
    assert_eq!(v[0], Verdict::Drop(DropReason::NoNextHop));
    assert!(out.is_empty());
    assert_eq!(p.counters().drops[DropReason::NoNextHop as usize], 1);
}

#[test]
fn configured_source_macs_are_used() {
    let snap = snapshot();
    let cfg = PipelineConfig {
        backend_side_mac: Some(MAC_BACKEND_SRC),
        ..config()
    };
    let syn = FrameBuilder::tcp_v4(CLIENT4, VIP4, 1234, P_DSR)
        .macs(MAC_CLIENT_GW, MAC_LB)
        .build();
    let (_, out, _) = run(cfg, &snap, &[syn]);
    assert_eq!(&out[0][0..6], &MAC_B_DSR);
    assert_eq!(&out[0][6..12], &MAC_BACKEND_SRC);
}

/// The test services with one UDP listener per VIP (nat on VIP4, dsr on VIP6), so that
/// non-first fragments can be attributed.
fn udp_only_snapshot() -> Snapshot {
    let mut set = services();
    set.listeners.retain(|l| {
        l.protocol == Protocol::Tcp
            || (l.vip == IpAddr::from(VIP4) && l.port == P_NAT_UDP)
            || (l.vip == IpAddr::from(vip6()) && l.port == P_DSR)
    });
    SnapshotBuilder::new(64, 64).build(&set, 1).unwrap()
}

#[test]
fn ipv4_fragments_all_reach_the_same_backend_and_are_rewritten() {
    // A UDP datagram to a nat listener in three fragments: every fragment is forwarded, the
    // destination rewritten in each, and the first fragment's UDP checksum (which covers the
    // whole datagram) updated.
    let snap = udp_only_snapshot();
    let dgram = FrameBuilder::udp_v4(CLIENT4, VIP4, 5353, P_NAT_UDP)
        .macs(MAC_CLIENT_GW, MAC_LB)
        .ident(0x4242)
        .payload(&[7u8; 100]);
    let frags = dgram.build_fragments(48);
    assert_eq!(frags.len(), 3);
    let mut exp = dgram.clone().macs(MAC_LB, MAC_B_NAT).ttl(63);
    exp.ip = Ip::V4 {
        src: CLIENT4,
        dst: NAT4,
    };
    set_dport(&mut exp.transport, BACKEND_PORT);
    let exp_frags = exp.build_fragments(48);
    let (v, out, _) = run(config(), &snap, &frags);
    assert_eq!(v, vec![Verdict::ToBackend; 3]);
    assert_eq!(out, exp_frags);
}

#[test]
fn ipv6_fragments_use_the_three_tuple() {
    let snap = udp_only_snapshot();
    let dgram = FrameBuilder::udp_v6(client6(), vip6(), 5353, P_DSR)
        .macs(MAC_CLIENT_GW, MAC_LB)
        .ident(7)
        .payload(&[9u8; 200]);
    let frags = dgram.build_fragments(64);
    assert!(frags.len() >= 3);
    let exp: Vec<Vec<u8>> = dgram
        .clone()
        .macs(MAC_LB, MAC_B_DSR)
        .ttl(63)
        .build_fragments(64);
    let (v, out, _) = run(config(), &snap, &frags);
    assert!(v.iter().all(|v| *v == Verdict::ToBackend), "{v:?}");
    assert_eq!(out, exp);
}

#[test]
fn later_fragment_of_ambiguous_vip_is_dropped() {
    // VIP4 has tcp listeners on different pools and modes: a non-first TCP fragment cannot be
    // attributed to one of them.
    let snap = snapshot();
    let dgram = FrameBuilder::tcp_v4(CLIENT4, VIP4, 5353, P_DSR)
        .macs(MAC_CLIENT_GW, MAC_LB)
        .payload(&[1u8; 100]);
    let frags = dgram.build_fragments(48);
    let (v, _, _) = run(config(), &snap, &frags[1..2]);
    assert_eq!(v[0], Verdict::Drop(DropReason::FragmentAmbiguous));
}

// ---- flow behaviour across snapshots ----

fn multi_backend_set(n: u32) -> ServiceSet {
    ServiceSet {
        listeners: vec![Listener {
            id: ListenerId(1),
            name: "web".into(),
            vip: IpAddr::from(VIP4),
            port: 80,
            protocol: Protocol::Tcp,
            mode: Mode::Dsr,
            encap: Encap::Ipip,
            pool: PoolId(1),
        }],
        pools: vec![Pool {
            id: PoolId(1),
            name: "web".into(),
            algorithm: Algorithm::Maglev,
            table_size: 65537,
        }],
        backends: (1..=n)
            .map(|i| Backend {
                id: BackendId(i),
                pool: PoolId(1),
                address: IpAddr::from([10, 10, 9, i as u8]),
                port: 80,
                weight: 1,
                mac: Some([2, 0, 0, 0, 9, i as u8]),
                admin: AdminState::Enabled,
                healthy: true,
            })
            .collect(),
        tunnel: TunnelSettings::default(),
    }
}

/// Sends one packet per client port and returns the backend MAC's last byte for each.
fn send_flows(
    p: &mut Pipeline,
    snap: &Snapshot,
    ports: std::ops::Range<u16>,
    fl: u8,
    now: u32,
) -> Vec<Option<u8>> {
    let mut port = MemoryPort::new(64, 2048, 256);
    let mut res = Vec::new();
    let ports: Vec<u16> = ports.collect();
    for chunk in ports.chunks(32) {
        for &sp in chunk {
            port.inject(
                &FrameBuilder::tcp_v4(CLIENT4, VIP4, sp, 80)
                    .macs(MAC_CLIENT_GW, MAC_LB)
                    .tcp_flags(fl)
                    .build(),
            )
            .unwrap();
        }
        let mut descs = [Desc::default(); 32];
        let n = port.rx_burst(&mut descs);
        let mut v = vec![Verdict::Drop(DropReason::Malformed); n];
        p.process_burst(snap, &mut port.burst(&mut descs[..n]), &mut v, now);
        for i in 0..n {
            let b = port.burst(&mut descs[..n]).data(i)[5];
            res.push((v[i] == Verdict::ToBackend).then_some(b));
            port.free(descs[i]);
        }
    }
    res
}

#[test]
fn established_flows_keep_their_backend_across_updates() {
    let mut builder = SnapshotBuilder::new(64, 64);
    let mut set = multi_backend_set(3);
    let s1 = builder.build(&set, 1).unwrap();
    let mut p = Pipeline::new(config()).unwrap();
    let first = send_flows(&mut p, &s1, 1000..4000, flags::SYN, 10);
    assert!(first.iter().all(Option::is_some));
    // Roughly even: each of 3 backends between 28% and 39% of 3000 flows.
    for b in 1..=3u8 {
        let n = first.iter().filter(|x| **x == Some(b)).count();
        assert!((840..=1170).contains(&n), "backend {b} got {n} of 3000");
    }
    // Add a fourth backend: Maglev would move ~1/4 of the flows, the flow table keeps all.
    set = multi_backend_set(4);
    let s2 = builder.build(&set, 2).unwrap();
    let again = send_flows(&mut p, &s2, 1000..4000, flags::ACK, 20);
    assert_eq!(first, again, "established flows moved on backend add");
    // New flows do reach the fourth backend.
    let fresh = send_flows(&mut p, &s2, 10000..13000, flags::SYN, 20);
    assert!(fresh.iter().filter(|x| **x == Some(4)).count() > 500);
    // Backend 2 fails its health check: only its flows move; nobody else's.
    set.backends[1].healthy = false;
    let s3 = builder.build(&set, 3).unwrap();
    let after = send_flows(&mut p, &s3, 1000..4000, flags::ACK, 30);
    for (a, b) in first.iter().zip(&after) {
        if *a == Some(2) {
            assert_ne!(*b, Some(2));
            assert!(b.is_some());
        } else {
            assert_eq!(a, b);
        }
    }
    assert!(p.counters().flows_rebalanced > 0);
}

#[test]
fn drained_backend_keeps_existing_flows_but_gets_no_new_ones() {
    let mut builder = SnapshotBuilder::new(64, 64);
    let mut set = multi_backend_set(3);
    let s1 = builder.build(&set, 1).unwrap();
    let mut p = Pipeline::new(config()).unwrap();
    let first = send_flows(&mut p, &s1, 1000..2000, flags::SYN, 10);
    set.backends[0].admin = AdminState::Drained;
    let s2 = builder.build(&set, 2).unwrap();
    let again = send_flows(&mut p, &s2, 1000..2000, flags::ACK, 20);
    assert_eq!(first, again);
    let fresh = send_flows(&mut p, &s2, 20000..22000, flags::SYN, 20);
    assert!(fresh.iter().all(|b| b.is_some() && *b != Some(1)));
    // Disabled: existing flows leave too.
    set.backends[0].admin = AdminState::Disabled;
    let s3 = builder.build(&set, 3).unwrap();
    let moved = send_flows(&mut p, &s3, 1000..2000, flags::ACK, 30);
    assert!(moved.iter().all(|b| b.is_some() && *b != Some(1)));
}

#[test]
fn source_ip_affinity_sends_every_port_of_a_client_to_one_backend() {
    let mut set = multi_backend_set(5);
    set.pools[0].algorithm = Algorithm::MaglevSourceIp;
    let snap = SnapshotBuilder::new(64, 64).build(&set, 1).unwrap();
    let mut p = Pipeline::new(config()).unwrap();
    let got = send_flows(&mut p, &snap, 1000..1500, flags::SYN, 10);
    assert!(got.iter().all(|b| *b == got[0] && b.is_some()));
}

#[test]
fn same_seed_same_choice_on_another_node() {
    // Two pipelines (two nodes) with the same seed and services, no shared state, choose the
    // same backend for every flow; a different seed does not.
    let set = multi_backend_set(7);
    let snap_a = SnapshotBuilder::new(64, 64).build(&set, 1).unwrap();
    let snap_b = SnapshotBuilder::new(64, 64).build(&set, 9).unwrap();
    let mut a = Pipeline::new(config()).unwrap();
    let mut b = Pipeline::new(config()).unwrap();
    let mut c = Pipeline::new(PipelineConfig {
        hash_seed: SEED + 1,
        ..config()
    })
    .unwrap();
    let ra = send_flows(&mut a, &snap_a, 1..2001, flags::SYN, 1);
    let rb = send_flows(&mut b, &snap_b, 1..2001, flags::SYN, 1);
    let rc = send_flows(&mut c, &snap_a, 1..2001, flags::SYN, 1);
    assert_eq!(ra, rb);
    assert_ne!(ra, rc);
}
