//! `clickflow report --out DIR`: PNG charts straight from PostgreSQL, no server needed:
//! traffic over time, the funnel, conversion by device, top products by revenue, revenue
//! and customers by RFM segment, and cohort retention as a heatmap.
//!
//! Owns the chart queries and drawing (plotters with a font shipped in `assets/`).

use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use postgres::{Client, NoTls};

use crate::sink::postgres::redact;

/// Size of every chart, pixels.
pub const SIZE: (u32, u32) = (1000, 600);
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Writes the charts into `dir` (created if missing); returns their paths.
pub fn run(url: &str, dir: &Path) -> Result<Vec<PathBuf>> {
    register_font("sans-serif", FontStyle::Normal, FONT).map_err(|_| anyhow!("cannot load the chart font"))?;
    let mut client = Client::connect(url, NoTls).with_context(|| format!("cannot connect to PostgreSQL at {}", redact(url)))?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();

    let traffic: Vec<(f64, f64)> = client
        .query("SELECT extract(epoch FROM window_start)::float8, events::float8 FROM traffic ORDER BY window_start", &[])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let path = dir.join("traffic.png");
    traffic_chart(&path, &traffic)?;
    written.push(path);

    let f = client.query_one(
        "SELECT coalesce(sum(sessions), 0)::float8, coalesce(sum(product_view_sessions), 0)::float8, coalesce(sum(cart_sessions), 0)::float8,
                coalesce(sum(checkout_sessions), 0)::float8, coalesce(sum(purchase_sessions), 0)::float8 FROM funnel",
        &[],
    )?;
    let steps = ["1 any event", "2 product view", "3 add to cart", "4 checkout", "5 purchase"];
    let path = dir.join("funnel.png");
    bar_chart(
        &path,
        "Sessions reaching each funnel step",
        &steps.map(String::from),
        &(0..5).map(|i| f.get(i)).collect::<Vec<f64>>(),
        "sessions",
    )?;
    written.push(path);

    let rows = client.query(
        "SELECT value, 100 * sum(converted_sessions)::float8 / sum(sessions) FROM conversion
         WHERE dimension = 'device' GROUP BY value ORDER BY value",
        &[],
    )?;
    let path = dir.join("conversion_by_device.png");
    bar_chart(
        &path,
        "Session conversion by device",
        &rows.iter().map(|r| r.get(0)).collect::<Vec<String>>(),
        &rows.iter().map(|r| r.get(1)).collect::<Vec<f64>>(),
        "% of sessions converted",
    )?;
    written.push(path);

    let rows = client.query(
        "SELECT product_id || ' (' || min(category) || ')', sum(revenue)::float8 FROM product_stats
         GROUP BY product_id ORDER BY sum(revenue) DESC, product_id LIMIT 10",
        &[],
    )?;
    let path = dir.join("top_products.png");
    bar_chart(
        &path,
        "Top products by revenue",
        &rows.iter().map(|r| r.get(0)).collect::<Vec<String>>(),
        &rows.iter().map(|r| r.get(1)).collect::<Vec<f64>>(),
        "revenue",
    )?;
    written.push(path);

    let rows = client.query(
        "SELECT segment || ' (' || count(*) || ' customers)', sum(monetary)::float8 FROM customer_rfm
         GROUP BY segment ORDER BY sum(monetary) DESC, segment",
        &[],
    )?;
    let path = dir.join("segments.png");
    bar_chart(
        &path,
        "Revenue by RFM segment",
        &rows.iter().map(|r| r.get(0)).collect::<Vec<String>>(),
        &rows.iter().map(|r| r.get(1)).collect::<Vec<f64>>(),
        "revenue",
    )?;
    written.push(path);

    // The latest 20 cohorts, their first 21 days.
    let cells: Vec<(String, i64, f64)> = client
        .query(
            "SELECT to_char(cohort_date, 'YYYY-MM-DD'), day_offset::int8, retention FROM cohort_retention
             WHERE cohort_date > (SELECT max(cohort_date) - 20 FROM cohort_retention) AND day_offset <= 20
             ORDER BY cohort_date, day_offset",
            &[],
        )?
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let path = dir.join("retention.png");
    retention_chart(&path, &cells)?;
    written.push(path);
    Ok(written)
}

