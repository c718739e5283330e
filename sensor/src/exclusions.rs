//! Opt-in exclusions: the legitimate ways to stop Kaspersky that the seed
//! rule lists as false positives, shipped as Sigma filter documents in
//! `rules/filters/` and enabled by name in the config (`exclusions:`).
//!
//! An excluded hit is not dropped: its alert is written with
//! `suppressed_by` naming the filter, its level lowered (default
//! `informational`), to the alert sinks or to `exclusions.sinks`, and
//! counted apart from alerts. A filter excludes a hit of a rule it names
//! when its condition does *not* hold (Sigma filter semantics: a filter
//! keeps what it selects), evaluated on the event alone and once per
//! ancestor with that ancestor's fields:
//!
//! | field | value |
//! |---|---|
//! | `AncestorImage` | the ancestor's image (for a `#!` script: the interpreter) |
//! | `AncestorImageInvoked` | the path it was exec'd as (for a script: the script) |
//! | `AncestorInterpreter` | its `#!` interpreter |
//! | `AncestorCommandLine` | its command line |
//! | `AncestorUser` | its user |
//! | `DeclaredAuditUser` | `true` when `User` or `LoginUser` (or their uid) is in `exclusions.audit_users` |
//! | `AdminInMaintenanceWindow` | `true` when a maintenance window is open now and lists that user |
//!
//! Walking the ancestry per ancestor rather than as a list keeps the Sigma
//! matcher unchanged (it has no list values) and lets one filter test an
//! ancestor's image and its command line together.
//!
//! Windows are weekly, in wall-clock time of their own time zone (read
//! from the system's zoneinfo by `jiff`): `start` inclusive, `end`
//! exclusive, an `end` at or before `start` runs into the next day. On the
//! day clocks jump forward the skipped wall times do not exist, so a
//! window inside the gap does not open that day; on the day they go back
//! the repeated hour is covered twice.

use std::borrow::Cow;

use jiff::{Timestamp, civil::Weekday, tz::TimeZone};
use serde::{Deserialize, Deserializer, Serialize, de};

use crate::{
    process::table::Proc,
    process::users::UserRef,
    rules,
    sigma::{Event, FilterSet, RuleSet, Value},
    sinks::SinkConfig,
};

/// Sigma levels, lowest first.
pub const LEVELS: [&str; 5] = ["informational", "low", "medium", "high", "critical"];

/// `exclusions:` as written in the config file.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ExclusionsFile {
    /// Shipped filters to apply, by name (`rules/filters/<name>.yml`).
    pub enabled: Vec<FilterName>,
    /// The level a suppressed alert is written with.
    pub level: String,
    /// Where suppressed alerts go; `None`: the alert sinks.
    pub sinks: Option<Vec<SinkConfig>>,
    /// Users whose stops are audit or compliance work (`audit_users`).
    pub audit_users: Vec<UserRef>,
    /// Weekly windows in which their users may stop the service
    /// (`maintenance_window`).
    pub maintenance_windows: Vec<WindowFile>,
}

impl Default for ExclusionsFile {
    fn default() -> Self {
        ExclusionsFile {
            enabled: Vec::new(),
            level: "informational".into(),
            sinks: None,
            audit_users: Vec::new(),
            maintenance_windows: Vec::new(),
        }
    }
}

/// The name of a shipped filter; unknown names are refused while parsing
/// (so the error has the line and column).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FilterName(pub String);

impl<'de> Deserialize<'de> for FilterName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        let known = rules::bundled_filter_names();
        if known.contains(&name.as_str()) {
            return Ok(FilterName(name));
        }
        let hint = known
            .iter()
            .min_by_key(|k| strsim::levenshtein(k, &name))
            .filter(|k| strsim::levenshtein(k, &name) <= 3)
            .map(|k| format!(" (did you mean '{k}'?)"))
            .unwrap_or_default();
        Err(de::Error::custom(format!(
            "unknown exclusion '{name}'{hint}; shipped ones: {}",
            known.join(", ")
        )))
    }
}

