//! Connecting to fiberlbd: a Unix socket path, or `https://host:port` with an optional CA, and
//! an optional bearer token added to every call.

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Uri};
use tonic::{Request, Status};

use crate::pb::backend_service_client::BackendServiceClient;
use crate::pb::dataplane_service_client::DataplaneServiceClient;
use crate::pb::health_check_service_client::HealthCheckServiceClient;
use crate::pb::listener_service_client::ListenerServiceClient;
use crate::pb::load_balancer_service_client::LoadBalancerServiceClient;
use crate::pb::node_service_client::NodeServiceClient;
use crate::pb::pool_service_client::PoolServiceClient;

/// Why fiberlbd could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot connect to {target}: {detail}; is fiberlbd running? (start it with `fiberlbd --config controlplane.toml`, or pass --server)")]
    Unreachable { target: String, detail: String },
    #[error("the token is not a valid header value; check --token / FIBERLB_TOKEN")]
    BadToken,
    #[error("cannot read CA certificate {path}: {source}")]
    Ca {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Adds `authorization: Bearer <token>` when a token is set.
#[derive(Clone, Debug, Default)]
pub struct TokenInterceptor(Option<MetadataValue<Ascii>>);

impl tonic::service::Interceptor for TokenInterceptor {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Svc = InterceptedService<Channel, TokenInterceptor>;

/// Clients of every service over one connection.
#[derive(Clone, Debug)]
pub struct Clients {
    pub load_balancers: LoadBalancerServiceClient<Svc>,
    pub listeners: ListenerServiceClient<Svc>,
    pub pools: PoolServiceClient<Svc>,
    pub backends: BackendServiceClient<Svc>,
    pub health_checks: HealthCheckServiceClient<Svc>,
    pub dataplane: DataplaneServiceClient<Svc>,
    pub node: NodeServiceClient<Svc>,
}

/// Connects to `server`: a Unix socket path (`/run/fiberlb/fiberlbd.sock`, or `unix:PATH`), or
/// an `https://host:port` URL (TLS, verified against `ca` when given, else the system roots).
///
/// # Errors
/// [`ConnectError`] with a message saying what to check.
pub async fn connect(
    server: &str,
    token: Option<&str>,
    ca: Option<&std::path::Path>,
) -> Result<Clients, ConnectError> {
    let unreachable = |detail: String| ConnectError::Unreachable {
        target: server.to_string(),
        detail,
    };
    let channel = if server.starts_with("https://") || server.starts_with("http://") {
        let mut ep =
            Endpoint::from_shared(server.to_string()).map_err(|e| unreachable(e.to_string()))?;
        if server.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_enabled_roots();
            if let Some(ca) = ca {
                let pem = std::fs::read(ca).map_err(|source| ConnectError::Ca {
                    path: ca.to_path_buf(),
                    source,
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            ep = ep.tls_config(tls).map_err(|e| unreachable(e.to_string()))?;
        }
        ep.connect()
            .await
            .map_err(|e| unreachable(error_chain(&e)))?
    } else {
        let path = PathBuf::from(server.strip_prefix("unix:").unwrap_or(server));
        // The URI is required by the API but unused: the connector dials the socket.
        Endpoint::from_static("http://fiberlbd.local")
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .map_err(|e| unreachable(error_chain(&e)))?
    };
    let token = match token {
        Some(t) => Some(
            format!("Bearer {t}")
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| ConnectError::BadToken)?,
        ),
        None => None,
    };
    let i = TokenInterceptor(token);
    Ok(Clients {
        load_balancers: LoadBalancerServiceClient::with_interceptor(channel.clone(), i.clone()),
        listeners: ListenerServiceClient::with_interceptor(channel.clone(), i.clone()),
        pools: PoolServiceClient::with_interceptor(channel.clone(), i.clone()),
        backends: BackendServiceClient::with_interceptor(channel.clone(), i.clone()),
        health_checks: HealthCheckServiceClient::with_interceptor(channel.clone(), i.clone()),
        dataplane: DataplaneServiceClient::with_interceptor(channel.clone(), i.clone()),
        node: NodeServiceClient::with_interceptor(channel, i),
    })
}

/// The error and its causes on one line (tonic's top-level message is just "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        // hyper and tonic often repeat their cause's message.
        if !s.ends_with(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
