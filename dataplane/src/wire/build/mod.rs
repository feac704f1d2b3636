//! Whole-frame builders for tests and the slow path. These allocate and are never used per
//! packet. Every frame they produce has correct lengths and checksums unless a field is set
//! to something deliberately odd.
//!
//! ```
//! use fiberlb_dataplane::wire::build::{FrameBuilder, Ipv6Ext};
//! use fiberlb_dataplane::wire::tcp::flags;
//! let syn = FrameBuilder::tcp_v4([10, 0, 0, 1], [10, 0, 0, 100], 40000, 80)
//!     .vlan(42)
//!     .tcp_flags(flags::SYN)
//!     .build();
//! let frag = FrameBuilder::udp_v6([0xfd; 16], [0xfe; 16], 5000, 53)
//!     .ext(Ipv6Ext::DestOptions(vec![]))
//!     .payload(&[7; 100])
//!     .build_fragments(48);
//! assert_eq!(frag.len(), 3);
//! ```

use super::checksum::PseudoHeader;
use super::ethernet::{ethertype, EthernetFrame, EthernetRepr};
use super::icmpv4::{self, Icmpv4Packet};
use super::icmpv6::{self, Icmpv6Packet};
use super::ip_protocol;
use super::ipv4::{self, Ipv4Packet, Ipv4Repr};
use super::ipv6::{FragmentHeader, Ipv6Packet, Ipv6Repr};
use super::tcp::{TcpPacket, TcpRepr};
use super::udp::{UdpPacket, UdpRepr};
use super::vlan::{VlanHeader, VlanRepr};

/// Default source MAC of built frames (locally administered).
pub const DEFAULT_SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// Default destination MAC of built frames (locally administered).
pub const DEFAULT_DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

/// Network layer of a built frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ip {
    /// IPv4.
    V4 {
        /// Source.
        src: [u8; 4],
        /// Destination.
        dst: [u8; 4],
    },
    /// IPv6.
    V6 {
        /// Source.
        src: [u8; 16],
        /// Destination.
        dst: [u8; 16],
    },
}

impl Ip {
    fn pseudo(&self) -> PseudoHeader {
        match *self {
            Ip::V4 { src, dst } => PseudoHeader::V4 { src, dst },
            Ip::V6 { src, dst } => PseudoHeader::V6 { src, dst },
        }
    }
}

/// Transport layer of a built frame. The builder's `payload` follows its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// TCP with optional raw option bytes (padded with zeros / EOL to 4 bytes).
    Tcp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Sequence number.
        seq: u32,
        /// Acknowledgement number.
        ack: u32,
        /// Flags byte (see [`super::tcp::flags`]).
        flags: u8,
        /// Window.
        window: u16,
        /// Raw options.
        options: Vec<u8>,
    },
    /// UDP; `checksum: false` writes a zero checksum (legal over IPv4 only).
    Udp {
        /// Source port.
        src_port: u16,
        /// Destination port.
        dst_port: u16,
        /// Whether to compute the checksum.
        checksum: bool,
    },
    /// ICMPv4 message; the payload is its data.
    Icmpv4 {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Rest of header.
        rest_of_header: u32,
    },
    /// ICMPv6 message; the payload is its data.
    Icmpv6 {
        /// Type.
        msg_type: u8,
        /// Code.
        code: u8,
        /// Rest of header.
        rest_of_header: u32,
    },
    /// No transport header: the payload is written as is with this protocol number (for
    /// non-first fragments, IPIP, ESP, ...).
    Raw {
        /// IP protocol / next header.
        protocol: u8,
    },
}

impl Transport {
    fn protocol(&self) -> u8 {
        match self {
            Transport::Tcp { .. } => ip_protocol::TCP,
            Transport::Udp { .. } => ip_protocol::UDP,
            Transport::Icmpv4 { .. } => ip_protocol::ICMP,
            Transport::Icmpv6 { .. } => ip_protocol::ICMPV6,
            Transport::Raw { protocol } => *protocol,
        }
    }
}

