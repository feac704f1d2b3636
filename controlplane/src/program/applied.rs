//! What was last applied to which data plane instance, persisted beside the store.

use super::*;

/// What was last applied to which data plane instance; persisted so that a restarted control
/// plane can tell whether the data plane already has its configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedRecord {
    /// The data plane's instance id.
    #[serde(with = "hex_u128")]
    pub instance_id: u128,
    /// The generation the data plane applied.
    pub generation: u64,
    /// The store generation that transaction carried the configuration of.
    pub store_generation: u64,
    /// Digest of the whole service set sent (see [`services_digest`]): node settings that are
    /// not in the store (tunnel sources from fiberlbd's config, resolved MACs) change it too,
    /// so a restart with a changed config resyncs instead of resuming. 0 in old records.
    #[serde(default)]
    pub services_digest: u64,
}

/// A digest of everything a service set tells the data plane, independent of message order.
pub fn services_digest(set: &ServiceSet) -> u64 {
    let canon = fiberlb_shared::shm::transaction::canonical(set);
    xxhash_rust::xxh3::xxh3_64(format!("{canon:?}").as_bytes())
}

mod hex_u128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{v:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        u128::from_str_radix(&s, 16).map_err(serde::de::Error::custom)
    }
}

/// Where the [`AppliedRecord`] lives (a file next to the store by default; the store may keep
/// it itself).
pub trait AppliedStateStore: Send + Sync {
    /// The last record saved, if any.
    ///
    /// # Errors
    /// When it exists but cannot be read.
    fn load(&self) -> Result<Option<AppliedRecord>, ProgramError>;
    /// Saves `record`, replacing the previous one.
    ///
    /// # Errors
    /// When it cannot be written.
    fn save(&self, record: &AppliedRecord) -> Result<(), ProgramError>;
}

/// An [`AppliedRecord`] kept as a small JSON file (mode 0600), replaced atomically.
#[derive(Clone, Debug)]
pub struct FileAppliedState {
    path: PathBuf,
}

impl FileAppliedState {
    /// The record at `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileAppliedState { path: path.into() }
    }

    /// `<store path>.applied.json`, beside the store.
    pub fn beside(store_path: &Path) -> Self {
        let mut s = store_path.as_os_str().to_owned();
        s.push(".applied.json");
        FileAppliedState::new(s)
    }

    /// Where the record is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, reason: impl std::fmt::Display) -> ProgramError {
        ProgramError::State {
            path: self.path.clone(),
            reason: reason.to_string(),
        }
    }
}

impl AppliedStateStore for FileAppliedState {
    fn load(&self) -> Result<Option<AppliedRecord>, ProgramError> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| self.err(format!("{e}; delete it to force a full resync"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Without fsyncs ([`fiberlb_shared::atomic_file::replace_atomic`]): a crash of fiberlbd
    /// still finds a whole record, and what a power loss can cost — an old or empty one — is
    /// one full resync, which a power loss causes anyway (the data plane restarts too).
    fn save(&self, record: &AppliedRecord) -> Result<(), ProgramError> {
        let bytes = serde_json::to_vec(record).map_err(|e| self.err(e))?;
        fiberlb_shared::atomic_file::replace_atomic(&self.path, &bytes, 0o600)
            .map_err(|(step, e)| self.err(format!("{step}: {e}")))
    }
}

/// An in-memory [`AppliedStateStore`] (tests, or a control plane that always resyncs).
#[derive(Debug, Default)]
pub struct MemoryAppliedState(std::sync::Mutex<Option<AppliedRecord>>);

impl AppliedStateStore for MemoryAppliedState {
    fn load(&self) -> Result<Option<AppliedRecord>, ProgramError> {
        Ok(*self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn save(&self, record: &AppliedRecord) -> Result<(), ProgramError> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(*record);
        Ok(())
    }
}
