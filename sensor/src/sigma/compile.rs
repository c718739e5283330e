//! Rule model -> matchers: Sigma strings (wildcards, escapes) and
//! modifiers become compiled string predicates, field names become ids in a
//! table shared by the whole rule set.
//!
//! Each string value compiles once to the cheapest matcher that is exact:
//! a lowercased literal compared whole, as prefix, suffix, or searched with
//! a prebuilt `memmem` finder; only values with inner wildcards or `windash`
//! become an anchored `regex`. Literals stay visible as literals in
//! [`StrKind`], so a later pass can gather every literal of one field into
//! one aho-corasick automaton.
//!
//! Case-insensitivity is by lowercasing (Unicode `to_lowercase`, ASCII fast
//! path) both the value here and the event's text at match time, rather
//! than the regex crate's case folding, so that literal and wildcard values
//! agree on what "the same letters" means.

use std::collections::HashMap;

use memchr::memmem;
use regex::{Regex, RegexBuilder};

use super::condition::Cond;
use super::error::{ItemError, Position, RuleError};
use super::modifier::{Anchor, Base64, CompareOp, Modifiers, Wide};
use super::rule::{Detection, Item, Lit, Located, Search, SearchExpr};

/// Largest compiled regex accepted (`|re` values and wildcard patterns),
/// in bytes of the regex crate's program. 1 MiB fits any real rule and
/// keeps a hostile `(a{1000}){1000}` from eating memory.
pub(crate) const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// Index of a field name in [`FieldTable`].
pub(crate) type FieldId = usize;

/// Field names used by the rule set, each once; events are read through
/// these ids so one `matches` call fetches each field at most once.
#[derive(Debug, Default, Clone)]
pub(crate) struct FieldTable {
    names: Vec<String>,
    ids: HashMap<String, FieldId>,
}

impl FieldTable {
    fn intern(&mut self, name: &str) -> FieldId {
        if let Some(&id) = self.ids.get(name) {
            return id;
        }
        let id = self.names.len();
        self.names.push(name.to_owned());
        self.ids.insert(name.to_owned(), id);
        id
    }

    pub(crate) fn name(&self, id: FieldId) -> &str {
        &self.names[id]
    }

    pub(crate) fn len(&self) -> usize {
        self.names.len()
    }
}

/// A compiled rule: its searches and the condition over them.
#[derive(Debug, Clone)]
pub(crate) struct RuleMatcher {
    pub(crate) searches: Vec<SearchMatcher>,
    pub(crate) condition: Cond,
}

#[derive(Debug, Clone)]
pub(crate) enum SearchMatcher {
    AllOf(Vec<ItemMatcher>),
    AnyOf(Vec<SearchMatcher>),
}

#[derive(Debug, Clone)]
pub(crate) enum ItemMatcher {
    Field {
        field: FieldId,
        test: FieldTest,
    },
    /// Values searched in every string field of the event.
    Keywords {
        values: Vec<StrMatcher>,
        all: bool,
    },
    /// `neq`: the item negated, as pySigma negates it.
    Not(Box<ItemMatcher>),
}

#[derive(Debug, Clone)]
pub(crate) enum FieldTest {
    /// `exists: true/false`; null counts as absent.
    Exists(bool),
    Values {
        values: Vec<ValueMatcher>,
        all: bool,
    },
    /// `fieldref`: the field's text compared with other fields' text.
    FieldRef {
        others: Vec<FieldId>,
        anchor: Anchor,
        cased: bool,
        all: bool,
    },
}

#[derive(Debug, Clone)]
pub(crate) enum ValueMatcher {
    /// Field absent or null.
    Null,
    /// An integer field equal to it, or a text field that is exactly its
    /// decimal form.
    Int(i64),
    Bool(bool),
    Str(StrMatcher),
    /// Any of these (the three `base64offset` encodings of one value).
    AnyStr(Vec<StrMatcher>),
    /// A literal of the [`super::literals::LiteralIndex`]: found in this
    /// event's field by the per-field automaton pass, with its anchor.
    Lit(super::literals::LitId),
    /// Any of these literals (`base64offset` after indexing).
    AnyLit(Vec<super::literals::LitId>),
    /// A `|re` value (compared as [`ValueMatcher::Str`]) and the literals
    /// of the index one of which every match starts with: what makes its
    /// rule a candidate, not a test.
    RegexLits(StrMatcher, Vec<super::literals::LitId>),
    /// `cidr`: the field's text is an address inside this network.
    Cidr(Cidr),
    /// `lt`/`lte`/`gt`/`gte`: the field is a number (or its decimal text)
    /// in this relation to the value.
    Compare(CompareOp, i64),
}

