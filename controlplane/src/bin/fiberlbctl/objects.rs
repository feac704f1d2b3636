//! `fiberlbctl lb|listener|pool|backend|hc ...`: the object commands.

use fiberlb_controlplane::api::client::Clients;
use fiberlb_controlplane::pb;

use super::*;

pub(crate) async fn lb_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: LbCmd,
) -> Result<(), Failure> {
    let one = |r: pb::LoadBalancerReply| {
        let l = r.load_balancer.clone().unwrap_or_default();
        show(out, &r, LB_H, vec![lb_row(&l)])
    };
    match cmd {
        LbCmd::List => {
            let r = c
                .load_balancers
                .list(pb::ListRequest {
                    scope,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(out, &r, LB_H, r.load_balancers.iter().map(lb_row).collect())
        }
        LbCmd::Get(Id { id }) => one(c
            .load_balancers
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        LbCmd::Create {
            name,
            vip,
            family,
            description,
        } => one(c
            .load_balancers
            .create(pb::CreateLoadBalancerRequest {
                scope,
                name,
                vip: vip.unwrap_or_default(),
                vip_family: family,
                description,
            })
            .await?
            .into_inner()),
        LbCmd::Update {
            id,
            name,
            description,
        } => one(c
            .load_balancers
            .update(pb::UpdateLoadBalancerRequest {
                scope,
                id,
                name,
                description,
            })
            .await?
            .into_inner()),
        LbCmd::Delete(Id { id }) => {
            let r = c
                .load_balancers
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "load balancer", id, r)
        }
    }
}

pub(crate) async fn listener_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: ListenerCmd,
) -> Result<(), Failure> {
    let one = |r: pb::ListenerReply| {
        let l = r.listener.clone().unwrap_or_default();
        show(out, &r, LISTENER_H, vec![listener_row(&l)])
    };
    match cmd {
        ListenerCmd::List { lb } => {
            let r = c
                .listeners
                .list(pb::ListRequest {
                    scope,
                    load_balancer_id: lb,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(
                out,
                &r,
                LISTENER_H,
                r.listeners.iter().map(listener_row).collect(),
            )
        }
        ListenerCmd::Get(Id { id }) => one(c
            .listeners
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        ListenerCmd::Create {
            lb,
            port,
            protocol,
            mode,
            encap,
            pool,
        } => one(c
            .listeners
            .create(pb::CreateListenerRequest {
                scope,
                load_balancer_id: lb,
                port,
                protocol,
                mode,
                encap,
                pool_id: pool,
            })
            .await?
            .into_inner()),
        ListenerCmd::Update {
            id,
            mode,
            encap,
            pool,
        } => one(c
            .listeners
            .update(pb::UpdateListenerRequest {
                scope,
                id,
                mode,
                encap,
                pool_id: pool,
            })
            .await?
            .into_inner()),
        ListenerCmd::Delete(Id { id }) => {
            let r = c
                .listeners
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "listener", id, r)
        }
    }
}

pub(crate) async fn pool_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: PoolCmd,
) -> Result<(), Failure> {
    let one = |r: pb::PoolReply| {
        let p = r.pool.clone().unwrap_or_default();
        show(out, &r, POOL_H, vec![pool_row(&p)])
    };
    match cmd {
        PoolCmd::List => {
            let r = c
                .pools
                .list(pb::ListRequest {
                    scope,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(out, &r, POOL_H, r.pools.iter().map(pool_row).collect())
        }
        PoolCmd::Get(Id { id }) => one(c
            .pools
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        PoolCmd::Create {
            name,
            algorithm,
            table_size,
            health_check,
        } => one(c
            .pools
            .create(pb::CreatePoolRequest {
                scope,
                name,
                algorithm,
                table_size,
                health_check_id: health_check,
            })
            .await?
            .into_inner()),
        PoolCmd::Update {
            id,
            name,
            algorithm,
            table_size,
            health_check,
        } => one(c
            .pools
            .update(pb::UpdatePoolRequest {
                scope,
                id,
                name,
                algorithm,
                table_size,
                health_check_id: health_check,
            })
            .await?
            .into_inner()),
        PoolCmd::Delete(Id { id }) => {
            let r = c
                .pools
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "pool", id, r)
        }
    }
}

pub(crate) async fn backend_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: BackendCmd,
) -> Result<(), Failure> {
    let one = |r: pb::BackendReply| {
        let b = r.backend.clone().unwrap_or_default();
        show(out, &r, BACKEND_H, vec![backend_row(&b)])
    };
    match cmd {
        BackendCmd::List { pool } => {
            let r = c
                .backends
                .list(pb::ListRequest {
                    scope,
                    pool_id: pool,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(
                out,
                &r,
                BACKEND_H,
                r.backends.iter().map(backend_row).collect(),
            )
        }
        BackendCmd::Get(Id { id }) => one(c
            .backends
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        BackendCmd::Create {
            pool,
            address,
            port,
            weight,
            mac,
            state,
        } => one(c
            .backends
            .create(pb::CreateBackendRequest {
                scope,
                pool_id: pool,
                address,
                port,
                weight,
                mac,
                admin_state: state,
            })
            .await?
            .into_inner()),
        BackendCmd::Update {
            id,
            weight,
            mac,
            state,
        } => one(c
            .backends
            .update(pb::UpdateBackendRequest {
                scope,
                id,
                weight,
                mac,
                admin_state: state,
            })
            .await?
            .into_inner()),
        BackendCmd::Register {
            pool,
            address,
            port,
            weight,
            mac,
            ttl,
            keep_alive,
        } => {
            register::register(
                c,
                scope,
                out,
                register::Register {
                    pool,
                    address,
                    port,
                    weight,
                    mac,
                    ttl_ms: ttl,
                    keep_alive,
                },
            )
            .await
        }
        BackendCmd::KeepAlive { lease } => register::keep_alive(c, scope, out, lease).await,
        BackendCmd::Delete(Id { id }) => {
            let r = c
                .backends
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "backend", id, r)
        }
    }
}

pub(crate) fn hc_message(id: u32, f: HcFields) -> Result<pb::HealthCheck, Failure> {
    let (min, max) = match f.expect_status.as_str() {
        "" => (0, 0),
        s => {
            let bad = || Failure(format!("--expect-status {s:?}: write it as 200-399 or 200"));
            let (a, b) = s.split_once('-').unwrap_or((s, s));
            (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            )
        }
    };
    Ok(pb::HealthCheck {
        id,
        name: f.name,
        kind: f.kind,
        interval_ms: f.interval_ms,
        timeout_ms: f.timeout_ms,
        rise: f.rise,
        fall: f.fall,
        http_path: f.http_path,
        expected_status_min: min,
        expected_status_max: max,
        udp_payload: f.udp_payload.into_bytes(),
        udp_expected_reply: f.udp_expect.into_bytes(),
        ..Default::default()
    })
}

pub(crate) async fn hc_cmd(
    c: &mut Clients,
    scope: Option<pb::Scope>,
    out: Output,
    cmd: HcCmd,
) -> Result<(), Failure> {
    let one = |r: pb::HealthCheckReply| {
        let h = r.health_check.clone().unwrap_or_default();
        show(out, &r, HC_H, vec![hc_row(&h)])
    };
    match cmd {
        HcCmd::List => {
            let r = c
                .health_checks
                .list(pb::ListRequest {
                    scope,
                    ..Default::default()
                })
                .await?
                .into_inner();
            show(out, &r, HC_H, r.health_checks.iter().map(hc_row).collect())
        }
        HcCmd::Get(Id { id }) => one(c
            .health_checks
            .get(pb::GetRequest { scope, id })
            .await?
            .into_inner()),
        HcCmd::Create(f) => one(c
            .health_checks
            .create(pb::CreateHealthCheckRequest {
                scope,
                health_check: Some(hc_message(0, f)?),
            })
            .await?
            .into_inner()),
        HcCmd::Update { id, fields } => one(c
            .health_checks
            .update(pb::UpdateHealthCheckRequest {
                scope,
                health_check: Some(hc_message(id, fields)?),
            })
            .await?
            .into_inner()),
        HcCmd::Delete(Id { id }) => {
            let r = c
                .health_checks
                .delete(pb::DeleteRequest { scope, id })
                .await?
                .into_inner();
            deleted(out, "health check", id, r)
        }
    }
}
