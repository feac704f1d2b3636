//! The configuration store: every tenant's objects in an embedded `redb` database.
//!
//! One table per kind (id → JSON of the object) and a `meta` table holding the format version,
//! the configuration generation and the next id of each kind. The whole state is also kept in
//! memory (it is small: the control plane's objects, not flows), so reads never touch the disk.
//!
//! A change is made by [`Store::mutate`]: the closure edits a copy of the state, the copy is
//! checked ([`State::check`] plus the optional validator, e.g. the data plane's own
//! [`ServiceSet::validate`](fiberlb_shared::model::ServiceSet::validate)), the objects that
//! differ are written in one redb write transaction together with the incremented generation,
//! and the transaction is committed — redb's default durability fsyncs before `commit` returns —
//! before the new state becomes visible and before the caller can reply. A crash at any point
//! therefore loses nothing that was acknowledged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::model::{self, State};

/// Version of the on-disk format this build reads and writes.
pub const FORMAT_VERSION: u64 = 1;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LOAD_BALANCERS: TableDefinition<u32, &[u8]> = TableDefinition::new("load_balancers");
const LISTENERS: TableDefinition<u32, &[u8]> = TableDefinition::new("listeners");
const POOLS: TableDefinition<u32, &[u8]> = TableDefinition::new("pools");
const BACKENDS: TableDefinition<u32, &[u8]> = TableDefinition::new("backends");
const HEALTH_CHECKS: TableDefinition<u32, &[u8]> = TableDefinition::new("health_checks");

const KEY_FORMAT: &str = "format_version";
const KEY_GENERATION: &str = "generation";

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
    #[error("store {path}: format version {found} is newer than this fiberlbd supports ({supported}); run the fiberlbd that wrote it, or a newer one")]
    NewerFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("store {path}: format version {found} is unknown (this fiberlbd reads {supported}); it was not written by fiberlbd, or is damaged")]
    UnknownFormat {
        path: PathBuf,
        found: u64,
        supported: u64,
    },
    #[error("store {path}: {what}: {detail}; if another fiberlbd uses this store stop it, otherwise restore it from a backup")]
    Database {
        path: PathBuf,
        what: &'static str,
        detail: String,
    },
    #[error("store {path}: object {id} in table {table} cannot be decoded ({detail}); restore the store from a backup")]
    Corrupt {
        path: PathBuf,
        table: &'static str,
        id: u32,
        detail: String,
    },
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

struct Inner {
    state: Arc<State>,
    generation: u64,
    next_ids: [u32; 5],
}

/// The store. Cheap to share behind an `Arc`; writes are serialised by an internal mutex.
pub struct Store {
    db: Database,
    path: PathBuf,
    inner: Mutex<Inner>,
    validator: Option<Validator>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("path", &self.path).finish()
    }
}

/// The state being edited inside [`Store::mutate`], with id allocation.
#[derive(Debug)]
pub struct Txn {
    pub state: State,
    next_ids: [u32; 5],
}

impl Txn {
    /// A fresh id of `kind` (never reused, even after deletes).
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
}

fn db_err(path: &Path, what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> StoreError {
    let path = path.to_path_buf();
    move |e| StoreError::Database {
        path: path.clone(),
        what,
        detail: e.to_string(),
    }
}

macro_rules! dberr {
    ($path:expr, $what:expr) => {
        |e| db_err($path, $what)(&e)
    };
}

fn load_table<T: DeserializeOwned>(
    txn: &redb::ReadTransaction,
    def: TableDefinition<u32, &[u8]>,
    name: &'static str,
    path: &Path,
) -> Result<BTreeMap<u32, T>, StoreError> {
    let mut out = BTreeMap::new();
    let table = match txn.open_table(def) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(out),
        Err(e) => return Err(db_err(path, "open table")(&e)),
    };
    for entry in table.iter().map_err(dberr!(path, "read table"))? {
        let (k, v) = entry.map_err(dberr!(path, "read table"))?;
        let id = k.value();
        let obj = serde_json::from_slice(v.value()).map_err(|e| StoreError::Corrupt {
            path: path.to_path_buf(),
            table: name,
            id,
            detail: e.to_string(),
        })?;
        out.insert(id, obj);
    }
    Ok(out)
}

fn write_diff<T: Serialize + PartialEq>(
    txn: &redb::WriteTransaction,
    def: TableDefinition<u32, &[u8]>,
    old: &BTreeMap<u32, T>,
    new: &BTreeMap<u32, T>,
    path: &Path,
) -> Result<(), StoreError> {
    let mut table = txn.open_table(def).map_err(dberr!(path, "open table"))?;
    for id in old.keys().filter(|id| !new.contains_key(id)) {
        table.remove(id).map_err(dberr!(path, "delete"))?;
    }
    for (id, obj) in new.iter().filter(|(id, obj)| old.get(id) != Some(obj)) {
        let bytes = serde_json::to_vec(obj).map_err(dberr!(path, "encode"))?;
        table
            .insert(*id, bytes.as_slice())
            .map_err(dberr!(path, "write"))?;
    }
    Ok(())
}

