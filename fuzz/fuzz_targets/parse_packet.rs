//! Fuzzes the whole packet parse chain of `fiberlb_dataplane::wire`: Ethernet -> VLAN/QinQ ->
//! ARP | IPv4 | IPv6 (+ extension headers) -> TCP | UDP (-> GUE -> inner IP) | ICMP (-> embedded
//! original header) -> inner packet, calling every getter on the way.
//!
//! Beyond "never panics" it checks properties that must hold for any input:
//! - payload slices stay inside their buffers and match the length fields;
//! - the extension-header walk ends inside the payload;
//! - an RFC 1624 incremental checksum update after a NAT-style rewrite leaves a header whose
//!   checksum was right still right, and equal to a full recomputation.
#![no_main]

use fiberlb_dataplane::wire::checksum::{self, PseudoHeader};
use fiberlb_dataplane::wire::ethernet::{ethertype, EthernetFrame};
use fiberlb_dataplane::wire::{
    gue, ip_protocol, ipv6, ports, ArpPacket, ArpRepr, GueHeader, GueRepr, Icmpv4Packet,
    Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, Ipv4Packet, Ipv4Repr, Ipv6Packet, Ipv6Repr, TcpPacket,
    TcpRepr, UdpPacket, UdpRepr, VlanHeader,
};
use libfuzzer_sys::fuzz_target;

/// How deep encapsulations (GUE, IPIP, ICMP-embedded) are followed.
const MAX_DEPTH: u32 = 3;

fuzz_target!(|data: &[u8]| {
    let Ok(eth) = EthernetFrame::new_checked(data) else {
        return;
    };
    let _ = (eth.dst_addr(), eth.src_addr());
    let mut et = eth.ethertype();
    let mut rest = eth.into_payload();
    // Up to two tags (QinQ).
    for _ in 0..2 {
        if et != ethertype::VLAN && et != ethertype::QINQ {
            break;
        }
        let Ok(tag) = VlanHeader::new_checked(rest) else {
            return;
        };
        let _ = (tag.tci(), tag.pcp(), tag.dei(), tag.vid());
        et = tag.inner_ethertype();
        rest = tag.into_payload();
    }
    match et {
        ethertype::ARP => arp(rest),
        ethertype::IPV4 => ipv4(rest, 0),
        ethertype::IPV6 => ipv6(rest, 0),
        _ => {}
    }
});

fn arp(data: &[u8]) {
    if let Ok(p) = ArpPacket::new_checked(data) {
        let _ = (p.hardware_type(), p.protocol_type(), p.operation());
        let r = ArpRepr::parse(&p).expect("checked ARP parses");
        assert_eq!(r.target_proto_addr, p.target_proto_addr());
        assert_eq!(r.sender_hw_addr, p.sender_hw_addr());
    }
}

fn ipv4(data: &[u8], depth: u32) {
    let Ok(ip) = Ipv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        ip.dscp(),
        ip.ecn(),
        ip.ident(),
        ip.dont_frag(),
        ip.ttl(),
        ip.checksum(),
    );
    assert_eq!(ip.version(), 4);
    assert_eq!(ip.options().len(), ip.header_len() - 20);
    assert_eq!(
        ip.payload().len(),
        usize::from(ip.total_len()) - ip.header_len()
    );
    assert_eq!(ip.is_fragment(), ip.more_frags() || ip.frag_offset() != 0);
    let _ = Ipv4Repr::parse(&ip);

    // NAT rewrite with incremental checksum updates on a copy of the header.
    if ip.verify_checksum() {
        let mut hdr = ip.header().to_vec();
        let mut p = Ipv4Packet::new_unchecked(&mut hdr[..]);
        let new_dst = [198, 18, 0, 1];
        let mut c = checksum::update_bytes(p.checksum(), &p.dst_addr(), &new_dst);
        p.set_dst_addr(new_dst);
        let old_word = u16::from_be_bytes([p.ttl(), p.protocol()]);
        p.set_ttl(p.ttl().wrapping_sub(1));
        c = checksum::update_u16(c, old_word, u16::from_be_bytes([p.ttl(), p.protocol()]));
        p.set_checksum(c);
        assert!(
            p.verify_checksum(),
            "incremental IPv4 update broke the checksum"
        );
        p.fill_checksum();
        assert_eq!(
            p.checksum(),
            c,
            "incremental IPv4 update differs from recomputation"
        );
    }

    let ph = PseudoHeader::V4 {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
    };
    let protocol = ip.protocol();
    let first = ip.frag_offset() == 0;
    let whole = !ip.is_fragment();
    let payload = ip.into_payload();
    if !first {
        return;
    }
    if !whole {
        let _ = ports(payload);
        return;
    }
    upper(protocol, payload, &ph, depth);
}

