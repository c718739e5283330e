//! The literal index: every literal value of every rule, grouped by field,
//! in one aho-corasick automaton per field, and for each rule the literals
//! of which at least one must be found for the rule to be able to match.
//!
//! Built once per load, after filters are merged into their rules:
//!
//! 1. Each field-bound literal matcher (`Exact`, `Prefix`, `Suffix`,
//!    `Contains` with a non-empty text) is given a [`LitId`] and replaced
//!    by [`ValueMatcher::Lit`] in the rule's tree, so evaluation reads a
//!    bit instead of comparing text again. The same text on the same field
//!    and case mode shares one automaton pattern; the same text with the
//!    same anchor shares one id.
//! 2. For each rule, [`required`] walks the condition and finds a set of
//!    literal ids such that the rule cannot match unless one of them is
//!    found. Rules where no such set exists (a `not`, a regex, a keyword
//!    search or `exists` on every path) are always evaluated.
//!
//! Per event (`matcher::Scratch::scan`): each indexed field's text is
//! lowercased once and searched once with overlapping matches; a match is a
//! hit when its position satisfies the anchor (whole text, start, end,
//! anywhere). The hits mark candidate rules; only candidates and the
//! always-evaluated rules are then evaluated.
//!
//! The walks recurse as deep as a search (two levels) or a condition
//! (bounded by `condition::MAX_NESTING`).

use std::collections::HashMap;

use aho_corasick::dfa::DFA;
use aho_corasick::{MatchKind, StartKind};

use super::compile::{
    FieldId, FieldTest, ItemMatcher, RuleMatcher, SearchMatcher, StrKind, StrMatcher, ValueMatcher,
};
use super::condition::Cond;
use super::modifier::Anchor;

/// Index of a literal in [`LiteralIndex`].
pub(crate) type LitId = usize;

/// Which automaton of a field a literal goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Group {
    /// Whole-text and prefix literals: an anchored search from the start,
    /// which stops after the longest literal's length.
    Start,
    /// Suffix literals, reversed: an anchored search of the reversed text.
    End,
    /// `contains` literals: an unanchored search of the whole text.
    Anywhere,
}

/// One field (in one case mode), one [`Group`], and its automaton.
#[derive(Debug)]
pub(crate) struct FieldScan {
    pub(crate) field: FieldId,
    /// Search the original text (`|cased` literals), not the lowercased.
    pub(crate) cased: bool,
    pub(crate) group: Group,
    pub(crate) automaton: Scanner,
    /// The patterns as searched (reversed for [`Group::End`]).
    pub(crate) patterns: Vec<Vec<u8>>,
    /// Automaton pattern id -> the literals with that text.
    pub(crate) targets: Vec<Vec<(LitId, Anchor)>>,
}

/// How one [`FieldScan`] searches.
#[derive(Debug)]
pub(crate) enum Scanner {
    /// Unanchored, overlapping: every occurrence of every pattern, walked
    /// state by state (cheaper per byte than the crate's overlapping
    /// iterator, which returns to the caller at every match).
    Anywhere(Box<DFA>),
    /// Anchored at the start of the (possibly reversed) text, walked state
    /// by state: `aho-corasick`'s iterators do not do anchored overlapping
    /// searches, and the walk stops as soon as no pattern can match.
    Anchored(Box<DFA>),
    /// Each pattern on its own; only if an automaton could not be built
    /// (beyond the crate's size limits).
    Naive,
}

/// All literals of a rule set; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct LiteralIndex {
    pub(crate) scans: Vec<FieldScan>,
    pub(crate) literal_count: usize,
    /// Literal id -> rules that become candidates when it is found.
    pub(crate) triggers: Vec<Vec<usize>>,
    /// Rules evaluated for every event (no required literal), in order.
    pub(crate) always: Vec<usize>,
    pub(crate) rule_count: usize,
}

