//! Transactions: the data plane assembles received messages into a new [`ServiceSet`]; the
//! control plane turns a desired change into messages. Pure: no I/O, no shared memory.
//!
//! A transaction is `Begin`, any number of `Reset`/upserts/deletes/`SetTunnel`, then
//! `Commit { count }` (or `Abort`), all carrying the same generation. `Begin` must name a
//! generation above the last applied one. The first problem inside a transaction poisons it:
//! later messages of it are swallowed and its `Commit` is answered with that first problem, so
//! the control plane gets exactly one reply per transaction. Messages outside any transaction
//! are answered one by one.
//!
//! The applied set is canonical: listeners, pools and backends sorted by id, whatever order the
//! messages came in.

use std::collections::BTreeMap;

use super::message::{Message, RejectCode};
use crate::model::{
    Backend, BackendId, Listener, ListenerId, Pool, PoolId, ServiceSet, TunnelSettings,
};

/// Most listeners a configuration may have (also the counters area's listener slots limit).
pub const MAX_LISTENERS: usize = 4096;
/// Most pools a configuration may have.
pub const MAX_POOLS: usize = 4096;
/// Most backends a configuration may have (also the counters area's backend slots limit).
pub const MAX_BACKENDS: usize = 65536;

/// What the control thread must do after a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Nothing yet: the transaction is still open (or the message was swallowed).
    Pending,
    /// Publish `services` and reply `Applied` for `generation`.
    Applied {
        generation: u64,
        services: ServiceSet,
    },
    /// Reply `Rejected` for `generation`.
    Rejected {
        generation: u64,
        code: RejectCode,
        reason: String,
    },
}

impl Outcome {
    /// The reply to send, if any: `(generation, message)`.
    pub fn reply(&self) -> Option<(u64, Message)> {
        match self {
            Outcome::Pending => None,
            Outcome::Applied { generation, .. } => Some((*generation, Message::Applied)),
            Outcome::Rejected {
                generation,
                code,
                reason,
            } => Some((*generation, Message::rejected(*code, reason))),
        }
    }
}

#[derive(Clone, Debug, Default)]
struct Working {
    listeners: BTreeMap<ListenerId, Listener>,
    pools: BTreeMap<PoolId, Pool>,
    backends: BTreeMap<BackendId, Backend>,
    tunnel: TunnelSettings,
}

impl Working {
    fn from_set(set: &ServiceSet) -> Self {
        Working {
            listeners: set.listeners.iter().map(|l| (l.id, l.clone())).collect(),
            pools: set.pools.iter().map(|p| (p.id, p.clone())).collect(),
            backends: set.backends.iter().map(|b| (b.id, b.clone())).collect(),
            tunnel: set.tunnel.clone(),
        }
    }

    fn into_set(self) -> ServiceSet {
        ServiceSet {
            listeners: self.listeners.into_values().collect(),
            pools: self.pools.into_values().collect(),
            backends: self.backends.into_values().collect(),
            tunnel: self.tunnel,
        }
    }

