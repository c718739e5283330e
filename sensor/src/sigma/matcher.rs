//! Evaluating compiled rules against one event.
//!
//! An [`EventCache`] lives for one `RuleSet::matches` call: it fetches
//! each field the rules ask for at most once and lowercases its text at
//! most once, however many rules and values look at it. Its state lives in
//! a [`Scratch`] reused across events, so a benign event costs no
//! allocation. [`EventCache::scan`] runs the literal pass of
//! [`LiteralIndex`] first; rule evaluation then reads literal results from
//! its bits and compares text only for wildcards, regexes and the other
//! non-literal values.
//!
//! Walks are recursive but shallow by construction: searches are at most a
//! list of mappings (two levels) and conditions are bounded by
//! [`super::condition::MAX_NESTING`].

use std::fmt::Write as _;

use super::compile::{
    FieldId, FieldTable, FieldTest, ItemMatcher, RuleMatcher, SearchMatcher, StrKind, StrMatcher,
    ValueMatcher, lowercase,
};
use super::condition::Cond;
use aho_corasick::Anchored;
use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;

use super::literals::{Group, LitId, LiteralIndex, Scanner};
use super::modifier::{Anchor, CompareOp};
use super::{Event, Value};

/// One field of the event as the matchers see it. Its text is copied into
/// a buffer the view keeps from event to event: a copy of a field costs
/// less than carrying the event's lifetime through buffers that outlive
/// it (which std can only do by rebuilding the vector each call).
#[derive(Debug, Default)]
struct FieldView {
    /// Which field (to clear its slot when the call ends).
    field: FieldId,
    kind: Kind,
    /// Text form of a string, integer or boolean value; empty otherwise.
    text: String,
    /// Lowercased `text` when `lower` is [`Lower::Buffer`], filled on first
    /// case-insensitive use.
    lowered: String,
    lower: Lower,
    /// `text` is all ASCII (then lowercasing only changes `A-Z`).
    ascii: bool,
}

/// What a field's value is, apart from its text.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    #[default]
    Absent,
    Null,
    Str,
    Int(i64),
    Bool(bool),
}

/// Where a field's lowercase text is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Lower {
    /// Not computed yet.
    #[default]
    Pending,
    /// `text` has no uppercase letter: it is its own lowercase form (most
    /// paths and command lines), so no copy is made.
    Text,
    /// In `lowered`.
    Buffer,
}

impl FieldView {
    /// Fills the view with `value` of field `field`.
    fn set(&mut self, field: FieldId, value: Option<Value<'_>>) {
        self.field = field;
        self.text.clear();
        self.kind = match value {
            Some(Value::Str(s)) => {
                self.text.push_str(&s);
                Kind::Str
            }
            Some(Value::Int(n)) => {
                let _ = write!(self.text, "{n}");
                Kind::Int(n)
            }
            Some(Value::Bool(b)) => {
                self.text.push_str(if b { "true" } else { "false" });
                Kind::Bool(b)
            }
            Some(Value::Null) => Kind::Null,
            None => Kind::Absent,
        };
        let (ascii, upper) = ascii_and_upper(self.text.as_bytes());
        self.ascii = ascii;
        self.lower = if ascii && !upper {
            Lower::Text
        } else {
            Lower::Pending
        };
    }

    fn is_null(&self) -> bool {
        matches!(self.kind, Kind::Absent | Kind::Null)
    }

    fn has_text(&self) -> bool {
        matches!(self.kind, Kind::Str | Kind::Int(_) | Kind::Bool(_))
    }

    /// Text in the case the matcher wants, or `None` when not textual.
    fn text_for(&mut self, cased: bool) -> Option<&str> {
        if !self.has_text() {
            return None;
        }
        if cased {
            return Some(&self.text);
        }
        match self.lower {
            Lower::Text => return Some(&self.text),
            Lower::Buffer => {}
            Lower::Pending => {
                self.lower = Lower::Buffer;
                self.lowered.clear();
                if self.ascii {
                    self.lowered.push_str(&self.text);
                    self.lowered.make_ascii_lowercase();
                } else {
                    self.lowered.push_str(&lowercase(&self.text));
                }
            }
        }
        Some(&self.lowered)
    }
}

