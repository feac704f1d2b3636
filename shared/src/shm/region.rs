//! The shared-memory region: a file in hugetlbfs (when mounted) or `/dev/shm`, mode 0600,
//! created by the data plane and mapped by the control plane.
//!
//! Layout: a [`Header`] at offset 0 (its own 4 KiB page), the command ring (control plane →
//! data plane), the reply ring (data plane → control plane), then the counters area, each
//! starting on a 4 KiB boundary; the file size is rounded up to the page (or huge page) size.
//! Every header field the other side reads is an atomic; the region holds offsets, never
//! pointers.
//!
//! Creation never modifies a file another process may have mapped: the data plane builds a new
//! file beside the path, writes the header and publishes the magic last (`Release`), then renames
//! it over the path. An attacher that loads the magic with `Acquire` sees a complete header, and
//! a control plane still mapping the previous file sees its data plane's heartbeat stop and
//! re-attaches (see [`Region::is_replaced`]).
//!
//! One data plane and one control plane per region: each takes an open-file-description lock
//! (`F_OFD_SETLK`) on its own byte of the file — byte 0 for the data plane, byte 1 for the
//! control plane — held until the region is dropped, so a second instance gets a clear error and
//! a crashed one leaves no stale lock.

use std::fs::File;
use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::channel::{Receiver, Sender};
use super::counters::{CountersLayout, CountersReader, WorkerCounters};
use super::ring::{
    capacity_ok, CachePadded, Consumer, Producer, RingControl, RingError, RingStorage, Slot,
    SLOT_SIZE,
};

/// First word of the region, published last.
pub const REGION_MAGIC: u64 = u64::from_le_bytes(*b"FIBERLB\0");
/// Version of this layout; an attacher refuses any other. 2: four words per listener/backend
/// counter slot (`active_flows` added) and the `to_host` global (see [`super::counters`]).
pub const LAYOUT_VERSION: u32 = 2;
/// Default ring capacity (slots).
pub const DEFAULT_RING_CAPACITY: u64 = 1024;
/// Areas start on this boundary.
const PAGE: u64 = 4096;
/// `statfs` magic of hugetlbfs.
const HUGETLBFS_MAGIC: i64 = 0x9584_58f6;
/// Largest region accepted on attach (sanity bound before mapping).
const MAX_REGION_SIZE: u64 = 1 << 30;

/// The region's header. `repr(C)`, all atomics: both processes read and write it concurrently.
#[derive(Debug)]
#[repr(C)]
pub struct Header {
    magic: AtomicU64,
    layout_version: AtomicU32,
    header_size: AtomicU32,
    total_size: AtomicU64,
    instance_id: [AtomicU64; 2],
    data_plane_pid: AtomicU32,
    slot_size: AtomicU32,
    applied_generation: AtomicU64,
    cmd_ring_offset: AtomicU64,
    cmd_ring_capacity: AtomicU64,
    reply_ring_offset: AtomicU64,
    reply_ring_capacity: AtomicU64,
    counters_offset: AtomicU64,
    counters_workers: AtomicU32,
    counters_listeners: AtomicU32,
    counters_backends: AtomicU32,
    /// Bumped by the control plane after it sends commands, then woken with `FUTEX_WAKE`: the
    /// data plane's control thread sleeps on it (`FUTEX_WAIT` with a timeout) instead of
    /// polling. Was a reserved zero word: a writer that never rings it is still served, at
    /// the wait's timeout.
    command_doorbell: AtomicU32,
    data_plane_heartbeat: CachePadded<AtomicU64>,
    control_plane_heartbeat: CachePadded<AtomicU64>,
}

impl Header {
    /// The data plane's random instance id, new at every start.
    pub fn instance_id(&self) -> u128 {
        (u128::from(self.instance_id[0].load(Ordering::Relaxed)) << 64)
            | u128::from(self.instance_id[1].load(Ordering::Relaxed))
    }

    /// Pid of the data plane that created the region.
    pub fn data_plane_pid(&self) -> u32 {
        self.data_plane_pid.load(Ordering::Relaxed)
    }

