//! The probes themselves. Each returns `Err(description)` on failure; the caller applies the
//! timeout to the whole probe (connect, TLS, request and answer).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UdpSocket};

use super::{CheckKind, HttpCheck, Target, UdpCheck};

/// Largest UDP reply read.
const MAX_UDP_REPLY: usize = 2048;

/// Runs one probe of `target` within its timeout.
pub(super) async fn probe(
    target: &Target,
    tls: &Result<Arc<rustls::ClientConfig>, String>,
) -> Result<(), String> {
    let addr = SocketAddr::new(target.address, target.port);
    let fut = async {
        match &target.kind {
            CheckKind::Tcp => TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| format!("tcp connect to {addr}: {e}")),
            CheckKind::Http(h) => {
                let stream = connect(addr).await?;
                http_get(stream, addr, h).await
            }
            CheckKind::Https(h) => {
                let stream = connect(addr).await?;
                let name = server_name(target.address, h);
                let connector = tokio_rustls::TlsConnector::from(tls.clone()?);
                let stream = connector
                    .connect(name, stream)
                    .await
                    .map_err(|e| format!("tls handshake with {addr}: {e}"))?;
                http_get(stream, addr, h).await
            }
            CheckKind::Udp(u) => udp(addr, u).await,
        }
    };
    match tokio::time::timeout(target.timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "no answer from {addr} within {} ms",
            target.timeout.as_millis()
        )),
    }
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("tcp connect to {addr}: {e}"))?;
    let _ = s.set_nodelay(true);
    Ok(s)
}

fn host_header(addr: SocketAddr, h: &HttpCheck) -> String {
    match &h.host {
        Some(host) => host.clone(),
        None => match addr.ip() {
            IpAddr::V4(a) => format!("{a}:{}", addr.port()),
            IpAddr::V6(a) => format!("[{a}]:{}", addr.port()),
        },
    }
}

fn server_name(address: IpAddr, h: &HttpCheck) -> ServerName<'static> {
    // SNI carries a DNS name only; an IP address (or a Host header with a port) falls back to
    // the address, which rustls sends no SNI for.
    h.host
        .as_deref()
        .and_then(|host| ServerName::try_from(host.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(address.into()))
}

/// One HTTP/1.1 GET through hyper's client connection; the status must lie in the expected
/// range (the body is not read: `Connection: close`, and the probe is dropped after the head).
async fn http_get<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(
    stream: S,
    addr: SocketAddr,
    h: &HttpCheck,
) -> Result<(), String> {
    use hyper::header::{HeaderValue, ACCEPT, CONNECTION, HOST, USER_AGENT};
    let path = if h.path.starts_with('/') {
        h.path.clone()
    } else {
        format!("/{}", h.path)
    };
    // Title-case header names (`Host:`), as curl and most clients send them: some backends'
    // hand-written health endpoints compare them case-sensitively.
    let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
        .title_case_headers(true)
        .handshake::<_, Empty<Bytes>>(hyper_util::rt::TokioIo::new(stream))
        .await
        .map_err(|e| format!("http {addr}: {e}"))?;
    let host = HeaderValue::from_str(&host_header(addr, h))
        .map_err(|_| format!("http {addr}: the host name is not a valid Host header"))?;
    let mut req = hyper::Request::new(Empty::<Bytes>::new());
    *req.uri_mut() = path
        .parse()
        .map_err(|_| format!("http {addr}: path {path:?} is not a valid request target"))?;
    let headers = req.headers_mut();
    headers.insert(HOST, host);
    headers.insert(USER_AGENT, HeaderValue::from_static("fiberlb-health/1"));
    headers.insert(ACCEPT, HeaderValue::from_static("*/*"));
    headers.insert(CONNECTION, HeaderValue::from_static("close"));
    // The connection future drives the I/O. With `Connection: close` it may finish as soon as
    // it has handed the response over: then the response is already waiting for the sender.
    let mut conn = std::pin::pin!(conn);
    let mut response = std::pin::pin!(sender.send_request(req));
    let resp = tokio::select! {
        biased;
        r = &mut response => r,
        r = &mut conn => match r {
            Ok(()) => response.await,
            Err(e) => return Err(format!("http {addr}: {e}")),
        },
    }
    .map_err(|e| format!("http {addr}: {e}"))?;
    let status = resp.status().as_u16();
    let (lo, hi) = h.expected_status;
    if (lo..=hi).contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "http {addr}{path}: status {status}, expected {lo}-{hi}"
        ))
    }
}

async fn udp(addr: SocketAddr, u: &UdpCheck) -> Result<(), String> {
    let local: SocketAddr = if addr.is_ipv4() {
        (IpAddr::from([0u8; 4]), 0).into()
    } else {
        (IpAddr::from([0u16; 8]), 0).into()
    };
    let sock = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("udp bind: {e}"))?;
    // Connected: the kernel filters replies from other sources and reports ICMP unreachable
    // as an error on recv.
    sock.connect(addr)
        .await
        .map_err(|e| format!("udp connect to {addr}: {e}"))?;
    sock.send(&u.payload)
        .await
        .map_err(|e| format!("udp send to {addr}: {e}"))?;
    let mut buf = [0u8; MAX_UDP_REPLY];
    let n = sock
        .recv(&mut buf)
        .await
        .map_err(|e| format!("udp reply from {addr}: {e}"))?;
    if buf[..n].starts_with(&u.expected_reply) {
        Ok(())
    } else {
        Err(format!(
            "udp {addr}: reply of {n} bytes does not start with the expected {} bytes",
            u.expected_reply.len()
        ))
    }
}

/// A TLS client that accepts any server certificate but still checks the handshake
/// signature against it (so the TLS session itself is sound).
///
/// # Errors
/// Only if rustls refused its own ring provider's default protocol versions.
pub(super) fn insecure_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(AcceptAnyCert(provider.clone()));
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| {
            Arc::new(
                b.dangerous()
                    .with_custom_certificate_verifier(verifier)
                    .with_no_client_auth(),
            )
        })
        .map_err(|e| format!("cannot build the TLS client for health checks: {e}"))
}

#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insecure_config_builds() {
        let c = insecure_client_config().unwrap();
        assert!(!c.crypto_provider().cipher_suites.is_empty());
    }
}

#[cfg(test)]
mod http_probe_tests {
    /// A server that answers and closes at once (`Connection: close`): the probe still reads
    /// the status that arrived with the close.
    #[tokio::test]
    async fn status_of_a_server_that_closes_after_answering() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            let (mut c, _) = l.accept().await.unwrap();
            let mut b = [0u8; 1024];
            let _ = c.read(&mut b).await;
            c.write_all(b"HTTP/1.1 200 X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
        });
        let s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let h = super::HttpCheck {
            path: "/healthz".into(),
            host: None,
            expected_status: (200, 399),
        };
        let r = super::http_get(s, addr, &h).await;
        assert!(r.is_ok(), "{r:?}");
    }
}
