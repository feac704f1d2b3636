//! Raw FFI bindings to the system's DPDK (22.11 on Debian 12), for fiberlb's DPDK backend
//! (`fiberlb-dataplane`'s `dpdk` feature, `dataplane/src/nic/dpdk/`, which holds the safe
//! wrappers).
//!
//! Only what the backend uses is bound: bindgen output for EAL, mempool and ethdev setup
//! functions, and `fiberlb_*` functions of a small C shim (`shim/shim.c`) for DPDK's
//! static-inline fast path (`rte_eth_rx_burst`, `rte_eth_tx_burst`, `rte_pktmbuf_alloc`/`free`,
//! `mtod`, `append`, `rte_errno`) and for structs with bitfields and unions (port
//! configuration, link status), which stay on the C side.
//!
//! The crate is empty unless its `link` feature is on, so the workspace builds on machines
//! without DPDK installed.

#![cfg_attr(
    feature = "link",
    allow(non_camel_case_types, non_upper_case_globals, non_snake_case)
)]
#![cfg_attr(feature = "link", allow(missing_debug_implementations, clippy::all))]

#[cfg(feature = "link")]
#[allow(unsafe_op_in_unsafe_fn, clippy::undocumented_unsafe_blocks)]
mod bindings {
    include!(concat!(env!("OUT_DIR"), "/bindings.rs"));
}

#[cfg(feature = "link")]
pub use bindings::*;
