//! The DPDK backend (cargo feature `dpdk`): safe wrappers over `fiberlb-dpdk-sys` — EAL,
//! mempools, mbufs, ports and queues. The worker's poll round over them is
//! `crate::worker::dpdk`.
//!
//! Ownership mirrors DPDK's own rules so misuse is a compile error rather than a crash:
//! - [`Eal`] is the process's one EAL (DPDK allows a single `rte_eal_init`); everything else
//!   holds an `Arc` to it, so `rte_eal_cleanup` runs only after the last pool and port are gone.
//! - [`MbufPool`] (one per NUMA socket) frees its mempool on drop; ports hold the pool their
//!   RX queues allocate from, so a pool outlives its ports.
//! - [`Port`] is stopped and closed when the last [`PortQueue`] handle is dropped.
//! - [`Mbuf`] and [`MbufArray`] are RAII: a buffer not handed to `tx_burst` returns to its pool
//!   on drop, so early returns cannot leak mbufs.
//!
//! Packets are presented to the pipeline through [`RxBurst`], a [`Burst`] whose [`PacketBuf`]
//! spans the mbuf's whole data room: the headroom (`rte_pktmbuf_headroom`) is the PacketBuf's
//! `start`, so encapsulation can `push_front`, and after each packet the mbuf's
//! `data_off`/`data_len`/`pkt_len` are set from the PacketBuf.
//!
//! Exception path: the host (`net_tap`) port beside a port is an ordinary [`Port`]; the
//! worker (`crate::worker::dpdk::DpdkWorker`) moves packets between the two.

use std::ffi::{CStr, CString};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use fiberlb_dpdk_sys as sys;

use crate::packet::{Burst, PacketBuf, BURST};

/// What went wrong setting up or driving DPDK. Messages say what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum DpdkError {
    #[error(
        "no hugepages available for DPDK ({detail}); reserve some \
         (`echo 256 > /proc/sys/vm/nr_hugepages`) or set `no_huge = true` in the dpdk section \
         of dataplane.toml (slower, for tests)"
    )]
    NoHugepages { detail: String },
    #[error(
        "the DPDK EAL was already initialised in this process; DPDK allows one EAL per process \
         (keep the first `Eal` and clone it)"
    )]
    EalAlreadyInitialised,
    #[error(
        "DPDK EAL initialisation failed: {msg} (rte_errno {errno}) with arguments {args:?}; \
         the usual cause is a --vdev or PCI device that does not exist or cannot attach \
         (wrong interface name, driver not bound to vfio-pci), see the EAL log lines above"
    )]
    EalInit {
        args: Vec<String>,
        errno: i32,
        msg: String,
    },
    #[error("invalid DPDK configuration: {0}")]
    InvalidConfig(String),
    #[error(
        "no DPDK port named {name:?}; ports available: {available:?} (check the vdevs and the \
         PCI allow-list of the dpdk section in dataplane.toml)"
    )]
    NoSuchPort {
        name: String,
        available: Vec<String>,
    },
    #[error(
        "DPDK port {port:?} ({driver}) has {max_rx} RX / {max_tx} TX queues but {want} are \
         needed (one per worker); configure fewer workers or a device with more queues \
         (DPDK 22.11's af_xdp PMD: one vdev per queue)"
    )]
    NotEnoughQueues {
        port: String,
        driver: String,
        max_rx: u16,
        max_tx: u16,
        want: u16,
    },
    #[error(
        "cannot create the mbuf pool of {mbufs} buffers on NUMA socket {socket}: {msg}; \
         reserve more hugepages / raise `memory_mb`, or use fewer mbufs"
    )]
    Mempool {
        socket: i32,
        mbufs: u32,
        msg: String,
    },
    #[error("DPDK port {port:?}: {op} failed: {msg} (error {errno})")]
    Port {
        port: String,
        op: &'static str,
        errno: i32,
        msg: String,
    },
    #[error("cannot register the thread with DPDK (too many lcores in use: raise RTE_MAX_LCORE or use fewer threads)")]
    ThreadRegister,
}

/// DPDK's text for an error number (its own codes and errno values).
fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated string
    // for any input; it is copied out before the next call on this thread.
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            return format!("error {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// The calling thread's `rte_errno`.
fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; no preconditions.
    unsafe { sys::fiberlb_rte_errno() }
}

mod eal;
mod mbuf;
mod port;
mod ring_port;

pub use eal::*;
pub use mbuf::*;
pub use port::*;
pub use ring_port::*;
