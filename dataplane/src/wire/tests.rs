//! Cross-layer tests: whole frames from `build`, cut at every length, through the full parse
//! chain; arbitrary bytes through the same chain.

use super::build::{FrameBuilder, Ip, Ipv6Ext, Transport};
use super::ethernet::{ethertype, EthernetFrame};
use super::ipv6::walk_extension_headers;
use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layer {
    Ethernet,
    Vlan,
    Ip,
    Ext,
    L4,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Summary {
    vid: Option<u16>,
    src: Vec<u8>,
    dst: Vec<u8>,
    protocol: u8,
    ports: Option<(u16, u16)>,
    l4_payload: Vec<u8>,
    checksums_ok: bool,
}

type Chain = core::result::Result<Summary, (Layer, Error)>;
/// Ports, transport payload, checksum right.
type L4Summary = (Option<(u16, u16)>, Vec<u8>, bool);

fn l4(protocol: u8, data: &[u8], ph: &PseudoHeader) -> core::result::Result<L4Summary, Error> {
    Ok(match protocol {
        ip_protocol::TCP => {
            let t = TcpPacket::new_checked(data)?;
            (
                Some((t.src_port(), t.dst_port())),
                t.payload().to_vec(),
                t.verify_checksum(ph),
            )
        }
        ip_protocol::UDP => {
            let u = UdpPacket::new_checked(data)?;
            (
                Some((u.src_port(), u.dst_port())),
                u.payload().to_vec(),
                u.verify_checksum(ph),
            )
        }
        ip_protocol::ICMP => {
            let i = Icmpv4Packet::new_checked(data)?;
            (None, i.payload().to_vec(), i.verify_checksum())
        }
        ip_protocol::ICMPV6 => {
            let i = Icmpv6Packet::new_checked(data)?;
            let PseudoHeader::V6 { src, dst } = ph else {
                return Err(Error::Malformed);
            };
            (None, i.payload().to_vec(), i.verify_checksum(src, dst))
        }
        _ => (None, data.to_vec(), true),
    })
}

fn l4_ports(protocol: u8, data: &[u8]) -> Option<(u16, u16)> {
    matches!(protocol, ip_protocol::TCP | ip_protocol::UDP)
        .then(|| ports(data))
        .flatten()
}

fn parse_chain(frame: &[u8]) -> Chain {
    let eth = EthernetFrame::new_checked(frame).map_err(|e| (Layer::Ethernet, e))?;
    let (mut et, mut rest, mut vid) = (eth.ethertype(), eth.into_payload(), None);
    if et == ethertype::VLAN || et == ethertype::QINQ {
        let tag = VlanHeader::new_checked(rest).map_err(|e| (Layer::Vlan, e))?;
        et = tag.inner_ethertype();
        vid = Some(tag.vid());
        rest = tag.into_payload();
    }
    match et {
        ethertype::IPV4 => {
            let ip = Ipv4Packet::new_checked(rest).map_err(|e| (Layer::Ip, e))?;
            let ph = PseudoHeader::V4 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
            };
            let (ports, payload, ok) = if ip.frag_offset() != 0 {
                (None, ip.payload().to_vec(), true)
            } else if ip.more_frags() {
                (
                    l4_ports(ip.protocol(), ip.payload()),
                    ip.payload().to_vec(),
                    true,
                )
            } else {
                l4(ip.protocol(), ip.payload(), &ph).map_err(|e| (Layer::L4, e))?
            };
            Ok(Summary {
                vid,
                src: ip.src_addr().to_vec(),
                dst: ip.dst_addr().to_vec(),
                protocol: ip.protocol(),
                ports,
                l4_payload: payload,
                checksums_ok: ok && ip.verify_checksum(),
            })
        }
        ethertype::IPV6 => {
            let ip = Ipv6Packet::new_checked(rest).map_err(|e| (Layer::Ip, e))?;
            let w = walk_extension_headers(ip.next_header(), ip.payload())
                .map_err(|e| (Layer::Ext, e))?;
            let data = &ip.payload()[w.offset..];
            let ph = PseudoHeader::V6 {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
            };
            let (ports, payload, ok) = if w.fragment.is_some_and(|f| f.offset != 0) {
                (None, data.to_vec(), true)
            } else if w.fragment.is_some() {
                (l4_ports(w.protocol, data), data.to_vec(), true)
            } else {
                l4(w.protocol, data, &ph).map_err(|e| (Layer::L4, e))?
            };
            Ok(Summary {
                vid,
                src: ip.src_addr().to_vec(),
                dst: ip.dst_addr().to_vec(),
                protocol: w.protocol,
                ports,
                l4_payload: payload,
                checksums_ok: ok,
            })
        }
        _ => Err((Layer::Ip, Error::Unsupported)),
    }
}

