//! Time from an API write returning to the data plane applying it (p50/p99).
//!
//! Needs a running fiberlbd programming a running data plane, so it is ignored by default:
//!
//! ```sh
//! FIBERLB_SERVER=/run/fiberlb/fiberlbd.sock FIBERLB_ORG=acme FIBERLB_PROJECT=web \
//!   cargo test -p fiberlb-controlplane --test apply_latency -- --ignored --nocapture
//! ```
//!
//! It creates a pool with a backend (in the given org/project), then changes the backend's
//! weight N times; after each write returns it polls `DataplaneService.Status` until the data
//! plane holds the store generation the write returned (`synced_store_generation`).

use std::time::{Duration, Instant};

use fiberlb_controlplane::api::client::connect;
use fiberlb_controlplane::pb;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs FIBERLB_SERVER: a fiberlbd attached to a data plane"]
async fn write_to_applied_latency() {
    let server = std::env::var("FIBERLB_SERVER").expect("set FIBERLB_SERVER");
    let token = std::env::var("FIBERLB_TOKEN").ok();
    let n: usize = std::env::var("FIBERLB_LATENCY_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let scope = Some(pb::Scope {
        org_id: std::env::var("FIBERLB_ORG").unwrap_or_default(),
        project_id: std::env::var("FIBERLB_PROJECT").unwrap_or_default(),
    });
    let mut c = connect(&server, token.as_deref(), None).await.unwrap();
    let st = c
        .dataplane
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(st.attached, "fiberlbd has no data plane attached");
    let pool = c
        .pools
        .create(pb::CreatePoolRequest {
            scope: scope.clone(),
            name: format!("latency-{}", std::process::id()),
            table_size: 65537,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap();
    let backend = c
        .backends
        .create(pb::CreateBackendRequest {
            scope: scope.clone(),
            pool_id: pool.id,
            address: "198.18.2.2".into(),
            port: 80,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .backend
        .unwrap();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let r = c
            .backends
            .update(pb::UpdateBackendRequest {
                scope: scope.clone(),
                id: backend.id,
                weight: Some(1 + (i as u32 % 100)),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let t0 = Instant::now();
        loop {
            let s = c
                .dataplane
                .status(pb::StatusRequest {})
                .await
                .unwrap()
                .into_inner();
            // The store generation the data plane holds (its own transaction numbers can run
            // ahead of the store's, so applied_generation would stop the clock early).
            if s.synced_store_generation.is_some_and(|g| g >= r.generation) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "generation {} never applied",
                r.generation
            );
        }
        samples.push(t0.elapsed());
    }
    c.pools
        .delete(pb::DeleteRequest { scope, id: pool.id })
        .await
        .unwrap();
    samples.sort_unstable();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    eprintln!(
        "write returned -> data plane applied, {n} writes: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
}
