//! The probes themselves. Each returns `Err(description)` on failure; the caller applies the
//! timeout to the whole probe (connect, TLS, request and answer).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use super::{CheckKind, HttpCheck, Target, UdpCheck};

/// Largest HTTP response head read before giving up on finding the status line.
const MAX_STATUS_LINE: usize = 4096;
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

async fn http_get<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    addr: SocketAddr,
    h: &HttpCheck,
) -> Result<(), String> {
    let path = if h.path.starts_with('/') {
        h.path.clone()
    } else {
        format!("/{}", h.path)
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUser-Agent: fiberlb-health/1\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        host_header(addr, h)
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("http request to {addr}: {e}"))?;
    let mut buf = Vec::with_capacity(256);
    let mut chunk = [0u8; 512];
    let line_end = loop {
        if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
            break i;
        }
        if buf.len() >= MAX_STATUS_LINE {
            return Err(format!(
                "http {addr}: no status line in {MAX_STATUS_LINE} bytes"
            ));
        }
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| format!("http response from {addr}: {e}"))?;
        if n == 0 {
            return Err(format!(
                "http {addr}: connection closed before a status line"
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let status = parse_status_line(&buf[..line_end])
        .ok_or_else(|| format!("http {addr}: malformed status line"))?;
    let (lo, hi) = h.expected_status;
    if (lo..=hi).contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "http {addr}{path}: status {status}, expected {lo}-{hi}"
        ))
    }
}

/// `HTTP/1.x NNN reason` → `NNN`.
pub(super) fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let sp = rest.iter().position(|b| *b == b' ')?;
    let code = rest.get(sp + 1..sp + 4)?;
    if !code.iter().all(u8::is_ascii_digit) || rest.get(sp + 4).is_some_and(|b| *b != b' ') {
        return None;
    }
    std::str::from_utf8(code).ok()?.parse().ok()
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
    fn status_lines() {
        assert_eq!(parse_status_line(b"HTTP/1.1 200 OK"), Some(200));
        assert_eq!(
            parse_status_line(b"HTTP/1.0 503 Service Unavailable"),
            Some(503)
        );
        assert_eq!(parse_status_line(b"HTTP/1.1 204"), Some(204));
        assert_eq!(parse_status_line(b"HTTP/1.1 20"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 2000 x"), None);
        assert_eq!(parse_status_line(b"SSH-2.0-OpenSSH"), None);
        assert_eq!(parse_status_line(b"HTTP/1.1 abc"), None);
        assert_eq!(parse_status_line(b""), None);
    }

    #[test]
    fn insecure_config_builds() {
        let c = insecure_client_config().unwrap();
        assert!(!c.crypto_provider().cipher_suites.is_empty());
    }
}
