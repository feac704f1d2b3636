//! The shared-memory region between fiberlb's two processes, and the protocol spoken over it.
//!
//! - [`region`]: the mapped file (hugetlbfs or `/dev/shm`, 0600), its header, one data plane and
//!   one control plane per region.
//! - [`ring`]: single-producer single-consumer rings of fixed-size slots, loom-checked.
//! - [`message`]: the fixed-size, checksummed encoding of commands and replies.
//! - [`channel`]: ring + codec + sequence-number check.
//! - [`transaction`]: the data plane's transaction assembler and the control plane's diff.
//! - [`counters`]: per-worker counters, written by one worker each, summed by readers.
//!
//! `region` and `counters` live in mapped memory and are not built under `--cfg loom`.

pub mod channel;
#[cfg(not(loom))]
pub mod counters;
pub mod message;
#[cfg(not(loom))]
pub mod region;
pub mod ring;
pub(crate) mod sync;
pub mod transaction;