/// One weekly maintenance window as written.
///
/// Times and the zone are checked while parsing, by functions that know
/// their key: serde_yaml reports such an error at the window's line with
/// the window's path but not the key, so the message names it.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct WindowFile {
    /// Days the window opens on.
    pub days: Vec<Day>,
    #[serde(deserialize_with = "start_time")]
    pub start: ClockTime,
    #[serde(deserialize_with = "end_time")]
    pub end: ClockTime,
    /// IANA time zone name (`Europe/Berlin`, `UTC`).
    #[serde(deserialize_with = "zone_name")]
    pub timezone: ZoneName,
    /// Who may stop the service in it (matched like `audit_users`).
    pub users: Vec<UserRef>,
}

fn clock_time<'de, D: Deserializer<'de>>(d: D, key: &str) -> Result<ClockTime, D::Error> {
    let text = String::deserialize(d)?;
    ClockTime::parse(&text).ok_or_else(|| {
        de::Error::custom(format!(
            "{key}: '{text}' is not a time of day HH:MM between 00:00 and 24:00"
        ))
    })
}

fn start_time<'de, D: Deserializer<'de>>(d: D) -> Result<ClockTime, D::Error> {
    clock_time(d, "start")
}

fn end_time<'de, D: Deserializer<'de>>(d: D) -> Result<ClockTime, D::Error> {
    clock_time(d, "end")
}

fn zone_name<'de, D: Deserializer<'de>>(d: D) -> Result<ZoneName, D::Error> {
    let name = String::deserialize(d)?;
    TimeZone::get(&name).map_err(|e| {
        de::Error::custom(format!(
            "timezone: unknown time zone '{name}' ({e}); use an IANA name from \
             /usr/share/zoneinfo such as Europe/Berlin, or UTC"
        ))
    })?;
    Ok(ZoneName(name))
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Day {
    #[serde(alias = "monday")]
    Mon,
    #[serde(alias = "tuesday")]
    Tue,
    #[serde(alias = "wednesday")]
    Wed,
    #[serde(alias = "thursday")]
    Thu,
    #[serde(alias = "friday")]
    Fri,
    #[serde(alias = "saturday")]
    Sat,
    #[serde(alias = "sunday")]
    Sun,
}

impl Day {
    fn weekday(self) -> Weekday {
        match self {
            Day::Mon => Weekday::Monday,
            Day::Tue => Weekday::Tuesday,
            Day::Wed => Weekday::Wednesday,
            Day::Thu => Weekday::Thursday,
            Day::Fri => Weekday::Friday,
            Day::Sat => Weekday::Saturday,
            Day::Sun => Weekday::Sunday,
        }
    }
}

/// A wall-clock time `HH:MM`, as seconds since midnight; `24:00` is the
/// end of the day.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClockTime(pub u32);

impl ClockTime {
    pub fn parse(text: &str) -> Option<ClockTime> {
        let (h, m) = text.split_once(':')?;
        if h.len() != 2 || m.len() != 2 {
            return None;
        }
        let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
        if m > 59 || h > 24 || (h == 24 && m != 0) {
            return None;
        }
        Some(ClockTime(h * 3600 + m * 60))
    }
}

/// An IANA time zone name the system's zoneinfo knows; checked while
/// parsing so a typo is reported with its window's line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ZoneName(pub String);

/// A resolved maintenance window.
#[derive(Clone, Debug)]
pub struct Window {
    days: Vec<Weekday>,
    start: u32,
    end: u32,
    tz: TimeZone,
    users: Vec<UserRef>,
}

impl Window {
    /// Checks what serde could not (it has no line then: the message names
    /// the key) and loads the time zone.
    pub fn resolve(w: &WindowFile, key: &str) -> Result<Window, String> {
        if w.days.is_empty() {
            return Err(format!("{key}.days: the list is empty"));
        }
        if w.users.is_empty() {
            return Err(format!(
                "{key}.users: the list is empty; the window would exclude nobody"
            ));
        }
        if w.start == w.end {
            return Err(format!(
                "{key}: start and end are both {:02}:{:02}; for a whole day use 00:00 to 24:00",
                w.start.0 / 3600,
                w.start.0 / 60 % 60
            ));
        }
        if w.start.0 == 86_400 {
            return Err(format!("{key}.start: 24:00 is only valid as an end"));
        }
        let tz = TimeZone::get(&w.timezone.0)
            .map_err(|e| format!("{key}.timezone: '{}': {e}", w.timezone.0))?;
        Ok(Window {
            days: w.days.iter().map(|d| d.weekday()).collect(),
            start: w.start.0,
            end: w.end.0,
            tz,
            users: w.users.clone(),
        })
    }

    /// Whether the window is open at `now`.
    pub fn covers(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let t = local.time();
        let secs = u32::from(t.hour().unsigned_abs()) * 3600
            + u32::from(t.minute().unsigned_abs()) * 60
            + u32::from(t.second().unsigned_abs());
        let today = local.weekday();
        if self.start < self.end {
            return self.days.contains(&today) && secs >= self.start && secs < self.end;
        }
        // Runs past midnight: the evening part on a listed day, or the
        // morning part on the day after one.
        (self.days.contains(&today) && secs >= self.start)
            || (self.days.contains(&today.previous()) && secs < self.end)
    }
}

/// What `exclusions:` resolves to: checked and ready to build.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    pub enabled: Vec<String>,
    /// `None` keeps the rule's level.
    pub level: Option<String>,
    pub sinks: Option<Vec<SinkConfig>>,
    pub audit_users: Vec<UserRef>,
    pub windows: Vec<Window>,
}