/// Each cohort a row (the first at the top), each day after its first a column, shaded
/// and labelled by retention.
fn retention_chart(path: &Path, cells: &[(String, i64, f64)]) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let mut cohorts: Vec<&str> = cells.iter().map(|c| c.0.as_str()).collect();
    cohorts.dedup();
    let (n, days) = (cohorts.len().max(1), cells.iter().map(|c| c.1 as usize + 1).max().unwrap_or(1));
    let mut chart = ChartBuilder::on(&root)
        .caption("Cohort retention (share of a cohort active N days after its first day)", ("sans-serif", 24))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(120)
        .build_cartesian_2d((0..days - 1).into_segmented(), (0..n - 1).into_segmented())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("days after the cohort's first day")
        .x_labels(days)
        .x_label_formatter(&|v| match v {
            SegmentValue::CenterOf(d) => d.to_string(),
            _ => String::new(),
        })
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => cohorts.get(n - 1 - *i).map(|c| c.to_string()).unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 14))
        .draw()
        .map_err(draw_error)?;
    let cell = |(cohort, day, retention): &(String, i64, f64)| {
        let row = n - 1 - cohorts.iter().position(|c| c == cohort).unwrap_or(0);
        let day = *day as usize;
        let shade = Rectangle::new(
            [(SegmentValue::Exact(day), SegmentValue::Exact(row)), (SegmentValue::Exact(day + 1), SegmentValue::Exact(row + 1))],
            BLUE.mix(0.1 + 0.9 * retention.clamp(0.0, 1.0)).filled(),
        );
        let label = Text::new(
            format!("{:.0}%", 100.0 * retention),
            (SegmentValue::CenterOf(day), SegmentValue::CenterOf(row)),
            ("sans-serif", 12).into_font().color(if *retention > 0.5 { &WHITE } else { &BLACK }),
        );
        [shade.into_dyn(), label.into_dyn()]
    };
    chart.draw_series(cells.iter().flat_map(cell)).map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}

fn draw_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw a chart: {e}")
}

/// Events per traffic window against hours since the first window.
fn traffic_chart(path: &Path, points: &[(f64, f64)]) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let start = points.first().map_or(0.0, |p| p.0);
    let hours: Vec<(f64, f64)> = points.iter().map(|(t, n)| ((t - start) / 3600.0, *n)).collect();
    let x_max = hours.last().map_or(1.0, |p| p.0.max(1.0 / 60.0));
    let y_max = hours.iter().map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let since = dataflows::time::format_rfc3339((start * 1000.0) as i64);
    let mut chart = ChartBuilder::on(&root)
        .caption("Events per traffic window", ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .x_desc(format!("hours since {since}"))
        .y_desc("events")
        .label_style(("sans-serif", 16))
        .draw()
        .map_err(draw_error)?;
    chart.draw_series(LineSeries::new(hours, BLUE.stroke_width(2))).map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}

/// One horizontal bar per label, the first at the top.
fn bar_chart(path: &Path, title: &str, labels: &[String], values: &[f64], x_desc: &str) -> Result<()> {
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(draw_error)?;
    let n = labels.len().max(1);
    let x_max = values.iter().copied().fold(1e-9, f64::max) * 1.15;
    // The segmented range 0..n-1 has n segments; segment i is drawn n-1-i from the bottom.
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 28))
        .margin(20)
        .x_label_area_size(50)
        .y_label_area_size(230)
        .build_cartesian_2d(0.0..x_max, (0..n - 1).into_segmented())
        .map_err(draw_error)?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .x_desc(x_desc)
        .y_labels(n)
        .y_label_formatter(&|v| match v {
            SegmentValue::CenterOf(i) => labels.get(n - 1 - *i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(draw_error)?;
    chart
        .draw_series(values.iter().enumerate().map(|(i, v)| {
            let row = n - 1 - i;
            let mut bar = Rectangle::new([(0.0, SegmentValue::Exact(row)), (*v, SegmentValue::Exact(row + 1))], BLUE.mix(0.7).filled());
            bar.set_margin(6, 6, 0, 0);
            bar
        }))
        .map_err(draw_error)?;
    root.present().map_err(draw_error)?;
    Ok(())
}
