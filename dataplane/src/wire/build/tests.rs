//! Tests of [`super`].

use super::*;
use crate::wire::ipv6::{walk_extension_headers, FragmentInfo};
use crate::wire::tcp::flags;
use crate::wire::{gue, Error};

const MAC_A: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xaa];
const MAC_B: [u8; 6] = [0x52, 0x54, 0, 0, 0, 0xbb];
const V6_A: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const V6_B: [u8; 16] = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];

#[test]
fn tcp_v4_golden_syn() {
    // 10.0.0.1:40000 -> 10.0.0.100:80 SYN, seq 1, window 65535, TTL 64, ident 0, no DF.
    // IPv4 and TCP checksums computed independently (Python reference RFC 1071 sum).
    let f = tcp_v4(
        MAC_A,
        MAC_B,
        [10, 0, 0, 1],
        [10, 0, 0, 100],
        40000,
        80,
        flags::SYN,
        &[],
    );
    let expected: [u8; 54] = [
        0x52, 0x54, 0, 0, 0, 0xbb, 0x52, 0x54, 0, 0, 0, 0xaa, 0x08, 0x00, // ethernet
        0x45, 0x00, 0x00, 0x28, 0x00, 0x00, 0x00, 0x00, 0x40, 0x06, 0x66, 0x6c, 10, 0, 0, 1, 10, 0,
        0, 100, // ipv4
        0x9c, 0x40, 0x00, 0x50, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0xfe, 0xec, 0,
        0, // tcp
    ];
    assert_eq!(f, expected);
}

#[test]
fn frames_parse_and_verify() {
    let f = FrameBuilder::udp_v4([192, 0, 2, 1], [198, 51, 100, 7], 1111, 53)
        .vlan_tag(3, 77)
        .ipv4_options(&[0x94, 0x04, 0, 0]) // router alert
        .dont_frag(true)
        .ident(0x4242)
        .ttl(9)
        .payload(b"hello")
        .build();
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    assert_eq!(eth.ethertype(), ethertype::VLAN);
    let tag = VlanHeader::new_checked(eth.payload()).unwrap();
    assert_eq!(
        (tag.pcp(), tag.vid(), tag.inner_ethertype()),
        (3, 77, ethertype::IPV4)
    );
    let ip = Ipv4Packet::new_checked(tag.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(
        (ip.header_len(), ip.ttl(), ip.ident(), ip.dont_frag()),
        (24, 9, 0x4242, true)
    );
    assert_eq!(ip.options(), &[0x94, 0x04, 0, 0]);
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    let ph = PseudoHeader::V4 {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
    };
    assert!(udp.checksum() != 0 && udp.verify_checksum(&ph));
    assert_eq!(udp.payload(), b"hello");

    let f = FrameBuilder::tcp_v6(V6_A, V6_B, 5, 443)
        .ext(Ipv6Ext::HopByHop(vec![]))
        .ext(Ipv6Ext::Routing(vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 0]))
        .ext(Ipv6Ext::DestOptions(vec![1, 0]))
        .tcp_flags(flags::ACK | flags::PSH)
        .tcp_options(&[1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2])
        .payload(b"GET /")
        .build();
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    let w = walk_extension_headers(ip.next_header(), ip.payload()).unwrap();
    assert_eq!(
        (w.protocol, w.offset, w.fragment),
        (ip_protocol::TCP, 8 + 16 + 8, None)
    );
    let tcp = TcpPacket::new_checked(&ip.payload()[w.offset..]).unwrap();
    assert_eq!(tcp.header_len(), 32);
    assert!(tcp.verify_checksum(&PseudoHeader::V6 {
        src: V6_A,
        dst: V6_B
    }));
    assert_eq!(tcp.payload(), b"GET /");
}

