//! The Kaspersky rule pack (`rules/kesl/`) with the seed rule: every way
//! of stopping, disabling or blinding KESL that the README's table lists,
//! replayed as events (no root), and each rule once more on a real exec of
//! a harmless stand-in named like the tool (never a real service).

mod support;

use std::{collections::HashSet, process::Command, sync::Arc};

use sensor::{capture::Options, engine::Engine, replay::JsonEvent, rules};
use support::{Harness, ebpf_allowed, fake_tool, of_pids, rule_ids, tempdir};

const SEED: &str = "36388120-b3f1-4ce9-b50b-280d9a7f4c04";
const SERVICE: &str = "4bc4b942-1d01-4251-9a3c-f994c90c6e63";
const CONTROL: &str = "b5a7985d-7b73-4056-a8ef-74abba316105";
const FILE_PROTECTION: &str = "f3872a9a-e49b-4620-89f5-1c8fdd7848f6";
const KILL: &str = "282b733d-6b8a-4611-8b68-9a1f9f5bb42e";
const DISCOVERY: &str = "cb4b2a5b-9bc3-415c-9bce-2ef21358bd1c";
const PACKAGE: &str = "39248a7b-56b8-437a-82c4-5ff2944d3a57";
const DBUS: &str = "997c0b33-3f68-48c4-977f-87418da39dcd";
const FILES: &str = "5404c519-87d6-41d6-8b22-a11005c54b8a";
const TAMPER: &str = "059d914e-8d95-4d62-a257-ee17ad8def97";

