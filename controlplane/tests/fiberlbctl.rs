//! The real binaries: fiberlbd serving a socket, fiberlbctl driving it. `apply -f` is
//! idempotent, helpful errors, and fiberlbd killed with SIGKILL in the middle of a burst of
//! writes loses no acknowledged change.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use fiberlb_controlplane::api::client::connect;
use fiberlb_controlplane::pb;

mod support;
use support::is_root;

struct Daemon {
    child: Child,
    socket: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path) -> Daemon {
    let socket = dir.join("fiberlbd.sock");
    let config = dir.join("controlplane.toml");
    std::fs::write(
        &config,
        format!(
            "listen = {:?}\nstore_path = {:?}\nvip_ranges = [\"10.10.0.0/24\"]\n\
             [tunnel]\nsource_v4 = \"10.10.0.1\"\nsource_v6 = \"fd00:10::1\"\n",
            socket,
            dir.join("store.redb")
        ),
    )
    .unwrap();
    let _ = std::fs::remove_file(&socket);
    // In a network namespace of its own (no interfaces up): the services files applied here
    // name health checks of addresses that are not ours, and no probe may leave this machine.
    // Root: a plain network namespace; otherwise an unprivileged user+network namespace.
    let userns = if is_root() { "-n" } else { "-rn" };
    let child = Command::new("unshare")
        .arg(userns)
        .arg(env!("CARGO_BIN_EXE_fiberlbd"))
        .arg("--config")
        .arg(&config)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !socket.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "fiberlbd did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Daemon { child, socket }
}