fn ipv6(data: &[u8], depth: u32) {
    let Ok(ip) = Ipv6Packet::new_checked(data) else {
        return;
    };
    let _ = (ip.traffic_class(), ip.flow_label(), ip.hop_limit());
    assert_eq!(ip.version(), 6);
    assert_eq!(ip.payload().len(), usize::from(ip.payload_len()));
    let _ = Ipv6Repr::parse(&ip).expect("checked IPv6 parses");
    let ph = PseudoHeader::V6 {
        src: ip.src_addr(),
        dst: ip.dst_addr(),
    };
    let nh = ip.next_header();
    let payload = ip.into_payload();
    let Ok(w) = ipv6::walk_extension_headers(nh, payload) else {
        return;
    };
    assert!(w.offset <= payload.len(), "walk ended outside the payload");
    let l4 = &payload[w.offset..];
    match w.fragment {
        Some(f) if f.offset != 0 => {}
        Some(_) => {
            let _ = ports(l4);
        }
        None => upper(w.protocol, l4, &ph, depth),
    }
}

fn upper(protocol: u8, data: &[u8], ph: &PseudoHeader, depth: u32) {
    match protocol {
        ip_protocol::TCP => tcp(data, ph),
        ip_protocol::UDP => udp(data, ph, depth),
        ip_protocol::ICMP => icmpv4(data, depth),
        ip_protocol::ICMPV6 => icmpv6(data, ph, depth),
        ip_protocol::IPIP if depth < MAX_DEPTH => ipv4(data, depth + 1),
        ip_protocol::IPV6 if depth < MAX_DEPTH => ipv6(data, depth + 1),
        _ => {}
    }
}

fn tcp(data: &[u8], ph: &PseudoHeader) {
    let Ok(t) = TcpPacket::new_checked(data) else {
        return;
    };
    let _ = (
        t.seq_number(),
        t.ack_number(),
        t.flags(),
        t.window_len(),
        t.urgent_at(),
    );
    let _ = (t.syn(), t.fin(), t.rst(), t.ack(), t.psh(), t.urg());
    assert_eq!(t.options().len() + t.payload().len() + 20, data.len());
    let _ = TcpRepr::parse(&t, Some(ph));
    if t.verify_checksum(ph) {
        let mut seg = data.to_vec();
        let mut p = TcpPacket::new_unchecked(&mut seg[..]);
        let new_port = p.dst_port().wrapping_add(1);
        let c = checksum::update_u16(p.checksum(), p.dst_port(), new_port);
        p.set_dst_port(new_port);
        p.set_checksum(c);
        assert!(
            p.verify_checksum(ph),
            "incremental TCP update broke the checksum"
        );
    }
}

