//! The configuration store: every tenant's objects, in an embedded `redb` database (one node,
//! the default) or in etcd (`store = "etcd"`: one configuration shared by a tier of nodes).
//!
//! The whole state is also kept in memory (it is small: the control plane's objects, not
//! flows), so reads never touch the disk or the network.
//!
//! A change is made by [`Store::mutate`]: the closure edits a copy of the state, the copy is
//! checked ([`State::check`] plus the optional validator, e.g. the data plane's own
//! [`ServiceSet::validate`](fiberlb_shared::model::ServiceSet::validate)), and the objects that
//! differ are committed in one transaction together with the incremented generation before the
//! new state becomes visible and before the caller can reply:
//!
//! - redb ([`redb_engine`]): one write transaction, fsynced before `commit` returns. A crash
//!   at any point loses nothing that was acknowledged.
//! - etcd ([`etcd`]): one etcd transaction guarded by a compare on the generation key (the
//!   generation this node's copy was at). When another node committed first the compare fails,
//!   the transaction returns the current state instead, and the closure runs again on it — so
//!   two nodes writing at once never lose or duplicate an update, ids and VIPs allocated inside
//!   the closure are unique across the cluster. Every node watches the prefix and installs each
//!   new generation ([`Store::subscribe`] announces it).
//!
//! Registered backends (`BackendService.Register`) carry a [`Lease`](crate::model::Lease):
//! etcd leases in etcd mode (a key under `<prefix>/leases/` dies with the lease and any node
//! then deletes the backend in a normal transaction), a timer in fiberlbd with redb
//! ([`leases`]).

pub mod etcd;
mod leases;
mod redb_engine;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::model::{self, State};

/// Version of the stored format this build reads and writes (redb file and etcd prefix).
pub const FORMAT_VERSION: u64 = 1;

/// How often a change is retried when other nodes keep committing first (etcd).
const MAX_ATTEMPTS: usize = 64;

/// Kinds of object, for id allocation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    LoadBalancer,
    Listener,
    Pool,
    Backend,
    HealthCheck,
}

impl Kind {
    const ALL: [Kind; 5] = [
        Kind::LoadBalancer,
        Kind::Listener,
        Kind::Pool,
        Kind::Backend,
        Kind::HealthCheck,
    ];

    fn next_id_key(self) -> &'static str {
        match self {
            Kind::LoadBalancer => "next_id.load_balancer",
            Kind::Listener => "next_id.listener",
            Kind::Pool => "next_id.pool",
            Kind::Backend => "next_id.backend",
            Kind::HealthCheck => "next_id.health_check",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What can go wrong opening or writing the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The change itself was refused; nothing was written.
    #[error(transparent)]
    Model(#[from] model::Error),
    #[error("store {store}: format version {found} is newer than this fiberlbd supports ({supported}); run the fiberlbd that wrote it, or a newer one")]
    NewerFormat {
        store: String,
        found: u64,
        supported: u64,
    },
    #[error("store {store}: format version {found} is unknown (this fiberlbd reads {supported}); it was not written by fiberlbd, or is damaged")]
    UnknownFormat {
        store: String,
        found: u64,
        supported: u64,
    },
    #[error("store {path}: {what}: {detail}; if another fiberlbd uses this store stop it, otherwise restore it from a backup")]
    Database {
        path: std::path::PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("store {store}: object {id} in table {table} cannot be decoded ({detail}); restore the store from a backup")]
    Corrupt {
        store: String,
        table: &'static str,
        id: u32,
        detail: String,
    },
    /// etcd cannot be reached (or answered an error): nothing was written.
    #[error("store etcd ({endpoints}) is unavailable: {detail}; writes are refused until it is back, the data plane keeps forwarding the last configuration")]
    Unavailable { endpoints: String, detail: String },
    /// Other nodes kept committing first.
    #[error(
        "store etcd: the change lost {attempts} races in a row against other nodes' changes; retry"
    )]
    Contention { attempts: usize },
}

