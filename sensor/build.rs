//! Builds `sensor-ebpf` for the bpf target and leaves the object in
//! `OUT_DIR/sensor`, where `capture::program` embeds it.
//!
//! `AYA_BUILD_SKIP=1` skips the eBPF build (for work on the pure modules on a
//! machine without bpf-linker); the embedded object is then empty and
//! `sigexec run` refuses to start with a message saying so.

use std::{env, fs, path::PathBuf};

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

    let object = PathBuf::from(env::var_os("OUT_DIR").context("OUT_DIR not set")?).join("sensor");
    if !object.exists() {
        // Only reached with AYA_BUILD_SKIP: embed an empty object.
        fs::write(&object, []).with_context(|| format!("writing {}", object.display()))?;
    }
    Ok(())
}
