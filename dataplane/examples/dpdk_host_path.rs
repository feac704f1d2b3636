//! The DPDK exception path through a real [`DpdkWorker`], on ring-backed ports (nothing loops
//! back, every frame is accounted for): one port, and a ring port standing in for its
//! `net_tap` host port. Run by `tests/tests/dpdk_backend.rs`; needs root.
//!
//! Checks: ARP and a nat backend's reply to a local address go to the host queue unchanged,
//! VIP traffic and a nat reply to a client go out of the port, malformed frames are dropped;
//! what the host sends goes out of the port unchanged; a full host queue drops and counts
//! (`to_host` -> `tx_ring_full`); received = forwarded + to_host + dropped; every mbuf back.
//! Prints `PASS name` / `FAIL name: why` lines and `RESULT PASS|FAIL`.
//!
//! ```text
//! cargo run --release -p fiberlb-dataplane --features dpdk --example dpdk_host_path -- [--no-huge]
//! ```

fn main() {
    if let Err(e) = with_dpdk::run() {
        println!("FAIL setup: {e}");
        std::process::exit(1);
    }
}

mod with_dpdk {
    use std::net::IpAddr;
    use std::sync::Arc;

    use fiberlb_dataplane::nic::dpdk::{
        register_thread, Eal, EalConfig, MbufArray, Pools, RingPort,
    };
    use fiberlb_dataplane::pipeline::{DropReason, Pipeline, PipelineConfig};
    use fiberlb_dataplane::snapshot::{LocalAddrs, SnapshotBuilder};
    use fiberlb_dataplane::wire::build::FrameBuilder;
    use fiberlb_dataplane::worker::dpdk::DpdkWorker;
    use fiberlb_dataplane::worker::{FixedSnapshot, NoCounters, WorkerSettings};
    use fiberlb_shared::services::parse_services;

    const SERVICES: &str = r#"
loadbalancers:
  - name: web
    vip: 10.0.0.10
    listeners:
      - {port: 80, protocol: tcp, mode: nat, pool: web}
pools:
  - name: web
    backends:
      - {address: 10.1.0.1, port: 8080, mac: "02:00:00:00:00:01"}
"#;

    const VIP: [u8; 4] = [10, 0, 0, 10];
    const LOCAL: [u8; 4] = [10, 0, 0, 1];
    const CLIENT: [u8; 4] = [192, 0, 2, 7];
    const BACKEND: [u8; 4] = [10, 1, 0, 1];
    const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
    const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
    /// Host ring size: 63 mbufs fit its TX ring, so the third phase overflows it.
    const HOST_RING: u32 = 64;

    fn arp(i: u8) -> Vec<u8> {
        let mut f = vec![0xff; 6];
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
        f.extend_from_slice(&PEER_MAC);
        f.extend_from_slice(&[192, 0, 2, i]);
        f.extend_from_slice(&[0; 6]);
        f.extend_from_slice(&LOCAL);
        f.resize(60, 0);
        f
    }

