//! Evaluates events against a compiled [`RuleSet`] and turns hits into
//! [`Alert`]s.
//!
//! `Image` aliases (DESIGN.md): Sysmon's `Image` is the resolved file the
//! kernel loaded, so `/etc/init.d/kesl stop` shows the resolved shell
//! (`/usr/bin/dash`) and a rule written for `Image|endswith: /sh` would
//! miss it. Each rule is therefore evaluated once per distinct value among
//! the resolved path, `ImageInvoked` and `Interpreter`, resolved first; a
//! rule fires once, and the alert says which value made it match. Aliases
//! can only add alerts: the resolved evaluation always runs.

use std::{borrow::Cow, sync::Arc};

use serde::Serialize;

use crate::sigma::{Event, RuleSet, Value};

/// Which `Image` value a rule matched against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ImageAs {
    Resolved,
    Invoked,
    Interpreter,
}

/// One rule hit on one event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index into [`RuleSet::rules`].
    pub rule: usize,
    pub image_as: ImageAs,
    /// The `Image` value that matched.
    pub image: String,
}

/// The rule set in force; cheap to clone (an `Arc`).
#[derive(Clone)]
pub struct Engine {
    rules: Arc<RuleSet>,
}

impl Engine {
    pub fn new(rules: Arc<RuleSet>) -> Engine {
        Engine { rules }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Appends the hits of `event` to `hits`, at most one per rule.
    pub fn evaluate(&self, event: &dyn Event, hits: &mut Vec<Hit>, scratch: &mut Vec<usize>) {
        let resolved = string_field(event, "Image");
        let invoked = string_field(event, "ImageInvoked");
        let interpreter = string_field(event, "Interpreter");
        let start = hits.len();
        scratch.clear();
        self.rules.matches(event, scratch);
        for &rule in scratch.iter() {
            hits.push(Hit {
                rule,
                image_as: ImageAs::Resolved,
                image: resolved.clone().unwrap_or_default(),
            });
        }
        let mut seen: Vec<&str> = resolved.as_deref().into_iter().collect();
        for (alias, image_as) in [
            (invoked.as_deref(), ImageAs::Invoked),
            (interpreter.as_deref(), ImageAs::Interpreter),
        ] {
            let Some(alias) = alias else { continue };
            if seen.contains(&alias) {
                continue;
            }
            seen.push(alias);
            scratch.clear();
            self.rules.matches(
                &WithImage {
                    event,
                    image: alias,
                },
                scratch,
            );
            for &rule in scratch.iter() {
                if hits[start..].iter().any(|h| h.rule == rule) {
                    continue;
                }
                hits.push(Hit {
                    rule,
                    image_as,
                    image: alias.to_owned(),
                });
            }
        }
        hits[start..].sort_by_key(|h| h.rule);
    }
}

fn string_field(event: &dyn Event, name: &str) -> Option<String> {
    match event.field(name)? {
        Value::Str(s) if !s.is_empty() => Some(s.into_owned()),
        _ => None,
    }
}

/// `event` seen with another `Image`.
struct WithImage<'a> {
    event: &'a dyn Event,
    image: &'a str,
}

impl Event for WithImage<'_> {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        if name == "Image" {
            Some(Value::Str(Cow::Borrowed(self.image)))
        } else {
            self.event.field(name)
        }
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        f(self.image);
        self.event.for_each_string(f);
    }
}

/// An alert as written to sinks (shape in DESIGN.md).
#[derive(Clone, Debug, Serialize)]
pub struct Alert {
    pub timestamp: String,
    pub kind: &'static str,
    pub rule: RuleRef,
    #[serde(rename = "match")]
    pub evidence: Evidence,
    pub host: Host,
    pub process: serde_json::Value,
}

#[derive(Clone, Debug, Serialize)]
pub struct RuleRef {
    pub id: Option<String>,
    pub title: String,
    pub level: Option<String>,
    pub status: Option<String>,
    pub tags: Vec<String>,
    pub description: Option<String>,
    pub falsepositives: Vec<String>,
    pub references: Vec<String>,
    pub author: Option<String>,
    /// Where the rule was loaded from (`bundled:<file>` or a path).
    pub source: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Evidence {
    pub image_as: ImageAs,
    pub image: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub hostname: String,
}

impl Alert {
    pub fn new(rules: &RuleSet, hit: &Hit, hostname: &str, process: serde_json::Value) -> Alert {
        let meta = &rules.rules()[hit.rule].meta;
        Alert {
            timestamp: crate::process::rfc3339(time::OffsetDateTime::now_utc()),
            kind: "alert",
            rule: RuleRef {
                id: meta.id.clone(),
                title: meta.title.clone(),
                level: meta.level.clone(),
                status: meta.status.clone(),
                tags: meta.tags.clone(),
                description: meta.description.clone(),
                falsepositives: meta.falsepositives.clone(),
                references: meta.references.clone(),
                author: meta.author.clone(),
                source: meta.source.clone(),
            },
            evidence: Evidence {
                image_as: hit.image_as,
                image: hit.image.clone(),
            },
            host: Host {
                hostname: hostname.to_owned(),
            },
            process,
        }
    }
}
