//! Evaluating compiled rules against one event.
//!
//! An [`EventCache`] lives for one `RuleSet::matches` call: it fetches
//! each field the rules ask for at most once and lowercases its text at
//! most once, however many rules and values look at it. Its buffers come
//! from a [`Scratch`] reused across events, so a benign event costs no
//! allocation. [`EventCache::scan`] runs
//! the literal pass of [`LiteralIndex`] first; rule evaluation then reads
//! literal results from its bits and compares text only for wildcards,
//! regexes and the other non-literal values.
//!
//! Walks are recursive but shallow by construction: searches are at most a
//! list of mappings (two levels) and conditions are bounded by
//! [`super::condition::MAX_NESTING`].

use std::borrow::Cow;

use super::compile::{
    FieldTable, FieldTest, ItemMatcher, RuleMatcher, SearchMatcher, StrKind, StrMatcher,
    ValueMatcher, lowercase,
};
use super::condition::Cond;
use aho_corasick::Anchored;
use aho_corasick::automaton::Automaton;

use super::literals::{Group, LiteralIndex, Scanner};
use super::modifier::{Anchor, CompareOp};
use super::{Event, Value};

/// One field of the event as the matchers see it.
struct FieldView<'e> {
    /// `None`: absent.
    value: Option<Value<'e>>,
    /// Text form of a string, integer or boolean value.
    text: Option<Cow<'e, str>>,
    /// Lowercased `text` once `is_lowered`, filled on first
    /// case-insensitive use; the buffer is recycled through [`Scratch`].
    lowered: String,
    is_lowered: bool,
    /// `text` is all ASCII (then lowercasing only changes `A-Z`).
    ascii: bool,
}

impl<'e> FieldView<'e> {
    fn new(value: Option<Value<'e>>, lowered: String) -> Self {
        let text = match &value {
            Some(Value::Str(s)) => Some(s.clone()),
            Some(Value::Int(n)) => Some(Cow::Owned(n.to_string())),
            Some(Value::Bool(b)) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            Some(Value::Null) | None => None,
        };
        let ascii = text.as_deref().is_some_and(str::is_ascii);
        FieldView {
            value,
            text,
            lowered,
            is_lowered: false,
            ascii,
        }
    }

    fn is_null(&self) -> bool {
        matches!(self.value, None | Some(Value::Null))
    }

    /// Text in the case the matcher wants, or `None` when not textual.
    fn text_for(&mut self, cased: bool) -> Option<&str> {
        let text = self.text.as_deref()?;
        if cased {
            return Some(text);
        }
        if !self.is_lowered {
            self.is_lowered = true;
            self.lowered.clear();
            if self.ascii {
                self.lowered.push_str(text);
                self.lowered.make_ascii_lowercase();
            } else {
                self.lowered.push_str(&lowercase(text));
            }
        }
        Some(&self.lowered)
    }
}

/// A fixed-size set of small integers.
#[derive(Debug, Default)]
pub(crate) struct Bits(Vec<u64>);

impl Bits {
    /// Empties the set and sizes it for `n` members, keeping the buffer.
    fn reset(&mut self, n: usize) {
        self.0.clear();
        self.0.resize(n.div_ceil(64), 0);
    }

    pub(crate) fn set(&mut self, i: usize) {
        if let Some(word) = self.0.get_mut(i / 64) {
            *word |= 1 << (i % 64);
        }
    }

    pub(crate) fn get(&self, i: usize) -> bool {
        self.0.get(i / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// The set members in increasing order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        self.0.iter().enumerate().flat_map(|(w, &word)| {
            let mut rest = word;
            std::iter::from_fn(move || {
                if rest == 0 {
                    return None;
                }
                let bit = rest.trailing_zeros() as usize;
                rest &= rest - 1;
                Some(w * 64 + bit)
            })
        })
    }
}

/// Buffers for matching, reused from one event to the next so that the
/// per-event work allocates nothing in the common case: the field slots,
/// the lowercased texts and the literal and candidate bit sets. Create one
/// per thread and pass it to [`super::RuleSet::matches_with`];
/// [`super::RuleSet::matches`] uses a thread-local one.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Always empty between calls; only its allocation is kept.
    fields: Vec<Option<FieldView<'static>>>,
    /// Lowercase buffers of the last event's fields, emptied.
    pool: Vec<String>,
    found: Bits,
    candidates: Bits,
}

