//! The closing table as an SVG chart: one panel per figure, one bar per stage.

use std::path::Path;

use plotters::prelude::*;

use crate::report::StageReport;

/// Why the chart could not be drawn.
#[derive(Debug, thiserror::Error)]
#[error("cannot draw the chart: {0}")]
pub struct ChartError(String);

fn err(e: impl std::fmt::Display) -> ChartError {
    ChartError(e.to_string())
}

/// Writes `reports` to `path` as an SVG of four panels: samples/s, query p50 and p99, CPU per
/// thousand samples, OS threads and peak RSS.
pub fn write(path: &Path, title: &str, reports: &[StageReport]) -> Result<(), ChartError> {
    let root = SVGBackend::new(path, (1200, 760)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 22)).map_err(err)?;
    let panels = root.split_evenly((2, 2));
    let stages: Vec<String> = reports
        .iter()
        .map(|r| format!("stage {}", r.stage))
        .collect();
    let series: [(&str, Vec<Bars>); 4] = [
        (
            "samples stored per second",
            vec![(
                "samples/s",
                BLUE,
                reports.iter().map(|r| r.samples_per_s).collect(),
            )],
        ),
        (
            "API query round trip, ms",
            vec![
                (
                    "p50",
                    GREEN,
                    reports.iter().map(|r| r.query_p50_ms).collect(),
                ),
                ("p99", RED, reports.iter().map(|r| r.query_p99_ms).collect()),
            ],
        ),
        (
            "CPU ms per 1,000 samples",
            vec![(
                "CPU",
                MAGENTA,
                reports
                    .iter()
                    .map(StageReport::cpu_ms_per_ksample)
                    .collect(),
            )],
        ),
        (
            "OS threads and peak RSS (MiB)",
            vec![
                (
                    "threads",
                    CYAN,
                    reports.iter().map(|r| r.threads as f64).collect(),
                ),
                (
                    "RSS MiB",
                    BLACK,
                    reports.iter().map(|r| r.rss_mib).collect(),
                ),
            ],
        ),
    ];
    for (area, (caption, bars)) in panels.iter().zip(series.iter()) {
        panel(area, caption, &stages, bars)?;
    }
    root.present().map_err(err)
}

/// One series of a panel: its name, colour and a value per stage.
type Bars<'a> = (&'a str, RGBColor, Vec<f64>);

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    caption: &str,
    stages: &[String],
    bars: &[Bars],
) -> Result<(), ChartError>
where
    DB::ErrorType: 'static,
{
    let top = bars
        .iter()
        .flat_map(|(_, _, v)| v.iter().copied())
        .fold(0.0_f64, f64::max)
        .max(1e-9)
        * 1.15;
    let n = stages.len();
    let width = 1.0 / (bars.len() as f64 + 1.0);
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..n as f64, 0.0..top)
        .map_err(err)?;
    let labels = stages.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .draw()
        .map_err(err)?;
    for (b, (name, color, values)) in bars.iter().enumerate() {
        let left = |i: usize| i as f64 + width * (b as f64 + 0.5);
        chart
            .draw_series(values.iter().enumerate().map(|(i, v)| {
                Rectangle::new([(left(i), 0.0), (left(i) + width, *v)], color.filled())
            }))
            .map_err(err)?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chart_is_an_svg_with_every_stage() {
        let r = |stage| StageReport {
            stage,
            transport: "memory".into(),
            db: "sqlite".into(),
            samples: 1000,
            samples_per_s: 5000.0 + f64::from(stage),
            queries: 10,
            query_p50_ms: 0.5,
            query_p99_ms: 2.0,
            cpu_s: 0.4,
            threads: 20,
            rss_mib: 30.0,
            checked: 40,
            refused: 0,
        };
        let dir = std::env::temp_dir().join(format!("osier-demo-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("stages.svg");
        write(&path, "test", &[r(0), r(1), r(2), r(3)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"));
        for s in ["stage 0", "stage 3", "samples stored per second"] {
            assert!(svg.contains(s), "{s} missing");
        }
        std::fs::remove_dir_all(dir).unwrap();
    }
}
