//! `sigexec run` as a service: config file, SIGHUP reload (all or nothing,
//! no exec missed), refused rules directories, rate limit, `sigexec
//! status`, bounded SIGTERM.

mod service_support;
mod support;

use std::{collections::HashSet, path::Path, process::Command, time::Duration};

use service_support::{
    Daemon, SIGEXEC, exec, json_lines, kesl_rule_text, rules_dir, unique_rule, wait_line,
};
use support::{ebpf_allowed, fake_tool, tempdir};

fn write_config(dir: &Path, rules: &Path, extra: &str) -> std::path::PathBuf {
    let path = dir.join("config.yaml");
    let text = format!(
        "rules:\n  bundled: false\n  dirs: [{}]\nstats:\n  interval_secs: 0\n  socket: {}\n{extra}",
        rules.display(),
        dir.join("status.sock").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

#[test]
fn unknown_config_key_is_refused_naming_file_line_and_key() {
    let (_guard, dir) = tempdir();
    let config = dir.join("config.yaml");
    std::fs::write(&config, "rules:\n  bundled: true\n  dirz: [/x]\n").expect("write");
    let stderr = service_support::refused_start(&config);
    assert!(
        stderr.contains(&format!(
            "{}:3:3: rules: unknown field `dirz`, expected `bundled` or `dirs`",
            config.display()
        )),
        "{stderr}"
    );
}

#[test]
fn rules_dir_writable_by_others_is_refused_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o777)).expect("chmod");
    let config = write_config(&dir, &rules, "");
    let stderr = service_support::refused_start(&config);
    assert!(
        stderr.contains(&format!("refusing rules from {}", rules.display())),
        "{stderr}"
    );
    assert!(
        stderr.contains("anyone who can change the rules can blind the sensor"),
        "{stderr}"
    );
}

#[test]
fn reload_storm_misses_no_exec() {
    if !ebpf_allowed("reload_storm_misses_no_exec") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    std::fs::write(rules.join("kesl.yml"), kesl_rule_text()).expect("write rule");
    let config = write_config(&dir, &rules, "");
    let output = dir.join("events.jsonl");
    let mut daemon = Daemon::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--all-events",
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    let tool = fake_tool(&dir, "storm-probe");
    let mut pids = HashSet::new();
    let mut hups = 0;
    for i in 0..400 {
        if i % 8 == 0 {
            daemon.signal(libc::SIGHUP);
            hups += 1;
        }
        pids.insert(exec(&tool, &["storm"]));
    }
    // Every HUP reloads (coalesced while one is in flight), then a marker.
    daemon.wait_log("reloaded", Duration::from_secs(20));
    let marker = exec(&tool, &["marker"]);
    wait_line(&output, Duration::from_secs(20), |v| {
        v["process"]["ProcessId"] == marker
    });
    daemon.stop();
    let seen: HashSet<u64> = json_lines(&output)
        .iter()
        .filter(|v| v["kind"] == "event" && v["process"]["Argv"][1] == "storm")
        .filter_map(|v| v["process"]["ProcessId"].as_u64())
        .collect();
    let missing: Vec<_> = pids
        .iter()
        .filter(|p| !seen.contains(&u64::from(**p)))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of 400 execs missing: {missing:?}",
        missing.len()
    );
    assert_eq!(seen.len(), 400);
    let log = daemon.log();
    assert!(log.iter().any(|l| l.contains("reloaded")));
    assert!(
        !log.iter().any(|l| l.contains("reload failed")),
        "{}",
        log.join("\n")
    );
    eprintln!(
        "{hups} SIGHUPs, {} reloads",
        log.iter().filter(|l| l.contains("reloaded")).count()
    );
}