/// The same vector with another lifetime parameter, emptied. Collecting a
/// `vec::IntoIter` through `map` into a type of the same size and
/// alignment reuses the allocation (std's in-place collection), so this
/// keeps the buffer without `unsafe`.
fn relabel<'a, 'b>(mut v: Vec<Option<FieldView<'a>>>) -> Vec<Option<FieldView<'b>>> {
    v.clear();
    v.into_iter().map(|_| None).collect()
}

impl std::fmt::Debug for FieldView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FieldView")
            .field("value", &self.value)
            .finish()
    }
}

/// Per-call cache of the event's fields and of the literal pass.
pub(crate) struct EventCache<'e> {
    event: &'e dyn Event,
    names: &'e FieldTable,
    fields: Vec<Option<FieldView<'e>>>,
    /// Every string field, original and lowercased, for keyword searches.
    strings: Option<Vec<(String, String)>>,
    /// Literals of the index found in this event (see [`EventCache::scan`]).
    found: Bits,
    /// Rules worth evaluating, filled by [`EventCache::scan`].
    candidates: Bits,
    pool: Vec<String>,
}

impl<'e> EventCache<'e> {
    pub(crate) fn new(event: &'e dyn Event, names: &'e FieldTable, scratch: &mut Scratch) -> Self {
        let mut fields = relabel(std::mem::take(&mut scratch.fields));
        fields.resize_with(names.len(), || None);
        EventCache {
            event,
            names,
            fields,
            strings: None,
            found: std::mem::take(&mut scratch.found),
            candidates: std::mem::take(&mut scratch.candidates),
            pool: std::mem::take(&mut scratch.pool),
        }
    }

    /// Takes back the candidate set [`EventCache::scan`] returned.
    pub(crate) fn give_back(&mut self, candidates: Bits) {
        self.candidates = candidates;
    }

    /// Gives the buffers back to `scratch` for the next event.
    pub(crate) fn finish(mut self, scratch: &mut Scratch) {
        for view in self.fields.iter_mut().filter_map(Option::take) {
            self.pool.push(view.lowered);
        }
        scratch.fields = relabel(self.fields);
        scratch.pool = self.pool;
        scratch.found = self.found;
        scratch.candidates = self.candidates;
    }

