//! `fiberlbctl stats` tables and the live `fiberlbctl top`.

use fiberlb_controlplane::api::client::Clients;
use fiberlb_controlplane::pb;
use serde::Serialize;

use super::*;

/// `fiberlbctl stats` per-worker rows.
pub(crate) fn worker_rows(workers: &[pb::WorkerCounters]) -> Vec<Vec<String>> {
    workers
        .iter()
        .map(|w| {
            vec![
                w.worker.to_string(),
                w.rx_packets.to_string(),
                w.rx_bytes.to_string(),
                w.tx_packets.to_string(),
                w.tx_bytes.to_string(),
                w.to_host.to_string(),
                w.drops.to_string(),
            ]
        })
        .collect()
}

/// `fiberlbctl stats` ports table rows: link as "up 10G" / "up 100M" / "up" / "down", "-"
/// where a driver has no such counter.
pub(crate) fn port_rows(ports: &[pb::PortCounters]) -> Vec<Vec<String>> {
    ports
        .iter()
        .map(|p| {
            let link = match (p.link_up, p.speed_mbps) {
                (false, _) => "down".to_string(),
                (true, Some(s)) if s >= 1000 && s % 1000 == 0 => format!("up {}G", s / 1000),
                (true, Some(s)) => format!("up {s}M"),
                (true, None) => "up".to_string(),
            };
            vec![
                p.name.clone(),
                p.driver.clone(),
                p.device.clone(),
                link,
                p.rx_packets.to_string(),
                p.rx_bytes.to_string(),
                p.tx_packets.to_string(),
                p.tx_bytes.to_string(),
                p.rx_missed.to_string(),
                p.rx_errors.to_string(),
                p.tx_errors.to_string(),
                p.rx_nombuf.map_or("-".to_string(), |v| v.to_string()),
            ]
        })
        .collect()
}

/// `fiberlbctl stats` drops table: a row per reason that dropped anything, its total, then a
/// column per worker.
pub(crate) fn drop_matrix(s: &pb::CountersResponse) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["REASON".to_string(), "TOTAL".to_string()];
    header.extend(s.workers.iter().map(|w| format!("W{}", w.worker)));
    let rows = s
        .drops_by_reason
        .iter()
        .map(|d| {
            let mut r = vec![d.reason.clone(), d.packets.to_string()];
            r.extend(s.workers.iter().map(|w| {
                w.drops_by_reason
                    .iter()
                    .find(|x| x.reason == d.reason)
                    .map_or(0, |x| x.packets)
                    .to_string()
            }));
            r
        })
        .collect();
    (header, rows)
}

/// One sample of what `top` shows.
pub(crate) struct TopSample {
    pub(crate) at: std::time::Instant,
    pub(crate) status: pb::StatusResponse,
    pub(crate) counters: pb::CountersResponse,
    pub(crate) backends: Vec<pb::Backend>,
}

pub(crate) async fn top_sample(
    c: &mut Clients,
    scope: &Option<pb::Scope>,
) -> Result<TopSample, Failure> {
    let status = c.dataplane.status(pb::StatusRequest {}).await?.into_inner();
    let counters = c
        .dataplane
        .counters(pb::CountersRequest {
            scope: scope.clone(),
        })
        .await?
        .into_inner();
    let backends = c
        .backends
        .list(pb::ListRequest {
            scope: scope.clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .backends;
    Ok(TopSample {
        at: std::time::Instant::now(),
        status,
        counters,
        backends,
    })
}

/// A rate from two counter readings; a counter that went back (the data plane restarted)
/// restarts from zero.
pub(crate) fn rate(now: u64, before: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        return 0.0;
    }
    now.checked_sub(before).unwrap_or(now) as f64 / secs
}

/// 1234567 -> "1.23M" (SI, for pps and bps columns).
pub(crate) fn si(v: f64) -> String {
    let (d, unit) = match v.abs() {
        x if x >= 1e9 => (1e9, "G"),
        x if x >= 1e6 => (1e6, "M"),
        x if x >= 1e3 => (1e3, "k"),
        _ => return format!("{v:.0}"),
    };
    format!("{:.2}{unit}", v / d)
}

#[derive(Serialize)]
pub(crate) struct TopObject {
    pub(crate) id: u32,
    pub(crate) name: String,
    pub(crate) pps: f64,
    pub(crate) bps: f64,
    pub(crate) new_flows_per_s: f64,
    pub(crate) packets: u64,
    /// Live flows now (a gauge, not a rate).
    pub(crate) active_flows: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) admin_state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) healthy: Option<bool>,
}

