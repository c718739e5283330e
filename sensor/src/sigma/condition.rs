//! The `condition` language: tokens, a recursive-descent parser with a
//! nesting limit, and resolution of identifiers and `N of pattern`
//! selectors against the rule's search identifiers.
//!
//! Grammar (pySigma's, which is the spec's):
//!
//! ```text
//! or      := and ("or" and)*
//! and     := not ("and" not)*
//! not     := "not" not | primary
//! primary := "(" or ")" | ("1" | "any" | "all") "of" (pattern | "them") | identifier
//! ```
//!
//! Operators are lowercase keywords, as in pySigma (`Keyword("and")` is
//! case-sensitive there): `AND` is read as an identifier, and the error says
//! operators are lowercase. Identifiers are ASCII letters, digits, `_` and
//! `-`. `them`, and a pattern that does not start with `_`, leave out
//! identifiers starting with `_`. A selector that matches nothing is an
//! error, as in pySigma: silently dropping it would change what the rule
//! means.
//!
//! Chains of one operator are kept flat (`a and b and c` is one node), so
//! only parentheses and `not` add depth; both count against
//! [`MAX_NESTING`], which bounds the parser's recursion and every later
//! walk of the tree.

use super::error::DidYouMean;

/// Deepest nesting of parentheses and `not` accepted.
pub(crate) const MAX_NESTING: usize = 64;

/// A condition with identifiers resolved to search indices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cond {
    /// The search at this index of the detection's searches.
    Search(usize),
    Not(Box<Cond>),
    And(Vec<Cond>),
    Or(Vec<Cond>),
}

/// What is wrong with a condition. Its position is carried next to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConditionError {
    #[error("empty condition")]
    Empty,
    #[error("unexpected character '{0}'")]
    BadChar(char),
    #[error("expected {expected}, found {found}{hint}")]
    Unexpected {
        expected: &'static str,
        /// The token in quotes, or `end of condition`.
        found: String,
        hint: &'static str,
    },
    #[error("unclosed '('")]
    Unclosed,
    #[error("unknown search identifier '{name}'{}", DidYouMean(.suggestion.as_deref()))]
    UnknownIdentifier {
        name: String,
        suggestion: Option<String>,
    },
    #[error("'{0}' has a wildcard; patterns are only allowed after 'of'")]
    WildcardIdentifier(String),
    #[error("'{quantifier} of {pattern}' matches no search identifier")]
    EmptySelector { quantifier: String, pattern: String },
    #[error("nests deeper than {0} levels of parentheses and 'not'")]
    TooDeep(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Open,
    Close,
    Word(String),
}

/// A token and its offset in characters from the start of the condition.
type Spanned = (Tok, usize);

fn tokenize(text: &str) -> Result<Vec<Spanned>, (usize, ConditionError)> {
    let mut toks = Vec::new();
    let mut word: Option<(String, usize)> = None;
    for (offset, c) in text.chars().enumerate() {
        if c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '*') {
            word.get_or_insert_with(|| (String::new(), offset))
                .0
                .push(c);
            continue;
        }
        if let Some((w, at)) = word.take() {
            toks.push((Tok::Word(w), at));
        }
        match c {
            '(' => toks.push((Tok::Open, offset)),
            ')' => toks.push((Tok::Close, offset)),
            c if c.is_whitespace() => {}
            c => return Err((offset, ConditionError::BadChar(c))),
        }
    }
    if let Some((w, at)) = word.take() {
        toks.push((Tok::Word(w), at));
    }
    Ok(toks)
}

/// Parses `text` against the detection's search identifiers (in rule
/// order). Errors carry the character offset of the offending token.
pub(crate) fn parse(text: &str, names: &[&str]) -> Result<Cond, (usize, ConditionError)> {
    let toks = tokenize(text)?;
    if toks.is_empty() {
        return Err((0, ConditionError::Empty));
    }
    let mut parser = Parser {
        toks,
        next: 0,
        names,
        depth: 0,
        end: text.chars().count(),
    };
    let cond = parser.or()?;
    match parser.peek() {
        None => Ok(cond),
        Some((tok, at)) => Err((at, unexpected("'and', 'or' or end of condition", Some(tok)))),
    }
}

struct Parser<'a> {
    toks: Vec<Spanned>,
    next: usize,
    names: &'a [&'a str],
    depth: usize,
    /// Offset just past the text, for "found end of condition" errors.
    end: usize,
}

const PRIMARY: &str = "a search identifier, '(', 'not', or '1 of'/'any of'/'all of'";