    fn field(&mut self, id: usize) -> &mut FieldView<'e> {
        let (event, names, pool) = (self.event, self.names, &mut self.pool);
        self.fields[id].get_or_insert_with(|| {
            FieldView::new(event.field(names.name(id)), pool.pop().unwrap_or_default())
        })
    }

    /// The literal pass: searches every indexed field with its automata,
    /// records the literals found where their anchors allow, and returns
    /// the rules worth evaluating (candidates plus the always-evaluated
    /// ones), as a set of rule indices.
    pub(crate) fn scan(&mut self, index: &LiteralIndex) -> Bits {
        self.found.reset(index.literal_count);
        let mut candidates = std::mem::take(&mut self.candidates);
        candidates.reset(index.rule_count);
        for &rule in &index.always {
            candidates.set(rule);
        }
        for scan in &index.scans {
            let (event, names, pool) = (self.event, self.names, &mut self.pool);
            let view = self.fields[scan.field].get_or_insert_with(|| {
                FieldView::new(
                    event.field(names.name(scan.field)),
                    pool.pop().unwrap_or_default(),
                )
            });
            // Case-insensitive automata ignore ASCII case themselves, so
            // ASCII text is searched as is and lowercased only if a
            // candidate rule compares it; other text is lowercased first
            // (Unicode folding can change its bytes).
            let as_is = scan.cased
                || (view.ascii && !matches!(scan.automaton, Scanner::Naive | Scanner::Few(_)));
            let text = if as_is {
                view.text.as_deref()
            } else {
                view.text_for(false)
            };
            let Some(text) = text else {
                continue;
            };
            let found = &mut self.found;
            let mut hit = |pattern: usize, end: usize| {
                for &(lit, anchor) in scan.targets.get(pattern).into_iter().flatten() {
                    // Start-group matches begin at 0 and end-group ones end
                    // at the end (anchored searches); only a whole-text
                    // literal needs one more check.
                    if (anchor != Anchor::Whole || end == text.len()) && !found.get(lit) {
                        found.set(lit);
                        for &rule in index.triggers.get(lit).into_iter().flatten() {
                            candidates.set(rule);
                        }
                    }
                }
            };
            let haystack = text.as_bytes();
            match &scan.automaton {
                Scanner::Anywhere(dfa) => {
                    let Ok(mut sid) = dfa.start_state(Anchored::No) else {
                        continue;
                    };
                    for (i, &byte) in haystack.iter().enumerate() {
                        sid = dfa.next_state(Anchored::No, sid, byte);
                        if dfa.is_special(sid) && dfa.is_match(sid) {
                            for k in 0..dfa.match_len(sid) {
                                hit(dfa.match_pattern(sid, k).as_usize(), i + 1);
                            }
                        }
                    }
                }
                Scanner::Anchored(dfa) => {
                    let Ok(mut sid) = dfa.start_state(Anchored::Yes) else {
                        continue;
                    };
                    // End-group patterns are stored reversed: walk the text
                    // from its end, without copying it.
                    let forward = scan.group == Group::Start;
                    let len = haystack.len();
                    for i in 0..len {
                        let byte = haystack[if forward { i } else { len - 1 - i }];
                        sid = dfa.next_state(Anchored::Yes, sid, byte);
                        if !dfa.is_special(sid) {
                            continue;
                        }
                        if dfa.is_dead(sid) {
                            break;
                        }
                        for k in 0..dfa.match_len(sid) {
                            let pattern = dfa.match_pattern(sid, k);
                            // Only matches that start at the start count.
                            if dfa.pattern_len(pattern) == i + 1 {
                                hit(pattern.as_usize(), i + 1);
                            }
                        }
                    }
                }
                Scanner::Few(finders) => {
                    for (pattern, finder) in finders.iter().enumerate() {
                        if let Some(start) = finder.find(haystack) {
                            hit(pattern, start + finder.needle().len());
                        }
                    }
                }
                Scanner::Naive => {
                    for (pattern, p) in scan.patterns.iter().enumerate() {
                        let found = match scan.group {
                            Group::Anywhere => memchr::memmem::find(haystack, p).is_some(),
                            Group::Start => haystack.starts_with(p),
                            Group::End => {
                                haystack.iter().rev().zip(p).all(|(a, b)| a == b)
                                    && haystack.len() >= p.len()
                            }
                        };
                        if found {
                            hit(pattern, p.len());
                        }
                    }
                }
            }
        }
        candidates
    }

    fn strings(&mut self) -> &[(String, String)] {
        let event = self.event;
        self.strings.get_or_insert_with(|| {
            let mut out = Vec::new();
            event.for_each_string(&mut |s| out.push((s.to_owned(), lowercase(s))));
            out
        })
    }
}

impl RuleMatcher {
    pub(crate) fn is_match(&self, scratch: &mut EventCache<'_>) -> bool {
        self.eval(&self.condition, scratch)
    }

    fn eval(&self, cond: &Cond, scratch: &mut EventCache<'_>) -> bool {
        match cond {
            Cond::Search(i) => self.searches.get(*i).is_some_and(|s| s.is_match(scratch)),
            Cond::Not(inner) => !self.eval(inner, scratch),
            Cond::And(items) => items.iter().all(|c| self.eval(c, scratch)),
            Cond::Or(items) => items.iter().any(|c| self.eval(c, scratch)),
        }
    }
}

impl SearchMatcher {
    fn is_match(&self, scratch: &mut EventCache<'_>) -> bool {
        match self {
            SearchMatcher::AllOf(items) => items.iter().all(|i| i.is_match(scratch)),
            SearchMatcher::AnyOf(alternatives) => alternatives.iter().any(|a| a.is_match(scratch)),
        }
    }
}