/// An IPv6 extension header to put between the fixed header and the transport header, in
/// list order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ipv6Ext {
    /// Hop-by-Hop options: the bytes after next-header/length, zero-padded (Pad1) to 8n-2.
    HopByHop(Vec<u8>),
    /// Routing header: the bytes after next-header/length (type, segments left, ...),
    /// zero-padded to 8n-2.
    Routing(Vec<u8>),
    /// Destination options: like Hop-by-Hop.
    DestOptions(Vec<u8>),
    /// Fragment header.
    Fragment {
        /// Offset in bytes (multiple of 8).
        offset: u16,
        /// M flag.
        more: bool,
        /// Identification.
        ident: u32,
    },
}

impl Ipv6Ext {
    fn number(&self) -> u8 {
        match self {
            Ipv6Ext::HopByHop(_) => ip_protocol::HOP_BY_HOP,
            Ipv6Ext::Routing(_) => ip_protocol::IPV6_ROUTING,
            Ipv6Ext::DestOptions(_) => ip_protocol::IPV6_DEST_OPTS,
            Ipv6Ext::Fragment { .. } => ip_protocol::IPV6_FRAGMENT,
        }
    }

    fn emit(&self, next: u8, out: &mut Vec<u8>) {
        match self {
            Ipv6Ext::HopByHop(body) | Ipv6Ext::Routing(body) | Ipv6Ext::DestOptions(body) => {
                let len = (body.len() + 2).div_ceil(8) * 8;
                let start = out.len();
                out.push(next);
                out.push((len / 8 - 1) as u8);
                out.extend_from_slice(body);
                out.resize(start + len, 0);
            }
            Ipv6Ext::Fragment {
                offset,
                more,
                ident,
            } => {
                let mut b = [0u8; 8];
                let mut f = FragmentHeader::new_unchecked(&mut b[..]);
                f.set_next_header(next);
                f.set_frag_offset_and_more(*offset, *more);
                f.set_ident(*ident);
                out.extend_from_slice(&b);
            }
        }
    }
}

/// Builds a complete Ethernet frame field by field. All fields are public; the methods are
/// shorthands that return the builder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameBuilder {
    /// Source MAC.
    pub src_mac: [u8; 6],
    /// Destination MAC.
    pub dst_mac: [u8; 6],
    /// 802.1Q tag, if any.
    pub vlan: Option<VlanRepr>,
    /// Addresses.
    pub ip: Ip,
    /// IPv4 TTL or IPv6 hop limit.
    pub ttl: u8,
    /// IPv4 DSCP/ECN byte or IPv6 traffic class.
    pub tos: u8,
    /// IPv4 identification (low 16 bits) or the ident of fragment headers
    /// [`FrameBuilder::build_fragments`] adds.
    pub ident: u32,
    /// IPv4 DF flag.
    pub dont_frag: bool,
    /// IPv4 MF flag.
    pub more_frags: bool,
    /// IPv4 fragment offset in bytes (multiple of 8).
    pub frag_offset: u16,
    /// IPv4 options (zero-padded to a multiple of 4; at most 40 bytes).
    pub ipv4_options: Vec<u8>,
    /// IPv6 extension headers, in order.
    pub ipv6_ext: Vec<Ipv6Ext>,
    /// Transport header.
    pub transport: Transport,
    /// Data after the transport header.
    pub payload: Vec<u8>,
}

impl FrameBuilder {
    /// A builder with default MACs, TTL 64, no tag, no options and an empty payload.
    pub fn new(ip: Ip, transport: Transport) -> Self {
        FrameBuilder {
            src_mac: DEFAULT_SRC_MAC,
            dst_mac: DEFAULT_DST_MAC,
            vlan: None,
            ip,
            ttl: 64,
            tos: 0,
            ident: 0,
            dont_frag: false,
            more_frags: false,
            frag_offset: 0,
            ipv4_options: Vec::new(),
            ipv6_ext: Vec::new(),
            transport,
            payload: Vec::new(),
        }
    }

