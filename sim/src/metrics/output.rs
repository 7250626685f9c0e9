//! Writes a run's results: `metrics.json` and CSV time series.
//!
//! - `metrics.json`: the [`Summary`];
//! - `propagation_cdf.csv`: `percentile,latency_ms` (the delivery latency CDF);
//! - `hops.csv`: `hops,deliveries` for gossip deliveries;
//! - `per_node.csv`: `node,region,frames_sent,bytes_sent,frames_received,bytes_received,duplicates`;
//! - `messages.csv`: `message,topic,origin,published_s,eligible,delivered,coverage`;
//! - `timeseries.csv`: per sample `time_s,live_nodes,frames,bytes,duplicates,deliveries,
//!   book_completeness,book_mean,mesh_mean,mesh_min,mesh_p50,mesh_max,mesh_below_d_lo`;
//! - `mesh_degree.csv`: the mesh degree distribution over time, `time_s,degree,count`.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use super::summary::Spread;
use super::{Metrics, Summary};

/// Why the results could not be written.
#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    /// A file or the directory could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The summary could not be serialized.
    #[error("cannot serialize metrics.json")]
    Json(#[from] serde_json::Error),
}

fn write(dir: &Path, name: &str, contents: &str) -> Result<(), OutputError> {
    let path = dir.join(name);
    fs::write(&path, contents).map_err(|source| OutputError::Write { path, source })
}

/// Writes every output file into `dir` (created if missing); `regions` names region
/// indices, `node_region` gives each node's, `d_lo` is gossipsub's.
///
/// # Errors
/// [`OutputError`] naming the file that could not be written.
pub fn write_all(
    dir: &Path,
    metrics: &Metrics,
    summary: &Summary,
    regions: &[String],
    node_region: impl Fn(u32) -> u16,
    d_lo: usize,
) -> Result<(), OutputError> {
    fs::create_dir_all(dir).map_err(|source| OutputError::Write {
        path: dir.to_owned(),
        source,
    })?;
    write(
        dir,
        "metrics.json",
        &(serde_json::to_string_pretty(summary)? + "\n"),
    )?;

    // Writing into a String cannot fail; the results are ignored below for that reason.
    let mut cdf = String::from("percentile,latency_ms\n");
    for p in 1..=100u32 {
        if let Some(ms) = metrics.latency_quantile_ms(f64::from(p) / 100.0) {
            let _ = writeln!(cdf, "{p},{ms}");
        }
    }
    write(dir, "propagation_cdf.csv", &cdf)?;

    let mut hops = String::from("hops,deliveries\n");
    for (h, n) in metrics.hops.iter().enumerate() {
        let _ = writeln!(hops, "{h},{n}");
    }
    write(dir, "hops.csv", &hops)?;

    let mut nodes = String::from(
        "node,region,frames_sent,bytes_sent,frames_received,bytes_received,duplicates\n",
    );
    for (i, c) in metrics.per_node.iter().enumerate() {
        let region = regions
            .get(usize::from(node_region(i as u32)))
            .map_or("?", String::as_str);
        let _ = writeln!(
            nodes,
            "{i},{region},{},{},{},{},{}",
            c.sent_frames, c.sent_bytes, c.recv_frames, c.recv_bytes, c.duplicates
        );
    }
    write(dir, "per_node.csv", &nodes)?;

    let mut messages =
        String::from("message,topic,origin,published_s,eligible,delivered,coverage,kind\n");
    for (i, m) in metrics.messages.iter().enumerate() {
        let topic = regions
            .get(usize::from(m.topic))
            .map_or("?", String::as_str);
        let _ = writeln!(
            messages,
            "{i},{topic},{},{:.3},{},{},{:.4},{}",
            m.origin,
            m.published_at.as_micros() as f64 / 1e6,
            m.eligible_count,
            m.delivered_count,
            m.coverage(),
            if m.withdrawal { "withdrawal" } else { "offer" }
        );
    }
    write(dir, "messages.csv", &messages)?;

    let mut series = String::from(
        "time_s,live_nodes,frames,bytes,duplicates,deliveries,book_completeness,book_mean,\
         mesh_mean,mesh_min,mesh_p50,mesh_max,mesh_below_d_lo\n",
    );
    let mut degrees = String::from("time_s,degree,count\n");
    for s in &metrics.samples {
        let t = s.at.as_micros() as f64 / 1e6;
        let values: Vec<f64> = s
            .mesh_degrees
            .iter()
            .enumerate()
            .flat_map(|(d, n)| std::iter::repeat_n(d as f64, *n as usize))
            .collect();
        let pairs = values.len().max(1) as f64;
        let below = values.iter().filter(|d| (**d as usize) < d_lo).count() as f64 / pairs;
        let spread = Spread::of(values);
        let _ = writeln!(
            series,
            "{t:.3},{},{},{},{},{},{:.4},{:.2},{:.3},{},{},{},{:.4}",
            s.live,
            s.frames,
            s.bytes,
            s.duplicates,
            s.deliveries,
            s.completeness,
            s.book_mean,
            spread.mean,
            spread.min,
            spread.p50,
            spread.max,
            below
        );
        for (d, n) in s.mesh_degrees.iter().enumerate().filter(|(_, n)| **n > 0) {
            let _ = writeln!(degrees, "{t:.3},{d},{n}");
        }
    }
    write(dir, "timeseries.csv", &series)?;
    write(dir, "mesh_degree.csv", &degrees)?;
    Ok(())
}
