//! The README's first command, `scripts/quickstart.sh`, as a test, and `fiberlb-dataplane
//! doctor` on a veth pair. Root only (network namespaces, XDP, AF_XDP): each test prints why
//! and passes when not root.
//!
//! `quickstart_end_to_end` is `#[ignore]`d: it takes ~10 s on built binaries, and `scripts/test.sh` runs it once,
//! after every other test (`cargo test -p fiberlb-tests --test quickstart -- --ignored`). It
//! first kills a quickstart mid-run with SIGKILL (no cleanup runs: namespaces, the data plane
//! and fiberlbd stay behind), then runs it to the end and checks that it removed the leftovers,
//! that every request succeeded, that every backend served and that nothing is left after.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use fiberlb_tests::{bin_path, workspace_root};

use fiberlb_tests::is_root;

/// Namespaces named with the quickstart's prefix.
fn quickstart_namespaces() -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with("fqs-"))
        .map(String::from)
        .collect()
}

/// The quickstart on the binaries the other tests use (`FIBERLB_BIN_DIR`, or a release build
/// made once), so its run does not depend on how long a build takes.
fn quickstart() -> Command {
    let bins = bin_path("fiberlb-dataplane")
        .parent()
        .expect("bin dir")
        .to_path_buf();
    let mut c = Command::new("bash");
    c.arg(workspace_root().join("scripts/quickstart.sh"))
        .arg("--no-setup")
        .arg("--bin-dir")
        .arg(bins)
        .current_dir(workspace_root());
    c
}

#[test]
#[ignore = "run once by scripts/test.sh after the other tests (root)"]
fn quickstart_end_to_end() {
    if !is_root() {
        eprintln!("skipping quickstart: needs root (network namespaces, XDP, AF_XDP)");
        return;
    }
    // 1. An interrupted run: SIGKILL once the data plane forwards, so no trap runs.
    let mut child = quickstart()
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start quickstart.sh");
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("==> ") && line.contains("starting fiberlbd") {
                let _ = tx.send(());
            }
        }
    });
    let reached = rx.recv_timeout(Duration::from_secs(60)).is_ok();
    let _ = child.kill(); // SIGKILL
    let _ = child.wait();
    assert!(
        reached,
        "the first quickstart never reached fiberlbd's start"
    );
    std::thread::sleep(Duration::from_millis(500));
    let stale = quickstart_namespaces();
    assert!(
        stale.len() >= 6,
        "a killed quickstart should leave its namespaces behind, found {stale:?}"
    );

    // 2. A full run: cleans the leftovers, balances, cleans up after itself.
    let t0 = Instant::now();
    let out = quickstart().output().expect("run quickstart.sh");
    let secs = t0.elapsed().as_secs_f64();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("{text}");
    println!("quickstart took {secs:.1} s");
    assert!(out.status.success(), "quickstart.sh failed:\n{text}");
    assert!(text.contains("RESULT: OK"), "{text}");
    // The doctor's report on this machine: veth, native XDP, copy mode, can run.
    assert!(
        text.contains("driver veth: native XDP, no AF_XDP zero-copy (copy mode)"),
        "{text}"
    );
    assert!(text.contains("fiberlb can run here"), "{text}");
    // Every backend served, and the answers add up to the requests.
    let mut total = 0;
    for b in ["b1", "b2", "b3"] {
        // "    b1 10.91.2.11       20  ####################"
        let (line, n) = text
            .lines()
            .find_map(|l| {
                let t: Vec<&str> = l.split_whitespace().collect();
                if t.len() >= 3 && t[0] == b && t[1].starts_with("10.91.2.") {
                    Some((l, t[2].parse::<u32>().ok()?))
                } else {
                    None
                }
            })
            .unwrap_or_else(|| panic!("no distribution line for {b}:\n{text}"));
        assert!(n > 0, "{b} served nothing: {line}");
        total += n;
    }
    assert_eq!(total, 60, "{text}");
    // The data plane's counters saw the listener's traffic.
    assert!(
        text.lines()
            .any(|l| l.contains("demo/quickstart/web/80/tcp") && l.contains(" nat ")),
        "{text}"
    );
    assert!(
        quickstart_namespaces().is_empty(),
        "namespaces left: {:?}",
        quickstart_namespaces()
    );
    assert!(!PathBuf::from("/dev/shm/fiberlb-quickstart.region").exists());
}

