//! Builds `sensor-ebpf` for the bpf target and leaves the object in
//! `OUT_DIR/sensor`, where `capture::program` embeds it.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build (for work on the pure modules on a
//! machine without bpf-linker); the embedded object is then empty and
//! `sigexec run` refuses to start with a message saying so.
//!
//! It also lists the rule files under `rules/` into `OUT_DIR/bundled_rules.rs`
//! so that `rules::BUNDLED` embeds every one of them.

use std::{
    env, fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, anyhow};
use cargo_metadata::MetadataCommand;

fn main() -> anyhow::Result<()> {
    let metadata = MetadataCommand::new()
        .no_deps()
        .exec()
        .context("running cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "sensor-ebpf")
        .ok_or_else(|| anyhow!("sensor-ebpf package not found in the workspace"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("sensor-ebpf manifest has no parent directory"))?
        .as_str()
        .to_owned();
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: &root_dir,
            ..Default::default()
        }],
        aya_build::Toolchain::default(),
    )?;

    let out_dir = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?);
    bundle_rules(&out_dir)?;
    let object = out_dir.join("sensor");
    if !object.exists() {
        // Only reached with AYA_BUILD_SKIP: embed an empty object.
        fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
    }
    Ok(())
}

/// Writes `bundled_rules.rs`: `(name, include_str!(path))` for every
/// `.yml`/`.yaml` under the workspace's `rules/`, top-level files first,
/// then by path.
fn bundle_rules(out_dir: &Path) -> anyhow::Result<()> {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR")?);
    let root = manifest_dir
        .parent()
        .context("sensor has no parent directory")?
        .join("rules");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    collect_rules(&root, &mut files)?;
    // Files at the top of rules/ (the SigmaHQ rules, kept verbatim) load
    // before the pack's subdirectories: when several rules of one level
    // fire on one exec, the first loaded leads the folded alert, and a SOC
    // keys its queries on SigmaHQ's ids first.
    files.sort_by_key(|f| (f.components().count(), f.clone()));
    let mut code = String::from("pub static BUNDLED: &[(&str, &str)] = &[\n");
    for file in &files {
        println!("cargo:rerun-if-changed={}", file.display());
        let name = file
            .strip_prefix(&root)
            .unwrap_or(file)
            .display()
            .to_string();
        code.push_str(&format!(
            "    ({name:?}, include_str!({:?})),\n",
            file.display().to_string()
        ));
    }
    code.push_str("];\n");
    fs::write(out_dir.join("bundled_rules.rs"), code).context("writing bundled_rules.rs")
}

fn collect_rules(dir: &Path, files: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            collect_rules(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(path);
        }
    }
    Ok(())
}
