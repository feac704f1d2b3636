//! Leases of registered backends with `store = "redb"`: timers in fiberlbd.
//!
//! A lease lives in memory only. After a restart, every registered backend found in the store
//! gets a fresh full time to live ([`LocalLeases::adopt`]): a restart of fiberlbd must not
//! remove instances whose agents are alive and will renew within their TTL; those that are
//! gone expire one TTL later.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::model::{Lease, State};

#[derive(Debug)]
struct Entry {
    ttl: Duration,
    deadline: Instant,
}

/// fiberlbd's own leases.
#[derive(Debug)]
pub(super) struct LocalLeases {
    map: Mutex<HashMap<i64, Entry>>,
    next: AtomicI64,
}

impl Default for LocalLeases {
    fn default() -> Self {
        // Ids differ across restarts (an agent holding an id from before a restart gets
        // NOT_FOUND on its next keep-alive rather than renewing someone else's lease).
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_secs() as i64);
        LocalLeases {
            map: Mutex::new(HashMap::new()),
            next: AtomicI64::new((seed & 0x7fff_ffff) << 24),
        }
    }
}

impl LocalLeases {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new lease of `ttl_ms`.
    pub(super) fn grant(&self, ttl_ms: u64) -> Lease {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let ttl = Duration::from_millis(ttl_ms);
        self.lock().insert(
            id,
            Entry {
                ttl,
                deadline: Instant::now() + ttl,
            },
        );
        Lease { id, ttl_ms }
    }

    /// Renews `id`: its TTL in milliseconds, `None` when it does not exist or expired.
    pub(super) fn keep_alive(&self, id: i64) -> Option<u64> {
        let now = Instant::now();
        let mut map = self.lock();
        let e = map.get_mut(&id)?;
        if e.deadline <= now {
            return None;
        }
        e.deadline = now + e.ttl;
        Some(u64::try_from(e.ttl.as_millis()).unwrap_or(u64::MAX))
    }

    /// Whether lease `id` has expired (an unknown id counts as expired).
    pub(super) fn expired(&self, id: i64) -> bool {
        self.lock()
            .get(&id)
            .is_none_or(|e| e.deadline <= Instant::now())
    }

    /// Drops the expired entries (after their backends were removed).
    pub(super) fn forget_expired(&self) {
        let now = Instant::now();
        self.lock().retain(|_, e| e.deadline > now);
    }

    /// Gives every registered backend of `state` a full TTL from now (at start).
    pub(super) fn adopt(&self, state: &State) {
        let now = Instant::now();
        let mut map = self.lock();
        for l in state.backends.values().filter_map(|b| b.lease) {
            let ttl = Duration::from_millis(l.ttl_ms);
            map.entry(l.id).or_insert(Entry {
                ttl,
                deadline: now + ttl,
            });
            let _ = self.next.fetch_max(l.id, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grant_renew_expire() {
        let l = LocalLeases::default();
        let a = l.grant(60_000);
        let b = l.grant(1);
        assert_ne!(a.id, b.id);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(l.keep_alive(a.id), Some(60_000));
        assert_eq!(l.keep_alive(b.id), None);
        assert!(!l.expired(a.id));
        assert!(l.expired(b.id));
        assert!(l.expired(12345));
        l.forget_expired();
        assert_eq!(l.keep_alive(b.id), None);
    }
}
