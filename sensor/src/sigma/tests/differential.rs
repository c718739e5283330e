//! The differential test at scale: 25,000 generated events
//! (`sensor/tests/sigma/oracle/gen_scale.py`: every rule's own values,
//! mutated, plus realistic benign events) matched against every SigmaHQ
//! linux rule, compared with the reference matcher's recorded verdicts
//! (`scale-expected.jsonl`, produced by pySigma + SQLite through
//! `shared/oracle/sigma-oracle`, not by sigexec).

use std::collections::BTreeSet;

use super::*;

/// Known disagreements: (event index, rule id, true when we match and the
/// oracle does not), each for a documented oracle limit. None so far.
const KNOWN: &[(usize, &str, bool)] = &[];

#[test]
fn matches_agree_with_the_pysigma_oracle_at_scale() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/oracle");
    let read = |name: &str| {
        std::fs::read_to_string(dir.join(name))
            .unwrap_or_else(|e| panic!("{}: {e}", dir.join(name).display()))
    };
    let events = read("scale-events.jsonl");
    let expected = read("scale-expected.jsonl");
    let set = load_dir(&sigmahq_root());
    assert_eq!(events.lines().count(), expected.lines().count());
    assert!(events.lines().count() >= 20_000);
    let mut report = Vec::new();
    let mut differences = Vec::new();
    let mut agreed = 0usize;
    let mut hit_events = 0usize;
    let mut rules_hit = BTreeSet::new();
    let mut out = Vec::new();
    for (i, (line, verdict)) in events.lines().zip(expected.lines()).enumerate() {
        let event: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).expect("corpus event is a JSON object");
        let verdict: serde_json::Value = serde_json::from_str(verdict).expect("oracle line");
        assert_eq!(verdict["event"], i, "oracle output out of step with events");
        let want: BTreeSet<&str> = verdict["rules"]
            .as_array()
            .expect("rules array")
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        out.clear();
        set.matches(&JsonEv(event), &mut out);
        let got: BTreeSet<&str> = out
            .iter()
            .filter_map(|&r| set.rules()[r].meta.id.as_deref())
            .collect();
        if !want.is_empty() {
            hit_events += 1;
            rules_hit.extend(want.iter().map(|s| (*s).to_owned()));
        }
        if got == want {
            agreed += 1;
            continue;
        }
        let mut unexplained = false;
        for (id, ours) in got
            .difference(&want)
            .map(|id| (*id, true))
            .chain(want.difference(&got).map(|id| (*id, false)))
        {
            differences.push((i, id.to_owned(), ours));
            unexplained |= !KNOWN.contains(&(i, id, ours));
        }
        if unexplained && report.len() < 20 {
            report.push(format!(
                "event {i}: {line}\n  sigexec: {got:?}\n  oracle:  {want:?}"
            ));
        }
    }
    let total = events.lines().count();
    println!(
        "{total} events, {agreed} agree, {hit_events} with oracle hits, {} rules hit",
        rules_hit.len()
    );
    let known: Vec<(usize, String, bool)> = KNOWN
        .iter()
        .map(|(i, id, ours)| (*i, (*id).to_owned(), *ours))
        .collect();
    assert!(
        differences == known,
        "{} disagreements with the oracle (first {} shown):\n{}",
        differences.len(),
        report.len(),
        report.join("\n")
    );
    assert!(hit_events > 5_000, "{hit_events} events with hits");
    assert!(
        rules_hit.len() >= 100,
        "{} rules exercised",
        rules_hit.len()
    );
}

/// Disagreements on the modifier corpus, all from one oracle limit: it
/// stores event values as text, and SQLite orders any text after any
/// number, so `LogonId|lt: 1000` never holds there. We compare numbers
/// (and decimal text) as numbers, as the spec means.
const MODIFIER_KNOWN: &[(usize, &str, bool)] = &[
    (11, "00000000-0000-0000-0000-000000000005", true),
    (13, "00000000-0000-0000-0000-000000000005", true),
];

#[test]
fn modifiers_agree_with_the_pysigma_oracle() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/oracle/modifier-rules");
    let set = load_dir(&dir);
    assert_eq!(set.len(), 8);
    let (differences, total_hits) = oracle_differences(
        &set,
        include_str!("../../../tests/sigma/oracle/modifier-events.jsonl"),
        include_str!("../../../tests/sigma/oracle/modifier-expected.jsonl"),
    );
    assert_eq!(total_hits, 16);
    let known: Vec<(usize, String, bool)> = MODIFIER_KNOWN
        .iter()
        .map(|(i, id, ours)| (*i, (*id).to_owned(), *ours))
        .collect();
    assert_eq!(
        differences, known,
        "(event, rule id, we match but the oracle does not)"
    );
}
