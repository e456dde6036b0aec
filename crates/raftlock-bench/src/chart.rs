//! The PNG chart: one horizontal bar per comparison row, the ratio to
//! etcd on a log scale (> 1, green, means raftlock did better). Drawn
//! with plotters' bitmap backend; text uses an embedded DejaVu Sans
//! through ab_glyph, so no system font libraries are needed.

use std::path::Path;
use std::sync::Once;

use anyhow::{anyhow, Context};
use plotters::coord::ranged1d::SegmentValue;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::report::Row;

const FONT: &str = "sans-serif";
const BETTER: RGBColor = RGBColor(46, 139, 87);
const WORSE: RGBColor = RGBColor(200, 60, 50);

fn register_font() -> anyhow::Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, dejavu::sans::regular())
            .map_err(|_| anyhow!("the embedded font did not load"));
    });
    result
}

/// The log-scale range that shows every ratio, 1 and some room.
fn ratio_range(ratios: &[f64]) -> (f64, f64) {
    let lo = ratios.iter().copied().fold(0.5, f64::min);
    let hi = ratios.iter().copied().fold(2.0, f64::max);
    (lo / 1.6, hi * 1.6)
}

/// Draws the rows that have a ratio into a PNG at `path`.
pub fn draw(rows: &[Row], title: &str, path: &Path) -> anyhow::Result<()> {
    register_font()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let bars: Vec<(String, f64)> = rows
        .iter()
        .filter_map(|r| r.ratio.map(|x| (r.metric.clone(), x)))
        .collect();
    let n = bars.len() as u32;
    let (lo, hi) = ratio_range(&bars.iter().map(|b| b.1).collect::<Vec<_>>());
    let height = 150 + 34 * n;
    let root = BitMapBackend::new(path, (1200, height)).into_drawing_area();
    let plot = |root: &DrawingArea<BitMapBackend, _>| -> Result<(), Box<dyn std::error::Error>> {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FONT, 24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(430)
            .build_cartesian_2d(
                (lo..hi).log_scale().base(2.0),
                (0..n.max(1) - 1).into_segmented(),
            )?;
        // Row i is drawn at segment n-1-i, so the table's first row is on top.
        let label_of = |v: &SegmentValue<u32>| match v {
            SegmentValue::CenterOf(y) if *y < n => bars[(n - 1 - y) as usize].0.clone(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_y_mesh()
            .y_labels(n as usize)
            .y_label_formatter(&label_of)
            .y_label_style((FONT, 16))
            .x_label_style((FONT, 15))
            .x_label_formatter(&|x| format!("{x:.2}x"))
            .x_desc("ratio to etcd, log scale (> 1 means raftlock did better)")
            .axis_desc_style((FONT, 16))
            .draw()?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio))| {
            let y = n - 1 - i as u32;
            let color = if *ratio >= 1.0 { BETTER } else { WORSE };
            let mut bar = Rectangle::new(
                [
                    (1.0, SegmentValue::Exact(y)),
                    (*ratio, SegmentValue::Exact(y + 1)),
                ],
                color.filled(),
            );
            bar.set_margin(5, 5, 0, 0);
            bar
        }))?;
        chart.draw_series(std::iter::once(PathElement::new(
            vec![(1.0, SegmentValue::Exact(0)), (1.0, SegmentValue::Last)],
            BLACK.stroke_width(2),
        )))?;
        chart.draw_series(bars.iter().enumerate().map(|(i, (_, ratio))| {
            let y = n - 1 - i as u32;
            // Past the bar's end, on the side away from 1.
            let x = if *ratio >= 1.0 {
                ratio * 1.04
            } else {
                ratio / 1.04
            };
            let style = TextStyle::from((FONT, 15).into_font()).pos(if *ratio >= 1.0 {
                Pos::new(HPos::Left, VPos::Center)
            } else {
                Pos::new(HPos::Right, VPos::Center)
            });
            Text::new(
                format!("{ratio:.2}x"),
                (x, SegmentValue::CenterOf(y)),
                style,
            )
        }))?;
        root.present()?;
        Ok(())
    };
    plot(&root)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("drawing {}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn range_always_shows_one_with_room() {
        let (lo, hi) = super::ratio_range(&[3.0, 8.0]);
        assert!(lo < 0.5 && hi > 8.0);
        let (lo, hi) = super::ratio_range(&[0.1]);
        assert!(lo < 0.1 && hi > 2.0);
    }
}
