//! AF_XDP packet I/O: the default backend.
//!
//! Three pieces, each in its own file:
//! - [`XdpProgram`] (`afxdp/program.rs`): the XDP program (`bpf/fiberlb_xdp.c`, compiled by
//!   `build.rs`), loaded with aya and attached to one interface. It redirects only fiberlb's
//!   traffic — VIP destinations, replies from NAT backends, ICMP errors about those flows and
//!   non-first fragments to a VIP address — to the AF_XDP socket of the receiving queue, and
//!   passes everything else to the kernel. Its maps are kept in step with the configuration by
//!   [`XdpProgram::set_vips`] and [`XdpProgram::set_nat_returns`]; packets to the host's own
//!   addresses (`afxdp/local_addrs.rs`, re-read by [`LocalAddrRefresh`]) always go to the
//!   kernel unless a VIP listener matches, so the host can talk to nat backends itself.
//! - [`Umem`] (`afxdp/umem.rs`): one packet memory area per worker (hugepages when the system
//!   has them) cut into fixed-size chunks, with the worker's stack of free chunks.
//! - [`XskPort`] (`afxdp/port.rs`): one AF_XDP socket per (interface, queue), with its own
//!   fill/completion rings; all ports of a worker share the worker's [`Umem`]
//!   (`XDP_SHARED_UMEM`), so a frame received on one port can be transmitted on another.
//!
//! Sockets and programs act in the network namespace of the thread that creates them.
//!
//! Logging goes through the `log` crate (`warn!` for the generic-mode fallback, `info!` for
//! the UMEM's page kind and the bind mode actually used).

mod local_addrs;
mod port;
mod program;
mod sys;
mod umem;

pub use local_addrs::{read_local_addrs, LocalAddrChanges, LocalAddrRefresh, REFRESH_INTERVAL};
pub use port::{BindMode, XskConfig, XskPort, XskStats, XskStatsReader};
pub use program::{AttachedMode, XdpCounters, XdpMode, XdpProgram};
pub use umem::{HugePages, Umem, UmemConfig, XDP_PACKET_HEADROOM};

use std::io;

/// What went wrong setting up AF_XDP. Slow path only: nothing here is built per packet.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    #[error(
        "network interface {name:?} does not exist in this network namespace \
         (check `ip link`, and that the process runs in the interface's namespace)"
    )]
    InterfaceNotFound { name: String },

    #[error(
        "queue {queue} is out of range for interface {ifname}: it has {count} receive queue(s) \
         (see `ethtool -l {ifname}`; use queues 0..{count})"
    )]
    QueueOutOfRange {
        ifname: String,
        queue: u32,
        count: u32,
    },

    #[error(
        "permission denied while {action}: AF_XDP sockets and XDP programs need root, or the \
         capabilities CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON (CAP_SYS_ADMIN on \
         kernels before 5.8)"
    )]
    PermissionDenied { action: &'static str },

    #[error(
        "locked-memory limit reached while {action}: raise RLIMIT_MEMLOCK (`ulimit -l unlimited`, \
         systemd `LimitMEMLOCK=infinity`) or grant CAP_IPC_LOCK"
    )]
    Memlock { action: &'static str },

    #[error(
        "cannot allocate a UMEM of {bytes} bytes ({frames} frames of {chunk_size} bytes) \
         {pages}: {cause}; lower the frame count or free memory"
    )]
    UmemAlloc {
        bytes: usize,
        frames: u32,
        chunk_size: u32,
        pages: &'static str,
        cause: io::Error,
    },

    #[error("invalid AF_XDP configuration: {0}")]
    InvalidConfig(String),

    #[error(
        "cannot attach the XDP program to {ifname} in {tried} mode: {cause} \
         (is another XDP program attached? `ip link show {ifname}`; this kernel allows one \
         program per interface)"
    )]
    Attach {
        ifname: String,
        tried: &'static str,
        cause: String,
    },

    #[error("cannot load the XDP program into the kernel: {0}")]
    Load(String),

    #[error("BPF map {map}: {cause}")]
    Map { map: &'static str, cause: String },

    #[error(
        "zero-copy AF_XDP is not supported by {ifname} queue {queue} ({cause}); use bind mode \
         `auto` or `copy`"
    )]
    ZeroCopyUnsupported {
        ifname: String,
        queue: u32,
        cause: io::Error,
    },

    #[error(
        "queue {queue} of {ifname} already has an AF_XDP socket (another fiberlb, or a DPDK \
         af_xdp port?); one socket per (interface, queue)"
    )]
    QueueBusy { ifname: String, queue: u32 },

    #[error("AF_XDP socket on {ifname} queue {queue}: {op} failed: {cause}")]
    Socket {
        ifname: String,
        queue: u32,
        op: &'static str,
        cause: io::Error,
    },
}

/// `e: cause: cause's cause: ...` — aya's errors keep the useful part (errno, verifier log) in
/// their sources.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_interface_is_a_clear_error_for_sockets() {
        let mut umem = match Umem::new(&UmemConfig {
            frame_count: 64,
            hugepages: HugePages::Never,
            ..UmemConfig::default()
        }) {
            Ok(u) => u,
            Err(AfXdpError::PermissionDenied { .. }) => return, // not root: no AF_XDP socket
            Err(e) => panic!("a small UMEM in ordinary pages: {e}"),
        };
        let err = XskPort::open(
            &mut umem,
            &XskConfig {
                ifname: "fxs-nonexist0".into(),
                ..XskConfig::default()
            },
        )
        .expect_err("no such interface");
        assert!(
            matches!(&err, AfXdpError::InterfaceNotFound { name } if name == "fxs-nonexist0"),
            "{err:?}"
        );
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn missing_interface_is_a_clear_error_for_the_program() {
        let err = XdpProgram::load_and_attach("fxs-nonexist0", XdpMode::Auto)
            .expect_err("no such interface");
        assert!(
            matches!(&err, AfXdpError::InterfaceNotFound { .. }),
            "{err:?}"
        );
    }

    #[derive(Debug, thiserror::Error)]
    #[error("`bpf_link_create` failed")]
    struct Outer(#[source] io::Error);

    #[test]
    fn error_chain_joins_sources() {
        let e = Outer(io::Error::from_raw_os_error(libc::EPERM));
        assert_eq!(
            error_chain(&e),
            format!(
                "`bpf_link_create` failed: {}",
                io::Error::from_raw_os_error(libc::EPERM)
            )
        );
        // A source already quoted by its parent is not repeated.
        let dup = io::Error::other(Outer(io::Error::from_raw_os_error(libc::EINVAL)));
        assert_eq!(
            error_chain(&dup).matches("failed").count(),
            1,
            "{}",
            error_chain(&dup)
        );
    }
}