impl Store {
    /// Opens (or creates) the store at `path`.
    ///
    /// # Errors
    /// [`StoreError::NewerFormat`] / [`StoreError::UnknownFormat`] for a store this build
    /// cannot read, [`StoreError::Database`] when the file cannot be opened (e.g. another
    /// fiberlbd holds it), [`StoreError::Corrupt`] for an undecodable object.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(dberr!(path, "create directory"))?;
        }
        let db = Database::create(path).map_err(dberr!(path, "open"))?;
        // Stamp a new store with the format version; check an existing one.
        {
            let w = db.begin_write().map_err(dberr!(path, "begin"))?;
            {
                let mut meta = w.open_table(META).map_err(dberr!(path, "open meta"))?;
                let found = meta
                    .get(KEY_FORMAT)
                    .map_err(dberr!(path, "read meta"))?
                    .map(|v| v.value());
                match found {
                    None => {
                        meta.insert(KEY_FORMAT, FORMAT_VERSION)
                            .map_err(dberr!(path, "write meta"))?;
                    }
                    Some(v) if v == FORMAT_VERSION => {}
                    Some(v) if v > FORMAT_VERSION && v < 1 << 16 => {
                        return Err(StoreError::NewerFormat {
                            path: path.to_path_buf(),
                            found: v,
                            supported: FORMAT_VERSION,
                        })
                    }
                    Some(v) => {
                        return Err(StoreError::UnknownFormat {
                            path: path.to_path_buf(),
                            found: v,
                            supported: FORMAT_VERSION,
                        })
                    }
                }
            }
            w.commit().map_err(dberr!(path, "commit"))?;
        }
        let r = db.begin_read().map_err(dberr!(path, "begin read"))?;
        let meta = r.open_table(META).map_err(dberr!(path, "open meta"))?;
        let get = |k: &str| -> Result<Option<u64>, StoreError> {
            Ok(meta
                .get(k)
                .map_err(dberr!(path, "read meta"))?
                .map(|v| v.value()))
        };
        let generation = get(KEY_GENERATION)?.unwrap_or(0);
        let mut next_ids = [1u32; 5];
        for k in Kind::ALL {
            if let Some(v) = get(k.next_id_key())? {
                next_ids[k.index()] = u32::try_from(v).unwrap_or(u32::MAX);
            }
        }
        let state = State {
            load_balancers: load_table(&r, LOAD_BALANCERS, "load_balancers", path)?,
            listeners: load_table(&r, LISTENERS, "listeners", path)?,
            pools: load_table(&r, POOLS, "pools", path)?,
            backends: load_table(&r, BACKENDS, "backends", path)?,
            health_checks: load_table(&r, HEALTH_CHECKS, "health_checks", path)?,
        };
        drop(meta);
        drop(r);
        Ok(Store {
            db,
            path: path.to_path_buf(),
            inner: Mutex::new(Inner {
                state: Arc::new(state),
                generation,
                next_ids,
            }),
            validator: None,
        })
    }

    /// Adds a whole-state check run before every commit.
    pub fn with_validator(mut self, v: Validator) -> Self {
        self.validator = Some(v);
        self
    }

    /// The file the store lives in.
    pub fn path(&self) -> &Path {
        &self.path
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

    /// Applies `f` to a copy of the state, checks the result and commits it durably. Returns
    /// `f`'s value and the generation after the change (unchanged when `f` changed nothing).
    ///
    /// Blocks on the disk (fsync): call it from `spawn_blocking` in async code.
    ///
    /// # Errors
    /// [`StoreError::Model`] when `f` or the checks refuse the change (nothing is written),
    /// [`StoreError::Database`] when the write fails (nothing is visible either).
    pub fn mutate<T>(
        &self,
        f: impl FnOnce(&mut Txn) -> Result<T, model::Error>,
    ) -> Result<(T, u64), StoreError> {
        let mut g = self.lock();
        let mut txn = Txn {
            state: (*g.state).clone(),
            next_ids: g.next_ids,
        };
        let value = f(&mut txn)?;
        if txn.state == *g.state {
            return Ok((value, g.generation));
        }
        txn.state.check()?;
        if let Some(v) = &self.validator {
            v(&txn.state)?;
        }
        let generation = g.generation + 1;
        let path = &self.path;
        let w = self.db.begin_write().map_err(dberr!(path, "begin"))?;
        {
            let old = &g.state;
            let new = &txn.state;
            write_diff(
                &w,
                LOAD_BALANCERS,
                &old.load_balancers,
                &new.load_balancers,
                path,
            )?;
            write_diff(&w, LISTENERS, &old.listeners, &new.listeners, path)?;
            write_diff(&w, POOLS, &old.pools, &new.pools, path)?;
            write_diff(&w, BACKENDS, &old.backends, &new.backends, path)?;
            write_diff(
                &w,
                HEALTH_CHECKS,
                &old.health_checks,
                &new.health_checks,
                path,
            )?;
            let mut meta = w.open_table(META).map_err(dberr!(path, "open meta"))?;
            meta.insert(KEY_GENERATION, generation)
                .map_err(dberr!(path, "write meta"))?;
            for k in Kind::ALL {
                meta.insert(k.next_id_key(), u64::from(txn.next_ids[k.index()]))
                    .map_err(dberr!(path, "write meta"))?;
            }
        }
        // Immediate durability (redb's default): the commit is on disk when this returns.
        w.commit().map_err(dberr!(path, "commit"))?;
        g.state = Arc::new(txn.state);
        g.generation = generation;
        g.next_ids = txn.next_ids;
        Ok((value, generation))
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
        assert_eq!(add_pool(&store, "a").unwrap(), (1, 1));
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
    }

    #[test]
    fn refuses_newer_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        drop(Store::open(&path).unwrap());
        {
            let db = Database::create(&path).unwrap();
            let w = db.begin_write().unwrap();
            w.open_table(META)
                .unwrap()
                .insert(KEY_FORMAT, FORMAT_VERSION + 1)
                .unwrap();
            w.commit().unwrap();
        }
        let err = Store::open(&path).unwrap_err();
        assert!(
            matches!(err, StoreError::NewerFormat { found: 2, .. }),
            "{err}"
        );
        assert!(err
            .to_string()
            .contains("newer than this fiberlbd supports"));
    }
}