/// Whether `bytes` are all ASCII, and whether any is `A-Z`, eight bytes at
/// a time (the per-byte loop costs more than the literal scan of a short
/// field). Reading the last eight bytes again for the tail is harmless:
/// both answers are ORs over the bytes.
fn ascii_and_upper(bytes: &[u8]) -> (bool, bool) {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    /// Per byte: `b + 0x3f` has its high bit set iff `b >= b'A'`, and
    /// `b + 0x25` iff `b > b'Z'` (no carry between bytes while `b < 0x80`).
    fn upper(w: u64) -> u64 {
        w.wrapping_add(0x3f3f_3f3f_3f3f_3f3f) & !w.wrapping_add(0x2525_2525_2525_2525) & HIGH
    }
    if bytes.len() < 8 {
        let mut high = 0u8;
        let mut up = false;
        for &b in bytes {
            high |= b;
            up |= b.is_ascii_uppercase();
        }
        return (high < 0x80, up);
    }
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    let mut high = 0;
    let mut up = 0;
    let chunks = bytes.chunks_exact(8);
    let tail = chunks.remainder().len();
    for c in chunks {
        let w = word(c);
        high |= w;
        // Only meaningful for ASCII words; a non-ASCII text is lowercased
        // the Unicode way whatever this says.
        up |= upper(w);
    }
    if tail > 0 {
        let w = word(&bytes[bytes.len() - 8..]);
        high |= w;
        up |= upper(w);
    }
    let ascii = high & HIGH == 0;
    (ascii, ascii && up != 0)
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

/// State for matching, reused from one event to the next so that the
/// per-event work allocates nothing in the common case: the field views
/// with their text buffers, and the literal and candidate bit sets. Create
/// one per thread and pass it to [`super::RuleSet::matches_with`];
/// [`super::RuleSet::matches`] uses a thread-local one.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Field id -> 1 + index in `views`, 0 when not fetched; all 0 between
    /// calls (`finish` clears only the slots it used).
    slots: Vec<u32>,
    /// The first `used` are this event's fields in fetch order; the rest
    /// are kept for their buffers.
    views: Vec<FieldView>,
    used: usize,
    /// Every string field, original and lowercased, for keyword searches;
    /// filled on first use (`has_strings`).
    strings: Vec<(String, String)>,
    has_strings: bool,
    found: Bits,
    candidates: Bits,
}

/// Per-call view of the event's fields and of the literal pass.
pub(crate) struct EventCache<'a> {
    event: &'a dyn Event,
    names: &'a FieldTable,
    s: &'a mut Scratch,
}

impl<'a> EventCache<'a> {
    pub(crate) fn new(event: &'a dyn Event, names: &'a FieldTable, s: &'a mut Scratch) -> Self {
        if s.slots.len() < names.len() {
            s.slots.resize(names.len(), 0);
        }
        EventCache { event, names, s }
    }

    /// Takes the candidate set [`EventCache::scan`] filled; give it back
    /// with [`EventCache::give_back`].
    pub(crate) fn take_candidates(&mut self) -> Bits {
        std::mem::take(&mut self.s.candidates)
    }

    /// Takes back the candidate set.
    pub(crate) fn give_back(&mut self, candidates: Bits) {
        self.s.candidates = candidates;
    }

    /// Leaves the scratch ready for the next event.
    pub(crate) fn finish(self) {
        let s = self.s;
        for view in &s.views[..s.used] {
            s.slots[view.field] = 0;
        }
        s.used = 0;
        if s.has_strings {
            s.has_strings = false;
            s.strings.clear();
        }
    }

    /// Index in the views of field `id`, fetched from the event on first
    /// use.
    #[inline]
    fn slot(&mut self, id: FieldId) -> usize {
        match self.s.slots[id] {
            0 => self.fetch(id),
            slot => slot as usize - 1,
        }
    }

    /// Fetches field `id` into the next view; returns its index.
    #[inline(never)]
    fn fetch(&mut self, id: FieldId) -> usize {
        let s = &mut *self.s;
        let i = s.used;
        if i == s.views.len() {
            s.views.push(FieldView::default());
        }
        s.views[i].set(id, self.event.field(self.names.name(id)));
        s.used += 1;
        // At most one view per field id, and field ids fit in memory.
        s.slots[id] = u32::try_from(s.used).unwrap_or(u32::MAX);
        i
    }

    fn field(&mut self, id: FieldId) -> &mut FieldView {
        let i = self.slot(id);
        &mut self.s.views[i]
    }

