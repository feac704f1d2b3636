//! Health checks against real servers on 127.0.0.1: transitions after exactly `fall` failures
//! and `rise` successes, within `fall × interval + timeout` of the change.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fiberlb_controlplane::health::{
    BackendId, CheckKind, CheckerOptions, HealthChecker, HealthMap, HttpCheck, Target, UdpCheck,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Scheduling slack on a shared 2-core machine, on top of the theoretical bound.
const SLACK: Duration = Duration::from_millis(150);

fn target(id: u32, addr: SocketAddr, kind: CheckKind, rise: u32, fall: u32) -> Target {
    Target {
        backend: BackendId(id),
        address: addr.ip(),
        port: addr.port(),
        kind,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(80),
        rise,
        fall,
    }
}

/// Waits until backend `id` is `up` (or the deadline passes); returns when it happened.
async fn wait_for(
    rx: &mut watch::Receiver<Arc<HealthMap>>,
    id: u32,
    up: bool,
    within: Duration,
) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if rx.borrow_and_update().get(&BackendId(id)).map(|h| h.up) == Some(up) {
            return Some(Instant::now());
        }
        match tokio::time::timeout_at(deadline, rx.changed()).await {
            Ok(Ok(())) => {}
            _ => return None,
        }
    }
}

/// An HTTP server answering every request with the current `status`, counting answers per
/// status and the most connections open at once.
struct HttpServer {
    addr: SocketAddr,
    status: Arc<AtomicU16>,
    answered: Arc<std::sync::Mutex<HashMap<u16, u64>>>,
    delay: Duration,
    max_open: Arc<AtomicUsize>,
}

async fn http_server(delay: Duration) -> HttpServer {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let status = Arc::new(AtomicU16::new(200));
    let answered = Arc::new(std::sync::Mutex::new(HashMap::new()));
    let open = Arc::new(AtomicUsize::new(0));
    let max_open = Arc::new(AtomicUsize::new(0));
    let (s, a, o, m) = (
        status.clone(),
        answered.clone(),
        open.clone(),
        max_open.clone(),
    );
    tokio::spawn(async move {
        loop {
            let Ok((mut conn, _)) = listener.accept().await else {
                return;
            };
            let (s, a, o, m) = (s.clone(), a.clone(), o.clone(), m.clone());
            tokio::spawn(async move {
                let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                m.fetch_max(now, Ordering::SeqCst);
                let mut req = Vec::new();
                let mut buf = [0u8; 1024];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => {
                            o.fetch_sub(1, Ordering::SeqCst);
                            return;
                        }
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                assert!(req.starts_with(b"GET /healthz HTTP/1.1\r\n"), "{req:?}");
                assert!(
                    String::from_utf8_lossy(&req).contains("\r\nHost: svc.example\r\n"),
                    "{}",
                    String::from_utf8_lossy(&req)
                );
                tokio::time::sleep(delay).await;
                let code = s.load(Ordering::SeqCst);
                let resp =
                    format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                if conn.write_all(resp.as_bytes()).await.is_ok() {
                    *a.lock().unwrap().entry(code).or_default() += 1;
                }
                o.fetch_sub(1, Ordering::SeqCst);
            });
        }
    });
    HttpServer {
        addr,
        status,
        answered,
        delay,
        max_open,
    }
}

impl HttpServer {
    fn count(&self, code: u16) -> u64 {
        self.answered
            .lock()
            .unwrap()
            .get(&code)
            .copied()
            .unwrap_or(0)
    }
}

fn http_kind() -> HttpCheck {
    HttpCheck {
        path: "/healthz".into(),
        host: Some("svc.example".into()),
        expected_status: (200, 299),
    }
}

#[tokio::test]
async fn http_goes_down_after_exactly_fall_failures_and_up_after_rise() {
    let server = http_server(Duration::ZERO).await;
    let checker = HealthChecker::new(CheckerOptions::default());
    let mut rx = checker.subscribe();
    let (rise, fall) = (2, 3);
    let t = target(1, server.addr, CheckKind::Http(http_kind()), rise, fall);
    let bound = t.interval * fall + t.timeout + SLACK;
    checker.set_targets(vec![t.clone()]);
    // Starts up and stays up while the server says 200.
    assert_eq!(rx.borrow().get(&BackendId(1)).map(|h| h.up), Some(true));
    tokio::time::sleep(Duration::from_millis(350)).await;
    assert!(server.count(200) >= 2, "probes ran: {}", server.count(200));
    assert!(checker.snapshot()[&BackendId(1)].up);

    server.status.store(500, Ordering::SeqCst);
    let changed = Instant::now();
    let down = wait_for(&mut rx, 1, false, Duration::from_secs(5))
        .await
        .expect("went down");
    assert_eq!(
        server.count(500),
        u64::from(fall),
        "down after exactly fall 500s"
    );
    assert!(
        down - changed <= bound,
        "down after {:?} > {bound:?}",
        down - changed
    );
    let h = checker.snapshot()[&BackendId(1)].clone();
    assert!(
        h.last_error
            .as_deref()
            .unwrap()
            .contains("status 500, expected 200-299"),
        "{h:?}"
    );

    server.status.store(204, Ordering::SeqCst);
    let changed = Instant::now();
    let up = wait_for(&mut rx, 1, true, Duration::from_secs(5))
        .await
        .expect("came back");
    assert_eq!(
        server.count(204),
        u64::from(rise),
        "up after exactly rise successes"
    );
    assert!(
        up - changed <= t.interval * rise + t.timeout + SLACK,
        "up after {:?}",
        up - changed
    );
    assert_eq!(checker.snapshot()[&BackendId(1)].last_error, None);
}

