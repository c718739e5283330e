//! Microsoft Sentinel's ASIM Process Event schema (`imProcessCreate`),
//! version 0.1.4: the shape a Log Analytics custom table must have for the
//! `imProcessCreate` parser (and so the seed's KQL) to find our alerts.
//!
//! Actor and acting process are the creator of the new process (Sysmon's
//! `Parent*`): the schema's actor is who ran the command. We do not know
//! the acting process's own parent, so `ParentProcessName` repeats the
//! acting process, as the Sysmon-for-Linux ASIM parser does.

use serde_json::{Map, Value, json};

use super::{Body, Message};

pub const SCHEMA_VERSION: &str = "0.1.4";

/// The ASIM object for an alert or event; `None` for other records.
pub fn render(msg: &Message) -> Option<String> {
    let value = match &msg.body {
        Body::Alert(a) => {
            let mut v = process(&a.process);
            let rule = &a.rule;
            let level = rule.level.as_deref();
            v.insert("EventSeverity".into(), json!(severity(level)));
            v.insert("RuleName".into(), json!(rule.title));
            v.insert("RuleId".into(), json!(rule.id));
            v.insert("RuleLevel".into(), json!(level));
            v.insert("ThreatName".into(), json!(rule.title));
            v.insert(
                "AdditionalFields".into(),
                json!({
                    "kind": "alert",
                    "RuleSource": rule.source,
                    "RuleTags": rule.tags,
                    "MatchImageAs": a.evidence.image_as,
                    "MatchImage": a.evidence.image,
                    "AlertTime": a.timestamp,
                }),
            );
            // An expected stop (see `exclusions`): the severity is already
            // lowered; say which exclusion so a query can leave it out.
            if let (Some(filter), Some(Value::Object(extra))) =
                (&a.suppressed_by, v.get_mut("AdditionalFields"))
            {
                extra.insert("SuppressedBy".into(), json!(filter));
            }
            v
        }
        Body::Event(e) => {
            let mut v = process(&serde_json::to_value(e).ok()?);
            v.insert("EventSeverity".into(), json!("Informational"));
            v.insert("AdditionalFields".into(), json!({ "kind": "event" }));
            v
        }
        Body::Record(_) => return None,
    };
    serde_json::to_string(&value).ok()
}

/// ASIM severity (Informational, Low, Medium, High) of a Sigma level.
pub fn severity(level: Option<&str>) -> &'static str {
    match level {
        Some("critical" | "high") => "High",
        Some("medium") => "Medium",
        Some("low") => "Low",
        _ => "Informational",
    }
}

/// The schema fields from the Sysmon-named process object.
fn process(p: &Value) -> Map<String, Value> {
    let s = |k: &str| p.get(k).cloned().unwrap_or(Value::Null);
    // ASIM ids are strings.
    let id = |k: &str| match p.get(k) {
        Some(Value::Number(n)) => json!(n.to_string()),
        _ => Value::Null,
    };
    let mut m = Map::new();
    let mut put = |k: &str, v: Value| {
        if !v.is_null() {
            m.insert(k.into(), v);
        }
    };
    put("EventCount", json!(1));
    put("EventStartTime", s("UtcTime"));
    put("EventEndTime", s("UtcTime"));
    put("EventType", json!("ProcessCreated"));
    put("EventResult", json!("Success"));
    put("EventSchema", json!("ProcessEvent"));
    put("EventSchemaVersion", json!(SCHEMA_VERSION));
    put("EventProduct", json!("sigexec"));
    put("EventVendor", json!("sigexec"));
    put("EventProductVersion", json!(env!("CARGO_PKG_VERSION")));
    put("DvcHostname", s("Hostname"));
    put("DvcOs", json!("Linux"));
    put("TargetProcessName", s("Image"));
    put("TargetProcessFilename", basename(p.get("Image")));
    put("TargetProcessCommandLine", s("CommandLine"));
    put("TargetProcessId", id("ProcessId"));
    put("TargetProcessGuid", s("ProcessGuid"));
    put("TargetProcessCurrentDirectory", s("CurrentDirectory"));
    put("TargetUsername", s("User"));
    put("TargetUsernameType", json!("Simple"));
    put("TargetUserId", id("LogonId"));
    put("TargetUserIdType", json!("UID"));
    put("TargetUserSessionId", id("TerminalSessionId"));
    put("ActingProcessId", id("ParentProcessId"));
    put("ActingProcessName", s("ParentImage"));
    put("ActingProcessCommandLine", s("ParentCommandLine"));
    put("ActingProcessGuid", s("ParentProcessGuid"));
    put("ActorUsername", s("ParentUser"));
    put("ActorUsernameType", json!("Simple"));
    put("ParentProcessName", s("ParentImage"));
    put("ParentProcessId", id("ParentProcessId"));
    m
}

fn basename(v: Option<&Value>) -> Value {
    match v.and_then(Value::as_str) {
        Some(path) => json!(path.rsplit('/').next().unwrap_or(path)),
        None => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::Alert;

    fn alert(suppressed_by: Option<&str>, level: &str) -> Alert {
        let mut a = Alert::for_test(
            Some("36388120-b3f1-4ce9-b50b-280d9a7f4c04"),
            "Kaspersky Endpoint Security Stopped Via CommandLine - Linux",
            level,
            json!({"Image": "/usr/bin/systemctl", "CommandLine": "systemctl stop kesl"}),
        );
        a.timestamp = "2026-12-04T02:30:00Z".into();
        a.rule.source = "bundled:x.yml".into();
        a.evidence.image = "/usr/bin/systemctl".into();
        a.suppressed_by = suppressed_by.map(str::to_owned);
        a
    }

    fn asim(a: Alert) -> Value {
        let text = render(&Message::new(Body::Alert(Box::new(a)))).expect("an alert renders");
        serde_json::from_str(&text).expect("json")
    }

    #[test]
    fn a_suppressed_alert_says_which_exclusion_at_its_lowered_severity() {
        let v = asim(alert(Some("package_manager"), "informational"));
        assert_eq!(v["AdditionalFields"]["SuppressedBy"], "package_manager");
        assert_eq!(v["EventSeverity"], "Informational");
        let v = asim(alert(None, "high"));
        assert!(v["AdditionalFields"].get("SuppressedBy").is_none(), "{v}");
        assert_eq!(v["EventSeverity"], "High");
    }
}
