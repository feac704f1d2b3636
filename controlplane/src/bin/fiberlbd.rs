//! fiberlbd: fiberlb's control-plane daemon. Owns the configuration store and serves the gRPC
//! API on a Unix socket (and optionally TCP with TLS).
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Parser;
use fiberlb_controlplane::api::auth::Auth;
use fiberlb_controlplane::api::{self, server, Shared};
use fiberlb_controlplane::config::Config;
use fiberlb_controlplane::model::Scope;
use fiberlb_controlplane::store::Store;
use fiberlb_shared::flow_hash::FlowHasher;

#[derive(Debug, Parser)]
#[command(name = "fiberlbd", version, about = "fiberlb control-plane daemon")]
struct Args {
    /// Configuration file (TOML); see examples/controlplane.toml. Without it, the defaults.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

fn main() -> Result<()> {
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

async fn run(config: Config) -> Result<()> {
    let tunnel = config.tunnel.settings();
    let store =
        Store::open(&config.store_path)?.with_validator(api::dataplane_validator(tunnel.clone()));
    let store = Arc::new(store);
    let mut shared = Shared::new(store.clone(), config.vip_allocator()?);
    shared.hasher = FlowHasher::new(config.hash_seed);
    shared.tunnel = tunnel;
    shared.health_defaults = config.health_defaults;
    let mut committed = shared.committed.subscribe();
    let shared = Arc::new(shared);
    let tokens: Vec<(String, Scope)> = config
        .tokens
        .iter()
        .map(|t| (t.token.clone(), Scope::new(&t.org_id, &t.project_id)))
        .collect();

    let snap = store.snapshot();
    eprintln!(
        "fiberlbd: store {} at generation {} ({} load balancers, {} listeners, {} pools, {} backends)",
        config.store_path.display(),
        snap.generation,
        snap.state.load_balancers.len(),
        snap.state.listeners.len(),
        snap.state.pools.len(),
        snap.state.backends.len()
    );
    if config.shm_path.is_some() {
        eprintln!(
            "fiberlbd: shm_path is set but this build has no data plane programmer yet; \
             running without a data plane"
        );
    } else {
        eprintln!("fiberlbd: no shm_path configured: running without a data plane");
    }

    // Every committed generation: this is where the data plane gets programmed.
    tokio::spawn(async move {
        while committed.changed().await.is_ok() {
            let generation = *committed.borrow_and_update();
            eprintln!("fiberlbd: configuration generation {generation} committed");
        }
    });

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };

    let unix = server::bind_unix(&config.listen)?;
    eprintln!(
        "fiberlbd: serving on unix:{} (mode 0600)",
        config.listen.display()
    );
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
        eprintln!("fiberlbd: serving on https://{addr} (tokens required)");
        tasks.spawn(async move {
            server::serve_tls(l, &cert, &key, shared, Auth::new(tokens, false), stopped()).await
        });
    }

    tokio::select! {
        _ = shutdown_signal() => {
            eprintln!("fiberlbd: shutting down");
            let _ = stop_tx.send(true);
        }
        Some(r) = tasks.join_next() => {
            r.context("server task panicked")??;
        }
    }
    while let Some(r) = tasks.join_next().await {
        r.context("server task panicked")??;
    }
    let _ = std::fs::remove_file(&config.listen);
    Ok(())
}
