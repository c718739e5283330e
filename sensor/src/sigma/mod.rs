//! Native Sigma rule engine: rule text in, compiled immutable [`RuleSet`]
//! out, and matching of process-creation events against it.
//!
//! Pure library: it is handed rule text ([`Source`]), never paths, and
//! reads events through the [`Event`] trait, so it is testable, fuzzable and
//! benchmarkable without a kernel.
//!
//! # Pipeline and layout
//!
//! | step | file |
//! |---|---|
//! | YAML text -> nodes with `line:column`, multi-document, `action: global/reset/repeat` | `yaml.rs` |
//! | nodes -> rule model: [`RuleMeta`], log source, searches of `field\|modifiers: values` items | `rule.rs` |
//! | `Field\|mod\|mod` keys: known modifiers, valid combinations, "did you mean" | `modifier.rs` |
//! | `condition` text -> AST over search indices, nesting-limited | `condition.rs` |
//! | model -> compiled string predicates (literals, wildcard regexes, `\|re`) | `compile.rs` |
//! | all literals by field in aho-corasick automata; each rule's required literals | `literals.rs` |
//! | the per-event literal pass, then evaluation of candidate rules | `matcher.rs` |
//! | [`LoadError`], [`LoadWarning`] and their messages | `error.rs` |
//! | behaviour tests: seed rule, SigmaHQ rules, edge cases, pinned errors, pySigma differential | `tests.rs` (data in `sensor/tests/sigma/`) |
//!
//! # Choices
//!
//! * YAML: `saphyr-parser` (the maintained successor of yaml-rust, MIT/Apache,
//!   builds on 1.85+), used at the event level. `serde_yaml` is unmaintained
//!   and loses positions on deserialisation; `saphyr`'s DOM would work but
//!   the events let us keep each scalar's style (a quoted `'0'` stays a
//!   string) and enforce depth and alias limits while building, with no
//!   recursion.
//! * Semantics follow the Sigma 2.x specification, and pySigma where the
//!   specification is silent (wildcard escapes, `windash`, `them` skipping
//!   `_` identifiers, collection merging, lowercase-only operators).
//!   Deliberate differences from the pySigma + SQLite reference: case
//!   folding is Unicode lowercasing (SQLite's `LIKE` folds ASCII only), and
//!   plain YAML scalars follow YAML 1.2 (`yes` is a string).
//! * Only linux `process_creation` rules (or `process_creation` with no
//!   product) are loaded; others are reported as [`LoadWarning`]s.
//! * Rules are untrusted: YAML depth and alias expansion, condition nesting
//!   and compiled regex size are all bounded, and nothing recurses deeper
//!   than those bounds.
//!
//! # Matching
//!
//! Compiled, not interpreted. At load, every field-bound literal of every
//! rule (exact, prefix, suffix, contains; lowercased unless `|cased`) goes
//! into per-field aho-corasick DFAs (`literals.rs`). For each rule the
//! index keeps a set of literals one of which must be found for the rule
//! to match (the rarest such set; a `|re` value offers its prefix
//! literals, `exists: true` the field's presence), and only those
//! literals are indexed. Per event, each indexed field is fetched once
//! and walked once (one DFA holding all its literals when it has more
//! than a few `contains` ones, anchors checked by match position); found
//! literals mark candidate rules, and only candidates (plus the few rules
//! with no required literal) are evaluated, reading indexed literals as
//! bits and comparing the rest (`matcher.rs`). Per-event state lives in a
//! reused [`Scratch`], so matching a benign event allocates nothing.
//!
mod compile;
mod condition;
mod error;
pub mod kernel;
mod literals;
mod matcher;
mod modifier;
mod rule;
mod yaml;

#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

pub use condition::ConditionError;
pub use error::{ItemError, LoadError, LoadWarning, Position, RuleError, SkipReason};
pub use rule::{FilterMeta, LogSource, RuleMeta};

