//! The part of Sigma the kernel can decide exactly, for prevention: a rule
//! in, a [`KernelRule`] (items and a condition in disjunctive normal form)
//! or a [`NotDecidable`] naming the part that is not, out. Never an
//! approximation: a rule either compiles to the same answer the matcher
//! gives, on the same bytes, or is refused.
//!
//! The subset:
//! - `Image` equals / `startswith` / `endswith` (and `all`), values without
//!   inner wildcards (a leading `*` reads as `endswith`, a trailing one as
//!   `startswith`), evaluated on every `Image` view as the engine does;
//! - `CommandLine|contains` (and `all`), or `'*token*'`;
//! - `LogonId` (the uid) and `User` (a name resolved to its uid) equal to
//!   one of a list;
//! - `and`, `or`, `not`, `1 of`/`all of`, and `neq`, as long as the
//!   condition has at most [`TERMS_MAX`] terms in disjunctive normal form.
//!
//! Case: the kernel folds ASCII only, so values must be ASCII unless
//! `|cased`. The user-space matcher folds Unicode; on text with non-ASCII
//! letters that fold to ASCII (the Kelvin sign) the two can differ, and
//! the alert then says the kernel did not match (see `prevent`).

use std::collections::BTreeSet;

use super::{
    Rule,
    compile::{Part, sigma_parts},
    condition::Cond,
    error::Position,
    modifier::Anchor,
    rule::{Item, Lit, SearchExpr},
};

/// Terms of a condition in disjunctive normal form the kernel holds per
/// rule (`sensor_common::prevent::TERMS_MAX`).
pub const TERMS_MAX: usize = sensor_common::prevent::TERMS_MAX;

/// Where a value sits in an `Image` path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageAnchor {
    Equals,
    StartsWith,
    EndsWith,
}

/// One `field|modifiers: values` entry the kernel decides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KernelItem {
    /// Any (or, with `all`, every) value matches the `Image` view.
    Image {
        anchor: ImageAnchor,
        values: Vec<String>,
        all: bool,
        cased: bool,
    },
    /// Any (every) token occurs in `CommandLine`.
    CommandLine {
        tokens: Vec<String>,
        all: bool,
        cased: bool,
    },
    /// The real uid is one of these.
    Uid { uids: Vec<u32> },
}

/// A conjunction: every item of `set` matches, none of `clear`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct KernelTerm {
    pub set: BTreeSet<usize>,
    pub clear: BTreeSet<usize>,
}

/// A rule as the kernel decides it: the rule matches when any term does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelRule {
    pub items: Vec<KernelItem>,
    pub terms: Vec<KernelTerm>,
}

/// Why a rule cannot be prevented in the kernel, with where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{source_name}:{position}: rule '{rule}': not decidable in the kernel: {reason}")]
pub struct NotDecidable {
    pub source_name: String,
    pub position: Position,
    /// Title of the rule.
    pub rule: String,
    pub reason: String,
}

/// Resolves a user name to its uid (NSS); `None` when unknown.
pub type UserLookup<'a> = &'a dyn Fn(&str) -> Option<u32>;

