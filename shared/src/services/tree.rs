//! YAML events -> a small tree whose every node knows where it started (the services file's
//! first pass).

use super::*;

/// A place in the text, both 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Mark {
    pub(super) line: usize,
    pub(super) col: usize,
}

impl Mark {
    pub(super) const START: Mark = Mark { line: 1, col: 1 };

    pub(super) fn from_marker(m: &Marker) -> Mark {
        Mark {
            line: m.line().max(1),
            col: m.col() + 1,
        }
    }

    /// The end of `text`: its last line, just after its last character.
    pub(super) fn end_of(text: &str) -> Mark {
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
    pub(super) fn within(self, end: Mark) -> Mark {
        if self.line > end.line {
            end
        } else {
            self
        }
    }
}

#[derive(Clone, Debug)]
pub(super) struct Node {
    pub(super) mark: Mark,
    pub(super) kind: Kind,
}

/// Collections are shared so that an alias costs no copy (and a chain of aliases cannot blow
/// up memory).
#[derive(Clone, Debug)]
pub(super) enum Kind {
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
    pub(super) fn describe(&self) -> String {
        match self {
            Kind::Null => "null".to_string(),
            Kind::Scalar { text, plain: true } => format!("`{}`", shorten(text)),
            Kind::Scalar { text, plain: false } => format!("the string {:?}", shorten(text)),
            Kind::Seq(_) => "a list".to_string(),
            Kind::Map(_) => "a mapping".to_string(),
        }
    }
}

pub(super) fn shorten(text: &str) -> String {
    const MAX: usize = 40;
    if text.chars().count() <= MAX {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(MAX).collect();
        s.push('…');
        s
    }
}

pub(super) enum Frame {
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
pub(super) fn check_tag(tag: Option<&Tag>, mark: Mark) -> Result<bool, ServicesError> {
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

pub(super) fn build_tree(text: &str) -> Result<Option<Node>, ServicesError> {
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

pub(super) fn open(stack: &mut Vec<Frame>, frame: Frame) -> Result<(), ServicesError> {
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
