//! Scenario (d): the forwarding pipeline alone, per core, on in-memory ports — no I/O. Each
//! worker thread owns a [`MemoryPort`], a [`Pipeline`] and the same snapshot; per burst it
//! injects 32 pre-built 64-byte frames (the copy a NIC's DMA would do), receives them and runs
//! `process_burst`, then frees them (transmission is not measured).

use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_dataplane::nic::memory::MemoryPort;
use fiberlb_dataplane::packet::Desc;
use fiberlb_dataplane::pipeline::{DropReason, Pipeline, Verdict, BURST};
use fiberlb_dataplane::snapshot::{Snapshot, SnapshotBuilder};
use fiberlb_shared::model::{Encap, Mode, Protocol};
use serde::{Deserialize, Serialize};

use crate::{config, frames, port_of, services};

/// Frames are stored back to back, 64 bytes apart (as in `benches/pipeline.rs`).
const STRIDE: usize = 64;

/// One run's result.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct PipelineResult {
    pub mode: String,
    pub flows: usize,
    pub workers: usize,
    pub seconds: f64,
    /// Packets each worker processed after the warm-up (with `--packets N`: N rounded up to
    /// whole bursts of 32, the same on every run).
    pub packets: u64,
    /// Packets per second per worker, in worker order.
    pub per_worker_pps: Vec<f64>,
    pub total_pps: f64,
    /// Packets the pipeline did not forward (must be 0: all flows are for a listener).
    pub not_forwarded: u64,
    /// Flow-table inserts after the warm-up: packets that missed the table (about 0: the
    /// table has room for every flow, so the run measures hits, as its figures say).
    #[serde(default)]
    pub flow_misses: u64,
    /// Whether the pipeline ran at all (`--harness-only`: the memory port's work alone).
    #[serde(default)]
    pub harness_only: bool,
    pub cpus: Vec<i32>,
}

/// Parses `dsr`, `nat`, `tunnel` (IPIP) or `gue`.
pub fn parse_mode(s: &str) -> anyhow::Result<(Mode, Encap)> {
    Ok(match s {
        "dsr" => (Mode::Dsr, Encap::Ipip),
        "nat" => (Mode::Nat, Encap::Ipip),
        "tunnel" | "ipip" => (Mode::Tunnel, Encap::Ipip),
        "gue" => (Mode::Tunnel, Encap::Gue),
        _ => anyhow::bail!("unknown mode {s:?}: use dsr, nat, tunnel or gue"),
    })
}

/// How long each worker runs after its warm-up.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Length {
    /// Wall-clock seconds (throughput).
    Secs(f64),
    /// Exactly this many packets, rounded up to whole bursts, with no clock read in the loop:
    /// the same work on every run (for instruction counts under callgrind).
    Packets(u64),
}

/// Runs `workers` threads pinned to `cores` (cycled) for `len` on UDP flows of `mode`. With
/// `harness_only` every burst is injected, received and freed but not processed: the memory
/// port's own cost, which `bench/instructions.sh` subtracts to count the pipeline alone.
pub fn run(
    mode: &str,
    flows: usize,
    workers: usize,
    cores: &[usize],
    len: Length,
    harness_only: bool,
) -> anyhow::Result<PipelineResult> {
    anyhow::ensure!(
        workers >= 1 && !cores.is_empty(),
        "need a worker and a core"
    );
    let (m, e) = parse_mode(mode)?;
    let snap = Arc::new(SnapshotBuilder::new(64, 65536).build(&services(100), 1)?);
    let list = frames(flows, Protocol::Udp, port_of(m, e));
    let mut templates = vec![0u8; list.len() * STRIDE];
    let mut lens = Vec::with_capacity(list.len());
    for (i, f) in list.iter().enumerate() {
        templates[i * STRIDE..i * STRIDE + f.len()].copy_from_slice(f);
        lens.push(f.len());
    }
    drop(list);
    let templates = Arc::new((templates, lens));
    let mut handles = Vec::new();
    for w in 0..workers {
        let core = cores[w % cores.len()];
        let (snap, templates) = (snap.clone(), templates.clone());
        handles.push(std::thread::spawn(move || {
            worker(&snap, &templates, flows, core, len, w, harness_only)
        }));
    }
    let mut per = Vec::new();
    let mut cpus = Vec::new();
    let mut not_forwarded = 0;
    let mut flow_misses = 0;
    let (mut seconds, mut packets) = (0f64, 0);
    for h in handles {
        let r = h
            .join()
            .map_err(|_| anyhow::anyhow!("a pipeline worker panicked"))??;
        per.push(r.packets as f64 / r.seconds);
        cpus.push(r.cpu);
        not_forwarded += r.not_forwarded;
        flow_misses += r.flow_misses;
        seconds = seconds.max(r.seconds);
        packets = r.packets;
    }
    Ok(PipelineResult {
        mode: mode.into(),
        flows,
        workers,
        seconds,
        packets,
        total_pps: per.iter().sum(),
        per_worker_pps: per,
        not_forwarded,
        flow_misses,
        harness_only,
        cpus,
    })
}

