//! `cargo xtask vm-test`: the sensor's integration tests on a matrix of
//! kernels. Each kernel boots under qemu with a busybox initramfs whose
//! `/init` runs the tests and prints one sentinel line per test binary on
//! the serial console; the host kernel runs the same binaries directly.
//!
//! - Kernels: Debian's cloud kernels (5.10 from bullseye, 6.1 and 6.12
//!   from bookworm), resolved with a private apt configuration under
//!   `target/vm/apt` (the system's sources stay untouched), downloaded and
//!   cached in `target/vm/kernels/<series>/vmlinuz`; or any bzImage given
//!   by path.
//! - Tests: built once as static musl binaries, stripped, and appended to
//!   the cached base initramfs as a second cpio archive. The test binaries
//!   name the `sigexec` binary and the repository's rule files by absolute
//!   path (`CARGO_BIN_EXE_*`, `CARGO_MANIFEST_DIR`), so those go into the
//!   guest at the same paths.
//! - Results: QEMU exits 0 whatever happens inside, so only the sentinels
//!   count; every boot runs under a timeout with `-no-reboot` and
//!   `panic=-1`. Serial logs stay in `target/vm/logs/`.

use std::{
    collections::BTreeMap,
    fmt::Write as _,
    io::Write as _,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use crate::{setup, status, systemd_lab, workspace_root};

#[derive(clap::Args, Clone)]
pub struct Options {
    /// A kernel to test: `host`, a Debian series (`5.10`, `6.1`, `6.12`),
    /// or the path of a bzImage. Repeat for several; default: the whole
    /// matrix (host, 5.10, 6.1, 6.12).
    #[arg(long = "kernel", value_name = "PATH_OR_VERSION")]
    pub kernels: Vec<String>,
    /// QEMU accelerator (`kvm` needs /dev/kvm and working nested guests).
    #[arg(long, value_enum, default_value_t = Accel::Tcg)]
    pub accel: Accel,
    /// Seconds one guest may take from boot to power-off.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// Instead of the matrix: the Debian package on a Debian 12 guest with
    /// systemd as PID 1, stopping a dummy Kaspersky service (needs root).
    /// `--kernel` picks the guest's kernel (default: 6.12).
    #[arg(long)]
    pub systemd: bool,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            kernels: Vec::new(),
            accel: Accel::Tcg,
            timeout: 600,
            systemd: false,
        }
    }
}

#[derive(clap::ValueEnum, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    Tcg,
    Kvm,
}

/// Packages the lab needs on the machine running it (`setup` installs
/// them). bash-static: the tests run `/bin/bash`, and the guest has no
/// dynamic loader. xz-utils and zstd: decompressing Debian's kernel
/// modules.
pub const PACKAGES: &[&str] = &[
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "bash-static",
    "xz-utils",
    "zstd",
];

const MUSL: &str = "x86_64-unknown-linux-musl";
const SENTINEL: &str = "SIGEXEC-VM-RESULT";
const DONE: &str = "SIGEXEC-VM-DONE";

/// A Debian kernel series of the matrix: where apt finds it and how its
/// package is named (revisions move; the newest that downloads wins).
pub struct Series {
    pub name: &'static str,
    /// Regular expression for `apt-cache search --names-only`.
    package: &'static str,
}

pub const SERIES: &[Series] = &[
    Series {
        name: "5.10",
        package: r"^linux-image-5\.10\.0-[0-9]+-cloud-amd64-unsigned$",
    },
    Series {
        name: "6.1",
        package: r"^linux-image-6\.1\.0-[0-9]+-cloud-amd64-unsigned$",
    },
    Series {
        name: "6.12",
        package: r"^linux-image-6\.12\.[0-9]+\+deb12-cloud-amd64-unsigned$",
    },
];

/// The private apt sources: bookworm for 6.1 (main) and 6.12 (security),
/// bullseye main for 5.10. bullseye-security lists newer 5.10 builds whose
/// files the mirror no longer serves; the download falls back past them.
const APT_SOURCES: &str = "\
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian-security bookworm-security main
deb http://deb.debian.org/debian bullseye main
";

/// One row of the matrix.
enum Kernel {
    Host,
    Image {
        label: String,
        path: PathBuf,
        /// Kernel modules for the guest to load (`insmod`) before the
        /// tests: a Debian kernel's overlay.ko. None for a user's image,
        /// which must have what the tests use built in.
        modules: Option<PathBuf>,
    },
}

