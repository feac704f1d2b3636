//! Stable ids: every object's id follows from what it is (a hash of its identity), so the same
//! file gives the same ids on every node and every restart (see the module documentation of
//! [`super`]).

use super::*;

/// A provisional id by position, linking objects while the file is read; [`assign_ids`]
/// replaces it before the set is returned.
pub(super) fn next_id(len: usize) -> u32 {
    // More than u32::MAX objects cannot come from a file that fits in memory.
    u32::try_from(len + 1).unwrap_or(u32::MAX)
}

/// Largest id given out: `u32::MAX` stays free because the data plane and the control plane use
/// it as a sentinel.
pub(super) const MAX_ID: u32 = u32::MAX - 1;

/// Seed of the id hash. Part of the services-file format, like the identity encodings below:
/// changing either renumbers every object of every file, which moves established flows.
pub(super) const ID_SEED: u64 = 0x6669_6265_726c_6964; // "fiberlid"

/// The id an identity has unless it collides: its hash reduced to `1..=MAX_ID`.
pub(super) fn home_id(hash: u64) -> u32 {
    let reduced = hash % u64::from(MAX_ID);
    // reduced < MAX_ID, so reduced + 1 <= MAX_ID fits.
    u32::try_from(reduced).map_or(MAX_ID, |r| r + 1)
}

pub(super) fn hash_identity(key: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(key, ID_SEED)
}

/// An address in an identity: a family tag, then the address bytes, so the bytes that follow
/// cannot be mistaken for more address.
pub(super) fn push_ip(key: &mut Vec<u8>, address: IpAddr) {
    match address {
        IpAddr::V4(a) => {
            key.push(4);
            key.extend_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            key.push(6);
            key.extend_from_slice(&a.octets());
        }
    }
}

pub(super) fn pool_identity(name: &str) -> Vec<u8> {
    let mut key = vec![b'p'];
    key.extend_from_slice(name.as_bytes());
    key
}

pub(super) fn listener_identity(l: &Listener) -> Vec<u8> {
    let mut key = vec![b'l'];
    push_ip(&mut key, l.vip);
    key.extend_from_slice(&l.port.to_be_bytes());
    key.push(l.protocol.ip_proto());
    key
}

/// The pool name goes last: everything before it has a fixed length, so no two
/// (pool, address, port) give the same bytes.
pub(super) fn backend_identity(pool: &str, address: IpAddr, port: u16) -> Vec<u8> {
    let mut key = vec![b'b'];
    push_ip(&mut key, address);
    key.extend_from_slice(&port.to_be_bytes());
    key.extend_from_slice(pool.as_bytes());
    key
}

/// Gives each identity a distinct id in `1..=MAX_ID`, independent of the order of `keys`.
///
/// First every id that exactly one identity hashes to goes to it, and a contested one to the
/// claimant whose identity sorts first; then the others, in sorted order, take the next free id
/// after their own (wrapping to 1). The hash is a parameter so tests can force collisions.
pub(super) fn assign_ids_with(keys: &[Vec<u8>], hash: impl Fn(&[u8]) -> u64) -> Vec<u32> {
    let homes: Vec<u32> = keys.iter().map(|k| home_id(hash(k))).collect();
    let mut order: Vec<(&[u8], usize)> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| (k.as_slice(), i))
        .collect();
    order.sort_unstable();
    let mut ids = vec![0u32; keys.len()];
    let mut taken: HashSet<u32> = HashSet::with_capacity(keys.len());
    let mut displaced = Vec::new();
    for &(_, i) in &order {
        let (Some(&home), Some(id)) = (homes.get(i), ids.get_mut(i)) else {
            continue;
        };
        if taken.insert(home) {
            *id = home;
        } else {
            displaced.push((i, home));
        }
    }
    for (i, home) in displaced {
        // Terminates: there are far fewer objects than ids (a file with 2^32 objects would
        // not fit in memory).
        let mut candidate = home;
        while !taken.insert(candidate) {
            candidate = if candidate >= MAX_ID {
                1
            } else {
                candidate + 1
            };
        }
        if let Some(id) = ids.get_mut(i) {
            *id = candidate;
        }
    }
    ids
}

/// Replaces every id of `set` with the one its identity gives (see the module documentation),
/// and points listeners and backends at their pools' new ids.
pub(super) fn assign_ids(set: &mut ServiceSet) {
    assign_ids_hashed(set, hash_identity);
}

pub(super) fn assign_ids_hashed(set: &mut ServiceSet, hash: impl Fn(&[u8]) -> u64 + Copy) {
    let pool_keys: Vec<Vec<u8>> = set.pools.iter().map(|p| pool_identity(&p.name)).collect();
    let pool_ids = assign_ids_with(&pool_keys, hash);
    // Old id -> (new id, name). Pool ids are unique here: the parser's are positional.
    let pools: HashMap<PoolId, (PoolId, String)> = set
        .pools
        .iter()
        .zip(&pool_ids)
        .map(|(p, &id)| (p.id, (PoolId(id), p.name.clone())))
        .collect();
    for (p, &id) in set.pools.iter_mut().zip(&pool_ids) {
        p.id = PoolId(id);
    }
    // A reference to no pool keeps its id (and an empty name), for validation to report.
    let resolve = |old: PoolId| {
        pools
            .get(&old)
            .map_or((old, ""), |(new, name)| (*new, name.as_str()))
    };

    let backend_keys: Vec<Vec<u8>> = set
        .backends
        .iter()
        .map(|b| backend_identity(resolve(b.pool).1, b.address, b.port))
        .collect();
    let backend_ids = assign_ids_with(&backend_keys, hash);
    for (b, &id) in set.backends.iter_mut().zip(&backend_ids) {
        b.id = BackendId(id);
        b.pool = resolve(b.pool).0;
    }

    let listener_keys: Vec<Vec<u8>> = set.listeners.iter().map(listener_identity).collect();
    let listener_ids = assign_ids_with(&listener_keys, hash);
    for (l, &id) in set.listeners.iter_mut().zip(&listener_ids) {
        l.id = ListenerId(id);
        l.pool = resolve(l.pool).0;
    }
}
