//! `cargo xtask vm-test --systemd`: the package on a real systemd host.
//!
//! A Debian 12 guest boots under qemu with systemd as PID 1, installs the
//! `.deb` of `cargo xtask package`, and stops a dummy Kaspersky the ways
//! an admin or an attacker would (`systemctl stop kesl`, `/etc/init.d/kesl
//! stop`, `service kesl stop`), restarts sigexec in between, and powers
//! off with the dummy still running. The guest only acts and reports
//! (`xtask/lab/run.sh`); every check is made here, on what it reported.
//!
//! - Root: `debootstrap --variant=minbase` of bookworm with systemd,
//!   cached as a tarball (`target/vm/systemd/bookworm-root.tar`), and from
//!   it a 2 GiB ext4 image with the lab's own units (`base.img`, made with
//!   `mkfs.ext4 -d`: no loop mount), rebuilt when those change. Each run
//!   boots a fresh qcow2 overlay of it.
//! - In: a second disk (ext4, label `sigexec-io`, mounted on `/lab`) with
//!   the `.deb`, the test script and the dummy kesl unit and init script.
//! - Out: a second serial port, with step windows, sigexec's state after
//!   each step, the alert file and the journal; at power-off a unit
//!   ordered to stop after sigexec sends the alert file again, so the
//!   alerts raised while the host was stopping come out too.
//! - Kernel: Debian's 6.12 cloud kernel by default (NVMe and ext4 built
//!   in, so no initramfs), or any bzImage.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Instant,
};

use anyhow::Context as _;
use serde_json::Value;

use crate::{status, vm_test};

/// Packages the systemd lab needs on the host, beyond the kernel matrix's.
pub const PACKAGES: &[&str] = &["debootstrap", "e2fsprogs", "qemu-utils"];

const SUITE: &str = "bookworm";
const MIRROR: &str = "http://deb.debian.org/debian";
const INCLUDE: &str = "systemd,systemd-sysv,udev,kmod,iproute2,procps,dbus";

const RUN_SH: &str = include_str!("../lab/run.sh");
const COLLECT_SH: &str = include_str!("../lab/collect.sh");
const KESL_SERVICE: &str = include_str!("../lab/kesl.service");
const KESL_INIT: &str = include_str!("../lab/kesl.init");

/// Units baked into the base image: the test, run once the system is up,
/// powering off when it ends; and the collector, whose stop (after
/// sigexec's, at power-off) reports the final alert file.
///
/// The test is `Type=simple`, not a oneshot: a oneshot's start job keeps
/// the boot transaction open until it ends, so the power-off would come
/// before boot finished (`is-system-running` still `starting`), unlike a
/// host an admin powers off.
const LAB_UNIT: &str = "\
[Unit]
Description=sigexec lab: the test (cargo xtask vm-test --systemd)
After=multi-user.target
RequiresMountsFor=/lab

[Service]
Type=simple
ExecStart=/lab/run.sh
StandardOutput=journal+console
StandardError=journal+console
ExecStopPost=/bin/systemctl --no-block poweroff

[Install]
WantedBy=multi-user.target
";

const COLLECT_UNIT: &str = "\
[Unit]
Description=sigexec lab: report the alert file once sigexec has stopped
# Stop order is the reverse of start order: this stops after sigexec.
Before=sigexec.service
RequiresMountsFor=/lab

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/true
ExecStop=/lab/collect.sh

[Install]
WantedBy=multi-user.target
";

const FSTAB: &str = "\
/dev/nvme0n1 / ext4 rw,errors=remount-ro 0 1
LABEL=sigexec-io /lab ext4 defaults 0 0
";

/// Units that only slow a throwaway guest's boot down (timers that would
/// wake during the test, a getty on the console the log is read from).
const MASKED: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "e2scrub_reap.service",
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
];

/// Steps of `run.sh`, in order, and what each must raise.
const STEPS: &[&str] = &[
    "systemctl-stop",
    "initd-stop",
    "service-stop",
    "sigexec-restart",
    "systemctl-stop-after-restart",
    "systemctl-status",
];

const SEED_RULE: &str = "36388120-b3f1-4ce9-b50b-280d9a7f4c04";
const SERVICE_RULE: &str = "4bc4b942-1d01-4251-9a3c-f994c90c6e63";

pub struct Options {
    /// A Debian series of the matrix or the path of a bzImage.
    pub kernel: String,
    pub accel: vm_test::Accel,
    pub timeout: u64,
}

