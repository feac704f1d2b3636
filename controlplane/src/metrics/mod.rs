//! Prometheus metrics over HTTP: data plane counters (from the shared-memory region, named
//! through the data plane's `<region>.slots.json`), health per backend, and the programmer's
//! state.
//!
//! The region admits one control plane, so the counters are read through the
//! [`Programmer`](crate::program::Programmer)'s mapping ([`Programmer::region`]); the `Arc` is
//! held only while a scrape renders.
//!
//! Per-worker rx/tx/drops are not broken down: `CountersReader` (fiberlb-shared) sums over
//! workers and exposes no per-worker read, so the families carry totals.
//!
//! [`Programmer::region`]: crate::program::Programmer::region

mod text;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use fiberlb_shared::shm::region::{monotonic_ns, Region};
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::health::HealthMap;
use crate::program::ProgramStatus;
pub use text::{Encoder, Kind};

/// Names of the data plane's drop reasons, in counter order (`DropReason::ALL` in
/// `dataplane/src/pipeline/counters.rs`; kept in step by hand since the control plane does not
/// link the data plane). Reasons past the end are exported as `reason_<n>` when non-zero.
pub const DROP_REASON_NAMES: [&str; 13] = [
    "malformed",
    "not_ip",
    "unsupported_protocol",
    "no_listener",
    "no_backend",
    "ttl_exceeded",
    "fragment_ambiguous",
    "icmp_not_for_vip",
    "too_big_for_tunnel",
    "no_headroom",
    "no_next_hop",
    "unsupported_extension",
    "tx_ring_full",
];

/// The slot → object map the data plane writes next to its region (`SlotsFile` in
/// `dataplane/src/control.rs`); unknown fields are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
pub struct SlotMap {
    /// Hex instance id of the data plane that wrote it.
    pub instance_id: String,
    pub generation: u64,
    #[serde(default)]
    pub listeners: Vec<ListenerSlot>,
    #[serde(default)]
    pub backends: Vec<BackendSlot>,
}

/// A listener's counter slot.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ListenerSlot {
    pub slot: u32,
    pub id: u32,
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    pub protocol: String,
    #[serde(default)]
    pub mode: String,
}

/// A backend's counter slot.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct BackendSlot {
    pub slot: u32,
    pub id: u32,
    pub pool: String,
    pub address: IpAddr,
    pub port: u16,
}

/// `<region path>.slots.json`.
pub fn slots_path_for(region: &Path) -> PathBuf {
    let mut s = region.as_os_str().to_owned();
    s.push(".slots.json");
    PathBuf::from(s)
}

impl SlotMap {
    /// The slot map of `region`'s data plane; `None` when missing, unreadable, or written by
    /// another instance (its slots would name the wrong objects).
    pub fn read_for(region: &Region) -> Option<SlotMap> {
        let bytes = std::fs::read(slots_path_for(region.path())).ok()?;
        let map: SlotMap = serde_json::from_slice(&bytes).ok()?;
        let id = format!("{:032x}", region.header().instance_id());
        (map.instance_id == id).then_some(map)
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
    }
    e.finish()
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
    ] {
        e.single(name, Kind::Counter, help, v as f64);
    }
    e.family(
        "fiberlb_drops_total",
        Kind::Counter,
        "Packets dropped, by reason, all workers.",
    );
    for (i, name) in DROP_REASON_NAMES.iter().enumerate() {
        e.sample(
            "fiberlb_drops_total",
            &[("reason", name)],
            c.drops(i) as f64,
        );
    }
    for i in DROP_REASON_NAMES.len()..fiberlb_shared::shm::counters::DROP_REASONS {
        let v = c.drops(i);
        if v > 0 {
            e.sample(
                "fiberlb_drops_total",
                &[("reason", &format!("reason_{i}"))],
                v as f64,
            );
        }
    }
    let Some(slots) = SlotMap::read_for(region) else {
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
    type Pick = fn(&fiberlb_shared::shm::counters::ObjectCounters) -> u64;
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
        let drops_by_reason: Vec<u64> = (0..fiberlb_shared::shm::counters::DROP_REASONS)
            .map(|i| c.drops(i))
            .collect();
        let drops = drops_by_reason.iter().fold(0u64, |a, &b| a.wrapping_add(b));
        let obj = |o: fiberlb_shared::shm::counters::ObjectCounters| crate::api::ObjectCounters {
            packets: o.packets,
            bytes: o.bytes,
            new_flows: o.new_flows,
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
        Some(crate::api::DataplaneCounters {
            rx_packets: t.rx_packets,
            tx_packets: t.tx_packets,
            drops,
            drops_by_reason,
            listeners,
            backends,
        })
    }
}
