//! Packet I/O backends.
//!
//! Pure I/O: AF_XDP sockets and XDP programs, DPDK ports and mbufs, a memory port and pcap
//! files. Every backend hands the worker frames that live in a buffer area it owns (an AF_XDP
//! UMEM, DPDK mbufs, or plain memory), described by a [`crate::packet::Desc`]; the packet
//! types live in [`crate::packet`] so the pipeline never depends on this module. Nothing here
//! imports the pipeline, the workers or the control thread (`scripts/check-module-cycles.py`).

pub mod afxdp;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod host_addrs;
pub mod memory;
