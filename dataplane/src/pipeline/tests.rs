//! Tests of [`super`].

//! The exception path: which packets are the host's, and the local-address rule.
use super::*;
use crate::packet::{AreaBurst, Desc};
use crate::snapshot::SnapshotBuilder;
use crate::wire::build::{FrameBuilder, Ip, Transport};
use fiberlb_shared::model::*;
use std::net::IpAddr;

const MAC_LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_PEER: [u8; 6] = [2, 0, 0, 0, 0, 2];
const VIP: [u8; 4] = [10, 0, 0, 100];
const HOST: [u8; 4] = [10, 0, 0, 1];
const CLIENT: [u8; 4] = [192, 0, 2, 10];
const BACKEND: [u8; 4] = [10, 1, 0, 1];
const BACKEND_PORT: u16 = 8080;

/// VIP tcp/80 nat and tcp/81 dsr (different pools: a later TCP fragment to the VIP is
/// ambiguous), one backend each.
fn snapshot() -> Snapshot {
    let listener = |id, port, mode, pool| Listener {
        id: ListenerId(id),
        name: format!("vip/{port}"),
        vip: IpAddr::from(VIP),
        port,
        protocol: Protocol::Tcp,
        mode,
        encap: Encap::Ipip,
        pool: PoolId(pool),
    };
    let pool = |id, name: &str| Pool {
        id: PoolId(id),
        name: name.into(),
        algorithm: Algorithm::Maglev,
        table_size: 251,
    };
    let backend = |id, pool, addr: [u8; 4]| Backend {
        id: BackendId(id),
        pool: PoolId(pool),
        address: IpAddr::from(addr),
        port: BACKEND_PORT,
        weight: 1,
        mac: Some([2, 0, 0, 0, 9, id as u8]),
        admin: AdminState::Enabled,
        healthy: true,
    };
    let set = ServiceSet {
        listeners: vec![listener(1, 80, Mode::Nat, 1), listener(2, 81, Mode::Dsr, 2)],
        pools: vec![pool(1, "nat"), pool(2, "dsr")],
        backends: vec![backend(1, 1, BACKEND), backend(2, 2, [10, 1, 0, 2])],
        tunnel: TunnelSettings::default(),
    };
    SnapshotBuilder::new(16, 16).build(&set, 1).unwrap()
}

fn config(host_path: bool) -> PipelineConfig {
    PipelineConfig {
        flow_capacity: 1024,
        client_gateway_mac: Some([2, 0, 0, 0, 1, 0xfe]),
        max_listeners: 16,
        max_backends: 16,
        host_path,
        ..PipelineConfig::default()
    }
}

fn eth(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::new();
    f.extend_from_slice(&MAC_LB);
    f.extend_from_slice(&MAC_PEER);
    f.extend_from_slice(&ethertype.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

fn arp_request() -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&MAC_PEER);
    a.extend_from_slice(&CLIENT);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&HOST);
    let mut f = eth(0x0806, &a);
    f[0..6].copy_from_slice(&[0xff; 6]);
    f
}

fn ip4(b: FrameBuilder) -> Vec<u8> {
    b.macs(MAC_PEER, MAC_LB).build()
}

fn raw4(src: [u8; 4], dst: [u8; 4], protocol: u8) -> Vec<u8> {
    ip4(FrameBuilder::new(Ip::V4 { src, dst }, Transport::Raw { protocol }).payload(&[0; 24]))
}

/// Runs `frames` as one burst; returns the verdicts and the pipeline.
fn run_with(p: &mut Pipeline, snap: &Snapshot, frames: &[Vec<u8>]) -> Vec<Verdict> {
    // One 2048-byte chunk per frame, 256 bytes of headroom (as the memory port lays out).
    const CHUNK: usize = 2048;
    const HEADROOM: usize = 256;
    assert!(frames.len() <= BURST);
    let mut area = vec![0u8; BURST * CHUNK];
    let mut descs = [Desc::default(); BURST];
    for (i, f) in frames.iter().enumerate() {
        let start = i * CHUNK + HEADROOM;
        area[start..start + f.len()].copy_from_slice(f);
        descs[i] = Desc {
            addr: start as u64,
            len: f.len() as u32,
        };
    }
    let n = frames.len();
    let mut verdicts = vec![Verdict::Drop(DropReason::Malformed); n];
    let mut burst = AreaBurst::new(&mut area, CHUNK, &mut descs[..n]);
    assert_eq!(p.process_burst(snap, &mut burst, &mut verdicts, 1000), n);
    verdicts
}

fn run(host_path: bool, frames: &[Vec<u8>]) -> (Vec<Verdict>, Pipeline) {
    let mut p = Pipeline::new(config(host_path)).unwrap();
    let v = run_with(&mut p, &snapshot(), frames);
    (v, p)
}

fn assert_balanced(p: &Pipeline) {
    let c = p.counters();
    assert_eq!(c.rx_packets, c.forwarded + c.to_host + c.dropped(), "{c:?}");
}

