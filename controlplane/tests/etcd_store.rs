//! `store = "etcd"`: one configuration for a tier of nodes, against a real etcd (Debian's
//! etcd-server, started by the test on a temporary directory and free ports) and real
//! fiberlbd processes, each programming a real fiberlb-dataplane (AF_XDP on veths in a network
//! namespace the test creates and deletes; no traffic: forwarding through an etcd outage is
//! `tests/e2e/controlplane.sh` with `FCP_STORE=etcd`).
//!
//! - `two_nodes_one_configuration`: a write on node A is applied by node B's data plane within
//!   1 s (its synced generation; its lookup answers equal A's), p50/p99 printed;
//!   2 x 200 concurrent creates through both nodes: no lost or duplicate object, no duplicate
//!   VIP; etcd killed: writes answer UNAVAILABLE with a message, the node reports the store
//!   unreachable, both data planes keep their configuration; etcd back: a change through B is
//!   picked up by A; a registered backend (TTL 2 s) stops being used within 3 s after its
//!   keep-alives stop.
//! - `three_members_one_stopped`: with one of three etcd members stopped, writes still work.
//!
//! Root only (namespaces, XDP), and etcd must be installed (scripts/setup.sh does); otherwise
//! the tests say why and return.
//!
//! ```sh
//! cargo build --release --workspace --bins
//! FIBERLB_BIN_DIR=target/release cargo test -p fiberlb-controlplane --test etcd_store -- --nocapture --test-threads 1
//! ```

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fiberlb_controlplane::api::client::{connect, Clients};
use fiberlb_controlplane::pb;

/// Anything not done within this is a hang, not a slow machine.
const LIVENESS: Duration = Duration::from_secs(15);

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

fn have_etcd() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn skip(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root (network namespaces, XDP)");
        return true;
    }
    if !have_etcd() {
        // CI runs scripts/setup.sh, which installs etcd-server: there it must not skip.
        assert!(
            std::env::var_os("CI").is_none(),
            "etcd is not installed (scripts/setup.sh installs etcd-server)"
        );
        eprintln!("skipping {test}: etcd is not installed (apt install etcd-server)");
        return true;
    }
    false
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(st.success(), "{args:?} failed");
}