#[tokio::test]
async fn tcp_connect_down_when_listener_closes_and_up_from_initial_down() {
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicU64::new(0));
    let acc = accepted.clone();
    let server = tokio::spawn(async move {
        while listener.accept().await.is_ok() {
            acc.fetch_add(1, Ordering::SeqCst);
        }
    });
    let checker = HealthChecker::new(CheckerOptions::default());
    let mut rx = checker.subscribe();
    let t = target(7, addr, CheckKind::Tcp, 3, 2);
    // Start down (as if persisted): it takes exactly `rise` connections to come up.
    checker.set_targets_with_state(vec![t.clone()], &HashMap::from([(BackendId(7), false)]));
    assert_eq!(rx.borrow().get(&BackendId(7)).map(|h| h.up), Some(false));
    let started = Instant::now();
    let up = wait_for(&mut rx, 7, true, Duration::from_secs(5))
        .await
        .expect("came up");
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
    assert!(up - started <= t.interval * 3 + t.timeout + SLACK);

    // Close the port: connection refused.
    server.abort();
    let _ = server.await;
    let closed = Instant::now();
    let down = wait_for(&mut rx, 7, false, Duration::from_secs(5))
        .await
        .expect("went down");
    assert!(
        down - closed <= t.interval * 2 + t.timeout + SLACK,
        "{:?}",
        down - closed
    );
    let err = checker.snapshot()[&BackendId(7)]
        .last_error
        .clone()
        .unwrap();
    assert!(err.contains("tcp connect to 127.0.0.1"), "{err}");
}

#[tokio::test]
async fn udp_request_reply_wrong_reply_and_silence() {
    let sock = UdpSocket::bind((LOCALHOST, 0)).await.unwrap();
    let addr = sock.local_addr().unwrap();
    // 0: echo "pong:" + request; 1: reply garbage; 2: stay silent.
    let mode = Arc::new(AtomicU16::new(0));
    let replies = Arc::new(AtomicU64::new(0));
    let (m, r) = (mode.clone(), replies.clone());
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        loop {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            assert_eq!(&buf[..n], b"ping");
            let reply: Vec<u8> = match m.load(Ordering::SeqCst) {
                0 => [b"pong:".as_slice(), &buf[..n]].concat(),
                1 => b"nope".to_vec(),
                _ => continue,
            };
            sock.send_to(&reply, from).await.unwrap();
            r.fetch_add(1, Ordering::SeqCst);
        }
    });
    let checker = HealthChecker::new(CheckerOptions::default());
    let mut rx = checker.subscribe();
    let kind = CheckKind::Udp(UdpCheck {
        payload: b"ping".to_vec(),
        expected_reply: b"pong".to_vec(),
    });
    let t = target(3, addr, kind, 2, 2);
    checker.set_targets_with_state(vec![t.clone()], &HashMap::from([(BackendId(3), false)]));
    wait_for(&mut rx, 3, true, Duration::from_secs(5))
        .await
        .expect("up on pong");
    assert_eq!(replies.load(Ordering::SeqCst), 2);

    mode.store(1, Ordering::SeqCst);
    let changed = Instant::now();
    let down = wait_for(&mut rx, 3, false, Duration::from_secs(5))
        .await
        .expect("down on a wrong reply");
    assert!(down - changed <= t.interval * 2 + t.timeout + SLACK);
    let err = checker.snapshot()[&BackendId(3)]
        .last_error
        .clone()
        .unwrap();
    assert!(
        err.contains("does not start with the expected 4 bytes"),
        "{err}"
    );

    mode.store(0, Ordering::SeqCst);
    wait_for(&mut rx, 3, true, Duration::from_secs(5))
        .await
        .expect("up");
    mode.store(2, Ordering::SeqCst);
    let changed = Instant::now();
    let down = wait_for(&mut rx, 3, false, Duration::from_secs(5))
        .await
        .expect("down on silence");
    assert!(
        down - changed <= t.interval * 2 + t.timeout + SLACK,
        "{:?}",
        down - changed
    );
    let err = checker.snapshot()[&BackendId(3)]
        .last_error
        .clone()
        .unwrap();
    assert!(err.contains("no answer"), "{err}");
}

