//! A horizontal bar chart of a results table, as SVG (plotters' SVG backend needs no system
//! fonts). Input: lines `label<TAB>pps[<TAB>group]`; `#` lines are comments.

use std::path::Path;

use plotters::prelude::*;

/// One bar.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    pub label: String,
    pub pps: f64,
    pub group: String,
}

/// Parses the TSV the scenario runner writes.
pub fn parse_tsv(text: &str) -> Vec<Bar> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let mut it = l.split('\t');
            let label = it.next()?.to_string();
            let pps = it.next()?.trim().parse().ok()?;
            let group = it.next().unwrap_or("").trim().to_string();
            Some(Bar { label, pps, group })
        })
        .collect()
}

fn color(group: &str) -> RGBColor {
    match group {
        "fiberlb" => RGBColor(0x1f, 0x77, 0xb4),
        "kernel" => RGBColor(0xff, 0x7f, 0x0e),
        "ceiling" => RGBColor(0x2c, 0xa0, 0x2c),
        "pipeline" => RGBColor(0x94, 0x67, 0xbd),
        _ => RGBColor(0x7f, 0x7f, 0x7f),
    }
}

/// Draws `bars` to `out` (SVG) with `title`.
pub fn draw(bars: &[Bar], title: &str, out: &Path) -> anyhow::Result<()> {
    anyhow::ensure!(!bars.is_empty(), "nothing to plot");
    let h = 80 + 22 * bars.len() as u32;
    let root = SVGBackend::new(out, (900, h)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = bars.iter().map(|b| b.pps).fold(0.0, f64::max).max(1.0) / 1e6;
    let n = bars.len();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(260)
        .build_cartesian_2d(0.0..max * 1.15, (0..n).into_segmented())?;
    let labels: Vec<String> = bars.iter().map(|b| b.label.clone()).collect();
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc("Mpps")
        .y_labels(n)
        .y_label_formatter(&|v: &SegmentValue<usize>| match v {
            // Bar i (from the top) sits in segment n - 1 - i.
            SegmentValue::CenterOf(y) if *y < n => labels[n - 1 - *y].clone(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let y = n - 1 - i;
        Rectangle::new(
            [
                (0.0, SegmentValue::Exact(y)),
                (b.pps / 1e6, SegmentValue::Exact(y + 1)),
            ],
            color(&b.group).filled(),
        )
    }))?;
    chart.draw_series(bars.iter().enumerate().map(|(i, b)| {
        let y = n - 1 - i;
        Text::new(
            format!("{:.3}", b.pps / 1e6),
            (b.pps / 1e6 + max * 0.01, SegmentValue::CenterOf(y)),
            ("sans-serif", 12),
        )
    }))?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsv_parses_and_plots() {
        let bars =
            parse_tsv("# x\nfiberlb dsr\t450000\tfiberlb\nlinux\t680000\tkernel\nbad line\n");
        assert_eq!(bars.len(), 2);
        assert_eq!(bars[1].pps, 680000.0);
        let dir = std::env::temp_dir().join(format!("pktgen-plot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("p.svg");
        draw(&bars, "test", &out).unwrap();
        let svg = std::fs::read_to_string(&out).unwrap();
        assert!(svg.contains("<svg") && svg.contains("fiberlb dsr"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
