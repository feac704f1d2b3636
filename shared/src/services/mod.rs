//! The services file: fiberlb's declarative configuration in YAML.
//!
//! The data plane reads it with `--services` and `replay --services` ([`parse_services`]);
//! `fiberlbctl apply -f` takes the same schema ([`parse_services_without_node_settings`], which
//! also returns the health checks). There is one writer: [`to_yaml_document`] writes a
//! [`ServicesDocument`] (what `fiberlbctl export`, alias `get`, prints: it builds one from the
//! API's objects), and [`to_yaml`] writes a bare [`ServiceSet`] through it. A file is
//! either accepted whole or rejected with the line, the column and the reason of the first
//! problem — nothing is ever half-applied, because the result is one [`ServiceSet`] that has
//! passed [`ServiceSet::validate`].
//!
//! # Schema
//!
//! ```yaml
//! tunnel:                         # optional: node-wide tunnel settings
//!   source_v4: 10.10.0.1          # outer source of IPv4 outer headers; required when a tunnel
//!                                 #   listener has IPv4 backends
//!   source_v6: "fd00::1"          # outer source of IPv6 outer headers; required when a tunnel
//!                                 #   listener has IPv6 backends
//!   gue_port: 6080                # UDP destination port of GUE, 1-65535, default 6080
//! loadbalancers:                  # optional; absent, null or [] means no services
//!   - name: web                   # required, unique; letters, digits, '.', '_', '-' (1-128)
//!     vip: 10.10.0.100            # required, IPv4 or IPv6 unicast address
//!     listeners:                  # optional list (may be empty)
//!       - port: 80                # required, 1-65535
//!         protocol: tcp           # required: tcp | udp
//!         mode: nat               # required: dsr | tunnel | nat
//!         pool: web               # required, name of a pool below
//!         encap: ipip             # only for mode tunnel: ipip (default) | gue
//!         name: web-http          # optional, unique; default "<loadbalancer>/<port>/<protocol>"
//! health_checks:                  # optional; fiberlbd runs them, the data plane ignores them
//!   - name: web-http              # required, unique; letters, digits, '.', '_', '-'
//!     kind: http                  # required: tcp | http | https | udp
//!     path: /healthz              # http/https only; default "/"
//!     expect_status: 200-399      # http/https only: a status or a range; default 200-399
//!     send: "ping"                # udp only, required there: the datagram sent
//!     expect: "pong"              # udp only: the reply expected (default: any reply)
//!     interval_ms: 2000           # the four numbers default to fiberlbd's [health_defaults]
//!     timeout_ms: 1000            #   (timeout <= interval)
//!     rise: 2                     # 1-100 successes to come up
//!     fall: 3                     # 1-100 failures to go down
//! pools:                          # optional
//!   - name: web                   # required, unique; any 1-128 printable characters
//!     algorithm: maglev           # maglev (5-tuple, default) | maglev-source-ip (3-tuple:
//!                                 #   every connection of a client to the same backend)
//!     table_size: 65537           # Maglev table size, must be prime, default 65537
//!     health_check: web-http      # optional: a health check above (fiberlbctl apply attaches
//!                                 #   it; a pool without one has none)
//!     backends:                   # optional list; a pool with no backends is valid (its
//!                                 #   listeners drop with a counter)
//!       - address: 10.10.1.1      # required, IPv4 or IPv6 unicast address
//!         port: 8080              # required, 1-65535; the destination port after nat (dsr and
//!                                 #   tunnel keep the VIP port)
//!         weight: 1               # 0-10000 (0 = existing flows only), default 1
//!         mac: "02:00:00:00:01:01" # optional: the backend's MAC (dsr) or next hop's (tunnel,
//!                                 #   nat); default: the data plane's gateway MAC
//!         state: enabled          # enabled (default) | drained (existing flows only) | disabled
//!         healthy: true           # optional bool, default true
//! ```
//!
//! Flow mappings (`{port: 80, protocol: tcp, mode: nat, pool: web}`) and block mappings are
//! equivalent. An empty file, or one without load balancers, is a valid empty configuration.
//! A field set to null (`weight: ~` or `weight:`) takes its default. Anchors and aliases work;
//! merge keys (`<<`), custom tags and several documents in one file do not.
//!
//! # Ids
//! The data plane keys its flow tables and counters by object ids, so ids come from what an
//! object *is*, never from where it stands in the file: reordering the file, or adding, editing
//! or removing one object, leaves every other object's id alone.
//! - A pool's id comes from its name.
//! - A listener's id comes from its VIP, port and protocol — what its packets are matched by.
//!   Its name, mode, encap and pool can change without changing its id, and so can the name of
//!   its load balancer.
//! - A backend's id comes from its pool's name, its address and its port. Renaming a pool
//!   therefore gives the pool and its backends new ids (their flows start over), nothing else.
//!
//! The id is an xxh64 hash of that identity with a fixed seed, reduced to 1-4294967294: 0 means
//! "none" to the data plane and 4294967295 (`u32::MAX`) is a sentinel. The same identity gives
//! the same id on every node, restart and release. When two objects of one kind hash to the
//! same id (for 10,000 objects, about one file in a hundred has such a pair), the one whose
//! identity sorts first keeps it and the other takes the next free id; this too does not
//! depend on the order of the file. An object whose hash no other object of its kind shares
//! always gets exactly its hash, so only colliding objects can see their ids move when others
//! are added or removed.
//!
//! # Rules beyond the types
//! Load balancer, pool and listener names are unique; a listener names an existing pool; no
//! two listeners share VIP, port and protocol; a backend appears once per pool; and
//! everything [`ServiceSet::validate`] checks (address families of `dsr` and `nat` backends,
//! tunnel source addresses, one `nat` listener per backend address/port/protocol so replies map
//! back to one VIP, prime table sizes).
//!
//! # Errors
//! Every [`ServicesError`] about the file's content carries the 1-based line and column of the
//! offending node: the key for unknown fields, the value for bad values, the list entry for
//! missing fields and duplicates, the node an alias is used at. Only "cannot read the file"
//! has no line.
//!
//! Scalars follow YAML 1.2: `yes`/`no` are not booleans, and a number in quotes (`"80"`) is a
//! string, refused where a number is expected. Unquoted MACs and IPv6 addresses are fine.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use saphyr_parser::{Event, Marker, Parser, ScalarStyle, Tag};

