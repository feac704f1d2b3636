//! A sample capture for `examples/services.yaml`: client traffic to every listener, replies
//! from nat backends, an ICMP "fragmentation needed" about a VIP flow, fragments, and junk
//! that must be dropped (ARP, truncated frames, no listener, TTL 1).

use std::fs::File;
use std::io::BufWriter;
use std::path::Path;
use std::time::Duration;

use fiberlb_dataplane::wire::build::FrameBuilder;
use fiberlb_dataplane::wire::tcp::flags;
use pcap_file::pcap::{PcapPacket, PcapWriter};

/// MAC of the fiberlb node in the sample.
pub const MAC_LB: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
/// MAC of the router in front of it (clients' next hop).
pub const MAC_ROUTER: [u8; 6] = [0x02, 0, 0, 0, 0, 0xfe];

fn v6(s: &str) -> [u8; 16] {
    s.parse::<std::net::Ipv6Addr>()
        .map(|a| a.octets())
        .unwrap_or_default()
}

/// A DNS query for example.com/A, so tools decode the sample's DNS packets.
const DNS_QUERY: &[u8] =
    b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01";

/// What the sample contains, so tests can check the replay's output against it.
#[derive(Debug, Default, Clone, Copy)]
pub struct SampleCounts {
    pub web_http: usize,
    pub web_tls: usize,
    pub dns_udp: usize,
    pub dns_tcp: usize,
    pub api_v6: usize,
    pub api_v6_nat: usize,
    pub game: usize,
    pub staging: usize,
    pub nat_replies: usize,
    pub icmp: usize,
    pub fragments: usize,
    pub junk: usize,
}