/// The outcome of one row.
struct Row {
    label: String,
    release: String,
    passed: u32,
    failed: u32,
    seconds: f64,
    /// Empty when the row passed.
    problems: Vec<String>,
    log: PathBuf,
}

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let root = workspace_root();
    let target = target_dir(&root);
    let vm = target.join("vm");
    std::fs::create_dir_all(vm.join("logs")).context("creating target/vm/logs")?;
    // The toolchain builds the tests; the packages boot the guests.
    setup::run(&setup::Options {})?;
    if opts.systemd {
        return run_systemd(opts, &vm);
    }

    let names: Vec<String> = if opts.kernels.is_empty() {
        ["host", "5.10", "6.1", "6.12"].map(String::from).to_vec()
    } else {
        opts.kernels.clone()
    };
    let mut kernels = Vec::new();
    for name in &names {
        kernels.push(resolve(name, &vm).with_context(|| format!("kernel '{name}'"))?);
    }

    let tests = build_tests(&root)?;
    let needs_guest = kernels.iter().any(|k| matches!(k, Kernel::Image { .. }));
    let initramfs = if needs_guest {
        Some(initramfs(&root, &vm, &tests)?)
    } else {
        None
    };

    let mut rows = Vec::new();
    for kernel in &kernels {
        let row = match kernel {
            Kernel::Host => run_host(&vm, &tests)?,
            Kernel::Image {
                label,
                path,
                modules,
            } => {
                let initramfs = initramfs.as_deref().context("initramfs")?;
                let initrd = match modules {
                    Some(dir) => with_modules(initramfs, dir, label)?,
                    None => initramfs.to_path_buf(),
                };
                boot(label, path, &initrd, &vm, opts)?
            }
        };
        eprintln!(
            "vm-test: {}: {} passed, {} failed, {:.0} s{}",
            row.label,
            row.passed,
            row.failed,
            row.seconds,
            if row.problems.is_empty() {
                String::new()
            } else {
                format!(" ({})", row.problems.join("; "))
            }
        );
        rows.push(row);
    }
    print!("{}", table(&rows));
    let failed: Vec<&str> = rows
        .iter()
        .filter(|r| !r.problems.is_empty())
        .map(|r| r.label.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "kernel matrix failed on {} (serial logs in {})",
            failed.join(", "),
            vm.join("logs").display()
        );
    }
    Ok(())
}

/// `--systemd`: the package on a systemd guest, one boot per `--kernel`.
fn run_systemd(opts: &Options, vm: &Path) -> anyhow::Result<()> {
    let kernels = if opts.kernels.is_empty() {
        vec!["6.12".to_owned()]
    } else {
        opts.kernels.clone()
    };
    let mut outcomes = Vec::new();
    for kernel in kernels {
        let outcome = systemd_lab::run(
            &systemd_lab::Options {
                kernel,
                accel: opts.accel,
                timeout: opts.timeout,
            },
            vm,
        )?;
        eprint!("{}", systemd_lab::table(&outcome));
        outcomes.push(outcome);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<24} {:<26} {:>6} {:>6} {:>7}  result",
        "guest", "release", "passed", "failed", "seconds"
    );
    for o in &outcomes {
        let failed = o.failed().len();
        let result = if failed == 0 {
            "ok".to_owned()
        } else {
            format!(
                "FAILED (logs: {}, {})",
                o.console.display(),
                o.results.display()
            )
        };
        let _ = writeln!(
            out,
            "{:<24} {:<26} {:>6} {:>6} {:>7.0}  {result}",
            o.label,
            o.release,
            o.checks.len() - failed,
            failed,
            o.seconds
        );
    }
    print!("{out}");
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|o| !o.failed().is_empty())
        .map(|o| o.label.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "systemd lab failed on {} (serial logs in {})",
            failed.join(", "),
            vm.join("logs").display()
        );
    }
    Ok(())
}

/// `CARGO_TARGET_DIR` when set, else the workspace's `target/`.
fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_relative() { root.join(p) } else { p })
        .unwrap_or_else(|| root.join("target"))
}

fn resolve(name: &str, vm: &Path) -> anyhow::Result<Kernel> {
    if name == "host" {
        return Ok(Kernel::Host);
    }
    if let Some(series) = SERIES.iter().find(|s| s.name == name) {
        let path = debian_kernel(series, vm)?;
        return Ok(Kernel::Image {
            label: format!("debian {}", series.name),
            modules: path.parent().map(|d| d.join("modules")),
            path,
        });
    }
    let path = PathBuf::from(name);
    if path.is_file() {
        let label = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.to_owned());
        return Ok(Kernel::Image {
            label,
            path,
            modules: None,
        });
    }
    let known: Vec<&str> = SERIES.iter().map(|s| s.name).collect();
    bail!(
        "not a file, and not one of host, {}: give the path of a bzImage",
        known.join(", ")
    )
}

