//! Immutable forwarding snapshots.
//!
//! A [`Snapshot`] is everything a worker needs to forward: the listener map, the Maglev table
//! of every pool and the backend table. It is built off the fast path from a validated
//! [`ServiceSet`] and never changed afterwards; a configuration change builds a new one.
//!
//! Listeners and backends get *slots*: small integers that index the workers' counter arrays
//! and the backend table, kept stable across snapshots by the [`SnapshotBuilder`] for as long
//! as the object exists. A backend is referred to by a *handle* = slot | incarnation << 24; the
//! incarnation changes when a slot is reused, so a flow-table entry that names a deleted
//! backend can never be mistaken for the slot's next occupant.
//!
//! [`LocalAddrs`] is the one table published outside snapshots: the host's own addresses
//! (DPDK exception interfaces), which change with the operator's `ip addr`, not with the
//! service configuration.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{fence, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use fiberlb_shared::maglev::{self, MaglevBackend};
use fiberlb_shared::model::{
    Algorithm, BackendId, Encap, ListenerId, Mac, Mode, Protocol, ServiceSet, TunnelSettings,
    Usability,
};
use rustc_hash::FxHashMap;

mod listener_index;
pub use listener_index::ListenerIndex;

/// Handle value that names no backend (an empty Maglev slot).
pub const NO_BACKEND: u32 = u32::MAX;

const SLOT_BITS: u32 = 24;
const SLOT_MASK: u32 = (1 << SLOT_BITS) - 1;

/// Largest number of backend slots a snapshot can have (handles keep 24 bits for the slot).
pub const MAX_BACKEND_SLOTS: usize = SLOT_MASK as usize;

/// The slot part of a backend handle.
#[inline]
pub const fn handle_slot(handle: u32) -> usize {
    (handle & SLOT_MASK) as usize
}

/// Key of the listener map: VIP (IPv4 in the first 4 bytes), port, protocol and family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenerKey {
    pub addr: [u8; 16],
    pub port: u16,
    pub proto: u8,
    pub v6: bool,
}

/// Two words per key instead of the derived hash's six writes (the address as a length-prefixed
/// slice, then each small field): the listener lookup runs for every packet. Equal keys give
/// equal words, so this is a valid `Hash` for the derived `Eq`.
impl std::hash::Hash for ListenerKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The fields that vary most (port, protocol, then the address's first bytes) go in the
        // low bits of the last word, which reach every bit of the hash hashbrown uses.
        let a = u128::from_ne_bytes(self.addr);
        let small = u64::from(self.port) | u64::from(self.proto) << 16 | u64::from(self.v6) << 24;
        state.write_u64((a >> 64) as u64);
        state.write_u64((a as u64).rotate_left(32) ^ small);
    }
}

impl ListenerKey {
    #[inline]
    pub fn v4(addr: [u8; 4], port: u16, proto: u8) -> Self {
        let mut a = [0u8; 16];
        a[..4].copy_from_slice(&addr);
        ListenerKey {
            addr: a,
            port,
            proto,
            v6: false,
        }
    }

    #[inline]
    pub fn v6(addr: [u8; 16], port: u16, proto: u8) -> Self {
        ListenerKey {
            addr,
            port,
            proto,
            v6: true,
        }
    }

    pub fn from_ip(addr: IpAddr, port: u16, proto: u8) -> Self {
        match addr {
            IpAddr::V4(a) => Self::v4(a.octets(), port, proto),
            IpAddr::V6(a) => Self::v6(a.octets(), port, proto),
        }
    }
}

/// A listener as the workers see it.
#[derive(Clone, Debug)]
pub struct ListenerRec {
    pub id: ListenerId,
    pub name: String,
    /// Counter slot, also the flow-table key's listener field.
    pub slot: u32,
    pub vip: IpAddr,
    /// VIP bytes, IPv4 in the first 4.
    pub vip_addr: [u8; 16],
    pub port: u16,
    pub protocol: Protocol,
    pub mode: Mode,
    pub encap: Encap,
    /// Index into [`Snapshot::pools`].
    pub pool: u32,
}

