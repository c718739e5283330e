//! Alert sinks. Each writes one JSON object per line, built in full before
//! a single `write_all`, so a line is never split or interleaved, whatever
//! bytes argv held (serde_json escapes control characters and newlines).

use std::{
    fs::OpenOptions,
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

/// JSON lines to stdout or appended to a file.
pub struct JsonLines {
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
    /// Where the lines go, for error messages.
    target: String,
}

impl JsonLines {
    pub fn stdout() -> JsonLines {
        JsonLines {
            out: Box::new(io::stdout()),
            line: Vec::with_capacity(4096),
            target: "stdout".into(),
        }
    }

    /// Appends to `path` (created 0600 if missing), `O_APPEND` so that
    /// concurrent writers and logrotate's copytruncate never split a line.
    pub fn append(path: &Path) -> io::Result<JsonLines> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        Ok(JsonLines {
            out: Box::new(file),
            line: Vec::with_capacity(4096),
            target: PathBuf::from(path).display().to_string(),
        })
    }

    pub fn target(&self) -> &str {
        &self.target
    }

    /// Writes `value` as one line and flushes: alerts are rare and must
    /// reach the SIEM's collector within the second.
    pub fn write<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.out.write_all(&self.line)?;
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_never_split_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let mut sink = JsonLines::append(&path).expect("open sink");
        let hostile = "a\nb\r\u{1b}[31mred\u{0}\u{2028}end";
        sink.write(&serde_json::json!({ "CommandLine": hostile }))
            .expect("write");
        sink.write(&serde_json::json!({ "n": 2 })).expect("write");
        let text = std::fs::read_to_string(&path).expect("read back");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        let first: serde_json::Value = serde_json::from_str(lines[0]).expect("valid json");
        assert_eq!(first["CommandLine"], hostile);
    }
}
