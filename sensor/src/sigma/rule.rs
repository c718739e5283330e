//! One YAML rule document -> the rule model: metadata, log source, and the
//! detection as searches of `field|modifiers: values` items, every part
//! with its source position. Nothing is compiled here; `compile` turns this
//! model into matchers, and a later pass can look across all rules' items
//! (e.g. every literal for one field) before compiling.

use super::condition::{self, Cond};
use super::error::{ItemError, Position, RuleError};
use super::modifier::{self, Modifiers};
use super::yaml::{Key, Node, NodeKind, Scalar};

/// Rule metadata, kept for alerts and reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuleMeta {
    pub id: Option<String>,
    pub title: String,
    pub status: Option<String>,
    pub level: Option<String>,
    pub description: Option<String>,
    pub author: Option<String>,
    pub references: Vec<String>,
    pub tags: Vec<String>,
    pub falsepositives: Vec<String>,
    pub date: Option<String>,
    pub modified: Option<String>,
    pub logsource: LogSource,
    /// [`super::Source::name`] the rule was loaded from.
    pub source: String,
    /// Where the rule's document starts in that source.
    pub position: Position,
}

/// The rule's `logsource` (only the fields that gate loading).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LogSource {
    pub category: Option<String>,
    pub product: Option<String>,
    pub service: Option<String>,
}

impl LogSource {
    /// Whether this sensor evaluates rules for this log source: category
    /// `process_creation` (execs) or `process_termination` (watched
    /// processes' deaths), product `linux` or none, no service.
    pub fn is_linux_process_creation(&self) -> bool {
        let is = |v: &Option<String>, want: &str| {
            v.as_deref().is_some_and(|v| v.eq_ignore_ascii_case(want))
        };
        (is(&self.category, "process_creation") || is(&self.category, "process_termination"))
            && (self.product.is_none() || is(&self.product, "linux"))
            && self.service.is_none()
    }

    /// A `process_termination` rule (evaluated on the termination events
    /// of watched processes, not on execs).
    pub fn is_termination(&self) -> bool {
        self.category
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case("process_termination"))
    }

    /// `category 'x', product 'y'` for skip reports.
    pub(crate) fn describe(&self) -> String {
        let parts: Vec<String> = [
            ("category", &self.category),
            ("product", &self.product),
            ("service", &self.service),
        ]
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} '{v}'")))
        .collect();
        if parts.is_empty() {
            "(empty)".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// A located error while reading a rule.
pub(crate) type Located = (Position, RuleError);

/// A scalar value of a detection item.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Null,
    Bool(bool),
    /// A number and its text as written.
    Int(i64, String),
    Str(String),
}

impl Lit {
    pub(crate) fn kind_name(&self) -> &'static str {
        match self {
            Lit::Null => "null",
            Lit::Bool(_) => "a boolean",
            Lit::Int(..) => "a number",
            Lit::Str(_) => "a string",
        }
    }
}

/// One `field|modifiers: values` entry (or a keyword list, with no field).
#[derive(Debug, Clone)]
pub(crate) struct Item {
    /// The key as written (`CommandLine|contains`), `None` for a bare
    /// keyword list.
    pub(crate) key: Option<String>,
    pub(crate) field: Option<String>,
    pub(crate) modifiers: Modifiers,
    pub(crate) values: Vec<(Lit, Position)>,
    pub(crate) pos: Position,
}

/// The body of a search identifier.
#[derive(Debug, Clone)]
pub(crate) enum SearchExpr {
    /// A mapping: every item must match.
    AllOf(Vec<Item>),
    /// A list: any element must match. Elements are mappings or keywords.
    AnyOf(Vec<SearchExpr>),
}

#[derive(Debug, Clone)]
pub(crate) struct Search {
    pub(crate) name: String,
    pub(crate) expr: SearchExpr,
}

/// A parsed detection: searches in rule order and the condition (a list
/// of conditions already joined with `or`).
#[derive(Debug, Clone)]
pub(crate) struct Detection {
    pub(crate) searches: Vec<Search>,
    pub(crate) condition: Cond,
}

/// A rule document read into the model.
#[derive(Debug, Clone)]
pub(crate) struct RuleModel {
    pub(crate) meta: RuleMeta,
    pub(crate) detection: Detection,
}

/// A Sigma filter document (filters specification): extra conditions
/// ANDed onto the rules it names.
#[derive(Debug, Clone)]
pub(crate) struct FilterModel {
    pub(crate) meta: FilterMeta,
    /// Rule ids or titles, with where each is written.
    pub(crate) targets: Vec<(String, Position)>,
    pub(crate) detection: Detection,
}

