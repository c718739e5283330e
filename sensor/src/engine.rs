//! Evaluates events against a compiled [`RuleSet`] and turns hits into
//! [`Alert`]s.
//!
//! `Image` aliases (DESIGN.md): Sysmon's `Image` is the resolved file the
//! kernel loaded, so `/etc/init.d/kesl stop` shows the resolved shell
//! (`/usr/bin/dash`) and a rule written for `Image|endswith: /sh` would
//! miss it. Each rule is therefore evaluated once per distinct value among
//! the resolved path, `ImageInvoked` and `Interpreter`, resolved first; a
//! rule fires once, and the alert says which value made it match. Aliases
//! can only add alerts: the resolved evaluation always runs. `ParentImage`
//! gets the same treatment from the parent's `ParentImageInvoked` and
//! `ParentInterpreter`.

use std::{borrow::Cow, sync::Arc};

use serde::Serialize;

use crate::{
    exclusions::{Exclusions, Suppression},
    sigma::{Event, RuleSet, Value},
};

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
    /// Which `ParentImage` value the rule saw (resolved unless an alias of
    /// the parent made the difference).
    pub parent_image_as: ImageAs,
    pub parent_image: Option<String>,
}

/// Which kind of event a rule is written for (its logsource category).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    ProcessCreation,
    ProcessTermination,
}

/// The rule set in force, with its exclusions; cheap to clone (`Arc`s).
#[derive(Clone)]
pub struct Engine {
    rules: Arc<RuleSet>,
    /// Per rule: the kind of event it applies to.
    kinds: Arc<[EventKind]>,
    /// Built for this rule set (filters refer to rules by index).
    exclusions: Arc<Exclusions>,
}

impl Engine {
    /// The rules with `exclusions` compiled for them.
    pub fn with_exclusions(rules: Arc<RuleSet>, exclusions: Exclusions) -> Engine {
        Engine {
            exclusions: Arc::new(exclusions),
            ..Engine::new(rules)
        }
    }

    pub fn exclusions(&self) -> &Exclusions {
        &self.exclusions
    }

    pub fn new(rules: Arc<RuleSet>) -> Engine {
        let kinds = rules
            .rules()
            .iter()
            .map(|r| {
                if r.meta.logsource.is_termination() {
                    EventKind::ProcessTermination
                } else {
                    EventKind::ProcessCreation
                }
            })
            .collect();
        Engine {
            rules,
            kinds,
            exclusions: Arc::default(),
        }
    }

    /// Hits of a `process_termination` event (no aliases: the event has
    /// only the resolved image).
    pub fn evaluate_termination(
        &self,
        event: &dyn Event,
        hits: &mut Vec<Hit>,
        scratch: &mut Vec<usize>,
    ) {
        scratch.clear();
        self.rules.matches(event, scratch);
        for &rule in scratch.iter() {
            if self.kinds[rule] != EventKind::ProcessTermination {
                continue;
            }
            hits.push(Hit {
                rule,
                image_as: ImageAs::Resolved,
                image: string_field(event, "Image").unwrap_or_default(),
                parent_image_as: ImageAs::Resolved,
                parent_image: None,
            });
        }
    }

    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Appends the hits of `event` to `hits`, at most one per rule.
    ///
    /// The event is evaluated as given first (resolved `Image` and
    /// `ParentImage`), then once per other distinct pair of aliases; a rule
    /// already hit is not reported again, so the alert names the first
    /// (most literal) view that matched.
    pub fn evaluate(&self, event: &dyn Event, hits: &mut Vec<Hit>, scratch: &mut Vec<usize>) {
        let images = aliases(event, ["Image", "ImageInvoked", "Interpreter"]);
        let parents = aliases(
            event,
            ["ParentImage", "ParentImageInvoked", "ParentInterpreter"],
        );
        let start = hits.len();
        for (i, (image, image_as)) in images.iter().enumerate() {
            for (j, (parent, parent_as)) in parents.iter().enumerate() {
                scratch.clear();
                if i == 0 && j == 0 {
                    self.rules.matches(event, scratch);
                } else {
                    let view = Aliased {
                        event,
                        image: image.as_deref(),
                        parent: parent.as_deref(),
                    };
                    self.rules.matches(&view, scratch);
                }
                for &rule in scratch.iter() {
                    if self.kinds[rule] != EventKind::ProcessCreation
                        || hits[start..].iter().any(|h| h.rule == rule)
                    {
                        continue;
                    }
                    hits.push(Hit {
                        rule,
                        image_as: *image_as,
                        image: image.clone().unwrap_or_default(),
                        parent_image_as: *parent_as,
                        parent_image: parent.clone(),
                    });
                }
            }
        }
        hits[start..].sort_by_key(|h| h.rule);
    }
}

/// The resolved value (possibly absent) and each distinct alias after it.
fn aliases(
    event: &dyn Event,
    [resolved, invoked, interpreter]: [&str; 3],
) -> Vec<(Option<String>, ImageAs)> {
    let mut out = vec![(string_field(event, resolved), ImageAs::Resolved)];
    for (name, image_as) in [
        (invoked, ImageAs::Invoked),
        (interpreter, ImageAs::Interpreter),
    ] {
        if let Some(value) = string_field(event, name)
            && !out
                .iter()
                .any(|(v, _)| v.as_deref() == Some(value.as_str()))
        {
            out.push((Some(value), image_as));
        }
    }
    out
}

fn string_field(event: &dyn Event, name: &str) -> Option<String> {
    match event.field(name)? {
        Value::Str(s) if !s.is_empty() => Some(s.into_owned()),
        _ => None,
    }
}

