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
//!    same anchor shares one id. Two kinds of literal replace nothing and
//!    only make rules candidates: a `|re` value's prefix literals (one of
//!    which starts every match; [`ValueMatcher::RegexLits`]) and a field's
//!    presence literal (`exists: true`).
//! 2. For each rule, `Requirements::of` walks the condition and finds a
//!    set of literal ids such that the rule cannot match unless one of
//!    them is found. Where an AND offers a choice, it takes the set least
//!    likely to be found in an ordinary event (long, anchored literals
//!    over short `contains` ones, by [`Literal::cost`]), so a benign
//!    command line makes few rules candidates. Rules where no such set
//!    exists (a `not`, a wildcard pattern, a keyword search on every path)
//!    are always evaluated.
//! 3. Only literals in some rule's required set are indexed. The others
//!    get their original matcher back: they are compared only when their
//!    rule is a candidate, which keeps short, common literals (`-c`, `sh`,
//!    `0`) out of the automata, where they would match on nearly every
//!    event.
//!
//! Scans ([`FieldScan`]), one per field and case mode, sorted by field: a
//! field with more than [`FEW`] `contains` literals gets one unanchored DFA
//! walked over its whole text that also holds its anchored literals (and,
//! checked exactly, its ASCII `|cased` ones); other fields get anchored
//! walks from the start and (reversed) from the end, and a few memchr
//! searches for their `contains` literals.
//!
//! Per event (`matcher::EventCache::scan`): each indexed field is fetched
//! once; ASCII text is searched as is (the automata ignore ASCII case),
//! other text lowercased first; a match is a hit when its position
//! satisfies the anchor (whole text, start, end, anywhere). The hits mark
//! candidate rules; only candidates and the always-evaluated rules are
//! then evaluated.
//!
//! The walks recurse as deep as a search (two levels) or a condition
//! (bounded by `condition::MAX_NESTING`).

use std::collections::{HashMap, HashSet};

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
    /// `contains` literals, and any other literals of a field that has
    /// more than [`FEW`] `contains` ones: an unanchored search of the whole
    /// text, anchors checked by match position.
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
    pub(crate) targets: Vec<Vec<Target>>,
    /// Run only if the field's case-insensitive walk did not check its
    /// literals exactly (see [`Target::exact`]): for non-ASCII text.
    pub(crate) fallback: bool,
    /// The shortest pattern's length: a shorter text holds none of them
    /// (long path literals on short fields are common), so the scan is
    /// skipped before any setup.
    pub(crate) min_len: usize,
}

