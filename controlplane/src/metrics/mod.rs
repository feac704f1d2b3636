//! Prometheus metrics over HTTP: data plane counters (from the shared-memory region, named
//! through the data plane's `<region>.slots.json`), health per backend, and the programmer's
//! state.
//!
//! The region admits one control plane, so the counters are read through the
//! [`Programmer`](crate::program::Programmer)'s mapping ([`Programmer::region`]); the `Arc` is
//! held only while a scrape renders.
//!
//! Families: all-worker totals (`fiberlb_rx_packets_total`, `fiberlb_drops_total{reason}`,
//! ...), the same per worker (`fiberlb_worker_*{worker="N"}`, for the data plane's workers as
//! its slots file counts them, else for the counter blocks that counted anything), and per
//! listener and backend counters plus the `*_active_flows` gauges. Active flows lag by up to one
//! flow-table sweep of the data plane's workers (see `dataplane/src/flow_table/mod.rs`).
//!
//! NIC ports (`fiberlb_port_*{port,driver}`: link, speed, rx/tx packets and bytes, rx_missed,
//! errors, DPDK's rx_nombuf, AF_XDP's socket and XDP program counters) come from the data
//! plane's `<region>.ports.json` ([`fiberlb_shared::port_stats`]), which its main thread
//! rewrites every second. A file that is another instance's is ignored; one older than
//! [`STALE_AFTER_MS`](fiberlb_shared::port_stats::STALE_AFTER_MS) (the data plane stopped
//! publishing) only shows in `fiberlb_port_stats_age_seconds`: its old numbers are not exported
//! as current.
//!
//! [`Programmer::region`]: crate::program::Programmer::region

mod text;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use fiberlb_shared::port_stats::{PortCounters, PortsFile};
use fiberlb_shared::shm::counters::{
    drop_reason_label, CountersReader, ObjectCounters as ShmObject, DROP_REASONS,
};
use fiberlb_shared::shm::region::{monotonic_ns, Region};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::health::HealthMap;
use crate::program::ProgramStatus;
pub use text::{Encoder, Kind};

/// Names of the data plane's drop reasons, in counter order (the one list, in the shared
/// crate). Reasons past the end are exported as `reason_<n>` when non-zero.
pub use fiberlb_shared::shm::counters::DROP_REASON_NAMES;

/// The slot → object map the data plane writes next to its region (the one definition is
/// [`fiberlb_shared::slots::SlotsFile`]; `SlotMap::read_for` reads the region's own).
pub use fiberlb_shared::slots::{slots_path_for, BackendSlot, ListenerSlot, SlotsFile as SlotMap};

pub use fiberlb_shared::port_stats::ports_path_for;

/// The data plane's ports as a reader may show them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LivePorts {
    /// The ports, when the file is fresh; empty when stale.
    pub ports: Vec<PortCounters>,
    /// Milliseconds since the data plane wrote the file.
    pub age_ms: u64,
    /// Older than [`STALE_AFTER_MS`](fiberlb_shared::port_stats::STALE_AFTER_MS): the data
    /// plane is not publishing.
    pub stale: bool,
}

impl LivePorts {
    /// The ports file of `region`'s data plane; `None` when missing, unreadable or written by
    /// another instance. Unknown fields are ignored (a newer data plane may add some).
    pub fn read_for(region: &Region) -> Option<LivePorts> {
        let bytes = std::fs::read(ports_path_for(region.path())).ok()?;
        let f: PortsFile = serde_json::from_slice(&bytes).ok()?;
        let id = format!("{:032x}", region.header().instance_id());
        if f.instance_id != id {
            return None;
        }
        let now = monotonic_ns();
        let stale = f.is_stale(now);
        Some(LivePorts {
            age_ms: f.age_ms(now),
            stale,
            ports: if stale { Vec::new() } else { f.ports },
        })
    }
}

