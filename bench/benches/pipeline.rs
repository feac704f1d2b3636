//! The forwarding pipeline alone, on pre-built batches of 64-byte frames: ns/packet per mode
//! for 1k and 1M flows (flow-table hits in steady state, as on a live LB), and the cost of one
//! `Pipeline::housekeeping` call (the active-flow sweep) busy and idle.
//!
//! Run: `cargo bench -p fiberlb-bench --bench pipeline`. Each iteration copies 32 frames from
//! their templates into receive buffers (what a NIC does), then processes the burst: that copy
//! is included in the figure.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use fiberlb_bench::{config, frames, port_of, services};
use fiberlb_dataplane::packet::PacketBuf;
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, Verdict, BURST};
use fiberlb_dataplane::snapshot::SnapshotBuilder;
use fiberlb_shared::model::{Encap, Mode, Protocol};

const CHUNK: usize = 2048;
const HEADROOM: usize = 256;

/// Frames are stored back to back, 64 bytes apart, as a NIC's receive ring would hold them
/// (a `Vec` per frame would add a pointer chase and a cache miss per packet that no NIC has).
const STRIDE: usize = 64;

struct Rig {
    pipeline: Pipeline,
    templates: Vec<u8>,
    lens: Vec<u8>,
    chunks: Vec<u8>,
    next: usize,
}

impl Rig {
    fn burst(&mut self, snap: &fiberlb_dataplane::snapshot::Snapshot) -> usize {
        let n = self.lens.len();
        let mut bufs: [Option<PacketBuf<'_>>; BURST] = Default::default();
        let mut verdicts = [Verdict::Drop(DropReason::Malformed); BURST];
        let mut k = 0;
        for (i, chunk) in self.chunks.chunks_mut(CHUNK).enumerate().take(BURST) {
            let j = (self.next + i) % n;
            let len = usize::from(self.lens[j]);
            let t = &self.templates[j * STRIDE..j * STRIDE + len];
            chunk[HEADROOM..HEADROOM + len].copy_from_slice(t);
            bufs[i] = PacketBuf::new(chunk, HEADROOM, len);
            k += 1;
        }
        self.next = (self.next + k) % n;
        let mut pkts: [PacketBuf<'_>; BURST] = bufs.map(|b| b.expect("chunk fits"));
        self.pipeline
            .process_burst(snap, &mut pkts[..], &mut verdicts, 1)
    }
}

fn bench(c: &mut Criterion) {
    let snap = SnapshotBuilder::new(64, 65536)
        .build(&services(100), 1)
        .unwrap();
    let mut g = c.benchmark_group("pipeline");
    g.measurement_time(Duration::from_secs(3))
        .warm_up_time(Duration::from_secs(1))
        .sample_size(20);
    g.throughput(Throughput::Elements(BURST as u64));
    for flows in [1_000usize, 1_000_000] {
        for (mode, encap, proto) in [
            (Mode::Nat, Encap::Ipip, Protocol::Tcp),
            (Mode::Nat, Encap::Ipip, Protocol::Udp),
            (Mode::Dsr, Encap::Ipip, Protocol::Tcp),
            (Mode::Tunnel, Encap::Ipip, Protocol::Tcp),
            (Mode::Tunnel, Encap::Gue, Protocol::Udp),
        ] {
            let list = frames(flows, proto, port_of(mode, encap));
            let mut templates = vec![0u8; list.len() * STRIDE];
            for (i, f) in list.iter().enumerate() {
                templates[i * STRIDE..i * STRIDE + f.len()].copy_from_slice(f);
            }
            let lens = list.iter().map(|f| f.len() as u8).collect();
            drop(list);
            let mut rig = Rig {
                pipeline: Pipeline::new(config(flows)).unwrap(),
                templates,
                lens,
                chunks: vec![0; CHUNK * BURST],
                next: 0,
            };
            // Warm the flow table: every flow seen once.
            for _ in 0..flows.div_ceil(BURST) {
                rig.burst(&snap);
            }
            let fwd = rig.pipeline.counters().forwarded;
            assert_eq!(fwd, rig.pipeline.counters().rx_packets, "all forwarded");
            let name = format!(
                "{mode}-{}-{proto}",
                if mode == Mode::Tunnel {
                    format!("{encap:?}").to_lowercase()
                } else {
                    "l2".into()
                }
            );
            g.bench_with_input(BenchmarkId::new(name, flows), &flows, |b, _| {
                b.iter(|| rig.burst(&snap))
            });
            if mode == Mode::Nat && proto == Protocol::Tcp {
                // The flow sweep between bursts (active-flow gauges), on the warmed table: one
                // call per poll round, busy (8 buckets) and idle (256 buckets).
                g.throughput(Throughput::Elements(1));
                for (what, got) in [("busy", BURST), ("idle", 0)] {
                    g.bench_with_input(
                        BenchmarkId::new(format!("housekeeping-{what}"), flows),
                        &flows,
                        |b, _| {
                            // A new millisecond per call: idle sweeps run once per ms.
                            let mut now = 1u32;
                            b.iter(|| {
                                now = now.wrapping_add(1);
                                rig.pipeline.housekeeping(now, got)
                            })
                        },
                    );
                }
                g.throughput(Throughput::Elements(BURST as u64));
                // A burst followed by its housekeeping, as the worker loops run them: the
                // difference to the plain burst is the sweep's real per-burst cost (its buckets
                // compete with the burst's for the cache).
                g.bench_with_input(
                    BenchmarkId::new("nat-l2-tcp+housekeeping", flows),
                    &flows,
                    |b, _| {
                        b.iter(|| {
                            let n = rig.burst(&snap);
                            rig.pipeline.housekeeping(1, n);
                        })
                    },
                );
            }
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
