//! `fiberlb-dataplane stats [--json]`, run on the main thread of that command (another process
//! than the data plane's): reads the region's counters, names their slots from
//! `<region>.slots.json` ([`fiberlb_shared::slots`]), adds the NIC ports of
//! `<region>.ports.json` ([`crate::port_stats`]), and prints the report as a table
//! ([`render_table`]) or JSON. Also the report of `fiberlb-dataplane replay` ([`print_replay`]):
//! every counters report the command line prints is here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use fiberlb_shared::port_stats::{ports_path_for, PortCounters, STALE_AFTER_MS};
use fiberlb_shared::shm::counters::{drop_reason_label, CountersReader, Totals, DROP_REASONS};
use fiberlb_shared::shm::region::{monotonic_ns, Region};
use fiberlb_shared::slots::{slots_path_for, ControlCounts, SlotsFile};
use serde::Serialize;

use crate::pipeline::DropReason;

use serde_json::json;

use crate::control::ControlError;
use crate::pipeline::Pipeline;
use crate::snapshot::Snapshot;
use crate::worker::replay::ReplayStats;

/// Counters of one listener, with its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ListenerStats {
    pub slot: u32,
    pub id: u32,
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: String,
    pub mode: String,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Live flows, summed over workers (each worker's count as of its last flow-table sweep).
    pub active_flows: u64,
}

/// Counters of one backend, with its identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BackendStats {
    pub slot: u32,
    pub id: u32,
    pub pool: String,
    pub address: IpAddr,
    pub port: u16,
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Live flows, summed over workers.
    pub active_flows: u64,
}

/// Packet and byte totals over all workers, or of one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TotalsReport {
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    /// Packets handed to the kernel through the exception path (DPDK's TAP).
    pub to_host: u64,
}

impl From<Totals> for TotalsReport {
    fn from(t: Totals) -> Self {
        TotalsReport {
            rx_packets: t.rx_packets,
            rx_bytes: t.rx_bytes,
            tx_packets: t.tx_packets,
            tx_bytes: t.tx_bytes,
            to_host: t.to_host,
        }
    }
}

/// One worker's counters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerStats {
    pub worker: u32,
    #[serde(flatten)]
    pub totals: TotalsReport,
    /// Sum of `drops`.
    pub dropped: u64,
    /// Drops by reason name (every reason, zeros included).
    pub drops: BTreeMap<String, u64>,
}

/// What `fiberlb-dataplane stats` shows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StatsReport {
    pub region: PathBuf,
    pub instance_id: String,
    pub data_plane_pid: u32,
    pub applied_generation: u64,
    /// Milliseconds since the data plane's last heartbeat (`None`: never beat).
    pub data_plane_heartbeat_age_ms: Option<u64>,
    /// Milliseconds since the control plane's last heartbeat (`None`: never beat).
    pub control_plane_heartbeat_age_ms: Option<u64>,
    pub totals: TotalsReport,
    /// Drops by reason name (every reason, zeros included).
    pub drops: BTreeMap<String, u64>,
    /// Per worker: the data plane's workers when the slots file says how many, else every
    /// counter block that counted anything.
    pub workers: Vec<WorkerStats>,
    pub listeners: Vec<ListenerStats>,
    pub backends: Vec<BackendStats>,
    /// The control thread's counters, from the slots file (`None` when it is missing or
    /// belongs to another instance).
    pub control: Option<ControlCounts>,
    /// Generation the slot names belong to (`None`: no usable slots file, no per-object rows).
    pub slots_generation: Option<u64>,
    /// The NIC ports' link state and counters from `<region>.ports.json`, which the data
    /// plane rewrites every second. Empty unless that file is this instance's and fresh.
    pub ports: Vec<PortCounters>,
    /// Milliseconds since the ports file was written (`None`: no ports file of this instance).
    pub ports_age_ms: Option<u64>,
    /// The ports file is older than 5 s: the data plane stopped publishing (dead or stuck), so
    /// its numbers are not shown (`ports` is empty).
    pub ports_stale: bool,
}