/// What a scrape reads.
#[derive(Clone, Debug)]
pub struct MetricsSource {
    /// The attached region ([`Programmer::region`](crate::program::Programmer::region)).
    pub region: watch::Receiver<Option<Arc<Region>>>,
    /// Health results ([`HealthChecker::subscribe`](crate::health::HealthChecker::subscribe)).
    pub health: Option<watch::Receiver<Arc<HealthMap>>>,
    /// Programmer state ([`Programmer::status`](crate::program::Programmer::status)).
    pub program: Option<watch::Receiver<ProgramStatus>>,
    /// BGP announcement and drain ([`Node::subscribe`](crate::bgp::Node::subscribe)).
    pub node: Option<watch::Receiver<crate::bgp::NodeStatus>>,
    /// The configuration store ([`Store::health`](crate::store::Store::health)).
    pub store: Option<watch::Receiver<crate::store::StoreHealth>>,
}

/// Renders every metric now.
pub fn render(source: &MetricsSource) -> String {
    let mut e = Encoder::new();
    let region = source.region.borrow().clone();
    render_dataplane(&mut e, region.as_deref());
    drop(region);
    if let Some(h) = &source.health {
        let map = h.borrow().clone();
        let mut ids: Vec<_> = map.keys().copied().collect();
        ids.sort();
        e.family(
            "fiberlb_backend_up",
            Kind::Gauge,
            "Health-check state of a backend (1 up, 0 down).",
        );
        for id in &ids {
            let up = map.get(id).is_some_and(|h| h.up);
            e.sample(
                "fiberlb_backend_up",
                &[("backend_id", &id.0.to_string())],
                if up { 1.0 } else { 0.0 },
            );
        }
        e.family(
            "fiberlb_backend_health_since_seconds",
            Kind::Gauge,
            "Unix time of the backend's last health state change.",
        );
        for id in &ids {
            let since = map
                .get(id)
                .and_then(|h| h.since.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0.0, |d| d.as_secs_f64());
            e.sample(
                "fiberlb_backend_health_since_seconds",
                &[("backend_id", &id.0.to_string())],
                since,
            );
        }
    }
    if let Some(p) = &source.program {
        let s = p.borrow().clone();
        e.single(
            "fiberlb_controlplane_desired_generation",
            Kind::Gauge,
            "Store generation the programmer was last asked to apply.",
            s.desired_generation as f64,
        );
        e.single(
            "fiberlb_controlplane_synced_generation",
            Kind::Gauge,
            "Store generation the data plane is known to have (-1: unknown).",
            s.synced_store_generation.map_or(-1.0, |g| g as f64),
        );
        e.family(
            "fiberlb_controlplane_transactions_total",
            Kind::Counter,
            "Transactions sent to the data plane, by result.",
        );
        for (result, v) in [
            ("applied", s.transactions_applied),
            ("rejected", s.transactions_rejected),
            ("timeout", s.timeouts),
        ] {
            e.sample(
                "fiberlb_controlplane_transactions_total",
                &[("result", result)],
                v as f64,
            );
        }
        e.single(
            "fiberlb_controlplane_full_resyncs_total",
            Kind::Counter,
            "Applied transactions that replayed the whole configuration.",
            s.full_resyncs as f64,
        );
        e.single(
            "fiberlb_controlplane_attaches_total",
            Kind::Counter,
            "Times the region was (re)attached.",
            s.attaches as f64,
        );
        e.single(
            "fiberlb_controlplane_last_apply_seconds",
            Kind::Gauge,
            "Send-to-Applied time of the last applied transaction.",
            s.last_apply.map_or(0.0, |d| d.as_secs_f64()),
        );
        e.single(
            "fiberlb_backends_unresolved",
            Kind::Gauge,
            "Backend addresses without a configured MAC that the neighbour table does not resolve (no new flows unless the data plane has a backend gateway MAC).",
            s.unresolved.len() as f64,
        );
    }
    if let Some(n) = &source.node {
        render_node(&mut e, &n.borrow());
    }
    if let Some(s) = &source.store {
        render_store(&mut e, &s.borrow());
    }
    e.finish()
}

