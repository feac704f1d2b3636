//! The gRPC API: `fiberlb.v1.{LoadBalancer,Listener,Pool,Backend,HealthCheck}Service` and
//! `DataplaneService`, with access control by bearer token and the status-code mapping.
//!
//! - [`apply`]: `fiberlbctl apply -f`: plan and carry out the changes a services file implies.
//! - [`auth`]: who the caller is and which org/project a request acts in.
//! - [`convert`]: model objects to and from their protobuf messages.
//! - [`service`]: the handlers.
//! - [`server`]: serving on a Unix socket (0600) or TCP with TLS, plus gRPC health and
//!   reflection.
//! - [`client`]: connecting to fiberlbd (fiberlbctl and the tests).

pub mod apply;
pub mod auth;
pub mod client;
pub mod convert;
pub mod export;
pub mod node;
pub mod server;
pub mod service;

use std::collections::HashMap;
use std::sync::Arc;

use fiberlb_shared::flow_hash::FlowHasher;
use fiberlb_shared::model::{BackendId, TunnelSettings};

use crate::config::HealthDefaults;
use crate::model;
use crate::store::{Store, StoreError};
use crate::vip::VipAllocator;

/// Current health-check results (the health module implements it; absent backends are healthy).
pub trait HealthSource: Send + Sync {
    /// Health of every backend that has a result.
    fn health(&self) -> HashMap<BackendId, bool>;
}

/// No health checks: every backend healthy.
#[derive(Debug, Default)]
pub struct NoHealth;

impl HealthSource for NoHealth {
    fn health(&self) -> HashMap<BackendId, bool> {
        HashMap::new()
    }
}

/// What the attached data plane reports.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneStatus {
    /// The data plane's instance id (new at each start).
    pub instance_id: u128,
    /// Generation it forwards by.
    pub applied_generation: u64,
    /// Milliseconds since its last heartbeat.
    pub heartbeat_age_ms: u64,
    /// The store generation whose configuration it holds, when known (the programmer's view).
    pub synced_store_generation: Option<u64>,
    /// Backend addresses without a configured MAC whose next hop is not resolved (no new
    /// flows go to them unless the data plane has a backend gateway MAC).
    pub unresolved_backends: Vec<std::net::IpAddr>,
}

/// Counters of one listener or backend, by id.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ObjectCounters {
    pub packets: u64,
    pub bytes: u64,
    pub new_flows: u64,
    /// Live flows (a gauge, summed over workers).
    pub active_flows: u64,
}

/// One data plane worker's counters.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerCounters {
    pub worker: u32,
    pub rx_packets: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub tx_bytes: u64,
    pub to_host: u64,
    pub drops: u64,
    /// Indexed like [`DataplaneCounters::drops_by_reason`].
    pub drops_by_reason: Vec<u64>,
}

/// Data plane counters, keyed by the control plane's ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneCounters {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Packets handed to the host's kernel (the data plane's exception path).
    pub to_host: u64,
    pub drops: u64,
    /// Drops by reason, indexed like the data plane's `DropReason` (names in
    /// [`fiberlb_shared::shm::counters::DROP_REASON_NAMES`]).
    pub drops_by_reason: Vec<u64>,
    pub listeners: HashMap<u32, ObjectCounters>,
    pub backends: HashMap<u32, ObjectCounters>,
    /// Per worker, in worker order.
    pub workers: Vec<WorkerCounters>,
    /// The data plane's NIC ports from its `<region>.ports.json` (empty when it has none for
    /// this instance, or when it is stale).
    pub ports: Vec<PortCounters>,
    /// Milliseconds since the data plane published them (`None`: no file of this instance).
    pub ports_age_ms: Option<u64>,
    /// The file is older than [`fiberlb_shared::port_stats::STALE_AFTER_MS`]: the data plane
    /// stopped publishing; `ports` is empty rather than old numbers.
    pub ports_stale: bool,
}

/// A data plane port's link state and counters, as the data plane publishes them.
pub use fiberlb_shared::port_stats::PortCounters;

/// The data plane as the API sees it (the shm programmer implements it).
pub trait DataplaneView: Send + Sync {
    /// `None` when no data plane is attached.
    fn status(&self) -> Option<DataplaneStatus>;
    /// `None` when no data plane is attached.
    fn counters(&self) -> Option<DataplaneCounters>;
}

/// fiberlbd without a data plane.
#[derive(Debug, Default)]
pub struct NoDataplane;

impl DataplaneView for NoDataplane {
    fn status(&self) -> Option<DataplaneStatus> {
        None
    }
    fn counters(&self) -> Option<DataplaneCounters> {
        None
    }
}

/// Everything the handlers share.
pub struct Shared {
    pub store: Arc<Store>,
    pub vips: VipAllocator,
    pub hasher: FlowHasher,
    pub tunnel: TunnelSettings,
    pub health_defaults: HealthDefaults,
    pub health: Arc<dyn HealthSource>,
    pub dataplane: Arc<dyn DataplaneView>,
    /// Drain mark and BGP announcement status.
    pub node: Arc<crate::bgp::Node>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("store", &self.store)
            .field("vips", &self.vips)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Handlers over `store` with no health checks and no data plane; `committed` starts at
    /// the store's generation.
    pub fn new(store: Arc<Store>, vips: VipAllocator) -> Self {
        Shared {
            store,
            vips,
            hasher: FlowHasher::default(),
            tunnel: TunnelSettings::default(),
            health_defaults: HealthDefaults::default(),
            health: Arc::new(NoHealth),
            dataplane: Arc::new(NoDataplane),
            node: Arc::new(crate::bgp::Node::new(
                None,
                std::path::Path::new("/nonexistent/store"),
            )),
        }
    }
}

/// A validator for [`Store::with_validator`]: the compiled state must pass the data plane's
/// own checks with the node's tunnel settings, so the data plane never rejects what the API
/// accepted.
pub fn dataplane_validator(tunnel: TunnelSettings) -> crate::store::Validator {
    Box::new(move |state| {
        let mut set = model::compile(state, &HashMap::new());
        set.tunnel = tunnel.clone();
        set.validate().map_err(|e| {
            use fiberlb_shared::model::ModelError as M;
            match e {
                M::DuplicateListener { .. } => model::Error::AlreadyExists(e.to_string()),
                M::MissingTunnelSource { .. } => model::Error::FailedPrecondition(format!(
                    "{e}; set [tunnel] source_v4/source_v6 in the fiberlbd config"
                )),
                _ => model::Error::FailedPrecondition(e.to_string()),
            }
        })
    })
}

/// The gRPC status for a model error.
pub fn status_of(e: &model::Error) -> tonic::Status {
    use tonic::Status;
    match e {
        model::Error::InvalidArgument { .. } => Status::invalid_argument(e.to_string()),
        model::Error::NotFound { .. } => Status::not_found(e.to_string()),
        model::Error::AlreadyExists(_) => Status::already_exists(e.to_string()),
        model::Error::FailedPrecondition(_) => Status::failed_precondition(e.to_string()),
    }
}

impl From<model::Error> for tonic::Status {
    fn from(e: model::Error) -> Self {
        status_of(&e)
    }
}

impl From<StoreError> for tonic::Status {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Model(m) => status_of(&m),
            other => tonic::Status::unavailable(format!("the change was not saved: {other}")),
        }
    }
}