/// The ports of this instance's `<region>.ports.json`: `(ports, age, stale)`.
fn read_ports(shm_path: &Path, instance_id: &str) -> (Vec<PortCounters>, Option<u64>, bool) {
    let Ok(f) = crate::port_stats::read_ports_file(&ports_path_for(shm_path)) else {
        return (Vec::new(), None, false);
    };
    if f.instance_id != instance_id {
        return (Vec::new(), None, false);
    }
    let now = monotonic_ns();
    let age = f.age_ms(now);
    if f.is_stale(now) {
        (Vec::new(), Some(age), true)
    } else {
        (f.ports, Some(age), false)
    }
}

fn age_ms(beat: u64) -> Option<u64> {
    (beat != 0).then(|| monotonic_ns().saturating_sub(beat) / 1_000_000)
}

/// Reads the counters of the data plane at `shm_path`, named through its slots file.
///
/// It maps the region as the control plane does, so it fails while a control plane is
/// attached (the region allows one); the error says so.
///
/// # Errors
/// The region is missing, invalid, or a control plane holds it.
pub fn read_stats(shm_path: &Path) -> Result<StatsReport, ControlError> {
    let region = Region::observe(shm_path).map_err(|source| ControlError::Stats {
        path: shm_path.to_path_buf(),
        source,
    })?;
    let h = region.header();
    let instance_id = format!("{:032x}", h.instance_id());
    let slots = SlotsFile::read_if_instance(&slots_path_for(shm_path), &instance_id);
    let (ports, ports_age_ms, ports_stale) = read_ports(shm_path, &instance_id);
    let c = region.counters();
    let t = c.totals();
    let drops = drops_by_name(|i| c.drops(i));
    let workers = worker_stats(&c, slots.as_ref().and_then(|s| s.workers));
    let (listeners, backends) = match &slots {
        Some(s) => (
            s.listeners
                .iter()
                .map(|l| {
                    let o = c.listener(l.slot);
                    ListenerStats {
                        slot: l.slot,
                        id: l.id,
                        name: l.name.clone(),
                        vip: l.vip,
                        port: l.port,
                        protocol: l.protocol.clone(),
                        mode: l.mode.clone(),
                        packets: o.packets,
                        bytes: o.bytes,
                        new_flows: o.new_flows,
                        active_flows: o.active_flows,
                    }
                })
                .collect(),
            s.backends
                .iter()
                .map(|b| {
                    let o = c.backend(b.slot);
                    BackendStats {
                        slot: b.slot,
                        id: b.id,
                        pool: b.pool.clone(),
                        address: b.address,
                        port: b.port,
                        packets: o.packets,
                        bytes: o.bytes,
                        new_flows: o.new_flows,
                        active_flows: o.active_flows,
                    }
                })
                .collect(),
        ),
        None => (Vec::new(), Vec::new()),
    };
    Ok(StatsReport {
        region: shm_path.to_path_buf(),
        instance_id,
        data_plane_pid: h.data_plane_pid(),
        applied_generation: h.applied_generation(),
        data_plane_heartbeat_age_ms: age_ms(h.data_plane_heartbeat()),
        control_plane_heartbeat_age_ms: age_ms(h.control_plane_heartbeat()),
        totals: t.into(),
        drops,
        workers,
        listeners,
        backends,
        control: slots.as_ref().map(|s| s.control),
        slots_generation: slots.as_ref().map(|s| s.generation),
        ports,
        ports_age_ms,
        ports_stale,
    })
}

/// Every drop reason this build names (zeros included), plus any unnamed slot a newer data
/// plane counted in.
fn drops_by_name(read: impl Fn(usize) -> u64) -> BTreeMap<String, u64> {
    (0..DROP_REASONS)
        .filter_map(|i| {
            let v = read(i);
            (i < DropReason::COUNT || v > 0).then(|| (drop_reason_label(i), v))
        })
        .collect()
}

/// Per-worker rows: `running` workers when the slots file says, else the blocks that counted
/// anything ([`CountersReader::workers_in_use`]).
fn worker_stats(c: &CountersReader<'_>, running: Option<u32>) -> Vec<WorkerStats> {
    let n = running
        .unwrap_or_else(|| c.workers_in_use())
        .min(c.workers());
    (0..n)
        .filter_map(|w| c.worker(w).map(|r| (w, r)))
        .map(|(w, r)| {
            let drops = drops_by_name(|i| r.drops(i));
            WorkerStats {
                worker: w,
                totals: r.totals().into(),
                dropped: drops.values().fold(0u64, |a, v| a.wrapping_add(*v)),
                drops,
            }
        })
        .collect()
}