fn ctl(d: &Daemon, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_fiberlbctl"))
        .args([
            "--server",
            d.socket.to_str().unwrap(),
            "--org",
            "acme",
            "--project",
            "web",
        ])
        .args(args)
        .env_remove("FIBERLB_TOKEN")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "fiberlbctl failed: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

#[test]
fn apply_twice_changes_nothing_the_second_time() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/services.yaml");
    let example = example.to_str().unwrap();

    let dry = stdout(&ctl(&d, &["apply", "-f", example, "--dry-run"]));
    assert!(
        dry.contains("+ loadbalancer web (vip 10.10.0.100) (dry run)"),
        "{dry}"
    );
    // A dry run changes nothing.
    assert!(stdout(&ctl(&d, &["-o", "json", "lb", "list"])).contains("\"load_balancers\": []"));

    let first = stdout(&ctl(&d, &["apply", "-f", example]));
    assert!(
        first.contains("+ pool web (maglev, table 65537, health check web-http)"),
        "{first}"
    );
    assert!(
        first.contains("+ listener web/80/tcp (nat -> pool web)"),
        "{first}"
    );
    assert_eq!(first.lines().count(), dry.lines().count());
    let second = stdout(&ctl(&d, &["apply", "-f", example]));
    assert_eq!(second.trim(), "no changes");

    // export: the running configuration as a file that apply takes back unchanged.
    let exported = stdout(&ctl(&d, &["export"]));
    let exported_path = dir.path().join("exported.yaml");
    std::fs::write(&exported_path, &exported).unwrap();
    let exported_path = exported_path.to_str().unwrap();
    assert_eq!(
        stdout(&ctl(&d, &["apply", "-f", exported_path])).trim(),
        "no changes",
        "{exported}"
    );
    assert_eq!(
        ctl(&d, &["diff", "-f", exported_path]).status.code(),
        Some(0)
    );
    assert!(exported.contains("state: drained"), "{exported}");
    assert!(exported.contains("health_check: web-http"), "{exported}");
    assert!(exported.contains("kind: udp"), "{exported}");

    // Health checks are applied, changed and pruned like the rest.
    let hcs: serde_json::Value =
        serde_json::from_str(&stdout(&ctl(&d, &["-o", "json", "health-check", "list"]))).unwrap();
    assert_eq!(hcs["health_checks"].as_array().unwrap().len(), 3, "{hcs}");
    let text = std::fs::read_to_string(example).unwrap();
    let hc_changed = dir.path().join("hc.yaml");
    std::fs::write(
        &hc_changed,
        text.replace(
            "interval_ms: 2000, timeout_ms: 1000",
            "interval_ms: 5000, timeout_ms: 1000",
        )
        .replace("    health_check: dns-udp\n", ""),
    )
    .unwrap();
    let out = stdout(&ctl(&d, &["apply", "-f", hc_changed.to_str().unwrap()]));
    let mut lines: Vec<&str> = out.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("~ health-check web-http: "), "{out}");
    assert!(
        lines[0].ends_with("every 5000 ms, timeout 1000 ms"),
        "{out}"
    );
    assert!(lines[1].starts_with("~ pool dns: "), "{out}");
    assert!(lines[1].contains("health check dns-udp -> "), "{out}");
    let no_hc: String = text
        .lines()
        .filter(|l| !l.contains("health_check") && !l.contains("kind:"))
        .map(|l| format!("{l}\n"))
        .collect();
    let no_hc_path = dir.path().join("nohc.yaml");
    std::fs::write(&no_hc_path, no_hc).unwrap();
    let out = stdout(&ctl(&d, &["apply", "-f", no_hc_path.to_str().unwrap()]));
    assert_eq!(out.matches("- health-check ").count(), 3, "{out}");
    assert_eq!(out.matches("~ pool ").count(), 2, "{out}");
    assert_eq!(
        stdout(&ctl(&d, &["apply", "-f", example])).lines().count(),
        6
    );
    assert_eq!(
        stdout(&ctl(&d, &["apply", "-f", example])).trim(),
        "no changes"
    );
    assert!(exported.contains("encap: gue"), "{exported}");

    // Edit the file: one weight changes, one backend goes, one listener goes.
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("weight: 2", "weight: 5")
        .replace("      - {address: 10.10.3.2, port: 27015}\n", "")
        .replace(
            "      - {port: 27016, protocol: udp, mode: nat, pool: staging}\n",
            "",
        );
    let edited = dir.path().join("edited.yaml");
    std::fs::write(&edited, text).unwrap();
    // diff: exit 0 and nothing printed when the file matches, 1 and the changes when not, 2 on
    // an error (kubectl's convention, for users' CI pipelines).
    let same = ctl(&d, &["diff", "-f", example]);
    assert_eq!(same.status.code(), Some(0), "{same:?}");
    assert!(same.stdout.is_empty(), "{same:?}");
    let differs = ctl(&d, &["diff", "-f", edited.to_str().unwrap()]);
    assert_eq!(differs.status.code(), Some(1), "{differs:?}");
    assert_eq!(String::from_utf8_lossy(&differs.stdout).lines().count(), 3);
    let json = ctl(&d, &["-o", "json", "diff", "-f", edited.to_str().unwrap()]);
    assert_eq!(json.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["differences"], true);
    assert_eq!(v["changes"].as_array().unwrap().len(), 3);
    let missing = ctl(&d, &["diff", "-f", "/nonexistent.yaml"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
    let third = stdout(&ctl(&d, &["apply", "-f", edited.to_str().unwrap()]));
    let mut lines: Vec<&str> = third.lines().collect();
    lines.sort_unstable();
    assert_eq!(lines.len(), 3, "{third}");
    assert!(
        lines[0].starts_with("- backend 10.10.3.2:27015 in pool game"),
        "{third}"
    );
    assert!(lines[1].starts_with("- listener game/27016/udp"), "{third}");
    assert!(
        lines[2].starts_with("~ backend 10.10.1.2:8080 in pool web: weight 2"),
        "{third}"
    );
    assert_eq!(
        stdout(&ctl(&d, &["apply", "-f", edited.to_str().unwrap()])).trim(),
        "no changes"
    );

    // Table and JSON output, and lookup.
    let table = stdout(&ctl(&d, &["lb", "list"]));
    assert!(table.starts_with("ID  NAME"), "{table}");
    assert!(table.contains("10.10.0.100"));
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&ctl(&d, &["-o", "json", "pool", "list"]))).unwrap();
    assert_eq!(json["pools"].as_array().unwrap().len(), 7);
    let trace = stdout(&ctl(
        &d,
        &["lookup", "198.51.100.7:40000", "10.10.0.100:80/tcp"],
    ));
    assert!(trace.contains("backend:  "), "{trace}");
}

