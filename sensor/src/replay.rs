//! `sigexec replay`: events from JSON lines instead of the kernel, through
//! the same engine and alert shape as `run`. For testing rules against
//! recorded or hand-written events without root.

use std::{
    borrow::Cow,
    io::{BufRead, BufReader},
};

use serde_json::{Map, Value as Json};

use crate::{
    engine::{Alert, Engine, Hit},
    sigma::{Event, Value},
};

/// An event given as a JSON object of Sigma fields.
pub struct JsonEvent<'a>(pub &'a Map<String, Json>);

impl Event for JsonEvent<'_> {
    fn field(&self, name: &str) -> Option<Value<'_>> {
        match self.0.get(name)? {
            Json::String(s) => Some(Value::Str(Cow::Borrowed(s))),
            Json::Number(n) => match n.as_i64() {
                Some(i) => Some(Value::Int(i)),
                None => Some(Value::Str(Cow::Owned(n.to_string()))),
            },
            Json::Bool(b) => Some(Value::Bool(*b)),
            Json::Null => Some(Value::Null),
            Json::Array(_) | Json::Object(_) => None,
        }
    }

    fn for_each_string(&self, f: &mut dyn FnMut(&str)) {
        for v in self.0.values() {
            if let Json::String(s) = v {
                f(s);
            }
        }
    }
}

/// A line that was not a JSON object.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}:{line}: {message}")]
pub struct LineError {
    pub source_name: String,
    pub line: usize,
    pub message: String,
}

/// Matches every event of `input`; calls `emit` for each alert and returns
/// the lines that could not be used (the others are still matched).
pub fn replay(
    engine: &Engine,
    input: impl std::io::Read,
    source_name: &str,
    hostname: &str,
    mut emit: impl FnMut(&Alert) -> std::io::Result<()>,
) -> std::io::Result<Vec<LineError>> {
    let mut errors = Vec::new();
    let mut hits: Vec<Hit> = Vec::new();
    let mut scratch = Vec::new();
    for (i, line) in BufReader::new(input).lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let error = |message: String| LineError {
            source_name: source_name.to_owned(),
            line: i + 1,
            message,
        };
        let value: Json = match serde_json::from_str(&line) {
            Ok(v) => v,
            Err(e) => {
                errors.push(error(format!("invalid json: {e}")));
                continue;
            }
        };
        let object = match value.get("process").unwrap_or(&value) {
            Json::Object(map) => map,
            _ => {
                errors.push(error("expected a JSON object of event fields".into()));
                continue;
            }
        };
        hits.clear();
        engine.evaluate(&JsonEvent(object), &mut hits, &mut scratch);
        for hit in &hits {
            let alert = Alert::new(engine.rules(), hit, hostname, Json::Object(object.clone()));
            emit(&alert)?;
        }
    }
    Ok(errors)
}
