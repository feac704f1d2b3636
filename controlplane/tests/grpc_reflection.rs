//! "A grpcurl call through reflection": the real fiberlbd, driven by an independent gRPC client
//! that knows nothing of fiberlb's .proto files. `scripts/grpc-reflect.py` uses Python's official
//! grpcio, grpcio-reflection and protobuf (the environment `scripts/setup.sh` creates) and, like
//! grpcurl, learns every service and message from the server's reflection service.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::free_port;

const SCOPE: &str = r#""scope": {"org_id": "acme", "project_id": "web"}"#;
const TOKEN: &str = "reflection-test-acme-web-0123456789abcdef";

/// The Python of the environment `scripts/setup.sh` creates, or `None` (the test is skipped)
/// when it is missing outside CI. In CI a missing environment fails the test.
fn venv_python() -> Option<PathBuf> {
    let venv = std::env::var_os("FIBERLB_TEST_VENV")
        .map_or_else(|| PathBuf::from("/opt/fiberlb/test-venv"), PathBuf::from);
    let python = venv.join("bin/python");
    let works = Command::new(&python)
        .args(["-c", "import grpc, grpc_reflection, google.protobuf"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if works {
        return Some(python);
    }
    let why = format!(
        "{} cannot import grpc, grpc_reflection and google.protobuf: run `sudo scripts/setup.sh` \
         (it creates the Python environment of scripts/grpc-reflect.py; FIBERLB_TEST_VENV \
         overrides its path)",
        python.display()
    );
    let in_ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false" && v != "0");
    assert!(!in_ci, "{why}");
    eprintln!("\n************************************************************");
    eprintln!("SKIPPING grpc_reflection: {why}");
    eprintln!("************************************************************\n");
    None
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    log: PathBuf,
    tcp: Option<u16>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// fiberlbd on a Unix socket in `dir` without a data plane (no `shm_path`); with `tls` =
/// (cert, key) PEM paths also on a TCP port with TLS and [`TOKEN`].
fn start(dir: &Path, tls: Option<(&Path, &Path)>) -> Daemon {
    let socket = dir.join("fiberlbd.sock");
    let config = dir.join("controlplane.toml");
    let log = dir.join("fiberlbd.log");
    let tcp = tls.map(|_| free_port());
    let mut text = format!(
        "listen = {:?}\nstore_path = {:?}\nvip_ranges = [\"192.0.2.0/28\"]\n",
        socket,
        dir.join("store.redb")
    );
    if let (Some((cert, key)), Some(port)) = (tls, tcp) {
        text += &format!(
            "listen_tcp = \"127.0.0.1:{port}\"\n\
             [tls]\ncert = {cert:?}\nkey = {key:?}\n\
             [[tokens]]\ntoken = \"{TOKEN}\"\norg_id = \"acme\"\nproject_id = \"web\"\n"
        );
    }
    std::fs::write(&config, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_fiberlbd"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let mut d = Daemon {
        child,
        socket,
        log,
        tcp,
    };
    let started = Instant::now();
    loop {
        let tcp_up = d
            .tcp
            .is_none_or(|p| std::net::TcpStream::connect(("127.0.0.1", p)).is_ok());
        if d.socket.exists() && tcp_up {
            return d;
        }
        if let Ok(Some(status)) = d.child.try_wait() {
            panic!("fiberlbd exited with {status}: {}", d.log());
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "fiberlbd did not start listening within 20 s: {}",
            d.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `scripts/grpc-reflect.py` with `target` (connection options) and `args`.
fn reflect(python: &Path, target: &[&str], args: &[&str]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/grpc-reflect.py");
    Command::new(python)
        .arg(script)
        .args(target)
        .args(args)
        .env_remove("FIBERLB_TOKEN")
        .output()
        .unwrap()
}

fn unix(d: &Daemon) -> [&str; 2] {
    ["--unix", d.socket.to_str().unwrap()]
}

/// Stdout of a run that must succeed.
fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "grpc-reflect {what} failed ({}): {}{}",
        o.status,
        String::from_utf8_lossy(&o.stderr),
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8(o.stdout.clone()).unwrap()
}

/// Stderr of a call that must fail with gRPC status `code` (exit status 64 + code, as grpcurl).
fn fails(o: &Output, code: &str, code_value: i32) -> String {
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(
        o.status.code(),
        Some(64 + code_value),
        "expected {code}: stdout {} stderr {stderr}",
        String::from_utf8_lossy(&o.stdout)
    );
    assert!(stderr.contains(&format!(": {code}: ")), "{stderr}");
    stderr
}

fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

const SERVICES: [&str; 10] = [
    "fiberlb.v1.BackendService",
    "fiberlb.v1.DataplaneService",
    "fiberlb.v1.HealthCheckService",
    "fiberlb.v1.ListenerService",
    "fiberlb.v1.LoadBalancerService",
    "fiberlb.v1.NodeService",
    "fiberlb.v1.PoolService",
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

#[test]
fn list_and_describe_through_reflection() {
    let Some(python) = venv_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), None);
    let target = unix(&d);

    // Both reflection protocols answer, with the same services: grpcio-reflection's own
    // descriptor database speaks v1alpha (as grpcurl does first), newer clients v1.
    for version in ["v1", "v1alpha", "auto"] {
        let out = ok(
            &reflect(&python, &target, &["--reflection", version, "list"]),
            "list",
        );
        let services: Vec<&str> = out.lines().collect();
        assert_eq!(services, SERVICES, "reflection {version}");
    }

    let methods = ok(
        &reflect(
            &python,
            &target,
            &["list", "fiberlb.v1.LoadBalancerService"],
        ),
        "list service",
    );
    assert_eq!(
        methods.lines().collect::<Vec<_>>(),
        ["Create", "Delete", "Get", "List", "Update"]
            .map(|m| format!("fiberlb.v1.LoadBalancerService.{m}"))
    );

    // A message, resolved from the descriptors reflection served.
    let lb = ok(
        &reflect(&python, &target, &["describe", "fiberlb.v1.LoadBalancer"]),
        "describe",
    );
    assert!(
        lb.starts_with("fiberlb.v1.LoadBalancer is a message:\nmessage LoadBalancer {\n"),
        "{lb}"
    );
    for field in [
        "uint32 id = 1;",
        "string org_id = 2;",
        "string project_id = 3;",
        "string name = 4;",
        "string vip = 5;",
        "bool vip_allocated = 6;",
        "string description = 7;",
    ] {
        assert!(lb.contains(&format!("\n  {field}\n")), "{field} in {lb}");
    }
    let update = ok(
        &reflect(
            &python,
            &target,
            &[
                "--reflection",
                "v1alpha",
                "describe",
                "fiberlb.v1.UpdateLoadBalancerRequest",
            ],
        ),
        "describe",
    );
    assert!(
        update.contains("\n  fiberlb.v1.Scope scope = 1;\n"),
        "{update}"
    );
    assert!(
        update.contains("\n  optional string name = 3;\n"),
        "{update}"
    );
    let service = ok(
        &reflect(
            &python,
            &target,
            &["describe", "fiberlb.v1.DataplaneService"],
        ),
        "describe",
    );
    assert!(
        service.contains("rpc Lookup ( fiberlb.v1.LookupRequest ) returns ("),
        "{service}"
    );
    let health = ok(
        &reflect(
            &python,
            &target,
            &[
                "describe",
                "grpc.health.v1.HealthCheckResponse.ServingStatus",
            ],
        ),
        "describe",
    );
    assert!(health.contains("  SERVING = 1;\n"), "{health}");

    let unknown = reflect(&python, &target, &["describe", "fiberlb.v1.NoSuchThing"]);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("fiberlb.v1.NoSuchThing: the server's reflection service does not know"),
        "{stderr}"
    );
}

#[test]
fn calls_through_reflection() {
    let Some(python) = venv_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path(), None);
    let target = unix(&d);
    let call = |method: &str, body: &str| reflect(&python, &target, &["call", method, body]);

    // Create with an allocated VIP, then read it back with Get and List.
    let created = json(&ok(
        &call(
            "fiberlb.v1.LoadBalancerService/Create",
            &format!(r#"{{{SCOPE}, "name": "front", "description": "made by grpc-reflect"}}"#),
        ),
        "Create",
    ));
    let lb = &created["load_balancer"];
    let id = lb["id"].as_u64().expect("id");
    assert!(id > 0, "{created}");
    assert_eq!(lb["org_id"], "acme");
    assert_eq!(lb["project_id"], "web");
    assert_eq!(lb["name"], "front");
    assert_eq!(lb["description"], "made by grpc-reflect");
    assert_eq!(lb["vip_allocated"], true);
    let vip: std::net::Ipv4Addr = lb["vip"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        vip.octets()[..3],
        [192, 0, 2],
        "VIP {vip} outside 192.0.2.0/28"
    );
    assert!(vip.octets()[3] < 16, "VIP {vip} outside 192.0.2.0/28");
    // uint64 is a JSON string in the proto3 JSON mapping.
    assert_eq!(created["generation"], "1", "{created}");

    let got = json(&ok(
        &call(
            "fiberlb.v1.LoadBalancerService/Get",
            &format!(r#"{{{SCOPE}, "id": {id}}}"#),
        ),
        "Get",
    ));
    assert_eq!(&got["load_balancer"], lb);
    let listed = json(&ok(
        &call(
            "fiberlb.v1.LoadBalancerService.List",
            &format!("{{{SCOPE}}}"),
        ),
        "List",
    ));
    assert_eq!(listed["load_balancers"], Value::Array(vec![lb.clone()]));
    // Another tenant sees nothing.
    let other = json(&ok(
        &call(
            "fiberlb.v1.LoadBalancerService/List",
            r#"{"scope": {"org_id": "other", "project_id": "web"}}"#,
        ),
        "List",
    ));
    assert_eq!(other["load_balancers"], Value::Array(vec![]));

    // gRPC health, overall and per service.
    for service in ["", "fiberlb.v1.LoadBalancerService"] {
        let h = json(&ok(
            &call(
                "grpc.health.v1.Health/Check",
                &format!(r#"{{"service": "{service}"}}"#),
            ),
            "Health/Check",
        ));
        assert_eq!(h["status"], "SERVING", "{service:?}: {h}");
    }

    // Errors: the status code's name and a message naming the offending field.
    let e = fails(
        &call(
            "fiberlb.v1.LoadBalancerService/Create",
            &format!(r#"{{{SCOPE}, "name": "mcast", "vip": "224.0.0.1"}}"#),
        ),
        "INVALID_ARGUMENT",
        3,
    );
    assert!(e.contains("INVALID_ARGUMENT: vip: "), "{e}");
    let pool = json(&ok(
        &call(
            "fiberlb.v1.PoolService/Create",
            &format!(r#"{{{SCOPE}, "name": "web"}}"#),
        ),
        "Pool Create",
    ));
    let pool_id = pool["pool"]["id"].as_u64().expect("pool id");
    let e = fails(
        &call(
            "fiberlb.v1.BackendService/Create",
            &format!(r#"{{{SCOPE}, "pool_id": {pool_id}, "address": "10.0.0.1", "port": 0}}"#),
        ),
        "INVALID_ARGUMENT",
        3,
    );
    assert!(e.contains("INVALID_ARGUMENT: port: "), "{e}");
    fails(
        &call(
            "fiberlb.v1.LoadBalancerService/Get",
            &format!(r#"{{{SCOPE}, "id": 4242}}"#),
        ),
        "NOT_FOUND",
        5,
    );
    // Nothing failed changed anything.
    let listed = json(&ok(
        &call(
            "fiberlb.v1.LoadBalancerService/List",
            &format!("{{{SCOPE}}}"),
        ),
        "List",
    ));
    assert_eq!(listed["load_balancers"].as_array().unwrap().len(), 1);

    // Request JSON that does not fit the message is the tool's usage error, not a call.
    let bad = call(
        "fiberlb.v1.LoadBalancerService/Create",
        r#"{"nme": "typo"}"#,
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("no field named \"nme\""),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

#[test]
fn tls_and_token_through_reflection() {
    let Some(python) = venv_python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.signing_key.serialize_pem()).unwrap();
    let d = start(dir.path(), Some((&cert_path, &key_path)));
    let addr = format!("localhost:{}", d.tcp.unwrap());
    let ca = cert_path.to_str().unwrap();
    let tls = ["--addr", addr.as_str(), "--cacert", ca];
    let with_token = ["--addr", addr.as_str(), "--cacert", ca, "--token", TOKEN];

    let services = ok(&reflect(&python, &with_token, &["list"]), "list over TLS");
    assert_eq!(services.lines().collect::<Vec<_>>(), SERVICES);
    // The token's scope is used when the request names none.
    let created = json(&ok(
        &reflect(
            &python,
            &with_token,
            &[
                "call",
                "fiberlb.v1.LoadBalancerService/Create",
                r#"{"name": "tls"}"#,
            ],
        ),
        "Create over TLS",
    ));
    assert_eq!(created["load_balancer"]["org_id"], "acme");
    assert_eq!(created["load_balancer"]["project_id"], "web");

    let e = fails(
        &reflect(
            &python,
            &tls,
            &["call", "fiberlb.v1.LoadBalancerService/List", "{}"],
        ),
        "UNAUTHENTICATED",
        16,
    );
    assert!(e.contains("missing bearer token"), "{e}");
    // Without the CA the server's certificate is refused: UNAVAILABLE (14).
    let e = fails(
        &reflect(
            &python,
            &["--addr", addr.as_str(), "--timeout", "5"],
            &["list"],
        ),
        "UNAVAILABLE",
        14,
    );
    assert!(e.contains("--cacert"), "{e}");
}