/// The cached `vmlinuz` of a Debian series, with the modules the tests
/// need beside it in `modules/`, downloading them on first use.
pub fn debian_kernel(series: &Series, vm: &Path) -> anyhow::Result<PathBuf> {
    let dir = vm.join("kernels").join(series.name);
    let vmlinuz = dir.join("vmlinuz");
    let modules = dir.join("modules");
    if vmlinuz.is_file() && modules.is_dir() {
        return Ok(vmlinuz);
    }
    let apt = PrivateApt::new(&vm.join("apt"))?;
    let mut candidates: Vec<String> =
        output(
            apt.command("apt-cache")
                .args(["search", "--names-only", series.package]),
        )?
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(String::from)
        .collect();
    candidates.sort_by_key(|name| std::cmp::Reverse(version_key(name)));
    if candidates.is_empty() {
        bail!("apt-cache finds no package matching {}", series.package);
    }
    let download = vm.join("download");
    let _ = std::fs::remove_dir_all(&download);
    std::fs::create_dir_all(&download)?;
    // The newest build first; a mirror may list builds it no longer serves.
    let Some(package) = candidates.iter().find(|p| {
        eprintln!("vm-test: downloading {p}");
        apt.command("apt-get")
            .current_dir(&download)
            .args(["download", "-q", p])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }) else {
        bail!("none of {candidates:?} could be downloaded");
    };
    let deb = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .with_context(|| format!("{package}: apt-get download left no .deb"))?;
    // /boot, and of the modules only those the tests need: overlayfs (the
    // container test), which Debian builds as a module.
    let extract = download.join("x");
    std::fs::create_dir_all(&extract)?;
    status(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './boot/vmlinuz-*'",
        deb.display(),
        extract.display()
    )))
    .with_context(|| format!("extracting vmlinuz from {}", deb.display()))?;
    let _ = std::fs::remove_dir_all(&modules);
    std::fs::create_dir_all(&modules)?;
    for module in MODULES {
        extract_module(&deb, &extract, module, &modules)?;
    }
    let image = std::fs::read_dir(extract.join("boot"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .next()
        .with_context(|| format!("{package} has no /boot/vmlinuz-*"))?;
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("package"), format!("{package}\n"))?;
    // Copy then rename: an interrupted download leaves no half kernel.
    let partial = dir.join("vmlinuz.partial");
    std::fs::copy(&image, &partial)?;
    std::fs::rename(&partial, &vmlinuz)?;
    let _ = std::fs::remove_dir_all(&download);
    Ok(vmlinuz)
}

/// Modules copied from a Debian kernel package into the guest, by path
/// under `lib/modules/<release>/kernel/`, without the `.ko` suffix.
const MODULES: &[&str] = &["fs/overlayfs/overlay"];

/// Extracts `module` (maybe compressed: Debian compresses modules with xz
/// from 6.x builds on) from `deb` as `<name>.ko` in `into`.
fn extract_module(deb: &Path, scratch: &Path, module: &str, into: &Path) -> anyhow::Result<()> {
    status(Command::new("sh").arg("-c").arg(format!(
        "dpkg-deb --fsys-tarfile '{}' | tar -x -C '{}' --wildcards './lib/modules/*/kernel/{module}.ko*' './usr/lib/modules/*/kernel/{module}.ko*' 2>/dev/null; true",
        deb.display(),
        scratch.display()
    )))?;
    let found = output(
        Command::new("find")
            .arg(scratch)
            .args(["-path", &format!("*/kernel/{module}.ko*")]),
    )?;
    let file = found
        .lines()
        .next()
        .map(PathBuf::from)
        .with_context(|| format!("{}: no module {module}.ko", deb.display()))?;
    let name = module.rsplit('/').next().unwrap_or(module);
    let to = into.join(format!("{name}.ko"));
    let file_name = file.to_string_lossy().into_owned();
    let decompress = if file_name.ends_with(".xz") {
        Some("xz")
    } else if file_name.ends_with(".zst") {
        Some("zstd")
    } else {
        None
    };
    match decompress {
        Some(tool) => {
            let out = std::fs::File::create(&to)?;
            status(Command::new(tool).arg("-dc").arg(&file).stdout(out))
                .with_context(|| format!("decompressing {}", file.display()))?;
        }
        None => {
            std::fs::copy(&file, &to)?;
        }
    }
    Ok(())
}