/// Patterns of one future [`FieldScan`] while they are collected.
struct PendingScan {
    field: FieldId,
    cased: bool,
    group: Group,
    patterns: Vec<Vec<u8>>,
    by_text: HashMap<Vec<u8>, usize>,
    targets: Vec<Vec<(LitId, Anchor)>>,
}

/// Collects literals while rule trees are rewritten.
#[derive(Default)]
struct Builder {
    scan_of: HashMap<(FieldId, bool, Group), usize>,
    scans: Vec<PendingScan>,
    ids: HashMap<(FieldId, bool, String, Anchor), LitId>,
}

impl Builder {
    fn literal(&mut self, field: FieldId, cased: bool, text: &str, anchor: Anchor) -> LitId {
        let key = (field, cased, text.to_owned(), anchor);
        if let Some(&id) = self.ids.get(&key) {
            return id;
        }
        let id = self.ids.len();
        self.ids.insert(key, id);
        let group = match anchor {
            Anchor::Whole | Anchor::StartsWith => Group::Start,
            Anchor::EndsWith => Group::End,
            Anchor::Contains => Group::Anywhere,
        };
        let scans = &mut self.scans;
        let scan = *self
            .scan_of
            .entry((field, cased, group))
            .or_insert_with(|| {
                scans.push(PendingScan {
                    field,
                    cased,
                    group,
                    patterns: Vec::new(),
                    by_text: HashMap::new(),
                    targets: Vec::new(),
                });
                scans.len() - 1
            });
        let scan = &mut self.scans[scan];
        let mut bytes = text.as_bytes().to_vec();
        if group == Group::End {
            bytes.reverse();
        }
        let pattern = *scan.by_text.entry(bytes.clone()).or_insert_with(|| {
            scan.patterns.push(bytes);
            scan.targets.push(Vec::new());
            scan.patterns.len() - 1
        });
        scan.targets[pattern].push((id, anchor));
        id
    }

    /// The literal a string matcher reduces to, if it is one.
    fn lit_of(&mut self, field: FieldId, m: &StrMatcher) -> Option<LitId> {
        let (text, anchor) = match &m.kind {
            StrKind::Exact(s) => (s.clone(), Anchor::Whole),
            StrKind::Prefix(s) => (s.clone(), Anchor::StartsWith),
            StrKind::Suffix(s) => (s.clone(), Anchor::EndsWith),
            StrKind::Contains(finder) => (
                String::from_utf8(finder.needle().to_vec()).ok()?,
                Anchor::Contains,
            ),
            StrKind::Any | StrKind::Pattern(_) | StrKind::Regex(_) => return None,
        };
        // An empty pattern matches everywhere and says nothing; keep the
        // plain comparison for it.
        if text.is_empty() {
            return None;
        }
        Some(self.literal(field, m.cased, &text, anchor))
    }

    fn rewrite_search(&mut self, search: &mut SearchMatcher) {
        match search {
            SearchMatcher::AllOf(items) => items.iter_mut().for_each(|i| self.rewrite_item(i)),
            SearchMatcher::AnyOf(alts) => alts.iter_mut().for_each(|s| self.rewrite_search(s)),
        }
    }

    fn rewrite_item(&mut self, item: &mut ItemMatcher) {
        match item {
            ItemMatcher::Field {
                field,
                test: FieldTest::Values { values, .. },
            } => {
                for value in values.iter_mut() {
                    let lit = match value {
                        ValueMatcher::Str(m) => self.lit_of(*field, m).map(ValueMatcher::Lit),
                        ValueMatcher::AnyStr(ms) => ms
                            .iter()
                            .map(|m| self.lit_of(*field, m))
                            .collect::<Option<Vec<_>>>()
                            .map(ValueMatcher::AnyLit),
                        _ => None,
                    };
                    if let Some(lit) = lit {
                        *value = lit;
                    }
                }
            }
            ItemMatcher::Not(inner) => self.rewrite_item(inner),
            ItemMatcher::Field { .. } | ItemMatcher::Keywords { .. } => {}
        }
    }