/// (Image, ImageInvoked, CommandLine, rules expected to fire).
const CASES: &[(&str, &str, &str, &[&str])] = &[
    // Service managers.
    (
        "/usr/bin/systemctl",
        "",
        "systemctl stop kesl",
        &[SEED, SERVICE],
    ),
    (
        "/usr/bin/systemctl",
        "",
        "systemctl disable --now kesl",
        &[SERVICE],
    ),
    (
        "/usr/bin/systemctl",
        "",
        "systemctl mask kesl.service",
        &[SERVICE],
    ),
    (
        "/usr/bin/systemctl",
        "",
        "systemctl kill -s SIGKILL kesl-supervisor",
        &[SERVICE],
    ),
    (
        "/usr/bin/systemctl",
        "",
        "systemctl freeze kesl",
        &[SERVICE],
    ),
    (
        "/usr/bin/systemctl",
        "",
        "systemctl stop klnagent64",
        &[SERVICE],
    ),
    (
        "/usr/bin/dash",
        "/usr/sbin/service",
        "/bin/sh /usr/sbin/service kesl stop",
        &[SEED, SERVICE],
    ),
    (
        "/usr/bin/dash",
        "/etc/init.d/kesl",
        "/bin/sh /etc/init.d/kesl stop",
        &[SEED],
    ),
    ("/sbin/chkconfig", "", "chkconfig kesl off", &[SERVICE]),
    (
        "/usr/sbin/update-rc.d",
        "",
        "update-rc.d kesl disable",
        &[SERVICE],
    ),
    ("/usr/bin/systemctl", "", "systemctl status kesl", &[]),
    ("/usr/bin/systemctl", "", "systemctl start kesl", &[]),
    ("/usr/bin/systemctl", "", "systemctl restart kesl", &[]),
    ("/usr/bin/systemctl", "", "systemctl is-enabled kesl", &[]),
    ("/usr/bin/systemctl", "", "systemctl stop nginx", &[]),
    // kesl-control.
    (
        "/opt/kaspersky/kesl/bin/kesl-control",
        "",
        "kesl-control --stop-task 1",
        &[CONTROL, FILE_PROTECTION],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --suspend-task File_Threat_Protection",
        &[CONTROL, FILE_PROTECTION],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --delete-task 1",
        &[CONTROL, FILE_PROTECTION],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --stop-task 13",
        &[CONTROL],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --suspend-task 12",
        &[CONTROL],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --set-settings 1 --file /tmp/exclude.ini",
        &[CONTROL],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --set-app-settings ScanExclusions.item_0000.Path=/tmp",
        &[CONTROL],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --revoke-role admin alice",
        &[CONTROL],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --get-task-state 1",
        &[],
    ),
    (
        "/usr/bin/kesl-control",
        "",
        "kesl-control --start-task 1",
        &[],
    ),
    ("/usr/bin/kesl-control", "", "kesl-control --app-info", &[]),
    // Signals by name, and the lookups before a built-in kill.
    ("/usr/bin/pkill", "", "pkill -9 wdserver", &[KILL]),
    ("/usr/bin/killall", "", "killall kesl", &[KILL]),
    ("/usr/bin/kill", "", "kill -9 klnagent", &[KILL]),
    ("/usr/bin/pidof", "", "pidof wdserver", &[DISCOVERY]),
    ("/usr/bin/pgrep", "", "pgrep -f kesl", &[DISCOVERY]),
    (
        "/usr/bin/cat",
        "",
        "cat /var/run/wdserver.pid",
        &[DISCOVERY],
    ),
    ("/usr/bin/pkill", "", "pkill -HUP nginx", &[]),
    ("/usr/bin/kill", "", "kill -9 4242", &[]),
    // Package managers.
    ("/usr/bin/apt-get", "", "apt-get remove -y kesl", &[PACKAGE]),
    ("/usr/bin/apt", "", "apt purge kesl-gui", &[PACKAGE]),
    ("/usr/bin/dpkg", "", "dpkg -P kesl", &[PACKAGE]),
    ("/usr/bin/dpkg", "", "dpkg --remove klnagent64", &[PACKAGE]),
    ("/usr/bin/rpm", "", "rpm -e kesl", &[PACKAGE]),
    ("/usr/bin/yum", "", "yum remove -y kesl", &[PACKAGE]),
    ("/usr/bin/dnf", "", "dnf erase klnagent64", &[PACKAGE]),
    ("/usr/bin/zypper", "", "zypper rm kesl", &[PACKAGE]),
    ("/usr/bin/apt-get", "", "apt-get install kesl", &[]),
    ("/usr/bin/dpkg", "", "dpkg -l kesl", &[]),
    ("/usr/bin/rpm", "", "rpm -qa kesl", &[]),
    // D-Bus calls to systemd.
    (
        "/usr/bin/busctl",
        "",
        "busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StopUnit ss kesl.service replace",
        &[DBUS],
    ),
    (
        "/usr/bin/dbus-send",
        "",
        "dbus-send --system --print-reply --dest=org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager.KillUnit string:kesl.service string:all int32:9",
        &[DBUS],
    ),
    (
        "/usr/bin/gdbus",
        "",
        "gdbus call --system --dest org.freedesktop.systemd1 --object-path /org/freedesktop/systemd1 --method org.freedesktop.systemd1.Manager.MaskUnitFiles ['kesl.service'] false true",
        &[DBUS],
    ),
    (
        "/usr/bin/busctl",
        "",
        "busctl call org.freedesktop.systemd1 /org/freedesktop/systemd1 org.freedesktop.systemd1.Manager StartUnit ss kesl.service replace",
        &[],
    ),
    // Destroying the installation.
    ("/usr/bin/rm", "", "rm -rf /opt/kaspersky", &[FILES]),
    (
        "/usr/bin/rm",
        "",
        "rm -rf /var/opt/kaspersky/kesl",
        &[FILES],
    ),
    ("/usr/bin/find", "", "find /opt/kaspersky -delete", &[FILES]),
    ("/usr/bin/mv", "", "mv /opt/kaspersky /tmp/k", &[FILES]),
    ("/usr/bin/ls", "", "ls /opt/kaspersky", &[]),
    ("/usr/bin/find", "", "find /opt/kaspersky -name *.log", &[]),
    // Tampering with the service definition or the programs' permissions.
    (
        "/usr/bin/ln",
        "",
        "ln -sf /dev/null /etc/systemd/system/kesl.service",
        &[TAMPER],
    ),
    (
        "/usr/bin/rm",
        "",
        "rm -f /lib/systemd/system/kesl.service",
        &[TAMPER],
    ),
    ("/usr/bin/mv", "", "mv /etc/init.d/kesl /root/", &[TAMPER]),
    (
        "/usr/bin/sed",
        "",
        "sed -i s/^ExecStart=/#ExecStart=/ /usr/lib/systemd/system/kesl.service",
        &[TAMPER],
    ),
    (
        "/usr/bin/rm",
        "",
        "rm /etc/systemd/system/multi-user.target.wants/klnagent64.service",
        &[TAMPER],
    ),
    (
        "/usr/bin/chmod",
        "",
        "chmod -x /opt/kaspersky/kesl/bin/wdserver",
        &[TAMPER],
    ),
    (
        "/usr/bin/chattr",
        "",
        "chattr +i /etc/init.d/kesl",
        &[TAMPER],
    ),
    (
        "/usr/bin/sed",
        "",
        "sed -n /ExecStop/p /lib/systemd/system/kesl.service",
        &[],
    ),
    ("/usr/bin/cat", "", "cat /etc/init.d/kesl", &[]),
    ("/usr/bin/ls", "", "ls -l /opt/kaspersky/kesl/bin", &[]),
    (
        "/usr/bin/chmod",
        "",
        "chmod 644 /etc/systemd/system/nginx.service",
        &[],
    ),
];

