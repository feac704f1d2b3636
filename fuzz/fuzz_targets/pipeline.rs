//! Fuzzes the whole per-packet path: `pipeline::parse` -> listener / fragment / nat-return
//! lookup -> flow table -> Maglev -> rewrite (dsr MACs, nat and nat replies, ICMP errors
//! steered to backends, IPIP / IP6IP6 / 4in6 / 6in4 and GUE encapsulation), through both
//! `Pipeline::process_burst` (over a `nic::memory::MemoryPort`, like the real ports: chunks
//! of 2048 bytes with headroom in front) and `Pipeline::process` (one `PacketBuf` per frame).
//!
//! Input: `[config][time step]` then frames as `[len: u16 BE][bytes]` (a length past the end
//! takes the rest). Up to 64 frames, cut in bursts of at most 48 (so `process_burst` also gets
//! more than `BURST` packets), each burst at its own time; the whole list is then replayed
//! once more (flow-table hits). The config byte: bit 0 host path, bit 1 gateway MACs, bits 2-3
//! headroom (256, 0, 24, 44), bits 4-5 MTU (1500, 9000, 1280, 96), bit 6 side MACs, bit 7
//! every other burst uses a second snapshot in which backends are drained / disabled /
//! unhealthy (same builder, so handles carry over and existing flows meet those states).
//!
//! Invariants, beyond "never panics":
//! - counters: `rx = forwarded + to_host + dropped`, and each of forwarded / to_host /
//!   `drops[reason]` / nat_replies equals the number of such verdicts;
//! - `process_burst` and `process` on a twin pipeline give the same verdicts and bytes;
//! - the host path flipped changes only "not ours" drops into `ToHost` (and nat replies to a
//!   local address), nothing else;
//! - the verdict fits what the frame is (a small oracle over the snapshot's public maps):
//!   only listener traffic goes `ToBackend`, only nat replies `ToClient`, a frame the parse
//!   stage accepted is never dropped as `Malformed` by the rewrite stage, TTL <= 1 is never
//!   forwarded;
//! - `ToHost` frames are unchanged;
//! - a `ToBackend` / `ToClient` frame parses again (`pipeline::parse::parse`), carries the
//!   right MACs, goes to a usable backend of the listener's pool (address, port); an IPv4
//!   header whose checksum was right still is, a freshly built outer IPv4 header always is;
//!   TCP/UDP checksums that were right still are (unfragmented), a rewritten ICMP error's
//!   checksum is right, an IPv6 GUE UDP checksum is right; dsr changes nothing but MACs and
//!   TTL; a tunnel packet carries the input IP packet unchanged but for the TTL, keeps the
//!   VLAN tags, and respects the MTU.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::{Arc, LazyLock};

use fiberlb_dataplane::nic::memory::MemoryPort;
use fiberlb_dataplane::packet::{Burst, Desc, PacketBuf};
use fiberlb_dataplane::pipeline::parse::{self, proto, Frag, Parsed};
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, PipelineConfig, Verdict, BURST};
use fiberlb_dataplane::snapshot::{
    BackendRec, ListenerKey, ListenerRec, LocalAddrSet, LocalAddrs, Snapshot, SnapshotBuilder,
};
use fiberlb_dataplane::wire::checksum::PseudoHeader;
use fiberlb_dataplane::wire::{Icmpv4Packet, Icmpv6Packet, Ipv4Packet, TcpPacket, UdpPacket};
use fiberlb_shared::model::*;
use libfuzzer_sys::fuzz_target;

const CHUNK: usize = 2048;
const MAX_FRAMES: usize = 64;
const GROUP: usize = 48;
const GUE_PORT: u16 = 6080;
const BACKEND_PORT: u16 = 8080;
const CLIENT_GW: Mac = [2, 0, 0, 0, 1, 0xfe];
const BACKEND_GW: Mac = [2, 0, 0, 0, 2, 0xfe];
const BACKEND_SIDE: Mac = [2, 0, 0, 0, 3, 1];
const CLIENT_SIDE: Mac = [2, 0, 0, 0, 3, 2];
const TUN_SRC4: [u8; 4] = [10, 10, 0, 1];

fn v6(net: u16, last: u16) -> Ipv6Addr {
    Ipv6Addr::new(0xfd00, net, 0, 0, 0, 0, 0, last)
}

