//! SVG charts next to the bench tables: grouped bars, one group per workload, one bar per
//! implementation, on a log scale (the implementations differ by orders of magnitude).
//! Written to `target/xtask/charts/`; docs/benchmarks.md shows the recorded ones from
//! `docs/charts/`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use plotters::prelude::*;

/// Where the charts go.
pub(crate) fn charts_dir() -> PathBuf {
    crate::target_dir().join("xtask/charts")
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

/// Grouped bars straight from a bench's results (`(row, implementation) -> value`): one group
/// per `rows` entry (labelled by `labels`, or by the row keys), one bar per `(name,
/// implementation key)` of `impls`.
pub(crate) fn bars_from(
    results: &BTreeMap<(String, String), f64>,
    file: &str,
    title: &str,
    unit: &str,
    rows: &[&str],
    labels: Option<&[&str]>,
    impls: &[(&str, &str)],
) -> Result<PathBuf, String> {
    let get = |b: &str, i: &str| results.get(&(b.to_string(), i.to_string())).copied();
    let series: Vec<(&str, Vec<Option<f64>>)> = impls
        .iter()
        .map(|(name, i)| (*name, rows.iter().map(|r| get(r, i)).collect()))
        .collect();
    grouped_bars(file, title, unit, labels.unwrap_or(rows), &series)
}

/// One bar per `(series name, value per group)`; a missing value leaves a gap. Returns the
/// file written.
pub(crate) fn grouped_bars(
    file: &str,
    title: &str,
    unit: &str,
    groups: &[&str],
    series: &[(&str, Vec<Option<f64>>)],
) -> Result<PathBuf, String> {
    let dir = charts_dir();
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let path = dir.join(file);
    let err = |e: &dyn std::fmt::Display| format!("chart {}: {e}", path.display());
    let values = series.iter().flat_map(|(_, v)| v.iter().flatten().copied());
    let (lo, hi) = values.fold((f64::MAX, 0.0_f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return Err(format!("chart {file}: nothing measured"));
    }
    // Headroom above the tallest bar for the legend.
    let (lo, hi) = ((lo.max(1e-9) / 2.0), hi * 8.0);
    let width = 160 + 150 * groups.len() as u32;
    let root = SVGBackend::new(&path, (width.max(640), 480)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let n = groups.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(14)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n as f64, (lo..hi).log_scale())
        .map_err(|e| err(&e))?;
    let labels: Vec<String> = groups.iter().map(|g| g.to_string()).collect();
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
        .y_label_formatter(&|v| human(*v))
        .y_desc(unit)
        .draw()
        .map_err(|e| err(&e))?;
    let w = 0.8 / series.len().max(1) as f64;
    for (s, (name, vals)) in series.iter().enumerate() {
        let color = COLORS[s % COLORS.len()];
        let left = move |i: usize| i as f64 + 0.1 + w * s as f64;
        chart
            .draw_series(vals.iter().enumerate().filter_map(|(i, v)| {
                v.map(|v| Rectangle::new([(left(i), lo), (left(i) + w, v)], color.filled()))
            }))
            .map_err(|e| err(&e))?
            .label(*name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    drop(chart);
    drop(root);
    println!("chart: {}", path.display());
    Ok(path)
}

/// `1.2M`, `150k`, `12`, `0.35`: a log axis's labels without a row of zeros.
fn human(v: f64) -> String {
    match v {
        v if v >= 1e6 => format!("{}M", trim(v / 1e6)),
        v if v >= 1e3 => format!("{}k", trim(v / 1e3)),
        v => trim(v),
    }
}

fn trim(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn axis_labels_are_short() {
        assert_eq!(super::human(1_250_000.0), "1.25M");
        assert_eq!(super::human(100_000.0), "100k");
        assert_eq!(super::human(12.0), "12");
        assert_eq!(super::human(0.5), "0.5");
    }
}
