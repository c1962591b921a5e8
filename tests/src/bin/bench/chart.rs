//! The soak's series as a PNG: an operator would rather see a flat line than read a table.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::soak::Point;

const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

/// Draws tasks, file descriptors and RSS over time, one panel each.
pub fn draw(
    path: &Path,
    points: &[Point],
    containers: usize,
    rotations: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    let font: &'static [u8] = Box::leak(std::fs::read(FONT)?.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, font).map_err(|_| "cannot load the font")?;
    let root = BitMapBackend::new(path, (1000, 900)).into_drawing_area();
    root.fill(&WHITE)?;
    let title = format!(
        "log-capturer soak: {containers} containers, 1 line/s each, rotation every 100 ms ({rotations:.0} rotations)"
    );
    let root = root.titled(&title, ("sans-serif", 20))?;
    let panels = root.split_evenly((3, 1));
    let end = points.last().map_or(1.0, |p| p.t).max(1.0);
    type Series = (&'static str, fn(&Point) -> f64, RGBColor);
    let series: [Series; 3] = [
        ("tokio tasks alive", |p| p.tasks, BLUE),
        ("open file descriptors", |p| p.fds, RED),
        ("resident memory (MiB)", |p| p.rss_mib, GREEN),
    ];
    for (panel, (name, value, color)) in panels.iter().zip(series) {
        let top = points.iter().map(value).fold(0.0, f64::max) * 1.25 + 1.0;
        let mut chart = ChartBuilder::on(panel)
            .caption(name, ("sans-serif", 16))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..end, 0.0..top)?;
        chart.configure_mesh().x_desc("seconds").draw()?;
        chart.draw_series(LineSeries::new(
            points.iter().map(|p| (p.t, value(p))),
            color.stroke_width(2),
        ))?;
    }
    root.present()?;
    Ok(())
}