/// The services: on VIP A (10.10.0.100 / fd00::100) every mode — nat tcp/80 and udp/53,
/// dsr tcp+udp/81, tunnel IPIP tcp/82 and udp/85, GUE udp/83 and tcp/84, dsr tcp/90 on a
/// pool without backends — so fragments to A are ambiguous. VIP B (.101 / ::101): dsr
/// tcp/80 + tcp/443 on one pool and nat udp/5353 (fragments go by the fragment map, nat
/// fragments included). VIP C (.102 / ::102): tunnel GUE tcp/1000 and IPIP udp/1000. Tunnel
/// pools hold backends of both families; some backends have no MAC (gateway needed).
/// `alt`: the second snapshot's states (drained, disabled, unhealthy, weight 0).
fn services(alt: bool) -> ServiceSet {
    let mut listeners = Vec::new();
    let mut id = 0;
    for (fam, off) in [(false, 0u32), (true, 100)] {
        let vip = |n: u8| -> IpAddr {
            if fam {
                v6(0, 0x100 + u16::from(n)).into()
            } else {
                Ipv4Addr::new(10, 10, 0, 100 + n).into()
            }
        };
        use Encap::*;
        use Mode::*;
        use Protocol::*;
        for (v, port, protocol, mode, encap, pool) in [
            (0, 80, Tcp, Nat, Ipip, 1),
            (0, 53, Udp, Nat, Ipip, 1),
            (0, 81, Tcp, Dsr, Ipip, 2),
            (0, 81, Udp, Dsr, Ipip, 2),
            (0, 82, Tcp, Tunnel, Ipip, 3),
            (0, 85, Udp, Tunnel, Ipip, 3),
            (0, 83, Udp, Tunnel, Gue, 3),
            (0, 84, Tcp, Tunnel, Gue, 3),
            (0, 90, Tcp, Dsr, Ipip, 4),
            (1, 80, Tcp, Dsr, Ipip, 5),
            (1, 443, Tcp, Dsr, Ipip, 5),
            (1, 5353, Udp, Nat, Ipip, 6),
            (2, 1000, Tcp, Tunnel, Gue, 3),
            (2, 1000, Udp, Tunnel, Ipip, 3),
        ] {
            id += 1;
            let vip = vip(v);
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
    let mut backends = Vec::new();
    let mut add = |pool: u32, address: IpAddr, port: u16, mac: bool, admin, healthy, weight| {
        let id = backends.len() as u32 + 1;
        backends.push(Backend {
            id: BackendId(id),
            pool: PoolId(pool),
            address,
            port,
            weight,
            mac: mac.then_some([2, 0, 0, 0, 2, id as u8]),
            admin,
            healthy,
        });
    };
    let (en, dr, di) = (
        AdminState::Enabled,
        AdminState::Drained,
        AdminState::Disabled,
    );
    // (admin, healthy, weight) in the first snapshot and in the alternative one.
    let st = |a: (AdminState, bool, u32), b: (AdminState, bool, u32)| if alt { b } else { a };
    let ok = (en, true, 1);
    for (fam, off) in [(false, 0u32), (true, 100)] {
        let a = |net: u8, host: u8| -> IpAddr {
            if fam {
                v6(u16::from(net), u16::from(host)).into()
            } else {
                Ipv4Addr::new(10, 10, net, host).into()
            }
        };
        let other = |net: u8, host: u8| -> IpAddr {
            if fam {
                Ipv4Addr::new(10, 10, net, host).into()
            } else {
                v6(u16::from(net), u16::from(host)).into()
            }
        };
        // nat pool: one always enabled, one drained from the start, one that becomes
        // disabled, one that becomes unhealthy.
        let (x, h, w) = ok;
        add(1 + off, a(1, 1), BACKEND_PORT, true, x, h, w);
        let (x, h, w) = (dr, true, 1);
        add(1 + off, a(1, 2), BACKEND_PORT, false, x, h, w);
        let (x, h, w) = st(ok, (di, true, 1));
        add(1 + off, a(1, 3), BACKEND_PORT + 1, true, x, h, w);
        let (x, h, w) = st(ok, (en, false, 1));
        add(1 + off, a(1, 4), BACKEND_PORT, false, x, h, w);
        // dsr pool
        let (x, h, w) = ok;
        add(2 + off, a(2, 1), BACKEND_PORT, true, x, h, w);
        let (x, h, w) = st(ok, (dr, true, 1));
        add(2 + off, a(2, 2), BACKEND_PORT, false, x, h, w);
        // tunnel pool: both families
        let (x, h, w) = ok;
        add(3 + off, a(3, 1), BACKEND_PORT, true, x, h, w);
        add(3 + off, other(3, 2), BACKEND_PORT, false, x, h, w);
        let (x, h, w) = st(ok, (en, true, 0));
        add(3 + off, other(3, 3), BACKEND_PORT, true, x, h, w);
        let (x, h, w) = st(ok, (di, false, 1));
        add(3 + off, a(3, 4), BACKEND_PORT, false, x, h, w);
        // pool 4: none. Pool 5 (dsr on VIP B), pool 6 (nat on VIP B).
        let (x, h, w) = ok;
        add(5 + off, a(5, 1), BACKEND_PORT, true, x, h, w);
        add(6 + off, a(6, 1), 5353, false, x, h, w);
        let (x, h, w) = st(ok, (dr, true, 1));
        add(6 + off, a(6, 2), 5353, true, x, h, w);
    }
    ServiceSet {
        listeners,
        pools: [1, 2, 3, 4, 5, 6, 101, 102, 103, 104, 105, 106]
            .map(pool)
            .to_vec(),
        backends,
        tunnel: TunnelSettings {
            source_v4: Some(Ipv4Addr::from(TUN_SRC4)),
            source_v6: Some(v6(0, 1)),
            gue_port: GUE_PORT,
        },
    }
}

struct World {
    snaps: [Snapshot; 2],
    /// The host's own addresses (a nat backend's packet to one of them is the host's).
    local: Arc<LocalAddrs>,
}

static WORLD: LazyLock<World> = LazyLock::new(|| {
    let mut b = SnapshotBuilder::new(64, 64);
    let a = b.build(&services(false), 1).expect("valid services");
    let alt = b.build(&services(true), 2).expect("valid alt services");
    let local = Arc::new(LocalAddrs::new());
    local.publish(&[
        IpAddr::from([10, 10, 0, 1]),
        IpAddr::from([192, 0, 2, 200]),
        IpAddr::from(v6(0, 1)),
    ]);
    World {
        snaps: [a, alt],
        local,
    }
});

/// `FIBERLB_FUZZ_VERBOSE=1`: print each frame's class and verdict (for checking seeds).
static VERBOSE: LazyLock<bool> =
    LazyLock::new(|| std::env::var_os("FIBERLB_FUZZ_VERBOSE").is_some_and(|v| v == "1"));

#[derive(Clone, Copy, Debug)]
struct Setup {
    host_path: bool,
    gateways: bool,
    headroom: usize,
    mtu: u16,
    side_macs: bool,
    alternate: bool,
    step_ms: u32,
}

impl Setup {
    fn from(cfg: u8, step: u8) -> Setup {
        Setup {
            host_path: cfg & 1 != 0,
            gateways: cfg & 2 != 0,
            headroom: [256, 0, 24, 44][usize::from((cfg >> 2) & 3)],
            mtu: [1500, 9000, 1280, 96][usize::from((cfg >> 4) & 3)],
            side_macs: cfg & 0x40 != 0,
            alternate: cfg & 0x80 != 0,
            step_ms: u32::from(step) * 997,
        }
    }

    fn config(&self, host_path: bool) -> PipelineConfig {
        PipelineConfig {
            flow_capacity: 256,
            backend_side_mac: self.side_macs.then_some(BACKEND_SIDE),
            client_side_mac: self.side_macs.then_some(CLIENT_SIDE),
            backend_gateway_mac: self.gateways.then_some(BACKEND_GW),
            client_gateway_mac: self.gateways.then_some(CLIENT_GW),
            mtu: self.mtu,
            max_listeners: 64,
            max_backends: 64,
            host_path,
            ..PipelineConfig::default()
        }
    }

    fn pipeline(&self, host_path: bool) -> Pipeline {
        let mut p = Pipeline::new(self.config(host_path)).expect("pipeline");
        p.set_local_addrs(WORLD.local.clone());
        p
    }
}

/// Verdicts and output bytes of a run.
type Out = Vec<(Verdict, Vec<u8>)>;

/// Bursts: `(snapshot index, now, frames)`.
type Plan<'a> = Vec<(usize, u32, &'a [Vec<u8>])>;

fn run_burst(s: &Setup, p: &mut Pipeline, plan: &Plan<'_>) -> Out {
    let mut out = Vec::new();
    for &(si, now, frames) in plan {
        let snap = &WORLD.snaps[si];
        let mut port = MemoryPort::new(GROUP, CHUNK, s.headroom);
        for f in frames {
            port.inject(f).expect("fits");
        }
        let mut descs = [Desc::default(); GROUP];
        let n = port.rx_burst(&mut descs);
        assert_eq!(n, frames.len());
        let mut verdicts = [Verdict::Drop(DropReason::Malformed); GROUP];
        let mut done = 0;
        while done < n {
            let mut burst = port.burst(&mut descs[done..n]);
            let k = p.process_burst(snap, &mut burst, &mut verdicts[done..n], now);
            assert_eq!(
                k,
                (n - done).min(BURST),
                "process_burst took {k} of {}",
                n - done
            );
            done += k;
        }
        let burst = port.burst(&mut descs[..n]);
        for (i, v) in verdicts.iter().take(n).enumerate() {
            out.push((*v, burst.data(i).to_vec()));
        }
        p.housekeeping(now, n);
        check_counters(p, &out);
    }
    out
}

fn run_single(s: &Setup, p: &mut Pipeline, plan: &Plan<'_>) -> Out {
    let mut out = Vec::new();
    for &(si, now, frames) in plan {
        let snap = &WORLD.snaps[si];
        for f in frames {
            let mut chunk = vec![0u8; CHUNK];
            chunk[s.headroom..s.headroom + f.len()].copy_from_slice(f);
            let mut pkt = PacketBuf::new(&mut chunk, s.headroom, f.len()).expect("in chunk");
            let v = p.process(snap, &mut pkt, now);
            out.push((v, pkt.data().to_vec()));
        }
        p.housekeeping(now, frames.len());
        check_counters(p, &out);
    }
    out
}

fn check_counters(p: &Pipeline, out: &Out) {
    let c = p.counters();
    assert_eq!(c.rx_packets, out.len() as u64, "{c:?}");
    assert_eq!(
        c.rx_packets,
        c.forwarded + c.to_host + c.dropped(),
        "unbalanced: {c:?}"
    );
    let count = |f: &dyn Fn(&Verdict) -> bool| out.iter().filter(|(v, _)| f(v)).count() as u64;
    assert_eq!(
        c.forwarded,
        count(&|v| matches!(v, Verdict::ToBackend | Verdict::ToClient))
    );
    assert_eq!(c.to_host, count(&|v| *v == Verdict::ToHost));
    assert_eq!(c.nat_replies, count(&|v| *v == Verdict::ToClient));
    for r in DropReason::ALL {
        assert_eq!(
            c.drops[r as usize],
            count(&|v| *v == Verdict::Drop(r)),
            "drops[{}]: {c:?}",
            r.name()
        );
    }
}

fn key(v6: bool, addr: &[u8; 16], port: u16, proto: u8) -> ListenerKey {
    ListenerKey {
        addr: *addr,
        port,
        proto,
        v6,
    }
}

/// What a frame is, as far as the snapshot's public maps tell (the routing of
/// `Pipeline::forward`, restated).
#[derive(Debug)]
enum Class {
    Refused(DropReason),
    /// Traffic for a listener (`icmp`: an ICMP error about one of its flows).
    Listener {
        li: u32,
        icmp: bool,
    },
    NatReply {
        li: u32,
        local: bool,
    },
    /// Not fiberlb's: dropped for this reason, or to the host.
    NotOurs(DropReason),
    /// A later fragment to a VIP whose listeners disagree: dropped even with the host path.
    Ambiguous,
}

fn classify(snap: &Snapshot, frame: &[u8]) -> (Class, Option<Parsed>) {
    let p = match parse::parse(frame) {
        Ok(p) => p,
        Err(r) => return (Class::Refused(r), None),
    };
    let c = match p.proto {
        proto::TCP | proto::UDP if p.frag == Frag::Later => {
            match snap.fragment_map.get(&key(p.v6, &p.dst, 0, p.proto)) {
                Some(&li) => Class::Listener { li, icmp: false },
                None if snap.is_vip_addr(&p.dst, p.v6) => Class::Ambiguous,
                None => Class::NotOurs(DropReason::FragmentAmbiguous),
            }
        }
        proto::TCP | proto::UDP => {
            if let Some(&li) = snap.listener_map.get(&key(p.v6, &p.dst, p.dport, p.proto)) {
                Class::Listener { li, icmp: false }
            } else if let Some(&li) = snap.nat_return.get(&key(p.v6, &p.src, p.sport, p.proto)) {
                let mut set = LocalAddrSet::default();
                WORLD.local.load_into(&mut set);
                Class::NatReply {
                    li,
                    local: set.contains(&p.dst, p.v6),
                }
            } else {
                Class::NotOurs(DropReason::NoListener)
            }
        }
        proto::ICMP | proto::ICMPV6 if (p.proto == proto::ICMPV6) == p.v6 => {
            match parse::icmp_inner(frame, &p) {
                Some(inner) if inner.src == p.dst => {
                    match snap
                        .listener_map
                        .get(&key(p.v6, &inner.src, inner.sport, inner.proto))
                    {
                        Some(&li) => Class::Listener { li, icmp: true },
                        None => Class::NotOurs(DropReason::IcmpNotForVip),
                    }
                }
                _ => Class::NotOurs(DropReason::IcmpNotForVip),
            }
        }
        _ => Class::NotOurs(DropReason::UnsupportedProtocol),
    };
    (c, Some(p))
}

fn addr(frame: &[u8], p: &Parsed, dst: bool) -> [u8; 16] {
    let mut a = [0u8; 16];
    if p.v6 {
        let at = p.l3 + if dst { 24 } else { 8 };
        a.copy_from_slice(&frame[at..at + 16]);
    } else {
        let at = p.l3 + if dst { 16 } else { 12 };
        a[..4].copy_from_slice(&frame[at..at + 4]);
    }
    a
}

fn ttl(frame: &[u8], p: &Parsed) -> u8 {
    frame[p.l3 + if p.v6 { 7 } else { 8 }]
}

fn v4_header_ok(frame: &[u8], l3: usize) -> bool {
    Ipv4Packet::new_checked(&frame[l3..]).is_ok_and(|ip| ip.verify_checksum())
}

fn pseudo(frame: &[u8], p: &Parsed) -> PseudoHeader {
    let (s, d) = (addr(frame, p, false), addr(frame, p, true));
    if p.v6 {
        PseudoHeader::V6 { src: s, dst: d }
    } else {
        PseudoHeader::V4 {
            src: s[..4].try_into().unwrap(),
            dst: d[..4].try_into().unwrap(),
        }
    }
}

/// The L4 checksum of an unfragmented TCP/UDP packet (`None`: not one, or no checksum).
fn l4_ok(frame: &[u8], p: &Parsed) -> Option<bool> {
    if p.frag != Frag::No {
        return None;
    }
    let l4 = frame.get(p.l4..p.l3 + p.ip_len)?;
    let ph = pseudo(frame, p);
    match p.proto {
        proto::TCP => Some(TcpPacket::new_checked(l4).ok()?.verify_checksum(&ph)),
        proto::UDP => {
            let u = UdpPacket::new_checked(l4).ok()?;
            (u.checksum() != 0).then(|| u.verify_checksum(&ph))
        }
        _ => None,
    }
}

/// The IP packet of a frame, with TTL and IPv4 header checksum blanked.
fn ip_masked(frame: &[u8], p: &Parsed) -> Vec<u8> {
    let mut ip = frame[p.l3..p.l3 + p.ip_len].to_vec();
    if p.v6 {
        ip[7] = 0;
    } else {
        ip[8] = 0;
        ip[10] = 0;
        ip[11] = 0;
    }
    ip
}

fn backend_of<'a>(snap: &'a Snapshot, l: &ListenerRec, a: &[u8; 16], v6: bool) -> &'a BackendRec {
    snap.backends
        .iter()
        .flatten()
        .find(|b| b.pool == l.pool && b.addr == *a && b.address.is_ipv6() == v6)
        .unwrap_or_else(|| panic!("sent to {a:?}, not a backend of {}", l.name))
}

