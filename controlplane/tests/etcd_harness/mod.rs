//! The etcd tests' harness: etcd members on free ports, and nodes (fiberlbd with store = "etcd",
//! optionally programming a real data plane in a network namespace of their own). What is not
//! etcd's (root, free ports, the data plane, stopping processes) is `support`, which the test
//! binary including this also declares (`mod support;`).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fiberlb_controlplane::api::client::{connect, Clients};

use crate::support::{free_port, is_root, start_dataplane, stop_child, Dataplane};

/// Anything not done within this is a hang, not a slow machine.
pub const LIVENESS: Duration = Duration::from_secs(15);

pub fn have_etcd() -> bool {
    Command::new("etcd")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

pub fn skip(test: &str) -> bool {
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

/// An etcd cluster of one or more members on 127.0.0.1.
pub struct Etcd {
    dir: tempfile::TempDir,
    members: Vec<Member>,
}

pub struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

impl Etcd {
    pub fn start(n: usize) -> Etcd {
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

    pub fn start_member(&mut self, i: usize) {
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

    pub fn stop_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members
            .iter()
            .map(|m| format!("http://127.0.0.1:{}", m.client))
            .collect()
    }

    pub fn wait_healthy(&self) {
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

/// One node: a data plane in its own namespace (optional) and fiberlbd with store = "etcd".
/// Dropping it stops fiberlbd, then the data plane, then deletes the data plane's namespace.
pub struct Node {
    // Dropped after `Drop::drop` has stopped fiberlbd (fields drop in this order).
    dataplane: Option<Dataplane>,
    fiberlbd: Option<Child>,
    pub socket: PathBuf,
    dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = self.fiberlbd.as_mut() {
            stop_child(c);
        }
    }
}

impl Node {
    pub fn start(tag: &str, endpoints: &[String], with_dataplane: bool) -> Node {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("fiberlbd.sock");
        let mut node = Node {
            dataplane: None,
            fiberlbd: None,
            socket,
            dir,
        };
        let mut shm = String::new();
        if with_dataplane {
            let ns = format!("etcd{tag}{}", std::process::id());
            let dp = start_dataplane(&ns, node.dir.path());
            shm = format!("shm_path = {:?}\n", dp.region);
            node.dataplane = Some(dp);
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

    pub fn start_fiberlbd(&mut self) {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("fiberlbd.log")).unwrap_or_default()
    }

    pub async fn client(&self) -> Clients {
        connect(self.socket.to_str().unwrap(), None, None)
            .await
            .unwrap()
    }
}