    /// Generation of the configuration the data plane forwards by.
    pub fn applied_generation(&self) -> u64 {
        self.applied_generation.load(Ordering::Acquire)
    }

    /// Set by the data plane's control thread after publishing a snapshot.
    pub fn set_applied_generation(&self, generation: u64) {
        self.applied_generation.store(generation, Ordering::Release);
    }

    /// The command doorbell's value: read it before looking at the command ring, then
    /// [`Region::wait_for_commands`] with it (a ring after the look changes it, so the wait
    /// returns at once: no wake-up is lost).
    pub fn command_doorbell(&self) -> u32 {
        self.command_doorbell.load(Ordering::Acquire)
    }

    /// Data plane heartbeat: [`monotonic_ns`] at its last beat (0: never).
    pub fn data_plane_heartbeat(&self) -> u64 {
        self.data_plane_heartbeat.0.load(Ordering::Relaxed)
    }

    /// Control plane heartbeat: [`monotonic_ns`] at its last beat (0: never).
    pub fn control_plane_heartbeat(&self) -> u64 {
        self.control_plane_heartbeat.0.load(Ordering::Relaxed)
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: the same clock in every process of the machine, which is
/// what heartbeats are compared against.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// Which process holds the region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Creator: consumes commands, produces replies, writes counters.
    DataPlane,
    /// Attacher: produces commands, consumes replies, reads counters.
    ControlPlane,
    /// A reader of the header and counters only (`fiberlb-dataplane stats`, metrics): takes no
    /// lock, so it works beside an attached control plane; never beats, never owns a ring.
    Observer,
}

/// Sizes of a new region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RegionConfig {
    /// Slots in each ring (power of two, 2..=65536).
    pub ring_capacity: u64,
    pub counters: CountersLayout,
}

impl Default for RegionConfig {
    fn default() -> Self {
        RegionConfig {
            ring_capacity: DEFAULT_RING_CAPACITY,
            counters: CountersLayout::default(),
        }
    }
}

/// What went wrong creating or attaching a region.
#[derive(Debug, thiserror::Error)]
pub enum RegionError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("another data plane (pid {pid}) already owns {path}; stop it first or give this one another region path")]
    AlreadyRunning { path: PathBuf, pid: u32 },
    #[error("another control plane is attached to {path}; stop it first")]
    ControlPlaneAttached { path: PathBuf },
    #[error("{path} is {len} bytes, too small for a region header: not created yet, or truncated; wait for the data plane or restart it")]
    Truncated { path: PathBuf, len: u64 },
    #[error("{path} has magic {found:#018x}, not a fiberlb region (or not initialised yet)")]
    BadMagic { path: PathBuf, found: u64 },
    #[error("{path} has layout version {found}, this build needs {LAYOUT_VERSION}: run matching data and control planes")]
    BadVersion { path: PathBuf, found: u32 },
    #[error("{path}: header says {header} bytes, the file has {file}: the region is corrupt; restart the data plane")]
    SizeMismatch {
        path: PathBuf,
        header: u64,
        file: u64,
    },
    #[error("{path}: bad layout: {reason}; restart the data plane")]
    BadLayout { path: PathBuf, reason: String },
    #[error(
        "{path} has mode {mode:o}; the region must be owner-only (0600) and owned by this user"
    )]
    BadPermissions { path: PathBuf, mode: u32 },
    #[error("bad region configuration: {0}")]
    Config(String),
    #[error("the ring endpoints of this region were already taken")]
    EndpointsTaken,
    #[error(transparent)]
    Ring(#[from] RingError),
}

/// Offsets and sizes of everything in the region, computed by the creator and re-checked by the
/// attacher.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    cmd_ring: u64,
    reply_ring: u64,
    ring_capacity: u64,
    counters: u64,
    counters_layout: CountersLayout,
    /// Bytes actually used (before rounding the file size).
    used: u64,
}

fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

fn ring_bytes(capacity: u64) -> u64 {
    size_of::<RingControl>() as u64 + capacity * SLOT_SIZE as u64
}