#[test]
fn fragments_reassemble() {
    let payload: Vec<u8> = (0..200u8).collect();
    for v6 in [false, true] {
        let b = if v6 {
            FrameBuilder::udp_v6(V6_A, V6_B, 9, 10).ext(Ipv6Ext::DestOptions(vec![]))
        } else {
            FrameBuilder::udp_v4([1, 1, 1, 1], [2, 2, 2, 2], 9, 10)
        }
        .ident(0xabcd)
        .payload(&payload);
        let frags = b.build_fragments(100);
        assert_eq!(frags.len(), 3); // 208 bytes of UDP in 96 + 96 + 16
        let mut whole = Vec::new();
        for (i, f) in frags.iter().enumerate() {
            let eth = EthernetFrame::new_checked(&f[..]).unwrap();
            let (data, info) = if v6 {
                let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
                let w = walk_extension_headers(ip.next_header(), ip.payload()).unwrap();
                assert_eq!(w.protocol, ip_protocol::UDP);
                (ip.payload()[w.offset..].to_vec(), w.fragment.unwrap())
            } else {
                let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
                assert!(ip.verify_checksum() && ip.is_fragment());
                (
                    ip.payload().to_vec(),
                    FragmentInfo {
                        offset: ip.frag_offset(),
                        more: ip.more_frags(),
                        ident: u32::from(ip.ident()),
                    },
                )
            };
            assert_eq!(
                info,
                FragmentInfo {
                    offset: (i * 96) as u16,
                    more: i < 2,
                    ident: 0xabcd
                }
            );
            whole.extend(data);
        }
        assert_eq!(whole, b.transport_bytes());
    }
}

#[test]
fn icmp_errors_embed_inner() {
    let inner = FrameBuilder::tcp_v4([10, 0, 0, 1], [10, 0, 0, 100], 40000, 80)
        .payload(&[0; 1400])
        .build_ip();
    let f = icmpv4_frag_needed(
        MAC_A,
        MAC_B,
        [10, 0, 0, 254],
        [10, 0, 0, 1],
        1300,
        &inner[..28],
    );
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.protocol(), ip_protocol::ICMP);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum());
    assert_eq!(
        (icmp.msg_type(), icmp.code(), icmp.next_hop_mtu()),
        (3, 4, 1300)
    );
    let emb = Ipv4Packet::new_unchecked(icmp.payload());
    assert_eq!(
        Ipv4Packet::new_checked(icmp.payload()).unwrap_err(),
        Error::Truncated
    );
    assert_eq!(
        (emb.src_addr(), emb.dst_addr()),
        ([10, 0, 0, 1], [10, 0, 0, 100])
    );
    assert_eq!(&icmp.payload()[20..24], &[0x9c, 0x40, 0x00, 0x50]);

    let inner6 = FrameBuilder::udp_v6(V6_A, V6_B, 1, 2)
        .payload(&[1; 1500])
        .build_ip();
    let f = icmpv6_packet_too_big(MAC_A, MAC_B, V6_B, V6_A, 1280, &inner6[..1232]);
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    let ip = Ipv6Packet::new_checked(eth.payload()).unwrap();
    assert_eq!(ip.next_header(), ip_protocol::ICMPV6);
    assert_eq!(ip.payload_len(), 1240);
    let icmp = Icmpv6Packet::new_checked(ip.payload()).unwrap();
    assert!(icmp.verify_checksum(&V6_B, &V6_A));
    assert_eq!(
        (icmp.msg_type(), icmp.mtu()),
        (icmpv6::PACKET_TOO_BIG, 1280)
    );
    assert_eq!(&icmp.payload()[8..24], &V6_A);
}

#[test]
fn gue_variant1_encap() {
    let inner = FrameBuilder::tcp_v4([10, 0, 0, 1], [10, 0, 0, 100], 40000, 80).build_ip();
    let f = FrameBuilder::udp_v4([172, 16, 0, 1], [172, 16, 0, 2], 33333, 6080)
        .payload(&inner)
        .build();
    let eth = EthernetFrame::new_checked(&f[..]).unwrap();
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    let udp = UdpPacket::new_checked(ip.payload()).unwrap();
    assert_eq!(gue::variant(udp.payload()[0]), gue::Variant::Ipv4);
    assert_eq!(
        Ipv4Packet::new_checked(udp.payload()).unwrap().dst_addr(),
        [10, 0, 0, 100]
    );
}