use crate::maglev::{check_table_size, DEFAULT_TABLE_SIZE};
use crate::model::{
    format_mac, is_usable_unicast, parse_mac, AdminState, Algorithm, Backend, BackendId, Encap,
    Listener, ListenerId, Mac, Mode, ModelError, Pool, PoolId, Protocol, ServiceSet,
    DEFAULT_GUE_PORT, MAX_WEIGHT,
};

/// Deepest nesting accepted. The schema needs 5 levels; the limit keeps hostile input from
/// exhausting the stack when the tree is dropped.
const MAX_DEPTH: usize = 32;

/// Longest name accepted (load balancers, listeners, pools).
const MAX_NAME_LEN: usize = 128;

/// Why a services file was rejected, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ServicesError {
    /// 1-based line of the offending node, when the problem has a place in the file.
    pub line: Option<usize>,
    /// 1-based column (in characters) of the offending node.
    pub column: Option<usize>,
    /// What was wrong and, where it is not obvious, what is allowed.
    pub message: String,
    /// The file, when the text came from [`load_services`].
    pub path: Option<PathBuf>,
}

impl ServicesError {
    fn at(mark: Mark, message: impl Into<String>) -> ServicesError {
        ServicesError {
            line: Some(mark.line),
            column: Some(mark.col),
            message: message.into(),
            path: None,
        }
    }

    /// `path:line:col: message`, as compilers print it, so editors can jump to the place.
    fn render(&self) -> String {
        let mut out = String::new();
        match &self.path {
            Some(path) => {
                let _ = write!(out, "{}", path.display());
                if let Some(line) = self.line {
                    let _ = write!(out, ":{line}");
                    if let Some(col) = self.column {
                        let _ = write!(out, ":{col}");
                    }
                }
                out.push_str(": ");
            }
            None => {
                if let Some(line) = self.line {
                    let _ = write!(out, "line {line}");
                    if let Some(col) = self.column {
                        let _ = write!(out, ", column {col}");
                    }
                    out.push_str(": ");
                }
            }
        }
        out.push_str(&self.message);
        out
    }
}

