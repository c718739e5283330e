//! Prevented rules -> the kernel's tables (`sensor_common::prevent`):
//! atoms, items, rules in disjunctive normal form, and two DFAs built with
//! `regex-automata` and exported state by state.
//!
//! The resolved image is kept by the kernel as its components leaf first,
//! each followed by a NUL (`systemctl\0bin\0usr\0` for `/usr/bin/systemctl`):
//! that is what its path walk produces, and re-assembling the forward
//! string in the kernel would cost a second pass. So every `Image` value
//! is compiled twice: as a regex over that leaf-first form, and as one
//! over a forward string (`ImageInvoked`, `Interpreter`). Each DFA state
//! carries the atoms of both; the kernel takes the half that fits the
//! view it scanned.

use regex_automata::{
    Anchored, MatchKind,
    dfa::{Automaton as _, StartKind, dense},
    nfa::thompson,
    util::{primitives::StateID, start, syntax},
};
use sensor_common::prevent::{
    ATOM_ALLOWED_IMAGE, ATOM_NOT_NORMAL, ATOMS_MAX, DFA_CLASSES_MAX, DFA_STATES_MAX, Dfa,
    ITEMS_MAX, Item, Policy, RULES_MAX, Term, UID_SETS_MAX, UIDS_MAX,
};

use crate::sigma::kernel::{ImageAnchor, KernelItem, KernelRule};

/// Why the tables could not be built (the rules compiled, but together
/// they do not fit).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    #[error("{0} prevented rules; the kernel holds {RULES_MAX}")]
    Rules(usize),
    #[error("the prevented rules need {0} items; the kernel holds {ITEMS_MAX}")]
    Items(usize),
    #[error(
        "the prevented rules need {0} atoms (one per value of an |all item, one per other \
         item); the kernel holds {ATOMS_MAX}"
    )]
    Atoms(usize),
    #[error("the prevented rules need {0} uid sets; the kernel holds {UID_SETS_MAX}")]
    UidSets(usize),
    #[error("prevent.allow.users: {0} uids; the kernel holds {UIDS_MAX}")]
    AllowUids(usize),
    #[error("the {which} automaton: {message}")]
    Dfa {
        which: &'static str,
        message: String,
    },
}

/// Everything the kernel needs, ready to write into its maps.
pub struct Tables {
    pub policy: Box<Policy>,
    pub image: Box<Dfa>,
    pub argv: Box<Dfa>,
}

/// Which rendering a pattern of the image DFA is for.
#[derive(Clone, Copy)]
enum Form {
    /// The kernel's leaf-first component list (resolved image).
    Leaf = 0,
    /// A forward path string (`ImageInvoked`, `Interpreter`).
    Forward = 1,
}