/// `doctor` on a veth pair in a namespace it creates: a correct report (veth: native XDP,
/// copy mode, no IRQs), exit 0; with more workers than queues and hugepages required beyond
/// what is free, the errors and a non-zero exit.
#[test]
fn doctor_on_veth() {
    if !is_root() {
        eprintln!("skipping doctor_on_veth: needs root (network namespaces)");
        return;
    }
    let ns = format!("fdoc{}", std::process::id());
    let ip = |args: &[&str]| {
        let s = Command::new("ip").args(args).status().expect("ip");
        assert!(s.success(), "ip {args:?}");
    };
    let _ = Command::new("ip").args(["netns", "del", &ns]).status();
    ip(&["netns", "add", &ns]);
    struct Del(String);
    impl Drop for Del {
        fn drop(&mut self) {
            let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        }
    }
    let _del = Del(ns.clone());
    ip(&[
        "-n", &ns, "link", "add", "d0", "type", "veth", "peer", "name", "d1",
    ]);
    ip(&["-n", &ns, "link", "set", "d0", "up"]);
    ip(&["-n", &ns, "link", "set", "d1", "up"]);

    let dir = std::env::temp_dir().join(format!("fiberlb-doctor-veth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cores = fiberlb_dataplane::cpus::available_cores();
    let core = cores.last().copied().unwrap_or(0);
    let run = |name: &str, body: String| {
        let p = dir.join(name);
        std::fs::write(&p, body).unwrap();
        let out = Command::new("ip")
            .args(["netns", "exec", &ns])
            .arg(bin_path("fiberlb-dataplane"))
            .arg("doctor")
            .arg("--config")
            .arg(&p)
            .output()
            .expect("run doctor");
        (
            out.status.code(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    };
    let good = format!(
        "[[ports]]\ninterface = \"d0\"\nrole = \"both\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
         [workers]\ncores = [{core}]\nidle_backoff = true\n[shm]\npath = \"/dev/shm/{ns}\"\n\
         [umem]\nframes = 4096\nchunk_size = 2048\nhugepages = \"off\"\n"
    );
    let (code, text) = run("good.toml", good);
    println!("{text}");
    assert_eq!(code, Some(0), "{text}");
    for want in [
        "ok     kernel ",
        "ok     bpf ",
        "ok     af_xdp ",
        "driver veth: native XDP, no AF_XDP zero-copy (copy mode)",
        "1 receive queue(s) for 1 worker queue(s)",
        "virtual device: no IRQs",
        "fiberlb can run here",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    // `ip netns exec` gives the command a fresh /sys without bpffs: reported, not fatal.
    assert!(text.contains("bpffs is not mounted"), "{text}");

    // Two workers on a one-queue veth, a jumbo MTU with 2 KiB chunks, hugepages required
    // beyond what is free: each is an error with its fix, and the exit code says so.
    ip(&["-n", &ns, "link", "set", "d0", "mtu", "4000"]);
    let free_huge = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| fiberlb_dataplane::meminfo::field(&m, "HugePages_Free"))
        .unwrap_or(0);
    let frames = ((free_huge + 1) * 1024).next_power_of_two().max(4096);
    let bad = format!(
        "[[ports]]\ninterface = \"d0\"\nrole = \"both\"\ngateway_mac = \"02:00:00:00:00:01\"\n\
         [workers]\ncores = [{}, {core}]\n[shm]\npath = \"/dev/shm/{ns}\"\n\
         [umem]\nframes = {frames}\nchunk_size = 2048\nhugepages = \"on\"\n",
        cores.first().copied().unwrap_or(0)
    );
    let (code, text) = run("bad.toml", bad);
    println!("{text}");
    assert_ne!(code, Some(0), "{text}");
    for want in [
        "1 receive queue(s), the configuration needs 2",
        "numrxqueues 2",
        "MTU 4000",
        "umem.hugepages = \"on\" refuses",
        "cannot run here",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
