//! What the tests that start real processes share: whether we are root, running a command,
//! a free port, the fiberlb-dataplane binary, stopping a child process, and a fiberlb-dataplane
//! on two veths in a network namespace of its own. A test binary includes it with
//! `mod support;` (a directory module, so cargo does not build it as a test of its own) and
//! uses what it needs, hence `dead_code` allowed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Whether this process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// Runs `args[0]` with the rest as its arguments; panics if it cannot start or fails.
pub fn sh(args: &[&str]) {
    let st = Command::new(args[0])
        .args(&args[1..])
        .status()
        .unwrap_or_else(|e| panic!("cannot run {args:?}: {e}"));
    assert!(st.success(), "{args:?} failed");
}

/// A TCP port on 127.0.0.1 that was free when asked.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// fiberlb-dataplane: FIBERLB_BIN_DIR, else beside this test's own target directory.
pub fn dataplane_bin() -> PathBuf {
    let dir = match std::env::var_os("FIBERLB_BIN_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            // target/<profile>/deps/<test>-<hash> -> target/<profile>
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

/// Stops `c`: SIGTERM first (the data plane detaches its XDP programs on the way out), up to
/// 3 s for it to exit, then SIGKILL, and reaps it.
pub fn stop_child(c: &mut Child) {
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

/// A network namespace, deleted (`ip netns del`) when this is dropped.
struct Netns(String);

impl Netns {
    /// Adds namespace `name`. The guard exists before `ip netns add` runs: whatever fails
    /// after it, the name is deleted on the way out.
    fn add(name: &str) -> Netns {
        let ns = Netns(name.to_string());
        sh(&["ip", "netns", "add", name]);
        ns
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A running fiberlb-dataplane from [`start_dataplane`]. Dropping it stops the process
/// ([`stop_child`]) and then deletes its network namespace.
pub struct Dataplane {
    child: Child,
    /// Its shared-memory region: fiberlbd's `shm_path`.
    pub region: PathBuf,
    // Dropped after `Drop::drop` has stopped `child`.
    _netns: Netns,
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        stop_child(&mut self.child);
    }
}

/// A fiberlb-dataplane in a new network namespace `netns` (created here, deleted when the
/// returned [`Dataplane`] is dropped), its config and region in `dir`: the node's two ports,
/// l0 (clients) and l1 (backends), each a veth whose peer is up; one worker on the last core,
/// idle back-off on (a shared 2-core machine). Returns once it logs "forwarding on"; if it
/// exits first, or is not forwarding within 20 s, panics with what it printed (after stopping
/// it and deleting the namespace).
pub fn start_dataplane(netns: &str, dir: &Path) -> Dataplane {
    let region = dir.join("region");
    let dp_config = dir.join("dataplane.toml");
    let ns = Netns::add(netns);
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
    let child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(dataplane_bin())
        .args(["run", "--config"])
        .arg(&dp_config)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fiberlb-dataplane");
    let mut dp = Dataplane {
        child,
        region,
        _netns: ns,
    };
    // The "forwarding on" line (on either stream), then keep draining both.
    let (tx, rx) = std::sync::mpsc::channel();
    for stream in [
        Box::new(dp.child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
        Box::new(dp.child.stderr.take().unwrap()),
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
        if let Some(status) = dp.child.try_wait().unwrap() {
            panic!("fiberlb-dataplane exited ({status}): {}", seen.join("\n"));
        }
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "fiberlb-dataplane did not start: {}",
            seen.join("\n")
        );
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    dp
}