impl ItemMatcher {
    fn is_match(&self, scratch: &mut EventCache<'_>) -> bool {
        match self {
            ItemMatcher::Field { field, test } => {
                scratch.field(*field);
                let EventCache { fields, found, .. } = &mut *scratch;
                let Some(view) = fields[*field].as_mut() else {
                    return false;
                };
                match test {
                    FieldTest::Exists(want) => view.is_null() != *want,
                    FieldTest::Values { values, all: true } => {
                        values.iter().all(|v| v.is_match(view, found))
                    }
                    FieldTest::Values { values, all: false } => {
                        values.iter().any(|v| v.is_match(view, found))
                    }
                    FieldTest::FieldRef {
                        others,
                        anchor,
                        cased,
                        all,
                    } => {
                        let Some(text) = view.text_for(*cased).map(str::to_owned) else {
                            return false;
                        };
                        let mut hit = |other: &usize| {
                            scratch
                                .field(*other)
                                .text_for(*cased)
                                .is_some_and(|o| match anchor {
                                    Anchor::Whole => text == o,
                                    Anchor::Contains => text.contains(o),
                                    Anchor::StartsWith => text.starts_with(o),
                                    Anchor::EndsWith => text.ends_with(o),
                                })
                        };
                        if *all {
                            others.iter().all(&mut hit)
                        } else {
                            others.iter().any(&mut hit)
                        }
                    }
                }
            }
            ItemMatcher::Not(inner) => !inner.is_match(scratch),
            ItemMatcher::Keywords { values, all } => {
                let strings = scratch.strings();
                let hit = |v: &StrMatcher| {
                    strings
                        .iter()
                        .any(|(orig, lower)| v.is_match(if v.cased { orig } else { lower }))
                };
                if *all {
                    values.iter().all(hit)
                } else {
                    values.iter().any(hit)
                }
            }
        }
    }
}

impl ValueMatcher {
    /// `found`: the literals the event's literal pass found.
    fn is_match(&self, view: &mut FieldView<'_>, found: &Bits) -> bool {
        match self {
            ValueMatcher::Lit(id) => found.get(*id),
            ValueMatcher::AnyLit(ids) => ids.iter().any(|id| found.get(*id)),
            ValueMatcher::Null => view.is_null(),
            ValueMatcher::Int(n) => match &view.value {
                Some(Value::Int(m)) => m == n,
                Some(Value::Str(s)) => s.as_ref() == n.to_string(),
                _ => false,
            },
            ValueMatcher::Bool(b) => match &view.value {
                Some(Value::Bool(v)) => v == b,
                Some(Value::Str(s)) => s.eq_ignore_ascii_case(if *b { "true" } else { "false" }),
                _ => false,
            },
            ValueMatcher::Str(m) => view.text_for(m.cased).is_some_and(|t| m.is_match(t)),
            ValueMatcher::AnyStr(ms) => ms
                .iter()
                .any(|m| view.text_for(m.cased).is_some_and(|t| m.is_match(t))),
            ValueMatcher::Cidr(net) => view.text.as_deref().is_some_and(|t| net.contains(t)),
            ValueMatcher::Compare(op, n) => {
                let n = *n;
                let ord = match &view.value {
                    Some(Value::Int(m)) => m.cmp(&n),
                    Some(Value::Str(s)) => match s.trim().parse::<i64>() {
                        Ok(m) => m.cmp(&n),
                        Err(_) => match s.trim().parse::<f64>() {
                            // A decimal field ("1000.5") compares as f64;
                            // rule numbers are far below 2^53.
                            Ok(m) => match m.partial_cmp(&(n as f64)) {
                                Some(o) => o,
                                None => return false,
                            },
                            Err(_) => return false,
                        },
                    },
                    _ => return false,
                };
                match op {
                    CompareOp::Lt => ord.is_lt(),
                    CompareOp::Lte => ord.is_le(),
                    CompareOp::Gt => ord.is_gt(),
                    CompareOp::Gte => ord.is_ge(),
                }
            }
        }
    }
}

impl StrMatcher {
    /// `text` is already lowercased unless `self.cased`.
    fn is_match(&self, text: &str) -> bool {
        match &self.kind {
            StrKind::Any => true,
            StrKind::Exact(s) => text == s,
            StrKind::Prefix(s) => text.starts_with(s.as_str()),
            StrKind::Suffix(s) => text.ends_with(s.as_str()),
            StrKind::Contains(finder) => finder.find(text.as_bytes()).is_some(),
            StrKind::Pattern(re) | StrKind::Regex(re) => re.is_match(text),
        }
    }
}