fn check_macs(s: &Setup, inp: &[u8], out: &[u8], dst: Mac, side: Mac) {
    assert_eq!(out[..6], dst, "destination MAC");
    let src: Mac = if s.side_macs {
        side
    } else {
        inp[..6].try_into().unwrap()
    };
    assert_eq!(out[6..12], src, "source MAC");
}

/// Checks one verdict and output frame against the input frame.
fn check(s: &Setup, host_path: bool, snap: &Snapshot, inp: &[u8], v: Verdict, out: &[u8]) {
    use DropReason::*;
    let (class, pi) = classify(snap, inp);
    match (&class, v) {
        (_, Verdict::ToHost) => {
            assert!(host_path, "ToHost without the host path");
            assert_eq!(inp, out, "ToHost frame changed");
        }
        _ => {}
    }
    match class {
        Class::Refused(r) => {
            let host = host_path && r == NotIp;
            assert!(
                v == Verdict::Drop(r) || (host && v == Verdict::ToHost),
                "refused by parse ({r:?}) but {v:?}"
            );
        }
        Class::NotOurs(r) => {
            let want = if host_path {
                Verdict::ToHost
            } else {
                Verdict::Drop(r)
            };
            assert_eq!(v, want, "not fiberlb's");
        }
        Class::Ambiguous => assert_eq!(v, Verdict::Drop(FragmentAmbiguous)),
        Class::NatReply { li, local } => {
            let p = pi.unwrap();
            match v {
                Verdict::ToClient => {}
                Verdict::ToHost => assert!(local, "nat reply to a non-local address to host"),
                Verdict::Drop(TtlExceeded) => assert!(ttl(inp, &p) <= 1),
                Verdict::Drop(NoNextHop) => assert!(!s.gateways),
                other => panic!("nat reply: {other:?}"),
            }
            if host_path && local {
                assert_eq!(v, Verdict::ToHost, "nat reply to a local address");
            }
            if v != Verdict::ToClient {
                return;
            }
            let l = &snap.listeners[li as usize];
            assert!(ttl(inp, &p) > 1);
            let po = parse::parse(out).expect("nat reply parses");
            assert_eq!(
                (po.l3, po.v6, po.ip_len, po.proto),
                (p.l3, p.v6, p.ip_len, p.proto)
            );
            check_macs(s, inp, out, CLIENT_GW, CLIENT_SIDE);
            assert_eq!(ttl(out, &po), ttl(inp, &p) - 1);
            assert_eq!(addr(out, &po, false), l.vip_addr, "nat reply source");
            assert_eq!(po.sport, l.port, "nat reply source port");
            assert_eq!(addr(out, &po, true), p.dst);
            assert_eq!(po.dport, p.dport);
            if !p.v6 && v4_header_ok(inp, p.l3) {
                assert!(
                    v4_header_ok(out, po.l3),
                    "nat reply broke the IPv4 checksum"
                );
            }
            if l4_ok(inp, &p) == Some(true) {
                assert_eq!(
                    l4_ok(out, &po),
                    Some(true),
                    "nat reply broke the L4 checksum"
                );
            }
        }
        Class::Listener { li, icmp } => {
            let p = pi.unwrap();
            let l = &snap.listeners[li as usize];
            match v {
                Verdict::ToBackend => {}
                Verdict::Drop(TtlExceeded) => assert!(ttl(inp, &p) <= 1),
                Verdict::Drop(NoNextHop) => assert!(!s.gateways),
                Verdict::Drop(NoBackend) => {}
                Verdict::Drop(TooBigForTunnel) => {
                    assert_eq!(l.mode, Mode::Tunnel);
                    assert!(p.ip_len + 48 > usize::from(s.mtu));
                }
                Verdict::Drop(NoHeadroom) => {
                    assert_eq!(l.mode, Mode::Tunnel);
                    assert!(s.headroom < 48);
                }
                other => panic!("{} ({class:?}): {other:?}", l.name),
            }
            if v != Verdict::ToBackend {
                return;
            }
            assert!(ttl(inp, &p) > 1, "forwarded with TTL {}", ttl(inp, &p));
            let po = parse::parse(out).expect("a frame sent to a backend parses");
            let dst_mac: Mac = out[..6].try_into().unwrap();
            check_macs(s, inp, out, dst_mac, BACKEND_SIDE);
            let mac_ok = |b: &BackendRec| {
                assert_eq!(
                    Some(dst_mac),
                    b.mac.or(s.gateways.then_some(BACKEND_GW)),
                    "MAC for {b:?}"
                );
                assert_ne!(b.usability, Usability::Unusable, "sent to {b:?}");
            };
            match l.mode {
                Mode::Dsr => {
                    assert_eq!(out.len(), inp.len());
                    assert_eq!(
                        ip_masked(out, &po),
                        ip_masked(inp, &p),
                        "dsr changed the packet"
                    );
                    assert_eq!(out[12..p.l3], inp[12..p.l3]);
                    assert_eq!(ttl(out, &po), ttl(inp, &p) - 1);
                    if !p.v6 && v4_header_ok(inp, p.l3) {
                        assert!(v4_header_ok(out, po.l3), "dsr broke the IPv4 checksum");
                    }
                }
                Mode::Nat => {
                    assert_eq!(
                        (po.l3, po.v6, po.ip_len, po.proto),
                        (p.l3, p.v6, p.ip_len, p.proto)
                    );
                    assert_eq!(ttl(out, &po), ttl(inp, &p) - 1);
                    let b = backend_of(snap, l, &addr(out, &po, true), po.v6);
                    mac_ok(b);
                    if !p.v6 && v4_header_ok(inp, p.l3) {
                        assert!(v4_header_ok(out, po.l3), "nat broke the IPv4 checksum");
                    }
                    assert_eq!(addr(out, &po, false), p.src);
                    if icmp {
                        let inner = parse::icmp_inner(out, &po).expect("quote survives");
                        assert_eq!(inner.src, b.addr, "quoted source");
                        assert_eq!(inner.sport, b.port, "quoted source port");
                        let msg = &out[po.l4..po.l3 + po.ip_len];
                        let ok = if po.v6 {
                            let PseudoHeader::V6 { src, dst } = pseudo(out, &po) else {
                                unreachable!()
                            };
                            Icmpv6Packet::new_checked(msg)
                                .unwrap()
                                .verify_checksum(&src, &dst)
                        } else {
                            Icmpv4Packet::new_checked(msg).unwrap().verify_checksum()
                        };
                        assert!(ok, "ICMP checksum after nat");
                    } else {
                        if p.frag != Frag::Later {
                            assert_eq!(po.dport, b.port);
                            assert_eq!(po.sport, p.sport);
                        }
                        if l4_ok(inp, &p) == Some(true) {
                            assert_eq!(l4_ok(out, &po), Some(true), "nat broke the L4 checksum");
                        }
                    }
                }
                Mode::Tunnel => {
                    let b = backend_of(snap, l, &addr(out, &po, true), po.v6);
                    mac_ok(b);
                    let tun_src = if po.v6 {
                        v6(0, 1).octets()
                    } else {
                        let mut a = [0; 16];
                        a[..4].copy_from_slice(&TUN_SRC4);
                        a
                    };
                    assert_eq!(addr(out, &po, false), tun_src, "outer source");
                    assert_eq!(po.l3, p.l3);
                    assert_eq!(out[12..p.l3 - 2], inp[12..p.l3 - 2], "VLAN tags");
                    assert!(po.ip_len <= usize::from(s.mtu), "over the MTU");
                    if !po.v6 {
                        assert!(v4_header_ok(out, po.l3), "outer IPv4 checksum");
                    }
                    let inner_at = match l.encap {
                        Encap::Gue => {
                            assert_eq!(po.proto, proto::UDP);
                            assert_eq!(po.dport, GUE_PORT);
                            let u = &out[po.l4..po.l3 + po.ip_len];
                            let u = UdpPacket::new_checked(u).unwrap();
                            if po.v6 {
                                assert_ne!(u.checksum(), 0);
                                assert!(u.verify_checksum(&pseudo(out, &po)), "GUE checksum");
                            }
                            po.l4 + 8
                        }
                        Encap::Ipip => {
                            let want = if p.v6 { proto::IPV6 } else { proto::IPIP };
                            assert_eq!(po.proto, want);
                            po.l4
                        }
                    };
                    assert_eq!(inner_at + p.ip_len, po.l3 + po.ip_len, "inner length");
                    let inner = Parsed { l3: inner_at, ..p };
                    assert_eq!(
                        ip_masked(out, &inner),
                        ip_masked(inp, &p),
                        "inner packet changed"
                    );
                    assert_eq!(ttl(out, &inner), ttl(inp, &p) - 1);
                    if !p.v6 && v4_header_ok(inp, p.l3) {
                        assert!(v4_header_ok(out, inner_at), "inner IPv4 checksum");
                    }
                }
            }
        }
    }
}