#[derive(Serialize)]
pub(crate) struct TopFrame {
    pub(crate) attached: bool,
    pub(crate) instance_id: String,
    pub(crate) store_generation: u64,
    pub(crate) applied_generation: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) synced_store_generation: Option<u64>,
    pub(crate) interval_s: f64,
    pub(crate) rx_pps: f64,
    pub(crate) tx_pps: f64,
    pub(crate) drops_per_s: f64,
    pub(crate) listeners: Vec<TopObject>,
    pub(crate) backends: Vec<TopObject>,
    pub(crate) drops: Vec<TopDrop>,
}

#[derive(Debug, PartialEq, Serialize)]
pub(crate) struct TopDrop {
    pub(crate) reason: String,
    pub(crate) total: u64,
    pub(crate) per_second: f64,
}

pub(crate) fn top_frame(before: &TopSample, now: &TopSample) -> TopFrame {
    let secs = now.at.duration_since(before.at).as_secs_f64();
    let (b, n) = (&before.counters, &now.counters);
    let objects = |now: &[pb::ObjectCounters], before: &[pb::ObjectCounters]| -> Vec<TopObject> {
        let mut v: Vec<TopObject> = now
            .iter()
            .map(|o| {
                let p = before
                    .iter()
                    .find(|p| p.id == o.id)
                    .cloned()
                    .unwrap_or_default();
                TopObject {
                    id: o.id,
                    name: o.name.clone(),
                    pps: rate(o.packets, p.packets, secs),
                    bps: rate(o.bytes, p.bytes, secs) * 8.0,
                    new_flows_per_s: rate(o.new_flows, p.new_flows, secs),
                    packets: o.packets,
                    active_flows: o.active_flows,
                    admin_state: None,
                    healthy: None,
                }
            })
            .collect();
        v.sort_by_key(|o| o.id);
        v
    };
    let mut backends = objects(&n.backends, &b.backends);
    for o in &mut backends {
        if let Some(b) = now.backends.iter().find(|b| b.id == o.id) {
            o.admin_state = Some(b.admin_state.clone());
            o.healthy = Some(b.healthy);
        }
    }
    let drops = n
        .drops_by_reason
        .iter()
        .map(|d| {
            let p = b
                .drops_by_reason
                .iter()
                .find(|p| p.reason == d.reason)
                .map_or(0, |p| p.packets);
            TopDrop {
                reason: d.reason.clone(),
                total: d.packets,
                per_second: rate(d.packets, p, secs),
            }
        })
        .collect();
    TopFrame {
        attached: n.attached,
        instance_id: now.status.instance_id.clone(),
        store_generation: now.status.store_generation,
        applied_generation: now.status.applied_generation,
        synced_store_generation: now.status.synced_store_generation,
        interval_s: secs,
        rx_pps: rate(n.rx_packets, b.rx_packets, secs),
        tx_pps: rate(n.tx_packets, b.tx_packets, secs),
        drops_per_s: rate(n.drops, b.drops, secs),
        listeners: objects(&n.listeners, &b.listeners),
        backends,
        drops,
    }
}

