//! `sigexec rules list` as a user runs it: one tab-separated line per
//! loaded rule (id, level, title, source:line:col), problems on stderr and
//! exit 1 when any rule failed. No root needed.

use std::path::Path;
use std::process::Command;

const SIGEXEC: &str = env!("CARGO_BIN_EXE_sigexec");

#[test]
fn rules_list_prints_the_bundled_rule() {
    let out = Command::new(SIGEXEC)
        .args(["rules", "list"])
        .output()
        .expect("run sigexec rules list");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.lines().any(|l| l
            == "36388120-b3f1-4ce9-b50b-280d9a7f4c04\thigh\tKaspersky Endpoint Security Stopped Via CommandLine - Linux\tbundled:proc_creation_lnx_av_kaspersky_av_disabled.yml:1:1"),
        "{stdout}"
    );
    // One line per bundled rule file (each holds one rule).
    assert_eq!(stdout.lines().count(), bundled_rule_files());
}

#[test]
fn rules_list_prints_every_sigmahq_rule_with_four_columns() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/sigmahq-linux");
    let out = Command::new(SIGEXEC)
        .args(["rules", "list", "--no-bundled", "--rules"])
        .arg(&corpus)
        .output()
        .expect("run sigexec rules list");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 144);
    for line in &lines {
        let cols: Vec<&str> = line.split('\t').collect();
        assert_eq!(cols.len(), 4, "{line}");
        assert_eq!(cols[0].len(), 36, "id: {line}");
        assert!(
            ["informational", "low", "medium", "high", "critical"].contains(&cols[1]),
            "level: {line}"
        );
        assert!(cols[3].ends_with(":1:1"), "source: {line}");
    }
}

#[test]
fn rules_list_reports_a_duplicate_id_and_exits_1() {
    // The bundled rule is also in the corpus, under the same id.
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sigma/sigmahq-linux");
    let out = Command::new(SIGEXEC)
        .args(["rules", "list", "--rules"])
        .arg(&corpus)
        .output()
        .expect("run sigexec rules list");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("duplicate rule id '36388120-b3f1-4ce9-b50b-280d9a7f4c04'"),
        "{stderr}"
    );
    // The corpus, plus the bundled rules but the duplicate.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).lines().count(),
        144 + bundled_rule_files() - 1
    );
}

/// Rule files under `rules/`, without the opt-in exclusions in
/// `rules/filters/`, which are not loaded as rules.
fn bundled_rule_files() -> usize {
    fn count(dir: &Path) -> usize {
        std::fs::read_dir(dir)
            .expect("rules dir")
            .map(|e| e.expect("entry").path())
            .map(|p| {
                if p.is_dir() && p.file_name().is_some_and(|n| n == "filters") {
                    0
                } else if p.is_dir() {
                    count(&p)
                } else {
                    usize::from(p.extension().is_some_and(|e| e == "yml"))
                }
            })
            .sum()
    }
    count(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../rules"))
}
