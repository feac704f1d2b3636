//! `store = "etcd"`: the configuration of a tier of nodes in etcd (v3 API).
//!
//! Keys under the prefix `P` (default `/fiberlb`):
//!
//! | key | value |
//! |---|---|
//! | `P/meta/format_version` | `1` |
//! | `P/meta/generation` | the configuration generation, decimal |
//! | `P/meta/next_id.<kind>` | the next id of each kind, decimal |
//! | `P/objects/<table>/<id>` | the object, JSON (the same encoding as the redb tables) |
//! | `P/leases/<lease id>` | the registered backend's id, attached to the etcd lease |
//!
//! A commit is one etcd transaction: `if P/meta/generation == G then (puts and deletes of the
//! objects that differ, generation = G + 1, next ids, lease keys) else (read the whole
//! prefix)`. A node whose copy is stale gets the current state back in the same round trip and
//! runs the change again on it ([`Store::mutate`](super::Store::mutate)).
//!
//! Every node watches the prefix from the revision it read; each watch event makes it read the
//! prefix again (one consistent range read: the state is small) and install the result when
//! its generation is newer. When the watch fails (etcd down, compaction) the node keeps the
//! configuration it has, reports the store unreachable and resyncs with a full read when etcd
//! answers again. The last configuration seen is also cached in a local file, so a fiberlbd
//! restarted during an etcd outage programs the data plane with it instead of nothing.

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, PutOptions, TxnOp, TxnOpResponse,
    WatchOptions,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::{check_format, Kind, Loaded, Store, StoreError, FORMAT_VERSION};
use crate::model::{self, State};

/// `[etcd]` in controlplane.toml.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// `http://host:2379` or `https://host:2379` (with `ca_file`).
    pub endpoints: Vec<String>,
    /// Key prefix of this tier's configuration.
    #[serde(default = "default_prefix")]
    pub prefix: String,
    /// PEM CA certificate that signed the etcd servers' certificates.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate and key (etcd `--client-cert-auth`).
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Per-request timeout: a write answers UNAVAILABLE after it.
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
    /// etcd's `--max-txn-ops` (128 by default): a change touching more objects is refused
    /// with a message rather than failing inside etcd.
    #[serde(default = "default_max_txn_ops")]
    pub max_txn_ops: usize,
    /// The local cache of the last configuration seen (default: `etcd-cache.json` beside
    /// `store_path`).
    pub cache_path: Option<PathBuf>,
}

fn default_prefix() -> String {
    "/fiberlb".into()
}
fn default_timeout_ms() -> u64 {
    2000
}
fn default_max_txn_ops() -> usize {
    128
}

impl EtcdConfig {
    /// A configuration with `endpoints` and the defaults.
    pub fn new<S: Into<String>>(endpoints: impl IntoIterator<Item = S>) -> Self {
        EtcdConfig {
            endpoints: endpoints.into_iter().map(Into::into).collect(),
            prefix: default_prefix(),
            ca_file: None,
            cert_file: None,
            key_file: None,
            username: None,
            password: None,
            timeout_ms: default_timeout_ms(),
            max_txn_ops: default_max_txn_ops(),
            cache_path: None,
        }
    }