/// An IPv4 or IPv6 network. v4 addresses are kept in the low 32 bits and
/// only match v4 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    v6: bool,
    net: u128,
    mask: u128,
}

impl Cidr {
    fn parse(text: &str) -> Option<Cidr> {
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u32>().ok()?)),
            None => (text, None),
        };
        let (v6, bits, width) = match addr.parse::<std::net::IpAddr>().ok()? {
            std::net::IpAddr::V4(a) => (false, u128::from(u32::from(a)), 32),
            std::net::IpAddr::V6(a) => (true, u128::from(a), 128),
        };
        let len = len.unwrap_or(width);
        if len > width {
            return None;
        }
        // Host bits set in the value are ignored, like Python's
        // `ip_network(strict=False)`.
        let mask = if len == 0 {
            0
        } else {
            (u128::MAX << (128 - len)) >> (128 - width)
        };
        Some(Cidr {
            v6,
            net: bits & mask,
            mask,
        })
    }

    pub(crate) fn contains(&self, text: &str) -> bool {
        match text.trim().parse::<std::net::IpAddr>() {
            Ok(std::net::IpAddr::V4(a)) if !self.v6 => {
                u128::from(u32::from(a)) & self.mask == self.net
            }
            Ok(std::net::IpAddr::V6(a)) if self.v6 => u128::from(a) & self.mask == self.net,
            _ => false,
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) struct StrMatcher {
    pub(crate) kind: StrKind,
    /// Compare the event's text as is, not lowercased. Patterns were
    /// lowercased at compile time unless this is set.
    pub(crate) cased: bool,
}

#[derive(Debug, Clone)]
pub(crate) enum StrKind {
    /// `*`: any text (not null, not absent).
    Any,
    Exact(String),
    Prefix(String),
    Suffix(String),
    /// Boxed: a finder is ~300 bytes, most values are not `contains`.
    Contains(Box<memmem::Finder<'static>>),
    /// Wildcards or windash inside: an anchored regex over the (lowercased
    /// unless cased) text.
    Pattern(Regex),
    /// `|re`: unanchored search over the original text, and literals one
    /// of which starts every match ([`regex_prefixes`]; empty when there
    /// is no such small set), for the literal index.
    Regex(Regex, Vec<String>),
}

/// Compiles a parsed detection, interning its fields in `fields`. Every
/// bad item is reported.
pub(crate) fn compile(
    detection: Detection,
    fields: &mut FieldTable,
) -> Result<RuleMatcher, Vec<Located>> {
    Ok(RuleMatcher {
        searches: compile_searches(detection.searches, fields)?,
        condition: detection.condition,
    })
}

/// Compiles searches in order; on failure, the errors of all of them.
pub(crate) fn compile_searches(
    searches: Vec<Search>,
    fields: &mut FieldTable,
) -> Result<Vec<SearchMatcher>, Vec<Located>> {
    let mut errors = Vec::new();
    let mut out = Vec::new();
    for search in searches {
        match search_matcher(&search.name, search.expr, fields) {
            Ok(m) => out.push(m),
            Err(mut e) => errors.append(&mut e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

fn search_matcher(
    name: &str,
    expr: SearchExpr,
    fields: &mut FieldTable,
) -> Result<SearchMatcher, Vec<Located>> {
    match expr {
        SearchExpr::AllOf(items) => {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            for item in items {
                match item_matcher(item, fields) {
                    Ok(m) => out.push(m),
                    Err((pos, problem, key)) => errors.push((
                        pos,
                        match key {
                            Some(field) => RuleError::Item {
                                search: name.to_owned(),
                                field,
                                problem,
                            },
                            None => RuleError::Search {
                                search: name.to_owned(),
                                problem,
                            },
                        },
                    )),
                }
            }
            if errors.is_empty() {
                Ok(SearchMatcher::AllOf(out))
            } else {
                Err(errors)
            }
        }
        SearchExpr::AnyOf(alternatives) => {
            let mut out = Vec::new();
            let mut errors = Vec::new();
            for alternative in alternatives {
                match search_matcher(name, alternative, fields) {
                    Ok(m) => out.push(m),
                    Err(mut e) => errors.append(&mut e),
                }
            }
            if errors.is_empty() {
                Ok(SearchMatcher::AnyOf(out))
            } else {
                Err(errors)
            }
        }
    }
}

type ItemFailure = (Position, ItemError, Option<String>);

fn item_matcher(item: Item, fields: &mut FieldTable) -> Result<ItemMatcher, ItemFailure> {
    let negate = item.modifiers.negate;
    let matcher = positive_item_matcher(item, fields)?;
    Ok(if negate {
        ItemMatcher::Not(Box::new(matcher))
    } else {
        matcher
    })
}

fn positive_item_matcher(item: Item, fields: &mut FieldTable) -> Result<ItemMatcher, ItemFailure> {
    let mods = item.modifiers;
    let fail = |pos, problem| (pos, problem, item.key.clone());
    let Some(field) = item.field.as_deref() else {
        if let Some(kind) = mods.non_string() {
            return Err(fail(
                item.pos,
                ItemError::ModifierOnValue {
                    modifier: kind,
                    value: "a keyword search (it needs a field)",
                },
            ));
        }
        // Keywords: values are searched anywhere in any string field.
        let mut values = Vec::new();
        for (value, pos) in &item.values {
            let text = match value {
                Lit::Str(s) | Lit::Int(_, s) => s.clone(),
                Lit::Bool(b) => b.to_string(),
                Lit::Null => {
                    return Err(fail(
                        *pos,
                        ItemError::ModifierOnValue {
                            modifier: "keyword search",
                            value: "null",
                        },
                    ));
                }
            };
            let keyword_mods = Modifiers {
                anchor: if mods.re.is_some() {
                    Anchor::Whole
                } else {
                    Anchor::Contains
                },
                ..mods
            };
            let mut matchers = encoded_matchers(&text, &keyword_mods).map_err(|e| fail(*pos, e))?;
            if matchers.len() != 1 {
                // base64offset on keywords: each encoding is one keyword
                // alternative only when the values are ORed.
                if mods.all {
                    return Err(fail(
                        *pos,
                        ItemError::ConflictingModifiers("base64offset", "all"),
                    ));
                }
            }
            values.append(&mut matchers);
        }
        return Ok(ItemMatcher::Keywords {
            values,
            all: mods.all,
        });
    };
    let field = fields.intern(field);
    if mods.exists {
        return match item.values.as_slice() {
            [(Lit::Bool(b), _)] => Ok(ItemMatcher::Field {
                field,
                test: FieldTest::Exists(*b),
            }),
            [(other, pos)] => Err(fail(*pos, ItemError::ExistsNeedsBool(other.kind_name()))),
            _ => Err(fail(item.pos, ItemError::ExistsNeedsBool("a list"))),
        };
    }
    if mods.fieldref {
        let mut others = Vec::new();
        for (value, pos) in &item.values {
            let Lit::Str(name) = value else {
                return Err(fail(
                    *pos,
                    ItemError::BadFieldRef(value.kind_name().to_owned()),
                ));
            };
            let parts = sigma_parts(name);
            let plain = match parts.as_slice() {
                [Part::Lit(s)] => s.clone(),
                _ => return Err(fail(*pos, ItemError::BadFieldRef(format!("'{name}'")))),
            };
            others.push(fields.intern(&plain));
        }
        return Ok(ItemMatcher::Field {
            field,
            test: FieldTest::FieldRef {
                others,
                anchor: mods.anchor,
                cased: mods.cased,
                all: mods.all,
            },
        });
    }
    let mut values = Vec::new();
    for (value, pos) in &item.values {
        values.push(value_matcher(value, &mods).map_err(|e| fail(*pos, e))?);
    }
    Ok(ItemMatcher::Field {
        field,
        test: FieldTest::Values {
            values,
            all: mods.all,
        },
    })
}

fn value_matcher(value: &Lit, mods: &Modifiers) -> Result<ValueMatcher, ItemError> {
    if mods.cidr {
        return match value {
            Lit::Str(s) => Cidr::parse(s)
                .map(ValueMatcher::Cidr)
                .ok_or_else(|| ItemError::BadCidr(s.clone())),
            other => Err(ItemError::BadCidr(format!("{other:?}"))),
        };
    }
    if let Some(op) = mods.compare {
        let modifier = mods.non_string().unwrap_or("lt");
        return match value {
            Lit::Int(n, _) => Ok(ValueMatcher::Compare(op, *n)),
            other => Err(ItemError::NotANumber {
                modifier,
                value: other.kind_name(),
            }),
        };
    }
    let encoded = mods.wide.is_some() || mods.base64.is_some();
    let plain = mods.anchor == Anchor::Whole && mods.re.is_none() && !mods.windash && !encoded;
    let modifier_name = || {
        if mods.re.is_some() {
            "re"
        } else if mods.windash {
            "windash"
        } else if let Some(b) = mods.base64 {
            match b {
                Base64::Plain => "base64",
                Base64::Offset => "base64offset",
            }
        } else if mods.wide.is_some() {
            "wide"
        } else {
            match mods.anchor {
                Anchor::Contains => "contains",
                Anchor::StartsWith => "startswith",
                Anchor::EndsWith => "endswith",
                Anchor::Whole => "cased",
            }
        }
    };
    match value {
        Lit::Null if plain && !mods.cased => Ok(ValueMatcher::Null),
        Lit::Null => Err(ItemError::ModifierOnValue {
            modifier: modifier_name(),
            value: "null",
        }),
        Lit::Int(n, _) if plain => Ok(ValueMatcher::Int(*n)),
        Lit::Bool(b) if plain => Ok(ValueMatcher::Bool(*b)),
        // With string modifiers a number or boolean is its text, as pySigma
        // converts it.
        Lit::Int(_, text) => one_or_any(encoded_matchers(text, mods)?),
        Lit::Bool(b) => one_or_any(encoded_matchers(&b.to_string(), mods)?),
        Lit::Str(s) => one_or_any(encoded_matchers(s, mods)?),
    }
}

fn one_or_any(mut matchers: Vec<StrMatcher>) -> Result<ValueMatcher, ItemError> {
    Ok(if matchers.len() == 1 {
        ValueMatcher::Str(matchers.remove(0))
    } else {
        ValueMatcher::AnyStr(matchers)
    })
}

/// `%name%` placeholders of an `expand` value, in pySigma's syntax.
fn first_placeholder(value: &str) -> Option<&str> {
    let mut rest = value;
    while let Some(start) = rest.find('%') {
        let after = &rest[start + 1..];
        let end = after.find('%')?;
        let name = &after[..end];
        if !name.is_empty() && name.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Some(name);
        }
        rest = &after[end..];
    }
    None
}

/// The string matchers for one value after `expand`, the UTF-16 and
/// base64 encodings: one, or three for `base64offset`.
fn encoded_matchers(value: &str, mods: &Modifiers) -> Result<Vec<StrMatcher>, ItemError> {
    if mods.expand
        && let Some(name) = first_placeholder(value)
    {
        return Err(ItemError::UnresolvedPlaceholder(name.to_owned()));
    }
    if mods.re.is_some() || (mods.wide.is_none() && mods.base64.is_none()) {
        return Ok(vec![str_matcher(value, mods)?]);
    }
    let parts = sigma_parts(value);
    let name = match (mods.base64, mods.wide) {
        (Some(Base64::Plain), _) => "base64",
        (Some(Base64::Offset), _) => "base64offset",
        (None, Some(Wide::Le)) => "wide",
        (None, Some(Wide::Be)) => "utf16be",
        (None, Some(Wide::LeBom)) => "utf16",
        (None, None) => "base64",
    };
    let text = match parts.as_slice() {
        [] => String::new(),
        [Part::Lit(s)] => s.clone(),
        _ => return Err(ItemError::WildcardInEncoded(name)),
    };
    let (wide_text, bytes) = match mods.wide {
        None => (text.clone(), text.into_bytes()),
        Some(w) => {
            if !text.is_ascii() {
                return Err(ItemError::NotAscii(name, text));
            }
            let mut chars = String::new();
            let mut bytes = Vec::new();
            if w == Wide::LeBom {
                // pySigma puts U+FEFF in the text, but base64 encodes the
                // UTF-16LE mark FF FE, as the encoded data would hold.
                chars.push('\u{feff}');
                bytes.extend_from_slice(&[0xff, 0xfe]);
            }
            for b in text.bytes() {
                let pair = if w == Wide::Be { [0, b] } else { [b, 0] };
                chars.extend(pair.iter().map(|&b| char::from(b)));
                bytes.extend_from_slice(&pair);
            }
            (chars, bytes)
        }
    };
    let texts = match mods.base64 {
        None => vec![wide_text],
        Some(Base64::Plain) => vec![base64(&bytes)],
        Some(Base64::Offset) => base64_offsets(&bytes),
    };
    texts
        .iter()
        .map(|t| parts_matcher(vec![Part::Lit(t.clone())], mods))
        .collect()
}

/// Standard base64 with padding (RFC 4648), as Python's `b64encode`.
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// pySigma's `base64offset`: the value encoded after 0, 1 and 2 bytes of
/// padding, each cut to the characters that depend on the value alone
/// (starts 0/2/3, ends cut by 0/3/2 by the encoded length mod 3).
fn base64_offsets(data: &[u8]) -> Vec<String> {
    const START: [usize; 3] = [0, 2, 3];
    const END_CUT: [usize; 3] = [0, 3, 2];
    (0..3)
        .map(|i| {
            let mut padded = vec![b' '; i];
            padded.extend_from_slice(data);
            let encoded = base64(&padded);
            let end = encoded.len().saturating_sub(END_CUT[(data.len() + i) % 3]);
            encoded.get(START[i]..end).unwrap_or_default().to_owned()
        })
        .collect()
}

/// A piece of a Sigma string after escapes and wildcards are read.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Part {
    Lit(String),
    /// `*`
    AnyRun,
    /// `?`
    AnyOne,
    /// A `-` or `/` that `windash` lets be any dash or slash.
    Dash,
}

/// Reads a Sigma string: `*` and `?` are wildcards; `\*`, `\?` and `\\`
/// are the literal characters; a backslash before anything else (or at the
/// end) is itself, so `C:\Windows` keeps its backslash (pySigma's rules).
pub(super) fn sigma_parts(s: &str) -> Vec<Part> {
    let mut parts = Vec::new();
    let mut lit = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(&next @ ('*' | '?' | '\\')) => {
                    lit.push(next);
                    chars.next();
                }
                _ => lit.push('\\'),
            },
            '*' | '?' => {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                parts.push(if c == '*' { Part::AnyRun } else { Part::AnyOne });
            }
            c => lit.push(c),
        }
    }
    if !lit.is_empty() {
        parts.push(Part::Lit(lit));
    }
    parts
}

/// pySigma's windash: a `-` or `/` that starts a word (`\B[-/]\b`: no word
/// character before it, one after it), within one literal piece.
fn windash(parts: Vec<Part>) -> Vec<Part> {
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    let mut out = Vec::new();
    for part in parts {
        let Part::Lit(text) = part else {
            out.push(part);
            continue;
        };
        let chars: Vec<char> = text.chars().collect();
        let mut lit = String::new();
        for (i, &c) in chars.iter().enumerate() {
            let starts_word = matches!(c, '-' | '/')
                && (i == 0 || !is_word(chars[i - 1]))
                && chars.get(i + 1).is_some_and(|&n| is_word(n));
            if starts_word {
                if !lit.is_empty() {
                    out.push(Part::Lit(std::mem::take(&mut lit)));
                }
                out.push(Part::Dash);
            } else {
                lit.push(c);
            }
        }
        if !lit.is_empty() {
            out.push(Part::Lit(lit));
        }
    }
    out
}

/// Lowercases for case-insensitive comparison; cheap for ASCII.
pub(crate) fn lowercase(s: &str) -> String {
    if s.is_ascii() {
        s.to_ascii_lowercase()
    } else {
        s.to_lowercase()
    }
}

fn str_matcher(value: &str, mods: &Modifiers) -> Result<StrMatcher, ItemError> {
    if let Some(flags) = mods.re {
        let regex = RegexBuilder::new(value)
            .case_insensitive(flags.ignore_case)
            .multi_line(flags.multi_line)
            .dot_matches_new_line(flags.dot_all)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| ItemError::Regex(regex_error(&e)))?;
        return Ok(StrMatcher {
            kind: StrKind::Regex(regex, regex_prefixes(value, flags)),
            cased: true,
        });
    }
    parts_matcher(sigma_parts(value), mods)
}