/// A literal a pattern of a [`FieldScan`] stands for.
#[derive(Debug)]
pub(crate) struct Target {
    pub(crate) lit: LitId,
    pub(crate) anchor: Anchor,
    /// A `|cased` ASCII literal in a case-insensitive walk (its pattern is
    /// its lowercase form): found only where the text has exactly these
    /// bytes. Saves a second search of the same text for a few cased
    /// literals (a regex's prefixes, say). Valid only when the walk ran
    /// over the original text, so the literal also stays in a cased scan
    /// marked [`FieldScan::fallback`].
    pub(crate) exact: Option<Box<[u8]>>,
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
    /// `contains` patterns searched one by one with prebuilt `memchr`
    /// finders, for sets of at most [`FEW`] patterns: on a path-sized
    /// text a few vectorised substring searches cost less than walking an
    /// automaton byte by byte (callgrind: ~17 instructions a byte).
    Few(Vec<memchr::memmem::Finder<'static>>),
    /// Each pattern on its own; only if an automaton could not be built
    /// (beyond the crate's size limits).
    Naive,
}

/// Largest `contains` set searched pattern by pattern ([`Scanner::Few`]).
const FEW: usize = 3;

/// All literals of a rule set; see the module documentation.
#[derive(Debug, Default)]
pub(crate) struct LiteralIndex {
    /// Sorted by field.
    pub(crate) scans: Vec<FieldScan>,
    pub(crate) literal_count: usize,
    /// Literal id -> rules that become candidates when it is found.
    pub(crate) triggers: Vec<Vec<usize>>,
    /// Rules evaluated for every event (no required literal), in order.
    pub(crate) always: Vec<usize>,
    /// Presence literals (`exists: true` requirements) in some rule's
    /// required set: found when the field is there and not null.
    pub(crate) presence: Vec<(FieldId, LitId)>,
    pub(crate) rule_count: usize,
}

/// Patterns of one future [`FieldScan`] while they are collected.
struct PendingScan {
    field: FieldId,
    cased: bool,
    group: Group,
    patterns: Vec<Vec<u8>>,
    by_text: HashMap<Vec<u8>, usize>,
    targets: Vec<Vec<Target>>,
}

/// One literal as collected: where it goes and what it replaced.
struct Literal {
    field: FieldId,
    cased: bool,
    text: String,
    anchor: Anchor,
    /// The matcher it replaced, put back if the literal is not indexed;
    /// `None` for literals that replace nothing (a regex's prefixes, a
    /// presence test).
    original: Option<StrMatcher>,
    /// Not text: "the field is present and not null" (`exists: true`).
    presence: bool,
}

impl Literal {
    /// A rough chance that a random field value has this literal: each
    /// byte divides it (by ~4, text is not uniform), and an anchored
    /// literal can only be at one place of the text, not at any of ~30.
    /// Only used to compare requirement sets, so only the order matters.
    fn cost(&self) -> f64 {
        if self.presence {
            // Most fields a rule tests for are there in most events.
            return 1.0;
        }
        let len = i32::try_from(self.text.len().min(16)).unwrap_or(16);
        let places = if self.anchor == Anchor::Contains {
            1.0
        } else {
            1.0 / 32.0
        };
        places * 0.25f64.powi(len)
    }
}

/// Collects literals while rule trees are rewritten.
#[derive(Default)]
struct Builder {
    ids: HashMap<(FieldId, bool, String, Anchor), LitId>,
    /// Field -> its presence literal.
    presence: HashMap<FieldId, LitId>,
    /// By [`LitId`].
    literals: Vec<Literal>,
}

impl Builder {
    /// The id of a text literal; `original` is the matcher it replaces,
    /// if any (kept for the first literal of that text that has one).
    fn literal(
        &mut self,
        field: FieldId,
        cased: bool,
        text: &str,
        anchor: Anchor,
        original: Option<&StrMatcher>,
    ) -> LitId {
        let key = (field, cased, text.to_owned(), anchor);
        if let Some(&id) = self.ids.get(&key) {
            let lit = &mut self.literals[id];
            if lit.original.is_none() {
                lit.original = original.cloned();
            }
            return id;
        }
        let id = self.literals.len();
        self.ids.insert(key, id);
        self.literals.push(Literal {
            field,
            cased,
            text: text.to_owned(),
            anchor,
            original: original.cloned(),
            presence: false,
        });
        id
    }