    /// The literal pass: searches every indexed field with its automata,
    /// records the literals found where their anchors allow, and returns
    /// the rules worth evaluating (candidates plus the always-evaluated
    /// ones), as a set of rule indices.
    pub(crate) fn scan(&mut self, index: &LiteralIndex) {
        self.s.found.reset(index.literal_count);
        self.s.candidates.reset(index.rule_count);
        let candidates = &mut self.s.candidates;
        for &rule in &index.always {
            candidates.set(rule);
        }
        // Scans are sorted by field: fetch each field once.
        let mut last = None;
        let mut slot = 0;
        // This field's case-insensitive walk ran over its original text, so
        // it checked the cased literals it carries (`Target::exact`).
        let mut exact_done = false;
        for scan in &index.scans {
            if last != Some(scan.field) {
                last = Some(scan.field);
                slot = self.slot(scan.field);
                exact_done = false;
            }
            if scan.fallback && exact_done {
                continue;
            }
            let Scratch {
                views,
                found,
                candidates,
                ..
            } = &mut *self.s;
            let view = &mut views[slot];
            // Case-insensitive automata ignore ASCII case themselves, so
            // ASCII text is searched as is and lowercased only if a
            // candidate rule compares it; other text is lowercased first
            // (Unicode folding can change its bytes). Text with no
            // uppercase letter is its own lowercase form.
            let as_is = scan.cased
                || view.lower == Lower::Text
                || (view.ascii && !matches!(scan.automaton, Scanner::Naive | Scanner::Few(_)));
            let text = if as_is {
                view.has_text().then_some(view.text.as_str())
            } else {
                view.text_for(false)
            };
            let Some(text) = text.filter(|t| t.len() >= scan.min_len) else {
                continue;
            };
            let len = text.len();
            let haystack = text.as_bytes();
            // `start..end`: where the pattern was found, in the text's
            // order.
            let mut hit = |pattern: usize, start: usize, end: usize| {
                for target in scan.targets.get(pattern).into_iter().flatten() {
                    if let Some(exact) = &target.exact
                        && !(as_is && haystack.get(start..end) == Some(&exact[..]))
                    {
                        continue;
                    }
                    let here = match target.anchor {
                        Anchor::Contains => true,
                        Anchor::StartsWith => start == 0,
                        Anchor::EndsWith => end == len,
                        Anchor::Whole => start == 0 && end == len,
                    };
                    if here {
                        mark(index, found, candidates, target.lit);
                    }
                }
            };
            let plen = |pattern: usize| scan.patterns.get(pattern).map_or(0, Vec::len);
            match &scan.automaton {
                Scanner::Anywhere(dfa) => {
                    let Ok(sid) = dfa.start_state(Anchored::No) else {
                        continue;
                    };
                    exact_done |= as_is && !scan.cased;
                    walk(dfa, sid, haystack.iter(), false, &mut |p, n| {
                        hit(p, n - plen(p), n);
                    });
                }
                Scanner::Anchored(dfa) => {
                    let Ok(sid) = dfa.start_state(Anchored::Yes) else {
                        continue;
                    };
                    // End-group patterns are stored reversed: walk the text
                    // from its end, without copying it.
                    if scan.group == Group::Start {
                        walk(dfa, sid, haystack.iter(), true, &mut |p, n| hit(p, 0, n));
                    } else {
                        walk(dfa, sid, haystack.iter().rev(), true, &mut |p, n| {
                            hit(p, len - n, len);
                        });
                    }
                }
                Scanner::Few(finders) => {
                    for (pattern, finder) in finders.iter().enumerate() {
                        if let Some(start) = finder.find(haystack) {
                            hit(pattern, start, start + finder.needle().len());
                        }
                    }
                }
                Scanner::Naive => {
                    for (pattern, p) in scan.patterns.iter().enumerate() {
                        let n = p.len();
                        match scan.group {
                            // Every place an anchor can ask about: the
                            // start, the end, and one occurrence anywhere.
                            Group::Anywhere => {
                                if haystack.starts_with(p) {
                                    hit(pattern, 0, n);
                                }
                                if haystack.ends_with(p) {
                                    hit(pattern, len - n, len);
                                }
                                if let Some(start) = memchr::memmem::find(haystack, p) {
                                    hit(pattern, start, start + n);
                                }
                            }
                            Group::Start => {
                                if haystack.starts_with(p) {
                                    hit(pattern, 0, n);
                                }
                            }
                            Group::End => {
                                if haystack.len() >= n
                                    && haystack.iter().rev().zip(p).all(|(a, b)| a == b)
                                {
                                    hit(pattern, len - n, len);
                                }
                            }
                        }
                    }
                }
            }
        }
        for &(field, lit) in &index.presence {
            // Asked of the event directly unless already fetched: a view
            // would copy the text, and only a candidate rule needs it.
            let present = match self.s.slots[field] {
                0 => !matches!(
                    self.event.field(self.names.name(field)),
                    None | Some(Value::Null)
                ),
                slot => !self.s.views[slot as usize - 1].is_null(),
            };
            if present {
                mark(index, &mut self.s.found, &mut self.s.candidates, lit);
            }
        }
    }

    fn strings(&mut self) -> &[(String, String)] {
        let s = &mut *self.s;
        if !s.has_strings {
            s.has_strings = true;
            self.event
                .for_each_string(&mut |t| s.strings.push((t.to_owned(), lowercase(t))));
        }
        &s.strings
    }
}

/// Records literal `lit` as found and the rules it triggers as candidates.
fn mark(index: &LiteralIndex, found: &mut Bits, candidates: &mut Bits, lit: LitId) {
    if !found.get(lit) {
        found.set(lit);
        for &rule in index.triggers.get(lit).into_iter().flatten() {
            candidates.set(rule);
        }
    }
}

