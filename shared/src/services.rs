//! The services file: fiberlb's declarative configuration in YAML.
//!
//! The data plane reads it with `--services` and `replay --services`; `fiberlbctl apply -f`
//! takes the same schema and `fiberlbctl get -o yaml` prints it ([`to_yaml`]). A file is
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
//! pools:                          # optional
//!   - name: web                   # required, unique; any 1-128 printable characters
//!     algorithm: maglev           # maglev (5-tuple, default) | maglev-source-ip (3-tuple:
//!                                 #   every connection of a client to the same backend)
//!     table_size: 65537           # Maglev table size, must be prime, default 65537
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
    Ok(ServicesDocument {
        set: conv.finish()?,
        health_checks,
        pool_health_checks,
    })
}

/// A services file as the control plane reads it: the service set plus the health checks
/// (which the data plane does not use: it ignores them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServicesDocument {
    pub set: ServiceSet,
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

// ---------------------------------------------------------------------------------------------
// YAML events -> a small tree whose every node knows where it started.

/// A place in the text, both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Mark {
    line: usize,
    col: usize,
}

impl Mark {
    const START: Mark = Mark { line: 1, col: 1 };

    fn from_marker(m: &Marker) -> Mark {
        Mark {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }

    /// The end of `text`: its last line, just after its last character.
    fn end_of(text: &str) -> Mark {
        // YAML's line breaks: `\n`, `\r\n` and a lone `\r`.
        let lines = 1 + text.matches('\n').count() + text.matches('\r').count()
            - text.matches("\r\n").count();
        let last = text.rsplit(['\n', '\r']).next().unwrap_or("");
        Mark {
            line: lines,
            col: last.chars().count() + 1,
        }
    }

    /// The mark moved back inside the text ending at `end`: at the end of a file without a
    /// final line break the YAML scanner puts its position on the line after the last (found
    /// by fuzzing), where an editor cannot go.
    fn within(self, end: Mark) -> Mark {
        if self.line > end.line {
            end
        } else {
            self
        }
    }
}

#[derive(Clone, Debug)]
struct Node {
    mark: Mark,
    kind: Kind,
}

/// Collections are shared so that an alias costs no copy (and a chain of aliases cannot blow
/// up memory).
#[derive(Clone, Debug)]
enum Kind {
    Null,
    /// `plain` is false for quoted and block scalars and for `!!str`: such a scalar is always
    /// a string, never a number or a boolean.
    Scalar {
        text: Rc<str>,
        plain: bool,
    },
    Seq(Rc<[Node]>),
    Map(Rc<[(Node, Node)]>),
}

impl Kind {
    fn describe(&self) -> String {
        match self {
            Kind::Null => "null".to_string(),
            Kind::Scalar { text, plain: true } => format!("`{}`", shorten(text)),
            Kind::Scalar { text, plain: false } => format!("the string {:?}", shorten(text)),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
        }
    }
}

fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

enum Frame {
    Seq {
        mark: Mark,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        mark: Mark,
        anchor: usize,
        entries: Vec<(Node, Node)>,
        key: Option<Node>,
    },
}

/// Whether a tag is allowed, and whether it forces the scalar to be a string.
fn check_tag(tag: Option<&Tag>, mark: Mark) -> Result<bool, ServicesError> {
    let Some(tag) = tag else { return Ok(false) };
    if tag.is_yaml_core_schema() {
        match tag.suffix.as_str() {
            "str" => return Ok(true),
            "int" | "bool" | "null" | "float" | "map" | "seq" => return Ok(false),
            _ => {}
        }
    }
    Err(ServicesError::at(
        mark,
        format!(
            "unsupported YAML tag {tag}; services files use no tags (except core ones like !!str)"
        ),
    ))
}

fn build_tree(text: &str) -> Result<Option<Node>, ServicesError> {
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;
    let mut documents = 0usize;
    let end = Mark::end_of(text);

    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(|e| {
            ServicesError::at(
                Mark::from_marker(e.marker()).within(end),
                format!("YAML syntax error: {}", e.info()),
            )
        })?;
        let mark = Mark::from_marker(&span.start).within(end);
        let node = match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => continue,
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(ServicesError::at(
                        mark,
                        "a second YAML document starts here; a services file holds exactly one",
                    ));
                }
                continue;
            }
            Event::Alias(id) => {
                let target = anchors.get(&id).ok_or_else(|| {
                    ServicesError::at(mark, "alias to an anchor that is not complete here")
                })?;
                Node {
                    mark,
                    kind: target.kind.clone(),
                }
            }
            Event::Scalar(value, style, anchor, tag) => {
                let forced_str = check_tag(tag.as_deref(), mark)?;
                let plain = matches!(style, ScalarStyle::Plain) && !forced_str;
                let kind = if plain && matches!(&*value, "" | "~" | "null" | "Null" | "NULL") {
                    Kind::Null
                } else {
                    Kind::Scalar {
                        text: Rc::from(&*value),
                        plain,
                    }
                };
                let node = Node { mark, kind };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
            Event::SequenceStart(anchor, tag) => {
                check_tag(tag.as_deref(), mark)?;
                open(
                    &mut stack,
                    Frame::Seq {
                        mark,
                        anchor,
                        items: Vec::new(),
                    },
                )?;
                continue;
            }
            Event::MappingStart(anchor, tag) => {
                check_tag(tag.as_deref(), mark)?;
                open(
                    &mut stack,
                    Frame::Map {
                        mark,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    },
                )?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => {
                let (anchor, node) = match stack.pop() {
                    Some(Frame::Seq {
                        mark,
                        anchor,
                        items,
                    }) => (
                        anchor,
                        Node {
                            mark,
                            kind: Kind::Seq(Rc::from(items)),
                        },
                    ),
                    Some(Frame::Map {
                        mark,
                        anchor,
                        entries,
                        key,
                    }) => {
                        if let Some(key) = key {
                            return Err(ServicesError::at(key.mark, "mapping key without a value"));
                        }
                        (
                            anchor,
                            Node {
                                mark,
                                kind: Kind::Map(Rc::from(entries)),
                            },
                        )
                    }
                    None => {
                        return Err(ServicesError::at(mark, "YAML syntax error: unbalanced end"))
                    }
                };
                if anchor > 0 {
                    anchors.insert(anchor, node.clone());
                }
                node
            }
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => *key = Some(node),
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(root)
}

fn open(stack: &mut Vec<Frame>, frame: Frame) -> Result<(), ServicesError> {
    if stack.len() >= MAX_DEPTH {
        let (Frame::Seq { mark, .. } | Frame::Map { mark, .. }) = frame;
        return Err(ServicesError::at(
            mark,
            format!("nesting deeper than {MAX_DEPTH} levels; the schema needs 5"),
        ));
    }
    stack.push(frame);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Typed reading of the tree, one helper per kind of value, each failing at the node's place.

/// A mapping's fields, after checking their names against the schema.
struct Fields<'a> {
    what: &'static str,
    mark: Mark,
    entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Fields<'a> {
    /// The value of a field; a null value counts as absent, so it takes the default.
    fn get(&self, name: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, v)| *k == name && !matches!(v.kind, Kind::Null))
            .map(|(_, v)| *v)
    }

    fn required(&self, name: &str) -> Result<&'a Node, ServicesError> {
        self.get(name).ok_or_else(|| {
            ServicesError::at(
                self.mark,
                format!("{} is missing required field `{name}`", self.what),
            )
        })
    }

    fn mark_of(&self, name: &str) -> Mark {
        self.get(name).map_or(self.mark, |n| n.mark)
    }
}

fn fields<'a>(
    node: &'a Node,
    what: &'static str,
    allowed: &[&'static str],
    null_ok: bool,
) -> Result<Fields<'a>, ServicesError> {
    let entries: &[(Node, Node)] = match &node.kind {
        Kind::Map(m) => m,
        Kind::Null if null_ok => &[],
        other => {
            return Err(ServicesError::at(
                node.mark,
                format!(
                    "expected {what} (a mapping with fields {}), got {}",
                    allowed.join(", "),
                    other.describe()
                ),
            ))
        }
    };
    let mut out: Vec<(&'a str, &'a Node)> = Vec::with_capacity(entries.len());
    for (key, value) in entries {
        let name: &'a str = match &key.kind {
            Kind::Scalar { text, .. } => text,
            other => {
                return Err(ServicesError::at(
                    key.mark,
                    format!("{what} field names are words, got {}", other.describe()),
                ))
            }
        };
        if name == "<<" {
            return Err(ServicesError::at(
                key.mark,
                "merge keys (<<) are not supported; write the fields out",
            ));
        }
        if !allowed.contains(&name) {
            return Err(ServicesError::at(
                key.mark,
                format!(
                    "unknown field `{}` in {what}; allowed fields: {}",
                    shorten(name),
                    allowed.join(", ")
                ),
            ));
        }
        if out.iter().any(|(n, _)| *n == name) {
            return Err(ServicesError::at(
                key.mark,
                format!("duplicate field `{name}` in {what}"),
            ));
        }
        out.push((name, value));
    }
    Ok(Fields {
        what,
        mark: node.mark,
        entries: out,
    })
}