/// `initramfs` with a further archive holding the `.ko` files of
/// `modules` in `/lib/modules/`, which `/init` loads.
fn with_modules(initramfs: &Path, modules: &Path, label: &str) -> anyhow::Result<PathBuf> {
    let dir = initramfs.parent().context("initramfs has a parent")?;
    let name = label.replace(['/', ' '], "-");
    let stage = dir.join(format!("modules-{name}"));
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("lib/modules"))?;
    for entry in
        std::fs::read_dir(modules).with_context(|| format!("reading {}", modules.display()))?
    {
        let path = entry?.path();
        if let Some(file) = path.file_name() {
            std::fs::copy(&path, stage.join("lib/modules").join(file))?;
        }
    }
    let archive = dir.join(format!("modules-{name}.cpio"));
    cpio(&stage, &archive)?;
    let joined = dir.join(format!("initramfs-{name}.cpio"));
    let mut out = std::fs::File::create(&joined)?;
    for part in [initramfs, &archive] {
        std::io::copy(&mut std::fs::File::open(part)?, &mut out)?;
    }
    Ok(joined)
}

/// Orders package names by the numbers in them (`6.1.0-57` after `6.1.0-9`).
fn version_key(name: &str) -> Vec<u64> {
    name.split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// apt with its own sources, lists and cache: resolving and downloading
/// kernels never changes the system's apt configuration.
struct PrivateApt {
    options: Vec<String>,
}

impl PrivateApt {
    fn new(dir: &Path) -> anyhow::Result<PrivateApt> {
        let lists = dir.join("lists");
        let cache = dir.join("cache");
        std::fs::create_dir_all(lists.join("partial"))?;
        std::fs::create_dir_all(cache.join("archives/partial"))?;
        let sources = dir.join("sources.list");
        std::fs::write(&sources, APT_SOURCES)?;
        let options = [
            format!("Dir::Etc::sourcelist={}", sources.display()),
            "Dir::Etc::sourceparts=-".to_owned(),
            format!("Dir::State::Lists={}", lists.display()),
            format!("Dir::Cache={}", cache.display()),
            "APT::Get::List-Cleanup=0".to_owned(),
            // Root downloads into the working directory; no _apt sandbox.
            "APT::Sandbox::User=root".to_owned(),
        ]
        .into_iter()
        .flat_map(|o| ["-o".to_owned(), o])
        .collect();
        let apt = PrivateApt { options };
        // Lists older than a day are refreshed: revisions move.
        let fresh = std::fs::metadata(dir.join("updated"))
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|e| e < Duration::from_secs(86_400)));
        if !fresh {
            eprintln!(
                "vm-test: apt-get update (private lists in {})",
                dir.display()
            );
            status(
                apt.command("apt-get")
                    .args(["update", "-q"])
                    .stdout(Stdio::null()),
            )
            .context("apt-get update of the kernel sources")?;
            std::fs::write(dir.join("updated"), "")?;
        }
        Ok(apt)
    }

    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(program);
        cmd.args(&self.options);
        cmd
    }
}

/// The static test binaries and what they name by absolute path.
struct Tests {
    /// (target name, executable), e.g. ("exec_capture", .../deps/exec_capture-<hash>).
    binaries: Vec<(String, PathBuf)>,
    /// `CARGO_BIN_EXE_sigexec` as compiled into the tests.
    sigexec: PathBuf,
}

