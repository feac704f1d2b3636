//! The optional TCP listener: TLS (rustls) and a token required.

use std::sync::Arc;

use fiberlb_controlplane::api::auth::Auth;
use fiberlb_controlplane::api::client::connect;
use fiberlb_controlplane::api::{server, Shared};
use fiberlb_controlplane::model::Scope;
use fiberlb_controlplane::pb;
use fiberlb_controlplane::store::Store;
use fiberlb_controlplane::vip::VipAllocator;
use tonic::Code;

const TOKEN: &str = "tls-token-acme-web-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_token() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("store.redb")).unwrap());
    let shared = Arc::new(Shared::new(
        store,
        VipAllocator::new(&["192.0.2.0/24"]).unwrap(),
    ));
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_pem = cert.cert.pem();
    let key_pem = cert.signing_key.serialize_pem();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &cert_pem).unwrap();

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (stop, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        server::serve_tls(
            listener,
            cert_pem.as_bytes(),
            key_pem.as_bytes(),
            shared,
            Auth::new([(TOKEN.to_string(), Scope::new("acme", "web"))], false),
            async {
                let _ = rx.await;
            },
        )
        .await
        .unwrap();
    });
    let url = format!("https://localhost:{port}");

    let mut c = connect(&url, Some(TOKEN), Some(&ca)).await.unwrap();
    let lb = c
        .load_balancers
        .create(pb::CreateLoadBalancerRequest {
            name: "front".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .load_balancer
        .unwrap();
    assert_eq!((lb.org_id.as_str(), lb.vip.as_str()), ("acme", "192.0.2.1"));

    // TCP never accepts calls without a token, even naming a scope.
    let mut anon = connect(&url, None, Some(&ca)).await.unwrap();
    let e = anon
        .load_balancers
        .list(pb::ListRequest {
            scope: Some(pb::Scope {
                org_id: "acme".into(),
                project_id: "web".into(),
            }),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);

    // Without the CA the server's certificate is not trusted.
    let untrusted = connect(&url, Some(TOKEN), None).await;
    match untrusted {
        Err(_) => {}
        Ok(mut c) => {
            let r = c.load_balancers.list(pb::ListRequest::default()).await;
            assert!(r.is_err(), "an untrusted server certificate was accepted");
        }
    }
    let _ = stop.send(());
}