#[tokio::test]
async fn https_with_a_self_signed_certificate() {
    let cert = rcgen::generate_simple_self_signed(vec!["svc.example".to_string()]).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.cert.der().clone()],
            rustls::pki_types::PrivateKeyDer::Pkcs8(cert.signing_key.serialize_der().into()),
        )
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind((LOCALHOST, 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let healthy = Arc::new(AtomicBool::new(true));
    let served = Arc::new(AtomicU64::new(0));
    let (h, s) = (healthy.clone(), served.clone());
    tokio::spawn(async move {
        loop {
            let Ok((conn, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, h, s) = (acceptor.clone(), h.clone(), s.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(conn).await else {
                    return;
                };
                let mut buf = [0u8; 1024];
                let mut req = Vec::new();
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let code = if h.load(Ordering::SeqCst) { 200 } else { 503 };
                let resp = format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n");
                let _ = tls.write_all(resp.as_bytes()).await;
                let _ = tls.shutdown().await;
                s.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    let checker = HealthChecker::new(CheckerOptions::default());
    let mut rx = checker.subscribe();
    let t = target(9, addr, CheckKind::Https(http_kind()), 1, 1);
    checker.set_targets_with_state(vec![t], &HashMap::from([(BackendId(9), false)]));
    wait_for(&mut rx, 9, true, Duration::from_secs(5))
        .await
        .expect("up over TLS with an unverified certificate");
    assert!(served.load(Ordering::SeqCst) >= 1);
    healthy.store(false, Ordering::SeqCst);
    wait_for(&mut rx, 9, false, Duration::from_secs(5))
        .await
        .expect("down on 503");
    let err = checker.snapshot()[&BackendId(9)]
        .last_error
        .clone()
        .unwrap();
    assert!(err.contains("status 503"), "{err}");
}

#[tokio::test]
async fn reconfiguration_keeps_unchanged_targets_and_drops_removed_ones() {
    let a = http_server(Duration::ZERO).await;
    let b = http_server(Duration::ZERO).await;
    let checker = HealthChecker::new(CheckerOptions::default());
    let mut rx = checker.subscribe();
    let ta = target(1, a.addr, CheckKind::Http(http_kind()), 1, 1);
    let tb = target(2, b.addr, CheckKind::Http(http_kind()), 1, 1);
    checker.set_targets(vec![ta.clone(), tb.clone()]);
    // Take A down so its state is distinguishable from a fresh start.
    a.status.store(500, Ordering::SeqCst);
    wait_for(&mut rx, 1, false, Duration::from_secs(5))
        .await
        .expect("a down");
    let since = checker.snapshot()[&BackendId(1)].since;

    // Remove B; A is unchanged and keeps its state and task.
    checker.set_targets(vec![ta.clone()]);
    let map = checker.snapshot();
    assert!(!map.contains_key(&BackendId(2)));
    assert_eq!(map[&BackendId(1)].since, since);
    assert!(!map[&BackendId(1)].up);
    let b_count = b.count(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(b.count(200) <= b_count + 1, "B is no longer probed");
    assert!(a.count(500) >= 3, "A is still probed");

    // Changing A's check restarts its probe but keeps its state (down).
    let mut ta2 = ta.clone();
    ta2.interval = Duration::from_millis(50);
    checker.set_targets(vec![ta2]);
    assert!(!checker.snapshot()[&BackendId(1)].up);
    a.status.store(200, Ordering::SeqCst);
    wait_for(&mut rx, 1, true, Duration::from_secs(5))
        .await
        .expect("a up");
    assert_eq!(checker.targets().len(), 1);
}

#[tokio::test]
async fn concurrency_is_bounded() {
    let server = http_server(Duration::from_millis(60)).await;
    let checker = HealthChecker::new(CheckerOptions {
        max_concurrency: 2,
        ..CheckerOptions::default()
    });
    let targets: Vec<Target> = (0..6)
        .map(|i| {
            let mut t = target(i, server.addr, CheckKind::Http(http_kind()), 1, 1);
            t.interval = Duration::from_millis(50);
            t.timeout = Duration::from_millis(500);
            t
        })
        .collect();
    checker.set_targets(targets);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(server.count(200) >= 6, "probes ran: {}", server.count(200));
    assert!(server.delay > Duration::ZERO);
    let max = server.max_open.load(Ordering::SeqCst);
    assert!(
        (1..=2).contains(&max),
        "at most 2 probes at once, saw {max}"
    );
    assert!(checker.snapshot().values().all(|h| h.up));
}
