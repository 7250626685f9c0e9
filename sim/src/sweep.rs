//! Parameter sweeps: a scenario over a grid of parameter values and seeds, runs in
//! parallel, means with 95% confidence intervals.
//!
//! Each point of the grid is the scenario file with dotted keys overridden
//! ([`override_param`]: `adversary.fraction=0.2` sets `fraction` in `[adversary]`), checked
//! as any scenario. Runs are spread over worker threads; each run is the usual
//! single-threaded, deterministic run, so a row is reproduced by running its scenario with
//! its seed. Every numeric figure of `metrics.json` is summarised per point.
//!
//! ```
//! let source = "duration = \"10s\"\n[nodes]\ncount = 10\n";
//! let changed = agora_sim::sweep::override_param(source, "nodes.count", "20")?;
//! assert!(changed.contains("count = 20"));
//! # Ok::<(), agora_sim::sweep::SweepError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::run::{RunError, RunOptions, run};
use crate::scenario::{Scenario, ScenarioError};

/// Why a sweep could not run.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// A `--param` is not `key=v1,v2,…`.
    #[error("--param {0:?} is not key=value[,value…]")]
    BadParam(String),
    /// The scenario source is not a TOML table.
    #[error("the scenario is not valid TOML: {0}")]
    Toml(String),
    /// A dotted key runs into a value that is not a table.
    #[error("{key}: {part:?} is not a table")]
    NotATable {
        /// The key.
        key: String,
        /// The part that is not a table.
        part: String,
    },
    /// The scenario with an override does not check.
    #[error("with {assignment}: {source}")]
    Scenario {
        /// The override.
        assignment: String,
        /// What is wrong.
        #[source]
        source: ScenarioError,
    },
}

/// One parameter and its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// The dotted key.
    pub key: String,
    /// Its values, as TOML literals (bare words are taken as strings).
    pub values: Vec<String>,
}

impl Param {
    /// Parses `key=v1,v2,…`.
    ///
    /// # Errors
    /// [`SweepError::BadParam`].
    pub fn parse(text: &str) -> Result<Self, SweepError> {
        let (key, values) = text
            .split_once('=')
            .ok_or_else(|| SweepError::BadParam(text.to_owned()))?;
        let values: Vec<String> = values
            .split(',')
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
            .collect();
        if key.trim().is_empty() || values.is_empty() {
            return Err(SweepError::BadParam(text.to_owned()));
        }
        Ok(Param {
            key: key.trim().to_owned(),
            values,
        })
    }
}

/// `source` with the dotted `key` set to `value` (a TOML literal; a bare word is a
/// string), intermediate tables created.
///
/// # Errors
/// [`SweepError::Toml`] or [`SweepError::NotATable`].
pub fn override_param(source: &str, key: &str, value: &str) -> Result<String, SweepError> {
    let mut table: toml::Table =
        toml::from_str(source).map_err(|e| SweepError::Toml(e.message().to_owned()))?;
    let parsed: toml::Value = toml::from_str::<toml::Table>(&format!("v = {value}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let parts: Vec<&str> = key.split('.').collect();
    let (last, path) = parts
        .split_last()
        .ok_or_else(|| SweepError::BadParam(key.to_owned()))?;
    let mut at = &mut table;
    for part in path {
        let entry = at
            .entry((*part).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        at = entry.as_table_mut().ok_or_else(|| SweepError::NotATable {
            key: key.to_owned(),
            part: (*part).to_owned(),
        })?;
    }
    at.insert((*last).to_owned(), parsed);
    toml::to_string(&table).map_err(|e| SweepError::Toml(e.to_string()))
}

/// One point of the grid: its assignments and its scenario.
#[derive(Debug, Clone)]
pub struct Point {
    /// `key=value` per parameter.
    pub assignments: Vec<(String, String)>,
    /// The scenario with them applied.
    pub scenario: Scenario,
}

/// Every combination of `params`' values applied to `source`.
///
/// # Errors
/// [`SweepError`] for an override that does not apply or a scenario that does not check.
pub fn grid(source: &str, origin: &str, params: &[Param]) -> Result<Vec<Point>, SweepError> {
    let mut combos: Vec<Vec<(String, String)>> = vec![Vec::new()];
    for p in params {
        combos = combos
            .into_iter()
            .flat_map(|c| {
                p.values.iter().map(move |v| {
                    let mut c = c.clone();
                    c.push((p.key.clone(), v.clone()));
                    c
                })
            })
            .collect();
    }
    combos
        .into_iter()
        .map(|assignments| {
            let mut text = source.to_owned();
            for (k, v) in &assignments {
                text = override_param(&text, k, v)?;
            }
            let label = assignments
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            let scenario =
                Scenario::from_toml(&text, origin).map_err(|source| SweepError::Scenario {
                    assignment: label,
                    source,
                })?;
            Ok(Point {
                assignments,
                scenario,
            })
        })
        .collect()
}

/// One run's outcome: its figures, or the violation that stopped it.
#[derive(Debug, Clone)]
pub struct RunRow {
    /// The grid point (index).
    pub point: usize,
    /// The seed.
    pub seed: u64,
    /// Every numeric figure of `metrics.json`, by dotted path.
    pub figures: BTreeMap<String, f64>,
    /// The error that stopped the run, if any (an invariant violation names its seed).
    pub error: Option<String>,
}

/// Numeric leaves of `value` (arrays left out), by dotted path.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, f64>) {
    match value {
        serde_json::Value::Number(n) => {
            if let Some(x) = n.as_f64() {
                out.insert(prefix.to_owned(), x);
            }
        }
        serde_json::Value::Bool(b) => {
            out.insert(prefix.to_owned(), f64::from(u8::from(*b)));
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(&key, v, out);
            }
        }
        _ => {}
    }
}

/// Runs every point with seeds `first_seed..first_seed + seeds` on `jobs` threads.
pub fn run_all(points: &[Point], first_seed: u64, seeds: u64, jobs: usize) -> Vec<RunRow> {
    let work: Vec<(usize, u64)> = (0..points.len())
        .flat_map(|p| (0..seeds).map(move |s| (p, first_seed + s)))
        .collect();
    let next = AtomicUsize::new(0);
    let rows = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.max(1) {
            scope.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(&(point, seed)) = work.get(i) else {
                        break;
                    };
                    let Some(p) = points.get(point) else {
                        break;
                    };
                    let options = RunOptions {
                        seed: Some(seed),
                        ..RunOptions::default()
                    };
                    let row = match run(p.scenario.clone(), &options, |_, _| {}) {
                        Ok(result) => {
                            let mut figures = BTreeMap::new();
                            if let Ok(json) = serde_json::to_value(&result.summary) {
                                flatten("", &json, &mut figures);
                            }
                            figures.insert("invariant_violations".into(), 0.0);
                            RunRow {
                                point,
                                seed,
                                figures,
                                error: None,
                            }
                        }
                        Err(e) => {
                            let mut figures = BTreeMap::new();
                            let violation = matches!(e, RunError::Invariant { .. });
                            figures.insert(
                                "invariant_violations".into(),
                                f64::from(u8::from(violation)),
                            );
                            RunRow {
                                point,
                                seed,
                                figures,
                                error: Some(e.to_string()),
                            }
                        }
                    };
                    if let Ok(mut rows) = rows.lock() {
                        rows.push(row);
                    }
                }
            });
        }
    });
    let mut rows = rows.into_inner().unwrap_or_default();
    rows.sort_by_key(|r| (r.point, r.seed));
    rows
}