fn unexpected(expected: &'static str, found: Option<&Tok>) -> ConditionError {
    let (found, hint) = match found {
        None => ("end of condition".to_owned(), ""),
        Some(Tok::Open) => ("'('".to_owned(), ""),
        Some(Tok::Close) => ("')'".to_owned(), ""),
        Some(Tok::Word(w)) => {
            let hint = if ["and", "or", "not", "of", "all", "any", "them"]
                .iter()
                .any(|k| w.eq_ignore_ascii_case(k) && w != k)
            {
                " (sigma keywords are lowercase)"
            } else {
                ""
            };
            (format!("'{w}'"), hint)
        }
    };
    ConditionError::Unexpected {
        expected,
        found,
        hint,
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<(&Tok, usize)> {
        self.toks.get(self.next).map(|(t, at)| (t, *at))
    }

    fn peek_word(&self, offset: usize) -> Option<&str> {
        match self.toks.get(self.next + offset) {
            Some((Tok::Word(w), _)) => Some(w),
            _ => None,
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.peek_word(0) == Some(word) {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn enter(&mut self, at: usize) -> Result<(), (usize, ConditionError)> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err((at, ConditionError::TooDeep(MAX_NESTING)));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Cond, (usize, ConditionError)> {
        let mut items = vec![self.and()?];
        while self.eat_word("or") {
            items.push(self.and()?);
        }
        Ok(flatten(items, Cond::Or))
    }

    fn and(&mut self) -> Result<Cond, (usize, ConditionError)> {
        let mut items = vec![self.not()?];
        while self.eat_word("and") {
            items.push(self.not()?);
        }
        Ok(flatten(items, Cond::And))
    }

    fn not(&mut self) -> Result<Cond, (usize, ConditionError)> {
        let Some((_, at)) = self.peek() else {
            return Err((self.end, unexpected(PRIMARY, None)));
        };
        if self.eat_word("not") {
            self.enter(at)?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Cond::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Cond, (usize, ConditionError)> {
        let Some((tok, at)) = self.peek() else {
            return Err((self.end, unexpected(PRIMARY, None)));
        };
        match tok.clone() {
            Tok::Open => {
                self.next += 1;
                self.enter(at)?;
                let inner = self.or()?;
                match self.peek() {
                    Some((Tok::Close, _)) => self.next += 1,
                    None => return Err((at, ConditionError::Unclosed)),
                    Some((tok, at)) => {
                        return Err((at, unexpected("'and', 'or' or ')'", Some(tok))));
                    }
                }
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Close => Err((at, unexpected(PRIMARY, Some(&Tok::Close)))),
            Tok::Word(word) => {
                if matches!(word.as_str(), "1" | "any" | "all") && self.peek_word(1) == Some("of") {
                    self.next += 2;
                    return self.selector(&word, at);
                }
                if matches!(word.as_str(), "and" | "or" | "of") {
                    return Err((at, unexpected(PRIMARY, Some(&Tok::Word(word)))));
                }
                self.next += 1;
                if word.contains('*') {
                    return Err((at, ConditionError::WildcardIdentifier(word)));
                }
                match self.names.iter().position(|n| *n == word) {
                    Some(i) => Ok(Cond::Search(i)),
                    None => {
                        let suggestion = super::error::closest(&word, self.names.iter().copied())
                            .map(str::to_owned);
                        Err((
                            at,
                            ConditionError::UnknownIdentifier {
                                name: word,
                                suggestion,
                            },
                        ))
                    }
                }
            }
        }
    }

    /// After `quantifier of`: `them` or a pattern.
    fn selector(&mut self, quantifier: &str, at: usize) -> Result<Cond, (usize, ConditionError)> {
        let pattern = match self.peek() {
            Some((Tok::Word(w), _)) if !matches!(w.as_str(), "and" | "or" | "not") => w.clone(),
            other => {
                let (tok, pos) = match other {
                    Some((t, p)) => (Some(t), p),
                    None => (None, self.end),
                };
                return Err((
                    pos,
                    unexpected("'them' or a search identifier pattern", tok),
                ));
            }
        };
        self.next += 1;
        let include_private = pattern.starts_with('_');
        let hits: Vec<Cond> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, name)| include_private || !name.starts_with('_'))
            .filter(|(_, name)| pattern == "them" || glob_match(&pattern, name))
            .map(|(i, _)| Cond::Search(i))
            .collect();
        if hits.is_empty() {
            return Err((
                at,
                ConditionError::EmptySelector {
                    quantifier: quantifier.to_owned(),
                    pattern,
                },
            ));
        }
        Ok(if quantifier == "all" {
            flatten(hits, Cond::And)
        } else {
            flatten(hits, Cond::Or)
        })
    }
}

impl Cond {
    /// The same condition with every search index moved up by `by`, for
    /// appending a filter's searches after a rule's. Recursion depth is the
    /// condition's, bounded by [`MAX_NESTING`] at parse time.
    pub(crate) fn shifted(&self, by: usize) -> Cond {
        match self {
            Cond::Search(i) => Cond::Search(i + by),
            Cond::Not(inner) => Cond::Not(Box::new(inner.shifted(by))),
            Cond::And(items) => Cond::And(items.iter().map(|c| c.shifted(by)).collect()),
            Cond::Or(items) => Cond::Or(items.iter().map(|c| c.shifted(by)).collect()),
        }
    }
}

fn flatten(mut items: Vec<Cond>, make: fn(Vec<Cond>) -> Cond) -> Cond {
    if items.len() == 1 {
        items.remove(0)
    } else {
        make(items)
    }
}

/// Full match of `name` against `pattern` where `*` is any run. Iterative
/// (greedy star with backtracking to the last star), so linear-ish and
/// without recursion.
fn glob_match(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: &[&str] = &[
        "selection",
        "selection_a",
        "selection_b",
        "filter_main_x",
        "_private",
    ];

    fn ok(text: &str) -> Cond {
        parse(text, NAMES).unwrap_or_else(|e| panic!("{text}: {e:?}"))
    }

    fn err(text: &str) -> (usize, String) {
        let (at, e) = parse(text, NAMES).expect_err(text);
        (at, e.to_string())
    }

    use Cond::{And, Not, Or, Search};

    #[test]
    fn precedence_is_not_then_and_then_or() {
        assert_eq!(
            ok("selection or selection_a and not selection_b"),
            Or(vec![
                Search(0),
                And(vec![Search(1), Not(Box::new(Search(2)))])
            ])
        );
        assert_eq!(
            ok("(selection or selection_a) and selection_b"),
            And(vec![Or(vec![Search(0), Search(1)]), Search(2)])
        );
        assert_eq!(
            ok("not not selection"),
            Not(Box::new(Not(Box::new(Search(0)))))
        );
    }

    #[test]
    fn chains_are_flat() {
        assert_eq!(
            ok("selection and selection_a and selection_b"),
            And(vec![Search(0), Search(1), Search(2)])
        );
    }

    #[test]
    fn selectors_expand_in_rule_order_and_them_skips_underscore() {
        assert_eq!(ok("1 of selection_*"), Or(vec![Search(1), Search(2)]));
        assert_eq!(
            ok("any of selection*"),
            Or(vec![Search(0), Search(1), Search(2)])
        );
        assert_eq!(ok("all of selection_*"), And(vec![Search(1), Search(2)]));
        assert_eq!(
            ok("all of them"),
            And(vec![Search(0), Search(1), Search(2), Search(3)])
        );
        assert_eq!(ok("1 of _priv*"), Search(4));
        assert_eq!(
            ok("selection and not 1 of filter_main_*"),
            And(vec![Search(0), Not(Box::new(Search(3)))])
        );
    }

    #[test]
    fn glob_match_needs_a_full_match() {
        assert!(glob_match("sel*", "selection"));
        assert!(glob_match("*tion", "selection"));
        assert!(glob_match("s*l*n", "selection"));
        assert!(!glob_match("sel", "selection"));
        assert!(!glob_match("*x*", "selection"));
    }

    #[test]
    fn error_messages_are_pinned() {
        assert_eq!(
            err("selection adn selection_a"),
            (
                10,
                "expected 'and', 'or' or end of condition, found 'adn'".into()
            )
        );
        assert_eq!(
            err("selection AND selection_a"),
            (
                10,
                "expected 'and', 'or' or end of condition, found 'AND' (sigma keywords are lowercase)".into()
            )
        );
        assert_eq!(
            err("selecton"),
            (
                0,
                "unknown search identifier 'selecton' (did you mean 'selection'?)".into()
            )
        );
        assert_eq!(
            err("nothing"),
            (0, "unknown search identifier 'nothing'".into())
        );
        assert_eq!(
            err("selection and 1 of filter_optional_*"),
            (
                14,
                "'1 of filter_optional_*' matches no search identifier".into()
            )
        );
        assert_eq!(err("(selection"), (0, "unclosed '('".into()));
        assert_eq!(
            err("selection and"),
            (
                13,
                "expected a search identifier, '(', 'not', or '1 of'/'any of'/'all of', found end of condition"
                    .into()
            )
        );
        assert_eq!(
            err("selection & selection_a"),
            (10, "unexpected character '&'".into())
        );
        assert_eq!(
            err("selection_*"),
            (
                0,
                "'selection_*' has a wildcard; patterns are only allowed after 'of'".into()
            )
        );
        assert_eq!(err("  "), (0, "empty condition".into()));
        assert_eq!(
            err("1 of"),
            (
                4,
                "expected 'them' or a search identifier pattern, found end of condition".into()
            )
        );
    }

    #[test]
    fn nesting_limit_is_an_error_not_a_stack_overflow() {
        let deep = format!("{}selection{}", "(".repeat(100_000), ")".repeat(100_000));
        assert_eq!(
            err(&deep),
            (
                MAX_NESTING,
                format!("nests deeper than {MAX_NESTING} levels of parentheses and 'not'")
            )
        );
        let nots = format!("{}selection", "not ".repeat(100_000));
        assert_eq!(
            err(&nots).1,
            format!("nests deeper than {MAX_NESTING} levels of parentheses and 'not'")
        );
        let fine = format!(
            "{}selection{}",
            "(".repeat(MAX_NESTING),
            ")".repeat(MAX_NESTING)
        );
        assert_eq!(ok(&fine), Search(0));
    }

    #[test]
    fn hyphenated_identifiers_parse() {
        let names = ["sel-1", "sel-2"];
        assert_eq!(
            parse("sel-1 or sel-2", &names),
            Ok(Or(vec![Search(0), Search(1)]))
        );
    }
}