impl Settings {
    /// Validates `file`; messages name the key (`exclusions.…`).
    pub fn resolve(file: ExclusionsFile) -> Result<Settings, String> {
        let mut enabled: Vec<String> = Vec::new();
        for FilterName(name) in file.enabled {
            if enabled.contains(&name) {
                return Err(format!("exclusions.enabled: '{name}' is listed twice"));
            }
            enabled.push(name);
        }
        let level = match file.level.as_str() {
            "" => None,
            l if LEVELS.contains(&l) => Some(l.to_owned()),
            other => {
                return Err(format!(
                    "exclusions.level: '{other}' is not one of {}",
                    LEVELS.join(", ")
                ));
            }
        };
        if let Some(sinks) = &file.sinks {
            if sinks.is_empty() {
                return Err(
                    "exclusions.sinks: the list is empty; suppressed alerts would go \
                            nowhere (omit the key to use the alert sinks)"
                        .into(),
                );
            }
            for (i, s) in sinks.iter().enumerate() {
                s.validate()
                    .map_err(|m| format!("exclusions.sinks[{i}]: {m}"))?;
            }
        }
        let windows = file
            .maintenance_windows
            .iter()
            .enumerate()
            .map(|(i, w)| Window::resolve(w, &format!("exclusions.maintenance_windows[{i}]")))
            .collect::<Result<Vec<_>, _>>()?;
        let on = |n: &str| enabled.iter().any(|e| e == n);
        if on("audit_users") && file.audit_users.is_empty() {
            return Err(
                "exclusions.audit_users: empty, but 'audit_users' is enabled; list the users"
                    .into(),
            );
        }
        if on("maintenance_window") && windows.is_empty() {
            return Err(
                "exclusions.maintenance_windows: empty, but 'maintenance_window' is \
                        enabled; declare a window"
                    .into(),
            );
        }
        Ok(Settings {
            enabled,
            level,
            sinks: file.sinks,
            audit_users: file.audit_users,
            windows,
        })
    }
}

/// Why a hit was suppressed: what the alert carries next to
/// `suppressed_by`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Suppression {
    pub filter_id: Option<String>,
    pub filter_title: String,
    /// The rule's own level, before it was lowered.
    pub rule_level: Option<String>,
    /// The ancestor whose fields made the filter's condition fail, when
    /// it was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ancestor: Option<AncestorRef>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AncestorRef {
    pub image: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub image_invoked: String,
    pub command_line: String,
}

/// The enabled filters, compiled; part of an [`crate::engine::Engine`], so
/// a reload swaps them together with the rules.
#[derive(Debug, Default)]
pub struct Exclusions {
    filters: FilterSet,
    /// Per filter: its name (file stem).
    names: Vec<String>,
    /// Per rule of the rule set: the filters naming it, in `enabled`
    /// order (the first that excludes is reported).
    by_rule: Vec<Vec<usize>>,
    audit_users: Vec<UserRef>,
    windows: Vec<Window>,
    level: Option<String>,
}

/// An excluded hit: the filter's name and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Excluded {
    pub name: String,
    pub suppression: Suppression,
}