/// The report as a human-readable table.
pub fn render_table(r: &StatsReport) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let age = |a: Option<u64>| a.map_or("never".to_string(), |ms| format!("{ms} ms ago"));
    let _ = writeln!(o, "region      {}", r.region.display());
    let _ = writeln!(
        o,
        "instance    {} (pid {})",
        r.instance_id, r.data_plane_pid
    );
    let _ = writeln!(o, "generation  {}", r.applied_generation);
    let _ = writeln!(
        o,
        "heartbeats  data plane {}, control plane {}",
        age(r.data_plane_heartbeat_age_ms),
        age(r.control_plane_heartbeat_age_ms)
    );
    let t = &r.totals;
    let _ = writeln!(
        o,
        "rx          {} packets, {} bytes\ntx          {} packets, {} bytes\nto host     {} packets",
        t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes, t.to_host
    );
    let drops: Vec<_> = r.drops.iter().filter(|(_, v)| **v > 0).collect();
    if drops.is_empty() {
        let _ = writeln!(o, "drops       none");
    } else {
        let _ = writeln!(o, "drops");
        for (name, v) in drops {
            let _ = writeln!(o, "  {name:<24} {v:>14}");
        }
    }
    if !r.workers.is_empty() {
        let _ = writeln!(
            o,
            "\n{:<7} {:>14} {:>16} {:>14} {:>16} {:>12} {:>12}  TOP DROP REASON",
            "WORKER", "RX PACKETS", "RX BYTES", "TX PACKETS", "TX BYTES", "TO HOST", "DROPPED"
        );
        for w in &r.workers {
            let top = w
                .drops
                .iter()
                .filter(|(_, v)| **v > 0)
                .max_by_key(|(_, v)| **v)
                .map_or("-".to_string(), |(k, v)| format!("{k} ({v})"));
            let t = &w.totals;
            let _ = writeln!(
                o,
                "{:<7} {:>14} {:>16} {:>14} {:>16} {:>12} {:>12}  {top}",
                w.worker, t.rx_packets, t.rx_bytes, t.tx_packets, t.tx_bytes, t.to_host, w.dropped
            );
        }
        let _ = writeln!(o);
    }
    render_ports(&mut o, r);
    if let Some(c) = &r.control {
        let _ = writeln!(
            o,
            "control     applied {}, rejected: corrupt {}, out-of-order {}, protocol {}, invalid {}; aborted {}, stale {}",
            c.applied,
            c.rejected_corrupt,
            c.rejected_out_of_order,
            c.rejected_protocol,
            c.rejected_invalid,
            c.aborted,
            c.stale_discarded
        );
    }
    if r.slots_generation.is_none() {
        let _ = writeln!(
            o,
            "(no slots file for this instance: per-listener and per-backend counters unnamed)"
        );
        return o;
    }
    let _ = writeln!(
        o,
        "\n{:<5} {:<32} {:<28} {:<5} {:>14} {:>16} {:>10} {:>12}",
        "SLOT",
        "LISTENER",
        "VIP:PORT/PROTO",
        "MODE",
        "PACKETS",
        "BYTES",
        "NEW FLOWS",
        "ACTIVE FLOWS"
    );
    for l in &r.listeners {
        let _ = writeln!(
            o,
            "{:<5} {:<32} {:<28} {:<5} {:>14} {:>16} {:>10} {:>12}",
            l.slot,
            l.name,
            format!("{}/{}", sock(l.vip, l.port), l.protocol),
            l.mode,
            l.packets,
            l.bytes,
            l.new_flows,
            l.active_flows
        );
    }
    let _ = writeln!(
        o,
        "\n{:<5} {:<8} {:<20} {:<28} {:>14} {:>16} {:>10} {:>12}",
        "SLOT", "ID", "POOL", "BACKEND", "PACKETS", "BYTES", "NEW FLOWS", "ACTIVE FLOWS"
    );
    for b in &r.backends {
        let _ = writeln!(
            o,
            "{:<5} {:<8} {:<20} {:<28} {:>14} {:>16} {:>10} {:>12}",
            b.slot,
            b.id,
            b.pool,
            sock(b.address, b.port),
            b.packets,
            b.bytes,
            b.new_flows,
            b.active_flows
        );
    }
    o
}