impl Layout {
    fn new(config: &RegionConfig) -> Result<Self, String> {
        if !capacity_ok(config.ring_capacity) {
            return Err(format!(
                "ring capacity {} must be a power of two in 2..=65536",
                config.ring_capacity
            ));
        }
        if !config.counters.is_valid() {
            return Err(format!(
                "counters layout {:?} out of range",
                config.counters
            ));
        }
        let cmd_ring = PAGE;
        let reply_ring = round_up(cmd_ring + ring_bytes(config.ring_capacity), PAGE);
        let counters = round_up(reply_ring + ring_bytes(config.ring_capacity), PAGE);
        Ok(Layout {
            cmd_ring,
            reply_ring,
            ring_capacity: config.ring_capacity,
            counters,
            counters_layout: config.counters,
            used: counters + config.counters.size_bytes(),
        })
    }
}

/// The mapping, unmapped and closed (dropping the lock) when the last handle goes.
#[derive(Debug)]
struct Mapping {
    ptr: *mut u8,
    len: usize,
    file: File,
}

// SAFETY: the mapping is shared memory accessed only through atomics and the ring protocol;
// the raw pointer is just its address, valid until `Drop`, which needs the last `Arc`.
unsafe impl Send for Mapping {}
// SAFETY: as above; `&Mapping` only hands out shared references to atomics and ring slots.
unsafe impl Sync for Mapping {}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and no reference into the mapping
        // outlives the last `Arc<Mapping>` (every handle holds one).
        unsafe { libc::munmap(self.ptr.cast(), self.len) };
    }
}

impl Mapping {
    fn map(file: File, len: u64, path: &Path) -> Result<Self, RegionError> {
        let len =
            usize::try_from(len).map_err(|_| RegionError::Config("region too large".into()))?;
        // SAFETY: mapping a file we opened read-write, shared, at a kernel-chosen address; no
        // existing memory is affected. Validity of the result is checked against MAP_FAILED.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io_err("mmap", path, io::Error::last_os_error()));
        }
        Ok(Mapping {
            ptr: ptr.cast(),
            len,
            file,
        })
    }

    fn header(&self) -> &Header {
        // SAFETY: offset 0 of a page-aligned mapping of at least PAGE bytes (checked before
        // mapping), and PAGE >= size_of::<Header>() (asserted at compile time); every field is an
        // atomic, so shared references are sound while the other process writes.
        unsafe { &*(self.ptr as *const Header) }
    }
}

const _: () = assert!(size_of::<Header>() as u64 <= PAGE);

fn io_err(op: &'static str, path: &Path, source: io::Error) -> RegionError {
    RegionError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Takes the OFD write lock on byte `byte` of `file` without waiting. `Ok(false)`: held by
/// someone else.
fn try_lock_byte(file: &File, byte: i64, path: &Path) -> Result<bool, RegionError> {
    // SAFETY: a zeroed `flock` is a valid value of this plain C struct.
    let mut fl: libc::flock = unsafe { std::mem::zeroed() };
    fl.l_type = libc::F_WRLCK as i16;
    fl.l_whence = libc::SEEK_SET as i16;
    fl.l_start = byte;
    fl.l_len = 1;
    // SAFETY: valid fd and a valid, initialised flock struct for F_OFD_SETLK.
    let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &fl) };
    if rc == 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    match e.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Ok(false),
        _ => Err(io_err("lock", path, e)),
    }
}

fn same_file(file: &File, path: &Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// True when `dir` is on hugetlbfs; `Some(huge page size)` then.
fn hugetlbfs_page_size(file: &File) -> Option<u64> {
    // SAFETY: a zeroed statfs is a valid out-parameter.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and a writable statfs.
    let rc = unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) };
    (rc == 0 && st.f_type as i64 == HUGETLBFS_MAGIC).then_some(st.f_bsize as u64)
}

/// Where regions go by default: `/dev/hugepages` when it is a hugetlbfs mount, else `/dev/shm`.
pub fn default_dir() -> PathBuf {
    let huge = Path::new("/dev/hugepages");
    if let Ok(f) = File::open(huge) {
        if hugetlbfs_page_size(&f).is_some() {
            return huge.to_path_buf();
        }
    }
    PathBuf::from("/dev/shm")
}

