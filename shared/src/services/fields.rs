//! Typed reading of the tree: one helper per kind of value, each failing at the node's place.

use super::*;

/// A mapping's fields, after checking their names against the schema.
pub(super) struct Fields<'a> {
    pub(super) what: &'static str,
    pub(super) mark: Mark,
    pub(super) entries: Vec<(&'a str, &'a Node)>,
}

impl<'a> Fields<'a> {
    /// The value of a field; a null value counts as absent, so it takes the default.
    pub(super) fn get(&self, name: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|(k, v)| *k == name && !matches!(v.kind, Kind::Null))
            .map(|(_, v)| *v)
    }

    pub(super) fn required(&self, name: &str) -> Result<&'a Node, ServicesError> {
        self.get(name).ok_or_else(|| {
            ServicesError::at(
                self.mark,
                format!("{} is missing required field `{name}`", self.what),
            )
        })
    }

    pub(super) fn mark_of(&self, name: &str) -> Mark {
        self.get(name).map_or(self.mark, |n| n.mark)
    }
}

pub(super) fn fields<'a>(
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
pub(super) fn list<'a>(node: Option<&'a Node>, what: &str) -> Result<&'a [Node], ServicesError> {
    match node.map(|n| (n, &n.kind)) {
        None | Some((_, Kind::Null)) => Ok(&[]),
        Some((_, Kind::Seq(items))) => Ok(items),
        Some((n, other)) => Err(ServicesError::at(
            n.mark,
            format!("`{what}` must be a list, got {}", other.describe()),
        )),
    }
}

pub(super) fn string<'a>(node: &'a Node, what: &str) -> Result<&'a str, ServicesError> {
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
pub(super) fn integer(node: &Node, what: &str, lo: u64, hi: u64) -> Result<u64, ServicesError> {
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

pub(super) fn port(node: &Node, what: &str) -> Result<u16, ServicesError> {
    let v = integer(node, what, 1, u64::from(u16::MAX))?;
    u16::try_from(v).map_err(|_| ServicesError::at(node.mark, format!("{what} out of range")))
}

pub(super) fn boolean(node: &Node, what: &str) -> Result<bool, ServicesError> {
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

pub(super) fn ip(node: &Node, what: &str) -> Result<IpAddr, ServicesError> {
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

pub(super) fn mac(node: &Node) -> Result<Mac, ServicesError> {
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

pub(super) fn choice<T: Copy>(
    node: &Node,
    what: &str,
    options: &[(&str, T)],
) -> Result<T, ServicesError> {
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
pub(super) enum NameRule {
    Word,
    Printable,
}

pub(super) fn name(node: &Node, what: &str, rule: NameRule) -> Result<String, ServicesError> {
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