fn arb_builder() -> impl Strategy<Value = FrameBuilder> {
    (
        any::<bool>(),
        any::<[u8; 16]>(),
        any::<[u8; 16]>(),
        0u8..5,
        any::<(u16, u16)>(),
        proptest::option::of(0u16..4096),
        proptest::collection::vec(any::<u8>(), 0..40),
        proptest::collection::vec(any::<u8>(), 0..12),
        0usize..4,
        any::<u8>(),
    )
        .prop_map(
            |(v6, s, d, kind, (sp, dp), vid, payload, opts, n_ext, flags)| {
                let ip = if v6 {
                    Ip::V6 { src: s, dst: d }
                } else {
                    Ip::V4 {
                        src: [s[0], s[1], s[2], s[3]],
                        dst: [d[0], d[1], d[2], d[3]],
                    }
                };
                let transport = match kind {
                    0 => Transport::Tcp {
                        src_port: sp,
                        dst_port: dp,
                        seq: 7,
                        ack: 9,
                        flags,
                        window: 100,
                        options: opts.clone(),
                    },
                    1 => Transport::Udp {
                        src_port: sp,
                        dst_port: dp,
                        checksum: true,
                    },
                    2 if v6 => Transport::Icmpv6 {
                        msg_type: 128,
                        code: 0,
                        rest_of_header: 5,
                    },
                    2 => Transport::Icmpv4 {
                        msg_type: 8,
                        code: 0,
                        rest_of_header: 5,
                    },
                    3 => Transport::Raw {
                        protocol: ip_protocol::ESP,
                    },
                    _ => Transport::Udp {
                        src_port: sp,
                        dst_port: 6080,
                        checksum: true,
                    },
                };
                let mut b = FrameBuilder::new(ip, transport).payload(&payload);
                if let Some(v) = vid {
                    b = b.vlan(v);
                }
                if v6 {
                    for i in 0..n_ext {
                        b = b.ext(if i == 0 {
                            Ipv6Ext::HopByHop(opts.clone())
                        } else {
                            Ipv6Ext::DestOptions(vec![0; i * 3])
                        });
                    }
                } else {
                    b = b.ipv4_options(&opts[..opts.len().min(8)]);
                }
                b
            },
        )
}

proptest! {
    /// Every strict prefix of a valid frame is rejected as `Truncated` exactly at the layer
    /// the cut falls in (IP lengths cover the rest of the frame), and the whole frame parses
    /// to what was built.
    #[test]
    fn every_truncation_is_rejected_at_the_right_layer(b in arb_builder()) {
        let frame = b.build();
        let full = parse_chain(&frame).unwrap();
        prop_assert!(full.checksums_ok);
        prop_assert_eq!(full.vid, b.vlan.map(|v| v.vid));
        prop_assert_eq!(&full.l4_payload, &b.payload);
        let l2 = if b.vlan.is_some() { 18 } else { 14 };
        for n in 0..frame.len() {
            let expected = if n < 14 {
                Layer::Ethernet
            } else if n < l2 {
                Layer::Vlan
            } else {
                Layer::Ip
            };
            prop_assert_eq!(parse_chain(&frame[..n]), Err((expected, Error::Truncated)), "prefix {}", n);
        }
    }

    /// Fragments parse consistently: the first carries ports, later ones none.
    #[test]
    fn fragments_parse(b in arb_builder(), step in 8usize..64) {
        let b = b.payload(&[0x5a; 90]);
        for (i, f) in b.build_fragments(step).iter().enumerate() {
            let s = parse_chain(f).unwrap();
            let expected = match &b.transport {
                Transport::Tcp { src_port, dst_port, .. } | Transport::Udp { src_port, dst_port, .. } if i == 0 => {
                    Some((*src_port, *dst_port))
                }
                _ => None,
            };
            prop_assert_eq!(s.ports, expected);
        }
    }

    /// Arbitrary bytes, and valid frames with random bytes flipped, never panic anywhere in
    /// the chain.
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_chain(&data);
    }

    #[test]
    fn corrupted_frames_never_panic(b in arb_builder(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6)) {
        let mut frame = b.build();
        for (at, v) in flips {
            let i = at % frame.len();
            frame[i] = v;
        }
        let _ = parse_chain(&frame);
    }
}