impl Exclusions {
    /// Compiles the enabled shipped filters for `rules`. A filter none of
    /// whose rules is loaded is reported in the returned warnings (it can
    /// exclude nothing), not refused: `--no-bundled` is legitimate.
    pub fn build(
        settings: &Settings,
        rules: &RuleSet,
    ) -> Result<(Exclusions, Vec<String>), String> {
        let mut sources = Vec::new();
        for name in &settings.enabled {
            sources.push(
                rules::bundled_filter(name)
                    .ok_or_else(|| format!("exclusions.enabled: no shipped filter '{name}'"))?,
            );
        }
        let (filters, errors) = FilterSet::load(sources);
        if !errors.is_empty() {
            let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            return Err(format!("exclusion filters: {}", list.join("; ")));
        }
        let mut by_rule = vec![Vec::new(); rules.len()];
        let mut warnings = Vec::new();
        for (f, name) in settings.enabled.iter().enumerate() {
            let mut found = false;
            for (r, rule) in rules.rules().iter().enumerate() {
                let named = filters
                    .targets(f)
                    .iter()
                    .any(|t| rule.meta.id.as_deref() == Some(t.as_str()) || rule.meta.title == *t);
                if named {
                    by_rule[r].push(f);
                    found = true;
                }
            }
            if !found {
                warnings.push(format!(
                    "exclusion '{name}': none of the rules it covers is loaded"
                ));
            }
        }
        Ok((
            Exclusions {
                filters,
                names: settings.enabled.clone(),
                by_rule,
                audit_users: settings.audit_users.clone(),
                windows: settings.windows.clone(),
                level: settings.level.clone(),
            },
            warnings,
        ))
    }

    /// Whether any enabled filter names rule `rule`.
    pub fn covers_rule(&self, rule: usize) -> bool {
        self.by_rule.get(rule).is_some_and(|f| !f.is_empty())
    }

    /// The level suppressed alerts get (`None`: keep the rule's).
    pub fn level(&self) -> Option<&str> {
        self.level.as_deref()
    }

    /// Evaluates every enabled filter on `event` and its `ancestors`
    /// (nearest first) at `now`: per filter, whether it excludes and why.
    pub fn evaluate(
        &self,
        event: &dyn Event,
        ancestors: &[&Proc],
        now: Timestamp,
    ) -> Vec<Option<AncestorHit>> {
        let audit_user = matches_user(&self.audit_users, event);
        let in_window = self
            .windows
            .iter()
            .any(|w| matches_user(&w.users, event) && w.covers(now));
        let mut verdict: Vec<Option<AncestorHit>> = vec![None; self.filters.len()];
        let mut holding = Vec::new();
        let views = std::iter::once(None).chain(ancestors.iter().map(|a| Some(*a)));
        for ancestor in views {
            holding.clear();
            let view = View {
                event,
                ancestor,
                audit_user,
                in_window,
            };
            self.filters.holding(&view, &mut holding);
            for (f, v) in verdict.iter_mut().enumerate() {
                if v.is_none() && !holding.contains(&f) {
                    *v = Some(AncestorHit(ancestor.map(|a| AncestorRef {
                        image: a.image.clone(),
                        image_invoked: a.image_invoked.clone(),
                        command_line: a.command_line.clone(),
                    })));
                }
            }
            if verdict.iter().all(Option::is_some) {
                break;
            }
        }
        verdict
    }

    /// The first filter naming `rule` that excludes, given the verdicts
    /// of [`Exclusions::evaluate`].
    pub fn excluding(
        &self,
        rule: usize,
        rule_level: Option<&str>,
        verdict: &[Option<AncestorHit>],
    ) -> Option<Excluded> {
        let f = *self
            .by_rule
            .get(rule)?
            .iter()
            .find(|&&f| verdict.get(f).is_some_and(Option::is_some))?;
        let meta = &self.filters.filters()[f];
        let ancestor = verdict[f].as_ref().and_then(|h| h.0.clone());
        Some(Excluded {
            name: self.names[f].clone(),
            suppression: Suppression {
                filter_id: meta.id.clone(),
                filter_title: meta.title.clone().unwrap_or_else(|| self.names[f].clone()),
                rule_level: rule_level.map(str::to_owned),
                ancestor,
            },
        })
    }
}

/// A filter's condition failed on this view: the ancestor, or `None` for
/// the event itself.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AncestorHit(pub Option<AncestorRef>);