#[test]
fn bad_rule_on_reload_keeps_the_old_rules_and_says_why() {
    if !ebpf_allowed("bad_rule_on_reload_keeps_the_old_rules") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    let token = format!("sigexec-old-rule-{}", std::process::id());
    let old_id = unique_rule(&rules, "old", &token);
    let config = write_config(&dir, &rules, "");
    let output = dir.join("alerts.jsonl");
    let mut daemon = Daemon::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]);

    // A broken rule: the reload fails, says which file and why.
    let bad = rules.join("bad.yml");
    std::fs::write(
        &bad,
        "title: Broken\nlogsource:\n  product: linux\n  category: process_creation\ndetection:\n  selection:\n    CommandLine|contians: kesl\n  condition: selection\n",
    )
    .expect("write bad rule");
    daemon.signal(libc::SIGHUP);
    let failed = daemon.wait_log("reload failed", Duration::from_secs(20));
    assert!(
        failed.contains("keeping the previous config and rules"),
        "{failed}"
    );
    let log = daemon.log().join("\n");
    assert!(
        log.contains(&format!("{}:7:5: rule 'Broken'", bad.display())),
        "{log}"
    );

    // The old rule still fires.
    let systemctl = fake_tool(&dir, "systemctl");
    let pid = exec(&systemctl, &[&token]);
    let alert = wait_line(&output, Duration::from_secs(10), |v| {
        v["process"]["ProcessId"] == pid
    });
    assert_eq!(alert["rule"]["id"], old_id.as_str());

    // Fixed and extended: the reload succeeds and the new rule fires too.
    std::fs::remove_file(&bad).expect("rm bad rule");
    let probe_token = format!("sigexec-reload-probe-{}", std::process::id());
    let probe_id = unique_rule(&rules, "probe", &probe_token);
    daemon.signal(libc::SIGHUP);
    let reloaded = daemon.wait_log("reloaded", Duration::from_secs(20));
    assert!(reloaded.contains("rules=2"), "{reloaded}");
    let probe = exec(&systemctl, &[&probe_token]);
    let alert = wait_line(&output, Duration::from_secs(10), |v| {
        v["process"]["ProcessId"] == probe
    });
    assert_eq!(alert["rule"]["id"], probe_id.as_str());

    // sigexec status reports the counters.
    let status = service_support::status(&dir.join("status.sock"));
    assert_eq!(status["rules"], 2);
    assert_eq!(status["reloads"], 1);
    assert_eq!(status["reload_failures"], 1);
    assert_eq!(status["alerts_by_rule"][&old_id], 1);
    assert_eq!(status["alerts_by_rule"][&probe_id], 1);
    assert_eq!(status["alerts"], 2);
    assert_eq!(status["alerts"], 2);
    assert!(
        status["events"].as_u64().is_some_and(|n| n >= 2),
        "{status}"
    );
    assert!(
        status["process_table"].as_u64().is_some_and(|n| n > 0),
        "{status}"
    );
    assert!(status["uptime_secs"].is_u64(), "{status}");
    assert_eq!(status["lost"], 0);
    daemon.stop();
}

#[test]
fn rate_limit_passes_the_first_alert_and_counts_the_rest() {
    if !ebpf_allowed("rate_limit_passes_the_first_alert") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    let token = format!("sigexec-rate-limit-{}", std::process::id());
    let id = unique_rule(&rules, "limited", &token);
    let output = dir.join("alerts.jsonl");
    let config = write_config(
        &dir,
        &rules,
        &format!(
            "rate_limit:\n  burst: 2\n  per_second: 0\nsinks:\n  - type: file\n    path: {}\n    fsync: always\n",
            output.display()
        ),
    );
    let mut daemon = Daemon::start(&["--config", config.to_str().expect("utf-8")]);
    let systemctl = fake_tool(&dir, "systemctl");
    let pids: Vec<u32> = (0..5).map(|_| exec(&systemctl, &[&token])).collect();
    // The two allowed alerts arrive; then stop, which writes the summary.
    wait_line(&output, Duration::from_secs(10), |v| {
        v["process"]["ProcessId"] == pids[1]
    });
    daemon.stop();
    let lines = json_lines(&output);
    let alerted: Vec<_> = lines
        .iter()
        .filter(|v| v["kind"] == "alert")
        .map(|v| v["process"]["ProcessId"].clone())
        .collect();
    assert_eq!(alerted, [pids[0], pids[1]]);
    let summary: Vec<_> = lines.iter().filter(|v| v["kind"] == "rate_limit").collect();
    assert_eq!(summary.len(), 1, "{lines:?}");
    assert_eq!(summary[0]["rule"]["id"], id.as_str());
    assert_eq!(summary[0]["suppressed"], 3);
}