    /// Checks the section; the message names the field.
    ///
    /// # Errors
    /// The first invalid field.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err(
                "endpoints: list at least one etcd endpoint (\"http://10.0.0.1:2379\")".into(),
            );
        }
        for (i, e) in self.endpoints.iter().enumerate() {
            let rest = e
                .strip_prefix("http://")
                .or_else(|| e.strip_prefix("https://"))
                .ok_or_else(|| {
                    format!("endpoints[{i}]: {e:?} must start with http:// or https://")
                })?;
            if rest.is_empty() || rest.contains('/') {
                return Err(format!("endpoints[{i}]: {e:?} must be http(s)://host:port"));
            }
            if e.starts_with("http://") && self.ca_file.is_some() {
                return Err(format!(
                    "endpoints[{i}]: {e:?} is http:// but ca_file is set; use https://"
                ));
            }
        }
        if !self.prefix.starts_with('/') || self.prefix.ends_with('/') || self.prefix.len() < 2 {
            return Err(format!(
                "prefix: {:?} must start with '/' and not end with one (e.g. \"/fiberlb\")",
                self.prefix
            ));
        }
        if self.cert_file.is_some() != self.key_file.is_some() {
            return Err("cert_file and key_file: give both or neither".into());
        }
        if self.username.is_some() != self.password.is_some() {
            return Err("username and password: give both or neither".into());
        }
        if !(100..=60_000).contains(&self.timeout_ms) {
            return Err("timeout_ms: must be 100-60000".into());
        }
        if self.max_txn_ops < 16 {
            return Err("max_txn_ops: must be at least 16".into());
        }
        Ok(())
    }
}

/// The local cache file's content.
#[derive(Serialize, Deserialize)]
struct Cache {
    prefix: String,
    generation: u64,
    next_ids: [u32; 5],
    state: State,
}

/// The etcd connection behind a [`Store`].
pub(crate) struct EtcdEngine {
    client: Client,
    prefix: String,
    endpoints: String,
    handle: tokio::runtime::Handle,
    max_txn_ops: usize,
    cache_path: Option<PathBuf>,
}

fn unavailable(endpoints: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable {
        endpoints: endpoints.to_string(),
        detail: e.to_string(),
    }
}

/// An etcd client error as an operator reads it: the gRPC code and message, plus the
/// connection failure behind a transport error (not tonic's whole debug chain).
fn describe(e: &etcd_client::Error) -> String {
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let debug = format!("{e:?}");
            let cause = [
                "ConnectionRefused",
                "TimedOut",
                "HostUnreachable",
                "NetworkUnreachable",
            ]
            .into_iter()
            .find(|c| debug.contains(c))
            .map_or(String::new(), |c| format!(" ({c})"));
            format!("{:?}: {}{cause}", s.code(), s.message())
        }
        other => other.to_string(),
    }
}

/// Whether a request failed before reaching any etcd server (a member that is down): safe to
/// send again, the balanced channel then picks another endpoint.
fn never_sent(e: &etcd_client::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("ConnectError") || text.contains("tcp connect error")
}

/// Runs `f` again while it fails with a connection error (a dead member among several
/// endpoints), at most a few times.
async fn resend<T, Fut>(mut f: impl FnMut() -> Fut) -> Result<T, etcd_client::Error>
where
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 0;
    loop {
        match f().await {
            Err(e) if never_sent(&e) && attempt < 8 => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(10 * attempt)).await;
            }
            r => return r,
        }
    }
}

const TABLES: [&str; 5] = [
    "load_balancers",
    "listeners",
    "pools",
    "backends",
    "health_checks",
];

