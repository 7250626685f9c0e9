//! `agora-sim compare A B`: two runs' `metrics.json` side by side.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why two runs could not be compared.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A `metrics.json` could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A `metrics.json` is not JSON.
    #[error("{} is not valid JSON", path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },
}

/// The figures compared: a label and a JSON pointer into `metrics.json`.
const ROWS: [(&str, &str); 21] = [
    ("scenario", "/scenario"),
    ("seed", "/seed"),
    ("nodes (slots)", "/node_slots"),
    ("simulated s", "/duration_s"),
    ("events", "/events"),
    ("offers published", "/propagation/messages"),
    ("deliveries", "/propagation/deliveries"),
    ("latency p50 ms", "/propagation/p50_ms"),
    ("latency p90 ms", "/propagation/p90_ms"),
    ("latency p99 ms", "/propagation/p99_ms"),
    ("coverage mean", "/propagation/coverage_mean"),
    ("coverage min", "/propagation/coverage_min"),
    ("mean hops", "/propagation/mean_hops"),
    ("sync deliveries", "/propagation/sync_deliveries"),
    ("bytes sent/node", "/traffic/bytes_sent_per_node/mean"),
    ("frames sent/node", "/traffic/frames_sent_per_node/mean"),
    ("duplicates/delivery", "/traffic/duplicates_per_delivery"),
    ("lost frames", "/traffic/lost"),
    ("mesh degree mean", "/mesh/degree/mean"),
    ("mesh below D_lo", "/mesh/below_d_lo"),
    ("book completeness", "/book_completeness"),
];

fn load(dir: &Path) -> Result<Value, CompareError> {
    let path = if dir.is_dir() {
        dir.join("metrics.json")
    } else {
        dir.to_owned()
    };
    let text = fs::read_to_string(&path).map_err(|source| CompareError::Read {
        path: path.clone(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| CompareError::Json { path, source })
}

fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::Number(n)) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(f)) => format!("{f:.4}"),
            _ => n.to_string(),
        },
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn change(a: Option<&Value>, b: Option<&Value>) -> String {
    match (a.and_then(Value::as_f64), b.and_then(Value::as_f64)) {
        (Some(a), Some(b)) if a != 0.0 => format!("{:+.1}%", (b - a) / a.abs() * 100.0),
        (Some(a), Some(b)) if a == b => "=".to_owned(),
        _ => String::new(),
    }
}

/// The side-by-side table of runs `a` and `b` (directories or `metrics.json` files).
///
/// # Errors
/// [`CompareError`] when either file cannot be read or parsed.
pub fn compare(a: &Path, b: &Path) -> Result<String, CompareError> {
    let (left, right) = (load(a)?, load(b)?);
    let mut out = String::new();
    let (ha, hb) = (a.display().to_string(), b.display().to_string());
    // Writing to a String cannot fail.
    let _ = writeln!(out, "{:<22} {:>24} {:>24} {:>9}", "", ha, hb, "change");
    for (label, pointer) in ROWS {
        let (x, y) = (left.pointer(pointer), right.pointer(pointer));
        let _ = writeln!(
            out,
            "{label:<22} {:>24} {:>24} {:>9}",
            cell(x),
            cell(y),
            change(x, y)
        );
    }
    let same = left.pointer("/trace_hash") == right.pointer("/trace_hash");
    let _ = writeln!(
        out,
        "{:<22} {}",
        "trace hash",
        if same { "identical" } else { "different" }
    );
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn changes_are_relative_and_missing_figures_show_a_dash() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.json");
        let b = dir.path().join("b.json");
        fs::write(&a, r#"{"seed": 1, "events": 100, "trace_hash": "x"}"#).unwrap();
        fs::write(&b, r#"{"seed": 2, "events": 150, "trace_hash": "x"}"#).unwrap();
        let table = compare(&a, &b).unwrap();
        assert!(table.contains("+50.0%"), "{table}");
        assert!(table.contains("identical"), "{table}");
        let p50 = table
            .lines()
            .find(|l| l.starts_with("latency p50"))
            .unwrap();
        assert!(p50.contains('-'), "{p50}");
        assert!(compare(&a, &dir.path().join("missing")).is_err());
    }
}