fn build_tests(root: &Path) -> anyhow::Result<Tests> {
    let installed = output(Command::new("rustup").args(["target", "list", "--installed"]))?;
    if !installed.lines().any(|l| l.trim() == MUSL) {
        eprintln!("vm-test: adding the {MUSL} target");
        status(Command::new("rustup").args(["target", "add", MUSL]))?;
    }
    eprintln!("vm-test: building the sensor's tests for {MUSL}");
    let out = Command::new("cargo")
        .current_dir(root)
        .args([
            "test",
            "--no-run",
            "--target",
            MUSL,
            "--package",
            "sensor",
            "--tests",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("starting cargo test --no-run")?;
    if !out.status.success() {
        bail!("building the tests for {MUSL} failed: {}", out.status);
    }
    let mut binaries = Vec::new();
    let mut sigexec = None;
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(msg) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        if msg["reason"] != "compiler-artifact" {
            continue;
        }
        let Some(exe) = msg["executable"].as_str() else {
            continue;
        };
        let kind = &msg["target"]["kind"];
        let name = msg["target"]["name"].as_str().unwrap_or_default();
        if msg["profile"]["test"] == true && kind[0] == "test" {
            if HOST_ONLY.contains(&name) {
                continue;
            }
            binaries.push((name.to_owned(), PathBuf::from(exe)));
        } else if msg["profile"]["test"] == false && kind[0] == "bin" && name == "sigexec" {
            sigexec = Some(PathBuf::from(exe));
        }
    }
    binaries.sort();
    if binaries.is_empty() {
        bail!("cargo test --no-run listed no integration test binaries");
    }
    let sigexec = sigexec.context("cargo test --no-run did not list the sigexec binary")?;
    Ok(Tests { binaries, sigexec })
}

/// The guest's `/init`: mount what the sensor reads, run each test binary
/// on one thread, one sentinel per binary, then power off.
///
/// First it re-roots itself on a bind mount of the initramfs: the initial
/// rootfs is the one mount with no parent, and the kernel refuses
/// `pivot_root` for a process whose root is there (EINVAL), which the
/// container test needs. With `/` a bind mount moved over rootfs and
/// entered with chroot, paths read the same and `pivot_root` works, as it
/// does on any booted system.
const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin:/usr/sbin HOME=/root CI=true RUST_BACKTRACE=1
if [ -z "$SIGEXEC_REROOTED" ]; then
  mkdir -p /.reroot && mount --bind / /.reroot && cd /.reroot && mount --move . / \
    && SIGEXEC_REROOTED=1 exec chroot . /init
  echo "SIGEXEC-VM-REROOT-FAILED"
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t bpf bpf /sys/fs/bpf
mount -t cgroup2 cgroup2 /sys/fs/cgroup
for m in /lib/modules/*.ko; do [ -e "$m" ] && insmod "$m"; done
mkdir -p /run
echo "SIGEXEC-VM-KERNEL $(uname -r)"
for t in /tests/*; do
  name=${t##*/}
  echo "SIGEXEC-VM-START $name"
  "$t" --test-threads=1
  echo "SIGEXEC-VM-RESULT $name rc=$?"
done
echo SIGEXEC-VM-DONE
poweroff -f
"#;

/// Busybox applets linked into the guest's /bin.
const APPLETS: &[&str] = &[
    "cat",
    "chroot",
    "cp",
    "env",
    "id",
    "insmod",
    "ln",
    "ls",
    "mkdir",
    "mount",
    "pivot_root",
    "poweroff",
    "ps",
    "rm",
    "setpriv",
    "sh",
    "sleep",
    "umount",
    "uname",
    "unshare",
];

/// Bump when the base archive changes in a way `INIT` does not show.
const BASE_REVISION: u32 = 3;

/// Test binaries that do not depend on the kernel and need host tools or
/// data the guest lacks (rsyslogd, systemd-analyze, the zoneinfo database
/// that maintenance windows read) or only exercise user space: `cargo test`
/// runs them on the host, the matrix skips them.
const HOST_ONLY: &[&str] = &[
    "exclusions",
    "rules_list",
    "service",
    "syslog_sink",
    "systemd_unit",
];

/// The guest's `/bin/true`: a 129-byte static ELF that calls
/// `exit_group(0)`. Not a busybox symlink: the kernel resolves symlinks, and
/// the tests expect an exec of `/bin/true` to report an image ending in
/// `/true`. Not a busybox copy either: the tests' stand-in tools are copies
/// of `/bin/true` named `systemctl` and the like, and busybox run under an
/// unknown name prints "applet not found" and exits 127.
fn true_elf() -> Vec<u8> {
    const BASE: u64 = 0x40_0000;
    const HEADERS: u64 = 64 + 56;
    // mov eax, 231 (exit_group); xor edi, edi; syscall
    const CODE: &[u8] = &[0xb8, 0xe7, 0x00, 0x00, 0x00, 0x31, 0xff, 0x0f, 0x05];
    let size = HEADERS + CODE.len() as u64;
    let mut elf = Vec::with_capacity(size as usize);
    // ELF header: 64-bit, little-endian, version 1, System V ABI.
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    elf.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    elf.extend_from_slice(&0x3eu16.to_le_bytes()); // EM_X86_64
    elf.extend_from_slice(&1u32.to_le_bytes()); // EV_CURRENT
    elf.extend_from_slice(&(BASE + HEADERS).to_le_bytes()); // entry
    elf.extend_from_slice(&64u64.to_le_bytes()); // program headers
    elf.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    elf.extend_from_slice(&0u32.to_le_bytes()); // flags
    for half in [64u16, 56, 1, 64, 0, 0] {
        // header size, phdr size and count, shdr size and count, shstrndx
        elf.extend_from_slice(&half.to_le_bytes());
    }
    // One PT_LOAD, read + execute, mapping the whole file at BASE.
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    for word in [0, BASE, BASE, size, size, 0x1000] {
        elf.extend_from_slice(&word.to_le_bytes());
    }
    elf.extend_from_slice(CODE);
    elf
}