/// Whether the event's `User`/`LoginUser` (or their uids `LogonId`,
/// `LoginUid`) is one of `users`.
fn matches_user(users: &[UserRef], event: &dyn Event) -> bool {
    if users.is_empty() {
        return false;
    }
    let text = |f: &str| match event.field(f) {
        Some(Value::Str(s)) => Some(s.into_owned()),
        _ => None,
    };
    let num = |f: &str| match event.field(f) {
        Some(Value::Int(n)) => u32::try_from(n).ok(),
        _ => None,
    };
    let names = [text("User"), text("LoginUser")];
    let uids = [num("LogonId"), num("LoginUid")];
    users.iter().any(|u| match u {
        UserRef::Name(n) => names.iter().flatten().any(|x| x == n),
        UserRef::Uid(id) => uids.iter().flatten().any(|x| x == id),
    })
}

/// The event seen with one ancestor's fields and the config-derived flags.
struct View<'a> {
    event: &'a dyn Event,
    ancestor: Option<&'a Proc>,
    audit_user: bool,
    in_window: bool,
}

impl Event for View<'_> {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match name {
            "DeclaredAuditUser" => Some(Value::Bool(self.audit_user)),
            "AdminInMaintenanceWindow" => Some(Value::Bool(self.in_window)),
            "AncestorImage" => self.ancestor.and_then(|a| nonempty(&a.image)),
            "AncestorImageInvoked" => self.ancestor.and_then(|a| nonempty(&a.image_invoked)),
            "AncestorInterpreter" => self
                .ancestor
                .and_then(|a| a.interpreter.as_deref().and_then(nonempty)),
            "AncestorCommandLine" => self.ancestor.and_then(|a| nonempty(&a.command_line)),
            "AncestorUser" => self.ancestor.and_then(|a| nonempty(&a.user)),
            _ => self.event.field(name),
        }
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        self.event.for_each_string(f);
        if let Some(a) = self.ancestor {
            for v in [&a.image, &a.image_invoked, &a.command_line] {
                f(v);
            }
        }
    }
}

/// A string field, absent when empty (never a placeholder).
fn nonempty(v: &str) -> Option<Value<'_>> {
    (!v.is_empty()).then_some(Value::Str(Cow::Borrowed(v)))
}

#[cfg(test)]
mod tests {
    use std::{path::Path, sync::Arc};

    use jiff::civil::date;
    use serde_json::json;

    use super::*;
    use crate::{config, replay::JsonEvent};

    const SEED: &str = "36388120-b3f1-4ce9-b50b-280d9a7f4c04";
    const SERVICE_STOP: &str = "4bc4b942-1d01-4251-9a3c-f994c90c6e63";
    const DBUS: &str = "997c0b33-3f68-48c4-977f-87418da39dcd";

    fn window(days: &[Day], start: &str, end: &str, tz: &str) -> Window {
        Window::resolve(
            &WindowFile {
                days: days.to_vec(),
                start: ClockTime::parse(start).expect("start"),
                end: ClockTime::parse(end).expect("end"),
                timezone: ZoneName(tz.into()),
                users: vec![UserRef::Name("alice".into())],
            },
            "w",
        )
        .expect("valid window")
    }

    /// The instant of a wall-clock time in `tz`.
    fn at(tz: &str, y: i16, m: i8, d: i8, h: i8, min: i8) -> Timestamp {
        date(y, m, d)
            .at(h, min, 0, 0)
            .in_tz(tz)
            .expect("valid local time")
            .timestamp()
    }

    #[test]
    fn window_opens_on_its_days_between_start_and_end() {
        // 2026-12-05 is a Saturday.
        let w = window(&[Day::Sat], "02:00", "04:00", "UTC");
        assert!(!w.covers(at("UTC", 2026, 12, 5, 1, 59)));
        assert!(w.covers(at("UTC", 2026, 12, 5, 2, 0)), "start is inclusive");
        assert!(w.covers(at("UTC", 2026, 12, 5, 3, 59)));
        assert!(!w.covers(at("UTC", 2026, 12, 5, 4, 0)), "end is exclusive");
        assert!(
            !w.covers(at("UTC", 2026, 12, 6, 3, 0)),
            "Sunday is not listed"
        );
    }

