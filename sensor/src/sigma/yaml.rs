//! YAML text -> a small tree of nodes that remember their position, and
//! the Sigma collection actions (`action: global / reset / repeat`) that
//! merge documents of one file.
//!
//! Built from `saphyr-parser`'s event stream rather than a DOM crate so that
//! every node keeps its `line:column` (for error messages), scalars keep
//! their style (a quoted `'0'` is a string, a plain `0` a number), and the
//! input-safety limits live in one place: nesting depth and alias expansion
//! are bounded here, with an explicit stack instead of recursion, so a
//! hostile file cannot overflow the stack or blow up memory.

use std::collections::HashMap;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::error::{Position, RuleError};

/// Deepest nesting of mappings and sequences accepted. Sigma rules need
/// about five levels; the limit also bounds recursion when nodes are
/// cloned, merged or dropped.
pub(crate) const MAX_DEPTH: usize = 64;

/// Most nodes a file may expand to through aliases (guards against
/// "billion laughs" documents).
pub(crate) const MAX_ALIAS_NODES: usize = 100_000;

/// One YAML node and where it starts.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    pub(crate) pos: Position,
    pub(crate) kind: NodeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum NodeKind {
    Scalar(Scalar),
    Seq(Vec<Node>),
    /// Keys in document order; unique (duplicates are rejected).
    Map(Vec<(Key, Node)>),
}

/// A mapping key: always a scalar, kept as its text.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Key {
    pub(crate) text: String,
    pub(crate) pos: Position,
}

/// A scalar, resolved with the YAML 1.2 core schema.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar {
    Null,
    Bool(bool),
    /// An integer, with its source text (kept for string modifiers).
    Int(i64, String),
    /// Any other scalar. `verbatim` says the text sits in the source
    /// exactly as written, after the opening quote when `quoted`, so a
    /// character offset in it maps to a column (for condition errors).
    Str {
        text: String,
        quoted: bool,
        verbatim: bool,
    },
}

impl Node {
    pub(crate) fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.kind {
            NodeKind::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// Where `key` of a mapping node is written.
    pub(crate) fn key_pos(&self, key: &str) -> Option<Position> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(k, _)| k.pos)
    }

    /// The value under `key` of a mapping node.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.text == key)
            .map(|(_, v)| v)
    }

    /// Text of a scalar (numbers and booleans as written); `None` for null
    /// and collections.
    pub(crate) fn scalar_text(&self) -> Option<String> {
        match &self.kind {
            NodeKind::Scalar(Scalar::Str { text, .. }) => Some(text.clone()),
            NodeKind::Scalar(Scalar::Int(_, text)) => Some(text.clone()),
            NodeKind::Scalar(Scalar::Bool(b)) => Some(b.to_string()),
            _ => None,
        }
    }

    fn empty_map(pos: Position) -> Node {
        Node {
            pos,
            kind: NodeKind::Map(Vec::new()),
        }
    }
}

/// A parse failure, positioned.
#[derive(Debug)]
pub(crate) struct YamlError {
    pub(crate) pos: Position,
    pub(crate) error: RuleError,
}

