//! Pushes a fixed number of packets through DPDK workers and checks every counter adds up:
//! nothing lost, nothing double-counted. Run by `tests/tests/dpdk_counters.rs`; needs root.
//!
//! Two ring-backed ports (`rte_eth_from_rings`: what we enqueue is received, what the port
//! sends lands in a separate ring, so nothing loops back), `--workers` queue pairs each, one
//! DPDK worker per queue. The mix per 10 packets: 6 TCP to a nat listener, 2 UDP to a dsr
//! listener (-> backend port), 1 nat reply from a backend (-> client port), 1 dropped (no
//! listener / not IP, alternately). Prints `PASS name` / `FAIL name: why` lines and a summary;
//! exits non-zero on any failure.
//!
//! ```text
//! cargo run --release -p fiberlb-dataplane --features dpdk --example dpdk_counters -- \
//!     --packets 200000 --workers 2 [--no-huge]
//! ```

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_dataplane::nic::dpdk::{
    check_hugepages, register_thread, DpdkError, Eal, EalConfig, MbufArray, Pools, RingPort,
};
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, PipelineConfig, WorkerCounters};
use fiberlb_dataplane::snapshot::SnapshotBuilder;
use fiberlb_dataplane::wire::build::FrameBuilder;
use fiberlb_dataplane::worker::dpdk::DpdkWorker;
use fiberlb_dataplane::worker::{FixedSnapshot, NoCounters, WorkerSettings, WorkerStats};
use fiberlb_shared::services::parse_services;

const SERVICES: &str = r#"
loadbalancers:
  - name: web
    vip: 10.0.0.10
    listeners:
      - {port: 80, protocol: tcp, mode: nat, pool: web}
      - {port: 53, protocol: udp, mode: dsr, pool: dns}
pools:
  - name: web
    backends:
      - {address: 10.1.0.1, port: 8080}
      - {address: 10.1.0.2, port: 8080}
  - name: dns
    backends:
      - {address: 10.1.0.3, port: 53, mac: "02:00:00:00:00:03"}
"#;

const VIP: [u8; 4] = [10, 0, 0, 10];
const LB_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x10];
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0x20];
const GW_BACKEND: [u8; 6] = [2, 0, 0, 0, 0, 0xb0];
const GW_CLIENT: [u8; 6] = [2, 0, 0, 0, 0, 0xc0];

/// Which port and fate a generated packet has.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nat,
    Dsr,
    Reply,
    NoListener,
    NotIp,
}

fn kind(k: u64) -> Kind {
    match k % 10 {
        0..=5 => Kind::Nat,
        6 | 7 => Kind::Dsr,
        8 => Kind::Reply,
        _ if (k / 10) % 2 == 0 => Kind::NoListener,
        _ => Kind::NotIp,
    }
}

fn frame(k: u64) -> Vec<u8> {
    let client = [192, 0, 2, (k % 200) as u8 + 1];
    let sport = 10_000 + (k % 50_000) as u16;
    let b = match kind(k) {
        Kind::Nat => FrameBuilder::tcp_v4(client, VIP, sport, 80).tcp_flags(0x02),
        Kind::Dsr => FrameBuilder::udp_v4(client, VIP, sport, 53).payload(b"q"),
        Kind::Reply => {
            FrameBuilder::tcp_v4([10, 1, 0, 1 + (k % 2) as u8], client, 8080, sport).tcp_flags(0x10)
        }
        Kind::NoListener => FrameBuilder::udp_v4(client, VIP, sport, 9999),
        Kind::NotIp => {
            let mut f = FrameBuilder::udp_v4(client, VIP, sport, 53)
                .macs(PEER_MAC, LB_MAC)
                .build();
            f[12] = 0x08;
            f[13] = 0x06;
            return f;
        }
    };
    b.macs(PEER_MAC, LB_MAC).build()
}

struct Args {
    packets: u64,
    workers: u16,
    no_huge: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        packets: 200_000,
        workers: 2,
        no_huge: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(s) = it.next() {
        match s.as_str() {
            "--packets" => a.packets = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.packets),
            "--workers" => a.workers = it.next().and_then(|v| v.parse().ok()).unwrap_or(a.workers),
            "--no-huge" => a.no_huge = true,
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(2);
            }
        }
    }
    a
}

struct Checks {
    failed: u32,
}

impl Checks {
    fn check(&mut self, name: &str, ok: bool, why: impl FnOnce() -> String) {
        if ok {
            println!("PASS {name}");
        } else {
            self.failed += 1;
            println!("FAIL {name}: {}", why());
        }
    }
}

