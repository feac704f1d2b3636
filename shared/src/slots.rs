//! The data plane's slot → object map, `<region>.slots.json`: which listener and backend holds
//! which counter slot of the shared-memory region, written by the data plane's control thread
//! after every apply and read by the control plane's metrics and the data plane's offline
//! `stats` command. The one definition of the format; unknown fields are ignored and the
//! fields added over time default, so an older or newer file still reads.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// `<region path>.slots.json`.
pub fn slots_path_for(region: &Path) -> PathBuf {
    let mut s = region.as_os_str().to_owned();
    s.push(".slots.json");
    PathBuf::from(s)
}

/// Which object holds which counter slot, written next to the region after every apply.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlotsFile {
    /// Hex id of the data plane instance that wrote it (a file left by a previous instance is
    /// ignored: its slots would name the wrong objects).
    pub instance_id: String,
    /// Generation of the snapshot the slots belong to.
    pub generation: u64,
    /// The data plane's control-thread counters when the file was written.
    #[serde(default)]
    pub control: ControlCounts,
    /// Workers this data plane runs (counter blocks past it are unused). Absent in files of
    /// older data planes: readers then show the blocks that counted anything.
    #[serde(default)]
    pub workers: Option<u32>,
    #[serde(default)]
    pub listeners: Vec<ListenerSlot>,
    #[serde(default)]
    pub backends: Vec<BackendSlot>,
}

/// The data plane control thread's counters (a plain copy, for JSON).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlCounts {
    pub applied: u64,
    pub rejected_corrupt: u64,
    pub rejected_out_of_order: u64,
    pub rejected_protocol: u64,
    pub rejected_invalid: u64,
    pub aborted: u64,
    pub stale_discarded: u64,
    pub replies_dropped: u64,
    pub ring_errors: u64,
}

/// A listener's counter slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ListenerSlot {
    pub slot: u32,
    pub id: u32,
    pub name: String,
    pub vip: IpAddr,
    pub port: u16,
    /// `tcp` / `udp` ([`crate::model::Protocol`]'s string form).
    pub protocol: String,
    /// `nat` / `dsr` / ... ([`crate::model::Mode`]'s string form); empty in old files.
    #[serde(default)]
    pub mode: String,
}

/// A backend's counter slot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendSlot {
    pub slot: u32,
    pub id: u32,
    pub pool: String,
    pub address: IpAddr,
    pub port: u16,
}

impl SlotsFile {
    /// The slots file at `path` if it was written by the instance `instance_id` (hex); `None`
    /// when missing, unreadable, not a slots file or another instance's.
    pub fn read_if_instance(path: &Path, instance_id: &str) -> Option<SlotsFile> {
        let bytes = std::fs::read(path).ok()?;
        let f: SlotsFile = serde_json::from_slice(&bytes).ok()?;
        (f.instance_id == instance_id).then_some(f)
    }

    /// The slots file of `region`'s data plane (see [`Self::read_if_instance`]).
    #[cfg(not(loom))]
    pub fn read_for(region: &crate::shm::region::Region) -> Option<SlotsFile> {
        let id = format!("{:032x}", region.header().instance_id());
        Self::read_if_instance(&slots_path_for(region.path()), &id)
    }

    /// Writes the file to `path` atomically, owner-only, without fsyncs
    /// ([`crate::atomic_file::replace_atomic`]: the data plane rewrites it at every start and
    /// every commit, and it is written inside each commit, before Applied — two fsyncs there
    /// cost up to ~1 ms per commit when the region is on a disk).
    ///
    /// # Errors
    /// The failing step and its error, as text.
    pub fn write(&self, path: &Path) -> Result<(), String> {
        let bytes = serde_json::to_vec_pretty(self).map_err(|e| e.to_string())?;
        crate::atomic_file::replace_atomic(path, &bytes, 0o600)
            .map_err(|(op, e)| format!("{op}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file as the data plane writes it reads back equal; a minimal old one (no control,
    /// workers, mode) still reads, with defaults.
    #[test]
    fn round_trip_and_old_files() {
        let f = SlotsFile {
            instance_id: "00ff".into(),
            generation: 7,
            control: ControlCounts {
                applied: 3,
                ..ControlCounts::default()
            },
            workers: Some(2),
            listeners: vec![ListenerSlot {
                slot: 0,
                id: 1,
                name: "web".into(),
                vip: "10.0.0.10".parse().unwrap(),
                port: 80,
                protocol: "tcp".into(),
                mode: "nat".into(),
            }],
            backends: vec![BackendSlot {
                slot: 1,
                id: 9,
                pool: "web".into(),
                address: "10.1.0.1".parse().unwrap(),
                port: 8080,
            }],
        };
        let s = serde_json::to_string_pretty(&f).unwrap();
        assert_eq!(serde_json::from_str::<SlotsFile>(&s).unwrap(), f);
        let old: SlotsFile = serde_json::from_str(
            r#"{"instance_id":"ab","generation":1,"future":true,
                "listeners":[{"slot":0,"id":1,"name":"x","vip":"::1","port":53,"protocol":"udp"}]}"#,
        )
        .unwrap();
        assert_eq!((old.workers, old.control), (None, ControlCounts::default()));
        assert_eq!(old.listeners[0].mode, "");
        assert!(old.backends.is_empty());
    }
}
