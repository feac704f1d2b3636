//! fiberlb's control plane. For now: the CLI's offline commands.
#![forbid(unsafe_code)]
