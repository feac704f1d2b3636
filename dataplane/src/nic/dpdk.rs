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

/// EAL settings (the dpdk section of dataplane.toml).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EalConfig {
    /// CPUs the EAL's main thread may run on. Workers are our own threads, pinned by the
    /// worker code and registered with DPDK; empty: every CPU the process may use.
    pub cores: Vec<usize>,
    /// Memory to reserve at start (`-m`, MiB); `None`: DPDK grows it on demand (with
    /// hugepages) or 256 MiB (`no_huge`).
    pub memory_mb: Option<u32>,
    /// Run on ordinary pages (`--no-huge`): slower, for tests and machines without hugepages.
    pub no_huge: bool,
    /// Virtual devices (`--vdev`), e.g. `net_af_xdp0,iface=eth0,start_queue=0,queue_count=1`.
    pub vdevs: Vec<String>,
    /// PCI devices DPDK may take (`-a`); empty: no PCI devices at all (`--no-pci`), so a test
    /// never grabs a real NIC.
    pub pci_allow: Vec<String>,
    /// Runtime file prefix; `None`: `fiberlb-<pid>`, unique per process as DPDK requires.
    pub file_prefix: Option<String>,
    /// `--in-memory`: no files in /dev/hugepages or /var/run/dpdk, so a killed process leaves
    /// nothing behind (fiberlb uses no DPDK multi-process features). Ignored with `no_huge`.
    pub in_memory: bool,
    /// EAL log level (`--log-level`, e.g. `notice`); `None`: DPDK's default.
    pub log_level: Option<String>,
    /// Anything else, passed through verbatim.
    pub extra_args: Vec<String>,
}

impl Default for EalConfig {
    fn default() -> Self {
        EalConfig {
            cores: Vec::new(),
            memory_mb: None,
            no_huge: false,
            vdevs: Vec::new(),
            pci_allow: Vec::new(),
            file_prefix: None,
            in_memory: true,
            log_level: None,
            extra_args: Vec::new(),
        }
    }
}