/// Writes the seed corpus of the `parse_packet` fuzz target (`fuzz/seeds/parse_packet/`):
/// `cargo test -p fiberlb-dataplane --lib wire::tests::write_fuzz_seeds -- --ignored`.
#[test]
#[ignore = "writes files; run by hand to refresh the fuzz seeds"]
#[allow(clippy::vec_init_then_push)] // one seed per statement reads better
fn write_fuzz_seeds() {
    use super::arp::{operation, ArpPacket, ArpRepr};
    use super::build::{icmpv4_frag_needed, icmpv6_packet_too_big};
    use super::ethernet::EthernetRepr;
    use super::gue::GueRepr;
    use super::tcp::flags;

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/parse_packet");
    std::fs::create_dir_all(&dir).unwrap();
    let (a4, b4) = ([10, 0, 0, 1], [10, 0, 0, 100]);
    let a6 = core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets();
    let b6 = core::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0x100).octets();
    let mut seeds: Vec<(&str, Vec<u8>)> = Vec::new();

    seeds.push((
        "tcp4_syn",
        FrameBuilder::tcp_v4(a4, b4, 40000, 80)
            .tcp_flags(flags::SYN)
            .tcp_options(&[2, 4, 5, 0xb4])
            .build(),
    ));
    seeds.push((
        "tcp4_vlan_opts_data",
        FrameBuilder::tcp_v4(a4, b4, 40000, 443)
            .vlan_tag(5, 100)
            .ipv4_options(&[0x94, 4, 0, 0])
            .tcp_flags(flags::ACK | flags::PSH)
            .payload(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            .build(),
    ));
    seeds.push((
        "udp4_dns",
        FrameBuilder::udp_v4(a4, b4, 5353, 53)
            .payload(&[0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
            .build(),
    ));
    seeds.push((
        "udp4_nocsum",
        FrameBuilder::udp_v4(a4, b4, 1, 2)
            .udp_no_checksum()
            .payload(b"x")
            .build(),
    ));
    seeds.push((
        "tcp6_ext",
        FrameBuilder::tcp_v6(a6, b6, 1000, 80)
            .ext(Ipv6Ext::HopByHop(vec![5, 2, 0, 0]))
            .ext(Ipv6Ext::Routing(vec![0; 6]))
            .ext(Ipv6Ext::DestOptions(vec![]))
            .tcp_flags(flags::SYN)
            .build(),
    ));
    seeds.push((
        "udp6",
        FrameBuilder::udp_v6(a6, b6, 9999, 53)
            .payload(b"hello")
            .build(),
    ));
    let frags4 = FrameBuilder::udp_v4(a4, b4, 7, 8)
        .ident(77)
        .payload(&[0xab; 64])
        .build_fragments(32);
    seeds.push(("udp4_frag_first", frags4[0].clone()));
    seeds.push(("udp4_frag_last", frags4[frags4.len() - 1].clone()));
    let frags6 = FrameBuilder::udp_v6(a6, b6, 7, 8)
        .ident(78)
        .payload(&[0xcd; 64])
        .build_fragments(32);
    seeds.push(("udp6_frag_first", frags6[0].clone()));
    seeds.push(("udp6_frag_last", frags6[frags6.len() - 1].clone()));
    let big4 = FrameBuilder::tcp_v4(a4, b4, 40000, 80)
        .dont_frag(true)
        .payload(&[0; 1460])
        .build_ip();
    seeds.push((
        "icmp4_frag_needed",
        icmpv4_frag_needed(
            [2, 0, 0, 0, 0, 9],
            [2, 0, 0, 0, 0, 1],
            [10, 0, 0, 254],
            a4,
            1400,
            &big4[..48],
        ),
    ));
    let big6 = FrameBuilder::tcp_v6(a6, b6, 40000, 80)
        .payload(&[0; 1440])
        .build_ip();
    seeds.push((
        "icmp6_ptb",
        icmpv6_packet_too_big(
            [2, 0, 0, 0, 0, 9],
            [2, 0, 0, 0, 0, 1],
            b6,
            a6,
            1280,
            &big6[..1232],
        ),
    ));
    seeds.push((
        "icmp4_echo",
        FrameBuilder::icmpv4(a4, b4, 8, 0, 0x0001_0001)
            .payload(b"abcdefghijklmnopqrstuvwabcdefghi")
            .build(),
    ));
    seeds.push((
        "icmp6_echo",
        FrameBuilder::icmpv6(a6, b6, 128, 0, 0x1234_0001).build(),
    ));
    // GUE variant 1 (what fiberlb emits): IPv4-in-UDP and IPv6-in-UDP.
    let inner4 = FrameBuilder::tcp_v4(a4, b4, 40000, 80)
        .tcp_flags(flags::SYN)
        .build_ip();
    seeds.push((
        "gue1_v4",
        FrameBuilder::udp_v4([172, 16, 0, 1], [172, 16, 0, 2], 41000, 6080)
            .payload(&inner4)
            .build(),
    ));
    let inner6 = FrameBuilder::udp_v6(a6, b6, 1, 53).payload(b"q").build_ip();
    seeds.push((
        "gue1_v6",
        FrameBuilder::udp_v6(b6, a6, 41000, 6080)
            .payload(&inner6)
            .build(),
    ));
    // GUE variant 0 with one extension word carrying IPIP.
    let mut gue0 = vec![0u8; 8];
    GueRepr {
        control: false,
        hlen: 1,
        proto: ip_protocol::IPIP,
        flags: 0,
    }
    .emit(&mut GueHeader::new_unchecked(&mut gue0[..]));
    gue0.extend_from_slice(&inner4);
    seeds.push((
        "gue0_ipip",
        FrameBuilder::udp_v4([172, 16, 0, 1], [172, 16, 0, 2], 41000, 6080)
            .payload(&gue0)
            .build(),
    ));
    seeds.push((
        "ipip",
        FrameBuilder::new(
            Ip::V4 {
                src: [172, 16, 0, 1],
                dst: [172, 16, 0, 2],
            },
            Transport::Raw {
                protocol: ip_protocol::IPIP,
            },
        )
        .payload(&inner4)
        .build(),
    ));
    // ARP request.
    let mut arp = vec![0u8; 42];
    EthernetRepr {
        src: [2, 0, 0, 0, 0, 1],
        dst: [0xff; 6],
        ethertype: ethertype::ARP,
    }
    .emit(&mut EthernetFrame::new_unchecked(&mut arp[..]));
    ArpRepr {
        operation: operation::REQUEST,
        sender_hw_addr: [2, 0, 0, 0, 0, 1],
        sender_proto_addr: a4,
        target_hw_addr: [0; 6],
        target_proto_addr: b4,
    }
    .emit(&mut ArpPacket::new_unchecked(&mut arp[14..]));
    seeds.push(("arp_request", arp));
    // QinQ: outer 802.1ad tag, inner 802.1Q tag.
    let single = FrameBuilder::udp_v4(a4, b4, 1, 2).vlan(10).build();
    let mut qinq = single[..12].to_vec();
    qinq.extend_from_slice(&[0x88, 0xa8, 0x00, 0x64]);
    qinq.extend_from_slice(&single[12..]);
    seeds.push(("qinq_udp4", qinq));

    for (name, bytes) in seeds {
        assert!(
            parse_chain(&bytes).is_ok() || name == "arp_request" || name == "qinq_udp4",
            "{name}"
        );
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