/// `fiberlb_bgp_*` and `fiberlb_node_*`: what this node announces, its BGP sessions (from
/// BIRD), drain state.
#[allow(clippy::cast_precision_loss)]
fn render_store(e: &mut Encoder, s: &crate::store::StoreHealth) {
    e.family(
        "fiberlb_store_up",
        Kind::Gauge,
        "1 while the configuration store takes writes (etcd answers), 0 while writes are refused.",
    );
    e.sample(
        "fiberlb_store_up",
        &[("store", s.kind)],
        if s.reachable { 1.0 } else { 0.0 },
    );
    e.single(
        "fiberlb_store_generation",
        Kind::Gauge,
        "The configuration generation this node holds (equal on every node of a tier when in sync).",
        s.generation as f64,
    );
}

fn render_node(e: &mut Encoder, n: &crate::bgp::NodeStatus) {
    if !n.bgp_enabled {
        return;
    }
    e.single(
        "fiberlb_bgp_announced_vips",
        Kind::Gauge,
        "VIPs this node announces through BIRD now.",
        n.announced.len() as f64,
    );
    e.family(
        "fiberlb_bgp_vip_announced",
        Kind::Gauge,
        "1 when the VIP is announced, 0 when withheld (fiberlbctl node status says why).",
    );
    for v in &n.announced {
        e.sample("fiberlb_bgp_vip_announced", &[("vip", &v.to_string())], 1.0);
    }
    for v in n.withheld.keys() {
        e.sample("fiberlb_bgp_vip_announced", &[("vip", &v.to_string())], 0.0);
    }
    e.family(
        "fiberlb_bgp_session_up",
        Kind::Gauge,
        "1 when the local BIRD's BGP protocol is Established.",
    );
    for s in &n.sessions {
        e.sample(
            "fiberlb_bgp_session_up",
            &[("protocol", &s.name)],
            if s.established() { 1.0 } else { 0.0 },
        );
    }
    e.single(
        "fiberlb_bgp_last_change_timestamp_seconds",
        Kind::Gauge,
        "Unix time of the last change of the announced set that BIRD took (0: none since start).",
        n.last_change_unix_ms as f64 / 1000.0,
    );
    e.single(
        "fiberlb_bgp_error",
        Kind::Gauge,
        "1 while the last call to BIRD failed (fiberlbctl node status shows the message).",
        if n.last_error.is_empty() { 0.0 } else { 1.0 },
    );
    e.single(
        "fiberlb_node_draining",
        Kind::Gauge,
        "1 while the node is drained (fiberlbctl node drain), 0 when serving.",
        if n.drain_since_unix_ms > 0 { 1.0 } else { 0.0 },
    );
}