    /// The presence literal of `field`.
    fn presence(&mut self, field: FieldId) -> LitId {
        if let Some(&id) = self.presence.get(&field) {
            return id;
        }
        let id = self.literals.len();
        self.presence.insert(field, id);
        self.literals.push(Literal {
            field,
            cased: true,
            text: String::new(),
            anchor: Anchor::Whole,
            original: None,
            presence: true,
        });
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
            StrKind::Any | StrKind::Pattern(_) | StrKind::Regex(..) => return None,
        };
        // An empty pattern matches everywhere and says nothing; keep the
        // plain comparison for it.
        if text.is_empty() {
            return None;
        }
        Some(self.literal(field, m.cased, &text, anchor, Some(m)))
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
                        ValueMatcher::Str(StrMatcher {
                            kind: StrKind::Regex(_, prefixes),
                            cased,
                        }) if !prefixes.is_empty() => {
                            let ids = prefixes
                                .iter()
                                .map(|p| self.literal(*field, *cased, p, Anchor::Contains, None))
                                .collect();
                            let ValueMatcher::Str(m) = std::mem::replace(value, ValueMatcher::Null)
                            else {
                                unreachable!("matched as Str above");
                            };
                            Some(ValueMatcher::RegexLits(m, ids))
                        }
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
            ItemMatcher::Field {
                field,
                test: FieldTest::Exists(true),
            } => {
                self.presence(*field);
            }
            ItemMatcher::Not(inner) => self.rewrite_item(inner),
            ItemMatcher::Field { .. } | ItemMatcher::Keywords { .. } => {}
        }
    }

    /// Puts back the original matcher of every literal that is not
    /// `indexed`: only candidate rules evaluate it, by comparing text, so
    /// the automata stay small and a short, common literal (`-c`, `sh`)
    /// that no rule depends on to be considered costs nothing per event.
    fn unindex_search(&self, search: &mut SearchMatcher, indexed: &[bool]) {
        match search {
            SearchMatcher::AllOf(items) => {
                items.iter_mut().for_each(|i| self.unindex_item(i, indexed));
            }
            SearchMatcher::AnyOf(alts) => {
                alts.iter_mut()
                    .for_each(|s| self.unindex_search(s, indexed));
            }
        }
    }

    fn unindex_item(&self, item: &mut ItemMatcher, indexed: &[bool]) {
        match item {
            ItemMatcher::Field {
                test: FieldTest::Values { values, .. },
                ..
            } => {
                for value in values.iter_mut() {
                    // Lit and AnyLit ids come from `lit_of`, which always
                    // records the matcher it replaced.
                    let original = |id: &LitId| self.literals[*id].original.clone();
                    match value {
                        ValueMatcher::Lit(id) if !indexed[*id] => {
                            if let Some(m) = original(id) {
                                *value = ValueMatcher::Str(m);
                            }
                        }
                        ValueMatcher::AnyLit(ids) if ids.iter().any(|id| !indexed[*id]) => {
                            if let Some(ms) = ids.iter().map(original).collect() {
                                *value = ValueMatcher::AnyStr(ms);
                            }
                        }
                        _ => {}
                    }
                }
            }
            ItemMatcher::Not(inner) => self.unindex_item(inner, indexed),
            ItemMatcher::Field { .. } | ItemMatcher::Keywords { .. } => {}
        }
    }

    /// The automata over the `indexed` literals, one per field, case mode
    /// and [`Group`], sorted by field (so the pass fetches each field once).
    fn scans(&self, indexed: &[bool]) -> Vec<FieldScan> {
        let mut scan_of: HashMap<(FieldId, bool, Group), usize> = HashMap::new();
        let mut pending: Vec<PendingScan> = Vec::new();
        // A field (in one case mode) whose `contains` literals need a DFA
        // walk over its whole text anyway gets its anchored literals in
        // that same walk, checked by position: one walk instead of three
        // (each walk costs ~70 instructions before its first byte).
        let mut contains: HashMap<(FieldId, bool), usize> = HashMap::new();
        for (id, lit) in self.literals.iter().enumerate() {
            if indexed[id] && !lit.presence && lit.anchor == Anchor::Contains {
                *contains.entry((lit.field, lit.cased)).or_default() += 1;
            }
        }
        let walked_at =
            |field: FieldId, cased: bool| contains.get(&(field, cased)).is_some_and(|&n| n > FEW);
        // Fields with a cased literal that cannot ride along in the
        // case-insensitive walk: their cased scans always run.
        let mut cased_alone: HashSet<FieldId> = HashSet::new();
        for (id, lit) in self.literals.iter().enumerate() {
            if !indexed[id] || lit.presence {
                continue;
            }
            let walked = walked_at(lit.field, lit.cased);
            if lit.cased {
                if walked_at(lit.field, false) && lit.text.is_ascii() {
                    let bytes = lit.text.to_ascii_lowercase().into_bytes();
                    let scan = pending_scan(
                        &mut pending,
                        &mut scan_of,
                        (lit.field, false, Group::Anywhere),
                    );
                    let pattern = scan.pattern(bytes);
                    scan.targets[pattern].push(Target {
                        lit: id,
                        anchor: lit.anchor,
                        exact: Some(lit.text.as_bytes().into()),
                    });
                } else {
                    cased_alone.insert(lit.field);
                }
            }
            let group = match lit.anchor {
                _ if walked => Group::Anywhere,
                Anchor::Whole | Anchor::StartsWith => Group::Start,
                Anchor::EndsWith => Group::End,
                Anchor::Contains => Group::Anywhere,
            };
            let scan = pending_scan(&mut pending, &mut scan_of, (lit.field, lit.cased, group));
            let mut bytes = lit.text.as_bytes().to_vec();
            if group == Group::End {
                bytes.reverse();
            }
            let pattern = scan.pattern(bytes);
            scan.targets[pattern].push(Target {
                lit: id,
                anchor: lit.anchor,
                exact: None,
            });
        }
        // Case-insensitive scans of a field before its cased ones, which
        // may be fallbacks of the former.
        pending.sort_by_key(|p| (p.field, p.cased));
        pending
            .into_iter()
            .map(|scan| {
                let start = if scan.group == Group::Anywhere {
                    StartKind::Unanchored
                } else {
                    StartKind::Anchored
                };
                // Patterns of a case-insensitive scan are lowercase; the
                // automaton also takes `A-Z` for `a-z`, so ASCII text needs
                // no lowercased copy (see `EventCache::scan`).
                // No prefilter: the scan walks the DFA itself, and with
                // one the start states would be "special" too, stopping
                // the walk's inner loop on every return to the start.
                let dfa = DFA::builder()
                    .match_kind(MatchKind::Standard)
                    .start_kind(start)
                    .prefilter(false)
                    .ascii_case_insensitive(!scan.cased)
                    .build(&scan.patterns);
                let only_contains = scan
                    .targets
                    .iter()
                    .flatten()
                    .all(|t| t.anchor == Anchor::Contains && t.exact.is_none());
                let automaton = match (dfa, scan.group) {
                    _ if scan.group == Group::Anywhere
                        && scan.patterns.len() <= FEW
                        && only_contains =>
                    {
                        Scanner::Few(
                            scan.patterns
                                .iter()
                                .map(|p| memchr::memmem::Finder::new(p).into_owned())
                                .collect(),
                        )
                    }
                    (Err(_), _) => Scanner::Naive,
                    (Ok(d), Group::Anywhere) => Scanner::Anywhere(Box::new(d)),
                    (Ok(d), Group::Start | Group::End) => Scanner::Anchored(Box::new(d)),
                };
                let min_len = scan.patterns.iter().map(Vec::len).min().unwrap_or(0);
                FieldScan {
                    field: scan.field,
                    cased: scan.cased,
                    group: scan.group,
                    automaton,
                    patterns: scan.patterns,
                    targets: scan.targets,
                    fallback: scan.cased && !cased_alone.contains(&scan.field),
                    min_len,
                }
            })
            .collect()
    }
}