/// Base archive (busybox, bash, /init, /etc; cached) followed by a second
/// archive with the tests and the files they name by absolute path.
fn initramfs(root: &Path, vm: &Path, tests: &Tests) -> anyhow::Result<PathBuf> {
    let dir = vm.join("initramfs");
    std::fs::create_dir_all(&dir)?;
    let base = dir.join("base.cpio");
    let stamp = dir.join("base.init");
    let wanted = format!("{BASE_REVISION}\n{INIT}");
    let current = std::fs::read_to_string(&stamp).ok();
    if !base.is_file() || current.as_deref() != Some(wanted.as_str()) {
        let stage = dir.join("base");
        let _ = std::fs::remove_dir_all(&stage);
        for d in [
            "bin", "sbin", "usr/bin", "etc", "proc", "sys", "dev", "tmp", "root",
        ] {
            std::fs::create_dir_all(stage.join(d))?;
        }
        std::fs::copy("/bin/busybox", stage.join("bin/busybox")).context("copying busybox")?;
        for applet in APPLETS {
            std::os::unix::fs::symlink("busybox", stage.join("bin").join(applet))?;
        }
        // A copy, not a symlink: an exec of /bin/echo reports /bin/echo.
        std::fs::copy("/bin/busybox", stage.join("bin/echo"))?;
        std::fs::write(stage.join("bin/true"), true_elf())?;
        std::fs::set_permissions(
            stage.join("bin/true"),
            std::os::unix::fs::PermissionsExt::from_mode(0o755),
        )?;
        std::fs::copy("/bin/bash-static", stage.join("bin/bash")).context("copying bash-static")?;
        // `#!/usr/bin/env bash` scripts.
        std::os::unix::fs::symlink("/bin/busybox", stage.join("usr/bin/env"))?;
        std::fs::write(
            stage.join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n",
        )?;
        std::fs::write(stage.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
        write_executable(&stage.join("init"), INIT)?;
        cpio(&stage, &base)?;
        std::fs::write(&stamp, &wanted)?;
    }

    let stage = dir.join("tests");
    let _ = std::fs::remove_dir_all(&stage);
    std::fs::create_dir_all(stage.join("tests"))?;
    // Debug info is most of a test binary's size; the guest keeps its
    // initramfs in RAM.
    for (name, exe) in &tests.binaries {
        strip(exe, &stage.join("tests").join(name))?;
    }
    strip(&tests.sigexec, &under(&stage, &tests.sigexec))?;
    for data in ["rules", "sensor/tests/sigma"] {
        let from = root.join(data);
        let to = under(&stage, &from);
        std::fs::create_dir_all(to.parent().context("path has a parent")?)?;
        status(Command::new("cp").arg("-a").arg(&from).arg(&to))?;
    }
    let extra = dir.join("tests.cpio");
    cpio(&stage, &extra)?;

    let joined = dir.join("initramfs.cpio");
    let mut out = std::fs::File::create(&joined)?;
    for part in [&base, &extra] {
        let mut f = std::fs::File::open(part)?;
        std::io::copy(&mut f, &mut out)?;
    }
    Ok(joined)
}

/// `path` (absolute) re-rooted under `stage`.
fn under(stage: &Path, path: &Path) -> PathBuf {
    stage.join(path.strip_prefix("/").unwrap_or(path))
}

fn strip(from: &Path, to: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(to.parent().context("path has a parent")?)?;
    status(
        Command::new("strip")
            .arg("--strip-debug")
            .arg("-o")
            .arg(to)
            .arg(from),
    )
}

fn write_executable(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))?;
    Ok(())
}

/// A newc archive of everything under `stage`, owned by root.
fn cpio(stage: &Path, archive: &Path) -> anyhow::Result<()> {
    status(Command::new("sh").current_dir(stage).arg("-c").arg(format!(
        "find . -mindepth 1 | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 > '{}'",
        archive.display()
    )))
    .with_context(|| format!("writing {}", archive.display()))
}

/// qemu-system-x86_64 with the lab's machine, the same for every boot:
/// the accelerator, 2 CPUs, 1 GiB, no reboot, no display, no monitor.
pub(crate) fn qemu(accel: Accel) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    match accel {
        Accel::Tcg => qemu.args(["-accel", "tcg"]),
        Accel::Kvm => qemu.args(["-accel", "kvm", "-cpu", "host"]),
    };
    qemu.args(["-smp", "2", "-m", "1G", "-no-reboot", "-nographic"])
        .args(["-monitor", "none"]);
    qemu
}