fn render_dataplane(e: &mut Encoder, region: Option<&Region>) {
    e.single(
        "fiberlb_dataplane_attached",
        Kind::Gauge,
        "1 when the control plane is attached to a data plane region.",
        if region.is_some() { 1.0 } else { 0.0 },
    );
    let Some(region) = region else {
        return;
    };
    let h = region.header();
    let id = format!("{:032x}", h.instance_id());
    e.family(
        "fiberlb_dataplane_info",
        Kind::Gauge,
        "The attached data plane instance.",
    );
    e.sample(
        "fiberlb_dataplane_info",
        &[
            ("instance_id", &id),
            ("pid", &h.data_plane_pid().to_string()),
        ],
        1.0,
    );
    e.single(
        "fiberlb_dataplane_applied_generation",
        Kind::Gauge,
        "Configuration generation the data plane forwards by.",
        h.applied_generation() as f64,
    );
    let beat = h.data_plane_heartbeat();
    e.single(
        "fiberlb_dataplane_heartbeat_age_seconds",
        Kind::Gauge,
        "Seconds since the data plane's last heartbeat (-1: never).",
        if beat == 0 {
            -1.0
        } else {
            monotonic_ns().saturating_sub(beat) as f64 / 1e9
        },
    );
    let c = region.counters();
    let t = c.totals();
    for (name, help, v) in [
        (
            "fiberlb_rx_packets_total",
            "Packets received, all workers.",
            t.rx_packets,
        ),
        (
            "fiberlb_rx_bytes_total",
            "Bytes received, all workers.",
            t.rx_bytes,
        ),
        (
            "fiberlb_tx_packets_total",
            "Packets forwarded, all workers.",
            t.tx_packets,
        ),
        (
            "fiberlb_tx_bytes_total",
            "Bytes sent to backends, all workers.",
            t.tx_bytes,
        ),
        (
            "fiberlb_to_host_packets_total",
            "Packets handed to the host's kernel (not fiberlb's), all workers.",
            t.to_host,
        ),
    ] {
        e.single(name, Kind::Counter, help, v as f64);
    }
    e.family(
        "fiberlb_drops_total",
        Kind::Counter,
        "Packets dropped, by reason, all workers.",
    );
    for (reason, v) in drops_by_label(|i| c.drops(i)) {
        e.sample("fiberlb_drops_total", &[("reason", &reason)], v as f64);
    }
    let slots = SlotMap::read_for(region);
    render_workers(e, &c, slots.as_ref().and_then(|s| s.workers));
    render_ports(e, LivePorts::read_for(region).as_ref());
    let Some(slots) = slots else {
        return;
    };
    let listener_labels: Vec<[(&str, String); 5]> = slots
        .listeners
        .iter()
        .map(|l| {
            [
                ("listener_id", l.id.to_string()),
                ("listener", l.name.clone()),
                ("vip", l.vip.to_string()),
                ("port", l.port.to_string()),
                ("protocol", l.protocol.clone()),
            ]
        })
        .collect();
    let listener_counts: Vec<_> = slots.listeners.iter().map(|l| c.listener(l.slot)).collect();
    let backend_labels: Vec<[(&str, String); 4]> = slots
        .backends
        .iter()
        .map(|b| {
            [
                ("backend_id", b.id.to_string()),
                ("pool", b.pool.clone()),
                ("address", b.address.to_string()),
                ("port", b.port.to_string()),
            ]
        })
        .collect();
    let backend_counts: Vec<_> = slots.backends.iter().map(|b| c.backend(b.slot)).collect();
    type Pick = fn(&ShmObject) -> u64;
    let picks: [(&str, &str, Pick); 3] = [
        ("packets", "Packets", |o| o.packets),
        ("bytes", "Bytes", |o| o.bytes),
        ("new_flows", "New flows", |o| o.new_flows),
    ];
    for (what, help, pick) in picks {
        let name = format!("fiberlb_listener_{what}_total");
        e.family(
            &name,
            Kind::Counter,
            &format!("{help} to a listener, all workers."),
        );
        for (labels, o) in listener_labels.iter().zip(&listener_counts) {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.sample(&name, &l, pick(o) as f64);
        }
    }
    for (what, help, pick) in picks {
        let name = format!("fiberlb_backend_{what}_total");
        e.family(
            &name,
            Kind::Counter,
            &format!("{help} sent to a backend, all workers."),
        );
        for (labels, o) in backend_labels.iter().zip(&backend_counts) {
            let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
            e.sample(&name, &l, pick(o) as f64);
        }
    }
    e.family(
        "fiberlb_listener_active_flows",
        Kind::Gauge,
        "Live flows of a listener, all workers (as of each worker's last flow-table sweep).",
    );
    for (labels, o) in listener_labels.iter().zip(&listener_counts) {
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        e.sample("fiberlb_listener_active_flows", &l, o.active_flows as f64);
    }
    e.family(
        "fiberlb_backend_active_flows",
        Kind::Gauge,
        "Live flows to a backend, all workers (as of each worker's last flow-table sweep).",
    );
    for (labels, o) in backend_labels.iter().zip(&backend_counts) {
        let l: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
        e.sample("fiberlb_backend_active_flows", &l, o.active_flows as f64);
    }
}