/// `event` seen with another `Image` and/or `ParentImage`.
struct Aliased<'a> {
    event: &'a dyn Event,
    image: Option<&'a str>,
    parent: Option<&'a str>,
}

impl Event for Aliased<'_> {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match (name, self.image, self.parent) {
            ("Image", Some(image), _) => Some(Value::Str(Cow::Borrowed(image))),
            ("ParentImage", _, Some(parent)) => Some(Value::Str(Cow::Borrowed(parent))),
            _ => self.event.field(name),
        }
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        if let Some(image) = self.image {
            f(image);
        }
        if let Some(parent) = self.parent {
            f(parent);
        }
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
    /// `stopping` when systemd was shutting the host down as the alert
    /// fired (the level is then lowered; see `host_state`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_state: Option<String>,
    /// Alerts folded into this one (same process, or the service manager
    /// carrying out this command); see `incident`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related: Vec<crate::incident::Related>,
    /// The exclusion (`rules/filters/<name>.yml`) that marks this alert
    /// as an expected stop; the level is then lowered and the alert is
    /// counted apart (see `exclusions`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppressed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suppression: Option<Suppression>,
    /// For a prevented rule: what the kernel did (`action`, and
    /// `action_reason` unless it killed).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub prevention: Option<crate::prevent::Action>,
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
    pub parent_image_as: ImageAs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_image: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Host {
    pub hostname: String,
}

#[cfg(test)]
impl Alert {
    /// A bare alert for unit tests: the rule's id, title and level and the
    /// process; everything else empty.
    pub(crate) fn for_test(
        id: Option<&str>,
        title: &str,
        level: &str,
        process: serde_json::Value,
    ) -> Alert {
        Alert {
            timestamp: String::new(),
            kind: "alert",
            rule: RuleRef {
                id: id.map(str::to_owned),
                title: title.into(),
                level: Some(level.into()),
                status: None,
                tags: Vec::new(),
                description: None,
                falsepositives: Vec::new(),
                references: Vec::new(),
                author: None,
                source: String::new(),
            },
            evidence: Evidence {
                image_as: ImageAs::Resolved,
                image: String::new(),
                parent_image_as: ImageAs::Resolved,
                parent_image: None,
            },
            host: Host {
                hostname: "h".into(),
            },
            host_state: None,
            suppressed_by: None,
            suppression: None,
            related: Vec::new(),
            prevention: None,
            process,
        }
    }
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
                parent_image_as: hit.parent_image_as,
                parent_image: hit.parent_image.clone(),
            },
            host: Host {
                hostname: hostname.to_owned(),
            },
            host_state: None,
            related: Vec::new(),
            suppressed_by: None,
            suppression: None,
            prevention: None,
            process,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::{replay::JsonEvent, sigma::Source};

    const PARENT_SH: &str = "title: Child of a shell stopping kesl
id: 00000000-0000-0000-0000-000000000001
logsource:
    product: linux
    category: process_creation
detection:
    selection:
        ParentImage|endswith: '/sh'
        CommandLine|contains: 'kesl'
    condition: selection
level: medium
";

    fn engine(rules: &[(&str, &str)]) -> Engine {
        let sources = rules.iter().map(|(name, text)| Source::new(*name, *text));
        let (set, errors) = RuleSet::load(sources);
        assert!(errors.is_empty(), "{errors:?}");
        Engine::new(Arc::new(set))
    }

    fn hits(engine: &Engine, event: serde_json::Value) -> Vec<Hit> {
        let map = event.as_object().expect("object").clone();
        let mut hits = Vec::new();
        engine.evaluate(&JsonEvent(&map), &mut hits, &mut Vec::new());
        hits
    }

    #[test]
    fn parent_image_aliases_add_a_match_and_say_which() {
        let e = engine(&[("parent.yml", PARENT_SH)]);
        let got = hits(
            &e,
            json!({"Image": "/usr/bin/systemctl", "CommandLine": "systemctl stop kesl",
                   "ParentImage": "/usr/bin/dash", "ParentImageInvoked": "/etc/init.d/kesl",
                   "ParentInterpreter": "/bin/sh"}),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].parent_image_as, ImageAs::Interpreter);
        assert_eq!(got[0].parent_image.as_deref(), Some("/bin/sh"));
        assert_eq!(got[0].image_as, ImageAs::Resolved);
        // Without the alias there is nothing to match.
        let got = hits(
            &e,
            json!({"Image": "/usr/bin/systemctl", "CommandLine": "systemctl stop kesl",
                   "ParentImage": "/usr/bin/dash"}),
        );
        assert!(got.is_empty());
    }

    #[test]
    fn the_resolved_view_wins_when_it_matches() {
        let e = engine(&[(
            "kesl.yml",
            include_str!("../../rules/proc_creation_lnx_av_kaspersky_av_disabled.yml"),
        )]);
        let got = hits(
            &e,
            json!({"Image": "/usr/bin/bash", "ImageInvoked": "/usr/bin/sh",
                   "CommandLine": "bash -c 'stop kesl'"}),
        );
        assert_eq!(got.len(), 1, "one alert per rule, not one per alias");
        assert_eq!(got[0].image_as, ImageAs::Resolved);
        let got = hits(
            &e,
            json!({"Image": "/usr/bin/dash", "ImageInvoked": "/etc/init.d/kesl",
                   "Interpreter": "/bin/sh", "CommandLine": "/bin/sh /etc/init.d/kesl stop"}),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].image_as, ImageAs::Interpreter);
        assert_eq!(got[0].image, "/bin/sh");
    }
}