    /// Applies one body message; `Err` poisons the transaction.
    fn apply(&mut self, message: Message) -> Result<(), (RejectCode, String)> {
        fn upsert<K: Ord + Copy, V>(
            map: &mut BTreeMap<K, V>,
            key: K,
            value: V,
            max: usize,
            what: &str,
        ) -> Result<(), (RejectCode, String)> {
            if map.len() >= max && !map.contains_key(&key) {
                return Err((
                    RejectCode::TooManyObjects,
                    format!("more than {max} {what}s; the data plane has no room for more"),
                ));
            }
            map.insert(key, value);
            Ok(())
        }
        fn delete<K: Ord, V>(
            map: &mut BTreeMap<K, V>,
            key: &K,
            what: &str,
            id: u32,
        ) -> Result<(), (RejectCode, String)> {
            map.remove(key).map(drop).ok_or_else(|| {
                (
                    RejectCode::UnknownObject,
                    format!("delete of {what} id {id}, which does not exist: resync in full"),
                )
            })
        }
        match message {
            Message::Reset => *self = Working::default(),
            Message::UpsertListener(l) => {
                upsert(&mut self.listeners, l.id, l, MAX_LISTENERS, "listener")?
            }
            Message::UpsertPool(p) => upsert(&mut self.pools, p.id, p, MAX_POOLS, "pool")?,
            Message::UpsertBackend(b) => {
                upsert(&mut self.backends, b.id, b, MAX_BACKENDS, "backend")?
            }
            Message::DeleteListener(id) => delete(&mut self.listeners, &id, "listener", id.0)?,
            Message::DeletePool(id) => delete(&mut self.pools, &id, "pool", id.0)?,
            Message::DeleteBackend(id) => delete(&mut self.backends, &id, "backend", id.0)?,
            Message::SetTunnel(t) => self.tunnel = t,
            // The caller routes every other kind elsewhere.
            other => {
                return Err((
                    RejectCode::Malformed,
                    format!("{other:?} is not a transaction body message"),
                ))
            }
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Open {
    generation: u64,
    working: Working,
    count: u32,
    poisoned: Option<(RejectCode, String)>,
}

/// The data plane's transaction state machine.
#[derive(Debug)]
pub struct Assembler {
    current: ServiceSet,
    applied: u64,
    open: Option<Open>,
}

impl Assembler {
    /// Starts from the live configuration and its generation (empty and 0 at start-up).
    pub fn new(current: ServiceSet, applied_generation: u64) -> Self {
        Assembler {
            current,
            applied: applied_generation,
            open: None,
        }
    }

    /// The last applied configuration.
    pub fn current(&self) -> &ServiceSet {
        &self.current
    }

    /// Generation of the last applied configuration.
    pub fn applied_generation(&self) -> u64 {
        self.applied
    }

    /// Generation of the open transaction, if any.
    pub fn open_generation(&self) -> Option<u64> {
        self.open.as_ref().map(|o| o.generation)
    }

    /// A message that could not even be decoded, or arrived out of sequence: the open
    /// transaction (whose content is now in doubt) is discarded and the problem reported.
    pub fn protocol_error(&mut self, code: RejectCode, reason: &str) -> Outcome {
        let generation = self.open.take().map_or(0, |o| o.generation);
        Outcome::Rejected {
            generation,
            code,
            reason: reason.to_string(),
        }
    }

    /// Takes one decoded, in-sequence message of `generation`.
    pub fn accept(&mut self, generation: u64, message: Message) -> Outcome {
        let reject = |code, reason: String| Outcome::Rejected {
            generation,
            code,
            reason,
        };
        if message.is_reply() {
            return reject(
                RejectCode::WrongDirection,
                format!("{message:?} is a reply; the data plane only takes commands"),
            );
        }
        match message {
            Message::Begin => {
                if let Some(open) = self.open.take() {
                    return reject(
                        RejectCode::TransactionOpen,
                        format!(
                            "Begin({generation}) while transaction {} is open; both discarded, begin again",
                            open.generation
                        ),
                    );
                }
                if generation <= self.applied {
                    return reject(
                        RejectCode::StaleGeneration,
                        format!(
                            "generation {generation} is not above the applied generation {}",
                            self.applied
                        ),
                    );
                }
                self.open = Some(Open {
                    generation,
                    working: Working::from_set(&self.current),
                    count: 0,
                    poisoned: None,
                });
                Outcome::Pending
            }
            Message::Commit { count } => {
                let Some(open) = self.open.take() else {
                    return reject(RejectCode::NoTransaction, "Commit without Begin".into());
                };
                if open.generation != generation {
                    return mismatch(generation, open.generation, "Commit");
                }
                if let Some((code, reason)) = open.poisoned {
                    return reject(code, reason);
                }
                if count != open.count {
                    return reject(
                        RejectCode::CountMismatch,
                        format!(
                            "Commit says {count} messages, {} arrived: messages were lost",
                            open.count
                        ),
                    );
                }
                let services = open.working.into_set();
                if let Err(e) = services.validate() {
                    return reject(RejectCode::Invalid, e.to_string());
                }
                self.current = services.clone();
                self.applied = generation;
                Outcome::Applied {
                    generation,
                    services,
                }
            }
            Message::Abort => {
                let Some(open) = self.open.take() else {
                    return reject(RejectCode::NoTransaction, "Abort without Begin".into());
                };
                if open.generation != generation {
                    return mismatch(generation, open.generation, "Abort");
                }
                reject(RejectCode::Aborted, "aborted by the control plane".into())
            }
            body => {
                let Some(open) = self.open.as_mut() else {
                    return reject(
                        RejectCode::NoTransaction,
                        format!("{} outside a transaction", kind_label(&body)),
                    );
                };
                if open.generation != generation {
                    if open.poisoned.is_none() {
                        open.poisoned = Some((
                            RejectCode::GenerationMismatch,
                            format!(
                                "a message of generation {generation} inside transaction {}",
                                open.generation
                            ),
                        ));
                    }
                    return Outcome::Pending;
                }
                open.count = open.count.saturating_add(1);
                if open.poisoned.is_none() {
                    if let Err(p) = open.working.apply(body) {
                        open.poisoned = Some(p);
                    }
                }
                Outcome::Pending
            }
        }
    }
}

/// `Commit`/`Abort` for a generation other than the open one: the open transaction is
/// discarded too (the control plane lost track of it).
fn mismatch(generation: u64, open: u64, what: &str) -> Outcome {
    Outcome::Rejected {
        generation,
        code: RejectCode::GenerationMismatch,
        reason: format!("{what}({generation}) while transaction {open} is open; both discarded"),
    }
}

fn kind_label(message: &Message) -> &'static str {
    match message {
        Message::Reset => "Reset",
        Message::UpsertListener(_) => "UpsertListener",
        Message::DeleteListener(_) => "DeleteListener",
        Message::UpsertPool(_) => "UpsertPool",
        Message::DeletePool(_) => "DeletePool",
        Message::UpsertBackend(_) => "UpsertBackend",
        Message::DeleteBackend(_) => "DeleteBackend",
        Message::SetTunnel(_) => "SetTunnel",
        _ => "message",
    }
}

/// The messages that turn `old` into `new` as transaction `generation`: `Begin`, deletes
/// (listeners, backends, pools), upserts of what is new or changed (pools, backends,
/// listeners), `SetTunnel` if it changed, `Commit`. Objects are matched by id.
pub fn diff_to_messages(old: &ServiceSet, new: &ServiceSet) -> Vec<Message> {
    let old_w = Working::from_set(old);
    let new_w = Working::from_set(new);
    let mut body = Vec::new();
    for id in old_w
        .listeners
        .keys()
        .filter(|id| !new_w.listeners.contains_key(id))
    {
        body.push(Message::DeleteListener(*id));
    }
    for id in old_w
        .backends
        .keys()
        .filter(|id| !new_w.backends.contains_key(id))
    {
        body.push(Message::DeleteBackend(*id));
    }
    for id in old_w
        .pools
        .keys()
        .filter(|id| !new_w.pools.contains_key(id))
    {
        body.push(Message::DeletePool(*id));
    }
    for (id, p) in &new_w.pools {
        if old_w.pools.get(id) != Some(p) {
            body.push(Message::UpsertPool(p.clone()));
        }
    }
    for (id, b) in &new_w.backends {
        if old_w.backends.get(id) != Some(b) {
            body.push(Message::UpsertBackend(b.clone()));
        }
    }
    for (id, l) in &new_w.listeners {
        if old_w.listeners.get(id) != Some(l) {
            body.push(Message::UpsertListener(l.clone()));
        }
    }
    if old_w.tunnel != new_w.tunnel {
        body.push(Message::SetTunnel(new_w.tunnel.clone()));
    }
    wrap(body)
}

/// The messages that replace whatever the data plane has with `new`: `Begin`, `Reset`,
/// everything in `new`, `Commit`. For a full resync (new data plane instance, or generations
/// that disagree).
pub fn full_replay(new: &ServiceSet) -> Vec<Message> {
    let mut body = vec![Message::Reset, Message::SetTunnel(new.tunnel.clone())];
    body.extend(new.pools.iter().cloned().map(Message::UpsertPool));
    body.extend(new.backends.iter().cloned().map(Message::UpsertBackend));
    body.extend(new.listeners.iter().cloned().map(Message::UpsertListener));
    wrap(body)
}

fn wrap(body: Vec<Message>) -> Vec<Message> {
    let count = u32::try_from(body.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 2);
    out.push(Message::Begin);
    out.extend(body);
    out.push(Message::Commit { count });
    out
}

/// `set` in the canonical order the assembler produces (sorted by id).
pub fn canonical(set: &ServiceSet) -> ServiceSet {
    Working::from_set(set).into_set()
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use proptest::prelude::*;

    use super::*;
    use crate::model::{AdminState, Algorithm, Encap, Mode, Protocol};

    fn pool(id: u32) -> Pool {
        Pool {
            id: PoolId(id),
            name: format!("pool-{id}"),
            algorithm: Algorithm::Maglev,
            table_size: 7,
        }
    }

    fn backend(id: u32, pool: u32, weight: u32) -> Backend {
        Backend {
            id: BackendId(id),
            pool: PoolId(pool),
            address: IpAddr::V4(Ipv4Addr::new(10, 0, (id >> 8) as u8, id as u8)),
            port: 8080,
            weight,
            mac: None,
            admin: AdminState::Enabled,
            healthy: true,
        }
    }

    fn listener(id: u32, pool: u32) -> Listener {
        Listener {
            id: ListenerId(id),
            name: format!("lb/{id}/tcp"),
            vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, id as u8)),
            port: 80,
            protocol: Protocol::Tcp,
            mode: Mode::Dsr,
            encap: Encap::Ipip,
            pool: PoolId(pool),
        }
    }