/// Compiles a value already read into parts (so encoded text, whose
/// characters are all literal, is not read for wildcards again).
fn parts_matcher(mut parts: Vec<Part>, mods: &Modifiers) -> Result<StrMatcher, ItemError> {
    if mods.windash {
        parts = windash(parts);
    }
    if matches!(mods.anchor, Anchor::Contains | Anchor::EndsWith)
        && parts.first() != Some(&Part::AnyRun)
    {
        parts.insert(0, Part::AnyRun);
    }
    if matches!(mods.anchor, Anchor::Contains | Anchor::StartsWith)
        && parts.last() != Some(&Part::AnyRun)
    {
        parts.push(Part::AnyRun);
    }
    if !mods.cased {
        for part in &mut parts {
            if let Part::Lit(s) = part {
                *s = lowercase(s);
            }
        }
    }
    // `**` is `*`.
    parts.dedup_by(|a, b| *a == Part::AnyRun && *b == Part::AnyRun);
    let kind = match parts.as_slice() {
        [] => StrKind::Exact(String::new()),
        [Part::Lit(s)] => StrKind::Exact(s.clone()),
        [Part::AnyRun] => StrKind::Any,
        [Part::Lit(s), Part::AnyRun] => StrKind::Prefix(s.clone()),
        [Part::AnyRun, Part::Lit(s)] => StrKind::Suffix(s.clone()),
        [Part::AnyRun, Part::Lit(s), Part::AnyRun] => {
            StrKind::Contains(Box::new(memmem::Finder::new(s.as_bytes()).into_owned()))
        }
        _ => StrKind::Pattern(pattern_regex(&parts)?),
    };
    Ok(StrMatcher {
        kind,
        cased: mods.cased,
    })
}