/// A pool as the workers see it.
#[derive(Clone, Debug)]
pub struct PoolRec {
    pub name: String,
    pub algorithm: Algorithm,
    /// Maglev lookup table: backend handles, or [`NO_BACKEND`] when the pool has no active
    /// backend. Its length is the pool's table size. Shared with the builder's cache and with
    /// the snapshots before and after this one when the pool did not change.
    pub table: Arc<[u32]>,
    /// Number of backends with [`Usability::Active`].
    pub active: u32,
}

/// A backend as the workers see it.
#[derive(Clone, Debug)]
pub struct BackendRec {
    pub id: BackendId,
    pub handle: u32,
    /// Index into [`Snapshot::pools`].
    pub pool: u32,
    pub address: IpAddr,
    /// Address bytes, IPv4 in the first 4.
    pub addr: [u8; 16],
    pub port: u16,
    pub mac: Option<Mac>,
    pub usability: Usability,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Invalid(#[from] fiberlb_shared::model::ModelError),
    #[error("pool {pool:?}: {source}")]
    Maglev {
        pool: String,
        source: maglev::MaglevError,
    },
    #[error(
        "too many listeners: {count} (this data plane was started with max_listeners = {max})"
    )]
    TooManyListeners { count: usize, max: usize },
    #[error("too many backends: {count} (this data plane was started with max_backends = {max})")]
    TooManyBackends { count: usize, max: usize },
}

/// One immutable forwarding configuration.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Configuration generation this snapshot was built from.
    pub generation: u64,
    pub listeners: Vec<ListenerRec>,
    pub listener_map: FxHashMap<ListenerKey, u32>,
    /// The same pairs as `listener_map`, in the table the per-packet path reads.
    pub listener_index: ListenerIndex,
    /// For IP fragments without ports: (VIP, protocol) -> listener index, present only when
    /// every listener on that VIP and protocol uses the same pool and mode (otherwise a
    /// non-first fragment could belong to any of them, and is dropped).
    pub fragment_map: FxHashMap<ListenerKey, u32>,
    /// nat return traffic: (backend address, backend port, protocol) -> listener index.
    pub nat_return: FxHashMap<ListenerKey, u32>,
    /// Every VIP address (port 0, protocol 0): a non-first fragment to one of them is
    /// fiberlb's even when no listener can be chosen for it; to any other address, the host's.
    pub vip_addrs: rustc_hash::FxHashSet<ListenerKey>,
    pub pools: Vec<PoolRec>,
    /// Indexed by backend slot; `None` for free slots.
    pub backends: Vec<Option<BackendRec>>,
    pub tunnel: TunnelSettings,
}

impl Snapshot {
    /// The backend a handle names, if it still exists in this snapshot.
    #[inline]
    pub fn backend(&self, handle: u32) -> Option<&BackendRec> {
        match self.backends.get(handle_slot(handle)) {
            Some(Some(b)) if b.handle == handle => Some(b),
            _ => None,
        }
    }

    /// Is `addr` (IPv4 in the first 4 bytes) the address of some listener?
    #[inline]
    pub fn is_vip_addr(&self, addr: &[u8; 16], v6: bool) -> bool {
        self.vip_addrs.contains(&ListenerKey {
            addr: *addr,
            port: 0,
            proto: 0,
            v6,
        })
    }

    /// Number of listener counter slots in use (max slot + 1).
    pub fn listener_slots(&self) -> usize {
        self.listeners
            .iter()
            .map(|l| l.slot as usize + 1)
            .max()
            .unwrap_or(0)
    }
}

/// Stable small integers for objects with arbitrary ids.
#[derive(Debug, Default)]
struct SlotMap {
    by_id: HashMap<u32, u32>,
    incarnation: Vec<u8>,
    free: Vec<u32>,
}