/// Verdicts with the host path off (`off`) and on (`on`) may differ only where a frame is
/// not fiberlb's, or is a nat backend's packet to one of the host's addresses (which with the
/// host path is the host's whatever would have become of it: un-NATed, or dropped for its
/// TTL or a missing next hop).
fn host_path_agrees(
    snap: &Snapshot,
    inp: &[u8],
    off: &(Verdict, Vec<u8>),
    on: &(Verdict, Vec<u8>),
) {
    use DropReason::*;
    let nat_local = matches!(classify(snap, inp).0, Class::NatReply { local: true, .. });
    let ok = off == on
        || on.0 == Verdict::ToHost
            && (matches!(
                off.0,
                Verdict::Drop(NotIp | NoListener | UnsupportedProtocol | IcmpNotForVip)
                    | Verdict::Drop(FragmentAmbiguous)
            ) || nat_local);
    assert!(ok, "host path off: {:?}, on: {:?}", off.0, on.0);
}

fuzz_target!(|data: &[u8]| {
    let [cfg, step, rest @ ..] = data else {
        return;
    };
    let s = Setup::from(*cfg, *step);
    let room = CHUNK - s.headroom;
    let mut frames = Vec::new();
    let mut rest = rest;
    while let [hi, lo, tail @ ..] = rest {
        if frames.len() == MAX_FRAMES {
            break;
        }
        let n = usize::from(u16::from_be_bytes([*hi, *lo])).min(tail.len());
        frames.push(tail[..n.min(room)].to_vec());
        rest = &tail[n..];
    }
    if frames.is_empty() {
        return;
    }
    // The list twice (the second time hits the flows of the first), in bursts of GROUP.
    let mut plan: Plan<'_> = Vec::new();
    let mut now = 1000u32;
    for _ in 0..2 {
        for g in frames.chunks(GROUP) {
            let si = usize::from(s.alternate && plan.len() % 2 == 1);
            plan.push((si, now, g));
            now = now.wrapping_add(s.step_ms);
        }
    }
    let inputs: Vec<(usize, &Vec<u8>)> = plan
        .iter()
        .flat_map(|(si, _, g)| g.iter().map(move |f| (*si, f)))
        .collect();

    let burst = run_burst(&s, &mut s.pipeline(s.host_path), &plan);
    let single = run_single(&s, &mut s.pipeline(s.host_path), &plan);
    for (i, (b, o)) in burst.iter().zip(&single).enumerate() {
        assert_eq!(b.0, o.0, "frame {i}: process_burst vs process verdict");
        if matches!(
            b.0,
            Verdict::ToBackend | Verdict::ToClient | Verdict::ToHost
        ) {
            assert_eq!(b.1, o.1, "frame {i}: process_burst vs process bytes");
        }
    }
    for ((si, inp), (v, out)) in inputs.iter().zip(&burst) {
        if *VERBOSE {
            let (class, _) = classify(&WORLD.snaps[*si], inp);
            eprintln!("{:4}B snap {si} {class:?} -> {v:?}", inp.len());
        }
        check(&s, s.host_path, &WORLD.snaps[*si], inp, *v, out);
    }
    // The same with the host path flipped (set per port by a DPDK worker).
    let mut flipped = s.pipeline(s.host_path);
    flipped.set_host_path(!s.host_path);
    let other = run_burst(&s, &mut flipped, &plan);
    for (((si, inp), a), b) in inputs.iter().zip(&burst).zip(&other) {
        check(&s, !s.host_path, &WORLD.snaps[*si], inp, b.0, &b.1);
        let snap = &WORLD.snaps[*si];
        if s.host_path {
            host_path_agrees(snap, inp, b, a);
        } else {
            host_path_agrees(snap, inp, a, b);
        }
    }
});