/// An etcd cluster of one or more members on 127.0.0.1.
struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    fn start(n: usize) -> Etcd {
        let members: Vec<Member> = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client: free_port(),
                peer: free_port(),
                child: None,
            })
            .collect();
        let mut e = Etcd {
            dir: tempfile::tempdir().unwrap(),
            members,
        };
        for i in 0..n {
            e.start_member(i);
        }
        e.wait_healthy();
        e
    }

    fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_member(&mut self, i: usize) {
        let cluster = self.initial_cluster();
        let m = &self.members[i];
        let data = self.dir.path().join(&m.name);
        let log = std::fs::File::create(self.dir.path().join(format!("{}.log", m.name))).unwrap();
        let child = Command::new("etcd")
            .args(["--name", &m.name, "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--advertise-client-urls",
                &format!("http://127.0.0.1:{}", m.client),
                "--listen-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-advertise-peer-urls",
                &format!("http://127.0.0.1:{}", m.peer),
                "--initial-cluster",
                &cluster,
                "--initial-cluster-state",
                "new",
                "--initial-cluster-token",
                &format!("fiberlb-test-{}", std::process::id()),
                "--heartbeat-interval",
                "50",
                "--election-timeout",
                "500",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start etcd");
        self.members[i].child = Some(child);
    }

    fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    fn wait_healthy(&self) {
        let t0 = Instant::now();
        let eps = self
            .members
            .iter()
            .filter(|m| m.child.is_some())
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect::<Vec<_>>()
            .join(",");
        loop {
            let ok = Command::new("etcdctl")
                .env("ETCDCTL_API", "3")
                .args(["--endpoints", &eps, "endpoint", "health"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                t0.elapsed() < LIVENESS,
                "etcd did not become healthy: {}",
                std::fs::read_to_string(self.dir.path().join("m0.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop_member(i);
        }
    }
}

/// fiberlb-dataplane: FIBERLB_BIN_DIR, else beside this test's own target directory.
fn dataplane_bin() -> PathBuf {
    let dir = match std::env::var_os("FIBERLB_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let exe = std::env::current_exe().expect("current_exe");
            exe.parent()
                .and_then(Path::parent)
                .expect("target dir")
                .to_path_buf()
        }
    };
    let p = dir.join("fiberlb-dataplane");
    assert!(
        p.exists(),
        "{} not found: build it (cargo build -p fiberlb-dataplane) or set FIBERLB_BIN_DIR",
        p.display()
    );
    p
}

/// One node: a data plane in its own namespace (optional) and fiberlbd with store = "etcd".
struct Node {
    dataplane: Option<Child>,
    fiberlbd: Option<Child>,
    socket: PathBuf,
    netns: Option<String>,
    dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        for c in [self.fiberlbd.as_mut(), self.dataplane.as_mut()]
            .into_iter()
            .flatten()
        {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            let t0 = Instant::now();
            while t0.elapsed() < Duration::from_secs(3) && matches!(c.try_wait(), Ok(None)) {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(ns) = &self.netns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn start_dataplane(netns: &str, dir: &Path) -> (Child, PathBuf) {
    let region = dir.join("region");
    let dp_config = dir.join("dataplane.toml");
    sh(&["ip", "netns", "add", netns]);
    for (port, peer) in [("l0", "p0"), ("l1", "p1")] {
        sh(&[
            "ip", "-n", netns, "link", "add", port, "type", "veth", "peer", "name", peer,
        ]);
        sh(&["ip", "-n", netns, "link", "set", peer, "up"]);
        sh(&["ip", "-n", netns, "link", "set", port, "up"]);
    }
    let core = std::thread::available_parallelism().map_or(0, |n| n.get() - 1);
    std::fs::write(
        &dp_config,
        format!(
            "[forwarding]\nbackend_gateway_mac = \"02:00:00:00:02:fe\"\n\
             [[ports]]\nname = \"client\"\ninterface = \"l0\"\nrole = \"client\"\n\
             gateway_mac = \"02:00:00:00:01:fe\"\n\
             [[ports]]\nname = \"backend\"\ninterface = \"l1\"\nrole = \"backend\"\n\
             [workers]\ncores = [{core}]\nidle_backoff = true\n[shm]\npath = {region:?}\n"
        ),
    )
    .unwrap();
    let mut dp = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(dataplane_bin())
        .args(["run", "--config"])
        .arg(&dp_config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fiberlb-dataplane");
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(dp.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(dp.stderr.take().unwrap()),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
    }
    let t0 = Instant::now();
    let mut seen = Vec::new();
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) if line.contains("forwarding on") => break,
            Ok(line) => seen.push(line),
            Err(_) => {}
        }
        if let Some(status) = dp.try_wait().unwrap() {
            panic!("fiberlb-dataplane exited ({status}): {}", seen.join("\n"));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "fiberlb-dataplane did not start: {}",
            seen.join("\n")
        );
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (dp, region)
}

impl Node {
    fn start(tag: &str, endpoints: &[String], with_dataplane: bool) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fiberlbd.sock");
        let mut node = Node {
            dataplane: None,
            fiberlbd: None,
            socket,
            netns: None,
            dir,
        };
        let mut shm = String::new();
        if with_dataplane {
            let ns = format!("etcd{tag}{}", std::process::id());
            node.netns = Some(ns.clone());
            let (dp, region) = start_dataplane(&ns, node.dir.path());
            node.dataplane = Some(dp);
            shm = format!("shm_path = {region:?}\n");
        }
        let eps = endpoints
            .iter()
            .map(|e| format!("{e:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        std::fs::write(
            node.dir.path().join("controlplane.toml"),
            format!(
                "listen = {:?}\nstore = \"etcd\"\nstore_path = {:?}\n{shm}\
                 vip_ranges = [\"10.10.0.0/22\"]\n\
                 [etcd]\nendpoints = [{eps}]\nprefix = \"/fiberlb-test\"\ntimeout_ms = 1000\n",
                node.socket,
                node.dir.path().join("store.redb"),
            ),
        )
        .unwrap();
        node.start_fiberlbd();
        node
    }

    fn start_fiberlbd(&mut self) {
        let _ = std::fs::remove_file(&self.socket);
        let log = std::fs::File::create(self.dir.path().join("fiberlbd.log")).unwrap();
        let d = Command::new(env!("CARGO_BIN_EXE_fiberlbd"))
            .arg("--config")
            .arg(self.dir.path().join("controlplane.toml"))
            .env("FIBERLB_LOG", "info")
            .stderr(log)
            .spawn()
            .expect("start fiberlbd");
        self.fiberlbd = Some(d);
        let t0 = Instant::now();
        while !self.socket.exists() {
            if let Some(st) = self.fiberlbd.as_mut().unwrap().try_wait().unwrap() {
                panic!("fiberlbd exited ({st}): {}", self.log());
            }
            assert!(t0.elapsed() < LIVENESS, "fiberlbd did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fiberlbd.log")).unwrap_or_default()
    }

    async fn client(&self) -> Clients {
        connect(self.socket.to_str().unwrap(), None, None)
            .await
            .unwrap()
    }
}

fn scope() -> Option<pb::Scope> {
    Some(pb::Scope {
        org_id: "tier".into(),
        project_id: "web".into(),
    })
}

/// The store generation node `c`'s data plane holds.
async fn synced(c: &mut Clients) -> Option<u64> {
    c.dataplane
        .status(pb::StatusRequest {})
        .await
        .ok()?
        .into_inner()
        .synced_store_generation
}

/// Waits until `c`'s data plane holds at least `generation`; the time it took.
async fn wait_synced(c: &mut Clients, generation: u64, what: &str) -> Duration {
    let t0 = Instant::now();
    loop {
        if synced(c).await.is_some_and(|g| g >= generation) {
            return t0.elapsed();
        }
        assert!(
            t0.elapsed() < LIVENESS,
            "{what}: generation {generation} not applied (data plane at {:?})",
            synced(c).await
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn lookup(c: &mut Clients, vip: &str, src_port: u32) -> Option<u32> {
    c.dataplane
        .lookup(pb::LookupRequest {
            scope: scope(),
            src_address: "198.51.100.7".into(),
            src_port,
            dst_address: vip.into(),
            dst_port: 80,
            protocol: "tcp".into(),
        })
        .await
        .ok()?
        .into_inner()
        .backend
        .map(|b| b.id)
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_nodes_one_configuration() {
    if skip("two_nodes_one_configuration") {
        return;
    }
    let mut etcd = Etcd::start(1);
    let eps = etcd.endpoints();
    let a = Node::start("a", &eps, true);
    let b = Node::start("b", &eps, true);
    let (mut ca, mut cb) = (a.client().await, b.client().await);

    // --- a write on A is applied by B's data plane ---
    let lb = ca
        .load_balancers
        .create(pb::CreateLoadBalancerRequest {
            scope: scope(),
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .load_balancer
        .unwrap();
    let pool = ca
        .pools
        .create(pb::CreatePoolRequest {
            scope: scope(),
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap();
    let mut backends = Vec::new();
    for i in 1..=3u32 {
        let r = ca
            .backends
            .create(pb::CreateBackendRequest {
                scope: scope(),
                pool_id: pool.id,
                address: format!("198.18.2.{i}"),
                port: 80,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        backends.push(r.backend.unwrap().id);
    }
    let r = ca
        .listeners
        .create(pb::CreateListenerRequest {
            scope: scope(),
            load_balancer_id: lb.id,
            port: 80,
            protocol: "tcp".into(),
            mode: "nat".into(),
            pool_id: pool.id,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let took = wait_synced(&mut cb, r.generation, "listener created on A, on B").await;
    assert!(
        took < Duration::from_secs(1),
        "B applied A's write after {took:?}"
    );
    let ports: Vec<u32> = (40000..40200).collect();
    let mut on_a = Vec::new();
    let mut on_b = Vec::new();
    for p in &ports {
        on_a.push(lookup(&mut ca, &lb.vip, *p).await);
        on_b.push(lookup(&mut cb, &lb.vip, *p).await);
    }
    assert!(on_a.iter().all(Option::is_some), "A has no answer");
    assert_eq!(on_a, on_b, "A and B choose different backends");
    for id in &backends {
        assert!(on_a.contains(&Some(*id)), "backend {id} never chosen");
    }

    // write on A -> applied by B's data plane: p50/p99 over 100 writes
    let mut samples = Vec::new();
    for i in 0..100u32 {
        let r = ca
            .backends
            .update(pb::UpdateBackendRequest {
                scope: scope(),
                id: backends[0],
                weight: Some(1 + i % 50),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let t0 = Instant::now();
        let both = tokio::join!(
            wait_synced(&mut ca, r.generation, "A"),
            wait_synced(&mut cb, r.generation, "B")
        );
        let _ = both;
        samples.push(t0.elapsed());
    }
    samples.sort();
    let (p50, p99) = (pct(&samples, 0.5), pct(&samples, 0.99));
    println!(
        "RESULT etcd write->applied on both nodes: p50 {:.2} ms p99 {:.2} ms max {:.2} ms (100 writes)",
        p50.as_secs_f64() * 1e3,
        p99.as_secs_f64() * 1e3,
        samples.last().unwrap().as_secs_f64() * 1e3
    );
    assert!(
        p50 < Duration::from_secs(1),
        "half the writes took over 1 s to reach both data planes: p50 {p50:?}"
    );

    // --- 2 x 200 concurrent creates through both nodes ---
    let mut tasks = Vec::new();
    for (node, sock) in [("a", a.socket.clone()), ("b", b.socket.clone())] {
        for worker in 0..4 {
            let sock = sock.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = connect(sock.to_str().unwrap(), None, None).await.unwrap();
                let mut ids = Vec::new();
                for i in 0..50 {
                    let reply = c
                        .load_balancers
                        .create(pb::CreateLoadBalancerRequest {
                            scope: scope(),
                            name: format!("c-{node}-{worker}-{i}"),
                            ..Default::default()
                        })
                        .await
                        .unwrap_or_else(|e| panic!("create on {node}: {e}"))
                        .into_inner();
                    let r = reply.load_balancer.unwrap();
                    ids.push((r.id, r.vip, r.name, reply.generation));
                }
                ids
            }));
        }
    }
    let mut created = Vec::new();
    let mut last_generation = 0;
    for t in tasks {
        for (id, vip, name, generation) in t.await.unwrap() {
            last_generation = last_generation.max(generation);
            created.push((id, vip, name));
        }
    }
    assert_eq!(created.len(), 400);
    let ids: std::collections::HashSet<_> = created.iter().map(|c| c.0).collect();
    let vips: std::collections::HashSet<_> = created.iter().map(|c| c.1.clone()).collect();
    assert_eq!(ids.len(), 400, "duplicate ids handed out");
    assert_eq!(vips.len(), 400, "duplicate VIPs handed out");
    let list = |lbs: Vec<pb::LoadBalancer>| {
        let mut v: Vec<(u32, String, String)> = lbs
            .into_iter()
            .filter(|l| l.name.starts_with("c-"))
            .map(|l| (l.id, l.vip, l.name))
            .collect();
        v.sort();
        v
    };
    created.sort();
    // Both nodes have learnt every create (each node's copy follows etcd's watch).
    wait_synced(&mut ca, last_generation, "A after concurrent creates").await;
    wait_synced(&mut cb, last_generation, "B after concurrent creates").await;
    let from_a = list(
        ca.load_balancers
            .list(pb::ListRequest {
                scope: scope(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .load_balancers,
    );
    let from_b = list(
        cb.load_balancers
            .list(pb::ListRequest {
                scope: scope(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .load_balancers,
    );
    assert_eq!(from_a, created, "A's list differs from what was created");
    assert_eq!(from_b, created, "B's list differs from what was created");
    println!("RESULT etcd concurrent creates: 2 x 200, 400 objects, 400 distinct ids and VIPs on both nodes");

    // --- a registered backend (TTL 2 s) stops being used within 3 s of its last keep-alive ---
    let reg = ca
        .backends
        .register(pb::RegisterBackendRequest {
            scope: scope(),
            pool_id: pool.id,
            address: "198.18.2.50".into(),
            port: 80,
            ttl_ms: 2000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let reg_id = reg.backend.as_ref().unwrap().id;
    // An agent renewing through B every 400 ms, from right after the registration (a slow
    // machine must not let the lease lapse while the test looks around).
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let keeper = {
        let mut c = cb.clone();
        let lease_id = reg.lease_id;
        tokio::spawn(async move {
            let mut last = Instant::now();
            loop {
                tokio::select! {
                    _ = stop_rx.wait_for(|s| *s) => return last,
                    () = tokio::time::sleep(Duration::from_millis(400)) => {}
                }
                c.backends
                    .keep_alive(pb::KeepAliveRequest {
                        scope: scope(),
                        lease_id,
                    })
                    .await
                    .unwrap_or_else(|e| panic!("keep-alive through B: {e}"));
                last = Instant::now();
            }
        })
    };
    wait_synced(&mut cb, reg.generation, "registered backend on B").await;
    let mut chosen = false;
    for p in &ports {
        chosen |= lookup(&mut cb, &lb.vip, *p).await == Some(reg_id);
    }
    assert!(chosen, "B never chooses the registered backend");
    // Kept alive for 3 s after that (longer than its TTL): it must stay.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let _ = stop_tx.send(true);
    let last_keepalive = keeper.await.expect("keep-alive task");
    let present = |c: &mut Clients| {
        let mut c = c.clone();
        async move {
            c.backends
                .get(pb::GetRequest {
                    scope: scope(),
                    id: reg_id,
                })
                .await
                .is_ok()
        }
    };
    assert!(present(&mut cb).await, "kept-alive backend vanished");
    loop {
        let mut used = false;
        for p in ports.iter().take(20) {
            used |= lookup(&mut cb, &lb.vip, *p).await == Some(reg_id);
        }
        let gone = !present(&mut cb).await && !present(&mut ca).await;
        if gone && !used {
            // And B's data plane holds the generation without it.
            let g = cb
                .dataplane
                .status(pb::StatusRequest {})
                .await
                .unwrap()
                .into_inner()
                .store_generation;
            wait_synced(&mut cb, g, "B after expiry").await;
            break;
        }
        assert!(
            last_keepalive.elapsed() < Duration::from_secs(3),
            "registered backend still present {:?} after its last keep-alive (TTL 2 s)",
            last_keepalive.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let expired_after = last_keepalive.elapsed();
    println!(
        "RESULT etcd lease: TTL 2 s backend gone from both nodes and B's data plane {:.0} ms after the last keep-alive",
        expired_after.as_secs_f64() * 1e3
    );
    let e = cb
        .backends
        .keep_alive(pb::KeepAliveRequest {
            scope: scope(),
            lease_id: reg.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound, "{e}");

    // --- etcd killed: data planes keep their configuration, writes are refused clearly ---
    let before_a = lookup(&mut ca, &lb.vip, 40001).await;
    let gen_before = synced(&mut cb).await;
    etcd.stop_member(0);
    let t0 = Instant::now();
    let err = ca
        .pools
        .create(pb::CreatePoolRequest {
            scope: scope(),
            name: "during-outage".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable, "{err}");
    assert!(
        err.message().contains("etcd") && err.message().contains("unavailable"),
        "unclear message: {}",
        err.message()
    );
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "refusal took {:?}",
        t0.elapsed()
    );
    println!(
        "RESULT etcd down: write refused after {:?}: {}",
        t0.elapsed(),
        err.message()
    );
    // The node reports the store unreachable (status), within its watch's retry.
    let t0 = Instant::now();
    loop {
        let s = cb
            .node
            .status(pb::NodeStatusRequest {})
            .await
            .unwrap()
            .into_inner();
        if !s.store_reachable {
            assert_eq!(s.store_kind, "etcd");
            assert!(!s.store_error.is_empty());
            break;
        }
        assert!(t0.elapsed() < LIVENESS, "B still reports etcd reachable");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(synced(&mut cb).await, gen_before, "B's data plane changed");
    assert_eq!(
        lookup(&mut ca, &lb.vip, 40001).await,
        before_a,
        "A's answer changed"
    );
    for n in [&a, &b] {
        assert!(
            n.log().contains("unavailable") || n.log().contains("unreachable"),
            "no log line about the outage"
        );
    }

    // --- etcd back: a change through B is picked up by A ---
    etcd.start_member(0);
    etcd.wait_healthy();
    let t0 = Instant::now();
    let r = loop {
        match cb
            .pools
            .create(pb::CreatePoolRequest {
                scope: scope(),
                name: "after-outage".into(),
                ..Default::default()
            })
            .await
        {
            Ok(r) => break r.into_inner(),
            Err(e) if e.code() == tonic::Code::Unavailable && t0.elapsed() < LIVENESS => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("write after etcd came back: {e}"),
        }
    };
    let took = wait_synced(&mut ca, r.generation, "A after the outage").await;
    let s = ca
        .node
        .status(pb::NodeStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(s.store_reachable, "A still reports etcd unreachable: {s:?}");
    println!(
        "RESULT etcd back: write through B accepted {:?} after restart, on A's data plane {:?} later",
        t0.elapsed(),
        took
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_members_one_stopped() {
    if skip("three_members_one_stopped") {
        return;
    }
    let mut etcd = Etcd::start(3);
    let node = Node::start("m", &etcd.endpoints(), false);
    let mut c = node.client().await;
    let create = |c: &mut Clients, name: &str| {
        let mut c = c.clone();
        let name = name.to_string();
        async move {
            c.pools
                .create(pb::CreatePoolRequest {
                    scope: scope(),
                    name,
                    ..Default::default()
                })
                .await
        }
    };
    create(&mut c, "p0").await.unwrap();
    // Stop one member (the first endpoint fiberlbd knows): writes go on through the others.
    etcd.stop_member(0);
    let t0 = Instant::now();
    let mut ok = 0;
    for i in 1..=20 {
        match create(&mut c, &format!("p{i}")).await {
            Ok(_) => ok += 1,
            // The balanced channel may send the first request to the dead member.
            Err(e) if e.code() == tonic::Code::Unavailable && ok == 0 => {
                assert!(t0.elapsed() < LIVENESS, "no write succeeded: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => panic!("write {i} with 2 of 3 members up: {e}"),
        }
    }
    assert!(ok >= 19, "{ok} of 20 writes succeeded");
    let n = c
        .pools
        .list(pb::ListRequest {
            scope: scope(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pools
        .len();
    assert_eq!(n, 1 + ok, "pools lost");
    println!("RESULT etcd 3 members, one stopped: {ok}/20 writes after the stop, {n} pools");
}
