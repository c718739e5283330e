//! `cargo xtask package`: a Debian package of the daemon: the release
//! binary, the systemd unit, the example config (installed as the
//! conffile `/etc/sigexec/config.yaml`), an empty root-owned
//! `/etc/sigexec/rules.d`, the logrotate snippet and the man page
//! generated from the CLI (`sigexec manpage`). Built with `dpkg-deb
//! --root-owner-group`, so no fakeroot is needed.

use std::{
    fs,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::Context as _;

use crate::{setup, status, workspace_root};

#[derive(clap::Args)]
pub struct Options {
    /// Where to write the .deb [default: TARGET/debian].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Then install, upgrade (with a locally edited conffile) and purge the
    /// package in this Debian 12 root, made with `debootstrap --variant=
    /// minbase bookworm` first if it does not exist (needs root).
    #[arg(long, value_name = "DIR")]
    verify_in: Option<PathBuf>,
}

const POSTINST: &str = r#"#!/bin/sh
set -e
if [ "$1" = configure ]; then
    install -d -m 0700 /var/log/sigexec /var/lib/sigexec
    if [ -d /run/systemd/system ]; then
        systemctl daemon-reload >/dev/null || true
        if [ -z "$2" ]; then
            systemctl enable --now sigexec.service >/dev/null || true
        else
            systemctl try-restart sigexec.service >/dev/null || true
        fi
    elif command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper enable sigexec.service >/dev/null || true
    fi
fi
"#;

const PRERM: &str = r#"#!/bin/sh
set -e
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    systemctl stop sigexec.service >/dev/null || true
fi
"#;

const POSTRM: &str = r#"#!/bin/sh
set -e
if [ "$1" = purge ]; then
    rm -rf /var/log/sigexec /var/lib/sigexec
    if command -v deb-systemd-helper >/dev/null; then
        deb-systemd-helper purge sigexec.service >/dev/null || true
    fi
    rmdir /etc/sigexec/rules.d /etc/sigexec 2>/dev/null || true
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null || true
fi
"#;

pub fn run(opts: &Options) -> anyhow::Result<()> {
    let deb = build_deb(opts.out.as_deref())?;
    println!("{}", deb.display());
    if let Some(chroot) = &opts.verify_in {
        verify(chroot, &deb)?;
    }
    Ok(())
}

/// Builds the release binary and the package (in `out`, default
/// `TARGET/debian`); returns the `.deb`'s path.
pub fn build_deb(out: Option<&Path>) -> anyhow::Result<PathBuf> {
    setup::run(&setup::Options {})?;
    let root = workspace_root();
    status(Command::new("cargo").current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "sensor",
        "--bin",
        "sigexec",
    ]))?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let binary = target.join("release/sigexec");
    let version = env!("CARGO_PKG_VERSION");
    let arch = output(Command::new("dpkg").arg("--print-architecture"))?;
    let out = out.map_or_else(|| target.join("debian"), Path::to_path_buf);
    let stage = out.join(format!("sigexec_{version}_{arch}"));
    if stage.exists() {
        fs::remove_dir_all(&stage).with_context(|| format!("cleaning {}", stage.display()))?;
    }
    let put = |from: &Path, to: &str, mode: u32| -> anyhow::Result<()> {
        let dest = stage.join(to);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir).with_context(|| format!("mkdir {}", dir.display()))?;
        }
        fs::copy(from, &dest)
            .with_context(|| format!("copying {} to {}", from.display(), dest.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let write = |to: &str, text: &str, mode: u32| -> anyhow::Result<()> {
        let dest = stage.join(to);
        if let Some(dir) = dest.parent() {
            fs::create_dir_all(dir)?;
        }
        fs::write(&dest, text).with_context(|| format!("writing {}", dest.display()))?;
        fs::set_permissions(&dest, fs::Permissions::from_mode(mode))?;
        Ok(())
    };
    let packaging = root.join("packaging");
    put(&binary, "usr/bin/sigexec", 0o755)?;
    put(
        &packaging.join("sigexec.service"),
        "lib/systemd/system/sigexec.service",
        0o644,
    )?;
    put(
        &packaging.join("config.example.yaml"),
        "etc/sigexec/config.yaml",
        0o644,
    )?;
    put(
        &packaging.join("config.example.yaml"),
        "usr/share/doc/sigexec/config.example.yaml",
        0o644,
    )?;
    put(
        &packaging.join("sigexec.logrotate"),
        "etc/logrotate.d/sigexec",
        0o644,
    )?;
    let rules_d = stage.join("etc/sigexec/rules.d");
    fs::create_dir_all(&rules_d)?;
    fs::set_permissions(&rules_d, fs::Permissions::from_mode(0o755))?;
    let man = Command::new(&binary)
        .arg("manpage")
        .output()
        .context("running sigexec manpage")?;
    anyhow::ensure!(man.status.success(), "sigexec manpage failed");
    let man_path = stage.join("usr/share/man/man8/sigexec.8");
    fs::create_dir_all(man_path.parent().unwrap_or(&stage))?;
    fs::write(&man_path, &man.stdout)?;
    status(Command::new("gzip").args(["-9n"]).arg(&man_path))?;
    let size_kib = dir_size(&stage)? / 1024;
    write(
        "DEBIAN/control",
        &format!(
            "Package: sigexec\nVersion: {version}\nArchitecture: {arch}\nMaintainer: sigexec developers <sigexec@localhost>\n\
             Installed-Size: {size_kib}\nDepends: libc6\nRecommends: systemd, logrotate\nSection: admin\nPriority: optional\n\
             Homepage: https://github.com/sigexec/sigexec\n\
             Description: eBPF process-exec sensor with native Sigma rules\n \
             Captures every exec with eBPF, matches Sigma process_creation rules\n \
             and writes alerts as JSON lines, syslog or Sentinel ASIM.\n"
        ),
        0o644,
    )?;
    write(
        "DEBIAN/conffiles",
        "/etc/sigexec/config.yaml\n/etc/logrotate.d/sigexec\n",
        0o644,
    )?;
    write("DEBIAN/postinst", POSTINST, 0o755)?;
    write("DEBIAN/prerm", PRERM, 0o755)?;
    write("DEBIAN/postrm", POSTRM, 0o755)?;
    let deb = out.join(format!("sigexec_{version}_{arch}.deb"));
    status(
        Command::new("dpkg-deb")
            .args(["--build", "--root-owner-group"])
            .arg(&stage)
            .arg(&deb),
    )?;
    Ok(deb)
}

/// Install, upgrade and purge in a Debian root; fails on the first
/// surprise.
pub fn verify(root: &Path, deb: &Path) -> anyhow::Result<()> {
    if !root.join("usr/bin/dpkg").exists() {
        eprintln!("package: debootstrap bookworm into {}", root.display());
        status(
            Command::new("debootstrap")
                .args(["--variant=minbase", "bookworm"])
                .arg(root),
        )
        .context("debootstrap (apt-get install debootstrap)")?;
    }
    let name = deb.file_name().context("deb name")?;
    fs::copy(deb, root.join("tmp").join(name))?;
    let inside = format!("/tmp/{}", name.to_string_lossy());
    let chroot = |args: &[&str]| {
        let mut c = Command::new("chroot");
        c.arg(root).args(args);
        c
    };
    status(&mut chroot(&["dpkg", "-i", &inside])).context("install")?;
    let check = output(&mut chroot(&[
        "sigexec",
        "rules",
        "check",
        "--config",
        "/etc/sigexec/config.yaml",
    ]))?;
    anyhow::ensure!(
        check.ends_with("rules loaded, 0 errors"),
        "rules check: {check}"
    );
    let config = root.join("etc/sigexec/config.yaml");
    let mut edited = fs::read_to_string(&config)?;
    edited.push_str("# local edit\n");
    fs::write(&config, &edited)?;
    status(&mut chroot(&["dpkg", "-i", &inside])).context("upgrade")?;
    anyhow::ensure!(
        fs::read_to_string(&config)? == edited,
        "the upgrade lost the local edit of /etc/sigexec/config.yaml"
    );
    status(&mut chroot(&["dpkg", "--purge", "sigexec"])).context("purge")?;
    for left in ["etc/sigexec", "var/log/sigexec", "usr/bin/sigexec"] {
        anyhow::ensure!(!root.join(left).exists(), "/{left} left after purge");
    }
    eprintln!(
        "package: install, upgrade and purge work in {}",
        root.display()
    );
    Ok(())
}

fn dir_size(dir: &Path) -> anyhow::Result<u64> {
    let mut total = 0;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
    anyhow::ensure!(out.status.success(), "{cmd:?} failed");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
