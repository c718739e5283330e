//! The `sigexec` binary as a user runs it: `sigexec run` on the bundled
//! rules writes an alert line for a kesl stop, and stops cleanly on
//! SIGTERM; `sigexec replay` and `sigexec rules check` work without root.

mod support;

use std::{
    io::{BufRead as _, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use support::{KESL_RULE, SERVICE_STOP_RULE, ebpf_allowed, fake_tool, tempdir};

const SIGEXEC: &str = env!("CARGO_BIN_EXE_sigexec");

#[test]
fn run_writes_an_alert_line_within_a_second_and_stops_on_sigterm() {
    if !ebpf_allowed("daemon_run") {
        return;
    }
    let (_guard, dir) = tempdir();
    let output = dir.join("alerts.jsonl");
    let mut daemon = Command::new(SIGEXEC)
        .args(["run", "--output"])
        .arg(&output)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start sigexec run");
    // Wait for readiness on stderr, then keep draining it in a thread.
    let stderr = daemon.stderr.take().expect("stderr");
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let log = std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("sigexec ready") {
                let _ = ready_tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("sigexec ready within 30 s");

    let systemctl = fake_tool(&dir, "systemctl");
    let started = Instant::now();
    let mut child = Command::new(&systemctl)
        .args(["stop", "kesl"])
        .spawn()
        .expect("run fake systemctl");
    let pid = child.id();
    child.wait().expect("wait");
    let alert = loop {
        let text = std::fs::read_to_string(&output).unwrap_or_default();
        if let Some(line) = text
            .lines()
            .find(|l| l.contains(&format!("\"ProcessId\":{pid}")) && l.contains(KESL_RULE))
        {
            break serde_json::from_str::<serde_json::Value>(line).expect("alert is one JSON line");
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "no alert for pid {pid} within 5 s; output: {text}"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let latency = started.elapsed();
    eprintln!("exec -> alert line on disk: {latency:?}");
    assert!(latency < Duration::from_secs(1), "alert took {latency:?}");
    assert_eq!(alert["kind"], "alert");
    // One incident, one alert: the seed rule and the pack's service-manager
    // rule both match; one is the alert, the other is folded into it.
    let mut ids = vec![alert["rule"]["id"].as_str().expect("rule id").to_owned()];
    ids.extend(
        alert["related"]
            .as_array()
            .expect("related list")
            .iter()
            .map(|r| r["rule_id"].as_str().expect("related rule id").to_owned()),
    );
    ids.sort();
    assert_eq!(ids, [KESL_RULE, SERVICE_STOP_RULE]);
    assert_eq!(alert["related"][0]["reason"], "same_process");
    assert_eq!(alert["rule"]["level"], "high");
    std::thread::sleep(Duration::from_millis(500));
    let text = std::fs::read_to_string(&output).expect("output");
    let lines_for_pid = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("JSON line"))
        .filter(|v| v["kind"] == "alert" && v["process"]["ProcessId"] == pid)
        .count();
    assert_eq!(lines_for_pid, 1, "one alert line for the exec:\n{text}");
    assert_eq!(alert["match"]["image_as"], "resolved");
    assert_eq!(
        alert["process"]["Image"],
        systemctl.to_str().expect("utf-8")
    );
    assert_eq!(
        alert["process"]["CommandLine"],
        format!("{} stop kesl", systemctl.display())
    );
    assert!(
        alert["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    // Alerts carry the ancestry (computed only for events written out).
    let me = std::env::current_exe().expect("exe");
    assert_eq!(
        alert["process"]["AncestorImages"][0],
        me.to_str().expect("utf-8")
    );

    // SIGTERM: drain, flush, exit 0 within 5 s.
    // SAFETY: kill with a pid we own.
    assert_eq!(unsafe { libc::kill(daemon.id() as i32, libc::SIGTERM) }, 0);
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().expect("wait daemon") {
            break status;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(5),
            "no exit 5 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    let log = log.join().expect("stderr reader");
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        log.join("\n")
    );
    assert!(log.iter().any(|l| l.contains("sigexec stopped")), "{log:?}");
}

#[test]
fn replay_prints_alerts_for_events_from_a_file() {
    let (_guard, dir) = tempdir();
    let events = dir.join("events.jsonl");
    std::fs::write(
        &events,
        concat!(
            r#"{"Image":"/usr/bin/systemctl","CommandLine":"systemctl stop kesl","ProcessId":10}"#,
            "\n",
            r#"{"Image":"/usr/bin/systemctl","CommandLine":"systemctl status kesl","ProcessId":11}"#,
            "\n",
            r#"{"kind":"alert","process":{"Image":"/usr/bin/dash","ImageInvoked":"/etc/init.d/kesl","Interpreter":"/bin/sh","CommandLine":"/bin/sh /etc/init.d/kesl stop","ProcessId":12}}"#,
            "\n",
        ),
    )
    .expect("write events");
    let out = Command::new(SIGEXEC)
        .arg("replay")
        .arg(&events)
        .output()
        .expect("run replay");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let alerts: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    // The seed rule's alerts (the bundled pack's service-manager rule
    // fires on `systemctl stop kesl` too).
    let alerts: Vec<_> = alerts
        .into_iter()
        .filter(|a| a["rule"]["id"] == KESL_RULE)
        .collect();
    let pids: Vec<_> = alerts
        .iter()
        .map(|a| a["process"]["ProcessId"].clone())
        .collect();
    assert_eq!(pids, [10, 12]);
    assert!(alerts.iter().all(|a| a["rule"]["id"] == KESL_RULE));
    // The init script only matches through the interpreter alias: dash does
    // not end with /sh, /bin/sh does.
    assert_eq!(alerts[1]["match"]["image_as"], "interpreter");
    assert_eq!(alerts[1]["match"]["image"], "/bin/sh");
}

#[test]
fn replay_names_the_file_and_line_of_bad_input_and_keeps_going() {
    let (_guard, dir) = tempdir();
    let events = dir.join("events.jsonl");
    std::fs::write(
        &events,
        "{not json\n[1,2]\n{\"Image\":\"/bin/bash\",\"CommandLine\":\"bash -c 'systemctl stop kesl'\"}\n",
    )
    .expect("write events");
    let out = Command::new(SIGEXEC)
        .arg("replay")
        .arg(&events)
        .output()
        .expect("run replay");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = events.display();
    assert!(
        stderr.contains(&format!("{name}:1: invalid json")),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!("{name}:2: expected a JSON object of event fields")),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 1);
}

#[test]
fn rules_check_reports_bad_rules_and_still_loads_the_good_ones() {
    let (_guard, dir) = tempdir();
    std::fs::copy(
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../rules/proc_creation_lnx_av_kaspersky_av_disabled.yml"
        ),
        dir.join("good.yml"),
    )
    .expect("copy rule");
    std::fs::write(
        dir.join("bad.yml"),
        "title: Broken\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  selection:\n    CommandLine|contians: kesl\n  condition: selection\n",
    )
    .expect("write bad rule");
    let out = Command::new(SIGEXEC)
        .args(["rules", "check"])
        .arg(&dir)
        .output()
        .expect("run rules check");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let bad = dir.join("bad.yml");
    assert!(
        stderr.contains(&format!("{}:7:5: rule 'Broken'", bad.display())),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean 'contains'"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 rules loaded, 1 errors, 0 skipped"
    );
}