fn random_id() -> u128 {
    let mut b = [0u8; 16];
    // SAFETY: writes at most 16 bytes into `b`.
    let n = unsafe { libc::getrandom(b.as_mut_ptr().cast(), b.len(), 0) };
    if n != 16 {
        // No entropy source: time and pid still differ between instances.
        let t = u128::from(monotonic_ns()) ^ (u128::from(std::process::id()) << 64);
        return t ^ 0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c834;
    }
    u128::from_le_bytes(b)
}

/// One process's handle on the region.
#[derive(Debug)]
pub struct Region {
    map: Arc<Mapping>,
    layout: Layout,
    role: Role,
    path: PathBuf,
    endpoints_taken: bool,
}

/// A ring inside the mapped region.
#[derive(Debug, Clone)]
pub struct MappedRing {
    map: Arc<Mapping>,
    offset: usize,
    capacity: usize,
}

impl RingStorage for MappedRing {
    fn control(&self) -> &RingControl {
        // SAFETY: `offset` was checked in bounds and 128-byte aligned (Region::validate) inside
        // a mapping kept alive by `self.map`; RingControl is all atomics.
        unsafe { &*(self.map.ptr.add(self.offset) as *const RingControl) }
    }

    fn slots(&self) -> &[Slot] {
        // SAFETY: the slots follow the control block; `offset + ring_bytes(capacity)` was
        // checked to lie inside the mapping; `Slot` is `repr(transparent)` over a byte array
        // with interior mutability, accessed only under the ring protocol.
        unsafe {
            std::slice::from_raw_parts(
                self.map.ptr.add(self.offset + size_of::<RingControl>()) as *const Slot,
                self.capacity,
            )
        }
    }
}

/// This side's ends of the two rings.
pub type RegionSender = Sender<MappedRing>;
/// This side's ends of the two rings.
pub type RegionReceiver = Receiver<MappedRing>;