fn position(span: &Span) -> Position {
    // saphyr's lines are 1-based, columns 0-based.
    Position {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// A collection being built.
enum Frame {
    Seq {
        pos: Position,
        anchor: usize,
        items: Vec<Node>,
    },
    Map {
        pos: Position,
        anchor: usize,
        entries: Vec<(Key, Node)>,
        key: Option<Key>,
    },
}

/// Parses every document of `text`. Empty documents (e.g. after a trailing
/// `---`) are dropped. One syntax error fails the whole text: a file whose
/// YAML is broken cannot be trusted to have been split into documents the
/// way its author meant.
pub(crate) fn parse_documents(text: &str) -> Result<Vec<Node>, YamlError> {
    let mut docs = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut alias_nodes = 0usize;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| YamlError {
            pos: Position {
                line: e.marker().line(),
                column: e.marker().col() + 1,
            },
            error: RuleError::Yaml(e.info().to_owned()),
        })?;
        let pos = position(&span);
        let (node, anchor) = match event {
            Event::StreamStart | Event::StreamEnd | Event::Nothing => continue,
            Event::DocumentStart(_) => {
                anchors.clear();
                continue;
            }
            Event::DocumentEnd => continue,
            Event::SequenceStart(anchor, _) => {
                push_frame(
                    &mut stack,
                    Frame::Seq {
                        pos,
                        anchor,
                        items: Vec::new(),
                    },
                    pos,
                )?;
                continue;
            }
            Event::MappingStart(anchor, _) => {
                push_frame(
                    &mut stack,
                    Frame::Map {
                        pos,
                        anchor,
                        entries: Vec::new(),
                        key: None,
                    },
                    pos,
                )?;
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(Frame::Seq { pos, anchor, items }) => (
                    Node {
                        pos,
                        kind: NodeKind::Seq(items),
                    },
                    anchor,
                ),
                Some(Frame::Map {
                    pos,
                    anchor,
                    entries,
                    ..
                }) => (
                    Node {
                        pos,
                        kind: NodeKind::Map(entries),
                    },
                    anchor,
                ),
                // The parser balances start and end events.
                None => continue,
            },
            Event::Scalar(value, style, anchor, _tag) => {
                (scalar_node(&value, style, &span, pos), anchor)
            }
            Event::Alias(id) => {
                let node = anchors.get(&id).cloned().ok_or(YamlError {
                    pos,
                    error: RuleError::YamlUnknownAlias,
                })?;
                alias_nodes += count_nodes(&node);
                if alias_nodes > MAX_ALIAS_NODES {
                    return Err(YamlError {
                        pos,
                        error: RuleError::YamlAliasBomb(MAX_ALIAS_NODES),
                    });
                }
                // Re-anchor at the alias site, so errors point where it is used.
                (Node { pos, ..node }, 0)
            }
        };
        if anchor != 0 {
            anchors.insert(anchor, node.clone());
        }
        match stack.last_mut() {
            None => {
                if !matches!(node.kind, NodeKind::Scalar(Scalar::Null)) {
                    docs.push(node);
                }
            }
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map { entries, key, .. }) => match key.take() {
                None => {
                    let text = match &node.kind {
                        NodeKind::Scalar(Scalar::Null) => String::new(),
                        NodeKind::Scalar(_) => node.scalar_text().unwrap_or_default(),
                        _ => {
                            return Err(YamlError {
                                pos: node.pos,
                                error: RuleError::YamlComplexKey,
                            });
                        }
                    };
                    if entries.iter().any(|(k, _)| k.text == text) {
                        return Err(YamlError {
                            pos: node.pos,
                            error: RuleError::DuplicateKey(text),
                        });
                    }
                    *key = Some(Key {
                        text,
                        pos: node.pos,
                    });
                }
                Some(k) => entries.push((k, node)),
            },
        }
    }
    Ok(docs)
}

fn push_frame(stack: &mut Vec<Frame>, frame: Frame, pos: Position) -> Result<(), YamlError> {
    if stack.len() >= MAX_DEPTH {
        return Err(YamlError {
            pos,
            error: RuleError::YamlTooDeep(MAX_DEPTH),
        });
    }
    stack.push(frame);
    Ok(())
}

/// Number of nodes in a tree, without recursion.
fn count_nodes(node: &Node) -> usize {
    let mut count = 0;
    let mut todo = vec![node];
    while let Some(n) = todo.pop() {
        count += 1;
        match &n.kind {
            NodeKind::Scalar(_) => {}
            NodeKind::Seq(items) => todo.extend(items),
            NodeKind::Map(entries) => todo.extend(entries.iter().map(|(_, v)| v)),
        }
    }
    count
}