fn main() {
    if let Err(e) = run() {
        println!("FAIL setup: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), DpdkError> {
    let args = parse_args();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let no_huge = args.no_huge || check_hugepages(&meminfo, Some(128)).is_err();
    let cfg = EalConfig {
        no_huge,
        memory_mb: Some(if no_huge { 256 } else { 128 }),
        log_level: Some("notice".into()),
        ..EalConfig::default()
    };
    let eal = Eal::init(&cfg)?;
    println!("eal args: {:?}", eal.args());
    register_thread(&eal)?;
    let pools: Pools = eal.pools(16_383)?;
    let pool = pools.for_socket(0).clone();
    let mut c = Checks { failed: 0 };

    // A port refuses more queues than the device has.
    let refused = RingPort::new(&eal, &pools, "fiberlb_few", 1, 2, 64);
    c.check(
        "not-enough-queues",
        matches!(refused, Err(DpdkError::NotEnoughQueues { want: 2, .. })),
        || format!("{refused:?}"),
    );
    if let Err(e) = &refused {
        println!("  (error text: {e})");
    }

    let q = args.workers;
    let client = Arc::new(RingPort::new(&eal, &pools, "fiberlb_client", q, q, 4096)?);
    let backend = Arc::new(RingPort::new(&eal, &pools, "fiberlb_backend", q, q, 4096)?);
    println!(
        "ports: client id {} ({}), backend id {} ({}), link up {}",
        client.port.id(),
        client.port.driver(),
        backend.port.id(),
        backend.port.driver(),
        client.port.link().up
    );

    let set = parse_services(SERVICES).map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
    let snap = Arc::new(
        SnapshotBuilder::new(16, 64)
            .build(&set, 1)
            .map_err(|e| DpdkError::InvalidConfig(e.to_string()))?,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::new();
    for w in 0..q {
        let pipeline = Pipeline::new(PipelineConfig {
            flow_capacity: 1 << 16,
            max_listeners: 16,
            max_backends: 64,
            backend_gateway_mac: Some(GW_BACKEND),
            client_gateway_mac: Some(GW_CLIENT),
            ..PipelineConfig::default()
        })
        .map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
        let mut worker = DpdkWorker::new(
            usize::from(w),
            &eal,
            vec![client.port.queue(w)?, backend.port.queue(w)?],
            0,
            1,
            pipeline,
            FixedSnapshot(snap.clone()),
            NoCounters,
            WorkerSettings {
                burst: 32,
                idle_backoff: true,
            },
        )?;
        let stop = stop.clone();
        handles.push(std::thread::spawn(move || {
            let r = worker.run(&stop);
            (worker.pipeline().counters().clone(), worker.stats(), r)
        }));
    }

    // Expected fates.
    let (mut exp_backend, mut exp_client, mut exp_nolistener, mut exp_notip) = (0u64, 0, 0, 0);
    let (mut inj_client, mut inj_backend) = (0u64, 0u64);
    let frames: Vec<Vec<u8>> = (0..1000).map(frame).collect();
    let (mut out_backend, mut out_client) = (0u64, 0u64);
    let mut bad_output = 0u64;
    let mut drain_buf = MbufArray::default();
    let mut drain = |out_backend: &mut u64, out_client: &mut u64, bad: &mut u64| {
        for qi in 0..usize::from(q) {
            while backend.drain(qi, &mut drain_buf) > 0 {
                for i in 0..drain_buf.len() {
                    let d = drain_buf.data(i);
                    // Ethernet dst is the backend gateway (nat) or the dsr backend's MAC.
                    let ok = d.len() >= 34
                        && (d[0..6] == GW_BACKEND || d[0..6] == [2, 0, 0, 0, 0, 3])
                        && (d[30..34] == [10, 1, 0, 1]
                            || d[30..34] == [10, 1, 0, 2]
                            || d[30..34] == VIP);
                    *bad += u64::from(!ok);
                }
                *out_backend += drain_buf.len() as u64;
            }
            while client.drain(qi, &mut drain_buf) > 0 {
                for i in 0..drain_buf.len() {
                    let d = drain_buf.data(i);
                    // nat replies leave from the VIP:80 towards the client gateway.
                    let ok = d.len() >= 38
                        && d[0..6] == GW_CLIENT
                        && d[26..30] == VIP
                        && d[34..36] == [0, 80];
                    *bad += u64::from(!ok);
                }
                *out_client += drain_buf.len() as u64;
            }
        }
    };
    let t0 = Instant::now();
    let mut batch = MbufArray::default();
    let mut k = 0u64;
    while k < args.packets {
        // One burst per queue and port side at a time, round-robin over the queues.
        let qi = ((k / 32) % u64::from(q)) as usize;
        let side_backend = kind(k) == Kind::Reply;
        let Some(mut m) = pool.alloc() else {
            drain(&mut out_backend, &mut out_client, &mut bad_output);
            std::thread::yield_now();
            continue;
        };
        m.append(&frames[(k % 1000) as usize])?;
        let _ = batch.push(m);
        let port = if side_backend { &backend } else { &client };
        while !batch.is_empty() {
            if port.inject(qi, &mut batch) == 0 {
                drain(&mut out_backend, &mut out_client, &mut bad_output);
                std::thread::yield_now();
            }
        }
        match kind(k) {
            Kind::Nat | Kind::Dsr => exp_backend += 1,
            Kind::Reply => exp_client += 1,
            Kind::NoListener => exp_nolistener += 1,
            Kind::NotIp => exp_notip += 1,
        }
        if side_backend {
            inj_backend += 1;
        } else {
            inj_client += 1;
        }
        k += 1;
        if k % 256 == 0 {
            drain(&mut out_backend, &mut out_client, &mut bad_output);
        }
    }
    // Wait until the workers took everything, then let them finish their round.
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline
        && (0..usize::from(q)).any(|qi| client.pending_rx(qi) + backend.pending_rx(qi) > 0)
    {
        drain(&mut out_backend, &mut out_client, &mut bad_output);
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    stop.store(true, Ordering::Relaxed);
    let mut total = WorkerCounters::new(16, 64);
    let mut wstats = WorkerStats::default();
    let mut per_worker = Vec::new();
    for h in handles {
        let (wc, ws, r) = h.join().expect("worker thread");
        r?;
        per_worker.push(wc.rx_packets);
        total.rx_packets += wc.rx_packets;
        total.forwarded += wc.forwarded;
        total.nat_replies += wc.nat_replies;
        for (t, d) in total.drops.iter_mut().zip(wc.drops.iter()) {
            *t += d;
        }
        for (t, l) in total.listeners.iter_mut().zip(wc.listeners.iter()) {
            t.add(l);
        }
        for (t, b) in total.backends.iter_mut().zip(wc.backends.iter()) {
            t.add(b);
        }
        wstats.tx_full_drops += ws.tx_full_drops;
        wstats.rx_bursts += ws.rx_bursts;
    }
    drain(&mut out_backend, &mut out_client, &mut bad_output);
    let elapsed = t0.elapsed();
    drop(drain_buf);

    let n = args.packets;
    println!(
        "packets {n}: to backend {exp_backend}, replies {exp_client}, no listener {exp_nolistener}, not IP {exp_notip}; per worker rx {per_worker:?}"
    );
    c.check("rx-total", total.rx_packets == n, || {
        format!("workers received {} of {n}", total.rx_packets)
    });
    c.check(
        "forwarded-plus-dropped",
        total.forwarded + total.dropped() == total.rx_packets,
        || {
            format!(
                "{} + {} != {}",
                total.forwarded,
                total.dropped(),
                total.rx_packets
            )
        },
    );
    c.check(
        "forwarded",
        total.forwarded == exp_backend + exp_client,
        || format!("{} != {}", total.forwarded, exp_backend + exp_client),
    );
    c.check("nat-replies", total.nat_replies == exp_client, || {
        format!("{} != {exp_client}", total.nat_replies)
    });
    c.check(
        "drops-by-reason",
        total.drops[DropReason::NoListener as usize] == exp_nolistener
            && total.drops[DropReason::NotIp as usize] == exp_notip
            && total.dropped() == exp_nolistener + exp_notip,
        || format!("{:?}", total.drops),
    );
    let lsum: u64 = total.listeners.iter().map(|l| l.packets).sum();
    let bsum: u64 = total.backends.iter().map(|b| b.packets).sum();
    c.check(
        "listener-backend-counters",
        lsum == exp_backend && bsum == exp_backend,
        || format!("listeners {lsum}, backends {bsum}, expected {exp_backend}"),
    );
    c.check("tx-full-drops", wstats.tx_full_drops == 0, || {
        format!("{}", wstats.tx_full_drops)
    });
    c.check(
        "out-rings",
        out_backend == exp_backend && out_client == exp_client,
        || format!("backend ring {out_backend} (want {exp_backend}), client ring {out_client} (want {exp_client})"),
    );
    c.check("output-rewritten", bad_output == 0, || {
        format!("{bad_output} packets with unexpected MAC/addresses")
    });
    let cs = client.port.stats()?;
    let bs = backend.port.stats()?;
    c.check(
        "port-stats",
        cs.rx_packets == inj_client
            && bs.rx_packets == inj_backend
            && bs.tx_packets == exp_backend
            && cs.tx_packets == exp_client,
        || {
            format!(
                "client {cs:?} (injected {inj_client}), backend {bs:?} (injected {inj_backend})"
            )
        },
    );
    drop(batch);
    // Every buffer back in its pool: none leaked, none freed twice (that would show as more
    // available than the pool's size or a crash).
    c.check(
        "mbufs-returned",
        pool.in_use() == 0 && pool.available() == pool.size(),
        || {
            format!(
                "in use {}, available {} of {}",
                pool.in_use(),
                pool.available(),
                pool.size()
            )
        },
    );
    println!(
        "rate: {:.0} kpps through {q} worker(s) ({} rx bursts, {:.1} pkts/burst) in {:.2}s",
        n as f64 / elapsed.as_secs_f64() / 1e3,
        wstats.rx_bursts,
        n as f64 / wstats.rx_bursts.max(1) as f64,
        elapsed.as_secs_f64()
    );
    drop(client);
    drop(backend);
    if c.failed > 0 {
        println!("RESULT FAIL ({} checks failed)", c.failed);
        std::process::exit(1);
    }
    println!("RESULT PASS");
    Ok(())
}
