//! Fuzz target: arbitrary text as a rule's `condition`, over a fixed set of
//! searches (plain, `_`-prefixed and wildcard-matchable names), loaded and
//! matched. The condition is written as a JSON string, which YAML reads
//! as a double-quoted scalar, so every input reaches the condition parser
//! unchanged.

#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use sensor::sigma::{Event, RuleSet, Source, Value};

struct Ev;

impl Event for Ev {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "Image" => Some(Value::Str(Cow::Borrowed("/usr/bin/curl"))),
            "CommandLine" => Some(Value::Str(Cow::Borrowed("curl -o /tmp/x http://a"))),
            _ => None,
        }
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        f("/usr/bin/curl");
        f("curl -o /tmp/x http://a");
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(condition) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(quoted) = serde_json::to_string(condition) else {
        return;
    };
    let rule = format!(
        "title: fuzz\nlogsource:\n  product: linux\n  category: process_creation\n\
         detection:\n  selection:\n    Image|endswith: /curl\n  sel_two:\n    CommandLine|contains: ' -o '\n  \
         filter_x:\n    CommandLine|contains: /tmp/\n  _hidden:\n    - keyword\n  \
         condition: {quoted}\n"
    );
    let (set, _errors) = RuleSet::load([Source::new("fuzz.yml", rule)]);
    let mut out = Vec::new();
    set.matches(&Ev, &mut out);
});
