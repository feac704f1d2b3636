//! `store = "redb"`: the embedded single-node store.
//!
//! One table per kind (id → JSON of the object) and a `meta` table holding the format version,
//! the configuration generation and the next id of each kind. A commit writes the objects that
//! differ in one redb write transaction together with the incremented generation; redb's
//! default durability fsyncs before `commit` returns, so a crash at any point loses nothing
//! that was acknowledged.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{Kind, Loaded, StoreError, FORMAT_VERSION};
use crate::model::State;

const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const LOAD_BALANCERS: TableDefinition<u32, &[u8]> = TableDefinition::new("load_balancers");
const LISTENERS: TableDefinition<u32, &[u8]> = TableDefinition::new("listeners");
const POOLS: TableDefinition<u32, &[u8]> = TableDefinition::new("pools");
const BACKENDS: TableDefinition<u32, &[u8]> = TableDefinition::new("backends");
const HEALTH_CHECKS: TableDefinition<u32, &[u8]> = TableDefinition::new("health_checks");

const KEY_FORMAT: &str = "format_version";
const KEY_GENERATION: &str = "generation";

/// The redb database behind a [`Store`](super::Store).
pub(super) struct RedbEngine {
    db: Database,
    path: PathBuf,
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
            store: path.display().to_string(),
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

impl RedbEngine {
    /// Opens (or creates) the database at `path` and reads the whole state.
    pub(super) fn open(path: &Path) -> Result<(RedbEngine, Loaded), StoreError> {
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
                    Some(v) => super::check_format(&path.display().to_string(), v)?,
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
        Ok((
            RedbEngine {
                db,
                path: path.to_path_buf(),
            },
            Loaded {
                state,
                generation,
                next_ids,
                live_leases: None,
            },
        ))
    }

    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the difference `old` → `new` with `generation` and `next_ids`, durably.
    pub(super) fn commit(
        &self,
        old: &State,
        new: &State,
        generation: u64,
        next_ids: &[u32; 5],
    ) -> Result<(), StoreError> {
        let path = &self.path;
        let w = self.db.begin_write().map_err(dberr!(path, "begin"))?;
        {
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
                meta.insert(k.next_id_key(), u64::from(next_ids[k.index()]))
                    .map_err(dberr!(path, "write meta"))?;
            }
        }
        // Immediate durability (redb's default): the commit is on disk when this returns.
        w.commit().map_err(dberr!(path, "commit"))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

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