impl Region {
    /// Creates a fresh region at `path` for a starting data plane (replacing a stale one left by
    /// a dead data plane), with a new instance id and empty rings.
    ///
    /// # Errors
    /// [`RegionError::AlreadyRunning`] when a live data plane owns `path`; I/O errors.
    pub fn create(path: &Path, config: &RegionConfig) -> Result<Region, RegionError> {
        let layout = Layout::new(config).map_err(RegionError::Config)?;
        // 1. Own the path: lock whatever file is there now (creating one if none).
        let mut attempts = 0;
        let _old = loop {
            let old = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| io_err("open", path, e))?;
            if !try_lock_byte(&old, 0, path)? {
                return Err(RegionError::AlreadyRunning {
                    path: path.to_path_buf(),
                    pid: read_pid(&old),
                });
            }
            // Someone renamed a new region over the path between our open and lock: look again.
            if same_file(&old, path) {
                break old;
            }
            attempts += 1;
            if attempts > 3 {
                return Err(RegionError::Config(format!(
                    "{} keeps being replaced; is another data plane starting?",
                    path.display()
                )));
            }
        };
        // 2. Build the new region beside it.
        let mut tmp_name = path.as_os_str().to_owned();
        tmp_name.push(format!(".new.{}", std::process::id()));
        let tmp = PathBuf::from(tmp_name);
        let _ = std::fs::remove_file(&tmp);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&tmp)
            .map_err(|e| io_err("create", &tmp, e))?;
        let built = (|| {
            // Umask can only remove bits; make sure of exactly 0600 anyway.
            file.set_permissions(std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io_err("chmod", &tmp, e))?;
            if !try_lock_byte(&file, 0, &tmp)? {
                return Err(RegionError::AlreadyRunning {
                    path: tmp.clone(),
                    pid: 0,
                });
            }
            let unit = hugetlbfs_page_size(&file).unwrap_or(PAGE).max(PAGE);
            let size = round_up(layout.used, unit);
            file.set_len(size).map_err(|e| io_err("resize", &tmp, e))?;
            let map = Mapping::map(file, size, &tmp)?;
            let h = map.header();
            h.layout_version.store(LAYOUT_VERSION, Ordering::Relaxed);
            h.header_size
                .store(size_of::<Header>() as u32, Ordering::Relaxed);
            h.total_size.store(size, Ordering::Relaxed);
            let id = random_id();
            h.instance_id[0].store((id >> 64) as u64, Ordering::Relaxed);
            h.instance_id[1].store(id as u64, Ordering::Relaxed);
            h.data_plane_pid
                .store(std::process::id(), Ordering::Relaxed);
            h.slot_size.store(SLOT_SIZE as u32, Ordering::Relaxed);
            h.cmd_ring_offset.store(layout.cmd_ring, Ordering::Relaxed);
            h.cmd_ring_capacity
                .store(layout.ring_capacity, Ordering::Relaxed);
            h.reply_ring_offset
                .store(layout.reply_ring, Ordering::Relaxed);
            h.reply_ring_capacity
                .store(layout.ring_capacity, Ordering::Relaxed);
            h.counters_offset.store(layout.counters, Ordering::Relaxed);
            h.counters_workers
                .store(layout.counters_layout.workers, Ordering::Relaxed);
            h.counters_listeners
                .store(layout.counters_layout.listeners, Ordering::Relaxed);
            h.counters_backends
                .store(layout.counters_layout.backends, Ordering::Relaxed);
            h.data_plane_heartbeat
                .0
                .store(monotonic_ns(), Ordering::Relaxed);
            // Rings and counters are zero: a fresh file reads as zeros.
            // Publish last: an attacher that sees the magic sees everything above.
            h.magic.store(REGION_MAGIC, Ordering::Release);
            Ok(map)
        })();
        let map = match built {
            Ok(map) => map,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        };
        // 3. Put it in place; the old file (and our lock on it) goes with `_old`.
        std::fs::rename(&tmp, path).map_err(|e| io_err("rename", path, e))?;
        Ok(Region {
            map: Arc::new(map),
            layout,
            role: Role::DataPlane,
            path: path.to_path_buf(),
            endpoints_taken: false,
        })
    }

    /// Maps the region at `path` for the control plane, validating everything before trusting
    /// it.
    ///
    /// # Errors
    /// Any [`RegionError`]: missing, truncated, foreign or corrupt region, bad permissions, or a
    /// control plane already attached.
    pub fn attach(path: &Path) -> Result<Region, RegionError> {
        Self::open_existing(path, Role::ControlPlane)
    }

    /// Maps the region at `path` to read its header and counters, beside whatever control
    /// plane is attached: validated like [`Region::attach`], but takes no lock, and
    /// [`Region::endpoints`] and [`Region::beat`] do nothing useful on it.
    ///
    /// # Errors
    /// As [`Region::attach`], except that an attached control plane is no error.
    pub fn observe(path: &Path) -> Result<Region, RegionError> {
        Self::open_existing(path, Role::Observer)
    }

    fn open_existing(path: &Path, role: Role) -> Result<Region, RegionError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC | libc::O_NOFOLLOW)
            .open(path)
            .map_err(|e| io_err("open", path, e))?;
        let meta = file.metadata().map_err(|e| io_err("stat", path, e))?;
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        if !meta.file_type().is_file() || meta.mode() & 0o077 != 0 || meta.uid() != euid {
            return Err(RegionError::BadPermissions {
                path: path.to_path_buf(),
                mode: meta.mode() & 0o7777,
            });
        }
        let len = meta.len();
        if !(PAGE..=MAX_REGION_SIZE).contains(&len) {
            return Err(RegionError::Truncated {
                path: path.to_path_buf(),
                len,
            });
        }
        if role == Role::ControlPlane && !try_lock_byte(&file, 1, path)? {
            return Err(RegionError::ControlPlaneAttached {
                path: path.to_path_buf(),
            });
        }
        let map = Mapping::map(file, len, path)?;
        let layout = validate(map.header(), len, path)?;
        Ok(Region {
            map: Arc::new(map),
            layout,
            role,
            path: path.to_path_buf(),
            // An observer never gets the rings.
            endpoints_taken: role == Role::Observer,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        self.map.header()
    }

    /// Which side this handle is.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The path the region was created at or attached from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Stores this side's heartbeat (call about every 100 ms).
    pub fn beat(&self) {
        let h = self.header();
        let slot = match self.role {
            Role::DataPlane => &h.data_plane_heartbeat.0,
            Role::ControlPlane => &h.control_plane_heartbeat.0,
            Role::Observer => return,
        };
        slot.store(monotonic_ns(), Ordering::Relaxed);
    }

    /// Control plane, after sending commands: wakes the data plane's control thread.
    pub fn ring_command_doorbell(&self) {
        let bell = &self.header().command_doorbell;
        bell.fetch_add(1, Ordering::Release);
        // SAFETY: FUTEX_WAKE on the address of a live, aligned u32 in this shared mapping (no
        // FUTEX_PRIVATE_FLAG: the waiter is another process); it reads nothing else. Its result
        // (how many were woken) does not matter.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                bell.as_ptr(),
                libc::FUTEX_WAKE,
                1,
                0usize,
                0usize,
                0,
            );
        }
    }

    /// Data plane: sleeps until the command doorbell no longer holds `seen` (a value read
    /// with [`Header::command_doorbell`] before the ring was found empty), or `timeout`.
    pub fn wait_for_commands(&self, seen: u32, timeout: Duration) {
        let bell = &self.header().command_doorbell;
        let ts = libc::timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as libc::time_t,
            tv_nsec: timeout.subsec_nanos() as libc::c_long,
        };
        // SAFETY: FUTEX_WAIT on the address of a live, aligned u32 in this shared mapping,
        // with `ts` a valid relative timeout that outlives the call. It returns at once when
        // the word no longer equals `seen` (EAGAIN), on a wake, a signal or the timeout; all
        // are fine: the caller looks at the ring again.
        unsafe {
            libc::syscall(
                libc::SYS_futex,
                bell.as_ptr(),
                libc::FUTEX_WAIT,
                seen,
                &ts as *const libc::timespec,
                0usize,
                0,
            );
        }
    }

    /// True when the other side beat within `max_age`.
    pub fn peer_alive(&self, max_age: Duration) -> bool {
        let h = self.header();
        let last = match self.role {
            Role::DataPlane => h.control_plane_heartbeat(),
            Role::ControlPlane | Role::Observer => h.data_plane_heartbeat(),
        };
        last != 0 && monotonic_ns().saturating_sub(last) <= max_age.as_nanos() as u64
    }

    /// True when the path now names another file (a restarted data plane made a new region):
    /// the control plane should drop this handle and attach again.
    pub fn is_replaced(&self) -> bool {
        !same_file(&self.map.file, &self.path)
    }

    /// This side's sender and receiver: the data plane receives commands and sends replies, the
    /// control plane the reverse. Once per handle.
    ///
    /// # Errors
    /// [`RegionError::EndpointsTaken`] the second time; [`RegionError::Ring`] when the shared
    /// indices are inconsistent.
    pub fn endpoints(&mut self) -> Result<(RegionSender, RegionReceiver), RegionError> {
        if self.endpoints_taken {
            return Err(RegionError::EndpointsTaken);
        }
        let ring = |offset: u64| MappedRing {
            map: self.map.clone(),
            offset: offset as usize,
            capacity: self.layout.ring_capacity as usize,
        };
        let (out, inn) = match self.role {
            Role::DataPlane => (self.layout.reply_ring, self.layout.cmd_ring),
            Role::ControlPlane | Role::Observer => (self.layout.cmd_ring, self.layout.reply_ring),
        };
        let tx = Sender::new(Producer::new(ring(out))?);
        let rx = Receiver::new(Consumer::new(ring(inn))?);
        self.endpoints_taken = true;
        Ok((tx, rx))
    }

    fn counter_words(&self) -> &[AtomicU64] {
        let n = self.layout.counters_layout.size_bytes() as usize / 8;
        // SAFETY: the counters area lies inside the mapping at a page-aligned offset (checked
        // by Layout::new / validate); AtomicU64 has the layout of u64 and zeroed memory is a
        // valid value; the mapping lives as long as `self`.
        unsafe {
            std::slice::from_raw_parts(
                self.map.ptr.add(self.layout.counters as usize) as *const AtomicU64,
                n,
            )
        }
    }

    /// The counters layout of this region.
    pub fn counters_layout(&self) -> CountersLayout {
        self.layout.counters_layout
    }

    /// Worker `worker`'s counters block, for that worker alone to write (`None` out of range).
    /// Only the data plane writes counters; giving one block to two workers would make their
    /// totals overwrite each other (never unsound, just wrong).
    pub fn worker_counters(&self, worker: u32) -> Option<WorkerCounters<'_>> {
        let l = self.layout.counters_layout;
        if self.role != Role::DataPlane || worker >= l.workers {
            return None;
        }
        let stride = l.words_per_worker();
        let start = worker as usize * stride;
        self.counter_words()
            .get(start..start + stride)
            .map(|w| WorkerCounters::new(w, l))
    }

    /// Reads all counters, summed over workers.
    pub fn counters(&self) -> CountersReader<'_> {
        CountersReader::new(self.counter_words(), self.layout.counters_layout)
    }
}