impl EalConfig {
    /// The `rte_eal_init` argument vector (argv[0] included).
    pub fn args(&self) -> Vec<String> {
        let mut a = vec!["fiberlb-dataplane".to_string()];
        let cores = if self.cores.is_empty() {
            crate::cpus::available_cores()
        } else {
            self.cores.clone()
        };
        if !cores.is_empty() {
            let list: Vec<String> = cores.iter().map(|c| c.to_string()).collect();
            // One lcore (0) for the main thread, allowed on all these CPUs: EAL pins the
            // thread calling rte_eal_init, and that thread is not a worker.
            a.push(format!("--lcores=0@({})", list.join(",")));
        }
        let prefix = self
            .file_prefix
            .clone()
            .unwrap_or_else(|| format!("fiberlb-{}", std::process::id()));
        a.push(format!("--file-prefix={prefix}"));
        // --no-huge implies legacy memory, which EAL refuses with --in-memory; it leaves no
        // hugepage files behind anyway.
        if self.in_memory && !self.no_huge {
            a.push("--in-memory".into());
        }
        if self.no_huge {
            a.push("--no-huge".into());
            a.push(format!("-m{}", self.memory_mb.unwrap_or(256)));
        } else if let Some(m) = self.memory_mb {
            a.push(format!("-m{m}"));
        }
        if self.pci_allow.is_empty() {
            a.push("--no-pci".into());
        }
        for p in &self.pci_allow {
            a.push(format!("-a{p}"));
        }
        for v in &self.vdevs {
            a.push(format!("--vdev={v}"));
        }
        if let Some(l) = &self.log_level {
            a.push(format!("--log-level={l}"));
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }
}

/// Checks `/proc/meminfo` text for enough free hugepages: at least one, and `want_mb` MiB
/// when given.
///
/// # Errors
/// [`DpdkError::NoHugepages`] naming what was found.
pub fn check_hugepages(meminfo: &str, want_mb: Option<u32>) -> Result<(), DpdkError> {
    let field = |name: &str| crate::meminfo::field(meminfo, name);
    let free = field("HugePages_Free").unwrap_or(0);
    let size_kb = field("Hugepagesize").unwrap_or(2048);
    let free_mb = free * size_kb / 1024;
    if free == 0 {
        return Err(DpdkError::NoHugepages {
            detail: format!(
                "HugePages_Free is 0 of {} pages",
                field("HugePages_Total").unwrap_or(0)
            ),
        });
    }
    if let Some(w) = want_mb {
        if free_mb < u64::from(w) {
            return Err(DpdkError::NoHugepages {
                detail: format!("{free_mb} MiB free in hugepages, memory_mb = {w} requested"),
            });
        }
    }
    Ok(())
}

/// 0: never initialised, 1: initialised (an [`Eal`] may be alive), 2: cleaned up.
static EAL_STATE: AtomicU8 = AtomicU8::new(0);

#[derive(Debug)]
struct EalInner {
    args: Vec<String>,
}

impl Drop for EalInner {
    fn drop(&mut self) {
        // SAFETY: the last reference to the EAL is going away: every pool and port holding
        // an Arc<EalInner> was dropped before, so no DPDK object is used after cleanup.
        unsafe {
            sys::rte_eal_cleanup();
        }
        EAL_STATE.store(2, Ordering::Release);
    }
}

/// The process's DPDK environment. Cheap to clone; cleaned up when the last clone, pool and
/// port are gone (after which DPDK cannot be initialised again in this process).
#[derive(Clone, Debug)]
pub struct Eal {
    inner: Arc<EalInner>,
}

impl Eal {
    /// Initialises the EAL.
    ///
    /// # Errors
    /// No hugepages (when `no_huge` is off), an EAL already initialised, or `rte_eal_init`
    /// failing (typically a vdev or PCI device that does not exist).
    pub fn init(cfg: &EalConfig) -> Result<Eal, DpdkError> {
        if !cfg.no_huge {
            let meminfo = crate::meminfo::read();
            check_hugepages(&meminfo, cfg.memory_mb)?;
        }
        if EAL_STATE
            .compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(DpdkError::EalAlreadyInitialised);
        }
        let args = cfg.args();
        let mut cargs = Vec::with_capacity(args.len());
        for a in &args {
            match CString::new(a.as_str()) {
                Ok(c) => cargs.push(c),
                Err(_) => {
                    EAL_STATE.store(0, Ordering::Release);
                    return Err(DpdkError::InvalidConfig(format!(
                        "EAL argument {a:?} contains a NUL byte"
                    )));
                }
            }
        }
        // EAL may keep pointers into argv and permutes it: give it a vector that lives for
        // the rest of the process (a few hundred bytes, once).
        let argv: &'static mut [*mut std::os::raw::c_char] = Box::leak(
            cargs
                .into_iter()
                .map(CString::into_raw)
                .collect::<Vec<_>>()
                .into_boxed_slice(),
        );
        let argc = argv.len() as i32;
        // SAFETY: argv holds `argc` valid NUL-terminated strings that are never freed; this is
        // the only rte_eal_init call of the process (EAL_STATE moved 0 -> 1 above).
        let rc = unsafe { sys::rte_eal_init(argc, argv.as_mut_ptr()) };
        if rc < 0 {
            let errno = rte_errno();
            // EAL cannot be retried after a failed init either.
            EAL_STATE.store(2, Ordering::Release);
            return Err(DpdkError::EalInit {
                args,
                errno,
                msg: strerror(errno),
            });
        }
        Ok(Eal {
            inner: Arc::new(EalInner { args }),
        })
    }

    /// The arguments the EAL was started with.
    pub fn args(&self) -> &[String] {
        &self.inner.args
    }

    /// NUMA sockets DPDK found (at least one).
    pub fn sockets(&self) -> Vec<i32> {
        // SAFETY: EAL is initialised (self exists); these only read EAL's topology.
        let n = unsafe { sys::rte_socket_count() };
        let mut v: Vec<i32> = (0..n)
            // SAFETY: idx < rte_socket_count().
            .map(|i| unsafe { sys::rte_socket_id_by_idx(i) })
            .filter(|s| *s >= 0)
            .collect();
        if v.is_empty() {
            v.push(0);
        }
        v
    }

    /// Names of every port DPDK probed (vdevs and allowed PCI devices).
    pub fn port_names(&self) -> Vec<String> {
        let mut ids = [0u16; 64];
        // SAFETY: the buffer holds 64 ids; the shim writes at most `max` of them.
        let n = unsafe { sys::fiberlb_eth_ports(ids.as_mut_ptr(), ids.len() as u16) };
        ids[..usize::from(n).min(ids.len())]
            .iter()
            .map(|&id| port_name(id))
            .collect()
    }

    /// One mbuf pool per NUMA socket DPDK found, `mbufs` buffers each.
    ///
    /// # Errors
    /// When a pool cannot be created (not enough memory).
    pub fn pools(&self, mbufs: u32) -> Result<Pools, DpdkError> {
        let pools = self
            .sockets()
            .into_iter()
            .map(|s| MbufPool::new(self, s, mbufs).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Pools(pools))
    }
}