/// Runs qemu until the guest powers off or `timeout` seconds pass (then
/// kills it): qemu exits 0 whatever happened inside, so the caller reads
/// what the guest wrote. Returns the seconds it ran and whether it was
/// killed.
pub(crate) fn run_bounded(qemu: &mut Command, timeout: u64) -> anyhow::Result<(f64, bool)> {
    let started = Instant::now();
    let mut child = qemu.spawn().context("starting qemu-system-x86_64")?;
    let deadline = started + Duration::from_secs(timeout);
    while child.try_wait()?.is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Ok((started.elapsed().as_secs_f64(), true));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok((started.elapsed().as_secs_f64(), false))
}

fn boot(
    label: &str,
    kernel: &Path,
    initramfs: &Path,
    vm: &Path,
    opts: &Options,
) -> anyhow::Result<Row> {
    let log = vm
        .join("logs")
        .join(format!("{}.log", label.replace(['/', ' '], "-")));
    let _ = std::fs::remove_file(&log);
    eprintln!("vm-test: booting {label} ({})", kernel.display());
    let mut qemu = qemu(opts.accel);
    qemu.arg("-serial")
        .arg(format!("file:{}", log.display()))
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initramfs)
        .args(["-append", "console=ttyS0 panic=-1 quiet"])
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    let (seconds, timed_out) = run_bounded(&mut qemu, opts.timeout)?;
    let text = std::fs::read(&log)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let mut row = parse(label, &text, seconds, log);
    if timed_out {
        row.problems
            .insert(0, format!("timed out after {} s", opts.timeout));
    }
    Ok(row)
}

/// The host row: the same static binaries, run directly with the guest's
/// environment and output format.
fn run_host(vm: &Path, tests: &Tests) -> anyhow::Result<Row> {
    let log = vm.join("logs/host.log");
    eprintln!("vm-test: running the static tests on the host kernel");
    let started = Instant::now();
    let mut text = format!("SIGEXEC-VM-KERNEL {}\n", uname_r());
    for (name, exe) in &tests.binaries {
        let out = Command::new(exe)
            .arg("--test-threads=1")
            .env("CI", "true")
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        text.push_str(&String::from_utf8_lossy(&out.stderr));
        let rc = out.status.code().unwrap_or(-1);
        let _ = writeln!(text, "{SENTINEL} {name} rc={rc}");
    }
    let _ = writeln!(text, "{DONE}");
    let mut f = std::fs::File::create(&log)?;
    f.write_all(text.as_bytes())?;
    Ok(parse("host", &text, started.elapsed().as_secs_f64(), log))
}

