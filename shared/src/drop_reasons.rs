//! The names of the data plane's drop reasons: the one list both processes use (the data
//! plane's `DropReason::name` reads it, the control plane labels its metrics with it, the
//! shared-memory counters area has one slot per entry). Built under loom too (no mapped
//! memory), unlike [`crate::shm::counters`], which re-exports it.

/// Names of the data plane's drop reasons, in counter order: the one list both processes use
/// (the data plane's `DropReason::ALL` is tested against it). Slots past the end have no name
/// yet; readers show them as `reason_<n>` (see [`drop_reason_label`]).
pub const DROP_REASON_NAMES: [&str; 13] = [
    "malformed",
    "not_ip",
    "unsupported_protocol",
    "no_listener",
    "no_backend",
    "ttl_exceeded",
    "fragment_ambiguous",
    "icmp_not_for_vip",
    "too_big_for_tunnel",
    "no_headroom",
    "no_next_hop",
    "unsupported_extension",
    "tx_ring_full",
];

/// The name of drop-reason slot `reason`: its entry in [`DROP_REASON_NAMES`], or
/// `reason_<n>` for a slot a newer data plane may use.
pub fn drop_reason_label(reason: usize) -> String {
    DROP_REASON_NAMES
        .get(reason)
        .map_or_else(|| format!("reason_{reason}"), |n| (*n).to_string())
}