fn port_name(id: u16) -> String {
    let mut buf = [0 as std::os::raw::c_char; 64];
    // SAFETY: buf is 64 bytes, RTE_ETH_NAME_MAX_LEN; DPDK writes a NUL-terminated name.
    let rc = unsafe { sys::rte_eth_dev_get_name_by_port(id, buf.as_mut_ptr()) };
    if rc != 0 {
        return format!("port{id}");
    }
    // SAFETY: NUL-terminated on success.
    unsafe { CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned()
}

/// Registers the calling thread with DPDK, so mempool per-lcore caches work for it. Idempotent.
///
/// # Errors
/// When DPDK has no lcore id left.
pub fn register_thread(_eal: &Eal) -> Result<u32, DpdkError> {
    // SAFETY: the EAL is initialised (an Eal exists); registering a thread has no other
    // precondition and is a no-op for an already registered one.
    let id = unsafe { sys::fiberlb_thread_register() };
    u32::try_from(id).map_err(|_| DpdkError::ThreadRegister)
}

/// A pool of packet buffers on one NUMA socket.
#[derive(Debug)]
pub struct MbufPool {
    ptr: NonNull<sys::rte_mempool>,
    socket: i32,
    size: u32,
    _eal: Eal,
}

// SAFETY: DPDK mempools are thread-safe (multi-producer/multi-consumer ring by default).
unsafe impl Send for MbufPool {}
// SAFETY: as above; all operations through &self are thread-safe DPDK calls.
unsafe impl Sync for MbufPool {}

impl MbufPool {
    /// A pool of `mbufs` buffers (2048 bytes of data after 128 of headroom) on `socket`.
    ///
    /// # Errors
    /// When DPDK cannot allocate it.
    pub fn new(eal: &Eal, socket: i32, mbufs: u32) -> Result<Self, DpdkError> {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let name = format!(
            "fiberlb_mb{}_{}",
            socket,
            SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let cname = CString::new(name).map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
        let cache = 256u32.min(mbufs / 8);
        // SAFETY: EAL is initialised; name is NUL-terminated and copied by DPDK.
        let p = unsafe {
            sys::rte_pktmbuf_pool_create(
                cname.as_ptr(),
                mbufs,
                cache,
                0,
                sys::fiberlb_mbuf_buf_size,
                socket,
            )
        };
        match NonNull::new(p) {
            Some(ptr) => Ok(MbufPool {
                ptr,
                socket,
                size: mbufs,
                _eal: eal.clone(),
            }),
            None => {
                let errno = rte_errno();
                Err(DpdkError::Mempool {
                    socket,
                    mbufs,
                    msg: strerror(errno),
                })
            }
        }
    }

    /// The NUMA socket.
    pub fn socket(&self) -> i32 {
        self.socket
    }

    /// Number of buffers.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// Buffers free (in the pool's ring and the per-lcore caches).
    pub fn available(&self) -> u32 {
        // SAFETY: the pool is valid while self lives.
        unsafe { sys::rte_mempool_avail_count(self.ptr.as_ptr()) }
    }

    /// Buffers in use (in NIC rings, in flight, held by the application).
    pub fn in_use(&self) -> u32 {
        // SAFETY: as above.
        unsafe { sys::rte_mempool_in_use_count(self.ptr.as_ptr()) }
    }

    /// A buffer, or `None` when the pool is empty.
    pub fn alloc(&self) -> Option<Mbuf> {
        // SAFETY: the pool is valid; the returned mbuf (if any) is exclusively ours.
        NonNull::new(unsafe { sys::fiberlb_pktmbuf_alloc(self.ptr.as_ptr()) }).map(Mbuf)
    }

    fn raw(&self) -> *mut sys::rte_mempool {
        self.ptr.as_ptr()
    }
}

impl Drop for MbufPool {
    fn drop(&mut self) {
        // SAFETY: no port references the pool any more (ports hold an Arc to it) and mbufs
        // still held elsewhere would be a bug in this module's ownership; DPDK only unmaps
        // memory, it does not touch outstanding buffers.
        unsafe { sys::rte_mempool_free(self.ptr.as_ptr()) }
    }
}

/// One pool per NUMA socket.
#[derive(Clone, Debug)]
pub struct Pools(Vec<Arc<MbufPool>>);

impl Pools {
    /// The pool of `socket`, or the first one (a device on "any" socket, `-1`).
    pub fn for_socket(&self, socket: i32) -> &Arc<MbufPool> {
        self.0
            .iter()
            .find(|p| p.socket == socket)
            .unwrap_or(&self.0[0])
    }

    /// Every pool.
    pub fn all(&self) -> &[Arc<MbufPool>] {
        &self.0
    }
}

/// One packet buffer; returns to its pool when dropped.
#[derive(Debug)]
pub struct Mbuf(NonNull<sys::rte_mbuf>);

// SAFETY: an mbuf is owned by exactly one Mbuf; freeing it from any thread is allowed.
unsafe impl Send for Mbuf {}

impl Mbuf {
    /// The packet bytes.
    pub fn data(&self) -> &[u8] {
        let v = view(self.0.as_ptr());
        // SAFETY: self owns the mbuf and is borrowed for the returned slice's lifetime.
        unsafe { view_data(&v) }
    }

    /// Appends `bytes` at the end of the packet.
    ///
    /// # Errors
    /// When the tailroom is too small (nothing changed).
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), DpdkError> {
        let Ok(n) = u16::try_from(bytes.len()) else {
            return Err(DpdkError::InvalidConfig("packet longer than 65535".into()));
        };
        // SAFETY: self owns the mbuf; append returns NULL or a pointer to `n` writable bytes
        // inside its data room.
        let p = unsafe { sys::fiberlb_pktmbuf_append(self.0.as_ptr(), n) };
        if p.is_null() {
            return Err(DpdkError::InvalidConfig(format!(
                "{} bytes do not fit the mbuf's tailroom",
                bytes.len()
            )));
        }
        // SAFETY: p points to n writable bytes that do not overlap `bytes`.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), p, bytes.len()) };
        Ok(())
    }

    /// Bytes in front of the packet.
    pub fn headroom(&self) -> usize {
        // SAFETY: self owns a valid mbuf.
        usize::from(unsafe { sys::fiberlb_pktmbuf_headroom(self.0.as_ptr()) })
    }

    /// Gives up ownership (e.g. to enqueue on a ring).
    pub fn into_raw(self) -> *mut sys::rte_mbuf {
        let p = self.0.as_ptr();
        std::mem::forget(self);
        p
    }

    /// Takes ownership of a raw mbuf.
    ///
    /// # Safety
    /// `p` must be a valid mbuf nobody else owns or frees.
    pub unsafe fn from_raw(p: NonNull<sys::rte_mbuf>) -> Mbuf {
        Mbuf(p)
    }
}

impl Drop for Mbuf {
    fn drop(&mut self) {
        // SAFETY: self is the only owner; the mbuf goes back to its pool.
        unsafe { sys::fiberlb_pktmbuf_free(self.0.as_ptr()) }
    }
}

#[inline]
fn view(m: *mut sys::rte_mbuf) -> sys::fiberlb_mbuf_view {
    let mut v = sys::fiberlb_mbuf_view::default();
    // SAFETY: m is a valid mbuf (callers own it); one view is written.
    unsafe { sys::fiberlb_mbuf_views(&m, 1, &mut v) };
    v
}

/// The packet bytes a view describes (empty for a chained or inconsistent mbuf).
///
/// # Safety
/// `v` must describe an mbuf that stays owned, and is not written, for `'a` (callers tie
/// `'a` to a borrow of the mbuf's owner).
#[inline]
unsafe fn view_data<'a>(v: &sys::fiberlb_mbuf_view) -> &'a [u8] {
    let (off, len) = (usize::from(v.data_off), usize::from(v.data_len));
    if v.multi_seg != 0 || v.buf.is_null() || off + len > usize::from(v.buf_len) {
        return &[];
    }
    // SAFETY: buf[..buf_len] is the mbuf's data room, owned by the caller's mbuf for the
    // lifetime of the borrow; off + len <= buf_len was checked.
    unsafe { std::slice::from_raw_parts(v.buf.add(off), len) }
}

/// Up to [`BURST`] owned mbufs; those still held are freed on drop.
#[derive(Debug)]
pub struct MbufArray {
    ptrs: [*mut sys::rte_mbuf; BURST],
    len: usize,
}

// SAFETY: the array exclusively owns its mbufs, see Mbuf.
unsafe impl Send for MbufArray {}

impl Default for MbufArray {
    fn default() -> Self {
        MbufArray {
            ptrs: [std::ptr::null_mut(); BURST],
            len: 0,
        }
    }
}

impl MbufArray {
    /// Number of mbufs held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when full.
    pub fn is_full(&self) -> bool {
        self.len == BURST
    }

    /// Adds an mbuf; gives it back when full.
    pub fn push(&mut self, m: Mbuf) -> Result<(), Mbuf> {
        if self.is_full() {
            return Err(m);
        }
        self.ptrs[self.len] = m.into_raw();
        self.len += 1;
        Ok(())
    }

    #[inline]
    pub(crate) fn push_raw(&mut self, p: *mut sys::rte_mbuf) {
        // Callers move at most BURST mbufs out of a BURST-sized array.
        debug_assert!(self.len < BURST);
        if self.len < BURST {
            self.ptrs[self.len] = p;
            self.len += 1;
        } else {
            // SAFETY: p is owned by the caller and would otherwise leak.
            unsafe { sys::fiberlb_pktmbuf_free(p) }
        }
    }

    /// Bytes of mbuf `i`.
    pub fn data(&self, i: usize) -> &[u8] {
        if i >= self.len {
            return &[];
        }
        let v = view(self.ptrs[i]);
        // SAFETY: the array owns mbuf i and is borrowed for the returned slice's lifetime.
        unsafe { view_data(&v) }
    }

    /// Drops the first `n` entries without freeing them (they were handed to DPDK).
    #[inline]
    fn forget_front(&mut self, n: usize) {
        let n = n.min(self.len);
        self.ptrs.copy_within(n..self.len, 0);
        self.len -= n;
    }

    /// Frees every mbuf held.
    pub fn clear(&mut self) {
        if self.len > 0 {
            // SAFETY: the array owns these `len` mbufs; they are freed once and forgotten.
            unsafe { sys::fiberlb_pktmbuf_free_bulk(self.ptrs.as_mut_ptr(), self.len as u32) };
            self.len = 0;
        }
    }

    /// Takes the mbufs out (for a ring).
    pub fn raw_mut(&mut self) -> (&mut [*mut sys::rte_mbuf; BURST], &mut usize) {
        (&mut self.ptrs, &mut self.len)
    }
}

impl Drop for MbufArray {
    fn drop(&mut self) {
        self.clear();
    }
}

/// A received burst the pipeline reads and rewrites in place (see the module docs).
#[derive(Debug)]
pub struct RxBurst {
    mbufs: MbufArray,
    views: [sys::fiberlb_mbuf_view; BURST],
}

impl Default for RxBurst {
    fn default() -> Self {
        RxBurst {
            mbufs: MbufArray::default(),
            views: [sys::fiberlb_mbuf_view::default(); BURST],
        }
    }
}

impl RxBurst {
    /// The mbufs.
    pub fn mbufs(&mut self) -> &mut MbufArray {
        &mut self.mbufs
    }

    /// Reads the mbufs' layout once for the whole burst (one call into C).
    #[inline]
    fn load_views(&mut self) {
        // SAFETY: ptrs[..len] are valid owned mbufs; views has room for BURST >= len entries.
        unsafe {
            sys::fiberlb_mbuf_views(
                self.mbufs.ptrs.as_ptr(),
                self.mbufs.len as u16,
                self.views.as_mut_ptr(),
            )
        }
    }
}

impl Burst for RxBurst {
    #[inline]
    fn len(&self) -> usize {
        self.mbufs.len
    }

    #[inline]
    fn data(&self, i: usize) -> &[u8] {
        assert!(i < self.mbufs.len, "packet index out of range");
        // SAFETY: the burst owns mbuf i and is borrowed for the returned slice's lifetime.
        unsafe { view_data(&self.views[i]) }
    }

    #[inline]
    fn with_buf<R>(&mut self, i: usize, f: impl FnOnce(&mut PacketBuf<'_>) -> R) -> R {
        assert!(i < self.mbufs.len, "packet index out of range");
        let v = self.views[i];
        let room = usize::from(v.buf_len);
        let (off, len) = (usize::from(v.data_off), usize::from(v.data_len));
        if v.multi_seg != 0 || v.buf.is_null() || off + len > room {
            return f(&mut PacketBuf::empty());
        }
        // SAFETY: buf[..buf_len] is the data room of mbuf i, which this burst owns and lends
        // mutably only here, one packet at a time (&mut self).
        let room_slice = unsafe { std::slice::from_raw_parts_mut(v.buf, room) };
        let Some(mut pkt) = PacketBuf::new(room_slice, off, len) else {
            unreachable!("off + len <= buf_len was checked")
        };
        let r = f(&mut pkt);
        let (start, new_len) = (pkt.start(), pkt.len());
        if start != off || new_len != len {
            // Both fit u16: start + len <= buf_len, a u16.
            let (s, l) = (start as u16, new_len as u16);
            // SAFETY: the mbuf is owned by this burst; the new range lies in its data room.
            unsafe { sys::fiberlb_mbuf_set(self.mbufs.ptrs[i], s, l) };
            self.views[i].data_off = s;
            self.views[i].data_len = l;
        }
        r
    }
}

/// Port settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortConfig {
    /// DPDK device name: a vdev name (`net_af_xdp0`) or a PCI address (`0000:01:00.0`).
    pub name: String,
    /// RX/TX queue pairs: one per worker. RSS spreads flows over them when more than one.
    pub queues: u16,
    pub rx_desc: u16,
    pub tx_desc: u16,
    /// Receive frames for any MAC (needed on a veth or a shared segment).
    pub promiscuous: bool,
    /// Spread flows over the queues with RSS when there are several (off for a `net_tap`
    /// host port: which queue the kernel's packets arrive on does not matter).
    pub rss: bool,
}

impl PortConfig {
    /// A port with `queues` queue pairs and default ring sizes.
    pub fn new(name: &str, queues: u16) -> Self {
        PortConfig {
            name: name.to_string(),
            queues,
            rx_desc: 1024,
            tx_desc: 1024,
            promiscuous: true,
            rss: true,
        }
    }
}

/// Link state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub up: bool,
    pub speed_mbps: u32,
    pub full_duplex: bool,
}