/// What a filter is called and where it is, for reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FilterMeta {
    pub id: Option<String>,
    pub title: Option<String>,
    pub source: String,
    pub position: Position,
}

/// Reads a filter document: `title`/`id` optional, `filter:` holding
/// `rules:` (a rule id or title, or a list of them), searches and a
/// `condition`.
pub(crate) fn parse_filter(
    doc: &Node,
    source: &str,
) -> Result<FilterModel, (Vec<Located>, Vec<Search>)> {
    let one = |e: Located| (vec![e], Vec::new());
    let meta = FilterMeta {
        id: opt_text(doc, "id").map_err(one)?,
        title: opt_text(doc, "title").map_err(one)?,
        source: source.to_owned(),
        position: doc.pos,
    };
    let Some(node) = doc.get("filter") else {
        return Err(one((doc.pos, RuleError::Missing("filter"))));
    };
    let key_pos = doc.key_pos("filter").unwrap_or(node.pos);
    if node.as_map().is_none() {
        return Err(one((node.pos, RuleError::FilterNotAMapping)));
    }
    let targets: Vec<(String, Position)> = match node.get("rules") {
        None => return Err(one((key_pos, RuleError::Missing("rules")))),
        Some(rules) => {
            let list = text_list(node, "rules").map_err(one)?;
            let positions: Vec<Position> = match &rules.kind {
                NodeKind::Seq(items) => items.iter().map(|i| i.pos).collect(),
                _ => vec![rules.pos],
            };
            list.into_iter().zip(positions).collect()
        }
    };
    if targets.is_empty() {
        return Err(one((key_pos, RuleError::Missing("rules"))));
    }
    let detection = detection_body(node, "filter", key_pos)?;
    Ok(FilterModel {
        meta,
        targets,
        detection,
    })
}

/// Title, else id, of a rule document: how errors name it.
pub(crate) fn label(doc: &Node) -> Option<String> {
    doc.get("title")
        .and_then(Node::scalar_text)
        .or_else(|| doc.get("id").and_then(Node::scalar_text))
}

/// Reads `logsource`; missing or malformed is an error.
pub(crate) fn logsource(doc: &Node) -> Result<LogSource, Located> {
    let node = doc
        .get("logsource")
        .ok_or((doc.pos, RuleError::Missing("logsource")))?;
    if node.as_map().is_none() {
        return Err(wrong_type(node, "logsource", "a mapping"));
    }
    Ok(LogSource {
        category: opt_text(node, "category")?,
        product: opt_text(node, "product")?,
        service: opt_text(node, "service")?,
    })
}

/// Reads a whole rule document. Detection errors are collected (every bad
/// item of the rule is reported, not just the first), and returned with
/// the searches that did parse; metadata errors stop at the first.
pub(crate) fn parse(doc: &Node, source: &str) -> Result<RuleModel, (Vec<Located>, Vec<Search>)> {
    let one = |e: Located| (vec![e], Vec::new());
    let title = match doc.get("title") {
        None => return Err(one((doc.pos, RuleError::Missing("title")))),
        Some(t) => t
            .scalar_text()
            .ok_or_else(|| one(wrong_type(t, "title", "a string")))?,
    };
    let meta = RuleMeta {
        id: opt_text(doc, "id").map_err(one)?,
        title,
        status: opt_text(doc, "status").map_err(one)?,
        level: opt_text(doc, "level").map_err(one)?,
        description: opt_text(doc, "description").map_err(one)?,
        author: opt_text(doc, "author").map_err(one)?,
        references: text_list(doc, "references").map_err(one)?,
        tags: text_list(doc, "tags").map_err(one)?,
        falsepositives: text_list(doc, "falsepositives").map_err(one)?,
        date: opt_text(doc, "date").map_err(one)?,
        modified: opt_text(doc, "modified").map_err(one)?,
        logsource: logsource(doc).map_err(one)?,
        source: source.to_owned(),
        position: doc.pos,
    };
    let detection = detection(doc)?;
    Ok(RuleModel { meta, detection })
}

fn wrong_type(node: &Node, key: &str, expected: &'static str) -> Located {
    (
        node.pos,
        RuleError::WrongType {
            key: key.to_owned(),
            expected,
        },
    )
}

fn opt_text(map: &Node, key: &str) -> Result<Option<String>, Located> {
    match map.get(key) {
        None => Ok(None),
        Some(node) if matches!(node.kind, NodeKind::Scalar(Scalar::Null)) => Ok(None),
        Some(node) => node
            .scalar_text()
            .map(Some)
            .ok_or_else(|| wrong_type(node, key, "a string")),
    }
}

