//! Load errors and skip reports: what went wrong with which rule, where.
//!
//! Every problem found while loading is a [`LoadError`]: the source name,
//! the `line:column` where known, the rule (title, else id) where known, and
//! a [`RuleError`] saying what is wrong in lowercase. The loader collects
//! all of them instead of stopping at the first, like a compiler, so one
//! `rules check` run shows every broken rule.
//!
//! A rule written for another log source is not an error: it is a
//! [`LoadWarning`], reported and not loaded.

use std::fmt;

use super::condition::ConditionError;

/// A 1-based line and column (in characters) in a rule source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One rule (or one whole source, for YAML syntax errors) that failed to load.
///
/// Displays as `<source>:<line>:<col>: rule '<title or id>': <message>`;
/// the position and rule parts are left out when unknown.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}{kind}", Location(&self.source_name, self.position), RuleLabel(self.rule.as_deref()))]
pub struct LoadError {
    /// [`super::Source::name`] of the source the rule came from.
    pub source_name: String,
    /// Where in that source, when known.
    pub position: Option<Position>,
    /// Title of the rule, else its id, when the document got that far.
    pub rule: Option<String>,
    /// What is wrong.
    #[source]
    pub kind: RuleError,
}

/// A rule that was read but not loaded because it is not for this sensor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{}skipped: {reason}", Location(&self.source_name, self.position), RuleLabel(self.rule.as_deref()))]
pub struct LoadWarning {
    pub source_name: String,
    pub position: Option<Position>,
    pub rule: Option<String>,
    pub reason: SkipReason,
}

/// Why a rule was skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SkipReason {
    /// `logsource` names something other than linux `process_creation`.
    #[error("logsource {0} is not linux process_creation")]
    LogSource(String),
    /// A correlation document: not a detection rule.
    #[error("'{0}' documents are not supported")]
    NotARule(&'static str),
}

/// What is wrong with a rule. Messages are lowercase and, where a fix is
/// known, say it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    #[error("yaml syntax error: {0}")]
    Yaml(String),
    #[error("yaml nests deeper than {0} levels")]
    YamlTooDeep(usize),
    #[error("yaml aliases expand to more than {0} nodes")]
    YamlAliasBomb(usize),
    #[error("yaml alias refers to an unknown anchor")]
    YamlUnknownAlias,
    #[error("yaml mapping keys must be scalars")]
    YamlComplexKey,
    #[error("duplicate key '{0}'")]
    DuplicateKey(String),
    #[error("a rule document must be a mapping")]
    NotAMapping,
    #[error("unknown collection action '{0}' (expected 'global', 'reset' or 'repeat')")]
    UnknownAction(String),
    #[error("'action: repeat' with no previous rule to repeat")]
    RepeatWithoutRule,
    #[error("missing '{0}'")]
    Missing(&'static str),
    #[error("'{key}' must be {expected}")]
    WrongType { key: String, expected: &'static str },
    #[error("detection has no search identifiers, only a condition")]
    NoSearches,
    /// A problem with one `field|modifiers: values` entry of a search.
    #[error("search '{search}', field '{field}': {problem}")]
    Item {
        search: String,
        /// The key as written, e.g. `CommandLine|contains`.
        field: String,
        problem: ItemError,
    },
    /// A problem with a search as a whole (not one entry).
    #[error("search '{search}': {problem}")]
    Search { search: String, problem: ItemError },
    #[error("condition: {0}")]
    Condition(#[from] ConditionError),
    #[error("duplicate rule id '{id}' (first used by {first})")]
    DuplicateId {
        id: String,
        /// `source:line:col` of the rule that has it already.
        first: String,
    },
    #[error("filter names rule '{0}', which is not loaded (name rules by id or title)")]
    FilterTargetUnknown(String),
    #[error("'filter' must be a mapping with 'rules', search identifiers and 'condition'")]
    FilterNotAMapping,
    /// A rule where only filter documents are expected (exclusions).
    #[error("expected a Sigma filter document (with 'filter:'), found a rule")]
    NotAFilter,
}

/// What is wrong with one detection entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ItemError {
    #[error("unknown modifier '{name}'{}", DidYouMean(*suggestion))]
    UnknownModifier {
        name: String,
        suggestion: Option<&'static str>,
    },
    #[error("modifier '{0}' is not supported yet")]
    UnsupportedModifier(String),
    #[error("modifiers '{0}' and '{1}' cannot be combined")]
    ConflictingModifiers(&'static str, &'static str),
    #[error("modifier '{0}' needs the 're' modifier")]
    FlagWithoutRe(&'static str),
    #[error("empty modifier (two '|' in a row or a trailing '|')")]
    EmptyModifier,
    #[error("'exists' takes true or false, not {0}")]
    ExistsNeedsBool(&'static str),
    #[error("modifier '{modifier}' cannot apply to {value}")]
    ModifierOnValue {
        modifier: &'static str,
        value: &'static str,
    },
    #[error("regular expression does not compile: {0}")]
    Regex(String),
    #[error("empty value list")]
    EmptyList,
    #[error("values must be scalars or a list of scalars, not a {0}")]
    NestedValue(&'static str),
    #[error("a search must be a mapping, a list, or a keyword, not {0}")]
    BadSearch(&'static str),
    #[error("an empty mapping matches nothing useful")]
    EmptyMap,
    #[error("modifier '{first}' must come before '{then}'")]
    ModifierOrder {
        first: &'static str,
        then: &'static str,
    },
    #[error("modifier '{0}' is repeated")]
    RepeatedModifier(&'static str),
    #[error("modifier 'all' needs a list of two or more values; with one value, drop 'all'")]
    AllWithOneValue,
    #[error(
        "null cannot be one of several values; write a separate search with 'field: null' and join it with 'or'"
    )]
    NullInList,
    #[error(
        "modifier '{0}' cannot apply to a value with wildcards (escape them as '\\*' or '\\?')"
    )]
    WildcardInEncoded(&'static str),
    #[error("modifier '{0}' only encodes ascii text; '{1}' is not ascii")]
    NotAscii(&'static str, String),
    #[error("modifier '{modifier}' needs a number, not {value}")]
    NotANumber {
        modifier: &'static str,
        value: &'static str,
    },
    #[error("'{0}' is not an ip network (expected e.g. '10.0.0.0/8' or 'fe80::/10')")]
    BadCidr(String),
    #[error("modifier 'fieldref' needs a field name, not {0}")]
    BadFieldRef(String),
    #[error(
        "placeholder '%{0}%' cannot be resolved: sigexec defines no placeholders, so list the values instead"
    )]
    UnresolvedPlaceholder(String),
}

/// `": file:line:col: "` prefix, omitting what is unknown.
struct Location<'a>(&'a str, Option<Position>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(pos) => write!(f, "{}:{pos}: ", self.0),
            None => write!(f, "{}: ", self.0),
        }
    }
}

