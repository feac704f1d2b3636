//! Reading the scope's current objects and carrying out a plan through the API.

use super::*;

/// Reads the scope's objects.
///
/// # Errors
/// The first failing List call.
pub async fn current(c: &mut Clients, scope: &Option<pb::Scope>) -> Result<Current, tonic::Status> {
    let req = || pb::ListRequest {
        scope: scope.clone(),
        ..Default::default()
    };
    Ok(Current {
        health_checks: c
            .health_checks
            .list(req())
            .await?
            .into_inner()
            .health_checks,
        load_balancers: c
            .load_balancers
            .list(req())
            .await?
            .into_inner()
            .load_balancers,
        listeners: c.listeners.list(req()).await?.into_inner().listeners,
        pools: c.pools.list(req()).await?.into_inner().pools,
        backends: c.backends.list(req()).await?.into_inner().backends,
    })
}

/// Carries out `changes` in order, calling `done` after each. Stops at the first refusal.
///
/// # Errors
/// [`ApplyError::Api`] naming the change and the server's answer.
pub async fn execute(
    c: &mut Clients,
    scope: &Option<pb::Scope>,
    current: &Current,
    changes: &[Change],
    mut done: impl FnMut(&Change),
) -> Result<(), ApplyError> {
    let mut lb_ids: HashMap<String, u32> = current
        .load_balancers
        .iter()
        .map(|l| (l.name.clone(), l.id))
        .collect();
    let mut pool_ids: HashMap<String, u32> = current
        .pools
        .iter()
        .map(|p| (p.name.clone(), p.id))
        .collect();
    let mut hc_ids: HashMap<String, u32> = current
        .health_checks
        .iter()
        .map(|h| (h.name.clone(), h.id))
        .collect();
    let sc = || scope.clone();
    for ch in changes {
        let api = |status: tonic::Status| ApplyError::Api {
            change: ch.to_string(),
            status: Box::new(status),
        };
        let pool_id = |name: &str| pool_ids.get(name).copied().unwrap_or(0);
        let hc_id = |name: &Option<String>| {
            name.as_ref()
                .and_then(|n| hc_ids.get(n).copied())
                .unwrap_or(0)
        };
        match ch {
            Change::CreateHealthCheck { spec } => {
                let h = c
                    .health_checks
                    .create(pb::CreateHealthCheckRequest {
                        scope: sc(),
                        health_check: Some(hc_message(spec, 0)),
                    })
                    .await
                    .map_err(api)?
                    .into_inner();
                hc_ids.insert(spec.name.clone(), h.health_check.map_or(0, |h| h.id));
            }
            Change::UpdateHealthCheck { id, spec, .. } => {
                c.health_checks
                    .update(pb::UpdateHealthCheckRequest {
                        scope: sc(),
                        health_check: Some(hc_message(spec, *id)),
                    })
                    .await
                    .map_err(api)?;
            }
            Change::DeleteHealthCheck { id, .. } => {
                c.health_checks
                    .delete(pb::DeleteRequest {
                        scope: sc(),
                        id: *id,
                    })
                    .await
                    .map_err(api)?;
            }
            Change::DeleteListener { id, .. } => {
                c.listeners
                    .delete(pb::DeleteRequest {
                        scope: sc(),
                        id: *id,
                    })
                    .await
                    .map_err(api)?;
            }
            Change::CreatePool {
                name,
                algorithm,
                table_size,
                health_check,
            } => {
                let p = c
                    .pools
                    .create(pb::CreatePoolRequest {
                        scope: sc(),
                        name: name.clone(),
                        algorithm: algorithm.clone(),
                        table_size: *table_size,
                        health_check_id: hc_id(health_check),
                    })
                    .await
                    .map_err(api)?
                    .into_inner();
                pool_ids.insert(name.clone(), p.pool.map_or(0, |p| p.id));
            }
            Change::UpdatePool {
                id,
                algorithm,
                table_size,
                health_check,
                ..
            } => {
                c.pools
                    .update(pb::UpdatePoolRequest {
                        scope: sc(),
                        id: *id,
                        algorithm: Some(algorithm.clone()),
                        table_size: Some(*table_size),
                        health_check_id: Some(hc_id(health_check)),
                        ..Default::default()
                    })
                    .await
                    .map_err(api)?;
            }
            Change::DeleteBackend { id, .. } => {
                c.backends
                    .delete(pb::DeleteRequest {
                        scope: sc(),
                        id: *id,
                    })
                    .await
                    .map_err(api)?;
            }
            Change::CreateBackend {
                pool,
                address,
                port,
                weight,
                mac,
                admin,
            } => {
                c.backends
                    .create(pb::CreateBackendRequest {
                        scope: sc(),
                        pool_id: pool_id(pool),
                        address: address.to_string(),
                        port: u32::from(*port),
                        weight: Some(*weight),
                        mac: mac.clone(),
                        admin_state: admin.clone(),
                    })
                    .await
                    .map_err(api)?;
            }
            Change::UpdateBackend {
                id,
                weight,
                mac,
                admin,
                ..
            } => {
                c.backends
                    .update(pb::UpdateBackendRequest {
                        scope: sc(),
                        id: *id,
                        weight: Some(*weight),
                        mac: Some(mac.clone()),
                        admin_state: Some(admin.clone()),
                    })
                    .await
                    .map_err(api)?;
            }
            Change::CreateLb { name, vip } => {
                let lb = c
                    .load_balancers
                    .create(pb::CreateLoadBalancerRequest {
                        scope: sc(),
                        name: name.clone(),
                        vip: vip.to_string(),
                        ..Default::default()
                    })
                    .await
                    .map_err(api)?
                    .into_inner();
                lb_ids.insert(name.clone(), lb.load_balancer.map_or(0, |l| l.id));
            }
            Change::CreateListener {
                lb,
                port,
                protocol,
                mode,
                encap,
                pool,
            } => {
                c.listeners
                    .create(pb::CreateListenerRequest {
                        scope: sc(),
                        load_balancer_id: lb_ids.get(lb).copied().unwrap_or(0),
                        port: u32::from(*port),
                        protocol: protocol.clone(),
                        mode: mode.clone(),
                        encap: if mode == "tunnel" {
                            encap.clone()
                        } else {
                            String::new()
                        },
                        pool_id: pool_id(pool),
                    })
                    .await
                    .map_err(api)?;
            }
            Change::UpdateListener {
                id,
                mode,
                encap,
                pool,
                ..
            } => {
                c.listeners
                    .update(pb::UpdateListenerRequest {
                        scope: sc(),
                        id: *id,
                        mode: Some(mode.clone()),
                        encap: Some(encap.clone()),
                        pool_id: Some(pool_id(pool)),
                    })
                    .await
                    .map_err(api)?;
            }
            Change::DeleteLb { id, .. } => {
                c.load_balancers
                    .delete(pb::DeleteRequest {
                        scope: sc(),
                        id: *id,
                    })
                    .await
                    .map_err(api)?;
            }
            Change::DeletePool { id, .. } => {
                c.pools
                    .delete(pb::DeleteRequest {
                        scope: sc(),
                        id: *id,
                    })
                    .await
                    .map_err(api)?;
            }
        }
        done(ch);
    }
    Ok(())
}