/// Builds the tables for `rules` (in policy order), the allow-listed
/// uids and the allow-listed ancestor images (exact resolved paths).
pub fn build(
    rules: &[KernelRule],
    allow_uids: &[u32],
    ancestor_images: &[String],
) -> Result<Tables, PolicyError> {
    if rules.len() > RULES_MAX {
        return Err(PolicyError::Rules(rules.len()));
    }
    if allow_uids.len() > UIDS_MAX {
        return Err(PolicyError::AllowUids(allow_uids.len()));
    }
    let mut policy: Box<Policy> = bytemuck::zeroed_box();
    let mut image_patterns: Vec<(String, u32, Form)> = Vec::new();
    let mut argv_patterns: Vec<(String, u32)> = Vec::new();
    let mut atoms = 0usize;
    let mut items = 0usize;
    let mut uid_sets = 0usize;
    for (r, rule) in rules.iter().enumerate() {
        let first_item = items;
        for item in &rule.items {
            if items >= ITEMS_MAX {
                return Err(PolicyError::Items(items + 1));
            }
            let mut mask = 0u64;
            let mut atom = || {
                let a = atoms;
                atoms += 1;
                a as u32
            };
            let all = match item {
                KernelItem::Image {
                    anchor,
                    values,
                    all,
                    cased,
                } => {
                    let shared = (!*all).then(&mut atom);
                    for value in values {
                        let a = shared.unwrap_or_else(&mut atom);
                        mask |= 1 << (a & 63);
                        let flags = if *cased { "" } else { "(?i)" };
                        if let Some(re) = leaf_regex(*anchor, value) {
                            image_patterns.push((format!("{flags}{re}"), a, Form::Leaf));
                        }
                        image_patterns.push((
                            format!("{flags}{}", forward_regex(*anchor, value)),
                            a,
                            Form::Forward,
                        ));
                    }
                    *all
                }
                KernelItem::CommandLine { tokens, all, cased } => {
                    let shared = (!*all).then(&mut atom);
                    for token in tokens {
                        let a = shared.unwrap_or_else(&mut atom);
                        mask |= 1 << (a & 63);
                        let flags = if *cased { "" } else { "(?i)" };
                        argv_patterns.push((format!("{flags}{}", regex::escape(token)), a));
                    }
                    *all
                }
                KernelItem::Uid { uids } => {
                    if uid_sets >= UID_SETS_MAX {
                        return Err(PolicyError::UidSets(uid_sets + 1));
                    }
                    let a = atom();
                    mask |= 1 << (a & 63);
                    let set = &mut policy.uid_sets[uid_sets];
                    // kernel::compile bounds the list by UIDS_MAX.
                    for (slot, uid) in set.uids.iter_mut().zip(uids) {
                        *slot = *uid;
                    }
                    set.n = uids.len().min(UIDS_MAX) as u32;
                    set.atom = a;
                    uid_sets += 1;
                    false
                }
            };
            if atoms > ATOMS_MAX {
                return Err(PolicyError::Atoms(atoms));
            }
            policy.items[items] = Item {
                mask,
                all: u32::from(all),
                _pad: 0,
            };
            items += 1;
        }
        let kernel_rule = &mut policy.rules[r];
        for (t, term) in rule.terms.iter().enumerate().take(kernel_rule.terms.len()) {
            let bits = |set: &std::collections::BTreeSet<usize>| {
                set.iter()
                    .fold(0u64, |m, i| m | 1 << ((first_item + i) & 63))
            };
            kernel_rule.terms[t] = Term {
                set: bits(&term.set),
                clear: bits(&term.clear),
            };
        }
        kernel_rule.n_terms = rule.terms.len().min(kernel_rule.terms.len()) as u32;
        if rule.terms.iter().any(|t| t.set.is_empty()) {
            policy.empty_matches = 1;
        }
    }
    policy.n_rules = rules.len() as u32;
    policy.n_items = items as u32;
    policy.n_uid_sets = uid_sets as u32;
    for (slot, uid) in policy.allow_uids.iter_mut().zip(allow_uids) {
        *slot = *uid;
    }
    policy.n_allow_uids = allow_uids.len() as u32;

    for path in ancestor_images {
        if let Some(re) = leaf_regex(ImageAnchor::Equals, path) {
            image_patterns.push((re, ATOM_ALLOWED_IMAGE, Form::Leaf));
        }
    }
    // A forward string the kernel cannot compare with what user space
    // makes of it (`absolute()`: relative, `//`, `.`, `..`, a trailing
    // slash): that view is left undecided.
    for re in [r"^[^/]", r"^(?s:.)*(//|/\.\.?(/|$)|/$)"] {
        image_patterns.push((re.to_owned(), ATOM_NOT_NORMAL, Form::Forward));
    }
    let image = export(
        "Image",
        &image_patterns
            .iter()
            .map(|(re, atom, form)| (re.as_str(), *atom, *form))
            .collect::<Vec<_>>(),
        StartKind::Anchored,
        false,
    )?;
    let argv = export(
        "CommandLine",
        &argv_patterns
            .iter()
            .map(|(re, atom)| (re.as_str(), *atom, Form::Leaf))
            .collect::<Vec<_>>(),
        StartKind::Unanchored,
        true,
    )?;
    Ok(Tables {
        policy,
        image,
        argv,
    })
}