    fn run(a: &mut Assembler, generation: u64, messages: Vec<Message>) -> Vec<Outcome> {
        messages
            .into_iter()
            .map(|m| a.accept(generation, m))
            .filter(|o| *o != Outcome::Pending)
            .collect()
    }

    fn rejected_code(outcomes: &[Outcome]) -> Option<RejectCode> {
        match outcomes {
            [Outcome::Rejected { code, .. }] => Some(*code),
            _ => None,
        }
    }

    fn simple_set() -> ServiceSet {
        ServiceSet {
            listeners: vec![listener(1, 1)],
            pools: vec![pool(1)],
            backends: vec![backend(1, 1, 10), backend(2, 1, 20)],
            tunnel: TunnelSettings::default(),
        }
    }

    #[test]
    fn commit_applies_and_replies_once() {
        let mut a = Assembler::new(ServiceSet::default(), 0);
        let out = run(&mut a, 1, full_replay(&simple_set()));
        assert_eq!(
            out,
            vec![Outcome::Applied {
                generation: 1,
                services: simple_set()
            }]
        );
        assert_eq!(a.applied_generation(), 1);
        assert_eq!(out[0].reply(), Some((1, Message::Applied)));
    }

    #[test]
    fn stale_generation_rejected() {
        let mut a = Assembler::new(simple_set(), 5);
        let out = run(&mut a, 5, vec![Message::Begin]);
        assert_eq!(rejected_code(&out), Some(RejectCode::StaleGeneration));
        assert_eq!(a.open_generation(), None);
    }