/// A list of scalars, or one scalar standing for a list of one.
fn text_list(map: &Node, key: &str) -> Result<Vec<String>, Located> {
    let Some(node) = map.get(key) else {
        return Ok(Vec::new());
    };
    match &node.kind {
        NodeKind::Scalar(Scalar::Null) => Ok(Vec::new()),
        NodeKind::Scalar(_) => Ok(node.scalar_text().into_iter().collect()),
        NodeKind::Seq(items) => items
            .iter()
            .map(|i| {
                i.scalar_text()
                    .ok_or_else(|| wrong_type(i, key, "a list of strings"))
            })
            .collect(),
        NodeKind::Map(_) => Err(wrong_type(node, key, "a list of strings")),
    }
}

/// The detection, or every error found in it together with the searches
/// that did parse (so the caller can compile those and report their
/// errors too).
fn detection(doc: &Node) -> Result<Detection, (Vec<Located>, Vec<Search>)> {
    let node = doc
        .get("detection")
        .ok_or_else(|| (vec![(doc.pos, RuleError::Missing("detection"))], Vec::new()))?;
    let key_pos = doc.key_pos("detection").unwrap_or(node.pos);
    detection_body(node, "detection", key_pos)
}

/// The searches and condition of a `detection:` (or a filter's `filter:`)
/// mapping; `rules` (a filter's targets) is not a search.
fn detection_body(
    node: &Node,
    key: &str,
    key_pos: Position,
) -> Result<Detection, (Vec<Located>, Vec<Search>)> {
    let entries = node
        .as_map()
        .ok_or_else(|| (vec![wrong_type(node, key, "a mapping")], Vec::new()))?;
    let is_search =
        |k: &str| !(matches!(k, "condition" | "timeframe") || (key == "filter" && k == "rules"));
    let mut errors = Vec::new();
    let mut searches = Vec::new();
    let mut condition_node = None;
    for (entry_key, value) in entries {
        match entry_key.text.as_str() {
            "condition" => condition_node = Some(value),
            k if !is_search(k) => {}
            name => match search_expr(name, value) {
                Ok(expr) => searches.push(Search {
                    name: name.to_owned(),
                    expr,
                }),
                Err(mut e) => errors.append(&mut e),
            },
        }
    }
    let Some(condition_node) = condition_node else {
        errors.push((key_pos, RuleError::Missing("condition")));
        return Err((errors, searches));
    };
    if searches.is_empty() && errors.is_empty() {
        errors.push((key_pos, RuleError::NoSearches));
    }
    // Resolve against every search, even ones that had errors, so a bad
    // item does not also surface as "unknown identifier".
    let names: Vec<&str> = entries
        .iter()
        .map(|(k, _)| k.text.as_str())
        .filter(|k| is_search(k))
        .collect();
    let condition = match conditions(condition_node, &names) {
        Ok(c) => Some(c),
        Err(mut e) => {
            errors.append(&mut e);
            None
        }
    };
    match condition {
        Some(condition) if errors.is_empty() => {
            // `names` and `searches` agree when there were no errors.
            Ok(Detection {
                searches,
                condition,
            })
        }
        _ => Err((errors, searches)),
    }
}