impl SlotMap {
    /// Keeps slots of ids still present, frees the others, assigns slots to new ids.
    fn assign(&mut self, ids: &[u32]) -> Vec<u32> {
        let keep: std::collections::HashSet<u32> = ids.iter().copied().collect();
        let gone: Vec<u32> = self
            .by_id
            .keys()
            .copied()
            .filter(|id| !keep.contains(id))
            .collect();
        for id in gone {
            if let Some(slot) = self.by_id.remove(&id) {
                let inc = &mut self.incarnation[slot as usize];
                *inc = inc.wrapping_add(1);
                self.free.push(slot);
            }
        }
        // Reuse the lowest free slots first, so counters stay dense.
        self.free.sort_unstable_by(|a, b| b.cmp(a));
        ids.iter()
            .map(|id| {
                *self
                    .by_id
                    .entry(*id)
                    .or_insert_with(|| match self.free.pop() {
                        Some(s) => s,
                        None => {
                            self.incarnation.push(0);
                            (self.incarnation.len() - 1) as u32
                        }
                    })
            })
            .collect()
    }

    fn incarnation(&self, slot: u32) -> u8 {
        self.incarnation[slot as usize]
    }
}

/// Builds snapshots, keeping listener and backend slots stable from one to the next.
#[derive(Debug)]
pub struct SnapshotBuilder {
    listeners: SlotMap,
    backends: SlotMap,
    max_listeners: usize,
    max_backends: usize,
    /// Whether a backend without a MAC has a next hop (the backend side's gateway MAC). When
    /// not, such a backend is kept out of its pool's Maglev table (no new flows) until the
    /// control plane sends its MAC: new flows to it would be dropped as `no_next_hop`.
    gateway_fallback: bool,
    /// Maglev tables of recent builds, so a commit rebuilds only the pools whose active
    /// backends changed (see [`TableCache`]).
    tables: TableCache,
}

/// Builds kept in [`TableCache`] after their last use: a pool flapping between a few states
/// (a backend's health going up and down) finds each of them here.
const TABLE_CACHE_BUILDS: u64 = 4;

/// The Maglev tables of the last [`TABLE_CACHE_BUILDS`] builds, keyed by what a table is a
/// pure function of: the table size and the active backends (address, port, weight, in the
/// order given to the builder). An entry keeps the tables handed to the workers (backend
/// handles), one per set of handles: a backend removed and added again gets a new handle (a new
/// slot incarnation), and two pools may list the same addresses with their own backend objects
/// — those cost a copy of a cached table with the handles replaced (~50 µs for 65537 slots),
/// not a build (~1 ms). A commit that changes one pool of a hundred builds one table, and
/// unchanged pools share one copy of their table between snapshots (the cache holds no other
/// copy of it: its memory beyond the snapshot's is the tables of the last few builds).
#[derive(Debug, Default)]
struct TableCache {
    entries: HashMap<(u32, Vec<MaglevBackend>), Vec<CachedTable>>,
    /// Builds so far (the clock of `last_used`).
    builds: u64,
    /// Tables built by Maglev (misses), copied from a cached one for new handles, and reused
    /// as they were, for tests and diagnostics.
    built: u64,
    mapped: u64,
    reused: u64,
}

/// One table for the workers: the handles of the active backends, in the builder's order, and
/// the table, whose entries are those handles (or [`NO_BACKEND`]).
#[derive(Debug)]
struct CachedTable {
    handles: Vec<u32>,
    table: Arc<[u32]>,
    last_used: u64,
}

impl TableCache {
    /// Drops the tables no build used in the last [`TABLE_CACHE_BUILDS`] builds.
    fn end_build(&mut self) {
        let now = self.builds;
        self.entries.retain(|_, tables| {
            tables.retain(|t| now.saturating_sub(t.last_used) < TABLE_CACHE_BUILDS);
            !tables.is_empty()
        });
        self.builds += 1;
    }

