//! SVG plots of engine runs (plotters' SVG backend: no fonts or system libraries needed).
//!
//! `suite.svg` is a grid: one row per queue depth; on the left IOPS, on the right latency
//! (bar at p50, whisker up to p99), one group of bars per workload, one bar per journal
//! mode in the group.

use std::path::Path;

use plotters::prelude::*;

use crate::error::BenchError;
use crate::report::EngineReport;

/// Bar colours, one per mode in the order the modes first appear.
const COLOURS: [RGBColor; 4] = [
    RGBColor(0x1f, 0x77, 0xb4),
    RGBColor(0xd6, 0x27, 0x28),
    RGBColor(0x2c, 0xa0, 0x2c),
    RGBColor(0x94, 0x67, 0xbd),
];

/// Values in first-appearance order, without repeats.
fn distinct<T: PartialEq + Clone>(it: impl Iterator<Item = T>) -> Vec<T> {
    let mut v: Vec<T> = Vec::new();
    for x in it {
        if !v.contains(&x) {
            v.push(x);
        }
    }
    v
}

/// Which panel: IOPS or latency.
#[derive(Clone, Copy)]
enum Metric {
    Iops,
    LatencyUs,
}

/// Draws the suite's grid to `path`.
pub fn suite_svg(path: &Path, runs: &[EngineReport]) -> Result<(), BenchError> {
    let err = |e: &dyn std::fmt::Display| BenchError::Plot {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let workloads = distinct(runs.iter().map(|r| r.workload.clone()));
    let modes = distinct(runs.iter().map(|r| r.mode.clone()));
    let mut qds = distinct(runs.iter().map(|r| r.qd));
    qds.sort_unstable();
    if runs.is_empty() {
        return Err(err(&"no runs to plot"));
    }
    let rows = qds.len() as u32;
    let root = SVGBackend::new(path, (1200, 60 + 360 * rows)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled(
            "keel-bench suite: Full vs MetadataOnly (sim device)",
            ("sans-serif", 22),
        )
        .map_err(|e| err(&e))?;
    let panels = root.split_evenly((qds.len(), 2));
    for (i, &qd) in qds.iter().enumerate() {
        for (j, metric) in [Metric::Iops, Metric::LatencyUs].into_iter().enumerate() {
            let area = &panels[i * 2 + j];
            let cell: Vec<&EngineReport> = runs.iter().filter(|r| r.qd == qd).collect();
            draw_panel(area, metric, qd, &cell, &workloads, &modes).map_err(|e| err(&e))?;
        }
    }
    root.present().map_err(|e| err(&e))
}

type PanelResult =
    Result<(), DrawingAreaErrorKind<<SVGBackend<'static> as DrawingBackend>::ErrorType>>;

fn draw_panel(
    area: &DrawingArea<SVGBackend<'_>, plotters::coord::Shift>,
    metric: Metric,
    qd: u32,
    runs: &[&EngineReport],
    workloads: &[String],
    modes: &[String],
) -> PanelResult {
    let value = |r: &EngineReport| match metric {
        Metric::Iops => r.iops,
        Metric::LatencyUs => r.lat_us.p50,
    };
    let top = |r: &EngineReport| match metric {
        Metric::Iops => r.iops,
        Metric::LatencyUs => r.lat_us.p99,
    };
    let y_max = runs.iter().map(|r| top(r)).fold(0.0f64, f64::max).max(1.0) * 1.1;
    let (title, y_desc) = match metric {
        Metric::Iops => (format!("IOPS, QD {qd}"), "transactions / s"),
        Metric::LatencyUs => (format!("latency, QD {qd} (bar p50, whisker p99)"), "µs"),
    };
    let n = workloads.len().max(1) as f64;
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..n, 0.0..y_max)?;
    let names = workloads.to_vec();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(workloads.len() * 2 + 1)
        .x_label_formatter(&|x| {
            // Label only the middle of each group.
            let i = x.floor();
            if (x - i - 0.5).abs() < 1e-6 {
                names.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .y_label_formatter(&|y| {
            if *y >= 10_000.0 {
                format!("{:.0}k", y / 1000.0)
            } else {
                format!("{y:.0}")
            }
        })
        .draw()?;
    let width = 0.8 / modes.len().max(1) as f64;
    for (m, mode) in modes.iter().enumerate() {
        let colour = COLOURS[m % COLOURS.len()];
        let bars: Vec<(f64, &EngineReport)> = runs
            .iter()
            .filter(|r| &r.mode == mode)
            .filter_map(|r| {
                let w = workloads.iter().position(|w| *w == r.workload)?;
                Some((w as f64 + 0.1 + width * m as f64, *r))
            })
            .collect();
        chart
            .draw_series(bars.iter().map(|(x, r)| {
                Rectangle::new([(*x, 0.0), (x + width * 0.9, value(r))], colour.filled())
            }))?
            .label(mode.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 10, y + 5)], colour.filled()));
        if let Metric::LatencyUs = metric {
            chart.draw_series(bars.iter().map(|(x, r)| {
                let mid = x + width * 0.45;
                PathElement::new(vec![(mid, value(r)), (mid, top(r))], BLACK.stroke_width(2))
            }))?;
        }
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_keeps_first_appearance_order() {
        assert_eq!(distinct([3, 1, 3, 2, 1].into_iter()), vec![3, 1, 2]);
    }
}