/// Most literals [`regex_prefixes`] returns; a larger set (say, the case
/// variants of a long `(?i)` word) is no use as a prefilter.
const MAX_PREFIXES: usize = 16;

/// Literals one of which every match of `|re` value `value` (with
/// `flags`) starts with, so the text must contain one of them; empty when
/// there is no such set of at most [`MAX_PREFIXES`] non-empty UTF-8
/// strings. regex-syntax's prefix extraction with the flags the regex is
/// built with: a finite sequence covers a prefix of every match
/// (look-around assertions are read as matching anywhere, which only
/// makes the set larger).
fn regex_prefixes(value: &str, flags: super::modifier::ReFlags) -> Vec<String> {
    use regex_syntax::hir::literal::{ExtractKind, Extractor};
    let Ok(hir) = regex_syntax::ParserBuilder::new()
        .case_insensitive(flags.ignore_case)
        .multi_line(flags.multi_line)
        .dot_matches_new_line(flags.dot_all)
        .build()
        .parse(value)
    else {
        return Vec::new();
    };
    let seq = Extractor::new().kind(ExtractKind::Prefix).extract(&hir);
    let Some(literals) = seq.literals() else {
        return Vec::new();
    };
    // No literal at all: the regex matches nothing; say nothing rather
    // than mark the rule as never a candidate.
    if literals.is_empty()
        || literals.len() > MAX_PREFIXES
        || literals.iter().any(|l| l.as_bytes().is_empty())
    {
        return Vec::new();
    }
    literals
        .iter()
        .map(|l| String::from_utf8(l.as_bytes().to_vec()).ok())
        .collect::<Option<Vec<_>>>()
        .unwrap_or_default()
}