fn scalar_node(value: &str, style: ScalarStyle, span: &Span, pos: Position) -> Node {
    let scalar = match style {
        ScalarStyle::Plain => resolve_plain(value, span),
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Scalar::Str {
            text: value.to_owned(),
            quoted: true,
            // Only when the text on one line spans exactly the value plus two
            // quotes (no escapes or folding moved characters around).
            verbatim: span.start.line() == span.end.line()
                && span.end.index() - span.start.index() == value.chars().count() + 2,
        },
        _ => Scalar::Str {
            text: value.to_owned(),
            quoted: false,
            verbatim: false,
        },
    };
    Node {
        pos,
        kind: NodeKind::Scalar(scalar),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar. PyYAML (pySigma)
/// follows YAML 1.1 where `yes`/`no`/`on`/`off` are booleans too; Sigma
/// rules quote such words in practice, and 1.2 is the current standard.
fn resolve_plain(value: &str, span: &Span) -> Scalar {
    match value {
        "" | "~" | "null" | "Null" | "NULL" => return Scalar::Null,
        "true" | "True" | "TRUE" => return Scalar::Bool(true),
        "false" | "False" | "FALSE" => return Scalar::Bool(false),
        _ => {}
    }
    if let Some(n) = parse_int(value) {
        return Scalar::Int(n, value.to_owned());
    }
    Scalar::Str {
        text: value.to_owned(),
        quoted: false,
        verbatim: span.start.line() == span.end.line()
            && span.end.index() - span.start.index() == value.chars().count(),
    }
}

fn parse_int(value: &str) -> Option<i64> {
    let digits = value.strip_prefix(['-', '+']).unwrap_or(value);
    if let Some(hex) = digits.strip_prefix("0x") {
        if value.starts_with(['-', '+']) {
            return None;
        }
        return i64::from_str_radix(hex, 16).ok();
    }
    if let Some(oct) = digits.strip_prefix("0o") {
        if value.starts_with(['-', '+']) {
            return None;
        }
        return i64::from_str_radix(oct, 8).ok();
    }
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok()
}

/// A document after collection actions have been applied, ready to be read
/// as one rule.
#[derive(Debug)]
pub(crate) struct RuleDocument {
    /// 1-based index of the document in its source (for rules with no
    /// title or id to name them by).
    pub(crate) index: usize,
    pub(crate) node: Node,
}

/// Applies Sigma rule-collection actions the way pySigma does: `global`
/// documents are merged into every following rule (the global's values win,
/// mappings merge recursively), `reset` drops the global, `repeat` merges
/// itself into the previous rule and loads the result as a new rule.
pub(crate) fn apply_collection_actions(
    docs: Vec<Node>,
) -> Vec<Result<RuleDocument, (usize, YamlError)>> {
    let mut out = Vec::new();
    let mut global: Option<Node> = None;
    let mut previous: Option<Node> = None;
    for (i, mut doc) in docs.into_iter().enumerate() {
        let index = i + 1;
        let action = doc.get("action").map(|a| (a.scalar_text(), a.pos));
        match action {
            None => {
                if let Some(g) = &global {
                    deep_update(&mut doc, g);
                }
                previous = Some(doc.clone());
                out.push(Ok(RuleDocument { index, node: doc }));
            }
            Some((Some(action), pos)) => match action.as_str() {
                "global" => {
                    remove_key(&mut doc, "action");
                    previous = Some(doc.clone());
                    global = Some(doc);
                }
                "reset" => global = None,
                "repeat" => match previous.as_mut() {
                    Some(prev) => {
                        remove_key(&mut doc, "action");
                        deep_update(prev, &doc);
                        out.push(Ok(RuleDocument {
                            index,
                            node: prev.clone(),
                        }));
                    }
                    None => out.push(Err((
                        index,
                        YamlError {
                            pos,
                            error: RuleError::RepeatWithoutRule,
                        },
                    ))),
                },
                other => out.push(Err((
                    index,
                    YamlError {
                        pos,
                        error: RuleError::UnknownAction(other.to_owned()),
                    },
                ))),
            },
            Some((None, pos)) => out.push(Err((
                index,
                YamlError {
                    pos,
                    error: RuleError::WrongType {
                        key: "action".into(),
                        expected: "a string",
                    },
                },
            ))),
        }
    }
    out
}

fn remove_key(node: &mut Node, key: &str) {
    if let NodeKind::Map(entries) = &mut node.kind {
        entries.retain(|(k, _)| k.text != key);
    }
}

/// pySigma's `deep_dict_update(dest, src)`: every key of `src` replaces the
/// one in `dest`, except mapping values, which are merged key by key.
/// Recursion is bounded by [`MAX_DEPTH`], the tree's own depth limit.
fn deep_update(dest: &mut Node, src: &Node) {
    let (NodeKind::Map(dest_entries), Some(src_entries)) = (&mut dest.kind, src.as_map()) else {
        *dest = src.clone();
        return;
    };
    for (key, value) in src_entries {
        let slot = match dest_entries.iter().position(|(k, _)| k.text == key.text) {
            Some(i) => &mut dest_entries[i].1,
            None => {
                let fresh = if value.as_map().is_some() {
                    Node::empty_map(value.pos)
                } else {
                    value.clone()
                };
                dest_entries.push((key.clone(), fresh));
                let last = dest_entries.len() - 1;
                &mut dest_entries[last].1
            }
        };
        if value.as_map().is_some() {
            deep_update(slot, value);
        } else {
            *slot = value.clone();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(node: &Node) -> &Scalar {
        match &node.kind {
            NodeKind::Scalar(s) => s,
            other => panic!("not a scalar: {other:?}"),
        }
    }

    #[test]
    fn scalars_resolve_with_core_schema_and_quotes_make_strings() {
        let docs = parse_documents("a: 0\nb: '0'\nc: null\nd: ~\ne: true\nf: yes\ng: -12\nh: ''\n")
            .expect("valid yaml");
        let d = &docs[0];
        assert_eq!(scalar(d.get("a").expect("a")), &Scalar::Int(0, "0".into()));
        assert!(
            matches!(scalar(d.get("b").expect("b")), Scalar::Str { text, quoted: true, .. } if text == "0")
        );
        assert_eq!(scalar(d.get("c").expect("c")), &Scalar::Null);
        assert_eq!(scalar(d.get("d").expect("d")), &Scalar::Null);
        assert_eq!(scalar(d.get("e").expect("e")), &Scalar::Bool(true));
        assert!(
            matches!(scalar(d.get("f").expect("f")), Scalar::Str { text, .. } if text == "yes")
        );
        assert_eq!(
            scalar(d.get("g").expect("g")),
            &Scalar::Int(-12, "-12".into())
        );
        assert!(
            matches!(scalar(d.get("h").expect("h")), Scalar::Str { text, .. } if text.is_empty())
        );
    }

    #[test]
    fn positions_are_one_based() {
        let docs = parse_documents("title: x\ndetection:\n    sel:\n        Image: /bin/sh\n")
            .expect("valid yaml");
        let image = docs[0]
            .get("detection")
            .and_then(|d| d.get("sel"))
            .and_then(|s| s.get("Image"))
            .expect("image");
        assert_eq!(
            image.pos,
            Position {
                line: 4,
                column: 16
            }
        );
    }

    #[test]
    fn duplicate_keys_are_rejected_at_the_second_key() {
        let err = parse_documents("a: 1\nb: 2\na: 3\n").expect_err("duplicate");
        assert_eq!(err.pos, Position { line: 3, column: 1 });
        assert_eq!(err.error, RuleError::DuplicateKey("a".into()));
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_stack_overflow() {
        let flow = format!("{}{}", "[".repeat(100), "]".repeat(100));
        let err = parse_documents(&flow).expect_err("too deep");
        assert_eq!(err.error, RuleError::YamlTooDeep(MAX_DEPTH));
        let block: String = (0..1000)
            .map(|i| format!("{}k{i}:\n", " ".repeat(i)))
            .collect();
        let err = parse_documents(&block).expect_err("too deep");
        assert_eq!(err.error, RuleError::YamlTooDeep(MAX_DEPTH));
        // Far deeper flow nesting is refused by the scanner itself.
        let flow = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        let err = parse_documents(&flow).expect_err("too deep");
        assert_eq!(
            err.error,
            RuleError::Yaml("recursion limit exceeded".into())
        );
    }

    #[test]
    fn alias_bombs_are_refused() {
        let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..8 {
            let p = i - 1;
            text.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let err = parse_documents(&text).expect_err("bomb");
        assert_eq!(err.error, RuleError::YamlAliasBomb(MAX_ALIAS_NODES));
    }

    #[test]
    fn global_action_merges_into_following_documents_and_reset_stops_it() {
        let text = "action: global\ntitle: G\ndetection:\n  condition: sel\n---\ndetection:\n  sel:\n    Image: a\n---\naction: reset\n---\ntitle: Own\n";
        let docs = parse_documents(text).expect("valid yaml");
        let rules: Vec<RuleDocument> = apply_collection_actions(docs)
            .into_iter()
            .map(|r| r.expect("no action errors"))
            .collect();
        assert_eq!(rules.len(), 2);
        assert_eq!(rules[0].index, 2);
        assert_eq!(
            rules[0].node.get("title").and_then(Node::scalar_text),
            Some("G".into())
        );
        let det = rules[0].node.get("detection").expect("detection");
        assert!(det.get("sel").is_some() && det.get("condition").is_some());
        assert_eq!(
            rules[1].node.get("title").and_then(Node::scalar_text),
            Some("Own".into())
        );
        assert!(rules[1].node.get("detection").is_none());
    }
}
