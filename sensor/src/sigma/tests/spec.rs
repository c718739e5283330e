//! Specification tests: one per modifier and per condition construct, with
//! the traps the Sigma spec and pySigma users trip on, plus Sigma filters
//! and duplicate ids. Each test pins behaviour with events that must and
//! must not match, or pins the exact error of a rule that must not load.

use super::*;

fn cmd(c: &'static str) -> Ev {
    Ev::new(&[("Image", "/usr/bin/x"), ("CommandLine", c)])
}

fn only_error(detection: &str) -> String {
    let errors = load_errors(&rule(detection));
    assert_eq!(errors.len(), 1, "{errors:#?}");
    errors[0].clone()
}

// ---------------------------------------------------------------------------
// Traps from the issue.

#[test]
fn trap_backslash_bash_is_a_literal_and_never_matches_bin_bash() {
    check(
        "    sel:\n        Image|endswith: '\\bash'\n    condition: sel\n",
        &[Ev::new(&[("Image", "C:\\tools\\bash")])],
        &[
            Ev::new(&[("Image", "/bin/bash")]),
            Ev::new(&[("Image", "/usr/bin/bash")]),
        ],
    );
}

#[test]
fn trap_etc_star_conf_is_a_live_wildcard() {
    check(
        "    sel:\n        CommandLine: '/etc/*.conf'\n    condition: sel\n",
        &[
            cmd("/etc/ld.so.conf"),
            cmd("/etc/a/b.conf"),
            cmd("/ETC/X.CONF"),
        ],
        &[cmd("/etc/*.confx"), cmd("cat /etc/ld.so.conf")],
    );
}

#[test]
fn trap_all_with_one_value_is_rejected() {
    assert_eq!(
        only_error("    sel:\n        CommandLine|contains|all: kesl\n    condition: sel\n"),
        "test.yml:7:35: rule 'T': search 'sel', field 'CommandLine|contains|all': modifier 'all' needs a list of two or more values; with one value, drop 'all'"
    );
    assert_eq!(
        only_error(
            "    sel:\n        CommandLine|contains|all:\n            - kesl\n    condition: sel\n"
        ),
        "test.yml:8:13: rule 'T': search 'sel', field 'CommandLine|contains|all': modifier 'all' needs a list of two or more values; with one value, drop 'all'"
    );
}

#[test]
fn trap_null_in_a_value_list_is_rejected() {
    assert_eq!(
        only_error(
            "    sel:\n        ParentImage:\n            - /bin/sh\n            - null\n    condition: sel\n"
        ),
        "test.yml:9:15: rule 'T': search 'sel', field 'ParentImage': null cannot be one of several values; write a separate search with 'field: null' and join it with 'or'"
    );
}

// ---------------------------------------------------------------------------
// Modifiers (contains, startswith, endswith, all, exists, cased, re and
// windash are covered in `tests.rs`; these are the rest).

#[test]
fn modifier_base64() {
    check(
        "    sel:\n        CommandLine|base64|contains: /bin/bash\n    condition: sel\n",
        &[cmd("echo L2Jpbi9iYXNo | base64 -d"), cmd("L2JPBI9IYXNO")],
        &[cmd("echo /bin/bash"), cmd("9iaW4vYmFza")],
    );
    check(
        "    sel:\n        CommandLine|base64|cased: /bin/bash\n    condition: sel\n",
        &[cmd("L2Jpbi9iYXNo")],
        &[cmd("L2JPBI9IYXNO")],
    );
}

#[test]
fn modifier_base64offset_matches_each_alignment() {
    let detection =
        "    sel:\n        CommandLine|base64offset|contains: /bin/bash\n    condition: sel\n";
    check(
        detection,
        &[
            cmd("x L2Jpbi9iYXNo y"),
            cmd("xxx9iaW4vYmFzaxxx"),
            cmd("xvYmluL2Jhc2x"),
        ],
        &[cmd("L2Jpbi9iYXM"), cmd("/bin/bash")],
    );
}

