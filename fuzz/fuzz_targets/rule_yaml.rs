//! Fuzz target: arbitrary text as a rule file -> `RuleSet::load`, then the
//! rules that loaded matched against a fixed event. Rules are untrusted
//! input: any text must give rules or errors, never a panic, a stack
//! overflow or an unbounded allocation.

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use sensor::sigma::{Event, RuleSet, Source, Value};

/// A small process-creation event with string, integer and null fields.
struct Ev;

impl Event for Ev {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match name {
            "Image" => Value::Str(Cow::Borrowed("/usr/bin/bash")),
            "CommandLine" => Value::Str(Cow::Borrowed("bash -c 'echo aGVsbG8= | base64 -d'")),
            "ParentImage" => Value::Str(Cow::Borrowed("/usr/sbin/sshd")),
            "User" => Value::Str(Cow::Borrowed("root")),
            "ProcessId" => Value::Int(4242),
            "ParentCommandLine" => Value::Null,
            _ => return None,
        })
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        for s in ["/usr/bin/bash", "bash -c 'echo aGVsbG8= | base64 -d'", "/usr/sbin/sshd", "root"] {
            f(s);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (set, _errors) = RuleSet::load([Source::new("fuzz.yml", text)]);
    let mut out = Vec::new();
    set.matches(&Ev, &mut out);
    for rule in set.rules() {
        let _ = rule.list_line();
    }
});
