//! A rough single-core throughput probe of `RuleSet::matches` (ignored by
//! default; the real benchmark is `cargo xtask bench matcher`). Run with
//! `cargo test --release -p sensor --lib sigma::tests::speed -- --ignored
//! --nocapture`. It asserts the hit count so a fast wrong answer fails.

use std::time::Instant;

use super::*;

/// Benign-looking events in the shape the daemon produces, plus the
/// oracle corpus (which is rich in rule strings, so hits are frequent).
fn events() -> Vec<JsonEv> {
    let mut out = Vec::new();
    for line in include_str!("../../../tests/sigma/oracle/events.jsonl").lines() {
        out.push(JsonEv(serde_json::from_str(line).expect("json event")));
    }
    let benign = [
        (
            "/usr/bin/ls",
            "ls -la --color=auto /home/alice/projects",
            "/usr/bin/bash",
            "-bash",
        ),
        (
            "/usr/bin/git",
            "git status --porcelain=v2 --branch",
            "/usr/bin/zsh",
            "zsh",
        ),
        (
            "/usr/bin/python3.11",
            "/usr/bin/python3 /usr/lib/command-not-found -- gti",
            "/usr/bin/bash",
            "bash",
        ),
        (
            "/usr/lib/systemd/systemd-tmpfiles",
            "/usr/lib/systemd/systemd-tmpfiles --clean",
            "/usr/lib/systemd/systemd",
            "/sbin/init splash",
        ),
        (
            "/usr/bin/grep",
            "grep -rn TODO src/ --include=*.rs",
            "/usr/bin/bash",
            "bash",
        ),
        (
            "/usr/sbin/sshd",
            "sshd: alice [priv]",
            "/usr/sbin/sshd",
            "sshd: /usr/sbin/sshd -D [listener] 0 of 10-100 startups",
        ),
        (
            "/usr/bin/cargo",
            "cargo build --release -p sensor",
            "/usr/bin/bash",
            "bash",
        ),
        (
            "/usr/bin/dpkg",
            "/usr/bin/dpkg --print-foreign-architectures",
            "/usr/bin/apt-get",
            "apt-get update",
        ),
    ];
    for _ in 0..64 {
        for (image, cmd, pimage, pcmd) in benign {
            let mut m = serde_json::Map::new();
            for (k, v) in [
                ("Image", image),
                ("CommandLine", cmd),
                ("ParentImage", pimage),
                ("ParentCommandLine", pcmd),
                ("User", "alice"),
                ("CurrentDirectory", "/home/alice"),
            ] {
                m.insert(k.to_owned(), serde_json::Value::String(v.to_owned()));
            }
            m.insert("ProcessId".to_owned(), serde_json::Value::from(4242));
            out.push(JsonEv(m));
        }
    }
    out
}

/// An event as a short list of fields.
struct FlatEv(Vec<(String, Value<'static>)>);

impl FlatEv {
    fn from_json(e: &JsonEv) -> Self {
        FlatEv(
            e.0.keys()
                .filter_map(|k| {
                    let v = match e.field(k)? {
                        Value::Str(s) => Value::Str(Cow::Owned(s.into_owned())),
                        Value::Int(n) => Value::Int(n),
                        Value::Bool(b) => Value::Bool(b),
                        Value::Null => Value::Null,
                    };
                    Some((k.clone(), v))
                })
                .collect(),
        )
    }
}

impl Event for FlatEv {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| match v {
                Value::Str(s) => Value::Str(Cow::Borrowed(s.as_ref())),
                other => other.clone(),
            })
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        for (_, v) in &self.0 {
            if let Value::Str(s) = v {
                f(s);
            }
        }
    }
}

/// Matches `events` `rounds` times; returns events/s and hits per pass,
/// asserting every pass gives the same hit count.
fn rate<E: Event>(set: &RuleSet, events: &[E], rounds: usize) -> (f64, usize) {
    let mut out = Vec::new();
    let mut hits = 0usize;
    for e in events {
        out.clear();
        set.matches(e, &mut out);
        hits += out.len();
    }
    let start = Instant::now();
    let mut again = 0usize;
    for _ in 0..rounds {
        for e in events {
            out.clear();
            set.matches(e, &mut out);
            again += out.len();
        }
    }
    let elapsed = start.elapsed();
    assert_eq!(again, hits * rounds);
    #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = (events.len() * rounds) as f64 / elapsed.as_secs_f64();
    (rate, hits)
}

#[test]
#[ignore = "throughput probe; run in release with --ignored --nocapture"]
fn matcher_events_per_second() {
    let start = Instant::now();
    let set = load_dir(&sigmahq_root());
    let compile = start.elapsed();
    let mut events = events();
    let benign = events.split_off(events.len() - 512);
    let (corpus_rate, corpus_hits) = rate(&set, &events, 200);
    let (json_rate, json_hits) = rate(&set, &benign, 400);
    // The same benign events behind a cheap accessor, like the daemon's
    // `ProcessCreate` (a match on the name), so the rate is the engine's.
    let flat: Vec<FlatEv> = benign.iter().map(FlatEv::from_json).collect();
    let (benign_rate, benign_hits) = rate(&set, &flat, 400);
    assert_eq!(json_hits, benign_hits);
    println!("benign through serde_json maps: {json_rate:.0} events/s");
    println!(
        "{} rules compiled in {compile:?}; rule-derived corpus ({} events, {corpus_hits} hits): {corpus_rate:.0} events/s; benign ({} events, {benign_hits} hits): {benign_rate:.0} events/s",
        set.len(),
        events.len(),
        benign.len(),
    );
    assert_eq!(benign_hits, 0);
}

#[test]
#[ignore = "prints literal index statistics"]
fn literal_index_statistics() {
    let set = load_dir(&sigmahq_root());
    let ix = &set.literals;
    println!(
        "{} literals in {} scans; {} of {} rules always evaluated: {:?}",
        ix.literal_count,
        ix.scans.len(),
        ix.always.len(),
        ix.rule_count,
        ix.always
            .iter()
            .map(|&r| set.rules()[r].meta.title.as_str())
            .collect::<Vec<_>>()
    );
    for scan in &ix.scans {
        println!(
            "  {} cased={} {} patterns",
            set.fields.name(scan.field),
            scan.cased,
            scan.patterns.len()
        );
    }
}

#[test]
#[ignore = "prints how many literal matches and candidates benign events cause"]
fn literal_pass_statistics() {
    let set = load_dir(&sigmahq_root());
    let mut events = events();
    let benign = events.split_off(events.len() - 512);
    for e in benign.iter().step_by(64) {
        let mut buffers = Scratch::default();
        let mut scratch = EventCache::new(e, &set.fields, &mut buffers);
        scratch.scan(&set.literals);
        let candidates = scratch.take_candidates();
        let cands: Vec<&str> = candidates
            .iter()
            .map(|r| set.rules()[r].meta.title.as_str())
            .collect();
        println!(
            "{:?}: {} candidates {:?}",
            e.0.get("CommandLine"),
            cands.len(),
            cands
        );
    }
    for scan in &set.literals.scans {
        let mut short: Vec<String> = scan
            .patterns
            .iter()
            .filter(|p| p.len() <= 3)
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .collect();
        short.sort();
        println!(
            "{} {:?}: short patterns {short:?}",
            set.fields.name(scan.field),
            scan.group
        );
    }
}