#[test]
fn modifier_base64_refuses_wildcards() {
    assert_eq!(
        only_error(
            "    sel:\n        CommandLine|base64offset|contains: /bin/*sh\n    condition: sel\n"
        ),
        "test.yml:7:44: rule 'T': search 'sel', field 'CommandLine|base64offset|contains': modifier 'base64offset' cannot apply to a value with wildcards (escape them as '\\*' or '\\?')"
    );
}

#[test]
fn modifier_utf16le_and_wide_put_a_nul_after_each_character() {
    for m in ["utf16le", "wide"] {
        check(
            &format!("    sel:\n        CommandLine|{m}|contains: ab\n    condition: sel\n"),
            &[Ev::new(&[("CommandLine", "xa\0b\0y")])],
            &[
                Ev::new(&[("CommandLine", "ab")]),
                Ev::new(&[("CommandLine", "\0a\0b")]),
            ],
        );
    }
    check(
        "    sel:\n        CommandLine|wide|base64offset|contains: ping\n    condition: sel\n",
        &[
            cmd("powershell -enc cABpAG4AZwA="),
            cmd("x AAaQBuAGcA x"),
            cmd("wAGkAbgBnA"),
        ],
        &[cmd("cGluZw==")],
    );
}

#[test]
fn modifier_utf16be_puts_the_nul_first() {
    check(
        "    sel:\n        CommandLine|utf16be|contains: ab\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "x\0a\0by")])],
        &[Ev::new(&[("CommandLine", "a\0b\0")])],
    );
}

#[test]
fn modifier_utf16_adds_a_byte_order_mark() {
    check(
        "    sel:\n        CommandLine|utf16|base64: ping\n    condition: sel\n",
        &[cmd("//5wAGkAbgBnAA==")],
        &[cmd("cABpAG4AZwA=")],
    );
    check(
        "    sel:\n        CommandLine|utf16|contains: ab\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "\u{feff}a\0b\0")])],
        &[Ev::new(&[("CommandLine", "a\0b\0")])],
    );
}

#[test]
fn modifier_utf16_refuses_non_ascii_and_order_after_base64() {
    assert_eq!(
        only_error("    sel:\n        CommandLine|wide|contains: é\n    condition: sel\n"),
        "test.yml:7:36: rule 'T': search 'sel', field 'CommandLine|wide|contains': modifier 'wide' only encodes ascii text; 'é' is not ascii"
    );
    assert_eq!(
        only_error("    sel:\n        CommandLine|base64|wide: x\n    condition: sel\n"),
        "test.yml:7:9: rule 'T': search 'sel', field 'CommandLine|base64|wide': modifier 'wide' must come before 'base64'"
    );
}

#[test]
fn modifier_cidr_v4_and_v6() {
    check(
        "    sel:\n        DestinationIp|cidr:\n            - 10.0.0.0/8\n            - 192.168.1.7/32\n            - 'fe80::/10'\n    condition: sel\n",
        &[
            Ev::new(&[("DestinationIp", "10.1.2.3")]),
            Ev::new(&[("DestinationIp", "192.168.1.7")]),
            Ev::new(&[("DestinationIp", "FE80::1")]),
        ],
        &[
            Ev::new(&[("DestinationIp", "11.0.0.1")]),
            Ev::new(&[("DestinationIp", "192.168.1.8")]),
            Ev::new(&[("DestinationIp", "::ffff:10.0.0.1")]),
            Ev::new(&[("DestinationIp", "10.0.0.1x")]),
            Ev::new(&[("DestinationIp", "fec0::1")]),
            Ev::new(&[]),
        ],
    );
    assert_eq!(
        only_error("    sel:\n        DestinationIp|cidr: 10.0.0.0/33\n    condition: sel\n"),
        "test.yml:7:29: rule 'T': search 'sel', field 'DestinationIp|cidr': '10.0.0.0/33' is not an ip network (expected e.g. '10.0.0.0/8' or 'fe80::/10')"
    );
}

