//! Time from an API write returning to the data plane applying it (p50/p99), and that every
//! write is applied: a real fiberlb-dataplane (AF_XDP on two veths in a network namespace the
//! test creates and deletes; no traffic is sent — the control thread, the snapshot publication
//! and the workers' quiescent points are what a write waits for) and a real fiberlbd on a
//! temporary region, store and socket, started by the test. Root only (namespaces, XDP): as
//! another user it says so and returns.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! FIBERLB_BIN_DIR=target/release cargo test -p fiberlb-controlplane --test apply_latency -- --nocapture
//! ```
//!
//! Against a running fiberlbd instead (the quickstart's, a node's), set `FIBERLB_SERVER` (and
//! `FIBERLB_ORG`, `FIBERLB_PROJECT`, `FIBERLB_TOKEN`); `FIBERLB_LATENCY_WRITES` sets the number
//! of writes (default 200). It creates a pool with a backend, then changes the backend's weight
//! N times; after each write returns it polls `DataplaneService.Status` until the data plane
//! holds the store generation the write returned (`synced_store_generation`). The figures vary
//! with the machine and are printed, not asserted; what is asserted is that every write is
//! applied, within a generous liveness bound, and that the data plane ends on the last one.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fiberlb_controlplane::api::client::{connect, Clients};
use fiberlb_controlplane::pb;

mod support;
use support::{is_root, start_dataplane, stop_child, Dataplane};

/// A write not applied within this is a hang, not a slow machine.
const LIVENESS: Duration = Duration::from_secs(10);

/// Polls `DataplaneService.Status` until `done` holds for it, pausing `every` between polls
/// (`Duration::ZERO`: back to back, for the latency measurement); fails with `what` and the
/// last status after [`LIVENESS`].
async fn wait_status(
    c: &mut Clients,
    every: Duration,
    what: &str,
    done: impl Fn(&pb::StatusResponse) -> bool,
) {
    let t0 = Instant::now();
    loop {
        let s = c
            .dataplane
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if done(&s) {
            return;
        }
        assert!(t0.elapsed() < LIVENESS, "{what} within {LIVENESS:?}: {s:?}");
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        }
    }
}

/// fiberlbd and the data plane it programs, stopped on drop (also when an assertion fails):
/// fiberlbd, then the data plane, then the data plane's namespace is deleted.
struct Stack {
    fiberlbd: Child,
    socket: PathBuf,
    // Dropped after `Drop::drop` has stopped fiberlbd (fields drop in this order).
    _dataplane: Dataplane,
    _dir: tempfile::TempDir,
}

impl Drop for Stack {
    fn drop(&mut self) {
        stop_child(&mut self.fiberlbd);
    }
}