/// The ports table (or why there is none).
fn render_ports(o: &mut String, r: &StatsReport) {
    use std::fmt::Write as _;
    match (r.ports_age_ms, r.ports_stale) {
        (None, _) => {
            let _ = writeln!(
                o,
                "ports       none published by this data plane (stopped, or just starting)\n"
            );
            return;
        }
        (Some(age), true) => {
            let _ = writeln!(
                o,
                "ports       stale: last published {:.1} s ago (more than {} s): the data plane \
                 is not publishing, its numbers are not shown\n",
                age as f64 / 1000.0,
                STALE_AFTER_MS / 1000
            );
            return;
        }
        (Some(age), false) => {
            let _ = writeln!(o, "ports       published {age} ms ago");
        }
    }
    let _ = writeln!(
        o,
        "{:<14} {:<6} {:<16} {:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>9} {:>9} {:>9}",
        "PORT",
        "DRIVER",
        "DEVICE",
        "LINK",
        "RX PACKETS",
        "RX BYTES",
        "TX PACKETS",
        "TX BYTES",
        "RX MISSED",
        "RX ERRS",
        "TX ERRS",
        "RX NOMBUF"
    );
    for p in &r.ports {
        let link = match (p.link_up, p.speed_mbps) {
            (false, _) => "down".to_string(),
            (true, Some(s)) if s >= 1000 && s % 1000 == 0 => format!("up {}G", s / 1000),
            (true, Some(s)) => format!("up {s}M"),
            (true, None) => "up".to_string(),
        };
        let _ = writeln!(
            o,
            "{:<14} {:<6} {:<16} {:<10} {:>14} {:>16} {:>14} {:>16} {:>10} {:>9} {:>9} {:>9}",
            p.name,
            p.driver,
            p.device,
            link,
            p.rx_packets,
            p.rx_bytes,
            p.tx_packets,
            p.tx_bytes,
            p.rx_missed,
            p.rx_errors,
            p.tx_errors,
            p.rx_nombuf.map_or("-".to_string(), |v| v.to_string())
        );
    }
    for p in &r.ports {
        if let Some(x) = &p.xsk {
            let _ = write!(
                o,
                "  {}: {} AF_XDP socket(s): rx_ring_full {}, fill_ring_empty {}, rx_dropped {}, \
                 invalid descs rx {} tx {}",
                p.name,
                x.sockets,
                x.rx_ring_full,
                x.rx_fill_ring_empty,
                x.rx_dropped,
                x.rx_invalid_descs,
                x.tx_invalid_descs
            );
            if let Some(d) = &p.xdp {
                let _ = write!(
                    o,
                    "; XDP redirected {}, passed {} (parse errors {}, no socket {})",
                    d.redirected, d.passed, d.parse_errors, d.no_socket
                );
            }
            let _ = writeln!(o);
        }
        if let Some(e) = &p.error {
            let _ = writeln!(o, "  {}: not all counters could be read: {e}", p.name);
        }
    }
    let _ = writeln!(o);
}

fn sock(a: IpAddr, port: u16) -> String {
    match a {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    }
}

/// `fiberlb-dataplane stats [--json]`: reads and prints.
///
/// # Errors
/// See [`read_stats`].
pub fn print_stats(shm_path: &Path, json: bool) -> Result<(), ControlError> {
    let r = read_stats(shm_path)?;
    if json {
        let s = serde_json::to_string_pretty(&r).map_err(|e| ControlError::SlotsFile {
            path: shm_path.to_path_buf(),
            reason: e.to_string(),
        })?;
        println!("{s}");
    } else {
        print!("{}", render_table(&r));
    }
    Ok(())
}

/// `fiberlb-dataplane replay`'s report: what the pipeline counted over the capture (as a table,
/// or JSON with `--json`).
pub fn print_replay(p: &Pipeline, snap: &Snapshot, stats: &ReplayStats, as_json: bool) {
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
                       "evictions": p.flow_table().stats().evictions,
                       "half_open_evictions": p.flow_table().stats().half_open_evictions,
                       "syn_not_recorded": p.flow_table().stats().syn_not_recorded},
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

#[cfg(test)]
mod tests;