    fn tcp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        FrameBuilder::tcp_v4(src, dst, sport, dport)
            .tcp_flags(0x10)
            .macs(PEER_MAC, LB_MAC)
            .build()
    }

    struct Checks(u32);

    impl Checks {
        fn check(&mut self, name: &str, ok: bool, why: impl FnOnce() -> String) {
            if ok {
                println!("PASS {name}");
            } else {
                println!("FAIL {name}: {}", why());
                self.0 += 1;
            }
        }
    }

    fn inject(eal_pools: &Pools, port: &RingPort, frames: &[Vec<u8>]) -> Result<(), String> {
        for chunk in frames.chunks(32) {
            let mut arr = MbufArray::default();
            for f in chunk {
                let mut m = eal_pools.all()[0].alloc().ok_or("mbuf pool empty")?;
                m.append(f).map_err(|e| e.to_string())?;
                arr.push(m).map_err(|_| "burst full")?;
            }
            let n = arr.len();
            if port.inject(0, &mut arr) != n {
                return Err("an input ring is full".into());
            }
        }
        Ok(())
    }

    fn drain(port: &RingPort) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut arr = MbufArray::default();
        while port.drain(0, &mut arr) > 0 {
            out.extend((0..arr.len()).map(|i| arr.data(i).to_vec()));
            arr.clear();
        }
        out
    }

    pub fn run() -> Result<(), Box<dyn std::error::Error>> {
        let no_huge = std::env::args().any(|a| a == "--no-huge");
        let eal = Eal::init(&EalConfig {
            no_huge,
            memory_mb: Some(if no_huge { 256 } else { 128 }),
            log_level: Some("notice".into()),
            file_prefix: Some(format!("fbhost{}", std::process::id())),
            ..EalConfig::default()
        })?;
        register_thread(&eal)?;
        let pools = eal.pools(8191)?;
        let port = RingPort::new(&eal, &pools, "fbh_port", 1, 1, 4096)?;
        let host = RingPort::new(&eal, &pools, "fbh_host", 1, 1, HOST_RING)?;
        let set = parse_services(SERVICES)?;
        let snap = Arc::new(SnapshotBuilder::new(16, 16).build(&set, 1)?);
        let mut pipeline = Pipeline::new(PipelineConfig {
            flow_capacity: 1024,
            client_gateway_mac: Some([2, 0, 0, 0, 0, 0xc0]),
            max_listeners: 16,
            max_backends: 16,
            ..PipelineConfig::default()
        })?;
        let local = Arc::new(LocalAddrs::new());
        local.publish(&[IpAddr::from(LOCAL)]);
        pipeline.set_local_addrs(local);
        let mut w = DpdkWorker::new(
            0,
            &eal,
            vec![port.port.queue(0)?],
            0,
            0,
            pipeline,
            FixedSnapshot(snap),
            NoCounters,
            WorkerSettings {
                burst: 32,
                idle_backoff: false,
            },
        )?;
        w.set_host_queues(vec![Some(host.port.queue(0)?)])?;
        let mut c = Checks(0);
        let poll = |w: &mut DpdkWorker<FixedSnapshot, NoCounters>| {
            for _ in 0..10_000 {
                w.poll_once(1);
                if port.pending_rx(0) == 0 && host.pending_rx(0) == 0 {
                    break;
                }
            }
        };

        // Phase 1: a mix from the wire.
        let arps: Vec<Vec<u8>> = (0..40).map(arp).collect();
        let to_local: Vec<Vec<u8>> = (0..5)
            .map(|i| tcp(BACKEND, LOCAL, 8080, 40000 + i))
            .collect();
        let mut input = arps.clone();
        input.extend((0..10).map(|i| tcp(CLIENT, VIP, 50000 + i, 80)));
        input.extend((0..5).map(|i| tcp(BACKEND, CLIENT, 8080, 50000 + i)));
        input.extend(to_local.iter().cloned());
        input.extend((0..5).map(|_| {
            // IPv4 with a header length of 4 bytes: malformed.
            let mut f = tcp(CLIENT, VIP, 1, 80);
            f[14] = 0x41;
            f
        }));
        inject(&pools, &port, &input)?;
        poll(&mut w);
        let to_host = drain(&host);
        let mut want_host = arps.clone();
        want_host.extend(to_local.iter().cloned());
        c.check("to-host-unchanged", to_host == want_host, || {
            format!(
                "{} frames on the host queue, want {}",
                to_host.len(),
                want_host.len()
            )
        });
        let out = drain(&port);
        c.check("port-out", out.len() == 15, || {
            format!("{} frames out", out.len())
        });
        let ct = w.pipeline().counters().clone();
        c.check(
            "counters-phase1",
            ct.rx_packets == 65
                && ct.to_host == 45
                && ct.forwarded == 15
                && ct.drops[DropReason::Malformed as usize] == 5,
            || format!("{ct:?}"),
        );

        // Phase 2: what the kernel sends on the tap goes out of the port unchanged.
        let from_kernel: Vec<Vec<u8>> =
            (0..20).map(|i| tcp(LOCAL, CLIENT, 22, 60000 + i)).collect();
        inject(&pools, &host, &from_kernel)?;
        poll(&mut w);
        let out = drain(&port);
        c.check("from-host-unchanged", out == from_kernel, || {
            format!("{} frames out, want {}", out.len(), from_kernel.len())
        });
        c.check("from-host-counted", w.host_stats().from_host == 20, || {
            format!("{:?}", w.host_stats())
        });

        // Phase 3: 80 more for the host, without draining its queue between the bursts: 63 fit,
        // the rest are dropped and counted.
        inject(&pools, &port, &arps)?;
        poll(&mut w);
        inject(&pools, &port, &arps)?;
        poll(&mut w);
        let queued = drain(&host).len() as u64;
        let hs = w.host_stats();
        let ct = w.pipeline().counters().clone();
        c.check(
            "full-host-queue",
            queued == u64::from(HOST_RING - 1)
                && hs.to_host_tx_full == 80 - queued
                && ct.to_host == 45 + queued
                && ct.drops[DropReason::TxRingFull as usize] == 80 - queued,
            || format!("queued {queued}, {hs:?}, {ct:?}"),
        );
        c.check(
            "received-adds-up",
            ct.rx_packets == ct.forwarded + ct.to_host + ct.dropped() && ct.rx_packets == 145,
            || format!("{ct:?}"),
        );
        drop(w);
        let in_use: u32 = pools.all().iter().map(|p| p.in_use()).sum();
        c.check("mbufs-returned", in_use == 0, || {
            format!("{in_use} mbufs in use")
        });
        println!("RESULT {}", if c.0 == 0 { "PASS" } else { "FAIL" });
        if c.0 > 0 {
            std::process::exit(1);
        }
        Ok(())
    }
}