/// The pending scan for `key` (field, cased, group), created if new.
fn pending_scan<'p>(
    pending: &'p mut Vec<PendingScan>,
    scan_of: &mut HashMap<(FieldId, bool, Group), usize>,
    key: (FieldId, bool, Group),
) -> &'p mut PendingScan {
    let i = *scan_of.entry(key).or_insert_with(|| {
        pending.push(PendingScan {
            field: key.0,
            cased: key.1,
            group: key.2,
            patterns: Vec::new(),
            by_text: HashMap::new(),
            targets: Vec::new(),
        });
        pending.len() - 1
    });
    &mut pending[i]
}

impl PendingScan {
    /// The id of pattern `bytes`, added if new.
    fn pattern(&mut self, bytes: Vec<u8>) -> usize {
        *self.by_text.entry(bytes.clone()).or_insert_with(|| {
            self.patterns.push(bytes);
            self.targets.push(Vec::new());
            self.patterns.len() - 1
        })
    }
}

/// Rewrites every rule's literal matchers into literal ids and builds the
/// index over them. `matchers` are in rule order.
pub(crate) fn build<'a>(matchers: impl Iterator<Item = &'a mut RuleMatcher>) -> LiteralIndex {
    let mut builder = Builder::default();
    let mut matchers: Vec<&mut RuleMatcher> = matchers.collect();
    for m in &mut matchers {
        m.searches
            .iter_mut()
            .for_each(|s| builder.rewrite_search(s));
    }
    let costs: Vec<f64> = builder.literals.iter().map(Literal::cost).collect();
    let ctx = Requirements {
        costs: &costs,
        presence: &builder.presence,
    };
    let required_sets: Vec<Option<Vec<LitId>>> = matchers
        .iter()
        .map(|m| ctx.of(&m.condition, &m.searches))
        .collect();
    let literal_count = builder.literals.len();
    let mut indexed = vec![false; literal_count];
    let mut triggers = vec![Vec::new(); literal_count];
    let mut always = Vec::new();
    for (rule, set) in required_sets.iter().enumerate() {
        match set {
            Some(lits) => lits.iter().for_each(|&l| {
                triggers[l].push(rule);
                indexed[l] = true;
            }),
            None => always.push(rule),
        }
    }
    for m in &mut matchers {
        m.searches
            .iter_mut()
            .for_each(|s| builder.unindex_search(s, &indexed));
    }
    let mut presence: Vec<(FieldId, LitId)> = builder
        .presence
        .iter()
        .filter(|&(_, &id)| indexed[id])
        .map(|(&field, &id)| (field, id))
        .collect();
    presence.sort_unstable();
    LiteralIndex {
        scans: builder.scans(&indexed),
        literal_count,
        triggers,
        always,
        presence,
        rule_count: required_sets.len(),
    }
}