/// Each case: name, frame, verdict without the host path, verdict with it.
fn cases() -> Vec<(&'static str, Vec<u8>, Verdict, Verdict)> {
    use DropReason::*;
    let host = Verdict::ToHost;
    let mut vlan_arp = arp_request();
    vlan_arp.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    let icmp_frag_other = {
        // "Fragmentation needed" about the host's own connection (inner src = HOST).
        let inner = FrameBuilder::tcp_v4(HOST, CLIENT, 22, 50000).build_ip();
        ip4(FrameBuilder::icmpv4([198, 51, 100, 1], HOST, 3, 4, 1400).payload(&inner[..28]))
    };
    let v6_host: [u8; 16] = "fd00::1".parse::<std::net::Ipv6Addr>().unwrap().octets();
    let v6_peer: [u8; 16] = "fd00::2".parse::<std::net::Ipv6Addr>().unwrap().octets();
    vec![
        ("arp request", arp_request(), Verdict::Drop(NotIp), host),
        ("arp in a vlan", vlan_arp, Verdict::Drop(NotIp), host),
        ("lldp", eth(0x88cc, &[0; 46]), Verdict::Drop(NotIp), host),
        (
            "ssh to the host",
            ip4(FrameBuilder::tcp_v4(CLIENT, HOST, 50000, 22).tcp_flags(0x02)),
            Verdict::Drop(NoListener),
            host,
        ),
        (
            "bgp to the host",
            ip4(FrameBuilder::tcp_v4(CLIENT, HOST, 50001, 179).tcp_flags(0x02)),
            Verdict::Drop(NoListener),
            host,
        ),
        (
            "tcp to a VIP port without listener",
            ip4(FrameBuilder::tcp_v4(CLIENT, VIP, 50000, 22).tcp_flags(0x02)),
            Verdict::Drop(NoListener),
            host,
        ),
        (
            "udp to the host",
            ip4(FrameBuilder::udp_v4(CLIENT, HOST, 5000, 53).payload(b"q")),
            Verdict::Drop(NoListener),
            host,
        ),
        (
            "icmp echo to the host",
            ip4(FrameBuilder::icmpv4(CLIENT, HOST, 8, 0, 1).payload(&[0; 16])),
            Verdict::Drop(IcmpNotForVip),
            host,
        ),
        (
            "icmp echo to a VIP",
            ip4(FrameBuilder::icmpv4(CLIENT, VIP, 8, 0, 1).payload(&[0; 16])),
            Verdict::Drop(IcmpNotForVip),
            host,
        ),
        (
            "icmp frag-needed not about a VIP flow",
            icmp_frag_other,
            Verdict::Drop(IcmpNotForVip),
            host,
        ),
        (
            "ospf",
            raw4([10, 0, 0, 2], [224, 0, 0, 5], 89),
            Verdict::Drop(UnsupportedProtocol),
            host,
        ),
        (
            "gre to the host",
            raw4(CLIENT, HOST, 47),
            Verdict::Drop(UnsupportedProtocol),
            host,
        ),
        (
            "icmpv6 neighbour solicitation",
            FrameBuilder::icmpv6(v6_peer, v6_host, 135, 0, 0)
                .payload(&[0; 16])
                .macs(MAC_PEER, MAC_LB)
                .build(),
            Verdict::Drop(IcmpNotForVip),
            host,
        ),
        (
            "later fragment to the host",
            ip4(FrameBuilder::tcp_v4(CLIENT, HOST, 50000, 22).fragment(64, false)),
            Verdict::Drop(FragmentAmbiguous),
            host,
        ),
        (
            "later fragment to an ambiguous VIP",
            ip4(FrameBuilder::tcp_v4(CLIENT, VIP, 50000, 80).fragment(64, false)),
            Verdict::Drop(FragmentAmbiguous),
            Verdict::Drop(FragmentAmbiguous),
        ),
        (
            "runt frame",
            vec![0; 10],
            Verdict::Drop(Malformed),
            Verdict::Drop(Malformed),
        ),
        (
            "truncated ipv4",
            eth(0x0800, &[0x45, 0, 0, 20]),
            Verdict::Drop(Malformed),
            Verdict::Drop(Malformed),
        ),
        (
            "VIP traffic",
            ip4(FrameBuilder::tcp_v4(CLIENT, VIP, 50002, 80).tcp_flags(0x02)),
            Verdict::ToBackend,
            Verdict::ToBackend,
        ),
        (
            "nat reply to a client",
            ip4(FrameBuilder::tcp_v4(BACKEND, CLIENT, BACKEND_PORT, 50002).tcp_flags(0x12)),
            Verdict::ToClient,
            Verdict::ToClient,
        ),
    ]
}

