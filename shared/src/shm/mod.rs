//! The shared-memory region between fiberlb's two processes, and the protocol spoken over it.
//!
//! - [`ring`]: single-producer single-consumer rings of fixed-size slots (loom-checked).
//! - [`message`]: the fixed-size, checksummed binary encoding of commands and replies.
pub mod channel;
pub mod message;
pub mod ring;
pub(crate) mod sync;
pub mod transaction;