/// The frames of the sample capture and what they contain.
pub fn sample_frames() -> (Vec<Vec<u8>>, SampleCounts) {
    let mut f = Vec::new();
    let mut c = SampleCounts::default();
    let mac = |b: FrameBuilder| b.macs(MAC_ROUTER, MAC_LB).build();
    // 40 HTTP clients, 3 packets each (SYN, ACK+data, FIN).
    for i in 0..40u8 {
        let client = [198, 51, 100, 10 + i];
        let sport = 40000 + u16::from(i);
        for (fl, data) in [
            (flags::SYN, &b""[..]),
            (flags::ACK | flags::PSH, b"GET / HTTP/1.1\r\n\r\n"),
            (flags::FIN | flags::ACK, b""),
        ] {
            f.push(mac(FrameBuilder::tcp_v4(
                client,
                [10, 10, 0, 100],
                sport,
                80,
            )
            .tcp_flags(fl)
            .payload(data)));
            c.web_http += 1;
        }
    }
    // nat replies from web backends to some of them.
    for i in 0..10u8 {
        let backend = [10, 10, 1, 1 + i % 2];
        let b = FrameBuilder::tcp_v4(backend, [198, 51, 100, 10 + i], 8080, 40000 + u16::from(i))
            .tcp_flags(flags::SYN | flags::ACK)
            .macs([0x02, 0, 0, 0, 1, 1 + i % 2], MAC_LB);
        f.push(b.build());
        c.nat_replies += 1;
    }
    // HTTPS over GUE.
    for i in 0..20u8 {
        f.push(mac(FrameBuilder::tcp_v4(
            [203, 0, 113, i],
            [10, 10, 0, 100],
            50000 + u16::from(i),
            443,
        )
        .tcp_flags(flags::SYN)));
        c.web_tls += 1;
    }
    // DNS over UDP and TCP by DSR.
    for i in 0..30u8 {
        f.push(mac(FrameBuilder::udp_v4(
            [192, 0, 2, i],
            [10, 10, 0, 53],
            30000 + u16::from(i),
            53,
        )
        .payload(DNS_QUERY)));
        c.dns_udp += 1;
    }
    for i in 0..5u8 {
        f.push(mac(FrameBuilder::tcp_v4(
            [192, 0, 2, 100 + i],
            [10, 10, 0, 53],
            31000 + u16::from(i),
            53,
        )
        .tcp_flags(flags::SYN)));
        c.dns_tcp += 1;
    }
    // IPv6: IP6IP6 tunnel and NAT66.
    for i in 0..10u16 {
        let client = v6(&format!("2001:db8::{:x}", 0x10 + i));
        f.push(mac(FrameBuilder::tcp_v6(
            client,
            v6("fd00:10::100"),
            41000 + i,
            443,
        )
        .tcp_flags(flags::SYN)));
        c.api_v6 += 1;
        f.push(mac(FrameBuilder::tcp_v6(
            client,
            v6("fd00:10::100"),
            42000 + i,
            8443,
        )
        .tcp_flags(flags::SYN)));
        c.api_v6_nat += 1;
    }
    // Game over UDP with source-IP affinity: 5 clients, 4 ports each.
    for i in 0..5u8 {
        for p in 0..4u16 {
            f.push(mac(FrameBuilder::udp_v4(
                [100, 64, 0, i],
                [10, 10, 0, 200],
                27000 + p,
                27015,
            )
            .payload(b"state")));
            c.game += 1;
        }
    }
    // A pool with no backends: dropped (no_backend).
    f.push(mac(FrameBuilder::udp_v4(
        [100, 64, 1, 1],
        [10, 10, 0, 200],
        5000,
        27016,
    )
    .payload(b"x")));
    c.staging += 1;
    // A fragmented DNS response-sized query (3 fragments) to the DNS VIP.
    let frags = FrameBuilder::udp_v4([192, 0, 2, 200], [10, 10, 0, 53], 33000, 53)
        .ident(0x1234)
        .payload(&[0x55; 120])
        .macs(MAC_ROUTER, MAC_LB)
        .build_fragments(56);
    c.fragments = frags.len();
    f.extend(frags);
    // A router reports a too-small MTU for a reply VIP:80 -> client.
    let quoted = FrameBuilder::tcp_v4([10, 10, 0, 100], [198, 51, 100, 10], 80, 40000)
        .tcp_flags(flags::ACK)
        .payload(&[0; 1400])
        .build_ip();
    f.push(mac(FrameBuilder::icmpv4(
        [198, 51, 100, 254],
        [10, 10, 0, 100],
        3,
        4,
        1400,
    )
    .payload(&quoted[..28])));
    c.icmp = 1;
    // Junk: ARP, a runt, a truncated IPv4 header, a port with no listener, TTL 1.
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC_ROUTER);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.resize(60, 0);
    f.push(arp);
    f.push(vec![0u8; 12]);
    let good = mac(FrameBuilder::tcp_v4(
        [198, 51, 100, 1],
        [10, 10, 0, 100],
        1,
        80,
    ));
    f.push(good[..30].to_vec());
    f.push(mac(FrameBuilder::tcp_v4(
        [198, 51, 100, 1],
        [10, 10, 0, 100],
        1,
        8081,
    )));
    f.push(mac(FrameBuilder::tcp_v4(
        [198, 51, 100, 1],
        [10, 10, 0, 100],
        2,
        80,
    )
    .ttl(1)));
    c.junk = 5;
    (f, c)
}

/// Writes the sample capture to `path`.
///
/// # Errors
/// When the file cannot be written.
pub fn write_sample_capture(path: &Path) -> std::io::Result<SampleCounts> {
    let (frames, counts) = sample_frames();
    let file = BufWriter::new(File::create(path)?);
    let mut w = PcapWriter::new(file).map_err(std::io::Error::other)?;
    for (i, fr) in frames.iter().enumerate() {
        let ts = Duration::from_millis(1_700_000_000_000 + i as u64);
        w.write_packet(&PcapPacket::new(ts, fr.len() as u32, fr))
            .map_err(std::io::Error::other)?;
    }
    Ok(counts)
}