#[test]
fn modifier_lt_lte_gt_gte_compare_numbers() {
    let int = |n: i64| Ev::default().with("LogonId", Value::Int(n));
    let text = |s: &'static str| Ev::new(&[("LogonId", s)]);
    check(
        "    sel:\n        LogonId|lt: 1000\n    condition: sel\n",
        &[int(0), int(999), text("999"), int(-5)],
        &[int(1000), int(1001), text("abc"), Ev::default()],
    );
    check(
        "    sel:\n        LogonId|lte: 1000\n    condition: sel\n",
        &[int(1000), text(" 1000 ")],
        &[int(1001)],
    );
    check(
        "    sel:\n        LogonId|gt: 1000\n    condition: sel\n",
        &[int(1001), text("1000.5")],
        &[int(1000)],
    );
    check(
        "    sel:\n        LogonId|gte: 1000\n    condition: sel\n",
        &[int(1000), int(70000)],
        &[int(999)],
    );
    assert_eq!(
        only_error("    sel:\n        LogonId|gt: ten\n    condition: sel\n"),
        "test.yml:7:21: rule 'T': search 'sel', field 'LogonId|gt': modifier 'gt' needs a number, not a string"
    );
}

#[test]
fn modifier_neq_negates_the_item() {
    check(
        "    sel:\n        Image|endswith: /sh\n        User|neq: root\n    condition: sel\n",
        &[
            Ev::new(&[("Image", "/bin/sh"), ("User", "alice")]),
            Ev::new(&[("Image", "/bin/sh")]),
        ],
        &[
            Ev::new(&[("Image", "/bin/sh"), ("User", "root")]),
            Ev::new(&[("Image", "/bin/sh"), ("User", "ROOT")]),
        ],
    );
    check(
        "    sel:\n        User|neq:\n            - root\n            - daemon\n    condition: sel\n",
        &[Ev::new(&[("User", "alice")])],
        &[Ev::new(&[("User", "root")]), Ev::new(&[("User", "daemon")])],
    );
}

#[test]
fn modifier_fieldref_compares_two_fields() {
    check(
        "    sel:\n        User|fieldref: ParentUser\n    condition: sel\n",
        &[Ev::new(&[("User", "bob"), ("ParentUser", "BOB")])],
        &[
            Ev::new(&[("User", "bob"), ("ParentUser", "root")]),
            Ev::new(&[("User", "bob")]),
            Ev::new(&[("ParentUser", "bob")]),
        ],
    );
    check(
        "    sel:\n        CommandLine|fieldref|contains: Image\n    condition: sel\n",
        &[Ev::new(&[
            ("Image", "/bin/ls"),
            ("CommandLine", "exec /bin/ls -l"),
        ])],
        &[Ev::new(&[("Image", "/bin/ls"), ("CommandLine", "ls -l")])],
    );
    check(
        "    sel:\n        User|fieldref|cased: ParentUser\n    condition: sel\n",
        &[Ev::new(&[("User", "bob"), ("ParentUser", "bob")])],
        &[Ev::new(&[("User", "bob"), ("ParentUser", "BOB")])],
    );
    assert_eq!(
        only_error("    sel:\n        User|fieldref: Parent*\n    condition: sel\n"),
        "test.yml:7:24: rule 'T': search 'sel', field 'User|fieldref': modifier 'fieldref' needs a field name, not 'Parent*'"
    );
}

#[test]
fn modifier_expand_without_placeholders_is_plain_and_with_them_an_error() {
    check(
        "    sel:\n        CommandLine|expand|contains: kesl\n    condition: sel\n",
        &[cmd("systemctl stop kesl")],
        &[cmd("ls")],
    );
    assert_eq!(
        only_error("    sel:\n        Image|expand: '%AdminTools%\\x.exe'\n    condition: sel\n"),
        "test.yml:7:23: rule 'T': search 'sel', field 'Image|expand': placeholder '%AdminTools%' cannot be resolved: sigexec defines no placeholders, so list the values instead"
    );
}

// ---------------------------------------------------------------------------
// Condition constructs.

