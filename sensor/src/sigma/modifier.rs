//! Field keys (`Field|mod1|mod2`): splitting, the known modifier names,
//! and which combinations make sense.
//!
//! Every modifier the Sigma spec (and pySigma) defines is listed here, so a
//! rule using one we have not implemented (the timestamp parts, which need
//! a time field process_creation events lack) gets "not supported yet"
//! rather than "unknown", and a typo gets a "did you mean".
//!
//! Order matters only for the encodings, as in pySigma, where each modifier
//! transforms the output of the one before: `utf16le|base64offset` encodes
//! the UTF-16 bytes; `base64|utf16le` would widen the base64 text, which no
//! rule means, so it is rejected.

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
    Base64,
    Base64Offset,
    Wide(Wide),
    Cidr,
    Compare(CompareOp),
    Neq,
    FieldRef,
    Expand,
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
    ("base64", Modifier::Base64),
    ("base64offset", Modifier::Base64Offset),
    ("wide", Modifier::Wide(Wide::Le)),
    ("utf16le", Modifier::Wide(Wide::Le)),
    ("utf16be", Modifier::Wide(Wide::Be)),
    ("utf16", Modifier::Wide(Wide::LeBom)),
    ("cidr", Modifier::Cidr),
    ("lt", Modifier::Compare(CompareOp::Lt)),
    ("lte", Modifier::Compare(CompareOp::Lte)),
    ("gt", Modifier::Compare(CompareOp::Gt)),
    ("gte", Modifier::Compare(CompareOp::Gte)),
    ("neq", Modifier::Neq),
    ("fieldref", Modifier::FieldRef),
    ("expand", Modifier::Expand),
];

/// Defined by the spec or pySigma, not implemented here yet.
const NOT_YET: &[&str] = &["minute", "hour", "day", "week", "month", "year"];

/// Where a string value must sit in the field's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub(crate) enum Anchor {
    /// The whole text (no modifier); wildcards still apply.
    #[default]
    Whole,
    Contains,
    StartsWith,
    EndsWith,
}

/// UTF-16 encodings (`wide`/`utf16le`, `utf16be`, `utf16` = LE with BOM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wide {
    Le,
    Be,
    LeBom,
}

/// Base64 encodings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Base64 {
    /// The value's encoding as is.
    Plain,
    /// The three encodings of the value at byte offsets 0, 1 and 2 of a
    /// longer text, with the characters that depend on neighbours cut off.
    Offset,
}

/// Numeric comparisons (`lt`, `lte`, `gt`, `gte`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CompareOp {
    Lt,
    Lte,
    Gt,
    Gte,
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
    /// UTF-16 encoding, applied before `base64`.
    pub(crate) wide: Option<Wide>,
    pub(crate) base64: Option<Base64>,
    pub(crate) cidr: bool,
    pub(crate) compare: Option<CompareOp>,
    /// `neq`: the item matches when it would not (pySigma negates the
    /// whole item).
    pub(crate) negate: bool,
    /// Values name another field of the same event.
    pub(crate) fieldref: bool,
    /// `%placeholder%`s in values must be resolved (none are defined here).
    pub(crate) expand: bool,
}

impl Modifiers {
    /// Name of the modifier that turns values into something other than a
    /// Sigma string, if any; such values take no string modifiers.
    pub(crate) fn non_string(&self) -> Option<&'static str> {
        if self.cidr {
            Some("cidr")
        } else if let Some(op) = self.compare {
            Some(match op {
                CompareOp::Lt => "lt",
                CompareOp::Lte => "lte",
                CompareOp::Gt => "gt",
                CompareOp::Gte => "gte",
            })
        } else if self.fieldref {
            Some("fieldref")
        } else {
            None
        }
    }
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
            Modifier::Wide(w) => {
                if mods.base64.is_some() {
                    return Err(ItemError::ModifierOrder {
                        first: name,
                        then: "base64",
                    });
                }
                if mods.wide.is_some() {
                    return Err(ItemError::RepeatedModifier(name));
                }
                mods.wide = Some(w);
            }
            Modifier::Base64 | Modifier::Base64Offset => {
                if mods.base64.is_some() {
                    return Err(ItemError::RepeatedModifier(name));
                }
                mods.base64 = Some(if m == Modifier::Base64 {
                    Base64::Plain
                } else {
                    Base64::Offset
                });
            }
            Modifier::Cidr => mods.cidr = true,
            Modifier::Compare(op) => {
                if let Some(prev) = mods.non_string() {
                    return Err(ItemError::ConflictingModifiers(prev, name));
                }
                mods.compare = Some(op);
            }
            Modifier::Neq => mods.negate = true,
            Modifier::FieldRef => mods.fieldref = true,
            Modifier::Expand => mods.expand = true,
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
    let encoding = mods
        .base64
        .map(|b| match b {
            Base64::Plain => "base64",
            Base64::Offset => "base64offset",
        })
        .or_else(|| {
            found
                .iter()
                .find(|(_, m)| matches!(m, Modifier::Wide(_)))
                .map(|(n, _)| *n)
        });
    if let Some(enc) = encoding {
        // Encoded values are byte strings: a regex, a number or an address
        // has no meaning after encoding.
        if let Some(other) = mods.re.map(|_| "re").or(mods.non_string()) {
            return Err(ItemError::ConflictingModifiers(enc, other));
        }
        if mods.windash {
            return Err(ItemError::ConflictingModifiers(enc, "windash"));
        }
    }
    if let Some(kind) = mods.non_string() {
        // Addresses and numbers are compared as such; fieldref compares
        // text and so keeps the anchors and `cased`.
        let allowed = |n: &str| {
            n == kind
                || matches!(n, "neq" | "all")
                || (kind == "fieldref"
                    && matches!(n, "contains" | "startswith" | "endswith" | "cased"))
        };
        if let Some(other) = found.iter().map(|(n, _)| *n).find(|n| !allowed(n)) {
            return Err(ItemError::ConflictingModifiers(kind, other));
        }
    }
    if mods.expand && mods.re.is_some() {
        return Err(ItemError::ConflictingModifiers("expand", "re"));
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
            msg("UtcTime|minute"),
            "modifier 'minute' is not supported yet"
        );
        assert_eq!(
            msg("CommandLine|base64|wide|contains"),
            "modifier 'wide' must come before 'base64'"
        );
        assert_eq!(
            msg("CommandLine|base64|base64offset"),
            "modifier 'base64offset' is repeated"
        );
        assert_eq!(
            msg("CommandLine|base64|re"),
            "modifiers 'base64' and 're' cannot be combined"
        );
        assert_eq!(
            msg("ProcessId|gt|contains"),
            "modifiers 'gt' and 'contains' cannot be combined"
        );
        assert_eq!(
            msg("ProcessId|gt|lt"),
            "modifiers 'gt' and 'lt' cannot be combined"
        );
        assert_eq!(
            msg("Ip|cidr|startswith"),
            "modifiers 'cidr' and 'startswith' cannot be combined"
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