/// A list; absent or null is the empty list.
fn list<'a>(node: Option<&'a Node>, what: &str) -> Result<&'a [Node], ServicesError> {
    match node.map(|n| (n, &n.kind)) {
        None | Some((_, Kind::Null)) => Ok(&[]),
        Some((_, Kind::Seq(items))) => Ok(items),
        Some((n, other)) => Err(ServicesError::at(
            n.mark,
            format!("`{what}` must be a list, got {}", other.describe()),
        )),
    }
}

fn string<'a>(node: &'a Node, what: &str) -> Result<&'a str, ServicesError> {
    match &node.kind {
        Kind::Scalar { text, .. } => Ok(text),
        other => Err(ServicesError::at(
            node.mark,
            format!("{what} must be a string, got {}", other.describe()),
        )),
    }
}

/// An integer in `lo..=hi`. Quoted numbers are refused: a typo'd value should not slip through
/// as a string somewhere else.
fn integer(node: &Node, what: &str, lo: u64, hi: u64) -> Result<u64, ServicesError> {
    let out_of_range = |shown: &str| {
        ServicesError::at(node.mark, format!("{what} {shown} out of range {lo}-{hi}"))
    };
    match &node.kind {
        Kind::Scalar { text, plain: true } => {
            let digits = text.strip_prefix('+').unwrap_or(text);
            if let Some(rest) = digits.strip_prefix('-') {
                if !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(out_of_range(text));
                }
            }
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ServicesError::at(
                    node.mark,
                    format!("{what} must be an integer, got `{}`", shorten(text)),
                ));
            }
            match digits.parse::<u64>() {
                Ok(v) if (lo..=hi).contains(&v) => Ok(v),
                _ => Err(out_of_range(&shorten(text))),
            }
        }
        other => Err(ServicesError::at(
            node.mark,
            format!(
                "{what} must be an integer, got {}{}",
                other.describe(),
                if matches!(other, Kind::Scalar { .. }) {
                    "; remove the quotes"
                } else {
                    ""
                }
            ),
        )),
    }
}

fn port(node: &Node, what: &str) -> Result<u16, ServicesError> {
    let v = integer(node, what, 1, u64::from(u16::MAX))?;
    u16::try_from(v).map_err(|_| ServicesError::at(node.mark, format!("{what} out of range")))
}

fn boolean(node: &Node, what: &str) -> Result<bool, ServicesError> {
    match &node.kind {
        Kind::Scalar { text, plain: true } => match &**text {
            "true" | "True" | "TRUE" => Ok(true),
            "false" | "False" | "FALSE" => Ok(false),
            _ => Err(ServicesError::at(
                node.mark,
                format!("{what} must be true or false, got `{}`", shorten(text)),
            )),
        },
        other => Err(ServicesError::at(
            node.mark,
            format!("{what} must be true or false, got {}", other.describe()),
        )),
    }
}

fn ip(node: &Node, what: &str) -> Result<IpAddr, ServicesError> {
    let text = string(node, what)?;
    text.parse().map_err(|_| {
        ServicesError::at(
            node.mark,
            format!(
                "{what} `{}` is not an IP address; write IPv4 like 10.0.0.1 or IPv6 like fd00::1",
                shorten(text)
            ),
        )
    })
}

fn mac(node: &Node) -> Result<Mac, ServicesError> {
    let text = string(node, "backend mac")?;
    parse_mac(text).ok_or_else(|| {
        ServicesError::at(
            node.mark,
            format!(
                "backend mac `{}` is not a MAC address; write six hex bytes like \"02:00:00:00:01:01\"",
                shorten(text)
            ),
        )
    })
}

fn choice<T: Copy>(node: &Node, what: &str, options: &[(&str, T)]) -> Result<T, ServicesError> {
    let text = string(node, what)?;
    options
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, v)| *v)
        .ok_or_else(|| {
            let allowed: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            ServicesError::at(
                node.mark,
                format!(
                    "unknown {what} `{}`; allowed: {}",
                    shorten(text),
                    allowed.join(", ")
                ),
            )
        })
}

/// How strict a name must be: load balancer names become listener-name prefixes and metric
/// labels, so they keep to a safe alphabet; pool and listener names only need to be printable.
#[derive(Clone, Copy, PartialEq, Eq)]
enum NameRule {
    Word,
    Printable,
}

fn name(node: &Node, what: &str, rule: NameRule) -> Result<String, ServicesError> {
    let text = string(node, what)?;
    let ok_char = |c: char| match rule {
        NameRule::Word => c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'),
        NameRule::Printable => !c.is_control(),
    };
    let len = text.chars().count();
    if len == 0 || len > MAX_NAME_LEN || !text.chars().all(ok_char) {
        let allowed = match rule {
            NameRule::Word => "letters, digits, '.', '_' and '-'",
            NameRule::Printable => "printable characters",
        };
        return Err(ServicesError::at(
            node.mark,
            format!(
                "{what} {:?} is not allowed; use 1-{MAX_NAME_LEN} {allowed}",
                shorten(text)
            ),
        ));
    }
    Ok(text.to_string())
}

// ---------------------------------------------------------------------------------------------
// Tree -> ServiceSet.

const TOP_FIELDS: &[&str] = &["tunnel", "loadbalancers", "pools", "health_checks"];
const TUNNEL_FIELDS: &[&str] = &["source_v4", "source_v6", "gue_port"];
const LB_FIELDS: &[&str] = &["name", "vip", "listeners"];
const LISTENER_FIELDS: &[&str] = &["port", "protocol", "mode", "pool", "encap", "name"];
const POOL_FIELDS: &[&str] = &[
    "name",
    "algorithm",
    "table_size",
    "health_check",
    "backends",
];
const HEALTH_CHECK_FIELDS: &[&str] = &[
    "name",
    "kind",
    "interval_ms",
    "timeout_ms",
    "rise",
    "fall",
    "path",
    "expect_status",
    "send",
    "expect",
];
const HEALTH_KINDS: &[(&str, &str)] = &[
    ("tcp", "tcp"),
    ("http", "http"),
    ("https", "https"),
    ("udp", "udp"),
];
const BACKEND_FIELDS: &[&str] = &["address", "port", "weight", "mac", "state", "healthy"];

const PROTOCOLS: &[(&str, Protocol)] = Protocol::NAMES;
const MODES: &[(&str, Mode)] = Mode::NAMES;
const ENCAPS: &[(&str, Encap)] = Encap::NAMES;
const ALGORITHMS: &[(&str, Algorithm)] = Algorithm::NAMES;
const STATES: &[(&str, AdminState)] = AdminState::NAMES;

/// Where a listener's parts are, to point at them from errors found after reading.
#[derive(Clone, Copy)]
struct ListenerPos {
    node: Mark,
    vip: Mark,
    port: Mark,
    mode: Mark,
    pool: Mark,
}

#[derive(Clone, Copy)]
struct PoolPos {
    node: Mark,
    name: Mark,
    table_size: Mark,
}

#[derive(Clone, Copy)]
struct BackendPos {
    node: Mark,
    address: Mark,
    port: Mark,
    weight: Mark,
}

/// A listener whose pool is still a name: pools may come after load balancers in the file.
struct PendingListener {
    listener: Listener,
    pool_name: String,
    pos: ListenerPos,
}

struct Converter {
    set: ServiceSet,
    gue_port: Mark,
    lb_names: HashMap<String, Mark>,
    pool_names: HashMap<String, Mark>,
    pending: Vec<PendingListener>,
    pools: Vec<PoolPos>,
    backends: Vec<BackendPos>,
    backend_keys: HashMap<(PoolId, IpAddr, u16), Mark>,
    /// Validate as if tunnel sources were set ([`parse_services_without_node_settings`]).
    node_settings_optional: bool,
    health_checks: Vec<HealthCheckSpec>,
    health_check_names: HashMap<String, Mark>,
    /// (pool, health check, where the pool names it)
    pool_checks: Vec<(String, String, Mark)>,
}

impl Default for Converter {
    fn default() -> Self {
        Converter {
            set: ServiceSet::default(),
            gue_port: Mark::START,
            lb_names: HashMap::new(),
            pool_names: HashMap::new(),
            pending: Vec::new(),
            pools: Vec::new(),
            backends: Vec::new(),
            backend_keys: HashMap::new(),
            node_settings_optional: false,
            health_checks: Vec::new(),
            health_check_names: HashMap::new(),
            pool_checks: Vec::new(),
        }
    }
}

/// A provisional id by position, linking objects while the file is read; [`assign_ids`]
/// replaces it before the set is returned.
fn next_id(len: usize) -> u32 {
    // More than u32::MAX objects cannot come from a file that fits in memory.
    u32::try_from(len + 1).unwrap_or(u32::MAX)
}

/// Largest id given out: `u32::MAX` stays free because the data plane and the control plane use
/// it as a sentinel.
const MAX_ID: u32 = u32::MAX - 1;

