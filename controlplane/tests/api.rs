//! The gRPC API over a real Unix socket with a real tonic client: validation errors name the
//! field, tenants are isolated, VIPs are allocated and reused, references are protected, and
//! gRPC health and reflection answer.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use fiberlb_controlplane::api::auth::Auth;
use fiberlb_controlplane::api::client::{connect, Clients};
use fiberlb_controlplane::api::{dataplane_validator, server, Shared};
use fiberlb_controlplane::model::Scope;
use fiberlb_controlplane::pb;
use fiberlb_controlplane::store::Store;
use fiberlb_controlplane::vip::VipAllocator;
use fiberlb_shared::flow_hash::{table_index, FlowHasher};
use fiberlb_shared::maglev::{build_table, MaglevBackend};
use fiberlb_shared::model::TunnelSettings;
use tonic::Code;

const TOKEN_A: &str = "token-for-acme-web-0001";
const TOKEN_B: &str = "token-for-evil-corp-0002";

struct Server {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    store: Arc<Store>,
    stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(ranges: &[&str], anonymous: bool) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("fiberlbd.sock");
    let store = Arc::new(
        Store::open(&dir.path().join("store.redb"))
            .unwrap()
            .with_validator(dataplane_validator(TunnelSettings::default())),
    );
    let shared = Arc::new(Shared::new(
        store.clone(),
        VipAllocator::new(ranges).unwrap(),
    ));
    let auth = Auth::new(
        [
            (TOKEN_A.to_string(), Scope::new("acme", "web")),
            (TOKEN_B.to_string(), Scope::new("evil", "corp")),
        ],
        anonymous,
    );
    let listener = server::bind_unix(&socket).unwrap();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(server::serve_unix(listener, shared, auth, async {
        let _ = rx.await;
    }));
    Server {
        _dir: dir,
        socket,
        store,
        stop,
    }
}

async fn client(s: &Server, token: Option<&str>) -> Clients {
    connect(s.socket.to_str().unwrap(), token, None)
        .await
        .unwrap()
}

fn scope() -> Option<pb::Scope> {
    Some(pb::Scope {
        org_id: "acme".into(),
        project_id: "web".into(),
    })
}