/// The outcome of one boot, as the table row shows it.
pub struct Outcome {
    pub label: String,
    pub release: String,
    pub seconds: f64,
    pub checks: Vec<Check>,
    /// What each step raised, for the reader.
    pub notes: Vec<String>,
    pub console: PathBuf,
    pub results: PathBuf,
}

/// One assertion on what the guest reported.
pub struct Check {
    pub name: String,
    /// `None` when it passed; else what was found.
    pub failure: Option<String>,
}

impl Outcome {
    pub fn failed(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.failure.is_some()).collect()
    }
}

pub fn run(opts: &Options, vm: &Path) -> anyhow::Result<Outcome> {
    anyhow::ensure!(
        crate::setup::is_root(),
        "the systemd lab needs root (debootstrap, and an image owned by root)"
    );
    let lab = vm.join("systemd");
    std::fs::create_dir_all(&lab).with_context(|| format!("creating {}", lab.display()))?;
    let (label, kernel) = kernel(&opts.kernel, vm)?;
    let deb = crate::package::build_deb(None).context("building the .deb")?;
    let tarball = root_tarball(&lab)?;
    verify_package(&lab, &tarball, &deb)?;
    let base = base_image(&lab, &tarball)?;
    let io = io_disk(&lab, &deb)?;
    let overlay = lab.join("overlay.qcow2");
    let _ = std::fs::remove_file(&overlay);
    status(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(&overlay),
    )
    .context("creating the qcow2 overlay")?;
    boot(&label, &kernel, &overlay, &io, vm, opts)
}

fn kernel(name: &str, vm: &Path) -> anyhow::Result<(String, PathBuf)> {
    if let Some(series) = vm_test::SERIES.iter().find(|s| s.name == name) {
        let path = vm_test::debian_kernel(series, vm)?;
        return Ok((format!("systemd, debian {name}"), path));
    }
    let path = PathBuf::from(name);
    anyhow::ensure!(
        path.is_file(),
        "kernel '{name}': not a file, and not a Debian series of the matrix"
    );
    let file = path
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_else(|| name.to_owned());
    Ok((format!("systemd, {file}"), path))
}

/// debootstrap's root as a tarball, made once (about a minute and a half
/// with a nearby mirror).
fn root_tarball(lab: &Path) -> anyhow::Result<PathBuf> {
    let tarball = lab.join(format!("{SUITE}-root.tar"));
    let stamp = lab.join(format!("{SUITE}-root.include"));
    if tarball.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(INCLUDE) {
        return Ok(tarball);
    }
    let root = lab.join("debootstrap");
    let _ = std::fs::remove_dir_all(&root);
    eprintln!(
        "vm-test: debootstrap {SUITE} into {} (once; cached as {})",
        root.display(),
        tarball.display()
    );
    let started = Instant::now();
    status(
        Command::new("debootstrap")
            .args(["--variant=minbase", &format!("--include={INCLUDE}"), SUITE])
            .arg(&root)
            .arg(MIRROR)
            .stdout(Stdio::null()),
    )
    .context("debootstrap (cargo xtask setup installs it)")?;
    let partial = lab.join(format!("{SUITE}-root.tar.partial"));
    status(
        Command::new("tar")
            .args(["--numeric-owner", "-cf"])
            .arg(&partial)
            .arg("-C")
            .arg(&root)
            .arg("."),
    )?;
    std::fs::rename(&partial, &tarball)?;
    std::fs::write(&stamp, INCLUDE)?;
    let _ = std::fs::remove_dir_all(&root);
    eprintln!(
        "vm-test: debootstrap done in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(tarball)
}

/// A fresh `dir` holding the root in `tarball`, owners as recorded.
fn unpack(tarball: &Path, dir: &Path) -> anyhow::Result<()> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir)?;
    status(
        Command::new("tar")
            .args(["--numeric-owner", "-xf"])
            .arg(tarball)
            .arg("-C")
            .arg(dir),
    )
}

/// Install, upgrade and purge of the `.deb` in a chroot of a fresh copy of
/// the cached root (the guest then shows it running under systemd).
fn verify_package(lab: &Path, tarball: &Path, deb: &Path) -> anyhow::Result<()> {
    let root = lab.join("package-chroot");
    unpack(tarball, &root).context("unpacking the root for the package check")?;
    let verified = crate::package::verify(&root, deb).context("package install/upgrade/purge");
    let _ = std::fs::remove_dir_all(&root);
    verified
}