impl EtcdEngine {
    /// Connects and reads the prefix; falls back to the local cache when etcd cannot be
    /// reached (returning why as the third value).
    pub(super) async fn connect(
        config: &EtcdConfig,
    ) -> Result<(EtcdEngine, Loaded, Option<String>), StoreError> {
        let endpoints = config.endpoints.join(",");
        let mut opts = ConnectOptions::new()
            .with_timeout(Duration::from_millis(config.timeout_ms))
            .with_connect_timeout(Duration::from_millis(config.timeout_ms))
            .with_keep_alive(
                Duration::from_secs(2),
                Duration::from_millis(config.timeout_ms),
            )
            .with_keep_alive_while_idle(true);
        if let (Some(u), Some(p)) = (&config.username, &config.password) {
            opts = opts.with_user(u.clone(), p.clone());
        }
        if config.ca_file.is_some() || config.cert_file.is_some() {
            let mut tls = etcd_client::TlsOptions::new();
            if let Some(ca) = &config.ca_file {
                let pem = std::fs::read(ca).map_err(|e| {
                    unavailable(&endpoints, format!("[etcd] ca_file {}: {e}", ca.display()))
                })?;
                tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
            }
            if let (Some(c), Some(k)) = (&config.cert_file, &config.key_file) {
                let read = |p: &PathBuf| {
                    std::fs::read(p).map_err(|e| {
                        unavailable(&endpoints, format!("[etcd] {}: {e}", p.display()))
                    })
                };
                tls = tls.identity(etcd_client::Identity::from_pem(read(c)?, read(k)?));
            }
            opts = opts.with_tls(tls);
        }
        let client = Client::connect(&config.endpoints, Some(opts))
            .await
            .map_err(|e| unavailable(&endpoints, describe(&e)))?;
        let engine = EtcdEngine {
            client,
            prefix: config.prefix.clone(),
            endpoints,
            handle: tokio::runtime::Handle::current(),
            max_txn_ops: config.max_txn_ops,
            cache_path: config.cache_path.clone(),
        };
        match engine.load().await {
            Ok((loaded, _)) => {
                engine.save_cache(&loaded);
                Ok((engine, loaded, None))
            }
            Err(StoreError::Unavailable { detail, .. }) => match engine.read_cache() {
                Some(loaded) => {
                    log::warn!(
                        "store: etcd ({}) is unreachable ({detail}); starting from the cached \
                         configuration at generation {} until it answers",
                        engine.endpoints,
                        loaded.generation
                    );
                    Ok((engine, loaded, Some(detail)))
                }
                None => Err(unavailable(
                    &engine.endpoints,
                    format!("{detail} (and no cached configuration to start from)"),
                )),
            },
            Err(e) => Err(e),
        }
    }

    /// "etcd http://...,http://... prefix /fiberlb".
    pub(super) fn location(&self) -> String {
        format!("{} prefix {}", self.endpoints, self.prefix)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/{rest}", self.prefix)
    }

    fn store_name(&self) -> String {
        format!("etcd {}", self.location())
    }