    #[test]
    fn out_of_order_messages_rejected() {
        let mut a = Assembler::new(ServiceSet::default(), 0);
        // Upsert without Begin.
        let out = run(&mut a, 1, vec![Message::UpsertPool(pool(1))]);
        assert_eq!(rejected_code(&out), Some(RejectCode::NoTransaction));
        // Commit without Begin.
        let out = run(&mut a, 1, vec![Message::Commit { count: 0 }]);
        assert_eq!(rejected_code(&out), Some(RejectCode::NoTransaction));
        // A second Begin discards both.
        let out = run(&mut a, 1, vec![Message::Begin]);
        assert!(out.is_empty());
        let out = run(&mut a, 2, vec![Message::Begin]);
        assert_eq!(rejected_code(&out), Some(RejectCode::TransactionOpen));
        assert_eq!(a.open_generation(), None);
        // Commit for another generation.
        run(&mut a, 3, vec![Message::Begin]);
        let out = run(&mut a, 4, vec![Message::Commit { count: 0 }]);
        assert_eq!(rejected_code(&out), Some(RejectCode::GenerationMismatch));
        assert_eq!(a.open_generation(), None);
        // A body message of another generation poisons the transaction.
        let out = run(&mut a, 5, vec![Message::Begin]);
        assert!(out.is_empty());
        assert_eq!(a.accept(6, Message::UpsertPool(pool(1))), Outcome::Pending);
        let out = run(&mut a, 5, vec![Message::Commit { count: 1 }]);
        assert_eq!(rejected_code(&out), Some(RejectCode::GenerationMismatch));
        // Replies are not commands.
        let out = run(&mut a, 9, vec![Message::Applied]);
        assert_eq!(rejected_code(&out), Some(RejectCode::WrongDirection));
        assert_eq!(a.applied_generation(), 0);
        assert_eq!(a.current(), &ServiceSet::default());
    }

    #[test]
    fn count_mismatch_rejected() {
        let mut a = Assembler::new(ServiceSet::default(), 0);
        let mut m = full_replay(&simple_set());
        let last = m.len() - 1;
        m[last] = Message::Commit { count: 99 };
        assert_eq!(
            rejected_code(&run(&mut a, 1, m)),
            Some(RejectCode::CountMismatch)
        );
        assert_eq!(a.current(), &ServiceSet::default());
    }