    fn tcp(src_port: u16, dst_port: u16) -> Transport {
        Transport::Tcp {
            src_port,
            dst_port,
            seq: 1,
            ack: 0,
            flags: 0,
            window: 65535,
            options: Vec::new(),
        }
    }

    /// TCP over IPv4 (no flags set; see [`FrameBuilder::tcp_flags`]).
    pub fn tcp_v4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16) -> Self {
        Self::new(Ip::V4 { src, dst }, Self::tcp(src_port, dst_port))
    }

    /// TCP over IPv6.
    pub fn tcp_v6(src: [u8; 16], dst: [u8; 16], src_port: u16, dst_port: u16) -> Self {
        Self::new(Ip::V6 { src, dst }, Self::tcp(src_port, dst_port))
    }

    /// UDP over IPv4 with a checksum.
    pub fn udp_v4(src: [u8; 4], dst: [u8; 4], src_port: u16, dst_port: u16) -> Self {
        Self::new(
            Ip::V4 { src, dst },
            Transport::Udp {
                src_port,
                dst_port,
                checksum: true,
            },
        )
    }

    /// UDP over IPv6.
    pub fn udp_v6(src: [u8; 16], dst: [u8; 16], src_port: u16, dst_port: u16) -> Self {
        Self::new(
            Ip::V6 { src, dst },
            Transport::Udp {
                src_port,
                dst_port,
                checksum: true,
            },
        )
    }

    /// ICMPv4 message.
    pub fn icmpv4(src: [u8; 4], dst: [u8; 4], msg_type: u8, code: u8, rest_of_header: u32) -> Self {
        Self::new(
            Ip::V4 { src, dst },
            Transport::Icmpv4 {
                msg_type,
                code,
                rest_of_header,
            },
        )
    }

    /// ICMPv6 message.
    pub fn icmpv6(
        src: [u8; 16],
        dst: [u8; 16],
        msg_type: u8,
        code: u8,
        rest_of_header: u32,
    ) -> Self {
        Self::new(
            Ip::V6 { src, dst },
            Transport::Icmpv6 {
                msg_type,
                code,
                rest_of_header,
            },
        )
    }

    /// Sets both MACs.
    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// Adds an 802.1Q tag with this VLAN id (priority 0).
    pub fn vlan(self, vid: u16) -> Self {
        self.vlan_tag(0, vid)
    }

    /// Adds an 802.1Q tag with priority and VLAN id.
    pub fn vlan_tag(mut self, pcp: u8, vid: u16) -> Self {
        self.vlan = Some(VlanRepr {
            pcp,
            dei: false,
            vid,
            inner_ethertype: 0,
        });
        self
    }

    /// Sets the TTL / hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// Sets the DSCP/ECN byte / traffic class.
    pub fn tos(mut self, tos: u8) -> Self {
        self.tos = tos;
        self
    }

    /// Sets the identification.
    pub fn ident(mut self, ident: u32) -> Self {
        self.ident = ident;
        self
    }

    /// Sets IPv4 DF.
    pub fn dont_frag(mut self, df: bool) -> Self {
        self.dont_frag = df;
        self
    }

    /// Sets IPv4 fragment offset (bytes) and MF. For a non-first fragment use a
    /// [`Transport::Raw`] transport: the builder does not cut the transport header off.
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.frag_offset = offset;
        self.more_frags = more;
        self
    }

    /// Sets IPv4 options.
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options.to_vec();
        self
    }

    /// Appends an IPv6 extension header.
    pub fn ext(mut self, ext: Ipv6Ext) -> Self {
        self.ipv6_ext.push(ext);
        self
    }

    /// Sets the TCP flags (no effect on other transports).
    pub fn tcp_flags(mut self, f: u8) -> Self {
        if let Transport::Tcp { flags, .. } = &mut self.transport {
            *flags = f;
        }
        self
    }

    /// Sets TCP sequence and acknowledgement numbers.
    pub fn tcp_seq(mut self, seq_number: u32, ack_number: u32) -> Self {
        if let Transport::Tcp { seq, ack, .. } = &mut self.transport {
            *seq = seq_number;
            *ack = ack_number;
        }
        self
    }

    /// Sets raw TCP options.
    pub fn tcp_options(mut self, opts: &[u8]) -> Self {
        if let Transport::Tcp { options, .. } = &mut self.transport {
            *options = opts.to_vec();
        }
        self
    }

    /// Writes a zero UDP checksum ("none").
    pub fn udp_no_checksum(mut self) -> Self {
        if let Transport::Udp { checksum, .. } = &mut self.transport {
            *checksum = false;
        }
        self
    }

    /// Sets the data after the transport header.
    pub fn payload(mut self, data: &[u8]) -> Self {
        self.payload = data.to_vec();
        self
    }

    /// The transport header and payload, checksummed as one unfragmented segment.
    pub fn transport_bytes(&self) -> Vec<u8> {
        let pseudo = self.ip.pseudo();
        match &self.transport {
            Transport::Tcp {
                src_port,
                dst_port,
                seq,
                ack,
                flags,
                window,
                options,
            } => {
                let opt_len = options.len().div_ceil(4) * 4;
                let hlen = 20 + opt_len;
                let mut buf = vec![0u8; hlen + self.payload.len()];
                let repr = TcpRepr {
                    src_port: *src_port,
                    dst_port: *dst_port,
                    seq_number: *seq,
                    ack_number: *ack,
                    flags: *flags,
                    window_len: *window,
                };
                let mut p = TcpPacket::new_unchecked(&mut buf[..]);
                repr.emit(&mut p, &[], None);
                p.set_header_len(hlen);
                p.options_mut()[..options.len()].copy_from_slice(options);
                p.payload_mut().copy_from_slice(&self.payload);
                p.fill_checksum(&pseudo);
                buf
            }
            Transport::Udp {
                src_port,
                dst_port,
                checksum,
            } => {
                let repr = UdpRepr {
                    src_port: *src_port,
                    dst_port: *dst_port,
                };
                let mut buf = vec![0u8; repr.buffer_len(self.payload.len())];
                let ph = if *checksum { Some(&pseudo) } else { None };
                repr.emit(
                    &mut UdpPacket::new_unchecked(&mut buf[..]),
                    &self.payload,
                    ph,
                );
                buf
            }
            Transport::Icmpv4 {
                msg_type,
                code,
                rest_of_header,
            } => {
                let mut buf = vec![0u8; icmpv4::HEADER_LEN + self.payload.len()];
                let mut p = Icmpv4Packet::new_unchecked(&mut buf[..]);
                p.set_msg_type(*msg_type);
                p.set_code(*code);
                p.set_rest_of_header(*rest_of_header);
                p.payload_mut().copy_from_slice(&self.payload);
                p.fill_checksum();
                buf
            }
            Transport::Icmpv6 {
                msg_type,
                code,
                rest_of_header,
            } => {
                let mut buf = vec![0u8; icmpv6::HEADER_LEN + self.payload.len()];
                let mut p = Icmpv6Packet::new_unchecked(&mut buf[..]);
                p.set_msg_type(*msg_type);
                p.set_code(*code);
                p.set_rest_of_header(*rest_of_header);
                p.payload_mut().copy_from_slice(&self.payload);
                let (src, dst) = match self.ip {
                    Ip::V6 { src, dst } => (src, dst),
                    Ip::V4 { src, dst } => (v4_mapped(src), v4_mapped(dst)),
                };
                p.fill_checksum(&src, &dst);
                buf
            }
            Transport::Raw { .. } => self.payload.clone(),
        }
    }

    /// The IP packet (header, options / extension headers, transport, payload).
    pub fn build_ip(&self) -> Vec<u8> {
        let l4 = self.transport_bytes();
        self.ip_packet(&l4, self.frag_offset, self.more_frags, None)
    }

    /// IP header(s) around `data`; for IPv6, `v6_frag` appends a Fragment header after the
    /// configured extension headers.
    fn ip_packet(
        &self,
        data: &[u8],
        frag_offset: u16,
        more: bool,
        v6_frag: Option<(u16, bool)>,
    ) -> Vec<u8> {
        match self.ip {
            Ip::V4 { src, dst } => {
                let opt_len = self.ipv4_options.len().div_ceil(4) * 4;
                let hlen = ipv4::HEADER_LEN + opt_len;
                let mut buf = vec![0u8; hlen + data.len()];
                let repr = Ipv4Repr {
                    src,
                    dst,
                    protocol: self.transport.protocol(),
                    payload_len: data.len(),
                    ttl: self.ttl,
                    dscp: self.tos >> 2,
                    ecn: self.tos & 3,
                    ident: self.ident as u16,
                    dont_frag: self.dont_frag,
                };
                let mut p = Ipv4Packet::new_unchecked(&mut buf[..]);
                repr.emit(&mut p);
                p.set_header_len(hlen);
                p.set_total_len((hlen + data.len()) as u16);
                p.options_mut()[..self.ipv4_options.len()].copy_from_slice(&self.ipv4_options);
                p.set_more_frags(more);
                p.set_frag_offset(frag_offset);
                p.payload_mut().copy_from_slice(data);
                p.fill_checksum();
                buf
            }
            Ip::V6 { src, dst } => {
                let mut exts: Vec<Ipv6Ext> = self.ipv6_ext.clone();
                if let Some((offset, more)) = v6_frag {
                    exts.push(Ipv6Ext::Fragment {
                        offset,
                        more,
                        ident: self.ident,
                    });
                }
                let mut chain = Vec::new();
                for (i, e) in exts.iter().enumerate() {
                    let next = exts
                        .get(i + 1)
                        .map_or(self.transport.protocol(), Ipv6Ext::number);
                    e.emit(next, &mut chain);
                }
                let first = exts
                    .first()
                    .map_or(self.transport.protocol(), Ipv6Ext::number);
                let payload_len = chain.len() + data.len();
                let repr = Ipv6Repr {
                    src,
                    dst,
                    next_header: first,
                    payload_len,
                    hop_limit: self.ttl,
                    traffic_class: self.tos,
                    flow_label: 0,
                };
                let mut buf = vec![0u8; 40 + payload_len];
                repr.emit(&mut Ipv6Packet::new_unchecked(&mut buf[..]));
                buf[40..40 + chain.len()].copy_from_slice(&chain);
                buf[40 + chain.len()..].copy_from_slice(data);
                buf
            }
        }
    }

    fn ethernet(&self, ip: &[u8]) -> Vec<u8> {
        let et = match self.ip {
            Ip::V4 { .. } => ethertype::IPV4,
            Ip::V6 { .. } => ethertype::IPV6,
        };
        let tag_len = if self.vlan.is_some() { 4 } else { 0 };
        let mut buf = vec![0u8; 14 + tag_len + ip.len()];
        let mut f = EthernetFrame::new_unchecked(&mut buf[..]);
        let outer = if self.vlan.is_some() {
            ethertype::VLAN
        } else {
            et
        };
        EthernetRepr {
            src: self.src_mac,
            dst: self.dst_mac,
            ethertype: outer,
        }
        .emit(&mut f);
        if let Some(tag) = self.vlan {
            let repr = VlanRepr {
                inner_ethertype: et,
                ..tag
            };
            repr.emit(&mut VlanHeader::new_unchecked(f.payload_mut()));
        }
        buf[14 + tag_len..].copy_from_slice(ip);
        buf
    }

    /// The whole Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        self.ethernet(&self.build_ip())
    }

    /// The transport segment cut into fragments carrying at most `max_data` bytes each
    /// (rounded down to a multiple of 8, at least 8), as whole Ethernet frames in order.
    /// IPv4 fragments get MF/offset; IPv6 fragments a Fragment header after the configured
    /// extension headers (ident from [`FrameBuilder::ident`]). The builder's own
    /// fragment fields are ignored.
    pub fn build_fragments(&self, max_data: usize) -> Vec<Vec<u8>> {
        let step = (max_data / 8 * 8).max(8);
        let l4 = self.transport_bytes();
        let mut out = Vec::new();
        let mut offset = 0;
        while offset < l4.len() || offset == 0 {
            let end = (offset + step).min(l4.len());
            let more = end < l4.len();
            let off16 = offset as u16;
            let ip = match self.ip {
                Ip::V4 { .. } => self.ip_packet(&l4[offset..end], off16, more, None),
                Ip::V6 { .. } => self.ip_packet(&l4[offset..end], 0, false, Some((off16, more))),
            };
            out.push(self.ethernet(&ip));
            if !more {
                break;
            }
            offset = end;
        }
        out
    }
}

