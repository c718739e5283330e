//! JSON lines to stdout or appended to a file.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use serde::Serialize;

use super::{Fsync, Message, Output};

enum Target {
    Stdout,
    File { path: PathBuf, file: File },
}

/// JSON lines to stdout or appended to a file.
pub struct JsonLines {
    target: Target,
    fsync: Fsync,
    line: Vec<u8>,
}

impl JsonLines {
    pub fn stdout() -> JsonLines {
        JsonLines {
            target: Target::Stdout,
            fsync: Fsync::Never,
            line: Vec::with_capacity(4096),
        }
    }

    /// Appends to `path` (created 0600 if missing), `O_APPEND` so that
    /// concurrent writers and logrotate's copytruncate never split a line.
    pub fn append(path: &Path, fsync: Fsync) -> io::Result<JsonLines> {
        Ok(JsonLines {
            target: Target::File {
                path: path.to_owned(),
                file: open_append(path)?,
            },
            fsync,
            line: Vec::with_capacity(4096),
        })
    }

    pub fn target(&self) -> String {
        match &self.target {
            Target::Stdout => "stdout".into(),
            Target::File { path, .. } => path.display().to_string(),
        }
    }

    /// Writes `value` as one line with a single `write`.
    pub fn write<T: Serialize>(&mut self, value: &T) -> io::Result<()> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, value)?;
        self.line.push(b'\n');
        self.write_line()
    }

    fn write_line(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&self.line)?;
                out.flush()
            }
            Target::File { file, .. } => {
                file.write_all(&self.line)?;
                if self.fsync == Fsync::Always {
                    file.sync_data()?;
                }
                Ok(())
            }
        }
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

impl Output for JsonLines {
    fn write(&mut self, text: &str, _: &Message) -> io::Result<()> {
        self.line.clear();
        self.line.extend_from_slice(text.as_bytes());
        self.line.push(b'\n');
        self.write_line()
    }

    /// After logrotate renamed the file, the next line goes to a new one
    /// at the configured path.
    fn reopen(&mut self) -> io::Result<()> {
        if let Target::File { path, file } = &mut self.target {
            *file = open_append(path)?;
        }
        Ok(())
    }

    fn finish(&mut self) -> io::Result<()> {
        match &mut self.target {
            Target::Stdout => io::stdout().flush(),
            Target::File { file, .. } => file.sync_data(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_bytes_never_split_a_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let mut sink = JsonLines::append(&path, Fsync::Always).expect("open sink");
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

    #[test]
    fn reopen_after_rename_writes_to_a_new_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerts.jsonl");
        let rotated = dir.path().join("alerts.jsonl.1");
        let mut sink = JsonLines::append(&path, Fsync::Never).expect("open sink");
        sink.write(&serde_json::json!({ "n": 1 })).expect("write");
        std::fs::rename(&path, &rotated).expect("rotate");
        Output::reopen(&mut sink).expect("reopen");
        sink.write(&serde_json::json!({ "n": 2 })).expect("write");
        assert_eq!(
            std::fs::read_to_string(&rotated).expect("read"),
            "{\"n\":1}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{\"n\":2}\n");
    }
}