/// A port's hardware counters (`rte_eth_stats`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortStats {
    pub rx_packets: u64,
    pub tx_packets: u64,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Dropped by the NIC: RX ring full.
    pub rx_missed: u64,
    pub rx_errors: u64,
    pub tx_errors: u64,
    /// RX buffer allocation failures (mempool empty).
    pub rx_nombuf: u64,
}

#[derive(Debug)]
struct PortInner {
    id: u16,
    name: String,
    driver: String,
    queues: u16,
    rss: bool,
    pool: Arc<MbufPool>,
}

impl Drop for PortInner {
    fn drop(&mut self) {
        // SAFETY: no queue handle exists any more (they hold the Arc), so no thread polls the
        // port; stop then close is DPDK's teardown order. The pool outlives this (field).
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
    }
}

/// A started DPDK port. Hand its [`PortQueue`]s to workers; the port stops and closes when
/// the port and every queue handle are dropped.
#[derive(Clone, Debug)]
pub struct Port {
    inner: Arc<PortInner>,
}

impl Port {
    /// Finds, configures and starts a port: `queues` RX/TX queue pairs, RX buffers from the
    /// pool of the port's NUMA socket, RSS over IP/TCP/UDP when `queues > 1`.
    ///
    /// # Errors
    /// No port of that name, not enough queues, or a DPDK setup call failing.
    pub fn start(eal: &Eal, pools: &Pools, cfg: &PortConfig) -> Result<Port, DpdkError> {
        let cname =
            CString::new(cfg.name.as_str()).map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
        let mut id = 0u16;
        // SAFETY: name is NUL-terminated; id is a valid out-pointer.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(cname.as_ptr(), &mut id) };
        if rc != 0 {
            return Err(DpdkError::NoSuchPort {
                name: cfg.name.clone(),
                available: eal.port_names(),
            });
        }
        Self::start_id(pools, id, cfg)
    }