/// Checks a stored format version.
fn check_format(store: &str, found: u64) -> Result<(), StoreError> {
    match found {
        v if v == FORMAT_VERSION => Ok(()),
        v if v > FORMAT_VERSION && v < 1 << 16 => Err(StoreError::NewerFormat {
            store: store.to_string(),
            found: v,
            supported: FORMAT_VERSION,
        }),
        v => Err(StoreError::UnknownFormat {
            store: store.to_string(),
            found: v,
            supported: FORMAT_VERSION,
        }),
    }
}

/// Checks a whole state beyond [`State::check`] (e.g. compiles it and runs the data plane's
/// validation with the node's tunnel settings).
pub type Validator = Box<dyn Fn(&State) -> Result<(), model::Error> + Send + Sync>;

/// A consistent view: the state and the generation it belongs to.
#[derive(Clone, Debug)]
pub struct Snapshot {
    pub state: Arc<State>,
    pub generation: u64,
}

/// Whether the store can take writes, for status, metrics and the gRPC health service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreHealth {
    /// "redb" or "etcd".
    pub kind: &'static str,
    /// The redb file, or the etcd endpoints and prefix.
    pub location: String,
    /// Writes can be committed (redb: always; etcd: the last request or watch succeeded).
    pub reachable: bool,
    /// Why not, when not.
    pub error: String,
    /// The generation this node holds.
    pub generation: u64,
}

/// A whole stored state as read from the engine.
#[derive(Clone, Debug)]
pub(crate) struct Loaded {
    pub state: State,
    pub generation: u64,
    pub next_ids: [u32; 5],
    /// etcd: the leases whose key exists (a registered backend whose lease is not here has
    /// expired). `None` with redb (leases are fiberlbd's own timers).
    pub live_leases: Option<HashSet<i64>>,
}

struct Inner {
    state: Arc<State>,
    generation: u64,
    next_ids: [u32; 5],
    live_leases: Option<HashSet<i64>>,
}

enum Engine {
    Redb(redb_engine::RedbEngine),
    Etcd(Box<etcd::EtcdEngine>),
}

/// The store. Cheap to share behind an `Arc`; this node's writes are serialised by an internal
/// mutex (etcd serialises the cluster's).
pub struct Store {
    engine: Engine,
    inner: Mutex<Inner>,
    write_lock: Mutex<()>,
    validator: Option<Validator>,
    changes: watch::Sender<u64>,
    health: watch::Sender<StoreHealth>,
    local_leases: leases::LocalLeases,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("location", &self.health.borrow().location)
            .finish()
    }
}

/// The state being edited inside [`Store::mutate`], with id allocation.
#[derive(Debug)]
pub struct Txn {
    pub state: State,
    next_ids: [u32; 5],
    /// Leases to attach in the same commit: (lease id, backend id).
    leases: Vec<(i64, u32)>,
}

impl Txn {
    /// A fresh id of `kind` (never reused, even after deletes; unique across the nodes of an
    /// etcd cluster).
    ///
    /// # Errors
    /// [`model::Error::FailedPrecondition`] after 2^32 - 2 objects of one kind.
    pub fn allocate_id(&mut self, kind: Kind) -> Result<u32, model::Error> {
        let slot = &mut self.next_ids[kind.index()];
        let id = *slot;
        if id == u32::MAX {
            return Err(model::Error::FailedPrecondition(format!(
                "ids of kind {kind:?} are exhausted"
            )));
        }
        *slot += 1;
        Ok(id)
    }

    /// Ties backend `backend` to lease `lease` in this commit (etcd: the lease's key is written
    /// with the objects, so the backend never exists without it).
    pub fn attach_lease(&mut self, lease: i64, backend: u32) {
        self.leases.push((lease, backend));
    }
}