/// A regex over the leaf-first form of absolute paths that satisfy
/// `anchor value` (case handled by the caller's flags); `None` when no
/// canonical absolute path can (an empty inner component, a relative
/// value for equals/startswith, a trailing slash for equals/endswith).
fn leaf_regex(anchor: ImageAnchor, value: &str) -> Option<String> {
    const NUL: &str = r"\x00";
    const COMPONENT: &str = r"[^\x00]*";
    let esc = |s: &str| regex::escape(s);
    match anchor {
        ImageAnchor::Equals => {
            let comps: Vec<&str> = value.strip_prefix('/')?.split('/').collect();
            if comps.iter().any(|c| c.is_empty()) {
                return None;
            }
            let body: String = comps
                .iter()
                .rev()
                .map(|c| format!("{}{NUL}", esc(c)))
                .collect();
            Some(format!("^{body}$"))
        }
        ImageAnchor::StartsWith => {
            if value.is_empty() {
                return Some("^".into());
            }
            let comps: Vec<&str> = value.strip_prefix('/')?.split('/').collect();
            let (last, whole) = comps.split_last()?;
            if whole.iter().any(|c| c.is_empty()) {
                return None;
            }
            let tail: String = whole
                .iter()
                .rev()
                .map(|c| format!("{}{NUL}", esc(c)))
                .collect();
            // The partial component must start a component: either the
            // leaf or one after a NUL.
            Some(format!(
                "^(?:(?s:.)*{NUL})?{}{COMPONENT}{NUL}{tail}$",
                esc(last)
            ))
        }
        ImageAnchor::EndsWith => {
            let comps: Vec<&str> = value.split('/').collect();
            let (first, rest) = comps.split_first()?;
            if rest.is_empty() {
                // No slash: the leaf ends with it.
                return Some(format!("^{COMPONENT}{}{NUL}", esc(first)));
            }
            if rest.iter().any(|c| c.is_empty()) {
                return None;
            }
            let head: String = rest
                .iter()
                .rev()
                .map(|c| format!("{}{NUL}", esc(c)))
                .collect();
            if first.is_empty() {
                Some(format!("^{head}"))
            } else {
                Some(format!("^{head}{COMPONENT}{}{NUL}", esc(first)))
            }
        }
    }
}

/// A regex over a forward path string.
fn forward_regex(anchor: ImageAnchor, value: &str) -> String {
    let v = regex::escape(value);
    match anchor {
        ImageAnchor::Equals => format!("^{v}$"),
        ImageAnchor::StartsWith => format!("^{v}"),
        ImageAnchor::EndsWith => format!("^(?s:.)*{v}$"),
    }
}