    fn start_id(pools: &Pools, id: u16, cfg: &PortConfig) -> Result<Port, DpdkError> {
        let err = |op: &'static str, rc: i32| {
            let errno = rc.abs();
            DpdkError::Port {
                port: cfg.name.clone(),
                op,
                errno,
                msg: strerror(errno),
            }
        };
        if cfg.queues == 0 {
            return Err(DpdkError::InvalidConfig(format!(
                "port {:?}: queues must be at least 1",
                cfg.name
            )));
        }
        let mut info = sys::fiberlb_port_info::default();
        // SAFETY: id is a probed port; info is a valid out-pointer.
        let rc = unsafe { sys::fiberlb_port_info(id, &mut info) };
        if rc != 0 {
            return Err(err("rte_eth_dev_info_get", rc));
        }
        // SAFETY: the shim NUL-terminates driver_name.
        let driver = unsafe { CStr::from_ptr(info.driver_name.as_ptr()) }
            .to_string_lossy()
            .into_owned();
        if info.max_rx_queues < cfg.queues || info.max_tx_queues < cfg.queues {
            return Err(DpdkError::NotEnoughQueues {
                port: cfg.name.clone(),
                driver,
                max_rx: info.max_rx_queues,
                max_tx: info.max_tx_queues,
                want: cfg.queues,
            });
        }
        let rss_hf = if cfg.queues > 1 && cfg.rss {
            let hf = sys::fiberlb_rss_default & info.flow_type_rss_offloads;
            if hf == 0 {
                log::warn!(
                    "port {:?} ({driver}) has no RSS; its {} queues receive what the device \
                     puts on them",
                    cfg.name,
                    cfg.queues
                );
            }
            hf
        } else {
            0
        };
        // SAFETY: id is a probed, stopped port.
        let rc = unsafe { sys::fiberlb_port_configure(id, cfg.queues, cfg.queues, rss_hf) };
        if rc != 0 {
            return Err(err("rte_eth_dev_configure", rc));
        }
        // SAFETY: id is a valid port.
        let socket = unsafe { sys::rte_eth_dev_socket_id(id) };
        let pool = pools.for_socket(socket).clone();
        let clamp = |want: u16, max: u16| if max == 0 { want } else { want.min(max) };
        let rx_desc = clamp(cfg.rx_desc, info.rx_desc_max);
        let tx_desc = clamp(cfg.tx_desc, info.tx_desc_max);
        let sock = if socket < 0 { pool.socket } else { socket } as u32;
        for q in 0..cfg.queues {
            // SAFETY: the port is configured with `queues` RX queues; NULL conf = driver
            // defaults; the pool outlives the port (PortInner holds it).
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(id, q, rx_desc, sock, std::ptr::null(), pool.raw())
            };
            if rc != 0 {
                return Err(err("rte_eth_rx_queue_setup", rc));
            }
            // SAFETY: as above, for TX.
            let rc = unsafe { sys::rte_eth_tx_queue_setup(id, q, tx_desc, sock, std::ptr::null()) };
            if rc != 0 {
                return Err(err("rte_eth_tx_queue_setup", rc));
            }
        }
        // SAFETY: every queue is set up.
        let rc = unsafe { sys::rte_eth_dev_start(id) };
        if rc != 0 {
            return Err(err("rte_eth_dev_start", rc));
        }
        if cfg.promiscuous {
            // Not every vdev supports it (ring, null): not fatal.
            // SAFETY: started port.
            let _ = unsafe { sys::rte_eth_promiscuous_enable(id) };
        }
        Ok(Port {
            inner: Arc::new(PortInner {
                id,
                name: cfg.name.clone(),
                driver,
                queues: cfg.queues,
                rss: rss_hf != 0,
                pool,
            }),
        })
    }

    /// DPDK's port id.
    pub fn id(&self) -> u16 {
        self.inner.id
    }

    /// Device name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Driver name (`net_af_xdp`, `net_ice`, ...).
    pub fn driver(&self) -> &str {
        &self.inner.driver
    }

    /// Queue pairs.
    pub fn queues(&self) -> u16 {
        self.inner.queues
    }

    /// Whether RSS spreads flows over the queues.
    pub fn rss(&self) -> bool {
        self.inner.rss
    }

    /// The pool RX buffers come from.
    pub fn pool(&self) -> &Arc<MbufPool> {
        &self.inner.pool
    }

    /// Queue `q`'s handle for one worker.
    ///
    /// # Errors
    /// When `q` is not a configured queue.
    pub fn queue(&self, q: u16) -> Result<PortQueue, DpdkError> {
        if q >= self.inner.queues {
            return Err(DpdkError::InvalidConfig(format!(
                "port {:?} has {} queues, no queue {q}",
                self.inner.name, self.inner.queues
            )));
        }
        Ok(PortQueue {
            port: self.inner.clone(),
            queue: q,
        })
    }

    /// The port's MAC address.
    pub fn mac(&self) -> [u8; 6] {
        let mut a = sys::rte_ether_addr::default();
        // SAFETY: valid port and out-pointer.
        unsafe { sys::rte_eth_macaddr_get(self.inner.id, &mut a) };
        a.addr_bytes
    }

    /// Sets the port's MAC address (a `net_tap` host port takes its physical port's, so the
    /// kernel accepts the frames addressed to it and answers ARP with it).
    ///
    /// # Errors
    /// When the driver refuses.
    pub fn set_mac(&self, mac: [u8; 6]) -> Result<(), DpdkError> {
        let mut a = sys::rte_ether_addr { addr_bytes: mac };
        // SAFETY: valid port; DPDK copies the address.
        let rc = unsafe { sys::rte_eth_dev_default_mac_addr_set(self.inner.id, &mut a) };
        if rc != 0 {
            return Err(DpdkError::Port {
                port: self.inner.name.clone(),
                op: "rte_eth_dev_default_mac_addr_set",
                errno: rc.abs(),
                msg: strerror(rc.abs()),
            });
        }
        Ok(())
    }

    /// Sets the link up (for a `net_tap` port: the kernel interface goes up).
    ///
    /// # Errors
    /// When the driver refuses.
    pub fn set_link_up(&self) -> Result<(), DpdkError> {
        // SAFETY: valid, started port.
        let rc = unsafe { sys::rte_eth_dev_set_link_up(self.inner.id) };
        if rc != 0 {
            return Err(DpdkError::Port {
                port: self.inner.name.clone(),
                op: "rte_eth_dev_set_link_up",
                errno: rc.abs(),
                msg: strerror(rc.abs()),
            });
        }
        Ok(())
    }

    /// Link state, without waiting.
    pub fn link(&self) -> LinkStatus {
        let mut l = sys::fiberlb_link::default();
        // SAFETY: valid port and out-pointer.
        let rc = unsafe { sys::fiberlb_link_get(self.inner.id, &mut l) };
        if rc != 0 {
            return LinkStatus::default();
        }
        LinkStatus {
            up: l.up != 0,
            speed_mbps: l.speed_mbps,
            full_duplex: l.full_duplex != 0,
        }
    }

    /// The port's counters.
    ///
    /// # Errors
    /// When the driver cannot report them.
    pub fn stats(&self) -> Result<PortStats, DpdkError> {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: valid port and out-pointer.
        let rc = unsafe { sys::rte_eth_stats_get(self.inner.id, &mut s) };
        if rc != 0 {
            return Err(DpdkError::Port {
                port: self.inner.name.clone(),
                op: "rte_eth_stats_get",
                errno: rc.abs(),
                msg: strerror(rc.abs()),
            });
        }
        Ok(PortStats {
            rx_packets: s.ipackets,
            tx_packets: s.opackets,
            rx_bytes: s.ibytes,
            tx_bytes: s.obytes,
            rx_missed: s.imissed,
            rx_errors: s.ierrors,
            tx_errors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        })
    }
}

