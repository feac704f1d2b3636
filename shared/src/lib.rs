//! Code both fiberlb processes must agree on.
//!
//! - [`model`]: the declarative service model (load balancers, listeners, pools, backends) with
//!   stable ids, as the data plane consumes it.
//! - [`services`]: the services YAML file (the same schema `fiberlbctl apply -f` takes), parsed
//!   and validated with line numbers in every error.
//! - [`maglev`]: the Maglev lookup-table builder (deterministic for a given backend set).
//! - [`flow_hash`]: the seeded flow hash, identical on every node and every restart.
//! - [`port_stats`]: the data plane's NIC port counters file (`<region>.ports.json`).
//! - [`slots`]: the data plane's slot → object map (`<region>.slots.json`).
//! - [`drop_reasons`]: the names of the data plane's drop reasons, in counter order.
//! - [`atomic_file`]: the one atomic file write (temporary file, fsync, rename, fsync dir).
//! - [`shm`]: the shared-memory region and the protocol spoken over it.
//!
//! No tokio here: this crate is linked into the data plane's workers (whose per-packet path
//! uses only the pure parts: model, flow hash, counters).

pub mod atomic_file;
pub mod drop_reasons;
pub mod flow_hash;
#[cfg(feature = "logging")]
pub mod logging;
pub mod maglev;
pub mod model;
pub mod port_stats;
pub mod services;
pub mod shm;
pub mod slots;