    #[test]
    fn window_past_midnight_runs_into_the_next_day() {
        // Friday 22:00 to Saturday 02:00, and not Saturday night.
        let w = window(&[Day::Fri], "22:00", "02:00", "UTC");
        assert!(w.covers(at("UTC", 2026, 12, 4, 23, 30)));
        assert!(w.covers(at("UTC", 2026, 12, 5, 1, 30)));
        assert!(!w.covers(at("UTC", 2026, 12, 5, 2, 0)));
        assert!(!w.covers(at("UTC", 2026, 12, 5, 23, 0)));
        assert!(!w.covers(at("UTC", 2026, 12, 4, 21, 59)));
        // Sunday night wraps to Monday morning across the week's end.
        let w = window(&[Day::Sun], "23:00", "01:00", "UTC");
        assert!(w.covers(at("UTC", 2026, 12, 7, 0, 30)));
    }

    #[test]
    fn window_is_in_its_own_time_zone() {
        let w = window(&[Day::Sat], "02:00", "04:00", "Europe/Berlin");
        // 02:30 in Berlin (CET, UTC+1) is 01:30 UTC.
        assert!(w.covers(at("UTC", 2026, 12, 5, 1, 30)));
        assert!(!w.covers(at("UTC", 2026, 12, 5, 3, 30)));
        // Friday 20:00 in New York is Saturday 01:00 UTC: not Saturday there.
        let w = window(&[Day::Sat], "00:00", "24:00", "America/New_York");
        assert!(!w.covers(at("UTC", 2026, 12, 5, 1, 0)));
        assert!(w.covers(at("UTC", 2026, 12, 5, 6, 0)));
    }

    #[test]
    fn window_follows_daylight_saving_time() {
        let w = window(&[Day::Sun], "01:00", "04:00", "Europe/Berlin");
        // 2026-03-29: 02:00 CET jumps to 03:00 CEST. 01:30 local is 00:30
        // UTC, 03:30 local is 01:30 UTC, and 04:00 local is 02:00 UTC.
        assert!(w.covers(at("UTC", 2026, 3, 29, 0, 30)));
        assert!(w.covers(at("UTC", 2026, 3, 29, 1, 30)));
        assert!(!w.covers(at("UTC", 2026, 3, 29, 2, 0)));
        // 2026-10-25: 03:00 CEST goes back to 02:00 CET; local 04:00 is
        // 03:00 UTC, so the window lasts four real hours.
        assert!(w.covers(at("UTC", 2026, 10, 24, 23, 0)));
        assert!(w.covers(at("UTC", 2026, 10, 25, 2, 59)));
        assert!(!w.covers(at("UTC", 2026, 10, 25, 3, 0)));
    }

    fn config_error(text: &str) -> String {
        let path = Path::new("/etc/sigexec/config.yaml");
        match config::parse(path, text) {
            Err(e) => e.to_string(),
            Ok(file) => config::resolve(
                &config::Overrides {
                    config: Some(path.into()),
                    ..config::Overrides::default()
                },
                file,
            )
            .expect_err("must be refused")
            .to_string(),
        }
    }

    #[test]
    fn bad_exclusion_config_names_the_key_and_line() {
        let bad_tz = "exclusions:\n  enabled: [maintenance_window]\n  maintenance_windows:\n    - days: [sat]\n      start: '02:00'\n      end: '04:00'\n      timezone: Europe/Berln\n      users: [alice]\n";
        let msg = config_error(bad_tz);
        assert!(
            msg.starts_with(
                "/etc/sigexec/config.yaml:4:7: exclusions.maintenance_windows[0]: timezone: \
                 unknown time zone 'Europe/Berln'"
            ),
            "{msg}"
        );
        let msg = config_error(&bad_tz.replace("'04:00'", "'4:60'"));
        assert!(
            msg.starts_with(
                "/etc/sigexec/config.yaml:4:7: exclusions.maintenance_windows[0]: end: '4:60' is \
                 not a time of day HH:MM between 00:00 and 24:00"
            ),
            "{msg}"
        );
        let msg = config_error("exclusions:\n  enabled: [package_managers]\n");
        assert!(
            msg.starts_with(
                "/etc/sigexec/config.yaml:2:12: exclusions.enabled: unknown exclusion \
                 'package_managers' (did you mean 'package_manager'?); shipped ones: \
                 audit_users, config_management, maintenance_window, package_manager, \
                 security_scanner"
            ),
            "{msg}"
        );
        let msg = config_error("exclusions:\n  enabled: []\n  admin_users: [bob]\n");
        assert!(
            msg.starts_with(
                "/etc/sigexec/config.yaml:3:3: exclusions: unknown field `admin_users`"
            ),
            "{msg}"
        );
        assert_eq!(
            config_error("exclusions:\n  enabled: [audit_users]\n"),
            "/etc/sigexec/config.yaml: exclusions.audit_users: empty, but 'audit_users' is \
             enabled; list the users"
        );
        assert_eq!(
            config_error("exclusions:\n  level: urgent\n"),
            "/etc/sigexec/config.yaml: exclusions.level: 'urgent' is not one of informational, \
             low, medium, high, critical"
        );
        assert_eq!(
            config_error(
                &bad_tz
                    .replace("Europe/Berln", "UTC")
                    .replace("'04:00'", "'02:00'")
            ),
            "/etc/sigexec/config.yaml: exclusions.maintenance_windows[0]: start and end are both \
             02:00; for a whole day use 00:00 to 24:00"
        );
    }