fn pattern_regex(parts: &[Part]) -> Result<Regex, ItemError> {
    let mut re = String::from("(?s)^");
    for part in parts {
        match part {
            Part::Lit(s) => re.push_str(&regex::escape(s)),
            Part::AnyRun => re.push_str(".*"),
            Part::AnyOne => re.push('.'),
            Part::Dash => re.push_str("[-/\u{2013}\u{2014}\u{2015}]"),
        }
    }
    re.push('$');
    RegexBuilder::new(&re)
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| ItemError::Regex(regex_error(&e)))
}

/// One line for a regex error: the regex crate's syntax errors span several
/// lines (pattern, caret, message); keep the message.
fn regex_error(e: &regex::Error) -> String {
    match e {
        regex::Error::Syntax(text) => text
            .lines()
            .find_map(|l| l.strip_prefix("error: "))
            .unwrap_or(text)
            .to_owned(),
        regex::Error::CompiledTooBig(limit) => {
            format!("compiled size exceeds the limit of {limit} bytes")
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(value: &str, mods: Modifiers) -> StrKind {
        str_matcher(value, &mods).expect("compiles").kind
    }

    #[test]
    fn escapes_follow_pysigma() {
        assert_eq!(
            sigma_parts(r"C:\Windows"),
            vec![Part::Lit(r"C:\Windows".into())]
        );
        assert_eq!(sigma_parts(r"a\*b"), vec![Part::Lit("a*b".into())]);
        assert_eq!(sigma_parts(r"a\?b"), vec![Part::Lit("a?b".into())]);
        assert_eq!(
            sigma_parts(r"a\\*"),
            vec![Part::Lit(r"a\".into()), Part::AnyRun]
        );
        assert_eq!(sigma_parts(r"end\"), vec![Part::Lit(r"end\".into())]);
        assert_eq!(
            sigma_parts("a*b?"),
            vec![
                Part::Lit("a".into()),
                Part::AnyRun,
                Part::Lit("b".into()),
                Part::AnyOne
            ]
        );
    }

    #[test]
    fn literal_shapes_compile_without_regex() {
        let contains = Modifiers {
            anchor: Anchor::Contains,
            ..Modifiers::default()
        };
        assert!(matches!(kind("Stop", Modifiers::default()), StrKind::Exact(s) if s == "stop"));
        assert!(matches!(kind("/bin/*", Modifiers::default()), StrKind::Prefix(s) if s == "/bin/"));
        assert!(matches!(kind("*/sh", Modifiers::default()), StrKind::Suffix(s) if s == "/sh"));
        assert!(matches!(kind("kesl", contains), StrKind::Contains(_)));
        assert!(matches!(kind("*kesl*", contains), StrKind::Contains(_)));
        assert!(matches!(kind("*", Modifiers::default()), StrKind::Any));
        assert!(matches!(
            kind("a*b", Modifiers::default()),
            StrKind::Pattern(_)
        ));
    }

    #[test]
    fn regex_prefixes_start_every_match() {
        use super::super::modifier::ReFlags;
        let plain = ReFlags::default();
        let mut prefixes = regex_prefixes(r#"-(W|R)\s?(\s|"|')([0-9a-fA-F]{2}\s?){2,20}"#, plain);
        prefixes.sort();
        assert!(
            prefixes.len() >= 2
                && prefixes
                    .iter()
                    .all(|p| p.starts_with("-W") || p.starts_with("-R")),
            "{prefixes:?}"
        );
        // Case-insensitive: every case variant is listed, or nothing.
        let insensitive = ReFlags {
            ignore_case: true,
            ..plain
        };
        let mut ab = regex_prefixes("ab", insensitive);
        ab.sort();
        assert_eq!(ab, ["AB", "Ab", "aB", "ab"]);
        // No small set, or a match that can be empty: no requirement.
        assert!(regex_prefixes("(?i)kaspersky", plain).is_empty());
        assert!(regex_prefixes("a*", plain).is_empty());
        assert!(regex_prefixes(".*x", plain).is_empty());
        assert!(regex_prefixes("[^a]", plain).is_empty());
    }

    #[test]
    fn windash_marks_only_dashes_that_start_a_word() {
        let parts = windash(sigma_parts("cmd -x a-b /y - z"));
        assert_eq!(
            parts,
            vec![
                Part::Lit("cmd ".into()),
                Part::Dash,
                Part::Lit("x a-b ".into()),
                Part::Dash,
                Part::Lit("y - z".into()),
            ]
        );
    }

    #[test]
    fn bad_regex_message_is_one_line() {
        let re = Modifiers {
            re: Some(Default::default()),
            ..Modifiers::default()
        };
        let err = str_matcher("(?=x)", &re).expect_err("look-around");
        assert_eq!(
            err.to_string(),
            "regular expression does not compile: look-around, including look-ahead and look-behind, is not supported"
        );
        let err = str_matcher("(a{1000}){1000}", &re).expect_err("too big");
        assert_eq!(
            err.to_string(),
            format!(
                "regular expression does not compile: compiled size exceeds the limit of {REGEX_SIZE_LIMIT} bytes"
            )
        );
    }
}