/// One RX/TX queue pair of a port, owned by one worker (DPDK queues are not thread-safe).
#[derive(Debug)]
pub struct PortQueue {
    port: Arc<PortInner>,
    queue: u16,
}

impl PortQueue {
    /// The port's name.
    pub fn port_name(&self) -> &str {
        &self.port.name
    }

    /// The queue index.
    pub fn queue(&self) -> u16 {
        self.queue
    }

    /// Receives up to `max` packets into an empty burst; returns how many.
    #[inline]
    pub fn rx_burst(&mut self, burst: &mut RxBurst, max: usize) -> usize {
        burst.mbufs.clear();
        let max = max.min(BURST) as u16;
        // SAFETY: this handle is the queue's only user (&mut self, one handle per queue);
        // ptrs has room for BURST >= max mbufs, which become owned by the burst.
        let n = unsafe {
            sys::fiberlb_rx_burst(self.port.id, self.queue, burst.mbufs.ptrs.as_mut_ptr(), max)
        };
        burst.mbufs.len = usize::from(n);
        if n > 0 {
            burst.load_views();
        }
        usize::from(n)
    }

    /// Receives up to `max` packets into an empty array, for forwarding them unchanged
    /// (no views loaded); returns how many.
    #[inline]
    pub fn rx_into(&mut self, out: &mut MbufArray, max: usize) -> usize {
        out.clear();
        let max = max.min(BURST) as u16;
        // SAFETY: sole user of this RX queue (&mut self); ptrs has room for BURST >= max
        // mbufs, which become owned by the array.
        let n =
            unsafe { sys::fiberlb_rx_burst(self.port.id, self.queue, out.ptrs.as_mut_ptr(), max) };
        out.len = usize::from(n).min(BURST);
        out.len
    }

