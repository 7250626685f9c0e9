//! The market's charts, from `market_epochs.csv` (runs with a `[market]` section):
//!
//! - `market_reputation.{png,svg}`: per reputation epoch, the AUC of trust between honest
//!   and lying providers (all of them, and those with leases in the window) and the share
//!   of honest agents' leases the liars won;
//! - `market_trust.{png,svg}`: the mean trust share of an honest and of a lying provider.

use std::path::{Path, PathBuf};

use plotters::prelude::{BLUE, GREEN, RED};

use super::{Chart, PlotError, Series, Table, render, zip};

/// Draws the market's charts into `dir` when it holds `market_epochs.csv`; returns the
/// files written (none for a gossip-only run).
///
/// # Errors
/// [`PlotError`] when the CSV is malformed or drawing fails.
pub fn plot(dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    let path = dir.join("market_epochs.csv");
    if !path.exists() {
        return Ok(Vec::new());
    }
    let epochs = Table::read(&path)?;
    let t = epochs.column("t_s");
    let ppm = |column: &str| -> Vec<f64> {
        epochs
            .column(column)
            .into_iter()
            .map(|ppb| ppb / 1_000.0)
            .collect()
    };
    let charts = [
        Chart {
            file: "market_reputation",
            title: "Reputation: honest vs lying providers",
            x_label: "simulated time (s)",
            y_label: "AUC / share",
            series: vec![
                Series {
                    label: "AUC (all providers)",
                    points: zip(&t, &epochs.column("auc")),
                    color: BLUE,
                },
                Series {
                    label: "AUC (providers with leases)",
                    points: zip(&t, &epochs.column("auc_rated")),
                    color: GREEN,
                },
                Series {
                    label: "liars' share of honest leases",
                    points: zip(&t, &epochs.column("liar_share")),
                    color: RED,
                },
            ],
        },
        Chart {
            file: "market_trust",
            title: "Mean trust share per provider",
            x_label: "simulated time (s)",
            y_label: "trust share (ppm)",
            series: vec![
                Series {
                    label: "honest",
                    points: zip(&t, &ppm("honest_trust_ppb")),
                    color: BLUE,
                },
                Series {
                    label: "lying",
                    points: zip(&t, &ppm("liar_trust_ppb")),
                    color: RED,
                },
            ],
        },
    ];
    let mut written = Vec::new();
    for chart in &charts {
        written.extend(render(dir, chart)?);
    }
    Ok(written)
}