/// One worker's run after its warm-up.
struct WorkerResult {
    packets: u64,
    seconds: f64,
    not_forwarded: u64,
    flow_misses: u64,
    cpu: i32,
}

fn worker(
    snap: &Snapshot,
    (templates, lens): &(Vec<u8>, Vec<usize>),
    flows: usize,
    core: usize,
    len: Length,
    index: usize,
    harness_only: bool,
) -> anyhow::Result<WorkerResult> {
    super::sys::pin(core)?;
    let mut pipeline = Pipeline::new(config(flows))?;
    let mut port = MemoryPort::new(2 * BURST, 2048, 256);
    let mut descs = [Desc::default(); BURST];
    let mut verdicts = [Verdict::Drop(DropReason::Malformed); BURST];
    let n = lens.len();
    // Each template's bytes, sliced once.
    let frames: Vec<&[u8]> = lens
        .iter()
        .enumerate()
        .map(|(j, &len)| &templates[j * STRIDE..j * STRIDE + len])
        .collect();
    // Workers start at different flows, as RSS would give them different ones.
    let mut next = index * n / 2 % n.max(1);
    let mut burst = |pipeline: &mut Pipeline, next: &mut usize| -> usize {
        // The next BURST templates, cyclically: at most a few runs of the list. Cannot fail:
        // 2 * BURST chunks of 2048 bytes and all freed after each burst.
        let mut left = BURST;
        while left > 0 {
            let run = frames.get(*next..).unwrap_or_default();
            let run = run.get(..left).unwrap_or(run);
            let _ = port.inject_burst(run.iter().copied());
            *next += run.len();
            if *next >= n {
                *next = 0;
            }
            // An empty template list injects nothing; stop rather than loop.
            left = if run.is_empty() { 0 } else { left - run.len() };
        }
        let k = port.rx_burst(&mut descs);
        let done = if harness_only {
            k
        } else {
            let mut b = port.burst(&mut descs[..k]);
            pipeline.process_burst(snap, &mut b, &mut verdicts, 1)
        };
        for d in &descs[..k] {
            port.free(*d);
        }
        done.max(k)
    };
    // Warm the flow table: every flow seen once.
    for _ in 0..flows.div_ceil(BURST) {
        burst(&mut pipeline, &mut next);
    }
    let c0 = pipeline.counters().forwarded;
    let r0 = pipeline.counters().rx_packets;
    let i0 = pipeline.flow_table().stats().inserts;
    let start = Instant::now();
    let mut pkts = 0u64;
    match len {
        Length::Secs(secs) => {
            let limit = Duration::from_secs_f64(secs);
            while start.elapsed() < limit {
                for _ in 0..64 {
                    pkts += burst(&mut pipeline, &mut next) as u64;
                }
            }
        }
        Length::Packets(n) => {
            for _ in 0..n.div_ceil(BURST as u64) {
                pkts += burst(&mut pipeline, &mut next) as u64;
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let fwd = pipeline.counters().forwarded - c0;
    let rx = pipeline.counters().rx_packets - r0;
    Ok(WorkerResult {
        packets: pkts,
        seconds,
        not_forwarded: rx - fwd,
        flow_misses: pipeline.flow_table().stats().inserts - i0,
        cpu: super::sys::current_cpu(),
    })
}