    /// Decodes a whole-prefix read.
    fn decode(&self, kvs: &[etcd_client::KeyValue]) -> Result<Loaded, StoreError> {
        let mut state = State::default();
        let mut generation = 0;
        let mut next_ids = [1u32; 5];
        let mut live = HashSet::new();
        let base = format!("{}/", self.prefix);
        let number = |v: &[u8]| -> Option<u64> { std::str::from_utf8(v).ok()?.parse().ok() };
        for kv in kvs {
            let Some(rest) = kv.key().strip_prefix(base.as_bytes()) else {
                continue;
            };
            let Ok(rest) = std::str::from_utf8(rest) else {
                continue;
            };
            if let Some(meta) = rest.strip_prefix("meta/") {
                let v = number(kv.value());
                if meta == "format_version" {
                    check_format(&self.store_name(), v.unwrap_or(0))?;
                } else if meta == "generation" {
                    generation = v.unwrap_or(0);
                } else if let Some(k) = Kind::ALL.iter().find(|k| k.next_id_key() == meta) {
                    next_ids[k.index()] = v.and_then(|v| u32::try_from(v).ok()).unwrap_or(u32::MAX);
                }
            } else if let Some(lease) = rest.strip_prefix("leases/") {
                if let Ok(id) = lease.parse::<i64>() {
                    live.insert(id);
                }
            } else if let Some(obj) = rest.strip_prefix("objects/") {
                let Some((table, id)) = obj.split_once('/') else {
                    continue;
                };
                let Ok(id) = id.parse::<u32>() else { continue };
                let corrupt = |table: &'static str, e: serde_json::Error| StoreError::Corrupt {
                    store: self.store_name(),
                    table,
                    id,
                    detail: e.to_string(),
                };
                let v = kv.value();
                match table {
                    "load_balancers" => {
                        let o = serde_json::from_slice(v).map_err(|e| corrupt(TABLES[0], e))?;
                        state.load_balancers.insert(id, o);
                    }
                    "listeners" => {
                        let o = serde_json::from_slice(v).map_err(|e| corrupt(TABLES[1], e))?;
                        state.listeners.insert(id, o);
                    }
                    "pools" => {
                        let o = serde_json::from_slice(v).map_err(|e| corrupt(TABLES[2], e))?;
                        state.pools.insert(id, o);
                    }
                    "backends" => {
                        let o = serde_json::from_slice(v).map_err(|e| corrupt(TABLES[3], e))?;
                        state.backends.insert(id, o);
                    }
                    "health_checks" => {
                        let o = serde_json::from_slice(v).map_err(|e| corrupt(TABLES[4], e))?;
                        state.health_checks.insert(id, o);
                    }
                    _ => {}
                }
            }
        }
        Ok(Loaded {
            state,
            generation,
            next_ids,
            live_leases: Some(live),
        })
    }

    /// Reads the whole prefix: the state and the revision it was read at.
    pub(super) async fn load(&self) -> Result<(Loaded, i64), StoreError> {
        let kv = self.client.kv_client();
        let resp = resend(|| {
            let mut kv = kv.clone();
            let key = format!("{}/", self.prefix);
            async move { kv.get(key, Some(GetOptions::new().with_prefix())).await }
        })
        .await
        .map_err(|e| unavailable(&self.endpoints, describe(&e)))?;
        let revision = resp.header().map_or(0, |h| h.revision());
        Ok((self.decode(resp.kvs())?, revision))
    }

    /// Puts and deletes for the objects of one table that differ.
    fn diff_ops<T: Serialize + PartialEq>(
        &self,
        table: &str,
        old: &BTreeMap<u32, T>,
        new: &BTreeMap<u32, T>,
        ops: &mut Vec<TxnOp>,
    ) -> Result<(), StoreError> {
        for id in old.keys().filter(|id| !new.contains_key(id)) {
            ops.push(TxnOp::delete(
                self.key(&format!("objects/{table}/{id}")),
                None,
            ));
        }
        for (id, obj) in new.iter().filter(|(id, obj)| old.get(id) != Some(obj)) {
            let bytes = serde_json::to_vec(obj).map_err(|e| unavailable(&self.endpoints, e))?;
            ops.push(TxnOp::put(
                self.key(&format!("objects/{table}/{id}")),
                bytes,
                None,
            ));
        }
        Ok(())
    }

    /// Commits `old` → `new` if etcd is still at `base_generation`. `Ok(None)`: committed;
    /// `Ok(Some(current))`: another node committed first, here is the current state.
    /// Blocking (called from `Store::mutate` on a blocking thread).
    pub(super) fn commit(
        &self,
        old: &State,
        base_generation: u64,
        new: &State,
        generation: u64,
        next_ids: &[u32; 5],
        leases: &[(i64, u32)],
    ) -> Result<Option<Loaded>, StoreError> {
        let mut ops = Vec::new();
        self.diff_ops(
            TABLES[0],
            &old.load_balancers,
            &new.load_balancers,
            &mut ops,
        )?;
        self.diff_ops(TABLES[1], &old.listeners, &new.listeners, &mut ops)?;
        self.diff_ops(TABLES[2], &old.pools, &new.pools, &mut ops)?;
        self.diff_ops(TABLES[3], &old.backends, &new.backends, &mut ops)?;
        self.diff_ops(TABLES[4], &old.health_checks, &new.health_checks, &mut ops)?;
        let gen_key = self.key("meta/generation");
        ops.push(TxnOp::put(gen_key.clone(), generation.to_string(), None));
        for k in Kind::ALL {
            ops.push(TxnOp::put(
                self.key(&format!("meta/{}", k.next_id_key())),
                next_ids[k.index()].to_string(),
                None,
            ));
        }
        for (lease, backend) in leases {
            ops.push(TxnOp::put(
                self.key(&format!("leases/{lease}")),
                backend.to_string(),
                Some(PutOptions::new().with_lease(*lease)),
            ));
        }
        let compare = if base_generation == 0 {
            ops.push(TxnOp::put(
                self.key("meta/format_version"),
                FORMAT_VERSION.to_string(),
                None,
            ));
            Compare::version(gen_key, CompareOp::Equal, 0)
        } else {
            Compare::value(gen_key, CompareOp::Equal, base_generation.to_string())
        };
        if ops.len() > self.max_txn_ops {
            return Err(StoreError::Model(model::Error::FailedPrecondition(
                format!(
                    "this change writes {} etcd keys, more than [etcd] max_txn_ops = {} (etcd's \
                 --max-txn-ops); split it into smaller changes or raise both",
                    ops.len(),
                    self.max_txn_ops
                ),
            )));
        }
        let txn = etcd_client::Txn::new()
            .when([compare])
            .and_then(ops)
            .or_else([TxnOp::get(
                format!("{}/", self.prefix),
                Some(GetOptions::new().with_prefix()),
            )]);
        let kv = self.client.kv_client();
        let resp = self
            .handle
            .block_on(resend(|| {
                let mut kv = kv.clone();
                let txn = txn.clone();
                async move { kv.txn(txn).await }
            }))
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("requested lease not found") {
                    StoreError::Model(model::Error::NotFound {
                        kind: "lease",
                        id: leases
                            .first()
                            .map_or(String::new(), |l| format!("{} (expired)", l.0)),
                    })
                } else {
                    unavailable(&self.endpoints, describe(&e))
                }
            })?;
        if resp.succeeded() {
            return Ok(None);
        }
        for r in resp.op_responses() {
            if let TxnOpResponse::Get(g) = r {
                return Ok(Some(self.decode(g.kvs())?));
            }
        }
        Err(unavailable(
            &self.endpoints,
            "etcd refused the transaction without returning the current state",
        ))
    }

    /// Grants a lease of `ttl_ms` (rounded up to whole seconds, at least 1). Blocking.
    pub(super) fn grant(&self, ttl_ms: u64) -> Result<model::Lease, StoreError> {
        let secs = ttl_ms.div_ceil(1000).max(1);
        let c = self.client.lease_client();
        let ttl = i64::try_from(secs).unwrap_or(i64::MAX);
        let r = self
            .handle
            .block_on(resend(|| {
                let mut c = c.clone();
                async move { c.grant(ttl, None).await }
            }))
            .map_err(|e| unavailable(&self.endpoints, describe(&e)))?;
        Ok(model::Lease {
            id: r.id(),
            ttl_ms: u64::try_from(r.ttl()).unwrap_or(0) * 1000,
        })
    }

    /// Renews lease `id` once; its TTL in ms, `None` when it expired. Blocking.
    pub(super) fn keep_alive(&self, id: i64) -> Result<Option<u64>, StoreError> {
        let c = self.client.lease_client();
        let ttl = self
            .handle
            .block_on(resend(|| {
                let mut c = c.clone();
                async move {
                    let (mut keeper, mut stream) = c.keep_alive(id).await?;
                    keeper.keep_alive().await?;
                    Ok::<_, etcd_client::Error>(stream.message().await?.map_or(0, |r| r.ttl()))
                }
            }))
            .map_err(|e| unavailable(&self.endpoints, describe(&e)))?;
        Ok((ttl > 0).then(|| u64::try_from(ttl).unwrap_or(0) * 1000))
    }

    /// Writes the local cache (the shared atomic write: temporary file, fsync, rename; an
    /// unreadable cache is ignored at start, it is only a fallback).
    pub(super) fn save_cache(&self, loaded: &Loaded) {
        let Some(path) = &self.cache_path else {
            return;
        };
        let cache = Cache {
            prefix: self.prefix.clone(),
            generation: loaded.generation,
            next_ids: loaded.next_ids,
            state: loaded.state.clone(),
        };
        let write = || -> std::io::Result<()> {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let bytes = serde_json::to_vec(&cache).map_err(std::io::Error::other)?;
            fiberlb_shared::atomic_file::write_atomic(path, &bytes, 0o600)
                .map_err(|(step, e)| std::io::Error::new(e.kind(), format!("{step}: {e}")))
        };
        if let Err(e) = write() {
            log::warn!("store: cannot write the etcd cache {}: {e}", path.display());
        }
    }

    fn read_cache(&self) -> Option<Loaded> {
        let path = self.cache_path.as_ref()?;
        let bytes = std::fs::read(path).ok()?;
        match serde_json::from_slice::<Cache>(&bytes) {
            Ok(c) if c.prefix == self.prefix => Some(Loaded {
                state: c.state,
                generation: c.generation,
                next_ids: c.next_ids,
                // Lease liveness is unknown until etcd answers: keep every backend.
                live_leases: None,
            }),
            Ok(_) => None,
            Err(e) => {
                log::warn!("store: ignoring the etcd cache {}: {e}", path.display());
                None
            }
        }
    }
}

