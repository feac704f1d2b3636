//! Serving the API: a Unix socket (mode 0600) by default, TCP with TLS optionally, each with
//! gRPC health (`grpc.health.v1`) and reflection (`grpc.reflection.v1` and `v1alpha`) so that
//! `grpcurl` works without .proto files.

use std::future::Future;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::server::Router;
use tonic::transport::{Identity, Server, ServerTlsConfig};

use super::auth::Auth;
use super::service::Api;
use super::Shared;
use crate::pb;
use crate::pb::backend_service_server::BackendServiceServer;
use crate::pb::dataplane_service_server::DataplaneServiceServer;
use crate::pb::health_check_service_server::HealthCheckServiceServer;
use crate::pb::listener_service_server::ListenerServiceServer;
use crate::pb::load_balancer_service_server::LoadBalancerServiceServer;
use crate::pb::node_service_server::NodeServiceServer;
use crate::pb::pool_service_server::PoolServiceServer;

/// The gRPC health service name that is NOT_SERVING while the store refuses writes.
pub const WRITES_HEALTH: &str = "fiberlb.v1.Writes";

/// Why the API could not be served.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {what}: {source}; check the path/address and permissions, and that no other fiberlbd runs")]
    Bind {
        what: String,
        source: std::io::Error,
    },
    #[error("TLS: {0}; check [tls] cert and key (PEM)")]
    Tls(String),
    #[error("reflection service: {0}")]
    Reflection(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
}

async fn router(
    mut builder: Server,
    shared: Arc<Shared>,
    auth: Auth,
) -> Result<Router, ServeError> {
    let api = Api::new(shared.clone(), auth);
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<LoadBalancerServiceServer<Api>>()
        .await;
    reporter.set_serving::<ListenerServiceServer<Api>>().await;
    reporter.set_serving::<PoolServiceServer<Api>>().await;
    reporter.set_serving::<BackendServiceServer<Api>>().await;
    reporter
        .set_serving::<HealthCheckServiceServer<Api>>()
        .await;
    reporter.set_serving::<DataplaneServiceServer<Api>>().await;
    reporter.set_serving::<NodeServiceServer<Api>>().await;
    // `fiberlb.v1.Writes`: SERVING while the store takes writes (with etcd: while etcd answers).
    // Reads and the data plane keep working either way, so the services above stay SERVING.
    let mut store_health = shared.store.health();
    let writes = |h: &crate::store::StoreHealth| {
        if h.reachable {
            tonic_health::ServingStatus::Serving
        } else {
            tonic_health::ServingStatus::NotServing
        }
    };
    let first = writes(&store_health.borrow_and_update());
    reporter.set_service_status(WRITES_HEALTH, first).await;
    tokio::spawn(async move {
        while store_health.changed().await.is_ok() {
            let s = writes(&store_health.borrow_and_update());
            reporter.set_service_status(WRITES_HEALTH, s).await;
        }
    });
    // Both reflection versions: grpcurl and older clients (grpcio-reflection's descriptor
    // database, many IDE plugins) only speak v1alpha; newer ones prefer v1. Each describes both
    // reflection services, so `list` shows the same set whichever a client speaks.
    let reflection_builder = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            )
    };
    let reflection_err = |e: tonic_reflection::server::Error| ServeError::Reflection(e.to_string());
    let reflection_v1 = reflection_builder().build_v1().map_err(reflection_err)?;
    let reflection_v1alpha = reflection_builder()
        .build_v1alpha()
        .map_err(reflection_err)?;
    Ok(builder
        .add_service(health)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(LoadBalancerServiceServer::new(api.clone()))
        .add_service(ListenerServiceServer::new(api.clone()))
        .add_service(PoolServiceServer::new(api.clone()))
        .add_service(BackendServiceServer::new(api.clone()))
        .add_service(HealthCheckServiceServer::new(api.clone()))
        .add_service(DataplaneServiceServer::new(api.clone()))
        .add_service(NodeServiceServer::new(api)))
}

/// Binds the Unix socket at `path` (replacing a stale one, creating the directory) with mode
/// 0600: only its owner (root, normally) can connect.
///
/// # Errors
/// [`ServeError::Bind`].
pub fn bind_unix(path: &Path) -> Result<UnixListener, ServeError> {
    let bind_err = |source| ServeError::Bind {
        what: path.display().to_string(),
        source,
    };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(bind_err)?;
    }
    // A socket left by a previous run would make bind fail; a live fiberlbd keeps the store
    // locked, so by the time we get here no other instance is serving it.
    match std::fs::symlink_metadata(path) {
        Ok(m) if std::os::unix::fs::FileTypeExt::is_socket(&m.file_type()) => {
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        _ => {}
    }
    let l = UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(l)
}

/// Serves the API on a bound Unix socket until `shutdown` completes.
///
/// # Errors
/// [`ServeError`].
pub async fn serve_unix(
    listener: UnixListener,
    shared: Arc<Shared>,
    auth: Auth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let r = router(Server::builder(), shared, auth).await?;
    r.serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}

/// Serves the API over TCP with TLS (PEM `cert` and `key`) until `shutdown` completes.
///
/// # Errors
/// [`ServeError`].
pub async fn serve_tls(
    listener: TcpListener,
    cert_pem: &[u8],
    key_pem: &[u8],
    shared: Arc<Shared>,
    auth: Auth,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let tls = ServerTlsConfig::new().identity(Identity::from_pem(cert_pem, key_pem));
    let builder = Server::builder()
        .tls_config(tls)
        .map_err(|e| ServeError::Tls(e.to_string()))?;
    let r = router(builder, shared, auth).await?;
    r.serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await?;
    Ok(())
}