fn udp(data: &[u8], ph: &PseudoHeader, depth: u32) {
    let Ok(u) = UdpPacket::new_checked(data) else {
        return;
    };
    assert_eq!(u.payload().len() + 8, usize::from(u.len()));
    let _ = UdpRepr::parse(&u, Some(ph));
    if u.checksum() != 0 && u.verify_checksum(ph) {
        let mut dg = data.to_vec();
        let mut p = UdpPacket::new_unchecked(&mut dg[..]);
        let new_port = p.src_port() ^ 0x5a5a;
        let c = checksum::udp_update_u16(p.checksum(), p.src_port(), new_port);
        p.set_src_port(new_port);
        p.set_checksum(c);
        assert_ne!(c, 0, "UDP checksum update produced 0");
        assert!(
            p.verify_checksum(ph),
            "incremental UDP update broke the checksum"
        );
    }
    let (src_port, dst_port) = (u.src_port(), u.dst_port());
    let _ = (src_port, dst_port);
    let payload = u.into_payload();
    let Some(&first) = payload.first() else {
        return;
    };
    // Treat every UDP payload as possible GUE: the parser must cope with anything.
    match gue::variant(first) {
        gue::Variant::Header => {
            if let Ok(h) = GueHeader::new_checked(payload) {
                let _ = (
                    h.version(),
                    h.control(),
                    h.hlen(),
                    h.flags(),
                    h.extensions(),
                );
                let r = GueRepr::parse(&h).expect("checked GUE parses");
                assert_eq!(r.buffer_len(), h.header_len());
                let proto = h.proto();
                let inner = h.into_payload();
                if depth < MAX_DEPTH && !r.control {
                    match proto {
                        ip_protocol::IPIP => ipv4(inner, depth + 1),
                        ip_protocol::IPV6 => ipv6(inner, depth + 1),
                        _ => {}
                    }
                }
            }
        }
        gue::Variant::Ipv4 if depth < MAX_DEPTH => ipv4(payload, depth + 1),
        gue::Variant::Ipv6 if depth < MAX_DEPTH => ipv6(payload, depth + 1),
        _ => {}
    }
}

/// The original header embedded in an ICMP error is cut short: read what a load balancer
/// reads from it (addresses, protocol, ports) without requiring it to be whole.
fn embedded_v4(inner: &[u8]) {
    if inner.len() >= 20 && inner[0] >> 4 == 4 {
        let p = Ipv4Packet::new_unchecked(inner);
        let _ = (p.src_addr(), p.dst_addr(), p.protocol());
        let hl = p.header_len();
        if let Some(l4) = inner.get(hl..) {
            let _ = ports(l4);
        }
    }
}

fn icmpv4(data: &[u8], depth: u32) {
    let Ok(i) = Icmpv4Packet::new_checked(data) else {
        return;
    };
    let _ = (
        i.msg_type(),
        i.code(),
        i.checksum(),
        i.rest_of_header(),
        i.next_hop_mtu(),
    );
    let _ = (i.echo_ident(), i.echo_seq_no(), i.verify_checksum());
    let _ = Icmpv4Repr::parse(&i);
    if i.is_error() {
        let inner = i.into_payload();
        embedded_v4(inner);
        if depth < MAX_DEPTH {
            ipv4(inner, depth + 1);
        }
    }
}

fn icmpv6(data: &[u8], ph: &PseudoHeader, depth: u32) {
    let Ok(i) = Icmpv6Packet::new_checked(data) else {
        return;
    };
    let PseudoHeader::V6 { src, dst } = ph else {
        return;
    };
    let _ = (
        i.msg_type(),
        i.code(),
        i.checksum(),
        i.rest_of_header(),
        i.mtu(),
    );
    let _ = (i.echo_ident(), i.echo_seq_no(), i.verify_checksum(src, dst));
    let _ = Icmpv6Repr::parse(&i, src, dst);
    if i.is_error() {
        let inner = i.into_payload();
        if inner.len() >= 40 {
            let p = Ipv6Packet::new_unchecked(inner);
            let _ = (p.src_addr(), p.dst_addr(), p.next_header());
            if let Ok(w) = ipv6::walk_extension_headers(p.next_header(), &inner[40..]) {
                let _ = inner.get(40 + w.offset..).map(ports);
            }
        }
        if depth < MAX_DEPTH {
            ipv6(inner, depth + 1);
        }
    }
}
