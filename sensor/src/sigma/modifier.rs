//! Field keys (`Field|mod1|mod2`): splitting, the known modifier names,
//! and which combinations make sense.
//!
//! Every modifier the Sigma spec (and pySigma) defines is listed here, so a
//! rule using one we have not implemented gets "not supported yet" rather
//! than "unknown", and a typo gets a "did you mean". Adding one (base64,
//! cidr, lt, fieldref, ...) means: move it from [`NOT_YET`] to [`Modifier`],
//! record it in [`Modifiers`], and give `compile` a value transform or a new
//! value matcher for it.

use super::error::{ItemError, closest};

/// Modifiers this engine implements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Modifier {
    Contains,
    StartsWith,
    EndsWith,
    All,
    Cased,
    Re,
    ReIgnoreCase,
    ReMultiLine,
    ReDotAll,
    Exists,
    Windash,
}

const IMPLEMENTED: &[(&str, Modifier)] = &[
    ("contains", Modifier::Contains),
    ("startswith", Modifier::StartsWith),
    ("endswith", Modifier::EndsWith),
    ("all", Modifier::All),
    ("cased", Modifier::Cased),
    ("re", Modifier::Re),
    ("i", Modifier::ReIgnoreCase),
    ("ignorecase", Modifier::ReIgnoreCase),
    ("m", Modifier::ReMultiLine),
    ("multiline", Modifier::ReMultiLine),
    ("s", Modifier::ReDotAll),
    ("dotall", Modifier::ReDotAll),
    ("exists", Modifier::Exists),
    ("windash", Modifier::Windash),
];

/// Defined by the spec or pySigma, not implemented here yet.
const NOT_YET: &[&str] = &[
    "base64",
    "base64offset",
    "utf16",
    "utf16le",
    "utf16be",
    "wide",
    "cidr",
    "lt",
    "lte",
    "gt",
    "gte",
    "fieldref",
    "neq",
    "expand",
    "minute",
    "hour",
    "day",
    "week",
    "month",
    "year",
];

/// Where a string value must sit in the field's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum Anchor {
    /// The whole text (no modifier); wildcards still apply.
    #[default]
    Whole,
    Contains,
    StartsWith,
    EndsWith,
}

/// Flags for the `re` modifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct ReFlags {
    pub(crate) ignore_case: bool,
    pub(crate) multi_line: bool,
    pub(crate) dot_all: bool,
}

/// The modifiers of one key, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Modifiers {
    pub(crate) anchor: Anchor,
    /// Every value must match (`all`), instead of any.
    pub(crate) all: bool,
    pub(crate) cased: bool,
    /// `re`, with its flags.
    pub(crate) re: Option<ReFlags>,
    pub(crate) exists: bool,
    pub(crate) windash: bool,
}

/// A key split into field name (`None` for keyword searches written as
/// `'|all': [...]`) and validated modifiers.
pub(crate) fn parse_key(key: &str) -> Result<(Option<String>, Modifiers), ItemError> {
    let mut parts = key.split('|');
    let field = parts.next().unwrap_or_default();
    let mut found = Vec::new();
    for name in parts {
        if name.is_empty() {
            return Err(ItemError::EmptyModifier);
        }
        match IMPLEMENTED.iter().find(|(n, _)| *n == name) {
            Some(&(n, m)) => found.push((n, m)),
            None if NOT_YET.contains(&name) => {
                return Err(ItemError::UnsupportedModifier(name.to_owned()));
            }
            None => {
                let all = IMPLEMENTED
                    .iter()
                    .map(|(n, _)| *n)
                    .chain(NOT_YET.iter().copied());
                return Err(ItemError::UnknownModifier {
                    name: name.to_owned(),
                    suggestion: closest(name, all),
                });
            }
        }
    }
    let mods = validate(&found)?;
    let field = (!field.is_empty()).then(|| field.to_owned());
    Ok((field, mods))
}