/// Seed of the id hash. Part of the services-file format, like the identity encodings below:
/// changing either renumbers every object of every file, which moves established flows.
const ID_SEED: u64 = 0x6669_6265_726c_6964; // "fiberlid"

/// The id an identity has unless it collides: its hash reduced to `1..=MAX_ID`.
fn home_id(hash: u64) -> u32 {
    let reduced = hash % u64::from(MAX_ID);
    // reduced < MAX_ID, so reduced + 1 <= MAX_ID fits.
    u32::try_from(reduced).map_or(MAX_ID, |r| r + 1)
}

fn hash_identity(key: &[u8]) -> u64 {
    xxhash_rust::xxh64::xxh64(key, ID_SEED)
}

/// An address in an identity: a family tag, then the address bytes, so the bytes that follow
/// cannot be mistaken for more address.
fn push_ip(key: &mut Vec<u8>, address: IpAddr) {
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

fn pool_identity(name: &str) -> Vec<u8> {
    let mut key = vec![b'p'];
    key.extend_from_slice(name.as_bytes());
    key
}

fn listener_identity(l: &Listener) -> Vec<u8> {
    let mut key = vec![b'l'];
    push_ip(&mut key, l.vip);
    key.extend_from_slice(&l.port.to_be_bytes());
    key.push(l.protocol.ip_proto());
    key
}

/// The pool name goes last: everything before it has a fixed length, so no two
/// (pool, address, port) give the same bytes.
fn backend_identity(pool: &str, address: IpAddr, port: u16) -> Vec<u8> {
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
fn assign_ids_with(keys: &[Vec<u8>], hash: impl Fn(&[u8]) -> u64) -> Vec<u32> {
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
fn assign_ids(set: &mut ServiceSet) {
    assign_ids_hashed(set, hash_identity);
}

fn assign_ids_hashed(set: &mut ServiceSet, hash: impl Fn(&[u8]) -> u64 + Copy) {
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

impl Converter {
    fn document(&mut self, root: &Node) -> Result<(), ServicesError> {
        if !matches!(root.kind, Kind::Map(_) | Kind::Null) {
            return Err(ServicesError::at(
                root.mark,
                format!(
                    "a services file is a mapping with the fields {}; got {}",
                    TOP_FIELDS.join(", "),
                    root.kind.describe()
                ),
            ));
        }
        let top = fields(root, "the top level", TOP_FIELDS, true)?;
        // Sections in the order they appear, so the first error reported is the first in the file.
        for &(section, value) in &top.entries {
            match section {
                "tunnel" => self.tunnel(value)?,
                "loadbalancers" => {
                    for lb in list(Some(value), "loadbalancers")? {
                        self.loadbalancer(lb)?;
                    }
                }
                "health_checks" => {
                    for hc in list(Some(value), "health_checks")? {
                        self.health_check(hc)?;
                    }
                }
                _ => {
                    for pool in list(Some(value), "pools")? {
                        self.pool(pool)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn health_check(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "health check", HEALTH_CHECK_FIELDS, false)?;
        let name_node = f.required("name")?;
        let hc_name = name(name_node, "health check name", NameRule::Word)?;
        if let Some(first) = self.health_check_names.get(&hc_name) {
            return Err(ServicesError::at(
                name_node.mark,
                format!(
                    "duplicate health check name {hc_name:?} (first used on line {})",
                    first.line
                ),
            ));
        }
        self.health_check_names
            .insert(hc_name.clone(), name_node.mark);
        let kind = choice(f.required("kind")?, "kind", HEALTH_KINDS)?;
        let num = |field: &str, hi: u64| -> Result<u32, ServicesError> {
            match f.get(field) {
                None => Ok(0),
                Some(n) => Ok(u32::try_from(integer(n, field, 1, hi)?).unwrap_or(u32::MAX)),
            }
        };
        let web = matches!(kind, "http" | "https");
        let only = |field: &str, ok: bool, what: &str| -> Result<(), ServicesError> {
            match f.get(field) {
                Some(n) if !ok => Err(ServicesError::at(
                    n.mark,
                    format!("{field} applies only to {what} health checks; this one is {kind}"),
                )),
                _ => Ok(()),
            }
        };
        only("path", web, "http/https")?;
        only("expect_status", web, "http/https")?;
        only("send", kind == "udp", "udp")?;
        only("expect", kind == "udp", "udp")?;
        let http_path = match f.get("path") {
            Some(n) => {
                let p = string(n, "path")?;
                if !p.starts_with('/') || p.contains(char::is_whitespace) {
                    return Err(ServicesError::at(
                        n.mark,
                        format!("path {p:?} must start with '/' and hold no spaces"),
                    ));
                }
                p.to_string()
            }
            None => String::new(),
        };
        let expected_status = match f.get("expect_status") {
            None => None,
            Some(n) => {
                let text = match &n.kind {
                    Kind::Scalar { text, .. } => text.to_string(),
                    _ => String::new(),
                };
                let (lo, hi) = text.split_once('-').unwrap_or((&text, &text));
                match (lo.trim().parse::<u32>(), hi.trim().parse::<u32>()) {
                    (Ok(lo), Ok(hi)) if (100..=599).contains(&lo) && (lo..=599).contains(&hi) => {
                        Some((lo, hi))
                    }
                    _ => {
                        return Err(ServicesError::at(
                            n.mark,
                            format!(
                                "expect_status {text:?}: a status (200) or a range (200-399) \
                                 within 100-599"
                            ),
                        ))
                    }
                }
            }
        };
        let text_field = |field: &str| -> Result<String, ServicesError> {
            match f.get(field) {
                None => Ok(String::new()),
                Some(n) => {
                    let t = string(n, field)?;
                    if t.is_empty() || t.len() > 1400 {
                        return Err(ServicesError::at(
                            n.mark,
                            format!("{field} must hold 1-1400 bytes"),
                        ));
                    }
                    Ok(t.to_string())
                }
            }
        };
        let udp_send = text_field("send")?;
        if kind == "udp" && udp_send.is_empty() {
            return Err(ServicesError::at(
                node.mark,
                "a udp health check needs `send`: the datagram sent to each backend",
            ));
        }
        let spec = HealthCheckSpec {
            name: hc_name,
            kind: kind.to_string(),
            interval_ms: num("interval_ms", 3_600_000)?,
            timeout_ms: num("timeout_ms", 3_600_000)?,
            rise: num("rise", 100)?,
            fall: num("fall", 100)?,
            http_path,
            expected_status,
            udp_send,
            udp_expect: text_field("expect")?,
        };
        if spec.timeout_ms != 0 && spec.interval_ms != 0 && spec.timeout_ms > spec.interval_ms {
            return Err(ServicesError::at(
                f.mark_of("timeout_ms"),
                format!(
                    "timeout_ms {} is longer than interval_ms {}",
                    spec.timeout_ms, spec.interval_ms
                ),
            ));
        }
        self.health_checks.push(spec);
        Ok(())
    }

    fn tunnel(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "tunnel", TUNNEL_FIELDS, true)?;
        if let Some(n) = f.get("source_v4") {
            match ip(n, "tunnel.source_v4")? {
                IpAddr::V4(a) if is_usable_unicast(a.into()) => self.set.tunnel.source_v4 = Some(a),
                other => {
                    return Err(ServicesError::at(
                        n.mark,
                        format!("tunnel.source_v4 must be a unicast IPv4 address, got {other}"),
                    ))
                }
            }
        }
        if let Some(n) = f.get("source_v6") {
            match ip(n, "tunnel.source_v6")? {
                IpAddr::V6(a) if is_usable_unicast(a.into()) => self.set.tunnel.source_v6 = Some(a),
                other => {
                    return Err(ServicesError::at(
                        n.mark,
                        format!("tunnel.source_v6 must be a unicast IPv6 address, got {other}"),
                    ))
                }
            }
        }
        if let Some(n) = f.get("gue_port") {
            self.set.tunnel.gue_port = port(n, "tunnel.gue_port")?;
        }
        self.gue_port = f.mark_of("gue_port");
        Ok(())
    }

    fn loadbalancer(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "load balancer", LB_FIELDS, false)?;
        let name_node = f.required("name")?;
        let lb = name(name_node, "load balancer name", NameRule::Word)?;
        if let Some(first) = self.lb_names.get(&lb) {
            return Err(ServicesError::at(
                name_node.mark,
                format!(
                    "duplicate load balancer name {lb:?} (first used on line {})",
                    first.line
                ),
            ));
        }
        self.lb_names.insert(lb.clone(), name_node.mark);
        let vip_node = f.required("vip")?;
        let vip = ip(vip_node, "vip")?;
        if !is_usable_unicast(vip) {
            return Err(ServicesError::at(
                vip_node.mark,
                format!("vip {vip} is not a usable unicast address (it is unspecified, multicast or broadcast)"),
            ));
        }
        for l in list(f.get("listeners"), "listeners")? {
            self.listener(l, &lb, vip, vip_node.mark)?;
        }
        Ok(())
    }

    fn listener(
        &mut self,
        node: &Node,
        lb: &str,
        vip: IpAddr,
        vip_mark: Mark,
    ) -> Result<(), ServicesError> {
        let f = fields(node, "listener", LISTENER_FIELDS, false)?;
        let port_node = f.required("port")?;
        let port = port(port_node, "listener port")?;
        let protocol = choice(f.required("protocol")?, "protocol", PROTOCOLS)?;
        let mode_node = f.required("mode")?;
        let mode = choice(mode_node, "mode", MODES)?;
        let encap = match f.get("encap") {
            None => Encap::default(),
            Some(n) => {
                let encap = choice(n, "encap", ENCAPS)?;
                if mode != Mode::Tunnel {
                    return Err(ServicesError::at(
                        n.mark,
                        format!(
                            "encap applies only to mode tunnel; this listener's mode is {mode}"
                        ),
                    ));
                }
                encap
            }
        };
        let pool_node = f.required("pool")?;
        let pool_name = string(pool_node, "pool")?.to_string();
        let listener_name = match f.get("name") {
            Some(n) => name(n, "listener name", NameRule::Printable)?,
            None => format!("{lb}/{port}/{protocol}"),
        };
        self.pending.push(PendingListener {
            listener: Listener {
                id: ListenerId(next_id(self.pending.len())),
                name: listener_name,
                vip,
                port,
                protocol,
                mode,
                encap,
                pool: PoolId(0),
            },
            pool_name,
            pos: ListenerPos {
                node: node.mark,
                vip: vip_mark,
                port: port_node.mark,
                mode: mode_node.mark,
                pool: pool_node.mark,
            },
        });
        Ok(())
    }

    fn pool(&mut self, node: &Node) -> Result<(), ServicesError> {
        let f = fields(node, "pool", POOL_FIELDS, false)?;
        let name_node = f.required("name")?;
        let pool_name = name(name_node, "pool name", NameRule::Printable)?;
        if let Some(first) = self.pool_names.get(&pool_name) {
            return Err(ServicesError::at(
                name_node.mark,
                format!(
                    "duplicate pool name {pool_name:?} (first used on line {})",
                    first.line
                ),
            ));
        }
        self.pool_names.insert(pool_name.clone(), name_node.mark);
        let algorithm = match f.get("algorithm") {
            Some(n) => choice(n, "algorithm", ALGORITHMS)?,
            None => Algorithm::default(),
        };
        let table_size = match f.get("table_size") {
            Some(n) => {
                let size = integer(n, "table_size", 1, u64::from(u32::MAX))?;
                let size = u32::try_from(size)
                    .map_err(|_| ServicesError::at(n.mark, "table_size out of range"))?;
                check_table_size(size)
                    .map_err(|e| ServicesError::at(n.mark, format!("pool {pool_name:?}: {e}")))?;
                size
            }
            None => DEFAULT_TABLE_SIZE,
        };
        let id = PoolId(next_id(self.set.pools.len()));
        self.set.pools.push(Pool {
            id,
            name: pool_name.clone(),
            algorithm,
            table_size,
        });
        self.pools.push(PoolPos {
            node: node.mark,
            name: name_node.mark,
            table_size: f.mark_of("table_size"),
        });
        if let Some(n) = f.get("health_check") {
            let hc = string(n, "health_check")?.to_string();
            self.pool_checks.push((pool_name.clone(), hc, n.mark));
        }
        for b in list(f.get("backends"), "backends")? {
            self.backend(b, id, &pool_name)?;
        }
        Ok(())
    }

    fn backend(&mut self, node: &Node, pool: PoolId, pool_name: &str) -> Result<(), ServicesError> {
        let f = fields(node, "backend", BACKEND_FIELDS, false)?;
        let address_node = f.required("address")?;
        let address = ip(address_node, "backend address")?;
        if !is_usable_unicast(address) {
            return Err(ServicesError::at(
                address_node.mark,
                format!("backend address {address} is not a usable unicast address (it is unspecified, multicast or broadcast)"),
            ));
        }
        let port_node = f.required("port")?;
        let port = port(port_node, "backend port")?;
        let weight = match f.get("weight") {
            Some(n) => {
                let w = integer(n, "backend weight", 0, u64::from(MAX_WEIGHT))?;
                u32::try_from(w).unwrap_or(u32::MAX)
            }
            None => 1,
        };
        let mac = f.get("mac").map(mac).transpose()?;
        let admin = match f.get("state") {
            Some(n) => choice(n, "backend state", STATES)?,
            None => AdminState::default(),
        };
        let healthy = match f.get("healthy") {
            Some(n) => boolean(n, "healthy")?,
            None => true,
        };
        if let Some(first) = self.backend_keys.get(&(pool, address, port)) {
            return Err(ServicesError::at(
                node.mark,
                format!(
                    "backend {} appears twice in pool {pool_name:?} (first on line {})",
                    SocketText(address, port),
                    first.line
                ),
            ));
        }
        self.backend_keys.insert((pool, address, port), node.mark);
        self.set.backends.push(Backend {
            id: BackendId(next_id(self.set.backends.len())),
            pool,
            address,
            port,
            weight,
            mac,
            admin,
            healthy,
        });
        self.backends.push(BackendPos {
            node: node.mark,
            address: address_node.mark,
            port: port_node.mark,
            weight: f.mark_of("weight"),
        });
        Ok(())
    }

    /// Resolves pool names, checks what spans objects, then runs the model's own validation.
    fn finish(mut self) -> Result<ServiceSet, ServicesError> {
        let pool_ids: HashMap<&str, PoolId> = self
            .set
            .pools
            .iter()
            .map(|p| (p.name.as_str(), p.id))
            .collect();
        let mut names: HashMap<&str, Mark> = HashMap::new();
        let mut keys: HashMap<(IpAddr, u16, Protocol), (&str, Mark)> = HashMap::new();
        let mut listeners = Vec::with_capacity(self.pending.len());
        for p in &self.pending {
            let l = &p.listener;
            let Some(&pool) = pool_ids.get(p.pool_name.as_str()) else {
                let mut defined: Vec<&str> =
                    self.set.pools.iter().map(|p| p.name.as_str()).collect();
                defined.truncate(10);
                return Err(ServicesError::at(
                    p.pos.pool,
                    format!(
                        "listener {:?} names pool {:?}, which is not defined under pools; defined: {}",
                        l.name,
                        shorten(&p.pool_name),
                        if defined.is_empty() { "none".to_string() } else { defined.join(", ") }
                    ),
                ));
            };
            if let Some((other, mark)) = keys.get(&(l.vip, l.port, l.protocol)) {
                return Err(ServicesError::at(
                    p.pos.node,
                    format!(
                        "listener {:?}: {} port {}/{} is already used by listener {other:?} (line {})",
                        l.name, l.vip, l.port, l.protocol, mark.line
                    ),
                ));
            }
            keys.insert((l.vip, l.port, l.protocol), (&l.name, p.pos.node));
            if let Some(first) = names.get(l.name.as_str()) {
                return Err(ServicesError::at(
                    p.pos.node,
                    format!(
                        "duplicate listener name {:?} (first used on line {})",
                        l.name, first.line
                    ),
                ));
            }
            names.insert(&l.name, p.pos.node);
            listeners.push(Listener { pool, ..l.clone() });
        }
        self.set.listeners = listeners;
        assign_ids(&mut self.set);
        let checked = if self.node_settings_optional {
            let mut probe = self.set.clone();
            probe.tunnel.source_v4 = probe
                .tunnel
                .source_v4
                .or(Some(std::net::Ipv4Addr::new(192, 0, 2, 1)));
            probe.tunnel.source_v6 = probe.tunnel.source_v6.or(Some(std::net::Ipv6Addr::new(
                0x2001, 0xdb8, 0, 0, 0, 0, 0, 1,
            )));
            probe.validate()
        } else {
            self.set.validate()
        };
        match checked {
            Ok(()) => Ok(self.set),
            Err(e) => Err(ServicesError::at(self.locate(&e), e.to_string())),
        }
    }

    fn listener_pos(&self, name: &str) -> Option<(usize, ListenerPos)> {
        let i = self.set.listeners.iter().position(|l| l.name == name)?;
        Some((i, self.pending.get(i)?.pos))
    }

    fn backend_pos(&self, f: impl Fn(&Backend) -> bool) -> Option<BackendPos> {
        let i = self.set.backends.iter().position(f)?;
        self.backends.get(i).copied()
    }

    /// The place of the object a [`ModelError`] names.
    fn locate(&self, e: &ModelError) -> Mark {
        let mark = match e {
            // Cannot happen (ids are made distinct), but point at the second holder if it does.
            ModelError::DuplicateId { kind, id } => match *kind {
                "listener" => {
                    let i = self.set.listeners.iter().rposition(|l| l.id.0 == *id);
                    i.and_then(|i| self.pending.get(i)).map(|p| p.pos.node)
                }
                "pool" => {
                    let i = self.set.pools.iter().rposition(|p| p.id.0 == *id);
                    i.and_then(|i| self.pools.get(i)).map(|p| p.node)
                }
                _ => {
                    let i = self.set.backends.iter().rposition(|b| b.id.0 == *id);
                    i.and_then(|i| self.backends.get(i)).map(|b| b.node)
                }
            },
            ModelError::ListenerPortZero { listener } => {
                self.listener_pos(listener).map(|(_, p)| p.port)
            }
            ModelError::BadVip { listener, .. } => self.listener_pos(listener).map(|(_, p)| p.vip),
            ModelError::UnknownPool { listener, .. } => {
                self.listener_pos(listener).map(|(_, p)| p.pool)
            }
            ModelError::DuplicateListener { listener, .. } => {
                let last = self.set.listeners.iter().rposition(|l| l.name == *listener);
                last.and_then(|i| self.pending.get(i)).map(|p| p.pos.node)
            }
            ModelError::MissingTunnelSource { listener, .. } => {
                self.listener_pos(listener).map(|(_, p)| p.mode)
            }
            ModelError::DsrFamilyMismatch { listener, backend }
            | ModelError::NatFamilyMismatch { listener, backend } => {
                self.listener_pos(listener).map(|(i, p)| {
                    let pool = self.set.listeners.get(i).map(|l| l.pool);
                    self.backend_pos(|b| Some(b.pool) == pool && b.address == *backend)
                        .map_or(p.mode, |b| b.address)
                })
            }
            ModelError::AmbiguousNatReturn { second, .. } => {
                self.listener_pos(second).map(|(_, p)| p.pool)
            }
            ModelError::BadTableSize { pool, .. } => {
                let i = self.set.pools.iter().position(|p| p.name == *pool);
                i.and_then(|i| self.pools.get(i)).map(|p| p.table_size)
            }
            ModelError::DuplicatePoolName { pool } => {
                let i = self.set.pools.iter().rposition(|p| p.name == *pool);
                i.and_then(|i| self.pools.get(i)).map(|p| p.name)
            }
            ModelError::BackendUnknownPool { address, port, .. } => self
                .backend_pos(|b| b.address == *address && b.port == *port)
                .map(|b| b.node),
            ModelError::WeightOutOfRange { address, port, .. } => self
                .backend_pos(|b| b.address == *address && b.port == *port && b.weight > MAX_WEIGHT)
                .map(|b| b.weight),
            ModelError::BackendPortZero { address, .. } => self
                .backend_pos(|b| b.address == *address && b.port == 0)
                .map(|b| b.port),
            ModelError::BadBackendAddress { address, port } => self
                .backend_pos(|b| b.address == *address && b.port == *port)
                .map(|b| b.address),
            ModelError::DuplicateBackend { address, port, .. } => {
                let i = self
                    .set
                    .backends
                    .iter()
                    .rposition(|b| b.address == *address && b.port == *port);
                i.and_then(|i| self.backends.get(i)).map(|b| b.node)
            }
            ModelError::GuePortZero => Some(self.gue_port),
        };
        mark.unwrap_or(Mark::START)
    }
}

/// `10.0.0.1:80` or `[fd00::1]:80`.
struct SocketText(IpAddr, u16);

impl fmt::Display for SocketText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            IpAddr::V4(a) => write!(f, "{a}:{}", self.1),
            IpAddr::V6(a) => write!(f, "[{a}]:{}", self.1),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// ServiceSet -> YAML.

/// Writes a [`ServiceSet`] as a services file that [`parse_services`] reads back.
///
/// Listeners are grouped into load balancers by their default names
/// (`<loadbalancer>/<port>/<protocol>`) and VIPs; a listener with another name is written with
/// an explicit `name`. For a set that came from [`parse_services`],
/// `parse_services(&to_yaml(&set)) == Ok(set)`: ids are not written, and reading gives them back
/// because they follow from the objects (see the module documentation). Any other valid set
/// reads back as the same objects with the ids the file rules give them, so the control plane's
/// ids do not survive. An invalid set is written as well as it can be (backends of an unknown
/// pool are left out), and will be rejected on reading.
pub fn to_yaml(set: &ServiceSet) -> String {
    let mut out = String::new();
    let t = &set.tunnel;
    if t.source_v4.is_some() || t.source_v6.is_some() || t.gue_port != DEFAULT_GUE_PORT {
        out.push_str("tunnel:\n");
        if let Some(a) = t.source_v4 {
            let _ = writeln!(out, "  source_v4: {a}");
        }
        if let Some(a) = t.source_v6 {
            let _ = writeln!(out, "  source_v6: \"{a}\"");
        }
        let _ = writeln!(out, "  gue_port: {}", t.gue_port);
    }

    let pool_names: HashMap<PoolId, &str> =
        set.pools.iter().map(|p| (p.id, p.name.as_str())).collect();
    let lbs = group_listeners(&set.listeners);
    if lbs.is_empty() {
        out.push_str("loadbalancers: []\n");
    } else {
        out.push_str("loadbalancers:\n");
    }
    for lb in &lbs {
        let _ = writeln!(out, "  - name: {}", yaml_string(&lb.name));
        let _ = writeln!(out, "    vip: {}", yaml_ip(lb.vip));
        out.push_str("    listeners:\n");
        for l in &lb.listeners {
            let pool = match pool_names.get(&l.pool) {
                Some(name) => yaml_string(name),
                None => yaml_string(&format!("#unknown pool id {}", l.pool.0)),
            };
            let _ = write!(
                out,
                "      - {{port: {}, protocol: {}, mode: {}",
                l.port, l.protocol, l.mode
            );
            if l.mode == Mode::Tunnel {
                let _ = write!(out, ", encap: {}", l.encap);
            }
            let _ = write!(out, ", pool: {pool}");
            if l.name != format!("{}/{}/{}", lb.name, l.port, l.protocol) {
                let _ = write!(out, ", name: {}", yaml_string(&l.name));
            }
            out.push_str("}\n");
        }
    }

    let mut members: HashMap<PoolId, Vec<&Backend>> = HashMap::new();
    for b in &set.backends {
        members.entry(b.pool).or_default().push(b);
    }
    if set.pools.is_empty() {
        out.push_str("pools: []\n");
    } else {
        out.push_str("pools:\n");
    }
    for p in &set.pools {
        let _ = writeln!(out, "  - name: {}", yaml_string(&p.name));
        let _ = writeln!(out, "    algorithm: {}", p.algorithm);
        let _ = writeln!(out, "    table_size: {}", p.table_size);
        let backends = members.get(&p.id).map(Vec::as_slice).unwrap_or(&[]);
        if backends.is_empty() {
            out.push_str("    backends: []\n");
            continue;
        }
        out.push_str("    backends:\n");
        for b in backends {
            let _ = write!(
                out,
                "      - {{address: {}, port: {}, weight: {}",
                yaml_ip(b.address),
                b.port,
                b.weight
            );
            if let Some(m) = b.mac {
                let _ = write!(out, ", mac: \"{}\"", format_mac(&m));
            }
            let _ = writeln!(out, ", state: {}, healthy: {}}}", b.admin, b.healthy);
        }
    }
    out
}

struct LbOut<'a> {
    name: String,
    vip: IpAddr,
    listeners: Vec<&'a Listener>,
}

/// Rebuilds load balancers from listeners: by default-name prefix and VIP, or by VIP alone for
/// listeners with their own names. Load balancer names are kept unique.
fn group_listeners(listeners: &[Listener]) -> Vec<LbOut<'_>> {
    let mut lbs: Vec<LbOut<'_>> = Vec::new();
    let mut by_key: HashMap<(&str, IpAddr), usize> = HashMap::new();
    let mut used: HashSet<String> = HashSet::new();
    let mut new_lb = |lbs: &mut Vec<LbOut<'_>>, base: &str, vip: IpAddr| {
        let mut name = base.to_string();
        let mut n = 2;
        while used.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        used.insert(name.clone());
        lbs.push(LbOut {
            name,
            vip,
            listeners: Vec::new(),
        });
        lbs.len() - 1
    };
    for l in listeners {
        let idx = match default_prefix(l) {
            Some(prefix) => match by_key.get(&(prefix, l.vip)) {
                Some(&i) => i,
                None => {
                    let i = new_lb(&mut lbs, prefix, l.vip);
                    by_key.insert((prefix, l.vip), i);
                    i
                }
            },
            None => match lbs.iter().position(|lb| lb.vip == l.vip) {
                Some(i) => i,
                None => {
                    let base = word_name(&l.name);
                    new_lb(&mut lbs, &base, l.vip)
                }
            },
        };
        if let Some(lb) = lbs.get_mut(idx) {
            lb.listeners.push(l);
        }
    }
    lbs
}

/// The load balancer part of a default listener name, if the name is a default one.
fn default_prefix(l: &Listener) -> Option<&str> {
    let prefix = l
        .name
        .strip_suffix(&format!("/{}/{}", l.port, l.protocol))?;
    let ok = !prefix.is_empty()
        && prefix.len() <= MAX_NAME_LEN - 12
        && prefix
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    ok.then_some(prefix)
}

/// A load balancer name made from any listener name.
fn word_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .take(MAX_NAME_LEN - 12)
        .collect();
    if s.is_empty() {
        "lb".to_string()
    } else {
        s
    }
}

fn yaml_ip(a: IpAddr) -> String {
    match a {
        IpAddr::V4(a) => a.to_string(),
        // Quoted: a plain scalar starting with ':' (`::1`) is not valid YAML.
        IpAddr::V6(a) => format!("\"{a}\""),
    }
}

/// A string as a YAML scalar: plain when that cannot be read as anything else, else
/// double-quoted.
fn yaml_string(s: &str) -> String {
    let plain = s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        && !matches!(
            s.to_ascii_lowercase().as_str(),
            "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "y" | "n"
        );
    if plain {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TunnelSettings;
    use std::net::{Ipv4Addr, Ipv6Addr};

    /// Ids of listener 10.0.0.1:80/tcp, pool "web" and its backend 10.1.0.1:8080, computed
    /// independently (Python: `xxhash.xxh64_intdigest(key, ID_SEED) % (2**32 - 2) + 1`).
    const GOLDEN_L: u32 = 80_741_074;
    const GOLDEN_P: u32 = 2_527_494_331;
    const GOLDEN_B: u32 = 1_207_596_537;

    #[test]
    fn health_checks_parse_and_refuse_with_lines() {
        let text = "health_checks:\n  - {name: h, kind: http, path: /hz, expect_status: 200-299, interval_ms: 500}\n\
                    pools:\n  - name: p\n    health_check: h\n    backends: []\n";
        let d = parse_services_without_node_settings(text).unwrap();
        assert_eq!(d.health_checks.len(), 1);
        assert_eq!(d.health_checks[0].expected_status, Some((200, 299)));
        assert_eq!(d.health_checks[0].interval_ms, 500);
        assert_eq!(d.health_checks[0].timeout_ms, 0);
        assert_eq!(d.pool_health_checks.get("p").map(String::as_str), Some("h"));
        // The data plane reads the same file and ignores the section.
        assert_eq!(parse_services(text).unwrap().pools.len(), 1);
        for (bad, line, what) in [
            (
                text.replace("health_check: h", "health_check: x"),
                5,
                "which health_checks does not define",
            ),
            (text.replace("kind: http", "kind: icmp"), 2, "kind"),
            (
                text.replace("path: /hz", "send: x"),
                2,
                "applies only to udp",
            ),
            (text.replace("200-299", "200-999"), 2, "expect_status"),
            (
                text.replace("interval_ms: 500", "interval_ms: 500, timeout_ms: 900"),
                2,
                "longer than",
            ),
            (
                text.replace("kind: http, path: /hz, expect_status: 200-299", "kind: udp"),
                2,
                "needs `send`",
            ),
        ] {
            let e = parse_services_without_node_settings(&bad).unwrap_err();
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.message.contains(what), "{e}");
        }
    }

    #[test]
    fn tunnel_section_is_optional_for_the_control_plane() {
        let text = "loadbalancers:\n  - name: t\n    vip: 10.0.0.1\n    listeners:\n      \
                    - {port: 80, protocol: tcp, mode: tunnel, pool: p}\npools:\n  - name: p\n    \
                    backends:\n      - {address: 10.1.0.1, port: 80}\n";
        let e = parse_services(text).unwrap_err();
        assert!(e.to_string().contains("source"), "{e}");
        let set = parse_services_without_node_settings(text).unwrap().set;
        assert_eq!(set.tunnel.source_v4, None);
        assert_eq!(set.listeners.len(), 1);
        // Everything else is still checked.
        let bad = text.replace("port: 80, protocol", "port: 0, protocol");
        assert!(parse_services_without_node_settings(&bad).is_err());
    }

    #[test]
    fn syntax_errors_at_the_end_of_a_file_point_into_it() {
        // Found by the services_yaml fuzz target: no final newline put the mark on line 2/3.
        let e = err("a: [");
        assert_eq!((e.line, e.column), (Some(1), Some(5)), "{e}");
        let e = err("a: b\nc");
        assert_eq!(e.line, Some(2), "{e}");
        let e = err("a: b\r\nc");
        assert_eq!(e.line, Some(2), "{e}");
        let e = err("a: b\rc");
        assert_eq!(e.line, Some(2), "{e}");
    }

    fn err(text: &str) -> ServicesError {
        match parse_services(text) {
            Ok(set) => panic!("accepted {text:?}: {set:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn empty_files_are_empty_configurations() {
        for text in [
            "",
            "\n\n",
            "# nothing yet\n",
            "---\n",
            "loadbalancers: []\npools: []\n",
            "loadbalancers:\npools:\ntunnel:\n",
            "~\n",
        ] {
            let set = parse_services(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
            assert_eq!(set, ServiceSet::default(), "{text:?}");
        }
    }

    #[test]
    fn defaults_and_ids_from_identity() {
        let text = "\
loadbalancers:
  - name: b
    vip: 10.0.0.2
    listeners:
      - {port: 80, protocol: tcp, mode: tunnel, pool: second}
  - name: a
    vip: \"fd00::1\"
    listeners:
      - {port: 53, protocol: udp, mode: dsr, pool: first}
      - {port: 54, protocol: udp, mode: dsr, pool: first, name: custom}
pools:
  - name: first
    backends:
      - {address: \"fd00::10\", port: 53}
  - name: second
    algorithm: maglev-source-ip
    table_size: 251
    backends:
      - {address: 10.1.0.1, port: 80, weight: 0, mac: 02-AB-00-00-00-01, state: drained}
      - {address: 10.1.0.2, port: 80, state: disabled, healthy: false}
tunnel:
  source_v4: 10.0.0.254
";
        let set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
        let pool_id = |name: &str| home_id(hash_identity(&pool_identity(name)));
        let (first, second) = (pool_id("first"), pool_id("second"));
        let ids: Vec<(u32, &str, u32)> = set
            .listeners
            .iter()
            .map(|l| (l.id.0, l.name.as_str(), l.pool.0))
            .collect();
        let listener_id = |l: &Listener| home_id(hash_identity(&listener_identity(l)));
        assert_eq!(
            ids,
            [
                (listener_id(&set.listeners[0]), "b/80/tcp", second),
                (listener_id(&set.listeners[1]), "a/53/udp", first),
                (listener_id(&set.listeners[2]), "custom", first)
            ]
        );
        assert_eq!(set.listeners[0].encap, Encap::Ipip);
        assert_eq!(set.listeners[1].vip, "fd00::1".parse::<IpAddr>().unwrap());
        assert_eq!(
            (set.pools[0].id, set.pools[1].id),
            (PoolId(first), PoolId(second))
        );
        assert_eq!(set.pools[0].algorithm, Algorithm::Maglev);
        assert_eq!(set.pools[0].table_size, DEFAULT_TABLE_SIZE);
        assert_eq!(set.pools[1].algorithm, Algorithm::MaglevSourceIp);
        assert_eq!(set.pools[1].table_size, 251);
        let backend_id = |pool: &str, a: &str, port| {
            home_id(hash_identity(&backend_identity(
                pool,
                a.parse().unwrap(),
                port,
            )))
        };
        let b: Vec<_> = set
            .backends
            .iter()
            .map(|b| (b.id.0, b.pool.0, b.weight, b.mac, b.admin, b.healthy))
            .collect();
        assert_eq!(
            b,
            [
                (
                    backend_id("first", "fd00::10", 53),
                    first,
                    1,
                    None,
                    AdminState::Enabled,
                    true
                ),
                (
                    backend_id("second", "10.1.0.1", 80),
                    second,
                    0,
                    Some([0x02, 0xab, 0, 0, 0, 1]),
                    AdminState::Drained,
                    true
                ),
                (
                    backend_id("second", "10.1.0.2", 80),
                    second,
                    1,
                    None,
                    AdminState::Disabled,
                    false
                ),
            ]
        );
        assert_eq!(set.tunnel.source_v4, Some(Ipv4Addr::new(10, 0, 0, 254)));
        assert_eq!(set.tunnel.source_v6, None);
        assert_eq!(set.tunnel.gue_port, DEFAULT_GUE_PORT);
    }

    /// The ids of a file are part of its meaning across releases (flows and counters follow
    /// them through an upgrade), so the hash, seed and identity encodings are pinned here.
    #[test]
    fn ids_are_pinned() {
        let set = parse_services(
            "loadbalancers:\n  - {name: web, vip: 10.0.0.1, listeners: [{port: 80, protocol: tcp, mode: nat, pool: web}]}\npools:\n  - {name: web, backends: [{address: 10.1.0.1, port: 8080}]}\n",
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            (set.listeners[0].id, set.pools[0].id, set.backends[0].id),
            (ListenerId(GOLDEN_L), PoolId(GOLDEN_P), BackendId(GOLDEN_B))
        );
    }

    #[test]
    fn home_ids_avoid_zero_and_u32_max() {
        assert_eq!(home_id(0), 1);
        assert_eq!(home_id(u64::from(MAX_ID) - 1), MAX_ID);
        assert_eq!(home_id(u64::from(MAX_ID)), 1);
        assert_eq!(home_id(u64::from(u32::MAX)), 2);
        for h in [u64::MAX, u64::MAX - 1, 1 << 63, 0xffff_fffe_ffff_ffff] {
            let id = home_id(h);
            assert!((1..=MAX_ID).contains(&id), "{h:#x} -> {id}");
        }
    }

    /// Identities that differ only in where a field boundary falls must not meet.
    #[test]
    fn identities_are_unambiguous() {
        let a = |s: &str| s.parse::<IpAddr>().unwrap();
        let keys = [
            backend_identity("p", a("10.0.0.1"), 80),
            backend_identity("", a("10.0.0.1"), 80),
            backend_identity("p", a("::a00:1"), 80),
            backend_identity("p", a("10.0.0.1"), 8080),
            pool_identity("p"),
            listener_identity(&listener(1, "x", "10.0.0.1", 80, 1)),
        ];
        let distinct: HashSet<&Vec<u8>> = keys.iter().collect();
        assert_eq!(distinct.len(), keys.len());
    }

    #[test]
    fn collisions_resolve_by_identity_not_by_position() {
        // A hash that sends every key to id 5, except "z" to 6 and "m" to MAX_ID (wraps).
        let hash = |k: &[u8]| match k {
            b"z" => 5,
            b"m" | b"n" => u64::from(MAX_ID) - 1,
            _ => 4,
        };
        let keys: Vec<Vec<u8>> = ["c", "z", "a", "b", "n", "m"]
            .iter()
            .map(|k| k.as_bytes().to_vec())
            .collect();
        let ids = assign_ids_with(&keys, hash);
        let by_key: HashMap<&[u8], u32> = keys.iter().map(Vec::as_slice).zip(ids).collect();
        // "z" is alone on 6: it keeps it although "b" and "c", probing from 5, pass it by.
        // "a" sorts first among the three on 5; "b" and "c" take the next free ids in turn.
        // "m" sorts before "n" on MAX_ID; "n" wraps to 1.
        let want: HashMap<&[u8], u32> = [
            (&b"a"[..], 5),
            (b"b", 7),
            (b"c", 8),
            (b"z", 6),
            (b"m", MAX_ID),
            (b"n", 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(by_key, want);
        // Every order of the same keys gives the same ids.
        let mut rotated = keys.clone();
        for _ in 0..keys.len() {
            rotated.rotate_left(1);
            let ids = assign_ids_with(&rotated, hash);
            for (k, id) in rotated.iter().zip(ids) {
                assert_eq!(want.get(k.as_slice()), Some(&id), "{rotated:?}");
            }
            let mut reversed = rotated.clone();
            reversed.reverse();
            let ids = assign_ids_with(&reversed, hash);
            for (k, id) in reversed.iter().zip(ids) {
                assert_eq!(want.get(k.as_slice()), Some(&id), "{reversed:?}");
            }
        }
    }

    #[test]
    fn a_file_where_every_id_collides_still_gets_distinct_ids_in_any_order() {
        let text = "\
loadbalancers:
  - {name: a, vip: 10.0.0.1, listeners: [{port: 80, protocol: tcp, mode: dsr, pool: p}, {port: 81, protocol: tcp, mode: dsr, pool: q}]}
pools:
  - {name: p, backends: [{address: 10.1.0.1, port: 80}, {address: 10.1.0.2, port: 80}]}
  - {name: q, backends: [{address: 10.1.0.1, port: 80}]}
";
        let reordered = "\
pools:
  - {name: q, backends: [{address: 10.1.0.1, port: 80}]}
  - {name: p, backends: [{address: 10.1.0.2, port: 80}, {address: 10.1.0.1, port: 80}]}
loadbalancers:
  - {name: a, vip: 10.0.0.1, listeners: [{port: 81, protocol: tcp, mode: dsr, pool: q}, {port: 80, protocol: tcp, mode: dsr, pool: p}]}
";
        let collide = |_: &[u8]| 41;
        let mut ids = Vec::new();
        for text in [text, reordered] {
            let mut set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
            assign_ids_hashed(&mut set, collide);
            set.validate().unwrap_or_else(|e| panic!("{e}"));
            let mut by_identity: Vec<(String, u32)> = set
                .pools
                .iter()
                .map(|p| (format!("pool {}", p.name), p.id.0))
                .chain(
                    set.listeners
                        .iter()
                        .map(|l| (format!("listener {}", l.port), l.id.0)),
                )
                .chain(set.backends.iter().map(|b| {
                    let pool = set.pools.iter().find(|p| p.id == b.pool).unwrap();
                    (format!("backend {} {}", pool.name, b.address), b.id.0)
                }))
                .collect();
            by_identity.sort();
            ids.push(by_identity);
        }
        assert_eq!(ids[0], ids[1]);
        let want = [
            ("backend p 10.1.0.1", 42),
            ("backend p 10.1.0.2", 44),
            ("backend q 10.1.0.1", 43),
            ("listener 80", 42),
            ("listener 81", 43),
            ("pool p", 42),
            ("pool q", 43),
        ]
        .map(|(k, id)| (k.to_string(), id));
        assert_eq!(ids[0], want);
    }

    #[test]
    fn nulls_take_defaults_and_aliases_work() {
        let text = "\
pools:
  - name: p
    algorithm:
    table_size: ~
    backends:
      - &b {address: 10.1.0.1, port: 80, weight: 7}
  - name: q
    backends: [*b]
";
        let set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.pools[0].table_size, DEFAULT_TABLE_SIZE);
        assert_eq!(set.backends.len(), 2);
        assert_eq!(set.backends[1].weight, 7);
        assert_eq!(set.backends[1].pool, set.pools[1].id);
        assert_ne!(set.backends[0].id, set.backends[1].id);
        // An error in an aliased node is reported where the alias is used.
        let e = err("pools:\n  - name: p\n    backends:\n      - &b {address: 10.1.0.1, port: 80}\n      - *b\n");
        assert_eq!(e.line, Some(5), "{e}");
        assert!(e.message.contains("appears twice"), "{e}");
    }

    #[test]
    fn quoted_strings_and_plain_macs_and_v6_are_read_as_text() {
        let text = "\
pools:
  - name: \"web pool: main\"
    backends:
      - {address: fd00::2, port: 80, mac: 02:00:00:00:01:01}
      - {address: '10.0.0.2', port: 80, mac: !!str 02:00:00:00:01:02}
";
        let set = parse_services(text).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(set.pools[0].name, "web pool: main");
        assert_eq!(
            set.backends[0].address,
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2))
        );
        assert_eq!(set.backends[0].mac, Some([2, 0, 0, 0, 1, 1]));
        assert_eq!(set.backends[1].mac, Some([2, 0, 0, 0, 1, 2]));
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(parse_mac("02:00:00:00:01:ff"), Some([2, 0, 0, 0, 1, 0xff]));
        assert_eq!(parse_mac("02-00-00-00-01-FF"), Some([2, 0, 0, 0, 1, 0xff]));
        for bad in [
            "",
            "02:00:00:00:01",
            "02:00:00:00:01:01:01",
            "2:00:00:00:01:01",
            "02:00:00:00:01:0g",
            "02:00-00:00:01:01",
            "+2:00:00:00:01:01",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad}");
        }
    }

    #[test]
    fn hostile_nesting_is_refused_not_overflowed() {
        // The parser's own recursion limit or ours, whichever comes first: an error either way.
        for deep in [
            format!("{}{}", "[".repeat(100_000), "]".repeat(100_000)),
            "a: ".repeat(10_000),
            "- ".repeat(10_000),
        ] {
            let e = err(&deep);
            assert_eq!(e.line, Some(1), "{e}");
        }
        let e = err(&format!("pools: {}{}", "[".repeat(40), "]".repeat(40)));
        assert!(e.message.contains("nesting deeper than 32 levels"), "{e}");
    }

    #[test]
    fn display_with_and_without_path() {
        let mut e = err("pools:\n  - {name: a, table_size: x}\n");
        assert_eq!(
            e.to_string(),
            "line 2, column 27: table_size must be an integer, got `x`"
        );
        e.path = Some(PathBuf::from("conf/services.yaml"));
        assert_eq!(
            e.to_string(),
            "conf/services.yaml:2:27: table_size must be an integer, got `x`"
        );
        e.line = None;
        e.column = None;
        assert_eq!(
            e.to_string(),
            "conf/services.yaml: table_size must be an integer, got `x`"
        );
    }

    #[test]
    fn load_services_names_the_path() {
        let dir = std::env::temp_dir().join(format!("fiberlb-services-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let missing = dir.join("missing.yaml");
        let e = load_services(&missing).unwrap_err();
        assert_eq!(e.path.as_deref(), Some(missing.as_path()));
        assert!(e.message.contains("cannot read"), "{e}");

        let bad = dir.join("bad.yaml");
        std::fs::write(&bad, "pools:\n  - name: a\n    wat: 1\n").unwrap();
        let e = load_services(&bad).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("{}:3:5: unknown field `wat`", bad.display())),
            "{e}"
        );

        let latin1 = dir.join("latin1.yaml");
        std::fs::write(&latin1, b"pools:\n  - name: caf\xe9\n").unwrap();
        let e = load_services(&latin1).unwrap_err();
        assert_eq!((e.line, e.column), (Some(2), Some(14)), "{e}");
        assert!(e.message.contains("UTF-8"), "{e}");

        let good = dir.join("good.yaml");
        std::fs::write(&good, "pools:\n  - name: a\n").unwrap();
        assert_eq!(load_services(&good).unwrap().pools.len(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn yaml_strings_read_back() {
        for s in [
            "web",
            "true",
            "No",
            "123",
            "a b",
            "x: y",
            "\"quoted\"",
            "back\\slash",
            "#hash",
            "-dash",
            "ünï",
            "null",
            "~",
        ] {
            let text = format!("pools:\n  - name: {}\n", yaml_string(s));
            let set = parse_services(&text).unwrap_or_else(|e| panic!("{s:?} -> {text}: {e}"));
            assert_eq!(set.pools[0].name, s);
        }
        assert_eq!(yaml_string("web-tls"), "web-tls");
        assert_eq!(yaml_string("true"), "\"true\"");
    }

    #[test]
    fn to_yaml_of_an_empty_set_reads_back() {
        let set = ServiceSet::default();
        assert_eq!(to_yaml(&set), "loadbalancers: []\npools: []\n");
        assert_eq!(parse_services(&to_yaml(&set)), Ok(set));
    }

    fn listener(id: u32, name: &str, vip: &str, port: u16, pool: u32) -> Listener {
        Listener {
            id: ListenerId(id),
            name: name.to_string(),
            vip: vip.parse().unwrap(),
            port,
            protocol: Protocol::Tcp,
            mode: Mode::Dsr,
            encap: Encap::Ipip,
            pool: PoolId(pool),
        }
    }

    #[test]
    fn to_yaml_keeps_names_that_do_not_follow_the_default() {
        // As the control plane may hold them: custom names, and one load balancer name on two
        // VIPs.
        let mut set = ServiceSet {
            listeners: vec![
                listener(1, "web/80/tcp", "10.0.0.1", 80, 1),
                listener(2, "web/443/tcp", "10.0.0.1", 443, 1),
                listener(3, "web/8080/tcp", "10.0.0.2", 8080, 1),
                listener(4, "ssh for \"ops\"", "10.0.0.2", 22, 1),
                listener(5, "a/b", "10.0.0.3", 1, 1),
            ],
            pools: vec![Pool {
                id: PoolId(1),
                name: "p".into(),
                algorithm: Algorithm::Maglev,
                table_size: 251,
            }],
            backends: vec![],
            tunnel: TunnelSettings::default(),
        };
        // The ids reading gives back; what is under test is the names.
        assign_ids(&mut set);
        set.validate().unwrap();
        let yaml = to_yaml(&set);
        let back = parse_services(&yaml).unwrap_or_else(|e| panic!("{yaml}\n{e}"));
        assert_eq!(back, set, "{yaml}");
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn arb_set() -> impl Strategy<Value = ServiceSet> {
            let backend = (
                any::<u16>(),
                1u16..,
                0..=MAX_WEIGHT,
                proptest::option::of(any::<Mac>()),
                prop_oneof![
                    Just(AdminState::Enabled),
                    Just(AdminState::Drained),
                    Just(AdminState::Disabled)
                ],
                any::<bool>(),
            );
            let pool = (
                "[a-z][a-z0-9 ._:-]{0,8}",
                any::<bool>(),
                any::<bool>(),
                prop_oneof![Just(251u32), Just(65537)],
                proptest::collection::vec(backend, 0..4),
            );
            let listener = (
                "[a-z][a-z0-9_-]{0,6}",
                any::<u8>(),
                1u16..,
                any::<bool>(),
                0u8..4,
                any::<bool>(),
                any::<usize>(),
            );
            (
                proptest::collection::vec(pool, 1..4),
                proptest::collection::vec(listener, 0..6),
            )
                .prop_map(|(pools, listeners)| {
                    let mut set = ServiceSet {
                        tunnel: TunnelSettings {
                            source_v4: Some(Ipv4Addr::new(10, 255, 0, 1)),
                            source_v6: Some(Ipv6Addr::new(0xfd00, 0xff, 0, 0, 0, 0, 0, 1)),
                            gue_port: 6080,
                        },
                        ..ServiceSet::default()
                    };
                    let mut v6_pools = Vec::new();
                    for (i, (name, v6, source_ip, table_size, backends)) in
                        pools.into_iter().enumerate()
                    {
                        let pool = PoolId(next_id(i));
                        set.pools.push(Pool {
                            id: pool,
                            name: format!("{name}{i}"),
                            algorithm: if source_ip {
                                Algorithm::MaglevSourceIp
                            } else {
                                Algorithm::Maglev
                            },
                            table_size,
                        });
                        v6_pools.push(v6);
                        for (host, port, weight, mac, admin, healthy) in backends {
                            // One family per pool, so dsr and nat listeners can be valid.
                            let host = host.max(1);
                            let address = if v6 {
                                IpAddr::from([0xfd00, 0, 0, 0, 0, 0, 0, host])
                            } else {
                                IpAddr::from([10, 1, (host >> 8) as u8, host as u8])
                            };
                            set.backends.push(Backend {
                                id: BackendId(next_id(set.backends.len())),
                                pool,
                                address,
                                port,
                                weight,
                                mac,
                                admin,
                                healthy,
                            });
                        }
                    }
                    // Listeners grouped per load balancer, as the file orders them.
                    let mut sorted = listeners;
                    sorted.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
                    for (lb, vip, port, udp, mode, gue, pool) in sorted {
                        let protocol = if udp { Protocol::Udp } else { Protocol::Tcp };
                        let mode = match mode {
                            0 => Mode::Dsr,
                            1 => Mode::Nat,
                            _ => Mode::Tunnel,
                        };
                        set.listeners.push(Listener {
                            id: ListenerId(next_id(set.listeners.len())),
                            name: format!("{lb}-{vip}/{port}/{protocol}"),
                            vip: if v6_pools[pool % v6_pools.len()] {
                                IpAddr::from([0xfd00, 1, 0, 0, 0, 0, 0, u16::from(vip)])
                            } else {
                                IpAddr::from([10, 0, 0, vip.max(1)])
                            },
                            port,
                            protocol,
                            mode,
                            encap: if mode == Mode::Tunnel && gue {
                                Encap::Gue
                            } else {
                                Encap::Ipip
                            },
                            pool: PoolId(next_id(pool % set.pools.len())),
                        });
                    }
                    // Ids as the file rules give them, which is what reading the file back yields.
                    assign_ids(&mut set);
                    set
                })
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            #[test]
            fn to_yaml_round_trips(set in arb_set()) {
                // Mostly nat listeners sharing a pool, which is ambiguous; the rest round-trip.
                prop_assume!(set.validate().is_ok());
                let yaml = to_yaml(&set);
                let back = parse_services(&yaml);
                prop_assert_eq!(back, Ok(set), "{}", yaml);
            }

            #[test]
            fn any_text_is_parsed_or_rejected_with_a_line(text in "(?s).{0,200}") {
                if let Err(e) = parse_services(&text) {
                    prop_assert!(e.line.is_some(), "{}", e);
                }
            }

            #[test]
            fn mangled_files_are_parsed_or_rejected_with_a_line(
                edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)
            ) {
                let mut text = String::from(EXAMPLE).into_bytes();
                const BYTES: &[u8] = b" -:{}[],#&*!|>'\"%@`abc019\n\t";
                for (at, byte) in edits {
                    let at = at % text.len();
                    text[at] = BYTES[usize::from(byte) % BYTES.len()];
                }
                let text = String::from_utf8_lossy(&text);
                if let Err(e) = parse_services(&text) {
                    prop_assert!(e.line.is_some(), "{}", e);
                }
            }
        }

        const EXAMPLE: &str = "\
tunnel: {source_v4: 10.0.0.1, source_v6: \"fd00::1\", gue_port: 6080}
loadbalancers:
  - name: web
    vip: 10.10.0.100
    listeners:
      - {port: 80, protocol: tcp, mode: nat, pool: web}
      - {port: 443, protocol: tcp, mode: tunnel, encap: gue, pool: web}
pools:
  - name: web
    algorithm: maglev
    table_size: 65537
    backends:
      - {address: 10.10.1.1, port: 8080, weight: 1, mac: \"02:00:00:00:01:01\"}
      - {address: 10.10.1.2, port: 8080, weight: 2, state: drained}
";
    }
}
