//! AF_XDP reflector and flooder, for trying the backend by hand and for a quick throughput
//! figure (root; run each side inside its network namespace with `ip netns exec`).
//!
//! ```text
//! xsk_reflect reflect IFACE VIP PORT SECONDS
//!     XDP program on IFACE redirects UDP to VIP:PORT; each packet goes back with MACs, IPs
//!     and ports swapped. Prints packets/s every second.
//! xsk_reflect flood IFACE SRC_MAC DST_MAC SRC_IP DST_IP PORT SECONDS
//!     Sends 60-byte UDP frames (source ports varied) as fast as AF_XDP TX takes them.
//! ```

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use fiberlb_dataplane::nic::afxdp::{Umem, UmemConfig, XdpMode, XdpProgram, XskConfig, XskPort};
use fiberlb_dataplane::packet::Desc;

fn usage() -> ! {
    eprintln!(
        "usage: xsk_reflect reflect IFACE VIP PORT SECONDS\n       \
         xsk_reflect flood IFACE SRC_MAC DST_MAC SRC_IP DST_IP PORT SECONDS"
    );
    std::process::exit(2)
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("reflect") if args.len() == 5 => reflect(
            &args[1],
            args[2].parse()?,
            args[3].parse()?,
            args[4].parse()?,
        ),
        Some("flood") if args.len() == 8 => flood(
            &args[1],
            parse_mac(&args[2])?,
            parse_mac(&args[3])?,
            args[4].parse()?,
            args[5].parse()?,
            args[6].parse()?,
            args[7].parse()?,
        ),
        _ => usage(),
    }
}

fn parse_mac(s: &str) -> anyhow::Result<[u8; 6]> {
    let mut m = [0u8; 6];
    let parts: Vec<&str> = s.split(':').collect();
    anyhow::ensure!(parts.len() == 6, "bad MAC {s}");
    for (b, p) in m.iter_mut().zip(parts) {
        *b = u8::from_str_radix(p, 16)?;
    }
    Ok(m)
}

fn reflect(ifname: &str, vip: IpAddr, port: u16, seconds: u64) -> anyhow::Result<()> {
    let mut prog = XdpProgram::load_and_attach(ifname, XdpMode::Auto)?;
    let mut umem = Umem::new(&UmemConfig::default())?;
    let mut xsk = XskPort::open(
        &mut umem,
        &XskConfig {
            ifname: ifname.into(),
            ..Default::default()
        },
    )?;
    prog.register_socket(0, xsk.fd())?;
    prog.set_vips(&[(vip, port, 17)])?;
    eprintln!(
        "reflecting UDP to {vip}:{port} on {ifname}: XDP {:?}, {}, UMEM in {}",
        prog.attached_mode(),
        if xsk.zerocopy() { "zero-copy" } else { "copy" },
        if umem.hugepages() {
            "hugepages"
        } else {
            "ordinary pages"
        }
    );
    let mut rx = [Desc::default(); 32];
    let (start, mut tick, mut total, mut last) = (Instant::now(), Instant::now(), 0u64, 0u64);
    while start.elapsed() < Duration::from_secs(seconds) {
        let n = xsk.rx_burst(&mut umem, &mut rx);
        let mut m = 0;
        for i in 0..n {
            let d = rx[i];
            let ok = umem
                .packet_buf(&d)
                .is_some_and(|mut b| swap(b.data_mut()).is_some());
            if ok {
                rx[m] = d;
                m += 1;
            } else {
                umem.free(&d);
            }
        }
        let sent = xsk.tx_burst(&mut umem, &rx[..m]);
        for d in &rx[sent..m] {
            umem.free(d);
        }
        total += sent as u64;
        xsk.complete(&mut umem);
        if tick.elapsed() >= Duration::from_secs(1) {
            println!("{} pps", total - last);
            last = total;
            tick = Instant::now();
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "reflected {total} packets in {secs:.1} s: {:.0} pps; {:?}; {:?}",
        total as f64 / secs,
        prog.counters()?,
        xsk.stats()?
    );
    Ok(())
}

/// Swaps MACs, IPv4 addresses and L4 ports of an untagged IPv4 frame.
fn swap(f: &mut [u8]) -> Option<()> {
    if f.len() < 42 || f[12..14] != [8, 0] {
        return None;
    }
    let l4 = 14 + usize::from(f[14] & 15) * 4;
    if f.len() < l4 + 4 {
        return None;
    }
    for i in 0..6 {
        f.swap(i, 6 + i);
    }
    for i in 0..4 {
        f.swap(26 + i, 30 + i);
    }
    for i in 0..2 {
        f.swap(l4 + i, l4 + 2 + i);
    }
    Some(())
}

fn flood(
    ifname: &str,
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    port: u16,
    seconds: u64,
) -> anyhow::Result<()> {
    let mut umem = Umem::new(&UmemConfig {
        fill_size: 64,
        ..UmemConfig::default()
    })?;
    let mut xsk = XskPort::open(
        &mut umem,
        &XskConfig {
            ifname: ifname.into(),
            rx_size: 64,
            ..Default::default()
        },
    )?;
    // Pre-build one frame per chunk; source ports vary so flows differ.
    let mut built = Vec::new();
    let mut sport: u16 = 10000;
    while let Some(d) = umem.alloc() {
        let Some(mut b) = umem.packet_buf(&d) else {
            break;
        };
        b.set_len(60)
            .ok_or_else(|| anyhow::anyhow!("chunk too small"))?;
        build_udp(b.data_mut(), src_mac, dst_mac, src, dst, sport, port);
        sport = sport.wrapping_add(1).max(10000);
        built.push(d);
    }
    // Back to the free stack: `alloc` hands out the same offsets, contents intact.
    for d in &built {
        umem.free(d);
    }
    let (start, mut total) = (Instant::now(), 0u64);
    while start.elapsed() < Duration::from_secs(seconds) {
        xsk.complete(&mut umem);
        // Frames come back to the free stack; resend their (unchanged) contents.
        let mut burst = [Desc::default(); 32];
        let mut n = 0;
        while n < 32 {
            let Some(d) = umem.alloc() else { break };
            burst[n] = Desc {
                addr: d.addr,
                len: 60,
            };
            n += 1;
        }
        let sent = xsk.tx_burst(&mut umem, &burst[..n]);
        for d in &burst[sent..n] {
            umem.free(d);
        }
        total += sent as u64;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "sent {total} packets in {secs:.1} s: {:.0} pps",
        total as f64 / secs
    );
    Ok(())
}

fn build_udp(
    f: &mut [u8],
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    src: Ipv4Addr,
    dst: Ipv4Addr,
    sport: u16,
    dport: u16,
) {
    f.fill(0);
    f[0..6].copy_from_slice(&dst_mac);
    f[6..12].copy_from_slice(&src_mac);
    f[12..14].copy_from_slice(&[8, 0]);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&46u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&dst.octets());
    let sum = checksum(ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    let udp = &mut f[34..60];
    udp[0..2].copy_from_slice(&sport.to_be_bytes());
    udp[2..4].copy_from_slice(&dport.to_be_bytes());
    udp[4..6].copy_from_slice(&26u16.to_be_bytes());
    // UDP checksum 0 (none) is valid for IPv4.
}

fn checksum(b: &[u8]) -> u16 {
    let mut s: u32 = b
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
        .sum();
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    !(s as u16)
}
