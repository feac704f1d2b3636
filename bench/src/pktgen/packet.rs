//! Frame templates for the generator and the parser of the marker the sink reads back.
//!
//! Every generated frame carries a 14-byte *marker*: magic, stream, flow id, sequence number
//! and a 32-bit send timestamp (low bits of `CLOCK_MONOTONIC` in ns, so latencies up to 4 s
//! unwrap). UDP frames carry it at the start of the payload. A minimum-size TCP/IPv4 frame (60
//! bytes) has only 6 payload bytes, so TCP frames carry the sequence number in the TCP sequence
//! field and the timestamp in the acknowledgement field, and magic/stream/flow in the payload.
//!
//! Per packet the generator writes only the varying fields (addresses, ports, marker) into a
//! frame initialised once from the template, and finishes the IPv4 header and L4 checksums from
//! sums precomputed over the constant bytes (RFC 1071 sums are order-free), so no packet is
//! built or summed in full on the hot path.

use std::net::IpAddr;

use fiberlb_dataplane::wire::build::FrameBuilder;
use fiberlb_dataplane::wire::tcp::flags;

/// First byte of every marker.
pub const MAGIC: u8 = 0xfb;
/// Ethernet FCS: sizes on the command line are wire sizes (64 = minimum frame), like RFC 2544.
pub const FCS: usize = 4;
/// Largest wire size (a 1500-byte IP MTU frame plus FCS).
pub const MAX_SIZE: usize = 1518;

/// L4 protocol of the generated flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum L4 {
    Udp,
    TcpSyn,
    TcpAck,
}

/// Where the variable fields sit in a frame, and the sums over its constant bytes.
#[derive(Clone, Debug)]
pub struct Template {
    /// The frame (FCS excluded) with zero addresses, ports and marker.
    pub bytes: Vec<u8>,
    pub v6: bool,
    pub l4: L4,
    ip_off: usize,
    l4_off: usize,
    /// Offsets of magic+stream (2 bytes), flow (4), seq (4), timestamp (4).
    m_tag: usize,
    m_flow: usize,
    m_seq: usize,
    m_ts: usize,
    /// Ones'-complement sums (unfolded) of the constant bytes.
    ip_base: u64,
    l4_base: u64,
    l4_csum_off: usize,
}

/// The fields that vary per packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// Addresses as 16 bytes; IPv4 uses the last 4.
    pub src: [u8; 16],
    pub dst: [u8; 16],
    pub sport: u16,
    pub dport: u16,
    pub stream: u8,
    pub flow: u32,
    pub seq: u32,
    pub ts: u32,
}

/// Errors building a template.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error(
        "packet size {size} is out of range: use {min}..={max} bytes (wire size, FCS included)"
    )]
    Size { size: usize, min: usize, max: usize },
}