use compile::{FieldTable, RuleMatcher};
use condition::Cond;
use matcher::EventCache;
pub use matcher::Scratch;

/// One rule file's text and the name to report it by (a path, or
/// `bundled:<file>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub name: String,
    pub text: String,
}

impl Source {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Source {
            name: name.into(),
            text: text.into(),
        }
    }
}

/// A field accessor over one event. Field names are the Sigma/Sysmon names,
/// case-sensitive (`Image`, `CommandLine`, `ParentImage`, `User`,
/// `ProcessId`, ...).
pub trait Event {
    /// The field's value; `None` when the event has no such field.
    fn field(&self, name: &str) -> Option<Value<'_>>;
    /// Calls `f` with every string-valued field (for keyword detections:
    /// plain value lists with no field).
    fn for_each_string(&self, f: &mut dyn FnMut(&str));
}

/// A field value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Bool(bool),
    /// Present but null; rules' `field: null` matches this and absence.
    Null,
}

/// One compiled rule.
#[derive(Debug)]
pub struct Rule {
    pub meta: RuleMeta,
    /// Sigma filters ANDed onto this rule's condition, in load order.
    pub filters: Vec<FilterMeta>,
    matcher: RuleMatcher,
    /// The detection as written, for [`kernel::compile`] (prevention
    /// compiles its own tables from it, not from the matcher).
    detection: rule::Detection,
}

impl Rule {
    /// `id<TAB>level<TAB>title<TAB>source:line:col` for `sigexec rules
    /// list`; `-` for a missing id or level. Tabs and newlines inside a
    /// value become spaces so each rule stays one line of four columns.
    pub fn list_line(&self) -> String {
        let clean = |s: &str| s.replace(['\t', '\n', '\r'], " ");
        let m = &self.meta;
        format!(
            "{}\t{}\t{}\t{}:{}",
            clean(m.id.as_deref().unwrap_or("-")),
            clean(m.level.as_deref().unwrap_or("-")),
            clean(&m.title),
            clean(&m.source),
            m.position
        )
    }
}

/// A compiled, immutable set of rules. `Send + Sync`: built once per load
/// (off the event path) and shared behind an `Arc`.
#[derive(Debug, Default)]
pub struct RuleSet {
    rules: Vec<Rule>,
    /// Field names every rule refers to, by id; rules hold ids only.
    fields: FieldTable,
    /// Every filter document loaded (whether or not it named a rule).
    filters: Vec<FilterMeta>,
    /// Literals of all rules by field, and which rules each one triggers.
    literals: literals::LiteralIndex,
}

/// Everything a load produced: the rules that compiled, the errors, and
/// the rules skipped as not meant for this sensor.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub rules: RuleSet,
    pub errors: Vec<LoadError>,
    pub skipped: Vec<LoadWarning>,
}

impl RuleSet {
    /// Loads every document of every source. Bad rules become errors; good
    /// ones still load. Rules for other log sources are dropped silently
    /// here; use [`RuleSet::load_report`] to see them.
    pub fn load(sources: impl IntoIterator<Item = Source>) -> (RuleSet, Vec<LoadError>) {
        let report = Self::load_report(sources);
        (report.rules, report.errors)
    }

    /// Like [`RuleSet::load`], also returning the rules skipped as not
    /// meant for this sensor.
    pub fn load_with_warnings(
        sources: impl IntoIterator<Item = Source>,
    ) -> (RuleSet, Vec<LoadError>, Vec<LoadWarning>) {
        let report = Self::load_report(sources);
        (report.rules, report.errors, report.skipped)
    }

    /// Like [`RuleSet::load`], also reporting skipped rules.
    ///
    /// Sources may hold rules and Sigma filter documents (`filter:` with
    /// `rules:` naming rule ids or titles) in any order and any file: a
    /// filter applies to the named rules of the whole set, pySigma's way,
    /// as `(rule condition) and (filter condition)`. A filter naming a rule
    /// that is neither loaded nor skipped is an error; a rule id used twice
    /// is an error on the second rule, which is not loaded.
    pub fn load_report(sources: impl IntoIterator<Item = Source>) -> LoadReport {
        let mut loading = Loading::default();
        for source in sources {
            loading.source(&source);
        }
        loading.finish()
    }

