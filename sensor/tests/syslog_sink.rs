//! The syslog sinks against a real rsyslogd started by the test: RFC 5424
//! over TCP (octet counting), UDP and a Unix datagram socket like
//! `/dev/log`, the JSON alert as MSG; the `asim` format on one of them; and
//! a sink whose collector is down does not stop the others.

mod service_support;
mod support;

use std::{
    path::{Path, PathBuf},
    process::{Child, Command},
    time::{Duration, Instant},
};

use service_support::{Daemon, exec, kesl_rule_text, rules_dir};
use support::{KESL_RULE, ebpf_allowed, fake_tool, tempdir};

fn rsyslogd() -> Option<PathBuf> {
    ["/usr/sbin/rsyslogd", "/sbin/rsyslogd", "/usr/bin/rsyslogd"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
}

fn free_port(udp: bool) -> u16 {
    if udp {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    } else {
        let s = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr").port()
    }
}

struct Rsyslog(Child);

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts rsyslogd writing every message as
/// `input|version|facility|severity|host|app|procid|msgid|sd|msg`.
fn start_rsyslog(dir: &Path, tcp: u16, udp: u16) -> Rsyslog {
    let bin = rsyslogd().expect("rsyslogd");
    let conf = dir.join("rsyslog.conf");
    std::fs::write(
        &conf,
        format!(
            r#"global(workDirectory="{d}")
module(load="imtcp")
module(load="imudp")
module(load="imuxsock" SysSock.Use="off")
input(type="imtcp" port="{tcp}" address="127.0.0.1")
input(type="imudp" port="{udp}" address="127.0.0.1")
input(type="imuxsock" Socket="{d}/log.sock" UseSpecialParser="off")
$MaxMessageSize 256k
template(name="t" type="string" string="%inputname%|%protocol-version%|%syslogfacility-text%|%syslogseverity-text%|%hostname%|%app-name%|%procid%|%msgid%|%structured-data%|%msg%\n")
action(type="omfile" file="{d}/out.log" template="t")
"#,
            d = dir.display()
        ),
    )
    .expect("write rsyslog.conf");
    let child = Command::new(bin)
        .args(["-n", "-f"])
        .arg(&conf)
        .arg("-i")
        .arg(dir.join("rsyslog.pid"))
        .spawn()
        .expect("start rsyslogd");
    // Ready when every input listens: a probe on each arrives.
    let r = Rsyslog(child);
    let start = Instant::now();
    loop {
        let _ = std::net::TcpStream::connect(("127.0.0.1", tcp)).map(|mut s| {
            use std::io::Write as _;
            let m = "<14>1 - - probe - probe - tcp";
            let _ = write!(s, "{} {m}", m.len());
        });
        let _ = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.send_to(b"<14>1 - - probe - probe - udp", ("127.0.0.1", udp)));
        let _ = std::os::unix::net::UnixDatagram::unbound()
            .and_then(|s| s.send_to(b"<14>1 - - probe - probe - unix", dir.join("log.sock")));
        let out = std::fs::read_to_string(dir.join("out.log")).unwrap_or_default();
        if ["tcp", "udp", "unix"]
            .iter()
            .all(|t| out.lines().any(|l| l.ends_with(&format!("|{t}"))))
        {
            return r;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "rsyslogd not receiving within 20 s: {out}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn alerts_reach_rsyslog_as_rfc5424_over_tcp_udp_and_unix() {
    if !ebpf_allowed("syslog_sinks") {
        return;
    }
    if rsyslogd().is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "rsyslogd missing (CI=true: `cargo xtask setup` installs rsyslog)"
        );
        eprintln!("test skipped: rsyslogd not installed");
        return;
    }
    let (_guard, dir) = tempdir();
    let (tcp, udp) = (free_port(false), free_port(true));
    let _rsyslog = start_rsyslog(&dir, tcp, udp);
    let rules = rules_dir(&dir.join("etc"));
    std::fs::write(rules.join("kesl.yml"), kesl_rule_text()).expect("write rule");
    let config = dir.join("config.yaml");
    // The first sink's collector is down (nothing listens): the others
    // must not notice.
    let dead = free_port(false);
    std::fs::write(
        &config,
        format!(
            "rules:\n  bundled: false\n  dirs: [{rules}]\nstats:\n  interval_secs: 0\n  socket: ''\nsinks:\n\
             \x20 - {{type: syslog, transport: tcp, address: '127.0.0.1:{dead}'}}\n\
             \x20 - {{type: syslog, transport: tcp, address: '127.0.0.1:{tcp}', facility: local3}}\n\
             \x20 - {{type: syslog, transport: udp, address: '127.0.0.1:{udp}', format: asim}}\n\
             \x20 - {{type: syslog, transport: unix, address: '{sock}'}}\n",
            rules = rules.display(),
            sock = dir.join("log.sock").display(),
        ),
    )
    .expect("write config");
    let mut daemon = Daemon::start(&["--config", config.to_str().expect("utf-8")]);
    let systemctl = fake_tool(&dir, "systemctl");
    let pid = exec(&systemctl, &["stop", "kesl"]);
    let start = Instant::now();
    let lines = loop {
        let out = std::fs::read_to_string(dir.join("out.log")).unwrap_or_default();
        let lines: Vec<String> = out
            .lines()
            .filter(|l| l.contains("|sigexec|") && l.contains(&pid.to_string()))
            .map(str::to_owned)
            .collect();
        if lines.len() >= 3 {
            break lines;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "3 syslog lines for pid {pid} expected within 10 s: {out}"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    daemon.stop();
    let hostname = {
        let mut buf = [0u8; 256];
        // SAFETY: gethostname writes at most buf.len() bytes.
        assert_eq!(
            unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) },
            0
        );
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    };
    let daemon_pid = daemon.child.id().to_string();
    let by_input = |input: &str| -> (Vec<String>, serde_json::Value) {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("{input}|")))
            .unwrap_or_else(|| panic!("no {input} line in {lines:?}"));
        let fields: Vec<String> = line.splitn(10, '|').map(str::to_owned).collect();
        let msg = serde_json::from_str(&fields[9])
            .unwrap_or_else(|e| panic!("MSG is not the JSON alert ({e}): {line}"));
        (fields, msg)
    };
    // TCP, octet counting: parsed as RFC 5424 (version 1), header fields
    // where they belong, high -> err, facility local3.
    let (f, alert) = by_input("imtcp");
    assert_eq!(
        f[..9],
        [
            "imtcp",
            "1",
            "local3",
            "err",
            &hostname,
            "sigexec",
            &daemon_pid,
            "alert",
            "-"
        ]
    );
    assert_eq!(alert["kind"], "alert");
    assert_eq!(alert["rule"]["id"], KESL_RULE);
    assert_eq!(alert["process"]["ProcessId"], pid);
    // Unix datagram (the /dev/log transport), default facility auth.
    let (f, alert) = by_input("imuxsock");
    assert_eq!(
        f[1..9],
        [
            "1",
            "auth",
            "err",
            &hostname,
            "sigexec",
            &daemon_pid,
            "alert",
            "-"
        ]
    );
    assert_eq!(alert["process"]["ProcessId"], pid);
    // UDP with the ASIM shape.
    let (f, asim) = by_input("imudp");
    assert_eq!(
        f[1..9],
        [
            "1",
            "auth",
            "err",
            &hostname,
            "sigexec",
            &daemon_pid,
            "alert",
            "-"
        ]
    );
    assert_eq!(asim["EventType"], "ProcessCreated");
    assert_eq!(asim["EventSchema"], "ProcessEvent");
    assert_eq!(asim["EventSchemaVersion"], "0.1.4");
    assert_eq!(asim["EventProduct"], "sigexec");
    assert_eq!(asim["EventVendor"], "sigexec");
    assert_eq!(asim["DvcHostname"], hostname.as_str());
    assert_eq!(
        asim["TargetProcessName"],
        systemctl.to_str().expect("utf-8")
    );
    assert_eq!(
        asim["TargetProcessCommandLine"],
        format!("{} stop kesl", systemctl.display())
    );
    assert_eq!(asim["TargetProcessId"], pid.to_string());
    assert_eq!(asim["TargetUsername"], "root");
    assert_eq!(
        asim["TargetProcessCurrentDirectory"],
        std::env::current_dir()
            .expect("cwd")
            .to_str()
            .expect("utf-8")
    );
    assert_eq!(asim["ActingProcessId"], std::process::id().to_string());
    assert!(asim["ActingProcessName"].is_string(), "{asim}");
    assert!(asim["ActingProcessCommandLine"].is_string(), "{asim}");
    assert_eq!(asim["ActorUsername"], "root");
    assert_eq!(asim["ParentProcessName"], asim["ActingProcessName"]);
    assert_eq!(asim["EventStartTime"], asim["EventEndTime"]);
    assert!(
        asim["EventStartTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "{asim}"
    );
    assert_eq!(asim["RuleId"], KESL_RULE);
    assert_eq!(asim["RuleLevel"], "high");
    assert_eq!(asim["EventSeverity"], "High");
    assert_eq!(
        asim["RuleName"],
        "Kaspersky Endpoint Security Stopped Via CommandLine - Linux"
    );
    // The dead collector was logged and its drop counted, nothing more.
    let log = daemon.log().join("\n");
    assert!(
        log.contains(&format!("syslog+tcp:127.0.0.1:{dead}")),
        "{log}"
    );
    assert!(log.contains("sink write failed"), "{log}");
}