pub(crate) fn print_top(f: &TopFrame) {
    if !f.attached {
        out!(
            "fiberlb top  store generation {}  data plane: not attached (no counters)",
            f.store_generation
        );
        return;
    }
    let short = f.instance_id.get(..8).unwrap_or(&f.instance_id);
    let synced = match f.synced_store_generation {
        Some(g) if g == f.store_generation => format!("store generation {g}, in sync"),
        Some(g) => format!("holds store generation {g} of {}", f.store_generation),
        None => format!("not synced yet (store generation {})", f.store_generation),
    };
    out!(
        "fiberlb top  data plane {short}  {synced}  rx {} pps  tx {} pps  drops {}/s  (over {:.1}s)",
        si(f.rx_pps),
        si(f.tx_pps),
        si(f.drops_per_s),
        f.interval_s
    );
    let rows = |v: &[TopObject], backend: bool| -> Vec<Vec<String>> {
        v.iter()
            .map(|o| {
                let mut r = vec![o.id.to_string(), o.name.clone()];
                if backend {
                    r.push(o.admin_state.clone().unwrap_or_else(|| "-".into()));
                    r.push(match o.healthy {
                        Some(true) => "up".into(),
                        Some(false) => "DOWN".into(),
                        None => "-".into(),
                    });
                }
                r.extend([
                    si(o.pps),
                    si(o.bps),
                    si(o.new_flows_per_s),
                    si(o.active_flows as f64),
                    o.packets.to_string(),
                ]);
                r
            })
            .collect()
    };
    out!("");
    table(
        &[
            "LISTENER", "NAME", "PPS", "BPS", "NEW/S", "ACTIVE", "PACKETS",
        ],
        rows(&f.listeners, false),
    );
    out!("");
    table(
        &[
            "BACKEND", "ADDRESS", "STATE", "HEALTH", "PPS", "BPS", "NEW/S", "ACTIVE", "PACKETS",
        ],
        rows(&f.backends, true),
    );
    out!("");
    if f.drops.is_empty() {
        out!("drops: none");
    } else {
        table(
            &["DROP REASON", "TOTAL", "PER SECOND"],
            f.drops
                .iter()
                .map(|d| vec![d.reason.clone(), d.total.to_string(), si(d.per_second)])
                .collect(),
        );
    }
}