const AB: &str = "    sel_a:\n        CommandLine|contains: alpha\n    sel_b:\n        CommandLine|contains: beta\n    _helper:\n        CommandLine|contains: gamma\n";

fn cond(condition: &str, yes: &[&'static str], no: &[&'static str]) {
    let detection = format!("{AB}    condition: {condition}\n");
    let yes: Vec<Ev> = yes.iter().map(|c| cmd(c)).collect();
    let no: Vec<Ev> = no.iter().map(|c| cmd(c)).collect();
    check(&detection, &yes, &no);
}

#[test]
fn condition_and() {
    cond("sel_a and sel_b", &["alpha beta"], &["alpha", "beta"]);
}

#[test]
fn condition_or() {
    cond("sel_a or sel_b", &["alpha", "beta"], &["gamma"]);
}

#[test]
fn condition_not() {
    cond("not sel_a", &["beta", ""], &["alpha"]);
}

#[test]
fn condition_precedence_not_binds_tighter_than_and_tighter_than_or() {
    // Read as (sel_a and (not sel_b)) or _helper.
    cond(
        "sel_a and not sel_b or _helper",
        &["alpha", "gamma", "alpha beta gamma"],
        &["alpha beta", "beta"],
    );
}

#[test]
fn condition_parentheses_override_precedence() {
    cond(
        "sel_a and not (sel_b or _helper)",
        &["alpha"],
        &["alpha beta", "alpha gamma"],
    );
}

#[test]
fn condition_one_of_pattern() {
    cond("1 of sel_*", &["alpha", "beta"], &["gamma"]);
    cond("any of sel_*", &["alpha", "beta"], &["gamma"]);
}

#[test]
fn condition_all_of_pattern() {
    cond("all of sel_*", &["alpha beta"], &["alpha gamma"]);
}

#[test]
fn condition_them_skips_underscore_identifiers() {
    cond("all of them", &["alpha beta"], &["gamma"]);
    cond("1 of them", &["alpha"], &["gamma"]);
    // An explicit `_` pattern does select them.
    cond("1 of _*", &["gamma"], &["alpha"]);
}

#[test]
fn condition_of_binds_tighter_than_not() {
    cond("not 1 of sel_*", &["gamma"], &["alpha", "beta"]);
}

#[test]
fn condition_list_is_or() {
    let detection = format!("{AB}    condition:\n        - sel_a and sel_b\n        - _helper\n");
    check(
        &detection,
        &[cmd("alpha beta"), cmd("gamma")],
        &[cmd("alpha")],
    );
}

#[test]
fn condition_pattern_matching_nothing_is_an_error() {
    let detection = format!("{AB}    condition: 1 of nothing_*\n");
    assert_eq!(
        load_errors(&rule(&detection)),
        ["test.yml:12:16: rule 'T': condition: '1 of nothing_*' matches no search identifier"]
    );
}

// ---------------------------------------------------------------------------
// Sigma filters and duplicate ids.

const RULE_A: &str = "title: Shell spawned
id: 00000000-0000-0000-0000-00000000000a
logsource:
    product: linux
    category: process_creation
detection:
    sel:
        Image|endswith: /sh
    condition: sel
";

const RULE_B: &str = "title: Curl run
id: 00000000-0000-0000-0000-00000000000b
logsource:
    product: linux
    category: process_creation
detection:
    sel:
        Image|endswith: /curl
    condition: sel
";

fn filter(targets: &str) -> String {
    format!(
        "title: Not from cron
logsource:
    product: linux
    category: process_creation
filter:
    rules:
{targets}
    cron:
        ParentImage|endswith: /cron
    condition: not cron
"
    )
}

fn load_sources(sources: &[(&str, &str)]) -> (RuleSet, Vec<String>) {
    let (set, errors) = RuleSet::load(sources.iter().map(|(n, t)| Source::new(*n, *t)));
    (set, errors.iter().map(ToString::to_string).collect())
}

