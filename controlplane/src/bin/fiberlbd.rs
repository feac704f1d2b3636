//! fiberlbd: fiberlb's control-plane daemon. Owns the configuration store, serves the gRPC
//! API on a Unix socket (and optionally TCP with TLS), runs the health checks and keeps the
//! desired service set (store + health) up to date for the data plane.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Parser;
use fiberlb_controlplane::api::auth::Auth;
use fiberlb_controlplane::api::{self, server, Shared};
use fiberlb_controlplane::bgp::Node;
use fiberlb_controlplane::config::{Config, StoreKind};
use fiberlb_controlplane::health::{self, CheckKind, CheckerOptions, HealthChecker, Target};
use fiberlb_controlplane::metrics::{self, MetricsSource};
use fiberlb_controlplane::model::{self, HealthCheckKind, Scope, State};
use fiberlb_controlplane::program::{
    Desired, FileAppliedState, ProgramStatus, Programmer, ProgrammerOptions,
};
use fiberlb_controlplane::store::Store;
use fiberlb_shared::flow_hash::FlowHasher;
use fiberlb_shared::model::{BackendId, TunnelSettings};
use fiberlb_shared::shm::region::{monotonic_ns, Region};
use tokio::sync::watch;

#[derive(Debug, Parser)]
#[command(name = "fiberlbd", version, about = "fiberlb control-plane daemon")]
struct Args {
    /// Configuration file (TOML); see examples/controlplane.toml. Without it, the defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn main() -> Result<()> {
    fiberlb_shared::logging::init().map_err(anyhow::Error::msg)?;
    let args = Args::parse();
    let config = match &args.config {
        Some(p) => Config::load(p)?,
        None => Config::default(),
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the tokio runtime")?
        .block_on(run(config))
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers we still serve; the process is stopped by SIGKILL then.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}

/// Health-check targets: every backend of a pool that has a health check.
fn health_targets(state: &State) -> Vec<Target> {
    let mut out = Vec::new();
    for b in state.backends.values() {
        let Some(hc) = state
            .pools
            .get(&b.pool_id)
            .and_then(|p| p.health_check_id)
            .and_then(|id| state.health_checks.get(&id))
        else {
            continue;
        };
        let http = || health::HttpCheck {
            path: hc.http_path.clone(),
            host: None,
            expected_status: hc.expected_status,
        };
        let kind = match hc.kind {
            HealthCheckKind::Tcp => CheckKind::Tcp,
            HealthCheckKind::Http => CheckKind::Http(http()),
            HealthCheckKind::Https => CheckKind::Https(http()),
            HealthCheckKind::Udp => CheckKind::Udp(health::UdpCheck {
                payload: hc.udp_payload.clone(),
                expected_reply: hc.udp_expected_reply.clone(),
            }),
        };
        out.push(Target {
            backend: BackendId(b.id),
            address: b.address,
            port: b.port,
            kind,
            interval: Duration::from_millis(u64::from(hc.interval_ms)),
            timeout: Duration::from_millis(u64::from(hc.timeout_ms)),
            rise: hc.rise,
            fall: hc.fall,
        });
    }
    out
}

/// The API's view of health: the checker's current results.
struct CheckerHealth(Arc<HealthChecker>);

impl api::HealthSource for CheckerHealth {
    fn health(&self) -> HashMap<BackendId, bool> {
        health::up_map(&self.0.snapshot())
    }
}

/// What the data plane should forward by: the store's state with health folded in.
fn desired(store: &Store, checker: &HealthChecker, tunnel: &TunnelSettings) -> Desired {
    let snap = store.snapshot();
    let mut services = model::compile(&snap.state, &health::up_map(&checker.snapshot()));
    services.tunnel = tunnel.clone();
    Desired {
        store_generation: snap.generation,
        services,
    }
}

/// The API's view of the data plane: the programmer's status and the attached region.
struct ProgrammedDataplane {
    status: watch::Receiver<ProgramStatus>,
    region: watch::Receiver<Option<Arc<Region>>>,
}

impl api::DataplaneView for ProgrammedDataplane {
    fn status(&self) -> Option<api::DataplaneStatus> {
        let st = self.status.borrow().clone();
        let region = self.region.borrow().clone()?;
        if !st.attached {
            return None;
        }
        let h = region.header();
        let beat = h.data_plane_heartbeat();
        Some(api::DataplaneStatus {
            instance_id: h.instance_id(),
            applied_generation: h.applied_generation(),
            synced_store_generation: st.synced_store_generation,
            unresolved_backends: st.unresolved.clone(),
            heartbeat_age_ms: if beat == 0 {
                u64::MAX
            } else {
                monotonic_ns().saturating_sub(beat) / 1_000_000
            },
        })
    }