/// `(label, value)` for every named drop reason (zeros included, so the series exist from the
/// start) and for any unnamed slot a newer data plane counted in.
fn drops_by_label(read: impl Fn(usize) -> u64) -> Vec<(String, u64)> {
    (0..DROP_REASONS)
        .filter_map(|i| {
            let v = read(i);
            (i < DROP_REASON_NAMES.len() || v > 0).then(|| (drop_reason_label(i), v))
        })
        .collect()
}

/// Worker count to show: the slots file's, else the blocks that counted anything.
fn shown_workers(c: &CountersReader<'_>, running: Option<u32>) -> u32 {
    running
        .unwrap_or_else(|| c.workers_in_use())
        .min(c.workers())
}

/// The `fiberlb_worker_*` families: each worker's totals and drops by reason.
fn render_workers(e: &mut Encoder, c: &CountersReader<'_>, running: Option<u32>) {
    let workers: Vec<(String, _)> = (0..shown_workers(c, running))
        .filter_map(|w| c.worker(w).map(|r| (w.to_string(), r)))
        .collect();
    type Pick = fn(&fiberlb_shared::shm::counters::Totals) -> u64;
    let picks: [(&str, &str, Pick); 5] = [
        ("rx_packets", "Packets received by a worker.", |t| {
            t.rx_packets
        }),
        ("rx_bytes", "Bytes received by a worker.", |t| t.rx_bytes),
        ("tx_packets", "Packets forwarded by a worker.", |t| {
            t.tx_packets
        }),
        ("tx_bytes", "Bytes a worker sent to backends.", |t| {
            t.tx_bytes
        }),
        (
            "to_host_packets",
            "Packets a worker handed to the host's kernel.",
            |t| t.to_host,
        ),
    ];
    for (what, help, pick) in picks {
        let name = format!("fiberlb_worker_{what}_total");
        e.family(&name, Kind::Counter, help);
        for (w, r) in &workers {
            e.sample(&name, &[("worker", w)], pick(&r.totals()) as f64);
        }
    }
    e.family(
        "fiberlb_worker_drops_total",
        Kind::Counter,
        "Packets a worker dropped, by reason.",
    );
    for (w, r) in &workers {
        for (reason, v) in drops_by_label(|i| r.drops(i)) {
            e.sample(
                "fiberlb_worker_drops_total",
                &[("worker", w), ("reason", &reason)],
                v as f64,
            );
        }
    }
}