#[test]
fn second_sigterm_stops_at_once() {
    if !ebpf_allowed("second_sigterm_stops_at_once") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    // A TCP syslog sink to a listener that never reads keeps the flush
    // from finishing, so only the second signal can end the stop.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = write_config(
        &dir,
        &rules,
        &format!(
            "capture:\n  all_events: true\nshutdown_timeout_secs: 60\nsinks:\n  - type: syslog\n    transport: tcp\n    address: \"{addr}\"\n    backlog: 100000\n"
        ),
    );
    let mut daemon = Daemon::start(&["--config", config.to_str().expect("utf-8")]);
    let (_conn, _) = listener.accept().expect("sigexec connects");
    // Fill the socket buffers: events are ~2 KiB each.
    let tool = fake_tool(&dir, "filler");
    let long = "x".repeat(60_000);
    for _ in 0..200 {
        exec(&tool, &[&long]);
    }
    daemon.signal(libc::SIGTERM);
    daemon.wait_log("draining and stopping", Duration::from_secs(10));
    assert!(daemon.child.try_wait().expect("try_wait").is_none());
    daemon.signal(libc::SIGTERM);
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{}", daemon.log().join("\n"));
    assert!(
        daemon.count_log("stopping now") == 1,
        "{}",
        daemon.log().join("\n")
    );
}

#[test]
fn sd_notify_ready_watchdog_reloading_and_stopping() {
    if !ebpf_allowed("sd_notify") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    let config = write_config(&dir, &rules, "");
    let socket_path = dir.join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("bind notify");
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    let mut daemon = Daemon::spawn_env(
        &["--config", config.to_str().expect("utf-8")],
        &[
            ("NOTIFY_SOCKET", socket_path.to_str().expect("utf-8")),
            // 200 ms: pings every 100 ms.
            ("WATCHDOG_USEC", "200000"),
        ],
    );
    let recv = || {
        let mut buf = [0u8; 4096];
        let n = loop {
            match socket.recv(&mut buf) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r.expect("a notify message within 20 s"),
            }
        };
        String::from_utf8_lossy(&buf[..n]).trim_end().to_owned()
    };
    let ready = recv();
    assert!(ready.lines().any(|l| l == "READY=1"), "{ready}");
    assert!(
        ready
            .lines()
            .any(|l| l == "STATUS=watching execs with 0 rules"),
        "{ready}"
    );
    let next_not_watchdog = || loop {
        let m = recv();
        if m != "WATCHDOG=1" {
            break m;
        }
    };
    assert_eq!(recv(), "WATCHDOG=1");
    daemon.signal(libc::SIGHUP);
    assert!(next_not_watchdog().starts_with("RELOADING=1"));
    assert_eq!(next_not_watchdog(), "READY=1");
    daemon.signal(libc::SIGTERM);
    assert_eq!(next_not_watchdog(), "STOPPING=1");
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert!(status.success(), "{status}");
}

#[test]
fn sighup_reopens_the_alert_file_for_logrotate() {
    if !ebpf_allowed("sighup_reopens_the_alert_file") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    std::fs::write(rules.join("kesl.yml"), kesl_rule_text()).expect("write rule");
    let output = dir.join("alerts.jsonl");
    let rotated = dir.join("alerts.jsonl.1");
    let config = write_config(&dir, &rules, "");
    let mut daemon = Daemon::start(&[
        "--config",
        config.to_str().expect("utf-8"),
        "--output",
        output.to_str().expect("utf-8"),
    ]);
    let systemctl = fake_tool(&dir, "systemctl");
    let before = exec(&systemctl, &["stop", "kesl"]);
    wait_line(&output, Duration::from_secs(10), |v| {
        v["process"]["ProcessId"] == before
    });
    // logrotate: rename, then postrotate sends SIGHUP.
    std::fs::rename(&output, &rotated).expect("rotate");
    daemon.signal(libc::SIGHUP);
    daemon.wait_log("sink reopened", Duration::from_secs(10));
    let after = exec(&systemctl, &["stop", "kesl"]);
    wait_line(&output, Duration::from_secs(10), |v| {
        v["process"]["ProcessId"] == after
    });
    daemon.stop();
    // Other tests' execs match the kesl rule too: keep ours.
    let ours = |path: &Path| -> Vec<serde_json::Value> {
        json_lines(path)
            .iter()
            .filter(|v| v["process"]["Image"] == systemctl.to_str().expect("utf-8"))
            .map(|v| v["process"]["ProcessId"].clone())
            .collect()
    };
    let (old, new) = (ours(&rotated), ours(&output));
    assert_eq!(old, [before]);
    assert_eq!(new, [after]);
}