fn start_stack() -> Stack {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fiberlbd.sock");
    let dataplane = start_dataplane(&format!("alat{}", std::process::id()), dir.path());
    let cp_config = dir.path().join("controlplane.toml");
    std::fs::write(
        &cp_config,
        format!(
            "listen = {:?}\nstore_path = {:?}\nshm_path = {:?}\nvip_ranges = [\"10.10.0.0/24\"]\n",
            socket,
            dir.path().join("store.redb"),
            dataplane.region
        ),
    )
    .unwrap();
    let fiberlbd = Command::new(env!("CARGO_BIN_EXE_fiberlbd"))
        .arg("--config")
        .arg(&cp_config)
        .stderr(Stdio::null())
        .spawn()
        .expect("start fiberlbd");
    let stack = Stack {
        fiberlbd,
        socket,
        _dataplane: dataplane,
        _dir: dir,
    };
    let t0 = Instant::now();
    while !stack.socket.exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "fiberlbd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stack
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_to_applied_latency() {
    // Our own stack unless pointed at a running fiberlbd.
    let (server, _stack) = match std::env::var("FIBERLB_SERVER") {
        Ok(s) => (s, None),
        Err(_) => {
            if !is_root() {
                eprintln!(
                    "skipping write_to_applied_latency: needs root (a network namespace and \
                     XDP for its own data plane) or FIBERLB_SERVER"
                );
                return;
            }
            let st = start_stack();
            (st.socket.to_str().unwrap().to_string(), Some(st))
        }
    };
    let token = std::env::var("FIBERLB_TOKEN").ok();
    let n: usize = std::env::var("FIBERLB_LATENCY_WRITES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let scope = Some(pb::Scope {
        org_id: std::env::var("FIBERLB_ORG").unwrap_or_else(|_| "latency".into()),
        project_id: std::env::var("FIBERLB_PROJECT").unwrap_or_else(|_| "test".into()),
    });
    let mut c = connect(&server, token.as_deref(), None).await.unwrap();
    // fiberlbd attaches to the region and replays its store after it starts serving.
    wait_status(
        &mut c,
        Duration::from_millis(50),
        "fiberlbd attached no data plane",
        |s| s.attached,
    )
    .await;
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
    // Up to two rounds of n writes: a round whose p99 is over the bound below is measured once
    // more, and the test fails only if the second is over too. A wait built into the write path
    // (a timer, a poll interval) shows in every round; a burst of load from whatever else runs
    // on this shared 2-core machine (a CI build beside the test) seldom hits two rounds. The
    // same code measured under such load (load average 3-5) gave p99 7 ms in one run and
    // 116-226 ms in another.
    let bound = Duration::from_millis(100);
    let at = |v: &[Duration], p: f64| v[((v.len() as f64 * p) as usize).min(v.len() - 1)];
    let mut round = 0;
    let mut weight_step = 0u32;
    let samples = loop {
        round += 1;
        let mut samples = Vec::with_capacity(n);
        let mut whole = Vec::with_capacity(n);
        // One write more than measured: the first after a new backend waits for the programmer's
        // first neighbour lookup of its address (up to 100 ms, by design: no new flows to a backend
        // whose next hop is unknown), which is not a write's steady-state latency.
        for i in 0..=n {
            weight_step += 1;
            let sent = Instant::now();
            let r = c
                .backends
                .update(pb::UpdateBackendRequest {
                    scope: scope.clone(),
                    id: backend.id,
                    weight: Some(1 + (weight_step % 100)),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            let what = format!("generation {} not applied", r.generation);
            let t0 = Instant::now();
            // The store generation the data plane holds (its own transaction numbers can run
            // ahead of the store's, so applied_generation would stop the clock early).
            wait_status(&mut c, Duration::ZERO, &what, |s| {
                s.synced_store_generation.is_some_and(|g| g >= r.generation)
            })
            .await;
            if i > 0 {
                samples.push(t0.elapsed());
                whole.push(sent.elapsed());
            }
        }
        assert_eq!(samples.len(), n, "every write was applied");
        samples.sort_unstable();
        whole.sort_unstable();
        // The same writes also from the request leaving the client: the store's commit (redb:
        // an fsync to disk) plus the above.
        for (from, v) in [("write returned", &samples), ("write sent", &whole)] {
            eprintln!(
                "round {round}: {from} -> data plane applied, {n} writes: p50 {:?}, p99 {:?}, \
                 max {:?}",
                at(v, 0.50),
                at(v, 0.99),
                v[v.len() - 1]
            );
        }
        if at(&samples, 0.99) < bound || round == 2 {
            break samples;
        }
        eprintln!("round {round}: p99 over {bound:?}; measuring once more");
    };
    // Deleting the pool (with its backend) is applied too, and the data plane ends on the
    // store's last generation.
    let d = c
        .pools
        .delete(pb::DeleteRequest { scope, id: pool.id })
        .await
        .unwrap()
        .into_inner();
    wait_status(
        &mut c,
        Duration::from_millis(5),
        "the delete was not applied",
        |s| {
            s.synced_store_generation == Some(s.store_generation)
                && s.store_generation >= d.generation
        },
    )
    .await;
    // Loose on purpose (this machine is shared; the goal is p99 <= 3 ms): a p99 this far off
    // means something waits that should not (a timer, a poll interval, a rebuild of every
    // table), as the 100 ms MAC-refresh wait and the 1 ms tokio poll once did.
    assert!(
        at(&samples, 0.99) < bound,
        "write -> applied p99 {:?} is over {bound:?} in two rounds",
        at(&samples, 0.99)
    );
}