/// Mean and 95% confidence half-width of `values` (Student's t; 0 for one value).
pub fn mean_ci(values: &[f64]) -> (f64, f64) {
    let n = values.len();
    if n == 0 {
        return (f64::NAN, f64::NAN);
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if n == 1 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    // Two-sided 97.5% quantiles of Student's t for 1..=30 degrees of freedom.
    const T: [f64; 30] = [
        12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160,
        2.145, 2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056,
        2.052, 2.048, 2.045, 2.042,
    ];
    let t = T.get(n - 2).copied().unwrap_or(1.96);
    (mean, t * (var / n as f64).sqrt())
}

/// The sweep's CSV: per point and figure, the runs, mean and 95% interval. Figures that
/// vary in no run and no point are left out.
pub fn summary_csv(points: &[Point], rows: &[RunRow]) -> String {
    let keys: Vec<String> = points
        .first()
        .map(|p| p.assignments.iter().map(|(k, _)| k.clone()).collect())
        .unwrap_or_default();
    let mut names: Vec<&String> = rows.iter().flat_map(|r| r.figures.keys()).collect();
    names.sort();
    names.dedup();
    let mut csv = String::new();
    for k in &keys {
        let _ = write!(csv, "{k},");
    }
    csv.push_str("figure,runs,mean,ci95_low,ci95_high\n");
    for (i, point) in points.iter().enumerate() {
        for name in &names {
            let values: Vec<f64> = rows
                .iter()
                .filter(|r| r.point == i)
                .filter_map(|r| r.figures.get(*name).copied())
                .collect();
            if values.is_empty() {
                continue;
            }
            let (mean, half) = mean_ci(&values);
            for (_, v) in &point.assignments {
                let _ = write!(csv, "{v},");
            }
            let _ = writeln!(
                csv,
                "{name},{},{mean},{},{}",
                values.len(),
                mean - half,
                mean + half
            );
        }
    }
    csv
}

/// One line per run: point, seed, error (if any).
pub fn runs_csv(points: &[Point], rows: &[RunRow]) -> String {
    let mut csv = String::from("point,seed,error\n");
    for r in rows {
        let label = points
            .get(r.point)
            .map(|p| {
                p.assignments
                    .iter()
                    .map(|(k, v)| format!("{k}={v}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default();
        let error = r
            .error
            .clone()
            .unwrap_or_default()
            .replace(['"', '\n'], " ");
        let _ = writeln!(csv, "\"{label}\",{},\"{error}\"", r.seed);
    }
    csv
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn params_override_nested_keys_and_bad_ones_are_refused() {
        let p = Param::parse("adversary.fraction=0,0.1, 0.2").unwrap();
        assert_eq!(p.values, ["0", "0.1", "0.2"]);
        assert!(Param::parse("nothing").is_err());
        assert!(Param::parse("a=").is_err());
        let src = "duration = \"1s\"\n[nodes]\ncount = 3\n";
        let out = override_param(src, "adversary.kind", "sybil").unwrap();
        let table: toml::Table = toml::from_str(&out).unwrap();
        assert_eq!(table["adversary"]["kind"].as_str(), Some("sybil"));
        assert!(matches!(
            override_param(src, "duration.x", "1"),
            Err(SweepError::NotATable { .. })
        ));
        let grid_err = grid(src, "t.toml", &[Param::parse("nodes.count=0").unwrap()]);
        assert!(grid_err.unwrap_err().to_string().contains("nodes.count=0"));
    }

    #[test]
    fn intervals_use_students_t() {
        let (m, h) = mean_ci(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12);
        assert!((h - 4.303 * (1.0f64 / 3.0).sqrt()).abs() < 1e-9);
        assert_eq!(mean_ci(&[5.0]), (5.0, 0.0));
    }
}