impl Store {
    /// Opens (or creates) the redb store at `path`.
    ///
    /// # Errors
    /// [`StoreError::NewerFormat`] / [`StoreError::UnknownFormat`] for a store this build
    /// cannot read, [`StoreError::Database`] when the file cannot be opened (e.g. another
    /// fiberlbd holds it), [`StoreError::Corrupt`] for an undecodable object.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let (engine, loaded) = redb_engine::RedbEngine::open(path)?;
        let location = engine.path().display().to_string();
        let store = Store::new(Engine::Redb(engine), loaded, "redb", location, true, "");
        store.local_leases.adopt(&store.snapshot().state);
        Ok(store)
    }

    /// Connects to etcd and reads the configuration under its prefix. When etcd cannot be
    /// reached and a cache of the last configuration this node saw exists (`cache_path`), the
    /// store starts from it and reports itself unreachable; [`Store::run`] resyncs.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when etcd cannot be reached and there is no cache; format and
    /// decoding errors as for [`Store::open`].
    pub async fn open_etcd(config: &etcd::EtcdConfig) -> Result<Store, StoreError> {
        let (engine, loaded, error) = etcd::EtcdEngine::connect(config).await?;
        let location = engine.location();
        Ok(Store::new(
            Engine::Etcd(Box::new(engine)),
            loaded,
            "etcd",
            location,
            error.is_none(),
            &error.unwrap_or_default(),
        ))
    }

    fn new(
        engine: Engine,
        loaded: Loaded,
        kind: &'static str,
        location: String,
        reachable: bool,
        error: &str,
    ) -> Store {
        let generation = loaded.generation;
        Store {
            engine,
            inner: Mutex::new(Inner {
                state: Arc::new(loaded.state),
                generation,
                next_ids: loaded.next_ids,
                live_leases: loaded.live_leases,
            }),
            write_lock: Mutex::new(()),
            validator: None,
            changes: watch::channel(generation).0,
            health: watch::channel(StoreHealth {
                kind,
                location,
                reachable,
                error: error.to_string(),
                generation,
            })
            .0,
            local_leases: leases::LocalLeases::default(),
        }
    }

    /// Adds a whole-state check run before every commit.
    pub fn with_validator(mut self, v: Validator) -> Self {
        self.validator = Some(v);
        self
    }

    /// "redb" or "etcd".
    pub fn kind(&self) -> &'static str {
        self.health.borrow().kind
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave `Inner` half-updated: it is replaced
        // field by field only after the commit succeeded.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The current state and generation.
    pub fn snapshot(&self) -> Snapshot {
        let g = self.lock();
        Snapshot {
            state: g.state.clone(),
            generation: g.generation,
        }
    }

    /// Receives the generation after every change this node committed or learnt from etcd.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Whether writes can be committed, and why not.
    pub fn health(&self) -> watch::Receiver<StoreHealth> {
        self.health.subscribe()
    }

    pub(crate) fn set_reachable(&self, error: Option<String>) {
        self.health.send_if_modified(|h| {
            let (reachable, error) = match error {
                None => (true, String::new()),
                Some(e) => (false, e),
            };
            let changed = h.reachable != reachable || h.error != error;
            h.reachable = reachable;
            h.error = error;
            changed
        });
    }

    /// Installs a state read from the engine when it is newer than the one held (or carries
    /// new lease information). Returns whether the generation changed.
    pub(crate) fn install(&self, loaded: Loaded) -> bool {
        let generation = {
            let mut g = self.lock();
            if loaded.generation < g.generation {
                drop(g);
                log::warn!(
                    "store: etcd holds generation {} but this node has {}: etcd was restored \
                     from an older backup or wiped; keeping this node's configuration",
                    loaded.generation,
                    self.snapshot().generation
                );
                return false;
            }
            let newer = loaded.generation > g.generation;
            if newer {
                g.state = Arc::new(loaded.state);
                g.generation = loaded.generation;
                g.next_ids = loaded.next_ids;
            }
            g.live_leases = loaded.live_leases;
            if !newer {
                return false;
            }
            g.generation
        };
        self.announce(generation);
        true
    }

    fn announce(&self, generation: u64) {
        self.changes.send_if_modified(|g| {
            let changed = *g < generation;
            if changed {
                *g = generation;
            }
            changed
        });
        self.health.send_if_modified(|h| {
            let changed = h.generation < generation;
            if changed {
                h.generation = generation;
            }
            changed
        });
        if let Engine::Etcd(e) = &self.engine {
            e.save_cache(&self.snapshot_loaded());
        }
    }

    fn snapshot_loaded(&self) -> Loaded {
        let g = self.lock();
        Loaded {
            state: (*g.state).clone(),
            generation: g.generation,
            next_ids: g.next_ids,
            live_leases: g.live_leases.clone(),
        }
    }

    /// Applies `f` to a copy of the state, checks the result and commits it durably. Returns
    /// `f`'s value and the generation after the change (unchanged when `f` changed nothing).
    /// With etcd, `f` runs again on the newer state when another node committed first, so it
    /// must only depend on the state it is given.
    ///
    /// Blocks on the disk (fsync) or the network (etcd): call it from `spawn_blocking` in
    /// async code.
    ///
    /// # Errors
    /// [`StoreError::Model`] when `f` or the checks refuse the change (nothing is written),
    /// [`StoreError::Database`] / [`StoreError::Unavailable`] when the write fails (nothing is
    /// visible either), [`StoreError::Contention`] when other nodes won every race.
    pub fn mutate<T>(
        &self,
        mut f: impl FnMut(&mut Txn) -> Result<T, model::Error>,
    ) -> Result<(T, u64), StoreError> {
        let _serial = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        for _ in 0..MAX_ATTEMPTS {
            let (base, base_generation, next_ids) = {
                let g = self.lock();
                (g.state.clone(), g.generation, g.next_ids)
            };
            let mut txn = Txn {
                state: (*base).clone(),
                next_ids,
                leases: Vec::new(),
            };
            let value = f(&mut txn)?;
            if txn.state == *base && txn.leases.is_empty() {
                return Ok((value, base_generation));
            }
            txn.state.check()?;
            if let Some(v) = &self.validator {
                v(&txn.state)?;
            }
            let generation = base_generation + 1;
            match &self.engine {
                Engine::Redb(db) => db.commit(&base, &txn.state, generation, &txn.next_ids)?,
                Engine::Etcd(e) => {
                    let outcome = e.commit(
                        &base,
                        base_generation,
                        &txn.state,
                        generation,
                        &txn.next_ids,
                        &txn.leases,
                    );
                    match outcome {
                        Err(err) => {
                            if let StoreError::Unavailable { detail, .. } = &err {
                                self.set_reachable(Some(detail.clone()));
                            }
                            return Err(err);
                        }
                        Ok(Some(current)) => {
                            // Another node committed first: start again from its state.
                            self.set_reachable(None);
                            self.install(current);
                            continue;
                        }
                        Ok(None) => self.set_reachable(None),
                    }
                }
            }
            {
                let mut g = self.lock();
                // The watcher may have installed this very generation already (it is ours).
                if g.generation < generation {
                    g.state = Arc::new(txn.state);
                    g.generation = generation;
                    g.next_ids = txn.next_ids;
                    if let Some(live) = g.live_leases.as_mut() {
                        live.extend(txn.leases.iter().map(|(l, _)| *l));
                    }
                }
            }
            self.announce(generation);
            return Ok((value, generation));
        }
        Err(StoreError::Contention {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// A new lease of `ttl_ms` for a registered backend (etcd rounds up to whole seconds).
    /// Blocking, like [`Store::mutate`].
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when etcd cannot grant it.
    pub fn grant_lease(&self, ttl_ms: u64) -> Result<model::Lease, StoreError> {
        match &self.engine {
            Engine::Redb(_) => Ok(self.local_leases.grant(ttl_ms)),
            Engine::Etcd(e) => e.grant(ttl_ms),
        }
    }

    /// Renews lease `id`; `Ok(None)` when it does not exist (expired or never granted).
    /// Returns the time to live in milliseconds. Blocking.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`] when etcd cannot be asked.
    pub fn keep_alive(&self, id: i64) -> Result<Option<u64>, StoreError> {
        match &self.engine {
            Engine::Redb(_) => Ok(self.local_leases.keep_alive(id)),
            Engine::Etcd(e) => e.keep_alive(id),
        }
    }

    /// The backends of `state` whose lease has expired: no longer among etcd's `live` leases,
    /// or (redb, `live` is `None`) past fiberlbd's own timer.
    fn expired_in(&self, state: &State, live: Option<&HashSet<i64>>) -> Vec<u32> {
        state
            .backends
            .values()
            .filter(|b| {
                b.lease.is_some_and(|l| match live {
                    Some(set) => !set.contains(&l.id),
                    None => self.local_leases.expired(l.id),
                })
            })
            .map(|b| b.id)
            .collect()
    }

    /// Backends whose lease has expired (they are deleted by [`Store::run`]).
    fn expired_backends(&self) -> Vec<u32> {
        let g = self.lock();
        self.expired_in(&g.state, g.live_leases.as_ref())
    }

    /// Deletes the backends whose lease expired, in one commit.
    fn reap(&self) {
        if self.expired_backends().is_empty() {
            return;
        }
        let r = self.mutate(|t| {
            let gone = {
                let live = self.lock();
                self.expired_in(&t.state, live.live_leases.as_ref())
            };
            for id in &gone {
                t.state.backends.remove(id);
            }
            Ok(gone)
        });
        match r {
            Ok((gone, generation)) if !gone.is_empty() => {
                log::info!(
                    "store: registered backends {gone:?} removed (lease expired), generation {generation}"
                );
                self.local_leases.forget_expired();
            }
            Ok(_) => {}
            Err(e) => log::warn!("store: cannot remove backends whose lease expired: {e}"),
        }
    }

    /// The store's background work until `stop` turns true: with etcd, watching the prefix
    /// (installing every new generation, resyncing after an outage); with both, deleting
    /// registered backends whose lease expired.
    pub async fn run(self: Arc<Self>, mut stop: watch::Receiver<bool>) {
        let watcher = match &self.engine {
            Engine::Etcd(_) => Some(tokio::spawn(etcd::watch_loop(self.clone(), stop.clone()))),
            Engine::Redb(_) => None,
        };
        let mut changes = self.subscribe();
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => break,
                _ = tick.tick() => {}
                r = changes.changed() => if r.is_err() { break },
            }
            let me = self.clone();
            let _ = tokio::task::spawn_blocking(move || me.reap()).await;
        }
        if let Some(w) = watcher {
            w.abort();
        }
    }

    pub(crate) fn engine_etcd(&self) -> Option<&etcd::EtcdEngine> {
        match &self.engine {
            Engine::Etcd(e) => Some(e),
            Engine::Redb(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Pool, Scope};
    use fiberlb_shared::model::Algorithm;

    fn add_pool(store: &Store, name: &str) -> Result<(u32, u64), StoreError> {
        store.mutate(|t| {
            let id = t.allocate_id(Kind::Pool)?;
            t.state.pools.insert(
                id,
                Pool {
                    id,
                    scope: Scope::new("o", "p"),
                    name: name.into(),
                    algorithm: Algorithm::Maglev,
                    table_size: 251,
                    health_check_id: None,
                },
            );
            Ok(id)
        })
    }

    #[test]
    fn generation_ids_and_refusals() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        let mut changes = store.subscribe();
        assert_eq!(add_pool(&store, "a").unwrap(), (1, 1));
        assert!(changes.has_changed().unwrap());
        assert_eq!(*changes.borrow_and_update(), 1);
        assert_eq!(add_pool(&store, "b").unwrap(), (2, 2));
        // Refused by State::check: nothing written, generation unchanged, id not consumed.
        assert!(matches!(
            add_pool(&store, "a"),
            Err(StoreError::Model(model::Error::AlreadyExists(_)))
        ));
        assert_eq!(store.snapshot().generation, 2);
        // A no-op change keeps the generation.
        assert_eq!(store.mutate(|_| Ok(())).unwrap().1, 2);
        store
            .mutate(|t| {
                t.state.pools.remove(&1);
                Ok(())
            })
            .unwrap();
        // Ids are never reused.
        assert_eq!(add_pool(&store, "c").unwrap(), (3, 4));
        let h = store.health().borrow().clone();
        assert_eq!((h.kind, h.reachable, h.generation), ("redb", true, 4));
    }
}
