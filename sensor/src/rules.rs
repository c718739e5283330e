//! Where rule text comes from: the rules bundled into the binary at build
//! time (every file under the repository's `rules/`) and rule files or
//! directories given on the command line. Reading files is here so that
//! [`crate::sigma`] stays free of I/O.

use std::{
    fs,
    path::{Path, PathBuf},
};

use crate::sigma::{LoadError, LoadWarning, RuleSet, Source};

include!(concat!(env!("OUT_DIR"), "/bundled_rules.rs"));

/// Where the shipped exclusions live under `rules/`: Sigma filter
/// documents that are opt-in, so never loaded with the rules.
pub const FILTERS_DIR: &str = "filters/";

/// The bundled rules, named `bundled:<path under rules/>`. The shipped
/// exclusions (`rules/filters/`) are not among them: see
/// [`bundled_filter`].
pub fn bundled() -> impl Iterator<Item = Source> {
    BUNDLED
        .iter()
        .filter(|(name, _)| !name.starts_with(FILTERS_DIR))
        .map(|(name, text)| Source {
            name: format!("bundled:{name}"),
            text: (*text).to_owned(),
        })
}

/// The names of the shipped exclusions: the file stems under
/// `rules/filters/`, sorted.
pub fn bundled_filter_names() -> Vec<&'static str> {
    BUNDLED
        .iter()
        .filter_map(|(name, _)| name.strip_prefix(FILTERS_DIR))
        .filter_map(|file| {
            file.strip_suffix(".yml")
                .or_else(|| file.strip_suffix(".yaml"))
        })
        .collect()
}

/// The shipped exclusion called `name` (`rules/filters/<name>.yml`).
pub fn bundled_filter(name: &str) -> Option<Source> {
    BUNDLED.iter().find_map(|(file, text)| {
        let stem = file.strip_prefix(FILTERS_DIR)?;
        let stem = stem
            .strip_suffix(".yml")
            .or_else(|| stem.strip_suffix(".yaml"))?;
        (stem == name).then(|| Source {
            name: format!("bundled:{file}"),
            text: (*text).to_owned(),
        })
    })
}

/// A file or directory that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct ReadError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

/// Rule sources from `path`: the file itself, or every `.yml`/`.yaml` file
/// under the directory (recursively, sorted, hidden entries skipped).
pub fn from_path(path: &Path, sources: &mut Vec<Source>, errors: &mut Vec<ReadError>) {
    let err = |source| ReadError {
        path: path.to_owned(),
        source,
    };
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) => return errors.push(err(e)),
    };
    if meta.is_file() {
        match fs::read_to_string(path) {
            Ok(text) => sources.push(Source {
                name: path.display().to_string(),
                text,
            }),
            Err(e) => errors.push(err(e)),
        }
        return;
    }
    let mut entries: Vec<PathBuf> = match fs::read_dir(path) {
        Ok(dir) => dir.filter_map(|e| e.ok().map(|e| e.path())).collect(),
        Err(e) => return errors.push(err(e)),
    };
    entries.sort();
    for entry in entries {
        let name = entry.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with('.') {
            continue;
        }
        let is_rule = entry.extension().is_some_and(|e| e == "yml" || e == "yaml");
        if entry.is_dir() || is_rule {
            from_path(&entry, sources, errors);
        }
    }
}

/// Everything a load produced: the rule set and what went wrong.
pub struct Loaded {
    pub rules: RuleSet,
    pub read_errors: Vec<ReadError>,
    pub errors: Vec<LoadError>,
    pub warnings: Vec<LoadWarning>,
}

/// Loads the bundled rules (unless `bundled` is false) and `paths`.
pub fn load(bundled_rules: bool, paths: &[PathBuf]) -> Loaded {
    let mut sources: Vec<Source> = if bundled_rules {
        bundled().collect()
    } else {
        Vec::new()
    };
    let mut read_errors = Vec::new();
    for path in paths {
        from_path(path, &mut sources, &mut read_errors);
    }
    let (rules, errors, warnings) = RuleSet::load_with_warnings(sources);
    Loaded {
        rules,
        read_errors,
        errors,
        warnings,
    }
}