/// What [`Requirements::of`] needs: literal costs by id and the presence
/// literal of each field.
struct Requirements<'a> {
    costs: &'a [f64],
    presence: &'a HashMap<FieldId, LitId>,
}

impl Requirements<'_> {
    /// A set of literals one of which must be found for `cond` to be true,
    /// or `None` when there is no such set. Where there is a choice (an
    /// AND), the set least likely to be found in a random event, by
    /// `costs`, so that few events make the rule a candidate.
    fn of(&self, cond: &Cond, searches: &[SearchMatcher]) -> Option<Vec<LitId>> {
        match cond {
            Cond::Search(i) => searches.get(*i).and_then(|s| self.search(s)),
            Cond::Not(_) => None,
            Cond::And(items) => cheapest(items.iter().map(|c| self.of(c, searches)), self.costs),
            Cond::Or(items) => union(items.iter().map(|c| self.of(c, searches))),
        }
    }

    fn search(&self, search: &SearchMatcher) -> Option<Vec<LitId>> {
        match search {
            SearchMatcher::AllOf(items) => cheapest(items.iter().map(|i| self.item(i)), self.costs),
            SearchMatcher::AnyOf(alts) => union(alts.iter().map(|a| self.search(a))),
        }
    }

    fn item(&self, item: &ItemMatcher) -> Option<Vec<LitId>> {
        let (values, all) = match item {
            ItemMatcher::Field {
                test: FieldTest::Values { values, all },
                ..
            } => (values, *all),
            // Present and not null is exactly what the presence literal
            // records.
            ItemMatcher::Field {
                field,
                test: FieldTest::Exists(true),
            } => return self.presence.get(field).map(|&id| vec![id]),
            _ => return None,
        };
        let each = values.iter().map(|v| match v {
            ValueMatcher::Lit(id) => Some(vec![*id]),
            ValueMatcher::AnyLit(ids) | ValueMatcher::RegexLits(_, ids) => Some(ids.clone()),
            _ => None,
        });
        if all {
            cheapest(each, self.costs)
        } else {
            union(each)
        }
    }
}

/// For an AND: any one requirement will do; take the one least likely to
/// be found (the sum of its literals' costs), then the smallest.
fn cheapest(sets: impl Iterator<Item = Option<Vec<LitId>>>, costs: &[f64]) -> Option<Vec<LitId>> {
    let cost = |set: &Vec<LitId>| -> f64 { set.iter().map(|&l| costs[l]).sum() };
    sets.flatten().min_by(|a, b| {
        cost(a)
            .total_cmp(&cost(b))
            .then_with(|| a.len().cmp(&b.len()))
    })
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