/// Builds one DFA for `patterns` (regex, atom, form) and exports it into
/// the kernel's layout. `nul_is_space`: the kernel feeds argv's NUL
/// separators, which `CommandLine` shows as spaces.
fn export(
    which: &'static str,
    patterns: &[(&str, u32, Form)],
    start_kind: StartKind,
    nul_is_space: bool,
) -> Result<Box<Dfa>, PolicyError> {
    let fail = |message: String| PolicyError::Dfa { which, message };
    let mut out: Box<Dfa> = bytemuck::zeroed_box();
    if patterns.is_empty() {
        // A one-state automaton that never sets an atom.
        return Ok(out);
    }
    let regexes: Vec<&str> = patterns.iter().map(|(re, _, _)| *re).collect();
    let dfa = dense::Builder::new()
        .configure(
            dense::Config::new()
                .match_kind(MatchKind::All)
                .start_kind(start_kind)
                .minimize(true),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .thompson(thompson::Config::new().utf8(false))
        .build_many(&regexes)
        .map_err(|e| fail(e.to_string()))?;
    let anchored = match start_kind {
        StartKind::Anchored => Anchored::Yes,
        _ => Anchored::No,
    };
    let start = dfa
        .start_state(&start::Config::new().anchored(anchored))
        .map_err(|e| fail(e.to_string()))?;
    // Number the reachable states in breadth-first order.
    let mut ids: Vec<StateID> = vec![start];
    let mut index = std::collections::HashMap::from([(start, 0usize)]);
    let mut at = 0;
    while at < ids.len() {
        let s = ids[at];
        at += 1;
        let nexts = (0..=255u8)
            .map(|b| dfa.next_state(s, b))
            .chain([dfa.next_eoi_state(s)]);
        for n in nexts {
            if let std::collections::hash_map::Entry::Vacant(slot) = index.entry(n) {
                if ids.len() >= DFA_STATES_MAX {
                    return Err(fail(format!(
                        "more than {DFA_STATES_MAX} states; prevent fewer or simpler values"
                    )));
                }
                slot.insert(ids.len());
                ids.push(n);
            }
        }
    }
    // Byte classes: bytes whose transitions agree in every state.
    let column =
        |b: u8| -> Vec<usize> { ids.iter().map(|&s| index[&dfa.next_state(s, b)]).collect() };
    let mut columns: Vec<Vec<usize>> = Vec::new();
    for b in 0..=255u8 {
        let col = column(b);
        let class = match columns.iter().position(|c| *c == col) {
            Some(c) => c,
            None => {
                columns.push(col);
                columns.len() - 1
            }
        };
        out.classes[b as usize] = class as u8;
    }
    if columns.len() + 1 > DFA_CLASSES_MAX {
        return Err(fail(format!(
            "{} distinct byte classes; the kernel holds {}",
            columns.len() + 1,
            DFA_CLASSES_MAX - 1
        )));
    }
    if nul_is_space {
        out.classes[0] = out.classes[b' ' as usize];
    }
    let eoi = columns.len();
    out.eoi = eoi as u32;
    out.start = 0;
    for (i, &s) in ids.iter().enumerate() {
        for (class, col) in columns.iter().enumerate() {
            out.next[i * DFA_CLASSES_MAX + class] = col[i] as u16;
        }
        out.next[i * DFA_CLASSES_MAX + eoi] = index[&dfa.next_eoi_state(s)] as u16;
        if dfa.is_match_state(s) {
            for m in 0..dfa.match_len(s) {
                let (_, atom, form) = patterns[dfa.match_pattern(s, m).as_usize()];
                out.matches[i][form as usize] |= 1 << (atom & 63);
            }
        }
    }
    Ok(out)
}

/// Runs an exported DFA over `bytes` the way the kernel does; returns the
/// atoms of both forms. For tests, and for seeding from `/proc`.
pub fn scan(dfa: &Dfa, bytes: &[u8]) -> [u64; 2] {
    let mut state = dfa.start as usize;
    let mut found = [0u64; 2];
    let mut step = |class: usize, state: &mut usize| {
        *state = dfa.next[*state * DFA_CLASSES_MAX + class] as usize;
        found[0] |= dfa.matches[*state][0];
        found[1] |= dfa.matches[*state][1];
    };
    for &b in bytes {
        step(dfa.classes[b as usize] as usize, &mut state);
    }
    step(dfa.eoi as usize, &mut state);
    found
}

/// The kernel's leaf-first rendering of an absolute path.
pub fn leaf_first(path: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(path.len() + 1);
    for c in path.split('/').filter(|c| !c.is_empty()).rev() {
        out.extend_from_slice(c.as_bytes());
        out.push(0);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::sigma::kernel::KernelTerm;

    fn image_rule(anchor: ImageAnchor, values: &[&str]) -> KernelRule {
        KernelRule {
            items: vec![KernelItem::Image {
                anchor,
                values: values.iter().map(|s| (*s).to_owned()).collect(),
                all: false,
                cased: false,
            }],
            terms: vec![KernelTerm {
                set: BTreeSet::from([0]),
                clear: BTreeSet::new(),
            }],
        }
    }

    /// Whether atom 0 is set for `path` in the leaf-first and forward
    /// renderings; both must agree with `expected`.
    fn check(anchor: ImageAnchor, value: &str, cases: &[(&str, bool)]) {
        let t = build(&[image_rule(anchor, &[value])], &[], &[]).expect("tables");
        for (path, expected) in cases {
            let leaf = scan(&t.image, &leaf_first(path))[0] & 1 != 0;
            let forward = scan(&t.image, path.as_bytes())[1] & 1 != 0;
            assert_eq!(leaf, *expected, "{anchor:?} {value:?} leaf-first {path}");
            assert_eq!(forward, *expected, "{anchor:?} {value:?} forward {path}");
        }
    }

    #[test]
    fn image_anchors_agree_in_both_renderings() {
        check(
            ImageAnchor::EndsWith,
            "/systemctl",
            &[
                ("/usr/bin/systemctl", true),
                ("/tmp/x/SystemCTL", true),
                ("/systemctl", true),
                ("/usr/bin/xsystemctl", false),
                ("/usr/bin/systemctl2", false),
                ("/usr/bin/systemctl/x", false),
            ],
        );
        check(
            ImageAnchor::EndsWith,
            "n/systemctl",
            &[("/usr/bin/systemctl", true), ("/usr/lib/systemctl", false)],
        );
        check(
            ImageAnchor::EndsWith,
            "ctl",
            &[("/usr/bin/systemctl", true), ("/usr/bin/ctlx", false)],
        );
        check(
            ImageAnchor::StartsWith,
            "/usr/bi",
            &[
                ("/usr/bin/systemctl", true),
                ("/usr/bi", true),
                ("/usr/xbin/a", false),
                ("/us/bin", false),
            ],
        );
        check(
            ImageAnchor::StartsWith,
            "/usr/bin/",
            &[
                ("/usr/bin/a", true),
                ("/usr/bin", false),
                ("/usr/binx/a", false),
            ],
        );
        check(
            ImageAnchor::Equals,
            "/usr/bin/systemctl",
            &[
                ("/usr/bin/systemctl", true),
                ("/usr/bin/systemctl2", false),
                ("/x/usr/bin/systemctl", false),
            ],
        );
    }

    #[test]
    fn argv_tokens_are_found_across_nul_separators() {
        let rule = KernelRule {
            items: vec![KernelItem::CommandLine {
                tokens: vec![" stop".into(), "kesl".into()],
                all: true,
                cased: false,
            }],
            terms: vec![KernelTerm {
                set: BTreeSet::from([0]),
                clear: BTreeSet::new(),
            }],
        };
        let t = build(&[rule], &[], &[]).expect("tables");
        assert_eq!(t.policy.items[0].mask, 0b11);
        assert_eq!(scan(&t.argv, b"systemctl\0STOP\0kesl\0")[0], 0b11);
        assert_eq!(scan(&t.argv, b"systemctl\0start\0kesl\0")[0], 0b10);
        assert_eq!(scan(&t.argv, b"systemctlstop")[0], 0);
    }

    #[test]
    fn the_argv_automaton_sees_separators_only_between_arguments() {
        // What the kernel scans once it has dropped argv's final NUL
        // (`CommandLine` has no trailing space): a separator is a space.
        let rule = KernelRule {
            items: vec![KernelItem::CommandLine {
                tokens: vec!["kesl ".into()],
                all: false,
                cased: false,
            }],
            terms: vec![KernelTerm {
                set: BTreeSet::from([0]),
                clear: BTreeSet::new(),
            }],
        };
        let t = build(&[rule], &[], &[]).expect("tables");
        assert_eq!(scan(&t.argv, b"systemctl\0stop\0kesl")[0], 0);
        assert_eq!(scan(&t.argv, b"systemctl\0stop\0kesl\0now")[0], 1);
    }

    #[test]
    fn forward_strings_user_space_would_normalise_are_flagged() {
        let t = build(&[image_rule(ImageAnchor::EndsWith, &["/sh"])], &[], &[]).expect("tables");
        let not_normal = |s: &str| scan(&t.image, s.as_bytes())[1] & (1 << ATOM_NOT_NORMAL) != 0;
        assert!(!not_normal("/usr/bin/systemctl"));
        for s in [
            "bin/systemctl",
            "./x",
            "/usr//bin/x",
            "/usr/./x",
            "/usr/../x",
            "/x/..",
        ] {
            assert!(not_normal(s), "{s}");
        }
    }

    #[test]
    fn allow_listed_images_match_exactly_and_with_case() {
        let t = build(&[], &[], &["/usr/bin/dpkg".into()]).expect("tables");
        let allowed = |p: &str| scan(&t.image, &leaf_first(p))[0] & (1 << ATOM_ALLOWED_IMAGE) != 0;
        assert!(allowed("/usr/bin/dpkg"));
        assert!(!allowed("/usr/bin/DPKG"));
        assert!(!allowed("/tmp/usr/bin/dpkg"));
    }
}