#[test]
fn stats_record_in_the_log_every_interval() {
    if !ebpf_allowed("stats_record") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    let token = format!("sigexec-stats-{}", std::process::id());
    let id = unique_rule(&rules, "counted", &token);
    let config = dir.join("config.yaml");
    let prom = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr")
    };
    std::fs::write(
        &config,
        format!(
            "rules:\n  bundled: false\n  dirs: [{}]\nstats:\n  interval_secs: 1\n  socket: ''\n  prometheus: '{prom}'\nsinks:\n  - type: file\n    path: {}\n",
            rules.display(),
            dir.join("alerts.jsonl").display()
        ),
    )
    .expect("write config");
    let mut daemon = Daemon::start(&["--config", config.to_str().expect("utf-8")]);
    let systemctl = fake_tool(&dir, "systemctl");
    exec(&systemctl, &[&token]);
    // Every record from the next one on counts the alert.
    let n = daemon.count_log(" stats ");
    let line = daemon
        .wait_log_n(" stats ", n + 2, Duration::from_secs(10))
        .pop()
        .expect("a stats line");
    for field in [
        "events=",
        "events_per_second=",
        "lost=0",
        "alerts=1 ",
        "alerts_suppressed=0",
        "process_table=",
        "rules=1",
        "uptime_secs=",
    ] {
        assert!(line.contains(field), "{field} missing: {line}");
    }
    assert!(
        line.contains(&format!("alerts_by_rule={{\"{id}\": 1}}")),
        "{line}"
    );
    // The same counters on the Prometheus endpoint.
    let metrics = {
        use std::io::{Read as _, Write as _};
        let mut conn = std::net::TcpStream::connect(prom).expect("connect prometheus");
        conn.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .expect("request");
        let mut text = String::new();
        conn.read_to_string(&mut text).expect("response");
        text
    };
    assert!(metrics.starts_with("HTTP/1.1 200 OK\r\n"), "{metrics}");
    assert!(
        metrics.contains(&format!("\nsigexec_alerts_total{{rule=\"{id}\"}} 1\n")),
        "{metrics}"
    );
    assert!(metrics.contains("\nsigexec_rules 1\n"), "{metrics}");
    assert!(metrics.contains("\nsigexec_lost_total 0\n"), "{metrics}");
    daemon.stop();
}

#[test]
fn stop_is_bounded_by_shutdown_timeout_when_a_sink_hangs() {
    if !ebpf_allowed("stop_is_bounded") {
        return;
    }
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    // A collector that accepts and never reads: the sink's writes block
    // once the socket buffers are full.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let config = write_config(
        &dir,
        &rules,
        &format!(
            "capture:\n  all_events: true\nshutdown_timeout_secs: 1\nsinks:\n  - type: syslog\n    transport: tcp\n    address: \"{addr}\"\n    backlog: 100000\n"
        ),
    );
    let mut daemon = Daemon::start(&["--config", config.to_str().expect("utf-8")]);
    let (_conn, _) = listener.accept().expect("sigexec connects");
    let tool = fake_tool(&dir, "filler");
    let long = "x".repeat(60_000);
    for _ in 0..200 {
        exec(&tool, &[&long]);
    }
    daemon.signal(libc::SIGTERM);
    // shutdown_timeout_secs: 1, well inside the 5 s wait_exit allows.
    let status = daemon.wait_exit(Duration::from_secs(5));
    assert_eq!(status.code(), Some(1), "{}", daemon.log().join("\n"));
    assert_eq!(daemon.count_log("sinks did not flush within 1s"), 1);
}

#[test]
fn rules_check_with_config_uses_the_daemon_loader() {
    use std::os::unix::fs::PermissionsExt as _;
    let (_guard, dir) = tempdir();
    let rules = rules_dir(&dir);
    unique_rule(&rules, "one", "sigexec-check-one");
    let config = write_config(&dir, &rules, "");
    let check = || {
        Command::new(SIGEXEC)
            .args(["rules", "check", "--config"])
            .arg(&config)
            .output()
            .expect("rules check")
    };
    let out = check();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1 rules loaded, 0 errors"
    );
    std::fs::set_permissions(&rules, std::fs::Permissions::from_mode(0o775)).expect("chmod");
    let out = check();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "refusing rules from {r}: {r} is writable by group or others (mode 775)",
            r = rules.display()
        )),
        "{stderr}"
    );
}