fn v4_mapped(a: [u8; 4]) -> [u8; 16] {
    core::net::Ipv4Addr::from(a).to_ipv6_mapped().octets()
}

/// A TCP/IPv4 frame.
#[allow(clippy::too_many_arguments)]
pub fn tcp_v4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    FrameBuilder::tcp_v4(src, dst, sport, dport)
        .macs(src_mac, dst_mac)
        .tcp_flags(flags)
        .payload(payload)
        .build()
}

/// A TCP/IPv6 frame.
#[allow(clippy::too_many_arguments)]
pub fn tcp_v6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    FrameBuilder::tcp_v6(src, dst, sport, dport)
        .macs(src_mac, dst_mac)
        .tcp_flags(flags)
        .payload(payload)
        .build()
}

/// A UDP/IPv4 frame with a checksum.
pub fn udp_v4(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    FrameBuilder::udp_v4(src, dst, sport, dport)
        .macs(src_mac, dst_mac)
        .payload(payload)
        .build()
}

/// A UDP/IPv6 frame.
pub fn udp_v6(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    FrameBuilder::udp_v6(src, dst, sport, dport)
        .macs(src_mac, dst_mac)
        .payload(payload)
        .build()
}

/// An ICMPv4 "fragmentation needed" (type 3 code 4) frame from `src` (a router) to `dst`,
/// with next-hop `mtu`, embedding `inner` as given (normally the start of the packet that
/// was too big: its IP header and at least 8 bytes).
pub fn icmpv4_frag_needed(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 4],
    dst: [u8; 4],
    mtu: u16,
    inner: &[u8],
) -> Vec<u8> {
    FrameBuilder::icmpv4(
        src,
        dst,
        icmpv4::DEST_UNREACHABLE,
        icmpv4::FRAG_NEEDED,
        u32::from(mtu),
    )
    .macs(src_mac, dst_mac)
    .payload(inner)
    .build()
}

/// An ICMPv6 "packet too big" frame from `src` to `dst` with `mtu`, embedding `inner` as
/// given (normally as much of the original packet as fits in 1280 bytes).
pub fn icmpv6_packet_too_big(
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: [u8; 16],
    dst: [u8; 16],
    mtu: u32,
    inner: &[u8],
) -> Vec<u8> {
    FrameBuilder::icmpv6(src, dst, icmpv6::PACKET_TOO_BIG, 0, mtu)
        .macs(src_mac, dst_mac)
        .payload(inner)
        .build()
}

#[cfg(test)]
mod tests;