/// Watches the prefix and installs every new generation; resyncs after failures.
pub(super) async fn watch_loop(store: Arc<Store>, mut stop: watch::Receiver<bool>) {
    let Some(engine) = store.engine_etcd() else {
        return;
    };
    let mut backoff = Duration::from_millis(100);
    loop {
        let result = tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            r = watch_once(&store, engine) => r,
        };
        if let Err(e) = result {
            if store.health.borrow().reachable {
                log::warn!(
                    "store: {e}; keeping generation {}",
                    store.snapshot().generation
                );
            }
            let detail = match e {
                StoreError::Unavailable { detail, .. } => detail,
                other => other.to_string(),
            };
            store.set_reachable(Some(detail));
        }
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// One watch session: full read, then watch from the revision after it; every event batch
/// triggers a full read. Returns on any failure.
async fn watch_once(store: &Store, engine: &EtcdEngine) -> Result<(), StoreError> {
    let (loaded, revision) = engine.load().await?;
    sync(store, loaded);
    let client = engine.client.watch_client();
    let mut stream = resend(|| {
        let mut client = client.clone();
        let key = format!("{}/", engine.prefix);
        async move {
            client
                .watch(
                    key,
                    Some(
                        WatchOptions::new()
                            .with_prefix()
                            .with_start_revision(revision + 1),
                    ),
                )
                .await
        }
    })
    .await
    .map_err(|e| unavailable(&engine.endpoints, describe(&e)))?;
    loop {
        let msg = stream
            .message()
            .await
            .map_err(|e| unavailable(&engine.endpoints, describe(&e)))?;
        let Some(msg) = msg else {
            return Err(unavailable(&engine.endpoints, "the watch stream ended"));
        };
        if msg.canceled() {
            // Compacted past our revision, or the server cancelled: start over with a full read.
            return Err(unavailable(
                &engine.endpoints,
                format!("watch cancelled ({})", msg.cancel_reason()),
            ));
        }
        if msg.events().is_empty() {
            continue;
        }
        let (loaded, _) = engine.load().await?;
        sync(store, loaded);
    }
}

fn sync(store: &Store, loaded: Loaded) {
    store.set_reachable(None);
    let generation = loaded.generation;
    if store.install(loaded) {
        log::debug!("store: installed generation {generation} from etcd");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_names_the_field() {
        let ok = EtcdConfig::new(["http://127.0.0.1:2379"]);
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.endpoints.clear();
        assert!(c.validate().unwrap_err().starts_with("endpoints"));
        let mut c = ok.clone();
        c.endpoints = vec!["127.0.0.1:2379".into()];
        assert!(c.validate().unwrap_err().contains("http://"));
        let mut c = ok.clone();
        c.prefix = "fiberlb/".into();
        assert!(c.validate().unwrap_err().starts_with("prefix"));
        let mut c = ok.clone();
        c.cert_file = Some("/x".into());
        assert!(c.validate().unwrap_err().contains("key_file"));
        let mut c = ok;
        c.username = Some("u".into());
        assert!(c.validate().unwrap_err().contains("password"));
    }
}