    /// Sends the array's mbufs; those sent leave the array, the rest stay (the caller frees
    /// or retries them). Returns how many were sent.
    #[inline]
    pub fn tx_burst(&mut self, pkts: &mut MbufArray) -> usize {
        if pkts.is_empty() {
            return 0;
        }
        // SAFETY: sole user of this TX queue; the first `sent` mbufs become DPDK's and are
        // forgotten by the array, the rest stay owned by it.
        let sent = unsafe {
            sys::fiberlb_tx_burst(
                self.port.id,
                self.queue,
                pkts.ptrs.as_mut_ptr(),
                pkts.len as u16,
            )
        };
        pkts.forget_front(usize::from(sent));
        usize::from(sent)
    }
}

/// A port over DPDK rings (`rte_eth_from_rings`): what the test sends into `rx_in` the port
/// receives, what the port sends lands in `tx_out`. One ring pair per queue. For counting
/// tests: unlike `net_ring` vdevs (which loop TX back to RX), nothing is seen twice.
#[derive(Debug)]
pub struct RingPort {
    pub port: Port,
    rx_in: Vec<NonNull<sys::rte_ring>>,
    tx_out: Vec<NonNull<sys::rte_ring>>,
}

// SAFETY: rings are created multi-producer/multi-consumer (flags 0), so any thread may use them.
unsafe impl Send for RingPort {}
// SAFETY: as above.
unsafe impl Sync for RingPort {}