    fn finish(self, triggers: Vec<Vec<usize>>, always: Vec<usize>, rules: usize) -> LiteralIndex {
        let literal_count = self.ids.len();
        let scans = self
            .scans
            .into_iter()
            .map(|scan| {
                let start = if scan.group == Group::Anywhere {
                    StartKind::Unanchored
                } else {
                    StartKind::Anchored
                };
                let dfa = DFA::builder()
                    .match_kind(MatchKind::Standard)
                    .start_kind(start)
                    .build(&scan.patterns);
                let automaton = match (dfa, scan.group) {
                    (Err(_), _) => Scanner::Naive,
                    (Ok(d), Group::Anywhere) => Scanner::Anywhere(Box::new(d)),
                    (Ok(d), Group::Start | Group::End) => Scanner::Anchored(Box::new(d)),
                };
                FieldScan {
                    field: scan.field,
                    cased: scan.cased,
                    group: scan.group,
                    automaton,
                    patterns: scan.patterns,
                    targets: scan.targets,
                }
            })
            .collect();
        LiteralIndex {
            scans,
            literal_count,
            triggers,
            always,
            rule_count: rules,
        }
    }
}

/// Rewrites every rule's literal matchers into literal ids and builds the
/// index over them. `matchers` are in rule order.
pub(crate) fn build<'a>(matchers: impl Iterator<Item = &'a mut RuleMatcher>) -> LiteralIndex {
    let mut builder = Builder::default();
    let mut required_sets = Vec::new();
    for m in matchers {
        m.searches
            .iter_mut()
            .for_each(|s| builder.rewrite_search(s));
        required_sets.push(required(&m.condition, &m.searches));
    }
    let mut triggers = vec![Vec::new(); builder.ids.len()];
    let mut always = Vec::new();
    for (rule, set) in required_sets.iter().enumerate() {
        match set {
            Some(lits) => lits.iter().for_each(|&l| triggers[l].push(rule)),
            None => always.push(rule),
        }
    }
    let rules = required_sets.len();
    builder.finish(triggers, always, rules)
}

/// A set of literals one of which must be found for `cond` to be true,
/// or `None` when there is no such set.
fn required(cond: &Cond, searches: &[SearchMatcher]) -> Option<Vec<LitId>> {
    match cond {
        Cond::Search(i) => searches.get(*i).and_then(required_search),
        Cond::Not(_) => None,
        Cond::And(items) => smallest(items.iter().map(|c| required(c, searches))),
        Cond::Or(items) => union(items.iter().map(|c| required(c, searches))),
    }
}

fn required_search(search: &SearchMatcher) -> Option<Vec<LitId>> {
    match search {
        SearchMatcher::AllOf(items) => smallest(items.iter().map(required_item)),
        SearchMatcher::AnyOf(alts) => union(alts.iter().map(required_search)),
    }
}

fn required_item(item: &ItemMatcher) -> Option<Vec<LitId>> {
    let ItemMatcher::Field {
        test: FieldTest::Values { values, all },
        ..
    } = item
    else {
        return None;
    };
    let each = values.iter().map(|v| match v {
        ValueMatcher::Lit(id) => Some(vec![*id]),
        ValueMatcher::AnyLit(ids) => Some(ids.clone()),
        _ => None,
    });
    if *all { smallest(each) } else { union(each) }
}

/// For an AND: any one requirement will do; take the smallest.
fn smallest(sets: impl Iterator<Item = Option<Vec<LitId>>>) -> Option<Vec<LitId>> {
    sets.flatten().min_by_key(Vec::len)
}

/// For an OR: every branch must have a requirement; join them.
fn union(sets: impl Iterator<Item = Option<Vec<LitId>>>) -> Option<Vec<LitId>> {
    let mut out = Vec::new();
    let mut any = false;
    for set in sets {
        out.extend(set?);
        any = true;
    }
    out.sort_unstable();
    out.dedup();
    any.then_some(out)
}