/// The `fiberlb_port_*` families from the data plane's ports file (nothing without one of this
/// instance; only the age when it is stale).
fn render_ports(e: &mut Encoder, live: Option<&LivePorts>) {
    let Some(live) = live else {
        return;
    };
    e.single(
        "fiberlb_port_stats_age_seconds",
        Kind::Gauge,
        "Seconds since the data plane last published its port counters (every second; stale, \
         and the port families left out, past 5).",
        live.age_ms as f64 / 1e3,
    );
    if live.stale {
        return;
    }
    let labels: Vec<[(&str, &str); 2]> = live
        .ports
        .iter()
        .map(|p| [("port", p.name.as_str()), ("driver", p.driver.as_str())])
        .collect();
    let rows: Vec<_> = live.ports.iter().zip(&labels).collect();
    e.family(
        "fiberlb_port_up",
        Kind::Gauge,
        "Link state of a data plane port (1 up, 0 down).",
    );
    for (p, l) in &rows {
        e.sample("fiberlb_port_up", *l, if p.link_up { 1.0 } else { 0.0 });
    }
    if rows.iter().any(|(p, _)| p.speed_mbps.is_some()) {
        e.family(
            "fiberlb_port_speed_mbps",
            Kind::Gauge,
            "Link speed of a data plane port in Mbit/s (ports that report one).",
        );
        for (p, l) in &rows {
            if let Some(v) = p.speed_mbps {
                e.sample("fiberlb_port_speed_mbps", *l, f64::from(v));
            }
        }
    }
    type Pick = fn(&PortCounters) -> Option<u64>;
    let picks: [(&str, &str, Pick); 12] = [
        (
            "rx_packets",
            "Frames a port received (DPDK ipackets; AF_XDP the interface's rx_packets).",
            |p| Some(p.rx_packets),
        ),
        ("tx_packets", "Frames a port sent.", |p| Some(p.tx_packets)),
        ("rx_bytes", "Bytes a port received.", |p| Some(p.rx_bytes)),
        ("tx_bytes", "Bytes a port sent.", |p| Some(p.tx_bytes)),
        (
            "rx_missed",
            "Frames lost because a receive ring was full (DPDK imissed; AF_XDP the interface's \
             missed/fifo errors plus its sockets' rx_ring_full).",
            |p| Some(p.rx_missed),
        ),
        ("rx_errors", "Erroneous frames a port received.", |p| {
            Some(p.rx_errors)
        }),
        ("tx_errors", "Frames a port failed to send.", |p| {
            Some(p.tx_errors)
        }),
        (
            "rx_nombuf",
            "DPDK: receive buffer allocation failures (the mbuf pool ran dry).",
            |p| p.rx_nombuf,
        ),
        (
            "xsk_rx_ring_full",
            "AF_XDP: frames dropped because a worker's socket RX ring was full.",
            |p| p.xsk.map(|x| x.rx_ring_full),
        ),
        (
            "xsk_rx_fill_ring_empty",
            "AF_XDP: frames that found a socket's fill ring empty (too few free UMEM frames).",
            |p| p.xsk.map(|x| x.rx_fill_ring_empty),
        ),
        (
            "xdp_redirected_packets",
            "AF_XDP: frames the XDP program redirected to fiberlb's sockets.",
            |p| p.xdp.map(|x| x.redirected),
        ),
        (
            "xdp_passed_packets",
            "AF_XDP: frames the XDP program passed to the kernel.",
            |p| p.xdp.map(|x| x.passed),
        ),
    ];
    for (what, help, pick) in picks {
        if !rows.iter().any(|(p, _)| pick(p).is_some()) {
            continue;
        }
        let name = format!("fiberlb_port_{what}_total");
        e.family(&name, Kind::Counter, help);
        for (p, l) in &rows {
            if let Some(v) = pick(p) {
                e.sample(&name, *l, v as f64);
            }
        }
    }
}

/// Serves `GET /metrics` (anything else: 404) on `listener` until `shutdown` completes.
///
/// # Errors
/// Only when accepting fails fatally; a broken connection is dropped and logged.
pub async fn serve(
    listener: TcpListener,
    source: MetricsSource,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let source = Arc::new(source);
    loop {
        let (conn, peer) = tokio::select! {
            r = listener.accept() => r?,
            () = &mut shutdown => return Ok(()),
        };
        let source = source.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let source = source.clone();
                async move { Ok::<_, Infallible>(respond(&req, &source)) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(conn), service)
                .await
            {
                log::debug!("metrics connection from {peer}: {e}");
            }
        });
    }
}

/// Binds `addr` and serves as [`serve`]; returns the bound address (useful with port 0) and
/// the serving future.
///
/// # Errors
/// When `addr` cannot be bound.
pub async fn bind(
    addr: SocketAddr,
    source: MetricsSource,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    let listener = TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!("cannot bind the metrics address {addr}: {e}; change metrics_address"),
        )
    })?;
    let local = listener.local_addr()?;
    Ok((local, tokio::spawn(serve(listener, source, shutdown))))
}

