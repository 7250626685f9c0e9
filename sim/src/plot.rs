//! `agora-sim plot DIR`: charts of a run's CSV files, as PNG and SVG.
//!
//! Reads what [`crate::metrics::output`] wrote and draws, into the same directory:
//!
//! - `propagation_cdf.{png,svg}`: the fraction of deliveries within each latency;
//! - `hops.{png,svg}`: gossip deliveries by hop count;
//! - `mesh.{png,svg}`: mesh degree (mean, min, max) over time;
//! - `completeness.{png,svg}`: book completeness and live nodes over time;
//! - `traffic.{png,svg}`: bytes sent per second over time;
//! - with a market, its reputation and trust per epoch ([`market`]).
//!
//! Text needs a TrueType font: `AGORA_SIM_FONT` names one, else DejaVu Sans or Liberation
//! Sans is looked up in the usual system places.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::prelude::*;

mod market;

/// Why a chart could not be drawn.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// A CSV file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// A CSV file is not what `agora-sim run --out` writes.
    #[error("{}: line {line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// One-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// No usable font was found.
    #[error("no TrueType font found for chart text: set AGORA_SIM_FONT to a .ttf file")]
    NoFont,
    /// Drawing failed.
    #[error("cannot draw {}: {reason}", path.display())]
    Draw {
        /// The chart being drawn.
        path: PathBuf,
        /// The backend's message.
        reason: String,
    },
}

const FONT_CANDIDATES: [&str; 4] = [
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a font for plotters once per process.
fn ensure_font() -> Result<(), PlotError> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        let env = std::env::var_os("AGORA_SIM_FONT").map(PathBuf::from);
        let candidates = env
            .into_iter()
            .chain(FONT_CANDIDATES.iter().map(PathBuf::from));
        for path in candidates {
            if let Ok(bytes) = fs::read(&path) {
                // plotters keeps fonts for the life of the process.
                let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
                if plotters::style::register_font("sans-serif", FontStyle::Normal, bytes).is_ok() {
                    return true;
                }
            }
        }
        false
    });
    if ok { Ok(()) } else { Err(PlotError::NoFont) }
}

/// A CSV file as a header and rows of numbers (non-numeric cells are NaN).
struct Table {
    header: Vec<String>,
    rows: Vec<Vec<f64>>,
}

impl Table {
    fn read(path: &Path) -> Result<Self, PlotError> {
        let text = fs::read_to_string(path).map_err(|source| PlotError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut lines = text.lines();
        let header: Vec<String> = lines
            .next()
            .ok_or_else(|| PlotError::Malformed {
                path: path.to_owned(),
                line: 1,
                reason: "empty file".into(),
            })?
            .split(',')
            .map(str::to_owned)
            .collect();
        let mut rows = Vec::new();
        for (i, line) in lines.enumerate() {
            let row: Vec<f64> = line
                .split(',')
                .map(|cell| cell.parse().unwrap_or(f64::NAN))
                .collect();
            if row.len() != header.len() {
                return Err(PlotError::Malformed {
                    path: path.to_owned(),
                    line: i + 2,
                    reason: format!("{} fields, the header has {}", row.len(), header.len()),
                });
            }
            rows.push(row);
        }
        Ok(Table { header, rows })
    }

    /// The column named `name` (empty if absent).
    fn column(&self, name: &str) -> Vec<f64> {
        let Some(i) = self.header.iter().position(|h| h == name) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .map(|r| r.get(i).copied().unwrap_or(f64::NAN))
            .collect()
    }
}

/// One line of a chart.
struct Series {
    label: &'static str,
    points: Vec<(f64, f64)>,
    color: RGBColor,
}

/// A line chart's description.
struct Chart<'a> {
    file: &'a str,
    title: &'a str,
    x_label: &'a str,
    y_label: &'a str,
    series: Vec<Series>,
}