/// `condition:` is a string or a list of strings (joined with `or`).
fn conditions(node: &Node, names: &[&str]) -> Result<Cond, Vec<Located>> {
    let texts: Vec<&Node> = match &node.kind {
        NodeKind::Seq(items) if !items.is_empty() => items.iter().collect(),
        NodeKind::Scalar(Scalar::Str { .. }) => vec![node],
        _ => {
            return Err(vec![wrong_type(
                node,
                "condition",
                "a string or a list of strings",
            )]);
        }
    };
    let mut parsed = Vec::new();
    let mut errors = Vec::new();
    for text_node in texts {
        let NodeKind::Scalar(Scalar::Str {
            text,
            quoted,
            verbatim,
        }) = &text_node.kind
        else {
            errors.push(wrong_type(
                text_node,
                "condition",
                "a string or a list of strings",
            ));
            continue;
        };
        match condition::parse(text, names) {
            Ok(c) => parsed.push(c),
            Err((offset, e)) => {
                // Point at the token when the scalar maps 1:1 onto the source.
                let pos = if *verbatim {
                    Position {
                        line: text_node.pos.line,
                        column: text_node.pos.column + usize::from(*quoted) + offset,
                    }
                } else {
                    text_node.pos
                };
                errors.push((pos, RuleError::Condition(e)));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(if parsed.len() == 1 {
        parsed.remove(0)
    } else {
        Cond::Or(parsed)
    })
}

fn search_expr(name: &str, node: &Node) -> Result<SearchExpr, Vec<Located>> {
    let search_err = |pos, problem| {
        vec![(
            pos,
            RuleError::Search {
                search: name.to_owned(),
                problem,
            },
        )]
    };
    match &node.kind {
        NodeKind::Map(entries) => map_search(name, node.pos, entries),
        NodeKind::Seq(elements) => {
            if elements.is_empty() {
                return Err(search_err(node.pos, ItemError::EmptyList));
            }
            let mut alternatives = Vec::new();
            let mut keywords = Vec::new();
            let mut errors = Vec::new();
            for element in elements {
                match &element.kind {
                    NodeKind::Map(entries) => match map_search(name, element.pos, entries) {
                        Ok(e) => alternatives.push(e),
                        Err(mut e) => errors.append(&mut e),
                    },
                    NodeKind::Scalar(s) => keywords.push((lit(s), element.pos)),
                    NodeKind::Seq(_) => {
                        errors.append(&mut search_err(element.pos, ItemError::NestedValue("list")));
                    }
                }
            }
            if !errors.is_empty() {
                return Err(errors);
            }
            if !keywords.is_empty() {
                alternatives.push(SearchExpr::AllOf(vec![Item {
                    key: None,
                    field: None,
                    modifiers: Modifiers::default(),
                    values: keywords,
                    pos: node.pos,
                }]));
            }
            Ok(if alternatives.len() == 1 {
                alternatives.remove(0)
            } else {
                SearchExpr::AnyOf(alternatives)
            })
        }
        NodeKind::Scalar(Scalar::Null) => Err(search_err(node.pos, ItemError::BadSearch("null"))),
        NodeKind::Scalar(s) => Ok(SearchExpr::AllOf(vec![Item {
            key: None,
            field: None,
            modifiers: Modifiers::default(),
            values: vec![(lit(s), node.pos)],
            pos: node.pos,
        }])),
    }
}

fn map_search(
    name: &str,
    pos: Position,
    entries: &[(Key, Node)],
) -> Result<SearchExpr, Vec<Located>> {
    if entries.is_empty() {
        return Err(vec![(
            pos,
            RuleError::Search {
                search: name.to_owned(),
                problem: ItemError::EmptyMap,
            },
        )]);
    }
    let mut items = Vec::new();
    let mut errors = Vec::new();
    for (key, value) in entries {
        let item_err = |pos, problem| {
            (
                pos,
                RuleError::Item {
                    search: name.to_owned(),
                    field: key.text.clone(),
                    problem,
                },
            )
        };
        let (field, modifiers) = match modifier::parse_key(&key.text) {
            Ok(parsed) => parsed,
            Err(problem) => {
                errors.push(item_err(key.pos, problem));
                continue;
            }
        };
        let values = match &value.kind {
            NodeKind::Scalar(s) => vec![(lit(s), value.pos)],
            NodeKind::Seq(list) if list.is_empty() => {
                errors.push(item_err(value.pos, ItemError::EmptyList));
                continue;
            }
            NodeKind::Seq(list) => {
                let mut values = Vec::new();
                for v in list {
                    match &v.kind {
                        NodeKind::Scalar(s) => values.push((lit(s), v.pos)),
                        _ => errors.push(item_err(v.pos, ItemError::NestedValue(kind_word(v)))),
                    }
                }
                values
            }
            NodeKind::Map(_) => {
                errors.push(item_err(value.pos, ItemError::NestedValue("mapping")));
                continue;
            }
        };
        if modifiers.all && values.len() < 2 {
            // pySigma accepts it, but a lone value under `all` is almost
            // always a list that lost its other entries.
            errors.push(item_err(value.pos, ItemError::AllWithOneValue));
            continue;
        }
        // pySigma turns null in a list into `field is null or ...`; the
        // spec reserves null for a whole value, and a list with it is
        // usually a YAML slip (an empty `- ` entry).
        if values.len() > 1
            && let Some((_, pos)) = values.iter().find(|(v, _)| *v == Lit::Null)
        {
            errors.push(item_err(*pos, ItemError::NullInList));
            continue;
        }
        items.push(Item {
            key: Some(key.text.clone()),
            field,
            modifiers,
            values,
            pos: key.pos,
        });
    }
    if errors.is_empty() {
        Ok(SearchExpr::AllOf(items))
    } else {
        Err(errors)
    }
}

fn kind_word(node: &Node) -> &'static str {
    match node.kind {
        NodeKind::Seq(_) => "list",
        NodeKind::Map(_) => "mapping",
        NodeKind::Scalar(_) => "scalar",
    }
}

fn lit(s: &Scalar) -> Lit {
    match s {
        Scalar::Null => Lit::Null,
        Scalar::Bool(b) => Lit::Bool(*b),
        Scalar::Int(n, text) => Lit::Int(*n, text.clone()),
        Scalar::Str { text, .. } => Lit::Str(text.clone()),
    }
}