fn respond<B>(req: &Request<B>, source: &MetricsSource) -> Response<Full<Bytes>> {
    let mut r = if req.method() == hyper::Method::GET && req.uri().path() == "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from(render(source))));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        );
        r
    } else {
        let mut r = Response::new(Full::new(Bytes::from_static(b"try GET /metrics\n")));
        *r.status_mut() = StatusCode::NOT_FOUND;
        r
    };
    r.headers_mut().insert(
        hyper::header::CACHE_CONTROL,
        hyper::header::HeaderValue::from_static("no-store"),
    );
    r
}

/// The data plane as the gRPC API sees it ([`crate::api::DataplaneView`]), read from the
/// programmer's region.
#[derive(Clone, Debug)]
pub struct RegionView {
    pub region: watch::Receiver<Option<Arc<Region>>>,
}

impl crate::api::DataplaneView for RegionView {
    fn status(&self) -> Option<crate::api::DataplaneStatus> {
        let region = self.region.borrow().clone()?;
        let h = region.header();
        let beat = h.data_plane_heartbeat();
        Some(crate::api::DataplaneStatus {
            instance_id: h.instance_id(),
            applied_generation: h.applied_generation(),
            // A read-only view of the region does not know which store generation that is.
            synced_store_generation: None,
            unresolved_backends: Vec::new(),
            heartbeat_age_ms: if beat == 0 {
                u64::MAX
            } else {
                monotonic_ns().saturating_sub(beat) / 1_000_000
            },
        })
    }

    fn counters(&self) -> Option<crate::api::DataplaneCounters> {
        let region = self.region.borrow().clone()?;
        let c = region.counters();
        let t = c.totals();
        let drops_by_reason: Vec<u64> = (0..DROP_REASONS).map(|i| c.drops(i)).collect();
        let drops = drops_by_reason.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        let obj = |o: ShmObject| crate::api::ObjectCounters {
            packets: o.packets,
            bytes: o.bytes,
            new_flows: o.new_flows,
            active_flows: o.active_flows,
        };
        let slots = SlotMap::read_for(&region).unwrap_or_default();
        let listeners: HashMap<u32, _> = slots
            .listeners
            .iter()
            .map(|l| (l.id, obj(c.listener(l.slot))))
            .collect();
        let backends: HashMap<u32, _> = slots
            .backends
            .iter()
            .map(|b| (b.id, obj(c.backend(b.slot))))
            .collect();
        let workers = (0..shown_workers(&c, slots.workers))
            .filter_map(|w| c.worker(w).map(|r| (w, r)))
            .map(|(w, r)| {
                let t = r.totals();
                let drops_by_reason: Vec<u64> = (0..DROP_REASONS).map(|i| r.drops(i)).collect();
                crate::api::WorkerCounters {
                    worker: w,
                    rx_packets: t.rx_packets,
                    rx_bytes: t.rx_bytes,
                    tx_packets: t.tx_packets,
                    tx_bytes: t.tx_bytes,
                    to_host: t.to_host,
                    drops: drops_by_reason.iter().fold(0u64, |a, &b| a.wrapping_add(b)),
                    drops_by_reason,
                }
            })
            .collect();
        let live = LivePorts::read_for(&region);
        Some(crate::api::DataplaneCounters {
            rx_packets: t.rx_packets,
            tx_packets: t.tx_packets,
            rx_bytes: t.rx_bytes,
            tx_bytes: t.tx_bytes,
            to_host: t.to_host,
            drops,
            drops_by_reason,
            listeners,
            backends,
            workers,
            ports_age_ms: live.as_ref().map(|l| l.age_ms),
            ports_stale: live.as_ref().is_some_and(|l| l.stale),
            ports: live.map(|l| l.ports).unwrap_or_default(),
        })
    }
}
