//! `fiberlbctl backend register|keep-alive`: dynamic endpoints with leases.

use std::time::Duration;

use fiberlb_controlplane::api::client::Clients;
use fiberlb_controlplane::pb;

use super::{print_json, Failure, Output};

/// Parses `10s`, `1500ms`, `2m` or a number of seconds.
pub fn parse_ttl(s: &str) -> Result<u64, String> {
    let (num, mult) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1000)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60_000)
    } else {
        (s, 1000)
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: write a duration like 10s, 1500ms or 2m"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("{s:?} is too long"))
}

/// What `backend register` was asked.
#[derive(Debug)]
pub struct Register {
    pub pool: u32,
    pub address: String,
    pub port: u32,
    pub weight: Option<u32>,
    pub mac: String,
    pub ttl_ms: u64,
    pub keep_alive: bool,
}

async fn stop_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut t), Ok(mut i)) => {
            tokio::select! {
                _ = t.recv() => {}
                _ = i.recv() => {}
            }
        }
        _ => std::future::pending().await,
    }
}

/// Registers; with `keep_alive`, renews every third of the TTL until SIGINT/SIGTERM and then
/// deletes the backend (a graceful deregistration; a killed agent's backend expires instead).
pub async fn register(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    r: Register,
) -> Result<(), Failure> {
    let reply = c
        .backends
        .register(pb::RegisterBackendRequest {
            scope: scope.clone(),
            pool_id: r.pool,
            address: r.address,
            port: r.port,
            weight: r.weight,
            mac: r.mac,
            ttl_ms: r.ttl_ms,
        })
        .await?
        .into_inner();
    let id = reply.backend.as_ref().map_or(0, |b| b.id);
    if out == Output::Json {
        print_json(&reply)?;
    } else {
        out!(
            "backend {id} registered with lease {} (ttl {} ms, generation {})",
            reply.lease_id,
            reply.ttl_ms,
            reply.generation
        );
    }
    if !r.keep_alive {
        return Ok(());
    }
    let period = Duration::from_millis((reply.ttl_ms / 3).max(200));
    let stop = stop_signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            () = tokio::time::sleep(period) => {}
        }
        // A failed renewal is retried at the next period (fiberlbd or etcd may be restarting);
        // NOT_FOUND means the lease is gone: register again.
        match c
            .backends
            .keep_alive(pb::KeepAliveRequest {
                scope: scope.clone(),
                lease_id: reply.lease_id,
            })
            .await
        {
            Ok(_) => {}
            Err(s) if s.code() == tonic::Code::NotFound => {
                return Err(Failure(format!(
                    "lease {} expired before it was renewed: {}",
                    reply.lease_id,
                    s.message()
                )))
            }
            Err(s) => eprintln!("keep-alive failed (retrying): {}", s.message()),
        }
    }
    c.backends.delete(pb::DeleteRequest { scope, id }).await?;
    if out == Output::Table {
        out!("backend {id} deregistered");
    }
    Ok(())
}

/// Renews a lease once.
pub async fn keep_alive(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    lease: i64,
) -> Result<(), Failure> {
    let r = c
        .backends
        .keep_alive(pb::KeepAliveRequest {
            scope,
            lease_id: lease,
        })
        .await?
        .into_inner();
    if out == Output::Json {
        return print_json(&r);
    }
    out!("lease {lease} renewed: ttl {} ms", r.ttl_ms);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_ttl;

    #[test]
    fn ttl_forms() {
        assert_eq!(parse_ttl("10s"), Ok(10_000));
        assert_eq!(parse_ttl("1500ms"), Ok(1500));
        assert_eq!(parse_ttl("2m"), Ok(120_000));
        assert_eq!(parse_ttl("7"), Ok(7000));
        assert!(parse_ttl("ten").unwrap_err().contains("10s"));
    }
}
