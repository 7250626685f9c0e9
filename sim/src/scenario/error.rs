//! Scenario errors that name the file, line, column and field of the problem.

use core::ops::Range;
use std::io;
use std::path::PathBuf;

/// Why a scenario could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("cannot read scenario {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{origin}:{line}:{column}: {field}: {message}")]
    Invalid {
        /// The file (or other origin) name.
        origin: String,
        /// One-based line of the problem.
        line: usize,
        /// One-based column of the problem.
        column: usize,
        /// The dotted path of the field, as far as it can be told (`gossip.d_lo`).
        field: String,
        /// What is wrong.
        message: String,
    },
}

impl ScenarioError {
    /// The error for a TOML or serde failure.
    pub(super) fn from_toml(error: &toml::de::Error, source: &str, origin: &str) -> Self {
        let span = error.span().unwrap_or(0..0);
        Self::at(source, origin, span, error.message().trim().to_owned())
    }

    /// The error for a problem with the value at byte offsets `span` of `source`.
    pub(super) fn at(source: &str, origin: &str, span: Range<usize>, message: String) -> Self {
        let offset = span.start.min(source.len());
        let before = source.get(..offset).unwrap_or("");
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        ScenarioError::Invalid {
            origin: origin.to_owned(),
            line,
            column,
            field: field_at(source, offset),
            message,
        }
    }

    /// The one-based line the error points at, if it is about the file's contents.
    pub fn line(&self) -> Option<usize> {
        match self {
            ScenarioError::Invalid { line, .. } => Some(*line),
            ScenarioError::Read { .. } => None,
        }
    }
}

/// The dotted path of the key whose value (or name) starts at `offset`: the enclosing
/// `[table]` header, any inline tables opened on the line, and the key itself.
fn field_at(source: &str, offset: usize) -> String {
    let before = source.get(..offset).unwrap_or("");
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    // The header of the table the offset is in; a span that starts on a header line (a
    // whole table's error) belongs to that header.
    let line_end = source
        .get(offset..)
        .and_then(|rest| rest.find('\n'))
        .map_or(source.len(), |i| offset + i);
    let header = source
        .get(..line_end)
        .unwrap_or("")
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| {
            l.trim_start_matches('[')
                .split(']')
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .unwrap_or_default();
    let prefix = before.get(line_start..).unwrap_or("");
    let mut path: Vec<String> = Vec::new();
    if !header.is_empty() {
        path.push(header);
    }
    path.extend(keys_open_at(prefix));
    // An error at a key itself (an unknown field) names that key.
    let rest = source.get(offset..).unwrap_or("");
    let at_key: String = rest.chars().take_while(|&c| is_key_char(c)).collect();
    if !at_key.is_empty()
        && rest
            .get(at_key.len()..)
            .is_some_and(|r| r.trim_start().starts_with('='))
    {
        path.push(at_key);
    }
    if path.is_empty() {
        "scenario".to_owned()
    } else {
        path.join(".")
    }
}

fn is_key_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

/// The keys of a line prefix whose values are still open at its end: enclosing inline
/// tables, then the key whose value starts there.
fn keys_open_at(prefix: &str) -> Vec<String> {
    let mut stack: Vec<String> = Vec::new();
    let mut pending: Option<String> = None;
    let mut word = String::new();
    let mut word_done = false;
    let mut in_string = false;
    for c in prefix.chars() {
        if in_string {
            in_string = c != '"';
            continue;
        }
        match c {
            '"' => in_string = true,
            c if is_key_char(c) => {
                if word_done {
                    word.clear();
                    word_done = false;
                }
                word.push(c);
            }
            c if c.is_whitespace() => word_done = !word.is_empty(),
            '=' if !word.is_empty() => pending = Some(core::mem::take(&mut word)),
            '{' => {
                if let Some(key) = pending.take() {
                    stack.push(key);
                }
            }
            '}' => {
                stack.pop();
                pending = None;
            }
            ',' => pending = None,
            _ => {}
        }
        if !is_key_char(c) && !c.is_whitespace() {
            word.clear();
            word_done = false;
        }
    }
    stack.extend(pending);
    stack
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_through_headers_and_inline_tables() {
        let src = "duration = \"1s\"\n[network.default]\nlatency = { dist = \"x\", base_ms = 3 }\n";
        let at = src.find("3 }").unwrap();
        assert_eq!(field_at(src, at), "network.default.latency.base_ms");
        let at = src.find('{').unwrap();
        assert_eq!(field_at(src, at), "network.default.latency");
        let at = src.find("latency").unwrap();
        assert_eq!(field_at(src, at), "network.default.latency");
        assert_eq!(field_at(src, 0), "duration");
        let at = src.find("\"1s\"").unwrap();
        assert_eq!(field_at(src, at), "duration");
    }
}