/// `fiberlbctl top`: a baseline sample, then a frame per interval (rates over that interval).
pub(crate) async fn top(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    interval: f64,
    frames: Option<u64>,
) -> Result<(), Failure> {
    use std::io::IsTerminal as _;
    let tty = out == Output::Table && std::io::stdout().is_terminal();
    let period = std::time::Duration::from_secs_f64(interval);
    let mut before = top_sample(c, &scope).await?;
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut shown = 0u64;
    while frames.is_none_or(|n| shown < n) {
        ticker.tick().await;
        let now = top_sample(c, &scope).await?;
        let frame = top_frame(&before, &now);
        match out {
            Output::Json => {
                let s = serde_json::to_string(&frame).map_err(|e| Failure(e.to_string()))?;
                out!("{s}");
            }
            Output::Table => {
                if tty {
                    // Home and clear, so the view updates in place.
                    print!("\x1b[H\x1b[2J");
                } else if shown > 0 {
                    out!("");
                }
                print_top(&frame);
            }
        }
        shown += 1;
        before = now;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: std::time::Instant, packets: u64, bytes: u64, drops: u64) -> TopSample {
        let o = |id| pb::ObjectCounters {
            id,
            name: format!("o{id}"),
            packets,
            bytes,
            new_flows: packets / 10,
            active_flows: packets / 100 + u64::from(id),
        };
        TopSample {
            at,
            status: pb::StatusResponse {
                attached: true,
                instance_id: "0123456789abcdef".into(),
                ..Default::default()
            },
            counters: pb::CountersResponse {
                attached: true,
                rx_packets: packets * 2,
                tx_packets: packets * 2,
                drops,
                listeners: vec![o(1)],
                backends: vec![o(3), o(2)],
                drops_by_reason: vec![pb::DropCount {
                    reason: "no_backend".into(),
                    packets: drops,
                }],
                ..Default::default()
            },
            backends: vec![pb::Backend {
                id: 2,
                admin_state: "drained".into(),
                healthy: false,
                ..Default::default()
            }],
        }
    }

    #[test]
    fn frame_rates_are_deltas_over_the_interval() {
        let t0 = std::time::Instant::now();
        let before = sample(t0, 100, 10_000, 5);
        let now = sample(t0 + std::time::Duration::from_secs(2), 300, 30_000, 9);
        let f = top_frame(&before, &now);
        assert_eq!(f.rx_pps, 200.0);
        assert_eq!(f.drops_per_s, 2.0);
        assert_eq!(f.listeners[0].pps, 100.0);
        assert_eq!(f.listeners[0].bps, 80_000.0);
        assert_eq!(f.listeners[0].new_flows_per_s, 10.0);
        // Active flows are the latest gauge, not a rate.
        assert_eq!(f.listeners[0].active_flows, 4);
        // Sorted by id, health and admin state folded in from the backend list.
        assert_eq!(f.backends.iter().map(|b| b.id).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(f.backends[0].healthy, Some(false));
        assert_eq!(f.backends[0].admin_state.as_deref(), Some("drained"));
        assert_eq!(f.backends[1].healthy, None);
        assert_eq!(
            f.drops,
            vec![TopDrop {
                reason: "no_backend".into(),
                total: 9,
                per_second: 2.0
            }]
        );
    }

    #[test]
    fn stats_worker_and_drop_tables() {
        let w = |worker: u32, tx_full: u64| pb::WorkerCounters {
            worker,
            rx_packets: 10 + u64::from(worker),
            rx_bytes: 640,
            tx_packets: 9,
            tx_bytes: 576,
            to_host: 1,
            drops: tx_full + 1,
            drops_by_reason: [("no_listener", 1), ("tx_ring_full", tx_full)]
                .into_iter()
                .filter(|(_, v)| *v > 0)
                .map(|(r, v)| pb::DropCount {
                    reason: r.into(),
                    packets: v,
                })
                .collect(),
        };
        let s = pb::CountersResponse {
            attached: true,
            drops_by_reason: vec![
                pb::DropCount {
                    reason: "no_listener".into(),
                    packets: 2,
                },
                pb::DropCount {
                    reason: "tx_ring_full".into(),
                    packets: 3,
                },
            ],
            workers: vec![w(0, 0), w(1, 3)],
            ..Default::default()
        };
        assert_eq!(
            worker_rows(&s.workers)[1],
            ["1", "11", "640", "9", "576", "1", "4"]
        );
        let (header, rows) = drop_matrix(&s);
        assert_eq!(header, ["REASON", "TOTAL", "W0", "W1"]);
        assert_eq!(
            rows,
            vec![
                vec!["no_listener", "2", "1", "1"],
                vec!["tx_ring_full", "3", "0", "3"]
            ]
        );
    }

    #[test]
    fn stats_port_rows() {
        let ports = [
            pb::PortCounters {
                name: "client".into(),
                driver: "dpdk".into(),
                device: "0000:01:00.0".into(),
                link_up: true,
                speed_mbps: Some(25_000),
                rx_packets: 5,
                rx_missed: 2,
                rx_nombuf: Some(1),
                ..Default::default()
            },
            pb::PortCounters {
                name: "backend".into(),
                driver: "afxdp".into(),
                device: "eth1".into(),
                link_up: false,
                ..Default::default()
            },
        ];
        let rows = port_rows(&ports);
        assert_eq!(
            rows[0],
            [
                "client",
                "dpdk",
                "0000:01:00.0",
                "up 25G",
                "5",
                "0",
                "0",
                "0",
                "2",
                "0",
                "0",
                "1"
            ]
        );
        assert_eq!(rows[1][3], "down");
        assert_eq!(rows[1][11], "-");
    }

    #[test]
    fn counters_that_went_back_restart_from_zero() {
        // A restarted data plane starts its counters again: the rate is over the new count.
        assert_eq!(rate(50, 1_000, 1.0), 50.0);
        assert_eq!(rate(1_500, 1_000, 0.5), 1_000.0);
        assert_eq!(rate(10, 0, 0.0), 0.0);
    }

    #[test]
    fn si_units() {
        assert_eq!(si(999.0), "999");
        assert_eq!(si(1_500.0), "1.50k");
        assert_eq!(si(2_345_678.0), "2.35M");
        assert_eq!(si(3e9), "3.00G");
    }
}