    fn counters(&self) -> Option<api::DataplaneCounters> {
        // Totals, drops by reason and per-listener/backend counters keyed by object id
        // (through the data plane's slots file).
        metrics::RegionView {
            region: self.region.clone(),
        }
        .counters()
    }
}

async fn run(config: Config) -> Result<()> {
    let tunnel = config.tunnel.settings();
    let store = match config.store {
        StoreKind::Redb => Store::open(&config.store_path)?,
        StoreKind::Etcd => {
            let etcd = config
                .etcd_config()
                .context("store = \"etcd\" needs [etcd]")?;
            Store::open_etcd(&etcd).await?
        }
    }
    .with_validator(api::dataplane_validator(tunnel.clone()));
    let store = Arc::new(store);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let store_task = tokio::spawn(store.clone().run(stop_rx.clone()));
    let mut shared = Shared::new(store.clone(), config.vip_allocator()?);
    shared.hasher = FlowHasher::new(config.hash_seed);
    shared.tunnel = tunnel;
    shared.health_defaults = config.health_defaults;
    let checker = Arc::new(HealthChecker::new(CheckerOptions::default()));
    checker.set_targets(health_targets(&store.snapshot().state));
    shared.health = Arc::new(CheckerHealth(checker.clone()));
    let mut committed = store.subscribe();
    let tokens: Vec<(String, Scope)> = config
        .tokens
        .iter()
        .map(|t| (t.token.clone(), Scope::new(&t.org_id, &t.project_id)))
        .collect();

    let snap = store.snapshot();
    let store_health = store.health().borrow().clone();
    log::info!(
        "store {} {}{} at generation {} ({} load balancers, {} listeners, {} pools, {} backends)",
        store_health.kind,
        store_health.location,
        if store_health.reachable {
            String::new()
        } else {
            format!(" (unreachable: {})", store_health.error)
        },
        snap.generation,
        snap.state.load_balancers.len(),
        snap.state.listeners.len(),
        snap.state.pools.len(),
        snap.state.backends.len()
    );
    // The data plane: programmed through its shm region when one is configured.
    let programmer = match &config.shm_path {
        Some(path) => {
            let p = Programmer::new(
                ProgrammerOptions::new(path),
                Arc::new(FileAppliedState::beside(&config.store_path)),
            );
            shared.dataplane = Arc::new(ProgrammedDataplane {
                status: p.status(),
                region: p.region(),
            });
            log::info!("programming the data plane at {}", path.display());
            Some(p)
        }
        None => {
            log::info!("no shm_path configured: running without a data plane");
            None
        }
    };
    let node = Arc::new(Node::new(config.bgp.clone(), &config.store_path));
    shared.node = node.clone();
    if let Some(b) = config.bgp.as_ref().filter(|b| b.enabled) {
        log::info!(
            "announcing VIPs through BIRD ({}; include file {}){}",
            b.socket.display(),
            b.include_path.display(),
            if node.status().drain_since_unix_ms > 0 {
                "; this node is drained (fiberlbctl node resume)"
            } else {
                ""
            }
        );
    }
    let dataplane_view = shared.dataplane.clone();
    let shared = Arc::new(shared);

    // The desired set follows every committed change and every health flip.
    let (desired_tx, desired_rx) =
        watch::channel(Arc::new(desired(&store, &checker, &shared.tunnel)));
    {
        let (store, checker, tunnel) = (store.clone(), checker.clone(), shared.tunnel.clone());
        let mut health_rx = checker.subscribe();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = committed.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let generation = *committed.borrow_and_update();
                        checker.set_targets(health_targets(&store.snapshot().state));
                        log::info!("configuration generation {generation} committed");
                    }
                    r = health_rx.changed() => {
                        if r.is_err() {
                            return;
                        }
                        health_rx.borrow_and_update();
                    }
                }
                let d = desired(&store, &checker, &tunnel);
                desired_tx.send_if_modified(|cur| {
                    let changed = **cur != d;
                    if changed {
                        *cur = Arc::new(d);
                    }
                    changed
                });
            }
        });
    }
    if let Some(addr) = config.metrics_address {
        let source = MetricsSource {
            region: programmer
                .as_ref()
                .map_or_else(|| watch::channel(None).1, |p| p.region()),
            health: Some(checker.subscribe()),
            program: programmer.as_ref().map(|p| p.status()),
            node: Some(node.subscribe()),
            store: Some(store.health()),
        };
        let mut rx = stop_rx.clone();
        let (bound, _task) = metrics::bind(addr, source, async move {
            let _ = rx.wait_for(|s| *s).await;
        })
        .await?;
        log::info!("metrics on http://{bound}/metrics");
    }
    let node_task = tokio::spawn(node.clone().run(
        desired_rx.clone(),
        dataplane_view,
        stop_rx.clone(),
    ));
    let programmer_task = programmer.map(|p| tokio::spawn(p.run(desired_rx, stop_rx.clone())));

    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let unix = server::bind_unix(&config.listen)?;
    log::info!("serving on unix:{} (mode 0600)", config.listen.display());
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(server::serve_unix(
        unix,
        shared.clone(),
        Auth::new(tokens.clone(), !config.require_token),
        stopped(),
    ));
    if let (Some(addr), Some(tls)) = (config.listen_tcp, &config.tls) {
        let cert = std::fs::read(&tls.cert)
            .with_context(|| format!("cannot read [tls] cert {}", tls.cert.display()))?;
        let key = std::fs::read(&tls.key)
            .with_context(|| format!("cannot read [tls] key {}", tls.key.display()))?;
        let l = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        log::info!("serving on https://{addr} (tokens required)");
        tasks.spawn(async move {
            server::serve_tls(l, &cert, &key, shared, Auth::new(tokens, false), stopped()).await
        });
    }

    tokio::select! {
        _ = shutdown_signal() => {
            log::info!("shutting down");
            let _ = stop_tx.send(true);
        }
        Some(r) = tasks.join_next() => {
            r.context("server task panicked")??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.context("server task panicked")??;
    }
    let _ = node_task.await;
    let _ = store_task.await;
    if let Some(t) = programmer_task {
        let _ = t.await;
    }
    let _ = std::fs::remove_file(&config.listen);
    Ok(())
}
