//! The gRPC handlers. Each write runs as one [`Store::mutate`](crate::store::Store::mutate)
//! (so it is durable before the reply) on a blocking thread; reads use the in-memory snapshot.
//! Objects of another org/project are invisible: asking for one by id gives NOT_FOUND.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use fiberlb_shared::flow_hash::table_index;
use fiberlb_shared::maglev::{self, MaglevBackend, EMPTY};
use fiberlb_shared::model::{AdminState, Algorithm, BackendId, Mode, Usability};
use fiberlb_shared::shm::counters::drop_reason_label;
use tonic::{Request, Response, Status};

use super::auth::Auth;
use super::{convert, Shared};
use crate::model::{self as m, Error, Scope};
use crate::pb;
use crate::pb::backend_service_server::BackendService;
use crate::pb::dataplane_service_server::DataplaneService;
use crate::pb::health_check_service_server::HealthCheckService;
use crate::pb::listener_service_server::ListenerService;
use crate::pb::load_balancer_service_server::LoadBalancerService;
use crate::pb::pool_service_server::PoolService;
use crate::store::{Kind, Txn};
use crate::vip::Family;

mod backend;
mod dataplane;
mod health_check;
mod listener;
mod load_balancer;
mod pool;

/// Implements every fiberlb service over one [`Shared`] with one listener's [`Auth`].
#[derive(Clone, Debug)]
pub struct Api {
    shared: Arc<Shared>,
    auth: Auth,
}

impl Api {
    /// Handlers over `shared`, with `auth`'s access rules.
    pub fn new(shared: Arc<Shared>, auth: Auth) -> Self {
        Api { shared, auth }
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub(super) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// Commits `f` durably (on a blocking thread); the store announces the new generation.
    async fn write<T: Send + 'static>(
        &self,
        f: impl FnMut(&mut Txn) -> Result<T, Error> + Send + 'static,
    ) -> Result<(T, u64), Status> {
        let store = self.shared.store.clone();
        let (value, generation) = tokio::task::spawn_blocking(move || store.mutate(f))
            .await
            .map_err(|e| Status::internal(format!("store task failed: {e}")))??;
        Ok((value, generation))
    }

    /// A backend as the API shows it: health and next-hop state included.
    fn backend_pb(&self, b: &m::Backend, healthy: bool) -> pb::Backend {
        let mut o = convert::backend(b, healthy);
        o.next_hop = convert::next_hop_state(b, self.shared.dataplane.status().as_ref());
        o
    }

    fn healthy(&self, id: u32) -> bool {
        self.shared
            .health
            .health()
            .get(&BackendId(id))
            .copied()
            .unwrap_or(true)
    }
}

/// `10.0.0.1:80` / `[fd00::1]:80`.
fn fmt_endpoint(a: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(a, port).to_string()
}

/// Objects that belong to a scope.
trait Scoped {
    fn scope(&self) -> &Scope;
}

macro_rules! scoped {
    ($($t:ty),*) => {$(
        impl Scoped for $t {
            fn scope(&self) -> &Scope {
                &self.scope
            }
        }
    )*};
}
scoped!(
    m::LoadBalancer,
    m::Listener,
    m::Pool,
    m::Backend,
    m::HealthCheck
);

/// The object `id` of `map` if it belongs to `scope`; NOT_FOUND otherwise (also for another
/// tenant's object, so ids of other tenants reveal nothing).
fn owned<'a, T: Scoped>(
    map: &'a BTreeMap<u32, T>,
    id: u32,
    scope: &Scope,
    kind: &'static str,
) -> Result<&'a T, Error> {
    match map.get(&id) {
        Some(o) if o.scope() == scope => Ok(o),
        _ => Err(Error::not_found(kind, id)),
    }
}

fn owned_mut<'a, T: Scoped>(
    map: &'a mut BTreeMap<u32, T>,
    id: u32,
    scope: &Scope,
    kind: &'static str,
) -> Result<&'a mut T, Error> {
    match map.get_mut(&id) {
        Some(o) if o.scope() == scope => Ok(o),
        _ => Err(Error::not_found(kind, id)),
    }
}

fn check_description(d: &str) -> Result<(), Error> {
    if d.len() > m::MAX_DESCRIPTION_LEN {
        return Err(Error::invalid(
            "description",
            format!("longer than {} bytes", m::MAX_DESCRIPTION_LEN),
        ));
    }
    Ok(())
}

fn ids(list: impl Iterator<Item = u32>) -> String {
    list.map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