async fn pool(c: &mut Clients, name: &str) -> u32 {
    c.pools
        .create(pb::CreatePoolRequest {
            scope: scope(),
            name: name.into(),
            table_size: 251,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap()
        .id
}

async fn lb(c: &mut Clients, name: &str, vip: &str) -> Result<pb::LoadBalancer, tonic::Status> {
    Ok(c.load_balancers
        .create(pb::CreateLoadBalancerRequest {
            scope: scope(),
            name: name.into(),
            vip: vip.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .load_balancer
        .unwrap())
}

fn backend_req(pool: u32, address: &str, port: u32) -> pb::CreateBackendRequest {
    pb::CreateBackendRequest {
        scope: scope(),
        pool_id: pool,
        address: address.into(),
        port,
        ..Default::default()
    }
}

fn assert_field(r: Result<impl std::fmt::Debug, tonic::Status>, code: Code, field: &str) {
    let e = r.unwrap_err();
    assert_eq!(e.code(), code, "{e:?}");
    assert!(
        e.message().starts_with(&format!("{field}: ")),
        "message {:?} does not name {field}",
        e.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_errors_name_the_field() {
    let s = start(&["192.0.2.0/24"], true).await;
    let mode = std::fs::metadata(&s.socket).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut c = client(&s, None).await;
    let p = pool(&mut c, "web").await;
    let front = lb(&mut c, "front", "").await.unwrap();

    assert_field(
        c.backends.create(backend_req(p, "10.0.0.300", 80)).await,
        Code::InvalidArgument,
        "address",
    );
    assert_field(
        c.backends.create(backend_req(p, "10.0.0.1", 0)).await,
        Code::InvalidArgument,
        "port",
    );
    let mut r = backend_req(p, "10.0.0.1", 80);
    r.weight = Some(10_001);
    assert_field(c.backends.create(r).await, Code::InvalidArgument, "weight");
    let mut r = backend_req(p, "10.0.0.1", 80);
    r.mac = "02:00:00:00:01".into();
    assert_field(c.backends.create(r).await, Code::InvalidArgument, "mac");
    let mut r = backend_req(p, "10.0.0.1", 80);
    r.admin_state = "paused".into();
    assert_field(
        c.backends.create(r).await,
        Code::InvalidArgument,
        "admin_state",
    );
    assert_field(
        c.pools
            .create(pb::CreatePoolRequest {
                scope: scope(),
                name: "bad".into(),
                table_size: 65536,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "table_size",
    );
    assert_field(
        c.pools
            .create(pb::CreatePoolRequest {
                scope: scope(),
                name: "has space".into(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "name",
    );
    let listener = |port: u32, protocol: &str, mode: &str| pb::CreateListenerRequest {
        scope: scope(),
        load_balancer_id: front.id,
        port,
        protocol: protocol.into(),
        mode: mode.into(),
        pool_id: p,
        ..Default::default()
    };
    assert_field(
        c.listeners.create(listener(0, "tcp", "nat")).await,
        Code::InvalidArgument,
        "port",
    );
    assert_field(
        c.listeners.create(listener(80, "sctp", "nat")).await,
        Code::InvalidArgument,
        "protocol",
    );
    assert_field(
        c.listeners.create(listener(80, "tcp", "bridge")).await,
        Code::InvalidArgument,
        "mode",
    );
    assert_field(
        lb_family(&mut c, "v5").await,
        Code::InvalidArgument,
        "vip_family",
    );
    assert_field(
        lb(&mut c, "x", "224.0.0.1").await,
        Code::InvalidArgument,
        "vip",
    );
    // Missing scope on the anonymous (local admin) socket.
    let e = c.pools.list(pb::ListRequest::default()).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().starts_with("scope.org_id"), "{}", e.message());

    // Good requests, and duplicates.
    c.backends
        .create(backend_req(p, "10.0.0.1", 80))
        .await
        .unwrap();
    assert_field(
        c.backends.create(backend_req(p, "10.0.0.1", 80)).await,
        Code::AlreadyExists,
        "address",
    );
    c.listeners
        .create(listener(80, "tcp", "nat"))
        .await
        .unwrap();
    assert_field(
        c.listeners.create(listener(80, "tcp", "nat")).await,
        Code::AlreadyExists,
        "port",
    );
    // The data plane's own rules: a tunnel listener needs a tunnel source (none configured).
    let e = c
        .listeners
        .create(listener(443, "tcp", "tunnel"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
    assert!(e.message().contains("source_v4"), "{}", e.message());
    // NotFound for unknown ids.
    let e = c
        .backends
        .get(pb::GetRequest {
            scope: scope(),
            id: 999,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Every rejected request left the store as it was: pool, lb, backend, listener.
    assert_eq!(s.store.snapshot().generation, 4);
    let _ = s.stop.send(());
}

async fn lb_family(c: &mut Clients, family: &str) -> Result<pb::LoadBalancer, tonic::Status> {
    Ok(c.load_balancers
        .create(pb::CreateLoadBalancerRequest {
            scope: scope(),
            name: format!("fam-{family}"),
            vip_family: family.into(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .load_balancer
        .unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vip_allocation_reuse_and_conflicts() {
    let s = start(&["192.0.2.0/30", "2001:db8::/126"], true).await;
    let mut c = client(&s, None).await;
    let a = lb(&mut c, "a", "").await.unwrap();
    let b = lb(&mut c, "b", "").await.unwrap();
    assert_eq!((a.vip.as_str(), a.vip_allocated), ("192.0.2.1", true));
    assert_eq!(b.vip, "192.0.2.2");
    // Range exhausted (/30 has two usable addresses).
    let e = lb(&mut c, "c", "").await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("fully allocated"), "{}", e.message());
    // IPv6 from its own range.
    let v6 = lb_family(&mut c, "ipv6").await.unwrap();
    assert_eq!(v6.vip, "2001:db8::1");
    // Delete returns the VIP; the next allocation reuses the lowest free one.
    c.load_balancers
        .delete(pb::DeleteRequest {
            scope: scope(),
            id: a.id,
        })
        .await
        .unwrap();
    let d = lb(&mut c, "d", "").await.unwrap();
    assert_eq!(d.vip, "192.0.2.1");
    assert_ne!(d.id, a.id, "ids are never reused");
    // Explicit VIPs: taken ones conflict, others (even outside the ranges) are fine.
    assert_field(
        lb(&mut c, "e", "192.0.2.2").await,
        Code::AlreadyExists,
        "vip",
    );
    let f = lb(&mut c, "f", "198.51.100.7").await.unwrap();
    assert!(!f.vip_allocated);
    // Name conflicts within a tenant.
    assert_field(
        lb(&mut c, "f", "198.51.100.8").await,
        Code::AlreadyExists,
        "name",
    );
    let _ = s.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn references_are_protected() {
    let s = start(&["192.0.2.0/24"], true).await;
    let mut c = client(&s, None).await;
    let p = pool(&mut c, "web").await;
    let front = lb(&mut c, "front", "").await.unwrap();
    c.backends
        .create(backend_req(p, "10.0.0.1", 80))
        .await
        .unwrap();
    let l = c
        .listeners
        .create(pb::CreateListenerRequest {
            scope: scope(),
            load_balancer_id: front.id,
            port: 80,
            protocol: "tcp".into(),
            mode: "nat".into(),
            pool_id: p,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .listener
        .unwrap();
    let e = c
        .pools
        .delete(pb::DeleteRequest {
            scope: scope(),
            id: p,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains(&format!("listeners {}", l.id)),
        "{}",
        e.message()
    );
    let e = c
        .load_balancers
        .delete(pb::DeleteRequest {
            scope: scope(),
            id: front.id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    // A listener cannot point at a pool that does not exist.
    let e = c
        .listeners
        .update(pb::UpdateListenerRequest {
            scope: scope(),
            id: l.id,
            pool_id: Some(4242),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Delete in order: listener, then pool (with its backend) and load balancer.
    c.listeners
        .delete(pb::DeleteRequest {
            scope: scope(),
            id: l.id,
        })
        .await
        .unwrap();
    c.pools
        .delete(pb::DeleteRequest {
            scope: scope(),
            id: p,
        })
        .await
        .unwrap();
    c.load_balancers
        .delete(pb::DeleteRequest {
            scope: scope(),
            id: front.id,
        })
        .await
        .unwrap();
    let st = s.store.snapshot().state;
    assert!(st.backends.is_empty() && st.pools.is_empty() && st.load_balancers.is_empty());
    let _ = s.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_isolate_tenants() {
    let s = start(&["192.0.2.0/24"], false).await;
    // No token on a socket that requires one.
    let mut anon = client(&s, None).await;
    let e = anon
        .pools
        .list(pb::ListRequest {
            scope: scope(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    let mut bad = client(&s, Some("not-a-token-at-all-xx")).await;
    let e = bad
        .pools
        .list(pb::ListRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    let mut a = client(&s, Some(TOKEN_A)).await;
    let mut b = client(&s, Some(TOKEN_B)).await;
    // A works without naming a scope: the token's is used.
    let pa = a
        .pools
        .create(pb::CreatePoolRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap();
    assert_eq!(
        (pa.org_id.as_str(), pa.project_id.as_str()),
        ("acme", "web")
    );
    let ba = a
        .backends
        .create(pb::CreateBackendRequest {
            pool_id: pa.id,
            address: "10.0.0.1".into(),
            port: 80,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .backend
        .unwrap();
    // B sees nothing of A's and cannot touch it.
    let get = pb::GetRequest {
        scope: None,
        id: pa.id,
    };
    assert_eq!(b.pools.get(get).await.unwrap_err().code(), Code::NotFound);
    assert!(b
        .pools
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .pools
        .is_empty());
    assert!(b
        .backends
        .list(pb::ListRequest::default())
        .await
        .unwrap()
        .into_inner()
        .backends
        .is_empty());
    let e = b
        .backends
        .update(pb::UpdateBackendRequest {
            id: ba.id,
            weight: Some(0),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let e = b
        .pools
        .delete(pb::DeleteRequest {
            scope: None,
            id: pa.id,
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Adding a backend to A's pool from B: the pool does not exist for B.
    let e = b
        .backends
        .create(pb::CreateBackendRequest {
            pool_id: pa.id,
            address: "10.6.6.6".into(),
            port: 80,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // Naming A's scope explicitly with B's token is refused.
    let e = b
        .pools
        .list(pb::ListRequest {
            scope: scope(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    // B can use the same names in its own scope.
    let pb_ = b
        .pools
        .create(pb::CreatePoolRequest {
            name: "web".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .pool
        .unwrap();
    assert_eq!(pb_.org_id, "evil");
    // A's objects are unchanged.
    let st = s.store.snapshot().state;
    assert_eq!(st.backends[&ba.id].weight, 1);
    assert_eq!(st.pools.len(), 2);
    let _ = s.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookup_is_the_maglev_answer() {
    let s = start(&["192.0.2.0/24"], true).await;
    let mut c = client(&s, None).await;
    let p = pool(&mut c, "web").await;
    let front = lb(&mut c, "front", "").await.unwrap();
    let mut backends = vec![];
    for i in 1..=3 {
        backends.push(
            c.backends
                .create(backend_req(p, &format!("10.0.0.{i}"), 8080))
                .await
                .unwrap()
                .into_inner()
                .backend
                .unwrap(),
        );
    }
    c.listeners
        .create(pb::CreateListenerRequest {
            scope: scope(),
            load_balancer_id: front.id,
            port: 80,
            protocol: "tcp".into(),
            mode: "nat".into(),
            pool_id: p,
            ..Default::default()
        })
        .await
        .unwrap();
    let req = |sport: u32| pb::LookupRequest {
        scope: scope(),
        src_address: "198.51.100.10".into(),
        src_port: sport,
        dst_address: front.vip.clone(),
        dst_port: 80,
        protocol: "tcp".into(),
    };
    // Independently: the data plane hashes the 5-tuple and indexes the pool's table.
    let inputs: Vec<MaglevBackend> = backends
        .iter()
        .map(|b| MaglevBackend {
            address: b.address.parse().unwrap(),
            port: b.port as u16,
            weight: 1,
        })
        .collect();
    let table = build_table(&inputs, 251).unwrap();
    let mut seen = std::collections::HashSet::new();
    for sport in 40000..40040 {
        let r = c.dataplane.lookup(req(sport)).await.unwrap().into_inner();
        let h = FlowHasher::default().hash(
            "198.51.100.10".parse().unwrap(),
            front.vip.parse().unwrap(),
            sport as u16,
            80,
            6,
        );
        assert_eq!(r.flow_hash, h);
        let slot = table_index(h, 251);
        assert_eq!(r.table_slot, slot);
        let want = &backends[table[slot as usize] as usize];
        assert_eq!(r.backend.as_ref().unwrap().id, want.id);
        seen.insert(want.id);
    }
    assert_eq!(seen.len(), 3, "40 flows reach all three backends");
    // Disabling the chosen backend moves the flow to another one.
    let before = c
        .dataplane
        .lookup(req(40000))
        .await
        .unwrap()
        .into_inner()
        .backend
        .unwrap();
    c.backends
        .update(pb::UpdateBackendRequest {
            scope: scope(),
            id: before.id,
            admin_state: Some("disabled".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let after = c
        .dataplane
        .lookup(req(40000))
        .await
        .unwrap()
        .into_inner()
        .backend
        .unwrap();
    assert_ne!(after.id, before.id);
    // A VIP port without a listener.
    let mut r = req(40000);
    r.dst_port = 81;
    assert_eq!(
        c.dataplane.lookup(r).await.unwrap_err().code(),
        Code::NotFound
    );
    let st = c
        .dataplane
        .status(pb::StatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(!st.attached);
    assert_eq!(st.store_generation, s.store.snapshot().generation);
    let _ = s.stop.send(());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_health_and_reflection() {
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    use tonic_reflection::pb::v1::ServerReflectionRequest;

    let s = start(&[], true).await;
    let path = s.socket.clone();
    let channel = tonic::transport::Endpoint::from_static("http://local")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                    tokio::net::UnixStream::connect(path).await?,
                ))
            }
        }))
        .await
        .unwrap();
    let mut health = tonic_health::pb::health_client::HealthClient::new(channel.clone());
    let r = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "fiberlb.v1.LoadBalancerService".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        r.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let mut refl = ServerReflectionClient::new(channel);
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = refl
        .server_reflection_info(tokio_stream::iter([req]))
        .await
        .unwrap()
        .into_inner();
    let msg = stream.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection reply {msg:?}");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for want in [
        "fiberlb.v1.LoadBalancerService",
        "fiberlb.v1.DataplaneService",
        "grpc.health.v1.Health",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
    let _ = s.stop.send(());
}

/// Registered backends with `store = "redb"`: fiberlbd's own lease timers. A renewed lease
/// keeps the backend past its TTL; once the renewals stop it is deleted (a new generation)
/// within the TTL plus the store's 100 ms reaper tick; renewing it then is NOT_FOUND, and a
/// permanent backend at the same address and port refuses a registration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_backend_expires_without_keep_alives() {
    let s = start(&["10.9.0.0/24"], false).await;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let reaper = tokio::spawn(s.store.clone().run(stop_rx));
    let mut c = client(&s, Some(TOKEN_A)).await;
    let pool_id = pool(&mut c, "dyn").await;
    let bad = c
        .backends
        .register(pb::RegisterBackendRequest {
            pool_id,
            address: "10.1.0.7".into(),
            port: 80,
            ttl_ms: 10,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
    assert!(bad.message().starts_with("ttl_ms"), "{}", bad.message());
    let r = c
        .backends
        .register(pb::RegisterBackendRequest {
            pool_id,
            address: "10.1.0.7".into(),
            port: 80,
            ttl_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let b = r.backend.unwrap();
    assert_eq!((b.lease_id, b.lease_ttl_ms), (r.lease_id, 1000));
    // Renewed every 300 ms for 2 s (twice the TTL): still there.
    for _ in 0..7 {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let k = c
            .backends
            .keep_alive(pb::KeepAliveRequest {
                scope: None,
                lease_id: r.lease_id,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(k.ttl_ms, 1000);
    }
    let last = std::time::Instant::now();
    let get = |c: &mut Clients| {
        let mut c = c.clone();
        async move {
            c.backends
                .get(pb::GetRequest {
                    scope: None,
                    id: b.id,
                })
                .await
        }
    };
    assert!(get(&mut c).await.is_ok());
    while get(&mut c).await.is_ok() {
        assert!(
            last.elapsed() < std::time::Duration::from_secs(3),
            "the registered backend outlived its lease"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(last.elapsed() >= std::time::Duration::from_millis(900));
    let gone = c
        .backends
        .keep_alive(pb::KeepAliveRequest {
            scope: None,
            lease_id: r.lease_id,
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), tonic::Code::NotFound);
    // A permanent backend is not taken over by a registration.
    c.backends
        .create(pb::CreateBackendRequest {
            pool_id,
            address: "10.1.0.8".into(),
            port: 80,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = c
        .backends
        .register(pb::RegisterBackendRequest {
            pool_id,
            address: "10.1.0.8".into(),
            port: 80,
            ttl_ms: 1000,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{}", e.message());
    let _ = stop_tx.send(true);
    let _ = reaper.await;
    let _ = s.stop.send(());
}