fn bundled_engine() -> Engine {
    let loaded = rules::load(true, &[]);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    Engine::new(Arc::new(loaded.rules))
}

#[test]
fn every_row_of_the_readme_table_fires_the_rules_it_names() {
    let engine = bundled_engine();
    let ids: Vec<_> = engine
        .rules()
        .rules()
        .iter()
        .map(|r| r.meta.id.clone().unwrap_or_default())
        .collect();
    let mut failures = Vec::new();
    for (image, invoked, command_line, expected) in CASES {
        let mut event = serde_json::json!({"Image": image, "CommandLine": command_line});
        if !invoked.is_empty() {
            event["ImageInvoked"] = (*invoked).into();
            event["Interpreter"] = "/bin/sh".into();
        }
        let map = event.as_object().expect("object").clone();
        let mut hits = Vec::new();
        engine.evaluate(&JsonEvent(&map), &mut hits, &mut Vec::new());
        let mut got: Vec<&str> = hits.iter().map(|h| ids[h.rule].as_str()).collect();
        got.sort();
        let mut want = expected.to_vec();
        want.sort();
        if got != want {
            failures.push(format!("{command_line}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn each_rule_fires_on_a_real_exec() {
    if !ebpf_allowed("kesl_pack") {
        return;
    }
    let (_guard, dir) = tempdir();
    let mut h = Harness::start(&Options::default());
    let runs: &[(&str, &[&str], &[&str])] = &[
        ("systemctl", &["disable", "--now", "kesl"], &[SERVICE]),
        (
            "kesl-control",
            &["--stop-task", "1"],
            &[CONTROL, FILE_PROTECTION],
        ),
        ("pkill", &["-9", "wdserver"], &[KILL]),
        ("pidof", &["wdserver"], &[DISCOVERY]),
        ("apt-get", &["remove", "-y", "kesl"], &[PACKAGE]),
        (
            "busctl",
            &[
                "call",
                "org.freedesktop.systemd1",
                "/org/freedesktop/systemd1",
                "org.freedesktop.systemd1.Manager",
                "StopUnit",
                "ss",
                "kesl.service",
                "replace",
            ],
            &[DBUS],
        ),
        // A stand-in named rm: the real rm is never run on these paths.
        ("rm", &["-rf", "/opt/kaspersky"], &[FILES]),
        (
            "ln",
            &["-sf", "/dev/null", "/etc/systemd/system/kesl.service"],
            &[TAMPER],
        ),
    ];
    let mut pids = Vec::new();
    for (tool, args, _) in runs {
        let path = fake_tool(&dir, tool);
        let mut child = Command::new(&path).args(*args).spawn().expect("spawn");
        pids.push(child.id());
        child.wait().expect("wait");
    }
    let seen = h.collect();
    for ((tool, _, expected), pid) in runs.iter().zip(&pids) {
        let mine = of_pids(&seen, &HashSet::from([*pid]));
        assert_eq!(mine.len(), 1, "{tool}");
        let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        want.sort();
        assert_eq!(rule_ids(&mine[0].alerts), want, "{tool}");
    }
}