    #[test]
    fn invalid_result_rejected_and_old_kept() {
        let mut a = Assembler::new(simple_set(), 1);
        // A listener pointing at a pool that does not exist.
        let mut bad = simple_set();
        bad.listeners.push(listener(2, 42));
        let out = run(&mut a, 2, diff_to_messages(&simple_set(), &bad));
        assert_eq!(rejected_code(&out), Some(RejectCode::Invalid));
        let Outcome::Rejected { reason, .. } = &out[0] else {
            unreachable!()
        };
        assert!(reason.contains("pool id 42"), "{reason}");
        assert_eq!(a.current(), &simple_set());
        assert_eq!(a.applied_generation(), 1);
        // Deleting something that is not there poisons; the reply comes at Commit.
        let msgs = vec![
            Message::Begin,
            Message::DeleteBackend(BackendId(77)),
            Message::UpsertPool(pool(2)),
            Message::Commit { count: 2 },
        ];
        assert_eq!(
            rejected_code(&run(&mut a, 3, msgs)),
            Some(RejectCode::UnknownObject)
        );
    }

    #[test]
    fn abort_discards() {
        let mut a = Assembler::new(ServiceSet::default(), 0);
        let out = run(
            &mut a,
            1,
            vec![Message::Begin, Message::UpsertPool(pool(1)), Message::Abort],
        );
        assert_eq!(rejected_code(&out), Some(RejectCode::Aborted));
        assert_eq!(a.current(), &ServiceSet::default());
        // The generation was not used up.
        let out = run(
            &mut a,
            1,
            diff_to_messages(&ServiceSet::default(), &simple_set()),
        );
        assert!(matches!(out[..], [Outcome::Applied { generation: 1, .. }]));
    }

    #[test]
    fn protocol_error_discards_open_transaction() {
        let mut a = Assembler::new(ServiceSet::default(), 0);
        run(&mut a, 4, vec![Message::Begin]);
        let out = a.protocol_error(RejectCode::Malformed, "bad checksum");
        assert!(matches!(
            out,
            Outcome::Rejected {
                generation: 4,
                code: RejectCode::Malformed,
                ..
            }
        ));
        assert_eq!(a.open_generation(), None);
    }

    /// Valid sets over small id spaces, so that two random sets overlap.
    fn arb_set() -> impl Strategy<Value = ServiceSet> {
        (
            proptest::collection::btree_set(0u32..6, 1..6),
            proptest::collection::btree_map(
                0u32..40,
                (any::<prop::sample::Index>(), 0u32..100),
                0..20,
            ),
            proptest::collection::btree_map(0u32..10, any::<prop::sample::Index>(), 0..8),
            any::<u16>().prop_map(|p| p.max(1)),
        )
            .prop_map(|(pools, backends, listeners, gue_port)| {
                let pools: Vec<u32> = pools.into_iter().collect();
                ServiceSet {
                    backends: backends
                        .into_iter()
                        .map(|(id, (p, w))| backend(id, pools[p.index(pools.len())], w))
                        .collect(),
                    listeners: listeners
                        .into_iter()
                        .map(|(id, p)| listener(id, pools[p.index(pools.len())]))
                        .collect(),
                    pools: pools.into_iter().map(pool).collect(),
                    tunnel: TunnelSettings {
                        gue_port,
                        ..TunnelSettings::default()
                    },
                }
            })
    }

    proptest! {
        #[test]
        fn diff_applied_to_old_gives_new(old in arb_set(), new in arb_set()) {
            prop_assert!(old.validate().is_ok());
            let mut a = Assembler::new(old.clone(), 1);
            let out = run(&mut a, 2, diff_to_messages(&old, &new));
            prop_assert_eq!(out, vec![Outcome::Applied { generation: 2, services: canonical(&new) }]);
            // And a full replay from anything gives the same.
            let out = run(&mut a, 3, full_replay(&new));
            prop_assert_eq!(out, vec![Outcome::Applied { generation: 3, services: canonical(&new) }]);
        }
    }

    #[test]
    fn diff_of_equal_sets_is_empty() {
        assert_eq!(
            diff_to_messages(&simple_set(), &simple_set()),
            vec![Message::Begin, Message::Commit { count: 0 }]
        );
    }
}
