//! Helpers shared by fiberlb's benchmarks: services and pre-built packet batches.

use std::net::{IpAddr, Ipv4Addr};

use fiberlb_dataplane::pipeline::PipelineConfig;
use fiberlb_dataplane::wire::build::FrameBuilder;
use fiberlb_dataplane::wire::tcp::flags;
use fiberlb_shared::model::*;

/// VIP of the benchmark services.
pub const VIP: [u8; 4] = [10, 10, 0, 100];
/// Our MAC.
pub const MAC_LB: [u8; 6] = [2, 0, 0, 0, 0, 1];
/// Client-side router.
pub const MAC_GW: [u8; 6] = [2, 0, 0, 0, 1, 0xfe];

/// Listener port per mode.
pub fn port_of(mode: Mode, encap: Encap) -> u16 {
    match (mode, encap) {
        (Mode::Nat, _) => 80,
        (Mode::Dsr, _) => 81,
        (Mode::Tunnel, Encap::Ipip) => 82,
        (Mode::Tunnel, Encap::Gue) => 83,
    }
}

/// One VIP with a tcp and a udp listener per mode, each over a pool of `backends` backends.
pub fn services(backends: u32) -> ServiceSet {
    let modes = [
        (Mode::Nat, Encap::Ipip),
        (Mode::Dsr, Encap::Ipip),
        (Mode::Tunnel, Encap::Ipip),
        (Mode::Tunnel, Encap::Gue),
    ];
    let mut listeners = Vec::new();
    let mut pools = Vec::new();
    let mut bs = Vec::new();
    for (i, (mode, encap)) in modes.iter().enumerate() {
        let pool = PoolId(i as u32 + 1);
        pools.push(Pool {
            id: pool,
            name: format!("{mode}-{encap:?}"),
            algorithm: Algorithm::Maglev,
            table_size: 65537,
        });
        for (j, protocol) in [Protocol::Tcp, Protocol::Udp].into_iter().enumerate() {
            listeners.push(Listener {
                id: ListenerId((i * 2 + j) as u32 + 1),
                name: format!("{mode}/{protocol}"),
                vip: IpAddr::from(VIP),
                port: port_of(*mode, *encap),
                protocol,
                mode: *mode,
                encap: *encap,
                pool,
            });
        }
        for b in 0..backends {
            bs.push(Backend {
                id: BackendId(i as u32 * 10_000 + b + 1),
                pool,
                address: IpAddr::from([10, 20 + i as u8, (b >> 8) as u8, b as u8]),
                port: 8080,
                weight: 1,
                mac: Some([2, 0, 0, 2, (b >> 8) as u8, b as u8]),
                admin: AdminState::Enabled,
                healthy: true,
            });
        }
    }
    ServiceSet {
        listeners,
        pools,
        backends: bs,
        tunnel: TunnelSettings {
            source_v4: Some(Ipv4Addr::new(10, 10, 0, 1)),
            source_v6: None,
            gue_port: DEFAULT_GUE_PORT,
        },
    }
}

/// 64-byte frames (60 without FCS) of `flows` distinct client flows to `port`.
pub fn frames(flows: usize, protocol: Protocol, port: u16) -> Vec<Vec<u8>> {
    (0..flows)
        .map(|i| {
            let client = [
                100,
                64 + (i >> 24) as u8 % 64,
                (i >> 16) as u8,
                (i >> 8) as u8,
            ];
            let sport = 1024 + (i & 0xff) as u16 * 97 % 60000;
            let b = match protocol {
                Protocol::Tcp => {
                    FrameBuilder::tcp_v4(client, VIP, sport, port).tcp_flags(flags::ACK)
                }
                Protocol::Udp => FrameBuilder::udp_v4(client, VIP, sport, port).payload(&[0; 18]),
            };
            let mut f = b.macs(MAC_GW, MAC_LB).build();
            f.resize(60, 0);
            f
        })
        .collect()
}

/// Pipeline settings for benchmarks with room for `flows`: 16 entries per flow (at most 2^24),
/// so (4-way buckets) practically no bucket overflows and the runs measure flow-table hits,
/// as their figures say. With 2 entries per flow about 5 % of the buckets of a 1k-flow table
/// overflowed, and a cyclic sweep of the flows then missed those buckets on every packet (an
/// LRU set under a cyclic pattern): ~8 % of the "hits" were inserts; with 4, 1.3 %.
/// `fiberlb-pktgen pipeline` reports the misses of a run as `flow_misses`.
pub fn config(flows: usize) -> PipelineConfig {
    PipelineConfig {
        flow_capacity: (flows * 16).clamp(16384, 1 << 24),
        client_gateway_mac: Some(MAC_GW),
        backend_gateway_mac: Some(MAC_GW),
        ..PipelineConfig::default()
    }
}

pub mod pktgen;