    /// The workers' table for `handles`: the cached one, or one made from `raw` (a fresh
    /// build's positions) or else from a cached table for other handles. `None` when the key
    /// is not cached and no `raw` is given (the caller built every missing key first).
    fn table_for(
        &mut self,
        key: (u32, Vec<MaglevBackend>),
        handles: Vec<u32>,
        raw: Option<Vec<u32>>,
    ) -> Option<Arc<[u32]>> {
        let now = self.builds;
        let tables = self.entries.entry(key).or_default();
        if let Some(t) = tables.iter_mut().find(|t| t.handles == handles) {
            t.last_used = now;
            self.reused += 1;
            return Some(t.table.clone());
        }
        let table: Arc<[u32]> = match (raw, tables.first()) {
            (Some(raw), _) => {
                self.built += 1;
                raw.iter()
                    .map(|&e| handles.get(e as usize).copied().unwrap_or(NO_BACKEND))
                    .collect()
            }
            (None, Some(other)) => {
                // The same positions under other handles: handle -> position by its slot.
                self.mapped += 1;
                let slots = other.handles.iter().map(|&h| handle_slot(h));
                let mut position = vec![u32::MAX; slots.max().map_or(0, |m| m + 1)];
                for (i, &h) in other.handles.iter().enumerate() {
                    if let Some(p) = position.get_mut(handle_slot(h)) {
                        *p = i as u32;
                    }
                }
                other
                    .table
                    .iter()
                    .map(|&h| {
                        position
                            .get(handle_slot(h))
                            .and_then(|&i| handles.get(i as usize))
                            .copied()
                            .unwrap_or(NO_BACKEND)
                    })
                    .collect()
            }
            (None, None) => return None,
        };
        tables.push(CachedTable {
            handles,
            table: table.clone(),
            last_used: now,
        });
        Some(table)
    }
}

/// The Maglev builder's view of the backends `active` (indices into `set.backends`), weights
/// divided by their greatest common divisor: a table depends only on the weights' ratios
/// (pinned by `maglev::tests::scaled_weights_build_the_same_table`), so a pool whose weights
/// all doubled, or a one-backend pool whose weight changed, finds its table in the cache.
fn maglev_inputs(set: &ServiceSet, active: &[usize]) -> Vec<MaglevBackend> {
    fn gcd(a: u32, b: u32) -> u32 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let g = active
        .iter()
        .map(|&i| set.backends[i].weight)
        .fold(0, gcd)
        .max(1);
    active
        .iter()
        .map(|&i| {
            let b = &set.backends[i];
            MaglevBackend {
                address: b.address,
                port: b.port,
                weight: b.weight / g,
            }
        })
        .collect()
}

impl SnapshotBuilder {
    /// A builder for a data plane whose counter arrays have room for `max_listeners` and
    /// `max_backends` slots.
    pub fn new(max_listeners: usize, max_backends: usize) -> Self {
        SnapshotBuilder {
            listeners: SlotMap::default(),
            backends: SlotMap::default(),
            max_listeners,
            max_backends: max_backends.min(MAX_BACKEND_SLOTS),
            gateway_fallback: true,
            tables: TableCache::default(),
        }
    }

    /// Maglev tables so far: `(built, made from an earlier build for other backend handles,
    /// reused as they were)`.
    pub fn table_builds(&self) -> (u64, u64, u64) {
        (self.tables.built, self.tables.mapped, self.tables.reused)
    }

    /// Says whether backends without a MAC have a next hop (a backend gateway MAC); without
    /// one they get no new flows until their MAC is known (see [`Self::usability`]).
    #[must_use]
    pub fn with_gateway_fallback(mut self, gateway_fallback: bool) -> Self {
        self.gateway_fallback = gateway_fallback;
        self
    }

    /// What the data plane may send to `b`: its model usability, except that a backend with
    /// no MAC and no gateway to fall back on (an unresolved next hop) gets nothing — a flow
    /// sent there would be dropped as `no_next_hop`, a blackhole, where another backend can
    /// take it.
    pub fn usability(&self, b: &fiberlb_shared::model::Backend) -> Usability {
        if b.mac.is_none() && !self.gateway_fallback {
            Usability::Unusable
        } else {
            b.usability()
        }
    }