/// Runs `dfa` from `sid` over `bytes` and calls `hit(pattern, n)` for
/// each pattern that ends after the `n`th byte walked; `anchored`: only
/// for patterns that start at the first byte, stopping at the dead state.
fn walk<'h>(
    dfa: &DFA,
    mut sid: StateID,
    mut bytes: impl ExactSizeIterator<Item = &'h u8> + Clone,
    anchored: bool,
    hit: &mut impl FnMut(usize, usize),
) {
    let total = bytes.len();
    while let Some(next) = to_special(dfa, sid, &mut bytes) {
        sid = next;
        if dfa.is_dead(sid) {
            return;
        }
        if !dfa.is_match(sid) {
            continue;
        }
        let n = total - bytes.len();
        for k in 0..dfa.match_len(sid) {
            let pattern = dfa.match_pattern(sid, k);
            // A match state also lists the patterns that are suffixes of
            // what was walked; anchored, only those that start at 0 count.
            if !anchored || dfa.pattern_len(pattern) == n {
                hit(pattern.as_usize(), n);
            }
        }
    }
}

/// Runs `dfa` from `sid` until it reaches a special state (a match, or
/// dead), which it returns, leaving `bytes` after the byte that led there;
/// `None` at the end of the text. Kept out of line: in a small function the
/// state, the text position and the table stay in registers (~8
/// instructions a byte; inlined into the scan loop it was ~20).
/// The iterator is copied into a local and written back once: advanced in
/// place through the reference, it was stored to memory at every byte.
#[inline(never)]
fn to_special<'h>(
    dfa: &DFA,
    mut sid: StateID,
    bytes: &mut (impl Iterator<Item = &'h u8> + Clone),
) -> Option<StateID> {
    let mut it = bytes.clone();
    while let Some(&byte) = it.next() {
        sid = dfa.next_state(Anchored::No, sid, byte);
        if dfa.is_special(sid) {
            *bytes = it;
            return Some(sid);
        }
    }
    *bytes = it;
    None
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
                let slot = scratch.slot(*field);
                let Scratch { views, found, .. } = &mut *scratch.s;
                let view = &mut views[slot];
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
    fn is_match(&self, view: &mut FieldView, found: &Bits) -> bool {
        match self {
            ValueMatcher::Lit(id) => found.get(*id),
            ValueMatcher::AnyLit(ids) => ids.iter().any(|id| found.get(*id)),
            ValueMatcher::Null => view.is_null(),
            ValueMatcher::Int(n) => match view.kind {
                Kind::Int(m) => m == *n,
                Kind::Str => view.text == n.to_string(),
                _ => false,
            },
            ValueMatcher::Bool(b) => match view.kind {
                Kind::Bool(v) => v == *b,
                Kind::Str => view
                    .text
                    .eq_ignore_ascii_case(if *b { "true" } else { "false" }),
                _ => false,
            },
            ValueMatcher::Str(m) | ValueMatcher::RegexLits(m, _) => {
                view.text_for(m.cased).is_some_and(|t| m.is_match(t))
            }
            ValueMatcher::AnyStr(ms) => ms
                .iter()
                .any(|m| view.text_for(m.cased).is_some_and(|t| m.is_match(t))),
            ValueMatcher::Cidr(net) => view.has_text() && net.contains(&view.text),
            ValueMatcher::Compare(op, n) => {
                let n = *n;
                let ord = match view.kind {
                    Kind::Int(m) => m.cmp(&n),
                    Kind::Str => match view.text.trim().parse::<i64>() {
                        Ok(m) => m.cmp(&n),
                        Err(_) => match view.text.trim().parse::<f64>() {
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
            StrKind::Pattern(re) | StrKind::Regex(re, _) => re.is_match(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ascii_and_upper;

    #[test]
    fn ascii_and_upper_agrees_with_the_byte_by_byte_answer() {
        // Every length up to four words, with the odd byte at every place:
        // the word loop, the overlapping tail and the short path.
        for len in 0..32 {
            for at in 0..len.max(1) {
                for odd in [b'A', b'Z', b'@', b'[', b'a', b'z', 0x7f, 0x80, 0xc3, 0xff] {
                    let mut bytes = vec![b'x'; len];
                    if let Some(b) = bytes.get_mut(at) {
                        *b = odd;
                    }
                    let ascii = bytes.is_ascii();
                    let upper = ascii && bytes.iter().any(u8::is_ascii_uppercase);
                    assert_eq!(
                        ascii_and_upper(&bytes),
                        (ascii, upper),
                        "{bytes:?} (odd byte {odd:#x} at {at})"
                    );
                }
            }
        }
    }
}