fn uname_r() -> String {
    output(Command::new("uname").arg("-r"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Reads a serial log (or the host's equivalent): libtest summaries,
/// sentinels, and skips.
fn parse(label: &str, text: &str, seconds: f64, log: PathBuf) -> Row {
    let mut row = Row {
        label: label.to_owned(),
        release: String::new(),
        passed: 0,
        failed: 0,
        seconds,
        problems: Vec::new(),
        log,
    };
    let mut results = BTreeMap::new();
    let mut done = false;
    for line in text.lines() {
        // The console may prefix a line with terminal escapes.
        let line = line.trim_end_matches('\r');
        let line = line.find("SIGEXEC-VM-").map_or(line, |i| &line[i..]);
        if let Some(release) = line.strip_prefix("SIGEXEC-VM-KERNEL ") {
            release.trim().clone_into(&mut row.release);
        } else if let Some(rest) = line.strip_prefix("test result: ") {
            // "ok. 10 passed; 0 failed; 0 ignored; ..."
            for part in rest.split(';') {
                let mut words = part.split_whitespace().rev();
                let (Some(what), Some(n)) = (words.next(), words.next()) else {
                    continue;
                };
                let n: u32 = n.parse().unwrap_or(0);
                match what {
                    "passed" => row.passed += n,
                    "failed" => row.failed += n,
                    _ => {}
                }
            }
        } else if let Some(rest) = line.strip_prefix(SENTINEL) {
            let mut words = rest.split_whitespace();
            let name = words.next().unwrap_or_default().to_owned();
            let rc = words
                .next()
                .and_then(|w| w.strip_prefix("rc="))
                .unwrap_or("?");
            results.insert(name, rc.to_owned());
        } else if line == DONE {
            done = true;
        } else if line.contains("eBPF test skipped") {
            row.problems.push(line.trim().to_owned());
        }
    }
    for (name, rc) in &results {
        if rc != "0" {
            row.problems.push(format!("{name} exited {rc}"));
        }
    }
    if !done {
        row.problems
            .push(match text.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(last) => format!("no {DONE} sentinel; last line: {}", last.trim()),
                None => "empty serial log: the kernel did not boot".to_owned(),
            });
    }
    if results.is_empty() && done {
        row.problems.push("no test binary ran".to_owned());
    }
    row
}

fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<14} {:<34} {:>6} {:>6} {:>7}  result",
        "kernel", "release", "passed", "failed", "seconds"
    );
    for r in rows {
        let result = if r.problems.is_empty() {
            "ok".to_owned()
        } else {
            format!("FAILED (log: {})", r.log.display())
        };
        let _ = writeln!(
            out,
            "{:<14} {:<34} {:>6} {:>6} {:>7.0}  {result}",
            r.label, r.release, r.passed, r.failed, r.seconds
        );
    }
    out
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\x1bc\x1b[?7l\x1b[2JSIGEXEC-VM-KERNEL 6.1.0-57-cloud-amd64\r
SIGEXEC-VM-START daemon\r
test result: ok. 4 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 8.20s\r
SIGEXEC-VM-RESULT daemon rc=0\r
SIGEXEC-VM-START exec_capture\r
test result: FAILED. 8 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out\r
SIGEXEC-VM-RESULT exec_capture rc=101\r
SIGEXEC-VM-DONE\r
";

    #[test]
    fn a_serial_log_gives_release_counts_and_the_failed_binary() {
        let row = parse("debian 6.1", LOG, 1.0, PathBuf::new());
        assert_eq!(row.release, "6.1.0-57-cloud-amd64");
        assert_eq!((row.passed, row.failed), (12, 2));
        assert_eq!(row.problems, vec!["exec_capture exited 101"]);
    }

    #[test]
    fn a_log_without_the_done_sentinel_fails_even_if_every_test_passed() {
        let log = "SIGEXEC-VM-START daemon\ntest result: ok. 4 passed; 0 failed;\n\
                   Kernel panic - not syncing: Attempted to kill init!\n";
        let row = parse("k", log, 1.0, PathBuf::new());
        assert_eq!(row.passed, 4);
        assert_eq!(
            row.problems,
            vec![
                "no SIGEXEC-VM-DONE sentinel; last line: \
                 Kernel panic - not syncing: Attempted to kill init!"
            ]
        );
        let row = parse("k", "", 1.0, PathBuf::new());
        assert_eq!(
            row.problems,
            vec!["empty serial log: the kernel did not boot"]
        );
    }

    #[test]
    fn a_skipped_ebpf_test_fails_the_row() {
        let log = "eBPF test skipped: long_argv: not root\n\
                   SIGEXEC-VM-RESULT exec_capture rc=0\nSIGEXEC-VM-DONE\n";
        let row = parse("k", log, 1.0, PathBuf::new());
        assert_eq!(row.problems, vec!["eBPF test skipped: long_argv: not root"]);
    }

    #[test]
    fn the_guests_true_is_a_static_elf_that_exits_0() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = std::env::temp_dir().join(format!("xtask-true-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        let path = dir.join("true");
        std::fs::write(&path, true_elf()).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let status = Command::new(&path).arg("ignored").status().expect("exec");
        let _ = std::fs::remove_dir_all(&dir);
        assert!(status.success(), "{status}");
        assert_eq!(true_elf().len(), 129);
    }

    #[test]
    fn newer_revisions_sort_first_by_number_not_text() {
        let mut names = vec![
            "linux-image-6.1.0-9-cloud-amd64-unsigned",
            "linux-image-6.1.0-57-cloud-amd64-unsigned",
            "linux-image-6.1.0-10-cloud-amd64-unsigned",
        ];
        names.sort_by_key(|name| std::cmp::Reverse(version_key(name)));
        assert_eq!(
            names,
            vec![
                "linux-image-6.1.0-57-cloud-amd64-unsigned",
                "linux-image-6.1.0-10-cloud-amd64-unsigned",
                "linux-image-6.1.0-9-cloud-amd64-unsigned",
            ]
        );
    }

    #[test]
    fn an_unknown_kernel_name_says_what_is_accepted() {
        let Err(e) = resolve("5.4", Path::new("/nonexistent")) else {
            panic!("5.4 is not in the matrix");
        };
        assert_eq!(
            e.to_string(),
            "not a file, and not one of host, 5.10, 6.1, 6.12: give the path of a bzImage"
        );
    }
}