fn validate(found: &[(&'static str, Modifier)]) -> Result<Modifiers, ItemError> {
    let mut mods = Modifiers::default();
    let mut anchor_name: Option<&'static str> = None;
    let mut flags = ReFlags::default();
    let mut flag_name: Option<&'static str> = None;
    for &(name, m) in found {
        let anchor = match m {
            Modifier::Contains => Some(Anchor::Contains),
            Modifier::StartsWith => Some(Anchor::StartsWith),
            Modifier::EndsWith => Some(Anchor::EndsWith),
            _ => None,
        };
        if let Some(anchor) = anchor {
            if let Some(prev) = anchor_name.filter(|p| *p != name) {
                return Err(ItemError::ConflictingModifiers(prev, name));
            }
            anchor_name = Some(name);
            mods.anchor = anchor;
        }
        match m {
            Modifier::All => mods.all = true,
            Modifier::Cased => mods.cased = true,
            Modifier::Re => mods.re = Some(ReFlags::default()),
            Modifier::ReIgnoreCase => (flags.ignore_case, flag_name) = (true, Some(name)),
            Modifier::ReMultiLine => (flags.multi_line, flag_name) = (true, Some(name)),
            Modifier::ReDotAll => (flags.dot_all, flag_name) = (true, Some(name)),
            Modifier::Exists => mods.exists = true,
            Modifier::Windash => mods.windash = true,
            Modifier::Contains | Modifier::StartsWith | Modifier::EndsWith => {}
        }
    }
    match (&mut mods.re, flag_name) {
        (Some(re), _) => *re = flags,
        (None, Some(flag)) => return Err(ItemError::FlagWithoutRe(flag)),
        (None, None) => {}
    }
    if mods.re.is_some() {
        // A regex says where it matches and how case works by itself.
        let clash = anchor_name
            .or(mods.cased.then_some("cased"))
            .or(mods.windash.then_some("windash"));
        if let Some(other) = clash {
            return Err(ItemError::ConflictingModifiers("re", other));
        }
    }
    if mods.exists {
        let clash = found.iter().map(|(n, _)| *n).find(|n| *n != "exists");
        if let Some(other) = clash {
            return Err(ItemError::ConflictingModifiers("exists", other));
        }
    }
    Ok(mods)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_split_into_field_and_modifiers() {
        let (field, mods) = parse_key("CommandLine|contains|all").expect("valid");
        assert_eq!(field.as_deref(), Some("CommandLine"));
        assert_eq!(mods.anchor, Anchor::Contains);
        assert!(mods.all && !mods.cased);
        let (field, mods) = parse_key("Image").expect("valid");
        assert_eq!(field.as_deref(), Some("Image"));
        assert_eq!(mods, Modifiers::default());
        let (field, mods) = parse_key("|all").expect("valid");
        assert_eq!(field, None);
        assert!(mods.all);
        let (_, mods) = parse_key("CommandLine|re|i|s").expect("valid");
        assert_eq!(
            mods.re,
            Some(ReFlags {
                ignore_case: true,
                multi_line: false,
                dot_all: true
            })
        );
    }

    #[test]
    fn bad_modifiers_are_named() {
        let msg = |key: &str| parse_key(key).expect_err(key).to_string();
        assert_eq!(
            msg("Image|endwith"),
            "unknown modifier 'endwith' (did you mean 'endswith'?)"
        );
        assert_eq!(msg("Image|frobnicate"), "unknown modifier 'frobnicate'");
        assert_eq!(
            msg("Image|base64offset|contains"),
            "modifier 'base64offset' is not supported yet"
        );
        assert_eq!(
            msg("Image|startswith|endswith"),
            "modifiers 'startswith' and 'endswith' cannot be combined"
        );
        assert_eq!(
            msg("Image|re|contains"),
            "modifiers 're' and 'contains' cannot be combined"
        );
        assert_eq!(
            msg("Image|contains|i"),
            "modifier 'i' needs the 're' modifier"
        );
        assert_eq!(
            msg("Image||contains"),
            "empty modifier (two '|' in a row or a trailing '|')"
        );
        assert_eq!(
            msg("Image|exists|all"),
            "modifiers 'exists' and 'all' cannot be combined"
        );
    }
}