/// Compiles `rule` for the kernel, or says which part cannot be.
pub fn compile(rule: &Rule, users: UserLookup<'_>) -> Result<KernelRule, NotDecidable> {
    let refuse = |position: Position, reason: String| NotDecidable {
        source_name: rule.meta.source.clone(),
        position,
        rule: rule.meta.title.clone(),
        reason,
    };
    if rule.meta.logsource.is_termination() {
        return Err(refuse(
            rule.meta.position,
            "a process_termination rule has no exec to stop".into(),
        ));
    }
    if let Some(filter) = rule.filters.first() {
        return Err(refuse(
            filter.position,
            format!(
                "Sigma filter {} ({}) applies to it; filters are not compiled for the kernel",
                filter
                    .title
                    .as_deref()
                    .or(filter.id.as_deref())
                    .unwrap_or("without a title"),
                filter.source
            ),
        ));
    }
    let mut items = Vec::new();
    let mut searches = Vec::new();
    for search in &rule.detection.searches {
        let formula = search_formula(&search.name, &search.expr, &mut items, users)
            .map_err(|(pos, reason)| refuse(pos, reason))?;
        searches.push(formula);
    }
    let formula = cond_formula(&rule.detection.condition, &searches);
    let mut terms = dnf(&formula, false).map_err(|n| {
        refuse(
            rule.meta.position,
            format!(
                "the condition has {n} or more terms in disjunctive normal form; the kernel \
                 holds {TERMS_MAX}"
            ),
        )
    })?;
    terms.sort();
    terms.dedup();
    if items.len() > sensor_common::prevent::ITEMS_MAX {
        return Err(refuse(
            rule.meta.position,
            format!(
                "{} items; the kernel holds {}",
                items.len(),
                sensor_common::prevent::ITEMS_MAX
            ),
        ));
    }
    Ok(KernelRule { items, terms })
}

/// A boolean formula over item indices.
#[derive(Clone, Debug)]
enum Formula {
    Item(usize),
    Not(Box<Formula>),
    And(Vec<Formula>),
    Or(Vec<Formula>),
}

type Refusal = (Position, String);

fn search_formula(
    name: &str,
    expr: &SearchExpr,
    items: &mut Vec<KernelItem>,
    users: UserLookup<'_>,
) -> Result<Formula, Refusal> {
    Ok(match expr {
        SearchExpr::AllOf(list) => Formula::And(
            list.iter()
                .map(|item| {
                    let index = items.len();
                    items.push(kernel_item(name, item, users)?);
                    let f = Formula::Item(index);
                    Ok(if item.modifiers.negate {
                        Formula::Not(Box::new(f))
                    } else {
                        f
                    })
                })
                .collect::<Result<_, Refusal>>()?,
        ),
        SearchExpr::AnyOf(list) => Formula::Or(
            list.iter()
                .map(|e| search_formula(name, e, items, users))
                .collect::<Result<_, _>>()?,
        ),
    })
}

fn cond_formula(cond: &Cond, searches: &[Formula]) -> Formula {
    match cond {
        // The parser resolved every index against these searches.
        Cond::Search(i) => searches.get(*i).cloned().unwrap_or(Formula::Or(Vec::new())),
        Cond::Not(c) => Formula::Not(Box::new(cond_formula(c, searches))),
        Cond::And(cs) => Formula::And(cs.iter().map(|c| cond_formula(c, searches)).collect()),
        Cond::Or(cs) => Formula::Or(cs.iter().map(|c| cond_formula(c, searches)).collect()),
    }
}

/// Disjunctive normal form of `f` (negated when `negate`); `Err(n)` as
/// soon as it needs `n > TERMS_MAX` terms. Depth is bounded by the
/// condition's nesting limit.
fn dnf(f: &Formula, negate: bool) -> Result<Vec<KernelTerm>, usize> {
    let check = |terms: Vec<KernelTerm>| {
        if terms.len() > TERMS_MAX {
            Err(terms.len())
        } else {
            Ok(terms)
        }
    };
    match (f, negate) {
        (Formula::Item(i), false) => Ok(vec![KernelTerm {
            set: BTreeSet::from([*i]),
            clear: BTreeSet::new(),
        }]),
        (Formula::Item(i), true) => Ok(vec![KernelTerm {
            set: BTreeSet::new(),
            clear: BTreeSet::from([*i]),
        }]),
        (Formula::Not(inner), n) => dnf(inner, !n),
        (Formula::Or(fs), false) | (Formula::And(fs), true) => {
            let mut out = Vec::new();
            for f in fs {
                out.extend(dnf(f, negate)?);
                out = check(out)?;
            }
            Ok(out)
        }
        (Formula::And(fs), false) | (Formula::Or(fs), true) => {
            let mut out = vec![KernelTerm::default()];
            for f in fs {
                let next = dnf(f, negate)?;
                let mut product = Vec::new();
                for a in &out {
                    for b in &next {
                        let set: BTreeSet<usize> = a.set.union(&b.set).copied().collect();
                        let clear: BTreeSet<usize> = a.clear.union(&b.clear).copied().collect();
                        // `x and not x` never matches: drop the term.
                        if set.is_disjoint(&clear) {
                            product.push(KernelTerm { set, clear });
                        }
                    }
                }
                out = check(product)?;
            }
            Ok(out)
        }
    }
}