#[test]
fn filter_by_id_applies_across_sources() {
    let f = filter("        - 00000000-0000-0000-0000-00000000000a");
    let (set, errors) = load_sources(&[("f.yml", &f), ("a.yml", RULE_A), ("b.yml", RULE_B)]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(set.len(), 2);
    assert_eq!(set.filters().len(), 1);
    assert_eq!(set.rules()[0].filters.len(), 1);
    assert!(set.rules()[1].filters.is_empty());
    let sh_from_cron = Ev::new(&[("Image", "/bin/sh"), ("ParentImage", "/usr/sbin/cron")]);
    let sh_from_bash = Ev::new(&[("Image", "/bin/sh"), ("ParentImage", "/bin/bash")]);
    let curl_from_cron = Ev::new(&[
        ("Image", "/usr/bin/curl"),
        ("ParentImage", "/usr/sbin/cron"),
    ]);
    assert_eq!(hits(&set, &sh_from_cron), Vec::<usize>::new());
    assert_eq!(hits(&set, &sh_from_bash), vec![0]);
    assert_eq!(hits(&set, &curl_from_cron), vec![1]);
}

#[test]
fn filter_by_title_and_several_rules_in_one_file() {
    let f = filter("        - Shell spawned\n        - Curl run");
    let text = format!("{RULE_A}---\n{RULE_B}---\n{f}");
    let (set, errors) = load_sources(&[("all.yml", &text)]);
    assert!(errors.is_empty(), "{errors:?}");
    let curl_from_cron = Ev::new(&[
        ("Image", "/usr/bin/curl"),
        ("ParentImage", "/usr/sbin/cron"),
    ]);
    assert!(hits(&set, &curl_from_cron).is_empty());
    assert_eq!(hits(&set, &Ev::new(&[("Image", "/usr/bin/curl")])), vec![1]);
}

#[test]
fn filter_naming_an_unknown_rule_is_an_error() {
    let f = filter("        - 00000000-0000-0000-0000-0000000000ff");
    let (set, errors) = load_sources(&[("a.yml", RULE_A), ("f.yml", &f)]);
    assert_eq!(
        errors,
        [
            "f.yml:7:11: rule 'Not from cron': filter names rule '00000000-0000-0000-0000-0000000000ff', which is not loaded (name rules by id or title)"
        ]
    );
    assert_eq!(set.len(), 1);
}

#[test]
fn filter_with_a_bad_condition_is_an_error() {
    let f = filter("        - Shell spawned").replace("not cron", "not crn");
    let (_, errors) = load_sources(&[("a.yml", RULE_A), ("f.yml", &f)]);
    assert_eq!(
        errors,
        [
            "f.yml:10:20: rule 'Not from cron': condition: unknown search identifier 'crn' (did you mean 'cron'?)"
        ]
    );
}

#[test]
fn duplicate_rule_id_is_an_error_and_the_first_rule_stays() {
    let copy = RULE_A.replace("Shell spawned", "Shell again");
    let (set, errors) = load_sources(&[("a.yml", RULE_A), ("copy.yml", &copy)]);
    assert_eq!(
        errors,
        [
            "copy.yml:2:1: rule 'Shell again': duplicate rule id '00000000-0000-0000-0000-00000000000a' (first used by a.yml:1:1)"
        ]
    );
    assert_eq!(set.len(), 1);
    assert_eq!(set.rules()[0].meta.title, "Shell spawned");
}

#[test]
fn list_line_has_id_level_title_and_source() {
    let (set, errors) = load_sources(&[("rules/a.yml", RULE_A)]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        set.rules()[0].list_line(),
        "00000000-0000-0000-0000-00000000000a\t-\tShell spawned\trules/a.yml:1:1"
    );
    let with_level = RULE_A.replace("title: Shell spawned", "title: \"Tab\\there\"\nlevel: high");
    let (set, _) = load_sources(&[("b.yml", &with_level)]);
    assert_eq!(
        set.rules()[0].list_line(),
        "00000000-0000-0000-0000-00000000000a\thigh\tTab here\tb.yml:1:1"
    );
}