impl RingPort {
    /// Creates the rings (`size` entries each, a power of two) and the port named `name`
    /// with `queues` queue pairs, then starts it with `start_queues` (to test refusals).
    ///
    /// # Errors
    /// Ring or port creation failing, or [`Port::start_id`]'s errors.
    pub fn new(
        _eal: &Eal,
        pools: &Pools,
        name: &str,
        queues: u16,
        start_queues: u16,
        size: u32,
    ) -> Result<RingPort, DpdkError> {
        let mk = |tag: &str, q: u16| -> Result<NonNull<sys::rte_ring>, DpdkError> {
            let n = CString::new(format!("{name}_{tag}{q}"))
                .map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
            // SAFETY: EAL is up; name is NUL-terminated and copied.
            let r = unsafe { sys::rte_ring_create(n.as_ptr(), size, 0, 0) };
            NonNull::new(r).ok_or_else(|| DpdkError::Port {
                port: name.to_string(),
                op: "rte_ring_create",
                errno: rte_errno(),
                msg: strerror(rte_errno()),
            })
        };
        let rx_in = (0..queues)
            .map(|q| mk("i", q))
            .collect::<Result<Vec<_>, _>>()?;
        let tx_out = (0..queues)
            .map(|q| mk("o", q))
            .collect::<Result<Vec<_>, _>>()?;
        let cname = CString::new(name).map_err(|e| DpdkError::InvalidConfig(e.to_string()))?;
        let mut rxr: Vec<*mut sys::rte_ring> = rx_in.iter().map(|r| r.as_ptr()).collect();
        let mut txr: Vec<*mut sys::rte_ring> = tx_out.iter().map(|r| r.as_ptr()).collect();
        // SAFETY: arrays of `queues` valid rings; the port keeps the ring pointers, and the
        // rings live as long as the RingPort (which owns the Port).
        let id = unsafe {
            sys::rte_eth_from_rings(
                cname.as_ptr(),
                rxr.as_mut_ptr(),
                u32::from(queues),
                txr.as_mut_ptr(),
                u32::from(queues),
                0,
            )
        };
        let id = u16::try_from(id).map_err(|_| DpdkError::Port {
            port: name.to_string(),
            op: "rte_eth_from_rings",
            errno: rte_errno(),
            msg: strerror(rte_errno()),
        })?;
        let mut cfg = PortConfig::new(name, start_queues);
        cfg.promiscuous = false;
        let port = Port::start_id(pools, id, &cfg)?;
        Ok(RingPort {
            port,
            rx_in,
            tx_out,
        })
    }

    /// Puts mbufs on queue `q`'s receive side; returns how many fit (the rest stay).
    pub fn inject(&self, q: usize, pkts: &mut MbufArray) -> usize {
        let Some(r) = self.rx_in.get(q) else { return 0 };
        // SAFETY: the ring is valid; enqueued mbufs become the ring's and are forgotten.
        let n = unsafe {
            sys::fiberlb_ring_enqueue_burst(r.as_ptr(), pkts.ptrs.as_mut_ptr(), pkts.len as u32)
        } as usize;
        pkts.forget_front(n);
        n
    }

    /// Takes up to a burst of what queue `q` transmitted.
    pub fn drain(&self, q: usize, out: &mut MbufArray) -> usize {
        out.clear();
        let Some(r) = self.tx_out.get(q) else {
            return 0;
        };
        // SAFETY: the ring is valid; dequeued mbufs become owned by `out`.
        let n = unsafe {
            sys::fiberlb_ring_dequeue_burst(r.as_ptr(), out.ptrs.as_mut_ptr(), BURST as u32)
        } as usize;
        out.len = n;
        n
    }

    /// Packets waiting on queue `q`'s receive side.
    pub fn pending_rx(&self, q: usize) -> usize {
        self.rx_in
            .get(q)
            // SAFETY: valid ring.
            .map(|r| unsafe { sys::fiberlb_ring_count(r.as_ptr()) } as usize)
            .unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eal_args_cover_the_config() {
        let cfg = EalConfig {
            cores: vec![0, 1],
            memory_mb: Some(128),
            no_huge: true,
            vdevs: vec!["net_null0".into()],
            pci_allow: vec![],
            file_prefix: Some("t1".into()),
            in_memory: true,
            log_level: Some("notice".into()),
            extra_args: vec!["--huge-unlink".into()],
        };
        assert_eq!(
            cfg.args(),
            [
                "fiberlb-dataplane",
                "--lcores=0@(0,1)",
                "--file-prefix=t1",
                "--no-huge",
                "-m128",
                "--no-pci",
                "--vdev=net_null0",
                "--log-level=notice",
                "--huge-unlink"
            ]
        );
        let pci = EalConfig {
            pci_allow: vec!["0000:01:00.0".into()],
            in_memory: false,
            ..EalConfig::default()
        };
        let a = pci.args();
        assert!(a.contains(&"-a0000:01:00.0".to_string()), "{a:?}");
        assert!(!a.contains(&"--no-pci".to_string()));
        assert!(a.contains(&format!("--file-prefix=fiberlb-{}", std::process::id())));
    }

    #[test]
    fn hugepage_check_names_what_is_missing() {
        let none =
            "HugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n";
        let e = check_hugepages(none, None).unwrap_err();
        assert!(matches!(e, DpdkError::NoHugepages { .. }));
        assert!(e.to_string().contains("nr_hugepages"), "{e}");
        let some =
            "HugePages_Total:      64\nHugePages_Free:       64\nHugepagesize:       2048 kB\n";
        check_hugepages(some, None).unwrap();
        check_hugepages(some, Some(128)).unwrap();
        let e = check_hugepages(some, Some(256)).unwrap_err();
        assert!(e.to_string().contains("128 MiB free"), "{e}");
        assert!(check_hugepages("", None).is_err());
    }
}