fn bounds(series: &[Series]) -> (f64, f64, f64) {
    let points = series.iter().flat_map(|s| s.points.iter());
    let (mut x_max, mut y_min, mut y_max) = (0.0f64, 0.0f64, 0.0f64);
    for &(x, y) in points.filter(|(x, y)| x.is_finite() && y.is_finite()) {
        x_max = x_max.max(x);
        y_min = y_min.min(y);
        y_max = y_max.max(y);
    }
    let pad = |v: f64| if v <= 0.0 { 1.0 } else { v * 1.05 };
    (pad(x_max), y_min, pad(y_max))
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart<'_>,
) -> Result<(), String> {
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (x_max, y_min, y_max) = bounds(&chart.series);
    let mut ctx = ChartBuilder::on(root)
        .caption(chart.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, y_min..y_max)
        .map_err(|e| e.to_string())?;
    ctx.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(|e| e.to_string())?;
    for s in &chart.series {
        let color = s.color;
        let points = s
            .points
            .iter()
            .copied()
            .filter(|(x, y)| x.is_finite() && y.is_finite());
        ctx.draw_series(LineSeries::new(points, color.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(s.label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if chart.series.len() > 1 {
        ctx.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .label_font(("sans-serif", 14))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    root.present().map_err(|e| e.to_string())
}

fn render(dir: &Path, chart: &Chart<'_>) -> Result<Vec<PathBuf>, PlotError> {
    const SIZE: (u32, u32) = (900, 540);
    let png = dir.join(format!("{}.png", chart.file));
    let svg = dir.join(format!("{}.svg", chart.file));
    let draw_error = |path: &Path| {
        let path = path.to_owned();
        move |reason| PlotError::Draw { path, reason }
    };
    draw_lines(&BitMapBackend::new(&png, SIZE).into_drawing_area(), chart)
        .map_err(draw_error(&png))?;
    draw_lines(&SVGBackend::new(&svg, SIZE).into_drawing_area(), chart)
        .map_err(draw_error(&svg))?;
    Ok(vec![png, svg])
}

fn zip(x: &[f64], y: &[f64]) -> Vec<(f64, f64)> {
    x.iter().copied().zip(y.iter().copied()).collect()
}

/// Draws every chart of the run in `dir`; returns the files written.
///
/// # Errors
/// [`PlotError`] when a CSV is missing or malformed, no font is found, or drawing fails.
pub fn plot_dir(dir: &Path) -> Result<Vec<PathBuf>, PlotError> {
    ensure_font()?;
    let cdf = Table::read(&dir.join("propagation_cdf.csv"))?;
    let hops = Table::read(&dir.join("hops.csv"))?;
    let series = Table::read(&dir.join("timeseries.csv"))?;
    let t = series.column("time_s");
    // Per-second rates from per-sample counts.
    let bytes_per_s: Vec<f64> = {
        let bytes = series.column("bytes");
        let mut previous = 0.0;
        t.iter()
            .zip(bytes)
            .map(|(&now, b)| {
                let dt = now - previous;
                previous = now;
                if dt > 0.0 { b / dt } else { 0.0 }
            })
            .collect()
    };
    let charts = [
        Chart {
            file: "propagation_cdf",
            title: "Offer propagation: publication to book",
            x_label: "latency (ms)",
            y_label: "fraction of deliveries",
            series: vec![Series {
                label: "deliveries",
                points: cdf
                    .column("latency_ms")
                    .into_iter()
                    .zip(cdf.column("percentile").into_iter().map(|p| p / 100.0))
                    .collect(),
                color: BLUE,
            }],
        },
        Chart {
            file: "hops",
            title: "Gossip deliveries by hop count",
            x_label: "hops from the publisher",
            y_label: "deliveries",
            series: vec![Series {
                label: "deliveries",
                points: zip(&hops.column("hops"), &hops.column("deliveries")),
                color: BLUE,
            }],
        },
        Chart {
            file: "mesh",
            title: "Mesh degree over time",
            x_label: "simulated time (s)",
            y_label: "mesh degree",
            series: vec![
                Series {
                    label: "max",
                    points: zip(&t, &series.column("mesh_max")),
                    color: RED,
                },
                Series {
                    label: "mean",
                    points: zip(&t, &series.column("mesh_mean")),
                    color: BLUE,
                },
                Series {
                    label: "min",
                    points: zip(&t, &series.column("mesh_min")),
                    color: GREEN,
                },
            ],
        },
        Chart {
            file: "completeness",
            title: "Offer book completeness and live nodes",
            x_label: "simulated time (s)",
            y_label: "fraction",
            series: vec![
                Series {
                    label: "book completeness",
                    points: zip(&t, &series.column("book_completeness")),
                    color: BLUE,
                },
                Series {
                    label: "live nodes (fraction of max)",
                    points: {
                        let live = series.column("live_nodes");
                        let max = live.iter().copied().fold(1.0, f64::max);
                        zip(&t, &live.iter().map(|l| l / max).collect::<Vec<_>>())
                    },
                    color: RED,
                },
            ],
        },
        Chart {
            file: "traffic",
            title: "Traffic: bytes sent per second, all nodes",
            x_label: "simulated time (s)",
            y_label: "bytes/s",
            series: vec![Series {
                label: "bytes/s",
                points: zip(&t, &bytes_per_s),
                color: BLUE,
            }],
        },
    ];
    let mut written = Vec::new();
    for chart in &charts {
        written.extend(render(dir, chart)?);
    }
    written.extend(market::plot(dir)?);
    Ok(written)
}

/// Figures a sweep charts, when it measured them.
const SWEEP_FIGURES: [(&str, &str); 6] = [
    ("market.lease_success_rate", "sweep_lease_success"),
    ("market.final_auc", "sweep_auc"),
    ("market.final_liar_share", "sweep_liar_share"),
    ("market.time_to_lease_ms.p50", "sweep_time_to_lease"),
    ("market.quota_overspend_micro", "sweep_overspend"),
    ("propagation.p99_ms", "sweep_propagation_p99"),
];

/// Charts a sweep's `csv` (as [`crate::sweep::summary_csv`] writes it) into `dir`: per
/// key figure, its mean and 95% interval against the first parameter. Nothing is drawn
/// when the first parameter is not numeric.
///
/// # Errors
/// [`PlotError`] when no font is found or drawing fails.
pub fn plot_sweep(dir: &Path, csv: &str) -> Result<Vec<PathBuf>, PlotError> {
    let mut lines = csv.lines();
    let Some(header) = lines.next() else {
        return Ok(Vec::new());
    };
    let columns: Vec<&str> = header.split(',').collect();
    let Some(figure_at) = columns.iter().position(|c| *c == "figure") else {
        return Ok(Vec::new());
    };
    if figure_at == 0 {
        return Ok(Vec::new());
    }
    let x_label = columns.first().copied().unwrap_or("parameter");
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut files = Vec::new();
    for (figure, file) in SWEEP_FIGURES {
        let mut mean = Vec::new();
        let mut low = Vec::new();
        let mut high = Vec::new();
        for row in rows.iter().filter(|r| r.get(figure_at) == Some(&figure)) {
            let num = |i: usize| row.get(i).and_then(|v| v.parse::<f64>().ok());
            let (Some(x), Some(m), Some(l), Some(h)) = (
                num(0),
                num(figure_at + 2),
                num(figure_at + 3),
                num(figure_at + 4),
            ) else {
                continue;
            };
            mean.push((x, m));
            low.push((x, l));
            high.push((x, h));
        }
        if mean.is_empty() {
            continue;
        }
        ensure_font()?;
        let chart = Chart {
            file,
            title: figure,
            x_label,
            y_label: "mean and 95% interval",
            series: vec![
                Series {
                    label: "mean",
                    points: mean,
                    color: BLUE,
                },
                Series {
                    label: "95% low",
                    points: low,
                    color: RGBColor(150, 150, 150),
                },
                Series {
                    label: "95% high",
                    points: high,
                    color: RGBColor(150, 150, 150),
                },
            ],
        };
        files.extend(render(dir, &chart)?);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn tables_parse_and_name_bad_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.csv");
        fs::write(&path, "a,b\n1,2\n3,x\n").unwrap();
        let table = Table::read(&path).unwrap();
        assert_eq!(table.column("a"), vec![1.0, 3.0]);
        assert!(table.column("b")[1].is_nan());
        assert!(table.column("c").is_empty());
        fs::write(&path, "a,b\n1,2\n3\n").unwrap();
        assert!(matches!(
            Table::read(&path),
            Err(PlotError::Malformed { line: 3, .. })
        ));
    }
}