struct RuleLabel<'a>(Option<&'a str>);

impl fmt::Display for RuleLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(rule) => write!(f, "rule '{rule}': "),
            None => Ok(()),
        }
    }
}

/// `" (did you mean 'x'?)"` or nothing.
pub(crate) struct DidYouMean<'a>(pub(crate) Option<&'a str>);

impl fmt::Display for DidYouMean<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(s) => write!(f, " (did you mean '{s}'?)"),
            None => Ok(()),
        }
    }
}

/// The closest of `candidates` to `word`, if close enough to be a likely
/// typo: at most 2 edits, and fewer edits than half the word so that short
/// words do not "correct" to unrelated ones.
pub(crate) fn closest<'a, I>(word: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = 2.min(word.chars().count().saturating_sub(1) / 2 + 1);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|&(d, _)| d <= limit)
        .min_by_key(|&(d, _)| d)
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_suggests_typos_but_not_unrelated_words() {
        let mods = ["contains", "startswith", "endswith", "all", "re"];
        assert_eq!(closest("contians", mods), Some("contains"));
        assert_eq!(closest("endwith", mods), Some("endswith"));
        assert_eq!(closest("al", mods), Some("all"));
        assert_eq!(closest("base64", mods), None);
        assert_eq!(closest("x", mods), None);
    }

    #[test]
    fn load_error_display_omits_unknown_parts() {
        let e = LoadError {
            source_name: "a.yml".into(),
            position: None,
            rule: None,
            kind: RuleError::Missing("title"),
        };
        assert_eq!(e.to_string(), "a.yml: missing 'title'");
        let e = LoadError {
            source_name: "a.yml".into(),
            position: Some(Position { line: 3, column: 7 }),
            rule: Some("T".into()),
            kind: RuleError::Missing("condition"),
        };
        assert_eq!(e.to_string(), "a.yml:3:7: rule 'T': missing 'condition'");
    }
}