    fn proc(image: &str, invoked: &str, command_line: &str) -> Proc {
        Proc {
            image: image.into(),
            image_invoked: invoked.into(),
            interpreter: None,
            command_line: command_line.into(),
            uid: 0,
            user: "root".into(),
            guid: String::new(),
            creator: None,
            parent: None,
            exited_ns: None,
            last_signal: None,
        }
    }

    fn exclusions(file: &str) -> (Exclusions, Arc<RuleSet>) {
        let file = config::parse(Path::new("c.yaml"), file).expect("parse");
        let settings = Settings::resolve(file.exclusions).expect("valid");
        let loaded = rules::load(true, &[]);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let (ex, warnings) = Exclusions::build(&settings, &loaded.rules).expect("builds");
        assert!(warnings.is_empty(), "{warnings:?}");
        (ex, Arc::new(loaded.rules))
    }

    fn rule_index(rules: &RuleSet, id: &str) -> usize {
        rules
            .rules()
            .iter()
            .position(|r| r.meta.id.as_deref() == Some(id))
            .expect("rule loaded")
    }

    /// Which filter suppresses the seed rule's hit on this event.
    fn suppressed_by(
        ex: &Exclusions,
        rules: &RuleSet,
        event: serde_json::Value,
        ancestors: &[Proc],
        now: Timestamp,
    ) -> Option<String> {
        let map = event.as_object().expect("object").clone();
        let refs: Vec<&Proc> = ancestors.iter().collect();
        let verdict = ex.evaluate(&JsonEvent(&map), &refs, now);
        ex.excluding(rule_index(rules, SEED), Some("high"), &verdict)
            .map(|e| e.name)
    }

    fn stop() -> serde_json::Value {
        json!({"Image": "/usr/bin/systemctl", "CommandLine": "systemctl stop kesl",
               "User": "root", "LogonId": 0})
    }

    #[test]
    fn every_shipped_filter_compiles_and_covers_the_service_stop_family() {
        let names = rules::bundled_filter_names();
        assert_eq!(
            names,
            [
                "audit_users",
                "config_management",
                "maintenance_window",
                "package_manager",
                "security_scanner"
            ]
        );
        let sources = names
            .iter()
            .map(|n| rules::bundled_filter(n).expect("shipped"));
        let (set, errors) = FilterSet::load(sources);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(set.len(), names.len());
        for (i, name) in names.iter().enumerate() {
            assert_eq!(set.targets(i), [SEED, SERVICE_STOP, DBUS], "{name}");
        }
        // Not loaded as rules: nothing is suppressed unless enabled.
        assert!(rules::bundled().all(|s| !s.name.contains("filters/")));
    }

