//! fiberlb's control plane: the object model and its store, VIP allocation, the gRPC API that
//! `fiberlbd` serves and `fiberlbctl` calls.
#![forbid(unsafe_code)]

pub mod api;
pub mod bgp;
pub mod config;
pub mod health;
pub mod metrics;
pub mod model;
pub mod program;
pub mod store;
pub mod vip;

pub mod pb {
    //! Generated gRPC types and services (`proto/fiberlb/v1/fiberlb.proto`).
    #![allow(
        missing_docs,
        missing_debug_implementations,
        clippy::all,
        clippy::pedantic
    )]
    tonic::include_proto!("fiberlb.v1");
    /// Encoded file descriptor set, for gRPC reflection.
    pub const FILE_DESCRIPTOR_SET: &[u8] =
        tonic::include_file_descriptor_set!("fiberlb_descriptor");
}