fn kernel_item(search: &str, item: &Item, users: UserLookup<'_>) -> Result<KernelItem, Refusal> {
    let key = item.key.as_deref().unwrap_or("(keywords)");
    let refuse = |pos: Position, why: String| (pos, format!("search '{search}', {key}: {why}"));
    let Some(field) = item.field.as_deref() else {
        return Err(refuse(
            item.pos,
            "a keyword search (no field) looks at every field; only Image, CommandLine, \
             LogonId and User are decided in the kernel"
                .into(),
        ));
    };
    let m = &item.modifiers;
    let unsupported = [
        (m.re.is_some(), "re"),
        (m.windash, "windash"),
        (m.base64.is_some(), "base64"),
        (m.wide.is_some(), "utf16"),
        (m.cidr, "cidr"),
        (m.compare.is_some(), "lt/lte/gt/gte"),
        (m.fieldref, "fieldref"),
        (m.exists, "exists"),
        (m.expand, "expand"),
    ];
    if let Some((_, name)) = unsupported.iter().find(|(on, _)| *on) {
        return Err(refuse(
            item.pos,
            format!("modifier '{name}' is not decided in the kernel"),
        ));
    }
    match field {
        "Image" => {
            let mut anchor = match m.anchor {
                Anchor::Whole => ImageAnchor::Equals,
                Anchor::StartsWith => ImageAnchor::StartsWith,
                Anchor::EndsWith => ImageAnchor::EndsWith,
                Anchor::Contains => {
                    return Err(refuse(
                        item.pos,
                        "Image|contains is not decided in the kernel (equals, startswith and \
                         endswith are)"
                            .into(),
                    ));
                }
            };
            let mut values = Vec::new();
            for (value, pos) in &item.values {
                let (text, lead, trail) = literal(value).map_err(|why| refuse(*pos, why))?;
                let this = match (anchor, lead, trail) {
                    (a, false, false) => a,
                    (ImageAnchor::Equals | ImageAnchor::EndsWith, true, false) => {
                        ImageAnchor::EndsWith
                    }
                    (ImageAnchor::Equals | ImageAnchor::StartsWith, false, true) => {
                        ImageAnchor::StartsWith
                    }
                    _ => {
                        return Err(refuse(
                            *pos,
                            "this wildcard makes it an Image|contains, which is not decided in \
                             the kernel"
                                .into(),
                        ));
                    }
                };
                if values.is_empty() {
                    anchor = this;
                } else if this != anchor {
                    return Err(refuse(
                        *pos,
                        "values with different wildcards in one item; split them into items".into(),
                    ));
                }
                check_case(&text, m.cased).map_err(|why| refuse(*pos, why))?;
                values.push(text);
            }
            Ok(KernelItem::Image {
                anchor,
                values,
                all: m.all,
                cased: m.cased,
            })
        }
        "CommandLine" => {
            let mut tokens = Vec::new();
            for (value, pos) in &item.values {
                let (text, lead, trail) = literal(value).map_err(|why| refuse(*pos, why))?;
                let contains = m.anchor == Anchor::Contains && !lead && !trail
                    || m.anchor == Anchor::Whole && lead && trail;
                if !contains {
                    return Err(refuse(
                        *pos,
                        "only CommandLine|contains (or '*token*') is decided in the kernel".into(),
                    ));
                }
                if text.is_empty() {
                    return Err(refuse(*pos, "an empty token".into()));
                }
                check_case(&text, m.cased).map_err(|why| refuse(*pos, why))?;
                tokens.push(text);
            }
            Ok(KernelItem::CommandLine {
                tokens,
                all: m.all,
                cased: m.cased,
            })
        }
        "LogonId" | "User" => {
            if m.anchor != Anchor::Whole || m.all || m.cased {
                return Err(refuse(
                    item.pos,
                    format!("{field} is decided in the kernel only as equal to one of a list"),
                ));
            }
            let mut uids = Vec::new();
            for (value, pos) in &item.values {
                let uid = match (field, value) {
                    ("LogonId", Lit::Int(n, _)) => u32::try_from(*n).ok(),
                    ("LogonId", Lit::Str(s)) => s.parse().ok(),
                    ("User", Lit::Str(name)) => users(name),
                    _ => None,
                };
                let Some(uid) = uid else {
                    let shown = match value {
                        Lit::Str(s) | Lit::Int(_, s) => format!("'{s}'"),
                        other => other.kind_name().to_owned(),
                    };
                    return Err(refuse(
                        *pos,
                        match field {
                            "User" => format!("{shown} is not a user name known here"),
                            _ => format!("{shown} is not a uid"),
                        },
                    ));
                };
                uids.push(uid);
            }
            if uids.len() > sensor_common::prevent::UIDS_MAX {
                return Err(refuse(
                    item.pos,
                    format!(
                        "{} uids; the kernel holds {}",
                        uids.len(),
                        sensor_common::prevent::UIDS_MAX
                    ),
                ));
            }
            Ok(KernelItem::Uid { uids })
        }
        other => Err(refuse(
            item.pos,
            format!(
                "field '{other}' is not decided in the kernel (Image, CommandLine, LogonId and \
                 User are)"
            ),
        )),
    }
}