#[test]
fn errors_say_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    let o = ctl(
        &d,
        &[
            "backend",
            "create",
            "--pool",
            "1",
            "--address",
            "10.0.0.1",
            "--port",
            "80",
        ],
    );
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("NotFound: pool 1 not found"), "{e}");

    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "pools:\n  - name: x\n    table_size: 10\n").unwrap();
    let o = ctl(&d, &["apply", "-f", bad.to_str().unwrap()]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && e.contains("line 3"), "{e}");

    let o = Command::new(env!("CARGO_BIN_EXE_fiberlbctl"))
        .args(["--server", "/nonexistent/fiberlbd.sock", "lb", "list"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        e.contains("cannot connect to /nonexistent/fiberlbd.sock")
            && e.contains("is fiberlbd running?"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_fiberlbd_mid_burst_loses_nothing_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = start(dir.path());
    let mut c = connect(d.socket.to_str().unwrap(), None, None)
        .await
        .unwrap();
    let scope = Some(pb::Scope {
        org_id: "acme".into(),
        project_id: "web".into(),
    });
    let pool = c
        .pools
        .create(pb::CreatePoolRequest {
            scope: scope.clone(),
            name: "burst".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap()
        .id;
    // Several concurrent writers; kill the daemon while they run.
    let mut writers = tokio::task::JoinSet::new();
    for w in 0..4u32 {
        let mut c = c.clone();
        let scope = scope.clone();
        writers.spawn(async move {
            let mut acked = Vec::new();
            for i in 0..10_000u32 {
                let r = c
                    .backends
                    .create(pb::CreateBackendRequest {
                        scope: scope.clone(),
                        pool_id: pool,
                        address: format!("10.{}.{}.{}", w, i / 250, i % 250 + 1),
                        port: 80,
                        ..Default::default()
                    })
                    .await;
                match r {
                    Ok(r) => acked.push(r.into_inner().backend.unwrap().id),
                    Err(_) => break,
                }
            }
            acked
        });
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    d.child.kill().unwrap(); // SIGKILL
    d.child.wait().unwrap();
    let mut acked = Vec::new();
    while let Some(r) = writers.join_next().await {
        acked.extend(r.unwrap());
    }
    assert!(
        acked.len() >= 20,
        "only {} writes acknowledged before the kill",
        acked.len()
    );

    let d = start(dir.path());
    let mut c = connect(d.socket.to_str().unwrap(), None, None)
        .await
        .unwrap();
    let have: std::collections::HashSet<u32> = c
        .backends
        .list(pb::ListRequest {
            scope: scope.clone(),
            pool_id: pool,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .backends
        .into_iter()
        .map(|b| b.id)
        .collect();
    for id in &acked {
        assert!(have.contains(id), "acknowledged backend {id} lost");
    }
    // At most the writes in flight at the kill (one per writer) landed unacknowledged.
    assert!(have.len() <= acked.len() + 4);
    eprintln!(
        "{} acknowledged writes, all present after restart",
        acked.len()
    );
}

/// Logs: JSON lines with `FIBERLB_LOG_FORMAT=json` (level, target, message), filtered by
/// `FIBERLB_LOG`; a filter that does not parse stops fiberlbd with the variable named.
#[test]
fn logs_as_json_lines_and_filter_errors_name_the_variable() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("controlplane.toml");
    let socket = dir.path().join("d.sock");
    std::fs::write(
        &config,
        format!(
            "listen = {:?}\nstore_path = {:?}\n",
            socket,
            dir.path().join("store.redb")
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fiberlbd"))
        .arg("--config")
        .arg(&config)
        .env("FIBERLB_LOG_FORMAT", "json")
        .env("FIBERLB_LOG", "info")
        .env_remove("JOURNAL_STREAM")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let v: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        let msg = v["message"].as_str().unwrap_or_default().to_string();
        assert_eq!(v["level"], "INFO", "{line}");
        assert_eq!(v["target"], "fiberlbd", "{line}");
        assert!(v["timestamp"].is_string(), "{line}");
        seen.push(msg.clone());
        if msg.starts_with("serving on unix:") {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter().any(|m| m.starts_with("store ")),
        "no store line in {seen:?}"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_fiberlbd"))
        .arg("--config")
        .arg(&config)
        .env("FIBERLB_LOG", "info,bgp=loud")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("FIBERLB_LOG=\"info,bgp=loud\""), "{err}");
}

/// A configuration built with the CLI (IPv6 VIP, source-IP Maglev, table size, MAC, drained
/// and disabled backends, a GUE tunnel listener) exports to a file that recreates it on another
/// node: the second node's export is the same file.
#[test]
fn export_recreates_a_cli_built_configuration_elsewhere() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("a")).unwrap();
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    let a = start(&dir.path().join("a"));
    let run = |d: &Daemon, args: &[&str]| stdout(&ctl(d, args));
    run(
        &a,
        &["lb", "create", "--name", "api", "--vip", "fd00:10::100"],
    );
    run(&a, &["lb", "create", "--name", "web", "--vip", "10.10.0.7"]);
    run(
        &a,
        &[
            "pool",
            "create",
            "--name",
            "api",
            "--algorithm",
            "maglev-source-ip",
            "--table-size",
            "251",
        ],
    );
    run(&a, &["pool", "create", "--name", "web"]);
    run(
        &a,
        &[
            "backend",
            "create",
            "--pool",
            "1",
            "--address",
            "fd00:20::1",
            "--port",
            "443",
            "--weight",
            "7",
        ],
    );
    run(
        &a,
        &[
            "backend",
            "create",
            "--pool",
            "2",
            "--address",
            "10.10.1.1",
            "--port",
            "8080",
            "--mac",
            "02:00:00:00:01:01",
        ],
    );
    run(
        &a,
        &[
            "backend",
            "create",
            "--pool",
            "2",
            "--address",
            "10.10.1.2",
            "--port",
            "8080",
            "--state",
            "drained",
        ],
    );
    run(
        &a,
        &[
            "backend",
            "create",
            "--pool",
            "2",
            "--address",
            "10.10.1.3",
            "--port",
            "8080",
            "--state",
            "disabled",
        ],
    );
    run(
        &a,
        &[
            "listener", "create", "--lb", "1", "--port", "443", "--mode", "tunnel", "--encap",
            "gue", "--pool", "1",
        ],
    );
    run(
        &a,
        &[
            "listener", "create", "--lb", "2", "--port", "80", "--mode", "nat", "--pool", "2",
        ],
    );
    run(
        &a,
        &[
            "listener",
            "create",
            "--lb",
            "2",
            "--port",
            "53",
            "--protocol",
            "udp",
            "--mode",
            "dsr",
            "--pool",
            "2",
        ],
    );
    let first = run(&a, &["export"]);
    for want in [
        "fd00:10::100",
        "maglev-source-ip",
        "table_size: 251",
        "weight: 7",
        "02:00:00:00:01:01",
        "state: drained",
        "state: disabled",
        "encap: gue",
        "protocol: udp",
    ] {
        assert!(first.contains(want), "{want} missing in\n{first}");
    }
    let file = dir.path().join("a.yaml");
    std::fs::write(&file, &first).unwrap();
    let b = start(&dir.path().join("b"));
    let applied = run(&b, &["apply", "-f", file.to_str().unwrap()]);
    assert!(applied.contains("+ listener api/443/tcp"), "{applied}");
    assert_eq!(run(&b, &["export"]), first);
    assert_eq!(
        run(&a, &["apply", "-f", file.to_str().unwrap()]).trim(),
        "no changes"
    );
}