/// The base disk: the cached root plus the lab's units, as a raw ext4
/// image; rebuilt when the tarball or the units change.
fn base_image(lab: &Path, tarball: &Path) -> anyhow::Result<PathBuf> {
    let image = lab.join("base.img");
    let stamp = lab.join("base.stamp");
    let tar_time = std::fs::metadata(tarball)?
        .modified()?
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let wanted = format!("{tar_time}\n{LAB_UNIT}{COLLECT_UNIT}{FSTAB}{MASKED:?}");
    if image.is_file() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(&wanted) {
        return Ok(image);
    }
    eprintln!("vm-test: building {}", image.display());
    let stage = lab.join("base");
    unpack(tarball, &stage)?;
    let etc = stage.join("etc");
    std::fs::write(etc.join("hostname"), "sigexec-lab\n")?;
    std::fs::write(etc.join("fstab"), FSTAB)?;
    std::fs::create_dir_all(stage.join("lab"))?;
    let units = etc.join("systemd/system");
    std::fs::write(units.join("sigexec-lab.service"), LAB_UNIT)?;
    std::fs::write(units.join("sigexec-lab-collect.service"), COLLECT_UNIT)?;
    let wants = units.join("multi-user.target.wants");
    std::fs::create_dir_all(&wants)?;
    for unit in ["sigexec-lab.service", "sigexec-lab-collect.service"] {
        std::os::unix::fs::symlink(format!("/etc/systemd/system/{unit}"), wants.join(unit))?;
    }
    for unit in MASKED {
        for dir in [
            "timers.target.wants",
            "multi-user.target.wants",
            "getty.target.wants",
        ] {
            let _ = std::fs::remove_file(units.join(dir).join(unit));
        }
        let mask = units.join(unit);
        let _ = std::fs::remove_file(&mask);
        std::os::unix::fs::symlink("/dev/null", &mask)?;
    }
    let partial = lab.join("base.img.partial");
    let _ = std::fs::remove_file(&partial);
    status(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "sigexec-root", "-d"])
            .arg(&stage)
            .arg(&partial)
            .arg("2G"),
    )
    .context("mkfs.ext4 of the base image")?;
    std::fs::rename(&partial, &image)?;
    std::fs::write(&stamp, wanted)?;
    let _ = std::fs::remove_dir_all(&stage);
    Ok(image)
}

/// The disk the guest mounts on `/lab`: the package and the test.
fn io_disk(lab: &Path, deb: &Path) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let stage = lab.join("io");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(&stage)?;
    std::fs::copy(deb, stage.join("sigexec.deb"))
        .with_context(|| format!("copying {}", deb.display()))?;
    for (name, text, mode) in [
        ("run.sh", RUN_SH, 0o755),
        ("collect.sh", COLLECT_SH, 0o755),
        ("kesl.init", KESL_INIT, 0o755),
        ("kesl.service", KESL_SERVICE, 0o644),
    ] {
        let path = stage.join(name);
        std::fs::write(&path, text)?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
    }
    let image = lab.join("io.img");
    let _ = std::fs::remove_file(&image);
    status(
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "sigexec-io", "-d"])
            .arg(&stage)
            .arg(&image)
            .arg("128M"),
    )
    .context("mkfs.ext4 of the lab disk")?;
    Ok(image)
}