    /// Validates `set` and builds its snapshot. Nothing is changed on error (slots included:
    /// they are assigned after every check passed).
    ///
    /// # Errors
    /// The first reason the set cannot be forwarded by.
    pub fn build(&mut self, set: &ServiceSet, generation: u64) -> Result<Snapshot, SnapshotError> {
        set.validate()?;
        if set.listeners.len() > self.max_listeners {
            return Err(SnapshotError::TooManyListeners {
                count: set.listeners.len(),
                max: self.max_listeners,
            });
        }
        if set.backends.len() > self.max_backends {
            return Err(SnapshotError::TooManyBackends {
                count: set.backends.len(),
                max: self.max_backends,
            });
        }
        // Maglev tables first: they are the only other thing that can fail.
        let pool_index: HashMap<_, _> = set
            .pools
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id, i as u32))
            .collect();
        let mut members: Vec<Vec<usize>> = vec![Vec::new(); set.pools.len()];
        for (i, b) in set.backends.iter().enumerate() {
            members[pool_index[&b.pool] as usize].push(i);
        }
        // A pool whose (size, active backends) was built before reuses that build: those
        // inputs built without error then, and the build is a pure function of them. The
        // others are built here, before anything changes (a build can fail).
        let mut pool_keys = Vec::with_capacity(set.pools.len());
        let mut building = std::collections::HashSet::new();
        for (pi, p) in set.pools.iter().enumerate() {
            let active: Vec<usize> = members[pi]
                .iter()
                .copied()
                .filter(|&i| self.usability(&set.backends[i]) == Usability::Active)
                .collect();
            let key = (p.table_size, maglev_inputs(set, &active));
            // (Two pools with the same inputs in one commit: one build, the second maps it.)
            let raw = if self.tables.entries.contains_key(&key) || !building.insert(key.clone()) {
                None
            } else {
                Some(maglev::build_table(&key.1, p.table_size).map_err(|source| {
                    SnapshotError::Maglev {
                        pool: p.name.clone(),
                        source,
                    }
                })?)
            };
            pool_keys.push((active, key, raw));
        }

        let backend_ids: Vec<u32> = set.backends.iter().map(|b| b.id.0).collect();
        let backend_slots = self.backends.assign(&backend_ids);
        let listener_ids: Vec<u32> = set.listeners.iter().map(|l| l.id.0).collect();
        let listener_slots = self.listeners.assign(&listener_ids);

        let handles: Vec<u32> = backend_slots
            .iter()
            .map(|&s| s | (u32::from(self.backends.incarnation(s)) << SLOT_BITS))
            .collect();
        let nslots = backend_slots
            .iter()
            .map(|&s| s as usize + 1)
            .max()
            .unwrap_or(0);
        let mut backends: Vec<Option<BackendRec>> = vec![None; nslots];
        for (i, b) in set.backends.iter().enumerate() {
            backends[backend_slots[i] as usize] = Some(BackendRec {
                id: b.id,
                handle: handles[i],
                pool: pool_index[&b.pool],
                address: b.address,
                addr: ListenerKey::from_ip(b.address, 0, 0).addr,
                port: b.port,
                mac: b.mac,
                usability: self.usability(b),
            });
        }
        let mut pools = Vec::with_capacity(set.pools.len());
        for (p, (active, key, raw)) in set.pools.iter().zip(pool_keys) {
            let active_handles: Vec<u32> = active.iter().map(|&i| handles[i]).collect();
            let (size, inputs) = key;
            let table = match self
                .tables
                .table_for((size, inputs.clone()), active_handles, raw)
            {
                Some(t) => t,
                // Unreachable: every key was cached or built above. Built again rather than
                // trusted: the build is deterministic and these inputs passed above.
                None => {
                    let raw = maglev::build_table(&inputs, size).map_err(|source| {
                        SnapshotError::Maglev {
                            pool: p.name.clone(),
                            source,
                        }
                    })?;
                    let handles: Vec<u32> = active.iter().map(|&i| handles[i]).collect();
                    self.tables
                        .table_for((size, inputs), handles, Some(raw))
                        .unwrap_or_else(|| Arc::from(Vec::new()))
                }
            };
            pools.push(PoolRec {
                name: p.name.clone(),
                algorithm: p.algorithm,
                active: active.len() as u32,
                table,
            });
        }
        self.tables.end_build();

        let mut listeners = Vec::with_capacity(set.listeners.len());
        let mut listener_map = FxHashMap::default();
        let mut nat_return = FxHashMap::default();
        let mut vip_addrs = rustc_hash::FxHashSet::default();
        let mut frag_candidates: FxHashMap<ListenerKey, Option<u32>> = FxHashMap::default();
        for (i, l) in set.listeners.iter().enumerate() {
            let idx = i as u32;
            let pool = pool_index[&l.pool];
            listeners.push(ListenerRec {
                id: l.id,
                name: l.name.clone(),
                slot: listener_slots[i],
                vip: l.vip,
                vip_addr: ListenerKey::from_ip(l.vip, 0, 0).addr,
                port: l.port,
                protocol: l.protocol,
                mode: l.mode,
                encap: l.encap,
                pool,
            });
            let proto = l.protocol.ip_proto();
            listener_map.insert(ListenerKey::from_ip(l.vip, l.port, proto), idx);
            vip_addrs.insert(ListenerKey::from_ip(l.vip, 0, 0));
            let fkey = ListenerKey::from_ip(l.vip, 0, proto);
            frag_candidates
                .entry(fkey)
                .and_modify(|cur| {
                    if let Some(c) = *cur {
                        let other: &ListenerRec = &listeners[c as usize];
                        if other.pool != pool || other.mode != l.mode || other.encap != l.encap {
                            *cur = None;
                        }
                    }
                })
                .or_insert(Some(idx));
            if l.mode == Mode::Nat {
                for &bi in &members[pool as usize] {
                    let b = &set.backends[bi];
                    nat_return.insert(ListenerKey::from_ip(b.address, b.port, proto), idx);
                }
            }
        }
        let fragment_map = frag_candidates
            .into_iter()
            .filter_map(|(k, v)| v.map(|v| (k, v)))
            .collect();
        let listener_index = ListenerIndex::new(listener_map.iter().map(|(k, &v)| (*k, v)));
        Ok(Snapshot {
            generation,
            listeners,
            listener_index,
            listener_map,
            fragment_map,
            nat_return,
            vip_addrs,
            pools,
            backends,
            tunnel: set.tunnel.clone(),
        })
    }
}

