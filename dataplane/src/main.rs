//! `fiberlb-dataplane`: the data plane process.
//!
//! Subcommands:
//! - `replay --services services.yaml --in in.pcap --out out.pcap [--config dataplane.toml] [--json]`:
//!   run a capture through the forwarding pipeline offline and print the counters.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use fiberlb_dataplane::config::DataplaneConfig;
use fiberlb_dataplane::nic::pcap::{replay_files, ReplayStats};
use fiberlb_dataplane::pipeline::{DropReason, Pipeline};
use fiberlb_dataplane::snapshot::{Snapshot, SnapshotBuilder};
use serde_json::json;

#[derive(Parser, Debug)]
#[command(name = "fiberlb-dataplane", version, about = "fiberlb data plane")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug)]
enum Cmd {
    /// Replay a pcap capture through the forwarding pipeline and write what comes out.
    Replay {
        /// Services file (YAML): load balancers, listeners, pools, backends.
        #[arg(long)]
        services: PathBuf,
        /// Input capture (pcap, Ethernet).
        #[arg(long = "in")]
        input: PathBuf,
        /// Output capture: every packet the pipeline forwarded, rewritten.
        #[arg(long = "out")]
        output: PathBuf,
        /// Node settings (dataplane.toml); only [forwarding] and [timeouts] are used here.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print the counters as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fiberlb-dataplane: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.cmd {
        Cmd::Replay {
            services,
            input,
            output,
            config,
            json,
        } => {
            let cfg = match config {
                Some(p) => DataplaneConfig::load(&p)?,
                None => DataplaneConfig::default(),
            };
            let set = fiberlb_shared::services::load_services(&services)?;
            let pcfg = cfg.pipeline();
            let snap = SnapshotBuilder::new(pcfg.max_listeners, pcfg.max_backends)
                .build(&set, 1)
                .with_context(|| format!("{}: configuration refused", services.display()))?;
            let mut pipeline = Pipeline::new(pcfg)?;
            let stats = replay_files(&mut pipeline, &snap, &input, &output)?;
            print_counters(&pipeline, &snap, &stats, json);
            Ok(())
        }
    }
}

fn print_counters(p: &Pipeline, snap: &Snapshot, stats: &ReplayStats, as_json: bool) {
    let c = p.counters();
    let drops: serde_json::Map<String, serde_json::Value> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), json!(c.drops[*r as usize])))
        .collect();
    let listeners: Vec<_> = snap
        .listeners
        .iter()
        .map(|l| {
            let k = c.listeners.get(l.slot as usize).copied().unwrap_or_default();
            json!({"name": l.name, "vip": l.vip.to_string(), "port": l.port, "protocol": l.protocol.to_string(),
                   "mode": l.mode.to_string(), "packets": k.packets, "bytes": k.bytes, "new_flows": k.new_flows})
        })
        .collect();
    let backends: Vec<_> = snap
        .backends
        .iter()
        .flatten()
        .map(|b| {
            let k = c.backends.get(b.handle as usize & 0xff_ffff).copied().unwrap_or_default();
            json!({"pool": snap.pools[b.pool as usize].name, "address": b.address.to_string(), "port": b.port,
                   "packets": k.packets, "bytes": k.bytes, "new_flows": k.new_flows})
        })
        .collect();
    let doc = json!({
        "capture": {"read": stats.read, "oversized": stats.oversized, "written": stats.written},
        "rx_packets": c.rx_packets, "rx_bytes": c.rx_bytes, "forwarded": c.forwarded,
        "nat_replies": c.nat_replies, "icmp_to_backend": c.icmp_to_backend,
        "flows_rebalanced": c.flows_rebalanced, "dropped": c.dropped(), "drops": drops,
        "listeners": listeners, "backends": backends,
        "flow_table": {"capacity": p.flow_table().capacity(), "inserts": p.flow_table().stats().inserts,
                       "evictions": p.flow_table().stats().evictions},
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        return;
    }
    println!(
        "capture: {} packets read, {} written, {} too long for a frame",
        stats.read, stats.written, stats.oversized
    );
    println!("pipeline: {} received, {} forwarded ({} nat replies, {} ICMP errors to backends), {} dropped",
        c.rx_packets, c.forwarded, c.nat_replies, c.icmp_to_backend, c.dropped());
    for r in DropReason::ALL {
        let n = c.drops[r as usize];
        if n > 0 {
            println!("  drop {:<24} {n}", r.name());
        }
    }
    println!(
        "{:<28} {:>6} {:>8} {:>10} {:>10} {:>9}",
        "listener", "mode", "", "packets", "bytes", "new flows"
    );
    for l in &snap.listeners {
        let k = c
            .listeners
            .get(l.slot as usize)
            .copied()
            .unwrap_or_default();
        println!(
            "{:<28} {:>6} {:>8} {:>10} {:>10} {:>9}",
            l.name,
            l.mode.to_string(),
            "",
            k.packets,
            k.bytes,
            k.new_flows
        );
    }
    println!(
        "{:<28} {:>15} {:>10} {:>10} {:>9}",
        "backend", "pool", "packets", "bytes", "new flows"
    );
    for b in snap.backends.iter().flatten() {
        let k = c
            .backends
            .get(b.handle as usize & 0xff_ffff)
            .copied()
            .unwrap_or_default();
        let addr = std::net::SocketAddr::new(b.address, b.port).to_string();
        println!(
            "{:<28} {:>15} {:>10} {:>10} {:>9}",
            addr, snap.pools[b.pool as usize].name, k.packets, k.bytes, k.new_flows
        );
    }
}
