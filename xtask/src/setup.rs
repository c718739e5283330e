//! `cargo xtask setup`: installs what building `sensor-ebpf` needs, and
//! only what is missing, so it is cheap to call before every run and test.
//!
//! - the nightly toolchain's `rust-src` (for `-Z build-std=core`);
//! - Debian's LLVM 22 development files (`llvm-22-dev`, `libpolly-22-dev`),
//!   which bpf-linker links against; nightly 1.97 emits LLVM 22 bitcode,
//!   and bpf-linker must read it with the same major version;
//! - `bpf-linker` built against that LLVM;
//! - what `cargo xtask vm-test` boots kernels with (qemu, busybox, cpio,
//!   a static bash), since `cargo xtask test` runs the kernel matrix, and
//!   what the systemd lab builds its guest with (debootstrap, mkfs.ext4,
//!   qemu-img).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, bail};

use crate::status;

#[derive(clap::Args)]
pub struct Options {}

const LLVM_PREFIX: &str = "/usr/lib/llvm-22";
const LLVM_PACKAGES: &[&str] = &["llvm-22-dev", "libpolly-22-dev"];
const NIGHTLY: &str = "nightly";

pub fn run(_: &Options) -> anyhow::Result<()> {
    rust_src()?;
    llvm()?;
    bpf_linker()?;
    service_tools()?;
    apt_packages(crate::vm_test::PACKAGES)?;
    apt_packages(crate::systemd_lab::PACKAGES)?;
    Ok(())
}

/// The service tests' tools: `systemd-analyze` (package `systemd`) to
/// verify the unit and `rsyslogd` to receive the syslog sink's messages.
fn service_tools() -> anyhow::Result<()> {
    let missing: Vec<&str> = [("systemd-analyze", "systemd"), ("rsyslogd", "rsyslog")]
        .into_iter()
        .filter(|(bin, _)| which(bin).is_none() && !Path::new("/usr/sbin").join(bin).exists())
        .map(|(_, package)| package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {} from apt", missing.join(" "));
    apt_install(&missing).context("installing the service test tools")
}

fn rust_src() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if !toolchains.lines().any(|l| l.starts_with(NIGHTLY)) {
        eprintln!("setup: installing the nightly toolchain");
        status(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let installed = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if !installed.lines().any(|l| l.starts_with("rust-src")) {
        eprintln!("setup: adding rust-src to {NIGHTLY}");
        status(Command::new("rustup").args([
            "component",
            "add",
            "rust-src",
            "--toolchain",
            NIGHTLY,
        ]))?;
    }
    Ok(())
}

fn llvm() -> anyhow::Result<()> {
    // One file from each package: llvm-config alone belongs to `llvm-22`,
    // which can be present without the -dev package.
    let config = Path::new(LLVM_PREFIX).join("bin/llvm-config");
    let markers = [
        Path::new(LLVM_PREFIX).join("lib/libLLVM.so"),
        Path::new(LLVM_PREFIX).join("lib/libPolly.a"),
    ];
    if config.exists() && markers.iter().all(|m| m.exists()) {
        return Ok(());
    }
    eprintln!("setup: installing {} from apt", LLVM_PACKAGES.join(" "));
    apt_install(LLVM_PACKAGES).context("installing LLVM 22 development packages")?;
    if !config.exists() {
        bail!(
            "{} still missing after installing {LLVM_PACKAGES:?}",
            config.display()
        );
    }
    Ok(())
}

/// Installs those of `packages` that dpkg does not list as installed.
pub fn apt_packages(packages: &[&str]) -> anyhow::Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_ok_and(|s| s.ends_with(" installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("setup: installing {} from apt", missing.join(" "));
    apt_install(&missing).with_context(|| format!("installing {missing:?}"))
}

fn apt_install(packages: &[&str]) -> anyhow::Result<()> {
    let root = is_root();
    let apt = |args: &[&str]| {
        let mut cmd = if root {
            Command::new("apt-get")
        } else {
            let mut c = Command::new("sudo");
            c.arg("apt-get");
            c
        };
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        cmd
    };
    // The package lists of a fresh machine may predate what we install.
    status(&mut apt(&["update", "-q"])).context("apt-get update (needs root or sudo)")?;
    let mut install = vec!["install", "-y", "-q", "--no-install-recommends"];
    install.extend_from_slice(packages);
    status(&mut apt(&install))
}

fn bpf_linker() -> anyhow::Result<()> {
    if let Some(path) = which("bpf-linker") {
        let version = output(Command::new(&path).arg("--version")).unwrap_or_default();
        if !version.is_empty() {
            return Ok(());
        }
        eprintln!("setup: {} does not run; reinstalling", path.display());
    }
    eprintln!("setup: building bpf-linker against LLVM 22 (about a minute)");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![Path::new(LLVM_PREFIX).join("bin")];
    paths.extend(std::env::split_paths(&path));
    status(
        Command::new("cargo")
            .args([
                "install",
                "--locked",
                "bpf-linker",
                "--no-default-features",
                "--features",
                "llvm-22",
            ])
            .env("PATH", std::env::join_paths(paths)?)
            .env("LLVM_SYS_221_PREFIX", LLVM_PREFIX)
            .env("LLVM_PREFIX", LLVM_PREFIX),
    )
}

fn which(name: &str) -> Option<PathBuf> {
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .map(|h| h.join("bin"));
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(cargo_bin)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_ok_and(|s| s.trim() == "0")
}