/// Best-effort pid of the data plane holding `file`, for the error message.
fn read_pid(file: &File) -> u32 {
    use std::os::unix::fs::FileExt;
    let mut b = [0u8; 4];
    let off = std::mem::offset_of!(Header, data_plane_pid) as u64;
    match file.read_exact_at(&mut b, off) {
        Ok(()) => u32::from_ne_bytes(b),
        Err(_) => 0,
    }
}

/// Checks a mapped header of a file of `len` bytes and returns its layout.
fn validate(h: &Header, len: u64, path: &Path) -> Result<Layout, RegionError> {
    let bad = |reason: String| RegionError::BadLayout {
        path: path.to_path_buf(),
        reason,
    };
    let magic = h.magic.load(Ordering::Acquire);
    if magic != REGION_MAGIC {
        return Err(RegionError::BadMagic {
            path: path.to_path_buf(),
            found: magic,
        });
    }
    let version = h.layout_version.load(Ordering::Relaxed);
    if version != LAYOUT_VERSION {
        return Err(RegionError::BadVersion {
            path: path.to_path_buf(),
            found: version,
        });
    }
    let header = h.total_size.load(Ordering::Relaxed);
    if header != len {
        return Err(RegionError::SizeMismatch {
            path: path.to_path_buf(),
            header,
            file: len,
        });
    }
    let hs = h.header_size.load(Ordering::Relaxed);
    if hs as usize != size_of::<Header>() {
        return Err(bad(format!(
            "header size {hs}, expected {}",
            size_of::<Header>()
        )));
    }
    let ss = h.slot_size.load(Ordering::Relaxed);
    if ss as usize != SLOT_SIZE {
        return Err(bad(format!("slot size {ss}, expected {SLOT_SIZE}")));
    }
    let cap = h.cmd_ring_capacity.load(Ordering::Relaxed);
    if h.reply_ring_capacity.load(Ordering::Relaxed) != cap {
        return Err(bad("ring capacities differ".into()));
    }
    let config = RegionConfig {
        ring_capacity: cap,
        counters: CountersLayout {
            workers: h.counters_workers.load(Ordering::Relaxed),
            listeners: h.counters_listeners.load(Ordering::Relaxed),
            backends: h.counters_backends.load(Ordering::Relaxed),
        },
    };
    // The creator always places areas as Layout::new does; anything else is not trusted.
    let expected = Layout::new(&config).map_err(bad)?;
    let found = (
        h.cmd_ring_offset.load(Ordering::Relaxed),
        h.reply_ring_offset.load(Ordering::Relaxed),
        h.counters_offset.load(Ordering::Relaxed),
    );
    if found != (expected.cmd_ring, expected.reply_ring, expected.counters) {
        return Err(bad(format!(
            "area offsets {found:?} differ from {:?}",
            (expected.cmd_ring, expected.reply_ring, expected.counters)
        )));
    }
    if expected.used > len {
        return Err(bad(format!(
            "areas need {} bytes, the file has {len}",
            expected.used
        )));
    }
    Ok(expected)
}