    #[test]
    fn ancestry_filters_name_the_tool_found_anywhere_up_the_tree() {
        let (ex, rules) = exclusions(
            "exclusions:\n  enabled: [config_management, package_manager, security_scanner]\n",
        );
        let now = Timestamp::now();
        let shell = proc("/usr/bin/bash", "/usr/bin/bash", "bash");
        // A `#!` script: the image is the interpreter, the name is the
        // invoked path.
        let playbook = proc(
            "/usr/bin/python3.11",
            "/usr/bin/ansible-playbook",
            "/usr/bin/python3 /usr/bin/ansible-playbook site.yml",
        );
        assert_eq!(
            suppressed_by(&ex, &rules, stop(), &[shell.clone(), playbook], now).as_deref(),
            Some("config_management")
        );
        // Ansible's module on a managed host: only its command line says so.
        let module = proc(
            "/usr/bin/python3.11",
            "/usr/bin/python3",
            "/usr/bin/python3 /root/.ansible/tmp/ansible-tmp-1/AnsiballZ_systemd.py",
        );
        assert_eq!(
            suppressed_by(&ex, &rules, stop(), &[module], now).as_deref(),
            Some("config_management")
        );
        let dpkg = proc("/usr/bin/dpkg", "/usr/bin/dpkg", "dpkg --configure -a");
        let apt = proc("/usr/bin/apt-get", "/usr/bin/apt-get", "apt-get upgrade");
        assert_eq!(
            suppressed_by(&ex, &rules, stop(), &[shell.clone(), dpkg, apt], now).as_deref(),
            Some("package_manager")
        );
        let clamd = proc("/usr/sbin/clamd", "/usr/sbin/clamd", "clamd");
        assert_eq!(
            suppressed_by(&ex, &rules, stop(), &[clamd], now).as_deref(),
            Some("security_scanner")
        );
        // A plain shell, and a directory that is merely named like a tool.
        let lookalike = proc("/opt/apt/bin/bash", "/opt/apt/bin/bash", "bash");
        assert_eq!(
            suppressed_by(&ex, &rules, stop(), &[shell, lookalike], now),
            None
        );
        assert_eq!(suppressed_by(&ex, &rules, stop(), &[], now), None);
    }

    #[test]
    fn exclusions_are_opt_in_and_cover_only_their_rules() {
        let (ex, rules) = exclusions("exclusions:\n  enabled: [package_manager]\n");
        let apt = proc("/usr/bin/apt-get", "/usr/bin/apt-get", "apt-get upgrade");
        let clamd = proc("/usr/sbin/clamd", "/usr/sbin/clamd", "clamd");
        let now = Timestamp::now();
        assert_eq!(suppressed_by(&ex, &rules, stop(), &[clamd], now), None);
        let map = stop().as_object().expect("object").clone();
        let verdict = ex.evaluate(&JsonEvent(&map), &[&apt], now);
        // The package-removal rule is not in the family: `apt-get remove
        // kesl` still pages.
        let removal = rule_index(&rules, "39248a7b-56b8-437a-82c4-5ff2944d3a57");
        assert!(!ex.covers_rule(removal));
        assert_eq!(ex.excluding(removal, Some("high"), &verdict), None);
        let stop_rule = rule_index(&rules, SERVICE_STOP);
        let e = ex
            .excluding(stop_rule, Some("high"), &verdict)
            .expect("excluded");
        assert_eq!(e.suppression.rule_level.as_deref(), Some("high"));
        assert_eq!(
            e.suppression.ancestor.map(|a| a.image),
            Some("/usr/bin/apt-get".to_owned())
        );
        let (none, _) = exclusions("");
        assert!(!none.covers_rule(stop_rule));
    }

    #[test]
    fn user_filters_match_user_login_user_or_uid_and_windows_need_the_time() {
        let (ex, rules) = exclusions(
            "exclusions:\n  enabled: [audit_users, maintenance_window]\n  audit_users: [auditor, 4242]\n  maintenance_windows:\n    - {days: [sat], start: '02:00', end: '04:00', timezone: UTC, users: [alice]}\n",
        );
        let in_window = at("UTC", 2026, 12, 5, 3, 0);
        let outside = at("UTC", 2026, 12, 5, 5, 0);
        let as_user = |user: &str, uid: u32| {
            json!({"Image": "/usr/bin/systemctl", "CommandLine": "systemctl stop kesl",
                   "User": user, "LogonId": uid})
        };
        let f = |event, now| suppressed_by(&ex, &rules, event, &[], now);
        assert_eq!(
            f(as_user("auditor", 1001), outside).as_deref(),
            Some("audit_users")
        );
        assert_eq!(
            f(as_user("4242", 4242), outside).as_deref(),
            Some("audit_users")
        );
        assert_eq!(
            f(as_user("alice", 1000), in_window).as_deref(),
            Some("maintenance_window")
        );
        assert_eq!(f(as_user("alice", 1000), outside), None);
        assert_eq!(f(as_user("mallory", 1002), in_window), None);
        // sudo: the real uid is root, the login user is the admin.
        let mut sudo = as_user("root", 0);
        sudo["LoginUser"] = "alice".into();
        sudo["LoginUid"] = 1000.into();
        assert_eq!(f(sudo, in_window).as_deref(), Some("maintenance_window"));
    }
}