/// Most host addresses [`LocalAddrs`] holds; more are ignored (with a warning by the writer).
pub const MAX_LOCAL_ADDRS: usize = 32;

/// The host's own addresses, published by one control-side thread and read by every worker.
///
/// Why not in the [`Snapshot`]: snapshots are built when the services change, by the control
/// thread's transaction logic; the host's addresses change whenever the operator (or DHCP,
/// or a routing daemon) changes the exception interfaces, and must not wait for — or
/// trigger — a service transaction. So they live in this small fixed table behind a sequence
/// lock: the writer (about once a second, only when something changed) bumps `seq` to odd,
/// stores, bumps it to even; a worker compares `seq` with its copy's once per burst (one
/// atomic load) and copies the table into its own [`LocalAddrSet`] when it moved, retrying
/// on the next burst if it raced a write. No allocation, lock or syscall on the worker side,
/// and no epoch to manage: nothing is ever freed.
#[derive(Debug)]
pub struct LocalAddrs {
    seq: AtomicU64,
    len: AtomicU64,
    /// Address bytes (IPv4 in the first 4) as two native-endian u64 halves.
    addrs: [[AtomicU64; 2]; MAX_LOCAL_ADDRS],
    /// 1 for IPv6.
    v6: [AtomicU8; MAX_LOCAL_ADDRS],
    /// Serialises writers (there is normally one).
    writer: Mutex<()>,
}