/// Parses and validates a services file's text.
///
/// # Errors
/// The first problem found, with its line and column (see the module documentation).
pub fn parse_services(text: &str) -> Result<ServiceSet, ServicesError> {
    let root = build_tree(text)?;
    let mut conv = Converter::default();
    if let Some(root) = &root {
        conv.document(root)?;
    }
    conv.finish()
}

/// [`parse_services`] for a file applied to a control plane (`fiberlbctl apply -f`): the
/// file's `tunnel` section is node-wide and not applied there (each node's fiberlbd has its own
/// `[tunnel]`), so tunnel listeners are accepted without one; everything else is checked alike.
///
/// # Errors
/// As [`parse_services`], without [`ModelError::MissingTunnelSource`].
pub fn parse_services_without_node_settings(text: &str) -> Result<ServicesDocument, ServicesError> {
    let root = build_tree(text)?;
    let mut conv = Converter {
        node_settings_optional: true,
        ..Converter::default()
    };
    if let Some(root) = &root {
        conv.document(root)?;
    }
    let mut pool_health_checks = BTreeMap::new();
    for (pool, hc, mark) in std::mem::take(&mut conv.pool_checks) {
        if !conv.health_check_names.contains_key(&hc) {
            return Err(ServicesError::at(
                mark,
                format!(
                    "pool {pool:?} names health check {hc:?}, which health_checks does not define"
                ),
            ));
        }
        pool_health_checks.insert(pool, hc);
    }
    let health_checks = std::mem::take(&mut conv.health_checks);
    let load_balancers = std::mem::take(&mut conv.load_balancers);
    Ok(ServicesDocument {
        set: conv.finish()?,
        load_balancers,
        health_checks,
        pool_health_checks,
    })
}

/// A services file as the control plane reads it ([`parse_services_without_node_settings`]) and
/// `fiberlbctl export` writes it ([`to_yaml_document`]): the service set plus the load
/// balancers and the health checks (which the data plane does not use: it ignores them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicesDocument {
    pub set: ServiceSet,
    /// Each load balancer's name and VIP, in file order (the flattened set has listeners only).
    pub load_balancers: Vec<(String, std::net::IpAddr)>,
    pub health_checks: Vec<HealthCheckSpec>,
    /// Pool name → health check name.
    pub pool_health_checks: BTreeMap<String, String>,
}

/// A `health_checks:` entry. Numbers left out are 0 and strings empty: the control plane's
/// defaults (`[health_defaults]`) apply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthCheckSpec {
    pub name: String,
    /// tcp | http | https | udp
    pub kind: String,
    pub interval_ms: u32,
    pub timeout_ms: u32,
    pub rise: u32,
    pub fall: u32,
    /// http/https: the path requested.
    pub http_path: String,
    /// http/https: accepted status range.
    pub expected_status: Option<(u32, u32)>,
    /// udp: the datagram sent.
    pub udp_send: String,
    /// udp: the reply expected (empty: any).
    pub udp_expect: String,
}

/// Reads, parses and validates a services file.
///
/// # Errors
/// When the file cannot be read, is not UTF-8, or is rejected by [`parse_services`]; the error
/// carries `path`.
pub fn load_services(path: &Path) -> Result<ServiceSet, ServicesError> {
    let with_path = |mut e: ServicesError| {
        e.path = Some(path.to_path_buf());
        e
    };
    let bytes = std::fs::read(path).map_err(|e| {
        with_path(ServicesError {
            line: None,
            column: None,
            message: format!("cannot read the services file: {e}"),
            path: None,
        })
    })?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let before = e.as_bytes().get(..valid).unwrap_or_default();
        let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
        let col = 1 + before.iter().rev().take_while(|&&b| b != b'\n').count();
        with_path(ServicesError {
            line: Some(line),
            column: Some(col),
            message: "the file is not valid UTF-8; save it as UTF-8".to_string(),
            path: None,
        })
    })?;
    parse_services(&text).map_err(with_path)
}

mod convert;
mod fields;
mod ids;
#[cfg(test)]
mod tests;
mod tree;
mod write;

use convert::*;
use fields::*;
use ids::*;
use tree::*;
pub use write::{to_yaml, to_yaml_document};