    /// Every filter document that loaded.
    pub fn filters(&self) -> &[FilterMeta] {
        &self.filters
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn len(&self) -> usize {
        self.rules.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Indices (into [`RuleSet::rules`]) of the rules that match `event`,
    /// appended to `out` in rule order. Uses a thread-local [`Scratch`];
    /// see [`RuleSet::matches_with`] to pass one explicitly.
    pub fn matches(&self, event: &dyn Event, out: &mut Vec<usize>) {
        thread_local! {
            static SCRATCH: RefCell<Scratch> = RefCell::new(Scratch::default());
        }
        SCRATCH.with(|cell| match cell.try_borrow_mut() {
            Ok(mut scratch) => self.matches_with(event, &mut scratch, out),
            // Only if an `Event` implementation calls back into matching.
            Err(_) => self.matches_with(event, &mut Scratch::default(), out),
        });
    }

    /// Like [`RuleSet::matches`], with buffers from `scratch`, which may
    /// have been used with any rule set before.
    pub fn matches_with(&self, event: &dyn Event, scratch: &mut Scratch, out: &mut Vec<usize>) {
        let mut cache = EventCache::new(event, &self.fields, scratch);
        cache.scan(&self.literals);
        let candidates = cache.take_candidates();
        for i in candidates.iter() {
            if self.rules[i].matcher.is_match(&mut cache) {
                out.push(i);
            }
        }
        cache.give_back(candidates);
        cache.finish();
    }
}

/// Sigma filter documents compiled on their own, each into a matcher of
/// its own condition, instead of being ANDed onto the rules they name.
///
/// This is how sigexec's exclusions work: a rule's hit is kept, but marked
/// `suppressed_by` a filter, when that filter's condition does not hold
/// for the event. The same document given to a pySigma backend would drop
/// those events (a filter keeps what its condition selects), so shipped
/// exclusions stay ordinary Sigma filters.
#[derive(Debug, Default)]
pub struct FilterSet {
    /// One entry per filter document, in load order; its matcher is the
    /// filter's condition.
    set: RuleSet,
    filters: Vec<FilterMeta>,
    /// The rule ids or titles each filter names.
    targets: Vec<Vec<String>>,
}

impl FilterSet {
    /// Compiles every document of `sources`, which must all be filter
    /// documents (a rule is an error). Targets are not checked here: the
    /// caller knows which rules are loaded.
    pub fn load(sources: impl IntoIterator<Item = Source>) -> (FilterSet, Vec<LoadError>) {
        let mut loading = Loading {
            standalone_filters: true,
            ..Loading::default()
        };
        for source in sources {
            loading.source(&source);
        }
        let mut report = loading.report;
        let mut set = FilterSet::default();
        for filter in loading.filters {
            set.set.rules.push(Rule {
                meta: RuleMeta {
                    id: filter.meta.id.clone(),
                    title: filter.label.clone().unwrap_or_default(),
                    status: None,
                    level: None,
                    description: None,
                    author: None,
                    references: Vec::new(),
                    tags: Vec::new(),
                    falsepositives: Vec::new(),
                    date: None,
                    modified: None,
                    logsource: LogSource::default(),
                    source: filter.meta.source.clone(),
                    position: filter.meta.position,
                },
                filters: Vec::new(),
                matcher: filter.matcher,
                detection: filter.detection,
            });
            set.targets
                .push(filter.targets.into_iter().map(|(t, _)| t).collect());
            set.filters.push(filter.meta);
        }
        set.set.fields = std::mem::take(&mut report.rules.fields);
        set.set.literals = literals::build(set.set.rules.iter_mut().map(|r| &mut r.matcher));
        (set, report.errors)
    }

    pub fn filters(&self) -> &[FilterMeta] {
        &self.filters
    }

    /// The rule ids or titles filter `i` names.
    pub fn targets(&self, i: usize) -> &[String] {
        &self.targets[i]
    }

    pub fn len(&self) -> usize {
        self.filters.len()
    }

    pub fn is_empty(&self) -> bool {
        self.filters.is_empty()
    }

    /// Indices of the filters whose condition holds for `event` (those
    /// that would keep it), appended to `out`.
    pub fn holding(&self, event: &dyn Event, out: &mut Vec<usize>) {
        self.set.matches(event, out);
    }
}

/// State of one load: the report being built, filters waiting for every
/// rule to be known, and what is needed to check ids and filter targets.
#[derive(Default)]
struct Loading {
    /// Only filter documents are expected, compiled on their own
    /// ([`FilterSet`]).
    standalone_filters: bool,
    report: LoadReport,
    filters: Vec<PendingFilter>,
    /// Rule id -> `source:line:col` of the rule that has it.
    ids: HashMap<String, String>,
    /// Ids and titles of rules skipped for their log source: a filter
    /// naming one is not an error.
    skipped_names: HashSet<String>,
}

struct PendingFilter {
    meta: FilterMeta,
    label: Option<String>,
    targets: Vec<(String, Position)>,
    matcher: RuleMatcher,
    detection: rule::Detection,
}

impl Loading {
    /// Parses and loads every document of one source.
    fn source(&mut self, source: &Source) {
        let docs = match yaml::parse_documents(&source.text) {
            Ok(docs) => docs,
            Err(e) => {
                self.report.errors.push(LoadError {
                    source_name: source.name.clone(),
                    position: Some(e.pos),
                    rule: None,
                    kind: e.error,
                });
                return;
            }
        };
        for doc in yaml::apply_collection_actions(docs) {
            match doc {
                Ok(doc) => load_document(&source.name, &doc, self),
                Err((_, e)) => self.report.errors.push(LoadError {
                    source_name: source.name.clone(),
                    position: Some(e.pos),
                    rule: None,
                    kind: e.error,
                }),
            }
        }
    }

    fn finish(mut self) -> LoadReport {
        for filter in self.filters {
            for (target, pos) in &filter.targets {
                let mut found = false;
                for rule in &mut self.report.rules.rules {
                    if rule.meta.id.as_deref() == Some(target) || rule.meta.title == *target {
                        found = true;
                        rule.matcher = rule.matcher.clone().and(&filter.matcher);
                        rule.filters.push(filter.meta.clone());
                    }
                }
                if !found && !self.skipped_names.contains(target) {
                    self.report.errors.push(LoadError {
                        source_name: filter.meta.source.clone(),
                        position: Some(*pos),
                        rule: filter.label.clone(),
                        kind: RuleError::FilterTargetUnknown(target.clone()),
                    });
                }
            }
            self.report.rules.filters.push(filter.meta);
        }
        let rules = &mut self.report.rules;
        rules.literals = literals::build(rules.rules.iter_mut().map(|r| &mut r.matcher));
        self.report
    }
}

impl RuleMatcher {
    /// This rule ANDed with `filter`: the filter's searches are appended
    /// and its condition renumbered to point at them.
    fn and(mut self, filter: &RuleMatcher) -> RuleMatcher {
        let shift = self.searches.len();
        self.searches.extend(filter.searches.iter().cloned());
        self.condition = Cond::And(vec![self.condition, filter.condition.shifted(shift)]);
        self
    }
}

fn load_document(source: &str, doc: &yaml::RuleDocument, loading: &mut Loading) {
    let report = &mut loading.report;
    let node = &doc.node;
    let label = rule::label(node).or_else(|| Some(format!("document {}", doc.index)));
    let error = |pos: Position, kind: RuleError| LoadError {
        source_name: source.to_owned(),
        position: Some(pos),
        rule: label.clone(),
        kind,
    };
    if node.as_map().is_none() {
        report.errors.push(error(node.pos, RuleError::NotAMapping));
        return;
    }
    if node.get("correlation").is_some() {
        report.skipped.push(LoadWarning {
            source_name: source.to_owned(),
            position: Some(node.pos),
            rule: label.clone(),
            reason: SkipReason::NotARule("correlation"),
        });
        return;
    }
    let is_filter = node.get("filter").is_some();
    // Gate on the log source before anything else, so a windows rule with
    // a modifier we lack is skipped, not an error.
    match rule::logsource(node) {
        Err((pos, kind)) => {
            report.errors.push(error(pos, kind));
            return;
        }
        Ok(ls) if !ls.is_linux_process_creation() => {
            for key in ["id", "title"] {
                if let Some(name) = node.get(key).and_then(yaml::Node::scalar_text) {
                    loading.skipped_names.insert(name);
                }
            }
            report.skipped.push(LoadWarning {
                source_name: source.to_owned(),
                position: node.key_pos("logsource"),
                rule: label.clone(),
                reason: SkipReason::LogSource(ls.describe()),
            });
            return;
        }
        Ok(_) => {}
    }
    if is_filter {
        load_filter(source, node, label, loading);
        return;
    }
    if loading.standalone_filters {
        report.errors.push(error(node.pos, RuleError::NotAFilter));
        return;
    }
    let compiled = match rule::parse(node, source) {
        Ok(model) => {
            let detection = model.detection.clone();
            compile::compile(model.detection, &mut report.rules.fields)
                .map(|m| (model.meta, m, detection))
        }
        Err((mut errors, searches)) => {
            // Also compile the searches that parsed, into a throwaway field
            // table, so one pass reports bad regexes next to bad keys.
            if let Err(mut more) = compile::compile_searches(searches, &mut FieldTable::default()) {
                errors.append(&mut more);
            }
            Err(errors)
        }
    };
    match compiled {
        Ok((meta, matcher, detection)) => {
            if let Some(id) = &meta.id {
                let here = format!("{}:{}", meta.source, meta.position);
                if let Some(first) = loading.ids.get(id) {
                    report.errors.push(error(
                        node.key_pos("id").unwrap_or(node.pos),
                        RuleError::DuplicateId {
                            id: id.clone(),
                            first: first.clone(),
                        },
                    ));
                    return;
                }
                loading.ids.insert(id.clone(), here);
            }
            report.rules.rules.push(Rule {
                meta,
                filters: Vec::new(),
                matcher,
                detection,
            });
        }
        Err(mut errors) => {
            errors.sort_by_key(|(pos, _)| *pos);
            report
                .errors
                .extend(errors.into_iter().map(|(pos, kind)| error(pos, kind)));
        }
    }
}

/// Compiles a filter document and queues it until every rule is loaded.
fn load_filter(source: &str, node: &yaml::Node, label: Option<String>, loading: &mut Loading) {
    let report = &mut loading.report;
    let error = |(pos, kind): (Position, RuleError)| LoadError {
        source_name: source.to_owned(),
        position: Some(pos),
        rule: label.clone(),
        kind,
    };
    let compiled = match rule::parse_filter(node, source) {
        Ok(model) => {
            let detection = model.detection.clone();
            compile::compile(model.detection, &mut report.rules.fields)
                .map(|m| (model.meta, model.targets, m, detection))
        }
        Err((mut errors, searches)) => {
            if let Err(mut more) = compile::compile_searches(searches, &mut FieldTable::default()) {
                errors.append(&mut more);
            }
            Err(errors)
        }
    };
    match compiled {
        Ok((meta, targets, matcher, detection)) => loading.filters.push(PendingFilter {
            meta,
            label,
            targets,
            matcher,
            detection,
        }),
        Err(mut errors) => {
            errors.sort_by_key(|(pos, _)| *pos);
            report.errors.extend(errors.into_iter().map(error));
        }
    }
}