#[test]
fn not_ours_goes_to_the_host_only_with_the_host_path() {
    for host_path in [false, true] {
        let all = cases();
        for (name, frame, off, on) in &all {
            let want = if host_path { *on } else { *off };
            let (v, p) = run(host_path, std::slice::from_ref(frame));
            assert_eq!(v[0], want, "{name} (host path {host_path})");
            let c = p.counters();
            assert_eq!(c.to_host, u64::from(want == Verdict::ToHost), "{name}");
            assert_balanced(&p);
        }
        // The whole table as one burst: the counters add up.
        let frames: Vec<Vec<u8>> = all.iter().map(|c| c.1.clone()).collect();
        let (v, p) = run(host_path, &frames);
        let hosted = v.iter().filter(|v| **v == Verdict::ToHost).count() as u64;
        assert_eq!(p.counters().to_host, hosted);
        assert_eq!(p.counters().forwarded, 2);
        assert_balanced(&p);
        // The single-packet API agrees.
        let mut p = Pipeline::new(config(host_path)).unwrap();
        let snap = snapshot();
        let mut buf = arp_request();
        let len = buf.len();
        let mut pkt = PacketBuf::new(&mut buf, 0, len).unwrap();
        let want = if host_path {
            Verdict::ToHost
        } else {
            Verdict::Drop(DropReason::NotIp)
        };
        assert_eq!(p.process(&snap, &mut pkt, 1), want);
        assert_balanced(&p);
    }
}

#[test]
fn a_syn_flood_evicts_no_established_flow() {
    let mut p = Pipeline::new(config(false)).unwrap();
    let snap = snapshot();
    // 200 connections complete their handshake (SYN, then ACK) to the nat VIP.
    for port in 0..200u16 {
        let syn = ip4(FrameBuilder::tcp_v4(CLIENT, VIP, 30000 + port, 80).tcp_flags(0x02));
        let ack = ip4(FrameBuilder::tcp_v4(CLIENT, VIP, 30000 + port, 80).tcp_flags(0x10));
        assert_eq!(
            run_with(&mut p, &snap, &[syn, ack]),
            [Verdict::ToBackend; 2]
        );
    }
    let before = p.flow_table().stats();
    let established_evicted =
        |s: crate::flow_table::FlowTableStats| s.evictions - s.half_open_evictions;
    // 20 000 SYNs from random sources (about 20 times the table's 1024 entries), in
    // bursts: all forwarded, none evicts an established flow.
    let mut frames = Vec::new();
    for i in 0..20_000u32 {
        let src = [172, 16, (i >> 8) as u8, i as u8];
        frames.push(ip4(FrameBuilder::tcp_v4(
            src,
            VIP,
            1024 + (i % 60000) as u16,
            80,
        )
        .tcp_flags(0x02)));
        if frames.len() == BURST {
            let v = run_with(&mut p, &snap, &frames);
            assert!(v.iter().all(|v| *v == Verdict::ToBackend));
            frames.clear();
        }
    }
    let after = p.flow_table().stats();
    assert_eq!(established_evicted(after), established_evicted(before));
    assert!(after.half_open_evictions + after.syn_not_recorded > 0);
    assert_balanced(&p);
}

#[test]
fn host_path_switches_per_port() {
    let mut p = Pipeline::new(config(false)).unwrap();
    let snap = snapshot();
    assert!(!p.host_path());
    p.set_host_path(true);
    assert_eq!(run_with(&mut p, &snap, &[arp_request()]), [Verdict::ToHost]);
    p.set_host_path(false);
    assert_eq!(
        run_with(&mut p, &snap, &[arp_request()]),
        [Verdict::Drop(DropReason::NotIp)]
    );
    assert_eq!(p.counters().to_host, 1);
    assert_balanced(&p);
}

#[test]
fn nat_backend_replies_to_local_addresses_go_to_the_host() {
    let snap = snapshot();
    // A health check from the host (HOST:40000 -> backend) and its reply.
    let reply_to_host =
        ip4(FrameBuilder::tcp_v4(BACKEND, HOST, BACKEND_PORT, 40000).tcp_flags(0x12));
    let reply_to_client =
        ip4(FrameBuilder::tcp_v4(BACKEND, CLIENT, BACKEND_PORT, 40000).tcp_flags(0x12));
    let table = Arc::new(LocalAddrs::new());
    let mut p = Pipeline::new(config(true)).unwrap();
    p.set_local_addrs(table.clone());
    // No local address known yet: it looks like a nat reply.
    assert_eq!(
        run_with(&mut p, &snap, std::slice::from_ref(&reply_to_host)),
        [Verdict::ToClient]
    );
    table.publish(&[IpAddr::from(HOST), "fd00::1".parse().unwrap()]);
    assert_eq!(
        run_with(
            &mut p,
            &snap,
            &[reply_to_host.clone(), reply_to_client.clone()]
        ),
        [Verdict::ToHost, Verdict::ToClient]
    );
    assert_eq!(p.local_addrs().len(), 2);
    assert_eq!(p.counters().to_host, 1);
    assert_eq!(p.counters().nat_replies, 2);
    // Without the host path (a port without a host interface) it is un-NATed as before.
    p.set_host_path(false);
    assert_eq!(
        run_with(&mut p, &snap, std::slice::from_ref(&reply_to_host)),
        [Verdict::ToClient]
    );
    // The address is removed: the next burst sees it.
    p.set_host_path(true);
    table.publish(&[]);
    assert_eq!(
        run_with(&mut p, &snap, &[reply_to_host]),
        [Verdict::ToClient]
    );
    assert!(p.local_addrs().is_empty());
    assert_balanced(&p);
}