/// A value as literal text, and whether it had a leading / trailing `*`.
fn literal(value: &Lit) -> Result<(String, bool, bool), String> {
    let text = match value {
        Lit::Str(s) | Lit::Int(_, s) => s,
        other => return Err(format!("{} value", other.kind_name())),
    };
    let parts = sigma_parts(text);
    let lead = matches!(parts.first(), Some(Part::AnyRun));
    let trail = parts.len() > 1 && matches!(parts.last(), Some(Part::AnyRun));
    let inner = &parts[usize::from(lead)..parts.len() - usize::from(trail)];
    match inner {
        [] => Ok((String::new(), lead, trail)),
        [Part::Lit(s)] => Ok((s.clone(), lead, trail)),
        _ => Err(format!(
            "'{text}' has a wildcard inside; only a leading or trailing '*' is decided in the \
             kernel"
        )),
    }
}

fn check_case(text: &str, cased: bool) -> Result<(), String> {
    if !cased && !text.is_ascii() {
        return Err(format!(
            "'{text}' is not ASCII; the kernel folds ASCII case only (add |cased to compare \
             bytes)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sigma::{RuleSet, Source};

    fn rule(detection: &str) -> RuleSet {
        let text = format!(
            "title: T\nid: 00000000-0000-0000-0000-0000000000aa\nlogsource:\n  product: linux\n  \
             category: process_creation\ndetection:\n{detection}"
        );
        let (set, errors) = RuleSet::load([Source::new("t.yml", text)]);
        assert!(errors.is_empty(), "{errors:?}");
        set
    }

    fn users(name: &str) -> Option<u32> {
        (name == "alice").then_some(1001)
    }

    fn compiled(detection: &str) -> Result<KernelRule, String> {
        let set = rule(detection);
        compile(&set.rules()[0], &users).map_err(|e| e.to_string())
    }

    #[test]
    fn the_seed_rule_compiles_to_one_term() {
        let text = include_str!("../../../rules/proc_creation_lnx_av_kaspersky_av_disabled.yml");
        let (set, errors) = RuleSet::load([Source::new("seed.yml", text)]);
        assert!(errors.is_empty());
        let k = compile(&set.rules()[0], &users).expect("decidable");
        assert_eq!(
            k.items,
            [
                KernelItem::Image {
                    anchor: ImageAnchor::EndsWith,
                    values: vec!["/systemctl".into(), "/bash".into(), "/sh".into()],
                    all: false,
                    cased: false,
                },
                KernelItem::CommandLine {
                    tokens: vec!["stop".into(), "kesl".into()],
                    all: true,
                    cased: false,
                },
            ]
        );
        assert_eq!(k.terms.len(), 1);
        assert_eq!(k.terms[0].set, BTreeSet::from([0, 1]));
    }

    #[test]
    fn not_and_or_become_terms() {
        let k = compiled(
            "  a:\n    Image|endswith: /x\n  b:\n    LogonId: [0, 1000]\n  c:\n    User: alice\n  \
             condition: a and not (b or c)\n",
        )
        .expect("decidable");
        assert_eq!(
            k.items[1],
            KernelItem::Uid {
                uids: vec![0, 1000]
            }
        );
        assert_eq!(k.items[2], KernelItem::Uid { uids: vec![1001] });
        assert_eq!(
            k.terms,
            [KernelTerm {
                set: BTreeSet::from([0]),
                clear: BTreeSet::from([1, 2]),
            }]
        );
    }

    #[test]
    fn wildcards_at_the_ends_become_anchors() {
        let k =
            compiled("  a:\n    Image: '*/systemctl'\n    CommandLine: '*kesl*'\n  condition: a\n")
                .expect("decidable");
        assert!(matches!(
            &k.items[0],
            KernelItem::Image { anchor: ImageAnchor::EndsWith, values, .. } if values == &["/systemctl"]
        ));
        assert!(
            matches!(&k.items[1], KernelItem::CommandLine { tokens, .. } if tokens == &["kesl"])
        );
    }

    #[test]
    fn refusals_name_the_rule_place_and_part() {
        assert_eq!(
            compiled("  a:\n    ParentImage|endswith: /dpkg\n  condition: a\n").expect_err("no"),
            "t.yml:8:5: rule 'T': not decidable in the kernel: search 'a', \
             ParentImage|endswith: field 'ParentImage' is not decided in the kernel (Image, \
             CommandLine, LogonId and User are)"
        );
        assert_eq!(
            compiled("  a:\n    Image: '/usr/*/systemctl'\n  condition: a\n").expect_err("no"),
            "t.yml:8:12: rule 'T': not decidable in the kernel: search 'a', Image: \
             '/usr/*/systemctl' has a wildcard inside; only a leading or trailing '*' is \
             decided in the kernel"
        );
        assert_eq!(
            compiled("  a:\n    CommandLine|re: 'stop.*kesl'\n  condition: a\n").expect_err("no"),
            "t.yml:8:5: rule 'T': not decidable in the kernel: search 'a', CommandLine|re: \
             modifier 're' is not decided in the kernel"
        );
        assert!(
            compiled("  a:\n    User: nobody-here\n  condition: a\n")
                .expect_err("no")
                .ends_with("User: 'nobody-here' is not a user name known here"),
        );
    }

    #[test]
    fn a_condition_too_wide_for_the_kernel_is_refused() {
        // (a1 or a2 or a3 or a4 or a5) and (b1 ... b5): 25 terms.
        let err = compiled(
            "  a:\n    - Image: /a1\n    - Image: /a2\n    - Image: /a3\n    - Image: /a4\n    \
             - Image: /a5\n  b:\n    - LogonId: 1\n    - LogonId: 2\n    - LogonId: 3\n    \
             - LogonId: 4\n    - LogonId: 5\n  condition: a and b\n",
        )
        .expect_err("too wide");
        assert!(
            err.contains("terms in disjunctive normal form; the kernel holds 16"),
            "{err}"
        );
    }
}