fn boot(
    label: &str,
    kernel: &Path,
    overlay: &Path,
    io: &Path,
    vm: &Path,
    opts: &Options,
) -> anyhow::Result<Outcome> {
    let logs = vm.join("logs");
    std::fs::create_dir_all(&logs)?;
    let name = label.replace([',', '/', ' '], "-").replace("--", "-");
    let console = logs.join(format!("{name}.console.log"));
    let results = logs.join(format!("{name}.results.log"));
    for log in [&console, &results] {
        let _ = std::fs::remove_file(log);
    }
    eprintln!("vm-test: booting {label} ({})", kernel.display());
    let mut qemu = vm_test::qemu(opts.accel);
    qemu.args(["-nic", "none"])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-serial")
        .arg(format!("file:{}", results.display()))
        .arg("-drive")
        .arg(format!(
            "file={},if=none,id=root,format=qcow2",
            overlay.display()
        ))
        .args(["-device", "nvme,drive=root,serial=sigexec-root"])
        .arg("-drive")
        .arg(format!("file={},if=none,id=io,format=raw", io.display()))
        .args(["-device", "nvme,drive=io,serial=sigexec-io"])
        .arg("-kernel")
        .arg(kernel)
        .args([
            "-append",
            "console=ttyS0 root=/dev/nvme0n1 rw panic=-1 systemd.show_status=1",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let (seconds, timed_out) = vm_test::run_bounded(&mut qemu, opts.timeout)?;
    let text = std::fs::read(&results)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let report = Report::parse(&text);
    let mut checks = Vec::new();
    if timed_out {
        checks.push(Check {
            name: "guest powered off in time".into(),
            failure: Some(format!("timed out after {} s", opts.timeout)),
        });
    }
    checks.extend(report.checks());
    Ok(Outcome {
        label: label.to_owned(),
        release: report.kernel.clone().unwrap_or_default(),
        seconds,
        checks,
        notes: report.notes(),
        console,
        results,
    })
}

/// One step's line: `SIGEXEC-LAB-STEP name rc=.. begin=.. end=.. active=..
/// pid=.. restarts=..`.
#[derive(Debug, Default)]
struct Step {
    rc: Option<i32>,
    begin: f64,
    end: f64,
    active: String,
    pid: String,
    restarts: String,
    /// `systemctl is-active kesl` after the step.
    kesl: String,
}

/// What the guest reported on its second serial port.
#[derive(Debug, Default)]
struct Report {
    kernel: Option<String>,
    steps: BTreeMap<String, Step>,
    /// `SIGEXEC-LAB-READY` fields.
    ready: BTreeMap<String, String>,
    installed: BTreeMap<String, String>,
    before_poweroff: BTreeMap<String, String>,
    /// Files sent between BEGIN and END, by name: `alerts`, `journal`,
    /// `shutdown-alerts`.
    files: BTreeMap<String, Vec<String>>,
    result: Option<i32>,
    setup_failures: Vec<String>,
    shutdown_done: bool,
}

fn fields(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|w| w.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

impl Report {
    fn parse(text: &str) -> Report {
        let mut report = Report::default();
        let mut file: Option<(String, Vec<String>)> = None;
        for line in text.lines() {
            let line = line.trim_end_matches('\r');
            if let Some((name, lines)) = &mut file {
                if line == format!("SIGEXEC-LAB-END {name}") {
                    let (name, lines) = file.take().unwrap_or_default();
                    report.files.insert(name, lines);
                } else {
                    lines.push(line.to_owned());
                }
                continue;
            }
            if let Some(name) = line.strip_prefix("SIGEXEC-LAB-BEGIN ") {
                file = Some((name.trim().to_owned(), Vec::new()));
            } else if let Some(rest) = line.strip_prefix("SIGEXEC-LAB-STEP ") {
                let (name, rest) = rest.split_once(' ').unwrap_or((rest, ""));
                let f = fields(rest);
                let time = |k: &str| f.get(k).and_then(|t| epoch_seconds(t)).unwrap_or(0.0);
                let text = |k: &str| f.get(k).cloned().unwrap_or_default();
                report.steps.insert(
                    name.to_owned(),
                    Step {
                        rc: f.get("rc").and_then(|r| r.parse().ok()),
                        begin: time("begin"),
                        end: time("end"),
                        active: text("active"),
                        pid: text("pid"),
                        restarts: text("restarts"),
                        kesl: text("kesl"),
                    },
                );
            } else if let Some(rest) = line.strip_prefix("SIGEXEC-LAB-KERNEL ") {
                report.kernel = Some(rest.trim().to_owned());
            } else if let Some(rest) = line.strip_prefix("SIGEXEC-LAB-INSTALLED ") {
                report.installed = fields(rest);
            } else if let Some(rest) = line.strip_prefix("SIGEXEC-LAB-READY ") {
                report.ready = fields(rest);
            } else if let Some(rest) = line.strip_prefix("SIGEXEC-LAB-BEFORE-POWEROFF ") {
                report.before_poweroff = fields(rest);
            } else if let Some(rest) = line.strip_prefix("SIGEXEC-LAB-SETUP-FAILED ") {
                report.setup_failures.push(rest.to_owned());
            } else if let Some(rest) = line.strip_prefix("SIGEXEC-LAB-RESULT rc=") {
                report.result = rest.trim().parse().ok();
            } else if line == "SIGEXEC-LAB-SHUTDOWN-DONE" {
                report.shutdown_done = true;
            }
        }
        report
    }

    /// Alerts (kind "alert") of a reported file.
    fn alerts(&self, file: &str) -> Vec<Value> {
        self.files
            .get(file)
            .into_iter()
            .flatten()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["kind"] == "alert")
            .collect()
    }

    /// One line per step (and the power-off): the alerts it raised.
    fn notes(&self) -> Vec<String> {
        let alerts = self.alerts("alerts");
        let mut notes: Vec<String> = STEPS
            .iter()
            .filter_map(|name| {
                let step = self.steps.get(*name)?;
                let found: Vec<&Value> = alerts
                    .iter()
                    .filter(|a| exec_time(a).is_some_and(|t| t >= step.begin && t <= step.end))
                    .collect();
                Some(format!("{name}: {}", describe(&found)))
            })
            .collect();
        let last = self.steps.values().map(|s| s.end).fold(0.0_f64, f64::max);
        let shutdown = self.alerts("shutdown-alerts");
        let late: Vec<&Value> = shutdown
            .iter()
            .filter(|a| exec_time(a).is_some_and(|t| t > last))
            .collect();
        notes.push(format!(
            "power-off (systemctl is-system-running before it: {}): {}",
            self.before_poweroff
                .get("system")
                .map_or("?", String::as_str),
            describe(&late)
        ));
        let timeouts = self
            .files
            .get("shutdown-journal")
            .into_iter()
            .flatten()
            .filter(|l| l.contains("host state probe timed out"))
            .count();
        notes.push(format!(
            "host state probe timeouts in sigexec's journal: {timeouts}"
        ));
        notes
    }

    fn checks(&self) -> Vec<Check> {
        let mut checks = Vec::new();
        let mut check = |name: &str, failure: Option<String>| {
            checks.push(Check {
                name: name.to_owned(),
                failure,
            });
        };
        check(
            "the test ran to its end (SIGEXEC-LAB-RESULT rc=0)",
            match self.result {
                Some(0) => None,
                Some(n) => Some(format!(
                    "{n} setup command(s) failed: {}",
                    self.setup_failures.join("; ")
                )),
                None => Some("no SIGEXEC-LAB-RESULT line".into()),
            },
        );
        check(
            "the package's postinst started sigexec",
            expect_field(&self.installed, "active", "active"),
        );
        check(
            "sigexec and the dummy kesl active before the steps",
            expect_field(&self.ready, "active", "active")
                .or_else(|| expect_field(&self.ready, "kesl", "active")),
        );

        let alerts = self.alerts("alerts");
        let in_step = |name: &str| -> Vec<&Value> {
            let Some(step) = self.steps.get(name) else {
                return Vec::new();
            };
            alerts
                .iter()
                .filter(|a| exec_time(a).is_some_and(|t| t >= step.begin && t <= step.end))
                .collect()
        };
        for name in STEPS {
            let step = self.steps.get(*name);
            check(
                &format!("{name}: ran and exited 0"),
                match step {
                    None => Some("the step did not report".into()),
                    Some(s) if s.rc != Some(0) => Some(format!("exited {:?}", s.rc)),
                    Some(_) => None,
                },
            );
            check(
                &format!("{name}: sigexec still active, not restarted by systemd"),
                step.and_then(|s| {
                    (s.active != "active" || s.restarts != "0")
                        .then(|| format!("is-active {}, NRestarts {}", s.active, s.restarts))
                }),
            );
        }

        for name in [
            "systemctl-stop",
            "initd-stop",
            "service-stop",
            "systemctl-stop-after-restart",
        ] {
            check(
                &format!("{name}: the dummy kesl was stopped"),
                self.steps
                    .get(name)
                    .filter(|s| s.kesl != "inactive")
                    .map(|s| format!("systemctl is-active kesl: {}", s.kesl)),
            );
        }
        // `systemctl stop kesl`, before and after a restart of sigexec: one
        // alert, PID 1's ExecStop folded into it.
        for name in ["systemctl-stop", "systemctl-stop-after-restart"] {
            let found = in_step(name);
            check(
                &format!(
                    "{name}: one alert, on `systemctl stop kesl`, with PID 1's init-script exec in related"
                ),
                one_stop_alert(&found, "systemctl stop kesl"),
            );
        }
        for name in [
            "systemctl-stop",
            "initd-stop",
            "service-stop",
            "systemctl-stop-after-restart",
        ] {
            let found = in_step(name);
            check(
                &format!("{name}: PID 1's init-script exec folded into an alert, never alone"),
                exec_stop_folded(&found),
            );
            check(
                &format!("{name}: kesl's death alerts, naming the init script as the sender"),
                (!found.iter().any(|a| {
                    is_termination(a)
                        && a["process"]["SenderCommandLine"]
                            .as_str()
                            .is_some_and(|c| c.ends_with("/init.d/kesl stop"))
                }))
                .then(|| describe(&found)),
            );
        }
        check(
            "initd-stop: an alert on `/etc/init.d/kesl stop`",
            some_alert(&in_step("initd-stop"), "/etc/init.d/kesl stop"),
        );
        check(
            "service-stop: an alert on `service kesl stop`",
            some_alert(&in_step("service-stop"), "service kesl stop"),
        );
        check("sigexec-restart: no alert, and a new main process", {
            let found = in_step("sigexec-restart");
            let before = self.steps.get("service-stop").map(|s| s.pid.as_str());
            let after = self.steps.get("sigexec-restart").map(|s| s.pid.as_str());
            if !found.is_empty() {
                Some(describe(&found))
            } else if before.is_none() || before == after {
                Some(format!("MainPID {before:?} before, {after:?} after"))
            } else {
                None
            }
        });
        check("systemctl-status: no alert for `systemctl status kesl`", {
            let found = in_step("systemctl-status");
            (!found.is_empty()).then(|| describe(&found))
        });
        check(
            "every alert belongs to a step (none from setup or restore commands)",
            {
                let stray: Vec<&Value> = alerts
                    .iter()
                    .filter(|a| {
                        !self
                            .steps
                            .values()
                            .any(|s| exec_time(a).is_some_and(|t| t >= s.begin && t <= s.end))
                    })
                    .collect();
                (!stray.is_empty()).then(|| describe(&stray))
            },
        );
        check("no alert is marked host_state while the host runs", {
            let marked: Vec<&Value> = alerts
                .iter()
                .filter(|a| !a["host_state"].is_null())
                .collect();
            (!marked.is_empty()).then(|| describe(&marked))
        });

        // The journal (stdout sink) holds the same alerts as the file,
        // from both of sigexec's lives.
        let journal = self.alerts("journal");
        check(
            "the journal holds the alerts of the file, before and after the restart",
            same_alerts(&alerts, &journal),
        );

        // Power-off: the ExecStop that systemd runs because the host stops,
        // on a host whose boot had finished, as an admin's would have.
        check(
            "the boot had finished before the power-off (is-system-running: running or degraded)",
            match self.before_poweroff.get("system").map(String::as_str) {
                Some("running" | "degraded") => None,
                other => Some(format!("is-system-running: {other:?}")),
            },
        );
        let shutdown = self.alerts("shutdown-alerts");
        check(
            "at power-off: the alert file is reported after sigexec stopped",
            (!self.shutdown_done).then(|| "no SIGEXEC-LAB-SHUTDOWN-DONE line".to_owned()),
        );
        check(
            "at power-off: the file still holds every alert written before",
            {
                let lost: Vec<&Value> = alerts
                    .iter()
                    .filter(|a| !shutdown.iter().any(|s| same_alert(a, s)))
                    .collect();
                (!lost.is_empty() && self.shutdown_done).then(|| describe(&lost))
            },
        );
        let poweroff_started = self.steps.values().map(|s| s.end).fold(0.0_f64, f64::max);
        let late: Vec<&Value> = shutdown
            .iter()
            .filter(|a| exec_time(a).is_some_and(|t| t > poweroff_started))
            .collect();
        check(
            "at power-off: kesl's ExecStop alerts, and every alert then is marked host_state stopping and informational",
            stopping_alert(&late),
        );
        checks
    }
}

fn expect_field(fields: &BTreeMap<String, String>, key: &str, want: &str) -> Option<String> {
    match fields.get(key) {
        Some(v) if v == want => None,
        other => Some(format!("{key}={other:?}, want {want}")),
    }
}

/// The exec time of an alert's process, as seconds since the epoch.
fn exec_time(alert: &Value) -> Option<f64> {
    epoch_seconds(alert["process"]["UtcTime"].as_str()?)
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z` as seconds since the epoch.
fn epoch_seconds(text: &str) -> Option<f64> {
    crate::rfc3339_ns(text).map(|ns| ns as f64 / 1e9)
}

fn command_line(alert: &Value) -> &str {
    alert["process"]["CommandLine"].as_str().unwrap_or("")
}

fn describe(alerts: &[&Value]) -> String {
    let parts: Vec<String> = alerts
        .iter()
        .map(|a| {
            let related: Vec<String> = a["related"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|r| {
                    format!(
                        "{}: {}",
                        r["reason"].as_str().unwrap_or("?"),
                        r["CommandLine"].as_str().unwrap_or("?")
                    )
                })
                .collect();
            let who = if is_termination(a) {
                format!(
                    "killed by {}",
                    a["process"]["SenderCommandLine"].as_str().unwrap_or("?")
                )
            } else {
                format!("ppid {}", a["process"]["ParentProcessId"])
            };
            format!(
                "[{} | {} | {who} | related: {}]",
                a["rule"]["title"].as_str().unwrap_or("?"),
                command_line(a),
                related.join(", ")
            )
        })
        .collect();
    format!("{} alert(s): {}", alerts.len(), parts.join(" "))
}

/// A `process_termination` alert (it names the process that sent the
/// signal).
fn is_termination(alert: &Value) -> bool {
    !alert["process"]["SenderProcessId"].is_null()
}

/// Exactly one process_creation alert; on `command`; its `related` holds
/// the other rule on the same exec and PID 1's exec of kesl's init script
/// (reason `service_manager`).
fn one_stop_alert(found: &[&Value], command: &str) -> Option<String> {
    let creation: Vec<&Value> = found
        .iter()
        .copied()
        .filter(|a| !is_termination(a))
        .collect();
    let [alert] = creation[..] else {
        return Some(describe(&creation));
    };
    if !command_line(alert).ends_with(command) {
        return Some(format!("the alert is on `{}`", command_line(alert)));
    }
    let related = alert["related"].as_array().cloned().unwrap_or_default();
    let by_pid1 = related.iter().find(|r| {
        r["reason"] == "service_manager"
            && r["CommandLine"]
                .as_str()
                .is_some_and(|c| c.contains("/init.d/kesl stop"))
    });
    if by_pid1.is_none() {
        return Some(format!(
            "no related service_manager entry for the init script: related = {related:?}"
        ));
    }
    let rules: Vec<&str> = std::iter::once(&alert["rule"]["id"])
        .chain(related.iter().map(|r| &r["rule_id"]))
        .filter_map(Value::as_str)
        .collect();
    for rule in [SEED_RULE, SERVICE_RULE] {
        if !rules.contains(&rule) {
            return Some(format!("rule {rule} neither fired nor folded: {rules:?}"));
        }
    }
    None
}

/// PID 1's exec of the init script (ExecStop) is in some alert's
/// `related`, and no alert is on it alone.
fn exec_stop_folded(found: &[&Value]) -> Option<String> {
    let is_exec_stop = |cmd: &Value| {
        cmd.as_str()
            .is_some_and(|c| c.ends_with("/init.d/kesl stop"))
    };
    let alone: Vec<&Value> = found
        .iter()
        .copied()
        .filter(|a| {
            !is_termination(a)
                && a["process"]["ParentProcessId"] == 1
                && is_exec_stop(&a["process"]["CommandLine"])
        })
        .collect();
    if !alone.is_empty() {
        return Some(format!("alone: {}", describe(&alone)));
    }
    let folded = found.iter().any(|a| {
        a["related"].as_array().is_some_and(|r| {
            r.iter()
                .any(|r| r["reason"] == "service_manager" && is_exec_stop(&r["CommandLine"]))
        })
    });
    (!folded).then(|| format!("in no alert's related: {}", describe(found)))
}

fn some_alert(found: &[&Value], command: &str) -> Option<String> {
    (!found.iter().any(|a| command_line(a).ends_with(command)))
        .then(|| format!("none on `{command}`: {}", describe(found)))
}

fn same_alert(a: &Value, b: &Value) -> bool {
    a["rule"]["id"] == b["rule"]["id"] && a["process"]["ProcessGuid"] == b["process"]["ProcessGuid"]
}

/// `journal` and `file` hold the same alerts (rule and process).
fn same_alerts(file: &[Value], journal: &[Value]) -> Option<String> {
    if file.is_empty() {
        return Some("the alert file is empty".into());
    }
    let missing: Vec<&Value> = file
        .iter()
        .filter(|a| !journal.iter().any(|j| same_alert(a, j)))
        .collect();
    let extra: Vec<&Value> = journal
        .iter()
        .filter(|j| !file.iter().any(|a| same_alert(a, j)))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let mut out = String::new();
    if !missing.is_empty() {
        let _ = write!(out, "not in the journal: {}; ", describe(&missing));
    }
    if !extra.is_empty() {
        let _ = write!(out, "only in the journal: {}", describe(&extra));
    }
    Some(out)
}

/// Among the alerts raised after the last step: one on PID 1's exec of
/// kesl's init script, marked `host_state: stopping`, lowered to
/// informational.
fn stopping_alert(late: &[&Value]) -> Option<String> {
    let exec_stop = late.iter().find(|a| {
        command_line(a).contains("/init.d/kesl stop") && a["process"]["ParentProcessId"] == 1
    });
    let Some(alert) = exec_stop else {
        return Some(format!(
            "no alert on PID 1's init-script exec after the steps: {}",
            describe(late)
        ));
    };
    let unmarked: Vec<&Value> = late
        .iter()
        .copied()
        .filter(|a| a["host_state"] != "stopping" || a["rule"]["level"] != "informational")
        .collect();
    if !unmarked.is_empty() {
        return Some(format!(
            "not marked stopping and informational: {} (ExecStop's: host_state {}, level {})",
            describe(&unmarked),
            alert["host_state"],
            alert["rule"]["level"]
        ));
    }
    None
}

/// The table of `vm-test --systemd`: what each step raised, then one line
/// per check.
pub fn table(outcome: &Outcome) -> String {
    let mut out = String::new();
    for note in &outcome.notes {
        let _ = writeln!(out, "  {note}");
    }
    for c in &outcome.checks {
        let _ = writeln!(
            out,
            "  {} {}{}",
            if c.failure.is_some() { "FAIL" } else { "ok  " },
            c.name,
            c.failure
                .as_deref()
                .map(|f| format!(": {f}"))
                .unwrap_or_default()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real report (the 6.12 guest, every check passing).
    const REPORT: &str = include_str!("../lab/testdata/results.log");

    fn failures(text: &str) -> Vec<String> {
        Report::parse(text)
            .checks()
            .into_iter()
            .filter(|c| c.failure.is_some())
            .map(|c| c.name)
            .collect()
    }

    #[test]
    fn a_real_report_passes_every_check() {
        let report = Report::parse(REPORT);
        assert_eq!(report.kernel.as_deref(), Some("6.12.118+deb12-cloud-amd64"));
        assert_eq!(report.steps.len(), STEPS.len());
        assert_eq!(report.alerts("alerts").len(), 10);
        assert_eq!(failures(REPORT), Vec::<String>::new());
    }

    #[test]
    fn an_unfolded_exec_stop_fails_the_fold_checks() {
        let text = REPORT.replace(r#""reason":"service_manager""#, r#""reason":"other""#);
        let failed = failures(&text);
        assert!(failed.contains(&"systemctl-stop: one alert, on `systemctl stop kesl`, with PID 1's init-script exec in related".to_owned()), "{failed:?}");
        assert!(
            failed.contains(
                &"service-stop: PID 1's init-script exec folded into an alert, never alone"
                    .to_owned()
            ),
            "{failed:?}"
        );
    }

    #[test]
    fn an_unmarked_shutdown_alert_fails_the_host_state_check() {
        let text = REPORT.replacen(r#""host_state":"stopping","#, "", 1);
        assert_eq!(
            failures(&text),
            [
                "at power-off: kesl's ExecStop alerts, and every alert then is marked host_state stopping and informational"
            ]
        );
    }

    #[test]
    fn a_lost_power_off_report_or_a_restarted_daemon_fails() {
        let text = REPORT.replace("SIGEXEC-LAB-SHUTDOWN-DONE", "");
        assert!(failures(&text).contains(
            &"at power-off: the alert file is reported after sigexec stopped".to_owned()
        ));
        let text = REPORT.replace("restarts=0 kesl=inactive", "restarts=1 kesl=inactive");
        assert!(failures(&text).contains(
            &"systemctl-stop: sigexec still active, not restarted by systemd".to_owned()
        ));
    }

    #[test]
    fn utc_times_become_epoch_seconds() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            epoch_seconds("2026-12-04T07:58:01.5Z"),
            Some(1_796_371_081.5)
        );
        assert_eq!(
            epoch_seconds("2000-03-01T00:00:00.000000000Z"),
            Some(951_868_800.0)
        );
        assert_eq!(epoch_seconds("not a time"), None);
    }
}