#[inline]
fn sum16(b: &[u8]) -> u64 {
    let mut s = 0u64;
    let mut it = b.chunks_exact(2);
    for c in &mut it {
        s += u64::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = it.remainder() {
        s += u64::from(*last) << 8;
    }
    s
}

#[inline]
fn fold(mut s: u64) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

impl Template {
    /// Smallest wire size that holds the headers and the marker.
    pub fn min_size(v6: bool, l4: L4) -> usize {
        let ip = if v6 { 40 } else { 20 };
        let l4len = match l4 {
            L4::Udp => 8 + 14,
            L4::TcpSyn | L4::TcpAck => 20 + 6,
        };
        (14 + ip + l4len).max(60) + FCS
    }

    /// A template of `size` wire bytes with the given MACs.
    pub fn new(
        v6: bool,
        l4: L4,
        size: usize,
        src_mac: [u8; 6],
        dst_mac: [u8; 6],
    ) -> Result<Template, TemplateError> {
        let min = Self::min_size(v6, l4);
        if !(min..=MAX_SIZE).contains(&size) {
            return Err(TemplateError::Size {
                size,
                min,
                max: MAX_SIZE,
            });
        }
        let frame_len = size - FCS;
        let ip_len = if v6 { 40 } else { 20 };
        let hdr = 14
            + ip_len
            + match l4 {
                L4::Udp => 8,
                _ => 20,
            };
        let payload = vec![0u8; frame_len - hdr];
        let b = match (v6, l4) {
            (false, L4::Udp) => FrameBuilder::udp_v4([0; 4], [0; 4], 0, 0),
            (true, L4::Udp) => FrameBuilder::udp_v6([0; 16], [0; 16], 0, 0),
            (false, _) => FrameBuilder::tcp_v4([0; 4], [0; 4], 0, 0),
            (true, _) => FrameBuilder::tcp_v6([0; 16], [0; 16], 0, 0),
        };
        let b = match l4 {
            L4::Udp => b,
            L4::TcpSyn => b.tcp_flags(flags::SYN).tcp_seq(0, 0),
            L4::TcpAck => b.tcp_flags(flags::ACK).tcp_seq(0, 0),
        };
        let mut bytes = b.macs(src_mac, dst_mac).payload(&payload).build();
        bytes.resize(frame_len, 0);
        let ip_off = 14;
        let l4_off = ip_off + ip_len;
        let (m_tag, m_flow, m_seq, m_ts, l4_csum_off) = match l4 {
            L4::Udp => (
                l4_off + 8,
                l4_off + 10,
                l4_off + 14,
                l4_off + 18,
                l4_off + 6,
            ),
            _ => (
                l4_off + 20,
                l4_off + 22,
                l4_off + 4,
                l4_off + 8,
                l4_off + 16,
            ),
        };
        bytes[m_tag] = MAGIC;
        // Constant sums: checksum fields zeroed, variable fields are zero already.
        let mut ip_base = 0;
        if !v6 {
            bytes[ip_off + 10..ip_off + 12].fill(0);
            ip_base = sum16(&bytes[ip_off..l4_off]);
        }
        bytes[l4_csum_off..l4_csum_off + 2].fill(0);
        let l4_len = (frame_len - l4_off) as u64;
        let proto = if l4 == L4::Udp { 17 } else { 6 };
        let l4_base = sum16(&bytes[l4_off..]) + proto + l4_len;
        Ok(Template {
            bytes,
            v6,
            l4,
            ip_off,
            l4_off,
            m_tag,
            m_flow,
            m_seq,
            m_ts,
            ip_base,
            l4_base,
            l4_csum_off,
        })
    }

    /// Frame length without FCS.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Never true: a template holds at least the headers.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Writes the variable fields into `frame` (a copy of `bytes`) and completes its
    /// checksums. Does nothing when `frame` is shorter than the template (never the case for
    /// frames initialised from it).
    #[inline]
    pub fn stamp(&self, frame: &mut [u8], f: &Fields) {
        let Some(frame) = frame.get_mut(..self.bytes.len()) else {
            return;
        };
        let (src, dst): (&[u8], &[u8]) = if self.v6 {
            (&f.src, &f.dst)
        } else {
            (&f.src[12..], &f.dst[12..])
        };
        let (src_off, dst_off) = if self.v6 {
            (self.ip_off + 8, self.ip_off + 24)
        } else {
            (self.ip_off + 12, self.ip_off + 16)
        };
        frame[src_off..src_off + src.len()].copy_from_slice(src);
        frame[dst_off..dst_off + dst.len()].copy_from_slice(dst);
        let addr_sum = sum16(src) + sum16(dst);
        if !self.v6 {
            let c = !fold(self.ip_base + addr_sum);
            frame[self.ip_off + 10..self.ip_off + 12].copy_from_slice(&c.to_be_bytes());
        }
        let l4 = self.l4_off;
        frame[l4..l4 + 2].copy_from_slice(&f.sport.to_be_bytes());
        frame[l4 + 2..l4 + 4].copy_from_slice(&f.dport.to_be_bytes());
        frame[self.m_tag + 1] = f.stream;
        frame[self.m_flow..self.m_flow + 4].copy_from_slice(&f.flow.to_be_bytes());
        frame[self.m_seq..self.m_seq + 4].copy_from_slice(&f.seq.to_be_bytes());
        frame[self.m_ts..self.m_ts + 4].copy_from_slice(&f.ts.to_be_bytes());
        let var = addr_sum
            + u64::from(f.sport)
            + u64::from(f.dport)
            + u64::from(f.stream)
            + u64::from(f.flow >> 16)
            + u64::from(f.flow & 0xffff)
            + u64::from(f.seq >> 16)
            + u64::from(f.seq & 0xffff)
            + u64::from(f.ts >> 16)
            + u64::from(f.ts & 0xffff);
        let mut c = !fold(self.l4_base + var);
        if c == 0 && self.l4 == L4::Udp {
            c = 0xffff;
        }
        frame[self.l4_csum_off..self.l4_csum_off + 2].copy_from_slice(&c.to_be_bytes());
    }
}

/// An address as the 16 bytes [`Fields`] holds.
pub fn addr16(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => {
            let mut b = [0u8; 16];
            b[12..].copy_from_slice(&v4.octets());
            b
        }
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// What the sink learns from one received frame.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Seen {
    /// Destination MAC and (outermost) destination address and (innermost) destination port:
    /// together they name the backend the load balancer chose, whatever its mode (dsr rewrites
    /// the MAC, nat the address and port, tunnel adds an outer header to the backend).
    pub dst_mac: [u8; 6],
    pub dst: [u8; 16],
    pub dport: u16,
    pub stream: u8,
    pub flow: u32,
    pub seq: u32,
    pub ts: u32,
}

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_VLAN: [u16; 2] = [0x8100, 0x88a8];
const GUE_PORT: u16 = fiberlb_shared::model::DEFAULT_GUE_PORT;

#[inline]
fn be16(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_be_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

#[inline]
fn be32(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

/// Parses a frame the generator made, possibly rewritten (nat) or encapsulated once (IPIP,
/// IP6IP6, GUE) on the way. `None` for anything else. Never panics.
pub fn parse(frame: &[u8]) -> Option<Seen> {
    let mut s = Seen {
        dst_mac: frame.get(0..6)?.try_into().ok()?,
        ..Seen::default()
    };
    let mut off = 12;
    let mut et = be16(frame, off)?;
    if ETH_VLAN.contains(&et) {
        off += 4;
        et = be16(frame, off)?;
    }
    off += 2;
    let mut outer = true;
    // At most two IP layers (outer tunnel header, inner packet).
    for _ in 0..2 {
        let (proto, l4) = match et {
            ETH_IPV4 => {
                let ihl = usize::from(*frame.get(off)? & 0x0f) * 4;
                if ihl < 20 {
                    return None;
                }
                if outer {
                    s.dst[12..].copy_from_slice(frame.get(off + 16..off + 20)?);
                }
                (*frame.get(off + 9)?, off + ihl)
            }
            ETH_IPV6 => {
                if outer {
                    s.dst.copy_from_slice(frame.get(off + 24..off + 40)?);
                }
                (*frame.get(off + 6)?, off + 40)
            }
            _ => return None,
        };
        outer = false;
        match proto {
            4 => {
                et = ETH_IPV4;
                off = l4;
            }
            41 => {
                et = ETH_IPV6;
                off = l4;
            }
            17 if be16(frame, l4 + 2)? == GUE_PORT => {
                // GUE variant 1 carries the inner IP header right after the UDP header; variant
                // 0 has a 4-byte header whose proto field names it.
                let first = *frame.get(l4 + 8)?;
                off = l4 + 8;
                et = match first >> 4 {
                    4 => ETH_IPV4,
                    6 => ETH_IPV6,
                    _ => {
                        off += 4 + usize::from(first & 0x1f) * 4;
                        match *frame.get(l4 + 9)? {
                            4 => ETH_IPV4,
                            41 => ETH_IPV6,
                            _ => return None,
                        }
                    }
                };
            }
            17 => {
                s.dport = be16(frame, l4 + 2)?;
                return marker(frame, s, l4 + 8, l4 + 10, l4 + 14, l4 + 18);
            }
            6 => {
                s.dport = be16(frame, l4 + 2)?;
                let doff = usize::from(*frame.get(l4 + 12)? >> 4) * 4;
                let p = l4 + doff;
                return marker(frame, s, p, p + 2, l4 + 4, l4 + 8);
            }
            _ => return None,
        }
    }
    None
}

#[inline]
fn marker(
    frame: &[u8],
    mut s: Seen,
    tag: usize,
    flow: usize,
    seq: usize,
    ts: usize,
) -> Option<Seen> {
    if *frame.get(tag)? != MAGIC {
        return None;
    }
    s.stream = *frame.get(tag + 1)?;
    s.flow = be32(frame, flow)?;
    s.seq = be32(frame, seq)?;
    s.ts = be32(frame, ts)?;
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csum_ok_v4(f: &[u8]) -> bool {
        let ihl = usize::from(f[14] & 15) * 4;
        fold(sum16(&f[14..14 + ihl])) == 0xffff
    }

    fn l4_ok(f: &[u8], v6: bool, proto: u8) -> bool {
        let (l4, pseudo) = if v6 {
            (54, sum16(&f[22..54]))
        } else {
            (34, sum16(&f[26..34]))
        };
        let len = (f.len() - l4) as u64;
        fold(pseudo + u64::from(proto) + len + sum16(&f[l4..])) == 0xffff
    }

    #[test]
    fn stamped_frames_have_valid_checksums_and_parse_back() {
        for v6 in [false, true] {
            for l4 in [L4::Udp, L4::TcpSyn, L4::TcpAck] {
                for size in [
                    Template::min_size(v6, l4),
                    64.max(Template::min_size(v6, l4)),
                    1500,
                    1518,
                ] {
                    let t = Template::new(v6, l4, size, [2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
                        .unwrap();
                    assert_eq!(t.len(), size - FCS);
                    let mut frame = t.bytes.clone();
                    let mut f = Fields {
                        sport: 40000,
                        dport: 80,
                        stream: 3,
                        flow: 0x0102_0304,
                        seq: 0xdead_beef,
                        ts: 0x8000_0001,
                        ..Fields::default()
                    };
                    f.src[12..].copy_from_slice(&[198, 18, 1, 1]);
                    f.dst[12..].copy_from_slice(&[198, 18, 100, 1]);
                    if v6 {
                        f.src = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1];
                        f.dst = [0x20, 1, 0xd, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 9, 0, 1];
                    }
                    t.stamp(&mut frame, &f);
                    if !v6 {
                        assert!(csum_ok_v4(&frame), "{v6} {l4:?} {size}");
                    }
                    let proto = if l4 == L4::Udp { 17 } else { 6 };
                    assert!(l4_ok(&frame, v6, proto), "{v6} {l4:?} {size}");
                    let s = parse(&frame).unwrap();
                    assert_eq!(
                        (s.stream, s.flow, s.seq, s.ts, s.dport),
                        (3, f.flow, f.seq, f.ts, 80)
                    );
                    assert_eq!(s.dst, f.dst);
                    assert_eq!(s.dst_mac, [2, 0, 0, 0, 0, 2]);
                }
            }
        }
    }

    #[test]
    fn sizes_out_of_range_are_refused() {
        assert!(Template::new(false, L4::Udp, 63, [0; 6], [0; 6]).is_err());
        assert!(Template::new(true, L4::Udp, 64, [0; 6], [0; 6]).is_err());
        assert!(Template::new(false, L4::Udp, 1519, [0; 6], [0; 6]).is_err());
        assert_eq!(Template::min_size(false, L4::TcpSyn), 64);
    }

    #[test]
    fn ipip_encapsulated_frames_parse_to_the_outer_destination() {
        let t = Template::new(false, L4::Udp, 64, [0; 6], [9; 6]).unwrap();
        let mut inner = t.bytes.clone();
        let f = Fields {
            flow: 7,
            seq: 9,
            dport: 81,
            ..Fields::default()
        };
        t.stamp(&mut inner, &f);
        let mut outer = inner[..14].to_vec();
        let mut ip = vec![
            0x45, 0, 0, 0, 0, 0, 0, 0, 64, 4, 0, 0, 10, 0, 0, 1, 10, 20, 0, 5,
        ];
        outer.append(&mut ip);
        outer.extend_from_slice(&inner[14..]);
        let s = parse(&outer).unwrap();
        assert_eq!(&s.dst[12..], &[10, 20, 0, 5]);
        assert_eq!((s.flow, s.seq, s.dport), (7, 9, 81));
    }

    #[test]
    fn every_truncation_fails_cleanly() {
        let t = Template::new(false, L4::TcpAck, 64, [0; 6], [0; 6]).unwrap();
        for n in 0..t.len() {
            let _ = parse(&t.bytes[..n]);
        }
        assert!(parse(&t.bytes[..20]).is_none());
    }
}