impl Default for LocalAddrs {
    fn default() -> Self {
        LocalAddrs {
            seq: AtomicU64::new(0),
            len: AtomicU64::new(0),
            addrs: std::array::from_fn(|_| [AtomicU64::new(0), AtomicU64::new(0)]),
            v6: std::array::from_fn(|_| AtomicU8::new(0)),
            writer: Mutex::new(()),
        }
    }
}

impl LocalAddrs {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Publishes `addrs` (the first [`MAX_LOCAL_ADDRS`]); returns how many were taken.
    /// Slow path: for the control side.
    pub fn publish(&self, addrs: &[IpAddr]) -> usize {
        let _w = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let n = addrs.len().min(MAX_LOCAL_ADDRS);
        // Odd: a write is in progress; readers that see it (or see it change) retry.
        self.seq.fetch_add(1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, a) in addrs.iter().take(n).enumerate() {
            let k = ListenerKey::from_ip(*a, 0, 0);
            let (lo, hi) = k.addr.split_at(8);
            let lo = u64::from_ne_bytes(lo.try_into().unwrap_or([0; 8]));
            let hi = u64::from_ne_bytes(hi.try_into().unwrap_or([0; 8]));
            self.addrs[i][0].store(lo, Ordering::Relaxed);
            self.addrs[i][1].store(hi, Ordering::Relaxed);
            self.v6[i].store(u8::from(k.v6), Ordering::Relaxed);
        }
        self.len.store(n as u64, Ordering::Relaxed);
        self.seq.fetch_add(1, Ordering::Release);
        n
    }

    /// The publication's generation: changes with every [`Self::publish`].
    #[inline]
    pub fn generation(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Copies the table into `out` when a consistent read succeeds; otherwise (a write in
    /// progress) leaves `out` as it was, to be retried on the next call.
    pub fn load_into(&self, out: &mut LocalAddrSet) {
        let s1 = self.seq.load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return;
        }
        let n = (self.len.load(Ordering::Relaxed) as usize).min(MAX_LOCAL_ADDRS);
        let mut tmp = LocalAddrSet::default();
        for i in 0..n {
            let lo = self.addrs[i][0].load(Ordering::Relaxed).to_ne_bytes();
            let hi = self.addrs[i][1].load(Ordering::Relaxed).to_ne_bytes();
            let e = &mut tmp.addrs[i];
            e.0[..8].copy_from_slice(&lo);
            e.0[8..].copy_from_slice(&hi);
            e.1 = self.v6[i].load(Ordering::Relaxed) != 0;
        }
        fence(Ordering::Acquire);
        if self.seq.load(Ordering::Relaxed) != s1 {
            return;
        }
        tmp.len = n;
        tmp.generation = s1;
        *out = tmp;
    }
}

/// A worker's copy of [`LocalAddrs`]: a small array scanned linearly (a host has a handful of
/// addresses; a scan beats hashing for that).
#[derive(Clone, Copy, Debug)]
pub struct LocalAddrSet {
    addrs: [([u8; 16], bool); MAX_LOCAL_ADDRS],
    len: usize,
    /// The publication this copy was taken from (`u64::MAX`: none yet).
    generation: u64,
}

impl Default for LocalAddrSet {
    fn default() -> Self {
        LocalAddrSet {
            addrs: [([0; 16], false); MAX_LOCAL_ADDRS],
            len: 0,
            generation: u64::MAX,
        }
    }
}

impl LocalAddrSet {
    /// Is `addr` (IPv4 in the first 4 bytes) one of the host's?
    #[inline]
    pub fn contains(&self, addr: &[u8; 16], v6: bool) -> bool {
        self.addrs
            .iter()
            .take(self.len)
            .any(|(a, f)| *f == v6 && a == addr)
    }

    /// Number of addresses.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there is none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The publication this copy came from.
    #[inline]
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

#[cfg(test)]
mod tests;
