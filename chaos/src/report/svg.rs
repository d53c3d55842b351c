//! Hand-drawn SVG line charts for the HTML report: time on x, one or more
//! series on y (linear, or log when the data spans decades), fault windows
//! shaded behind the lines. Every number written goes through `fin`, so bad
//! input cannot put NaN into the document.

use super::{esc, fin};
use std::fmt::Write as _;

const WIDTH: f64 = 960.0;
const LEFT: f64 = 68.0;
const RIGHT: f64 = WIDTH - 18.0;
const TOP: f64 = 34.0;
const PLOT_H: f64 = 210.0;
const BOTTOM: f64 = TOP + PLOT_H;
const LEGEND_ROW: f64 = 18.0;
/// Fault labels sit in rows above the plot, off the data; at most this many
/// rows, staggered so that labels of adjacent windows do not overprint.
const LABEL_ROWS: usize = 3;
const LABEL_ROW: f64 = 13.0;
/// Caps on what one chart draws, so that absurd input stays a bounded page.
const MAX_TICKS: usize = 40;
const MAX_DECADES: i32 = 12;
const LABEL_CHARS: usize = 48;

pub(crate) const IN_MODEL: (&str, &str) = ("#4e79a7", "#2b4f7a");
pub(crate) const OUT_OF_MODEL: (&str, &str) = ("#8e44ad", "#5e2673");

#[derive(Clone)]
pub(crate) struct Series {
    pub name: String,
    pub color: String,
    /// None is a gap in the line (e.g. no ok operation in that bucket).
    pub points: Vec<(f64, Option<f64>)>,
}

pub(crate) struct Shade {
    pub start_s: f64,
    /// None: still open at the end of the run, drawn to the right edge.
    pub end_s: Option<f64>,
    pub label: String,
    /// Hover text with the full details.
    pub title: String,
    pub in_model: bool,
}

pub(crate) struct Chart<'a> {
    /// Unique within the page: names the clip path.
    pub id: &'a str,
    pub title: &'a str,
    pub y_unit: &'a str,
    /// The x axis spans at least `[0, x_max]` (the run's duration).
    pub x_max: f64,
    pub series: Vec<Series>,
    pub shades: &'a [Shade],
    /// Switch to a log y axis when positive values span more than 2 decades.
    pub log_if_wide: bool,
}

enum YScale {
    Linear {
        max: f64,
        ticks: Vec<f64>,
    },
    /// Decades `lo..=hi` as powers of ten.
    Log {
        lo: i32,
        hi: i32,
    },
}

impl YScale {
    fn y(&self, v: f64) -> Option<f64> {
        let f = match self {
            YScale::Linear { max, .. } => v / max,
            YScale::Log { lo, hi } => {
                if v <= 0.0 {
                    return None;
                }
                (v.log10() - f64::from(*lo)) / f64::from(hi - lo)
            }
        };
        f.is_finite().then(|| BOTTOM - f.clamp(0.0, 1.0) * PLOT_H)
    }

    fn ticks(&self) -> Vec<(f64, String)> {
        match self {
            YScale::Linear { ticks, .. } => {
                let step = if ticks.len() > 1 {
                    ticks[1] - ticks[0]
                } else {
                    1.0
                };
                ticks.iter().map(|&t| (t, fmt_tick(t, step))).collect()
            }
            YScale::Log { lo, hi } => (*lo..=*hi)
                .map(|e| {
                    let v = 10f64.powi(e);
                    (v, fmt_tick(v, v))
                })
                .collect(),
        }
    }
}

/// The step of about `target` round intervals (1, 2 or 5 times a power of
/// ten) covering `range`.
pub(crate) fn nice_step(range: f64, target: usize) -> f64 {
    let raw = range / target.max(1) as f64;
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let mag = 10f64.powf(raw.log10().floor());
    let norm = raw / mag;
    let m = if norm <= 1.0 {
        1.0
    } else if norm <= 2.0 {
        2.0
    } else if norm <= 5.0 {
        5.0
    } else {
        10.0
    };
    let step = m * mag;
    if step.is_finite() && step > 0.0 {
        step
    } else {
        1.0
    }
}

/// Ticks from 0 to a round top at or above `max`.
pub(crate) fn linear_ticks(max: f64) -> (f64, Vec<f64>) {
    if !(max.is_finite() && max > 0.0) {
        return (1.0, vec![0.0, 0.5, 1.0]);
    }
    let step = nice_step(max, 5);
    let n = ((max / step).ceil() as usize).clamp(1, MAX_TICKS);
    let top = step * n as f64;
    if !top.is_finite() {
        return (1.0, vec![0.0, 0.5, 1.0]);
    }
    (top, (0..=n).map(|i| step * i as f64).collect())
}

/// Enough decimals to tell ticks `step` apart, and no more.
fn fmt_tick(v: f64, step: f64) -> String {
    let decimals = if step > 0.0 && step < 1.0 {
        ((-step.log10()).ceil() as usize).min(6)
    } else {
        0
    };
    let v = if v.abs() < step * 1e-9 { 0.0 } else { v };
    if v.abs() >= 1e6 {
        format!("{v:.1e}")
    } else {
        format!("{v:.decimals$}")
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(n.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// Rough text width in px at 12px sans-serif, for laying out the legend.
fn text_w(s: &str) -> f64 {
    s.chars().count() as f64 * 6.7
}

impl Chart<'_> {
    fn y_scale(&self) -> YScale {
        let vals = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().filter_map(|p| p.1))
            .filter(|v| v.is_finite());
        let (mut max, mut min_pos) = (0.0f64, f64::INFINITY);
        for v in vals {
            max = max.max(v);
            if v > 0.0 {
                min_pos = min_pos.min(v);
            }
        }
        if self.log_if_wide && min_pos.is_finite() && max / min_pos > 100.0 {
            let hi = max.log10().ceil() as i32;
            let lo = (min_pos.log10().floor() as i32).max(hi - MAX_DECADES);
            return YScale::Log {
                lo,
                hi: hi.max(lo + 1),
            };
        }
        let (max, ticks) = linear_ticks(max);
        YScale::Linear { max, ticks }
    }

    fn x_domain(&self) -> (f64, f64) {
        let (mut lo, mut hi) = (0.0f64, fin(self.x_max).max(0.0));
        let xs = self
            .series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| p.0));
        let shade_xs = self
            .shades
            .iter()
            .flat_map(|s| std::iter::once(s.start_s).chain(s.end_s));
        for x in xs.chain(shade_xs).filter(|x| x.is_finite()) {
            lo = lo.min(x);
            hi = hi.max(x);
        }
        if hi - lo <= 0.0 {
            hi = lo + 1.0;
        }
        (lo, hi)
    }

    pub fn render(&self) -> String {
        let (x0, x1) = self.x_domain();
        let xs = |x: f64| LEFT + (fin(x).clamp(x0, x1) - x0) / (x1 - x0) * (RIGHT - LEFT);
        let ys = self.y_scale();

        let legend = self.legend_items();
        let legend_top = BOTTOM + 48.0;
        let rows = legend_rows(&legend);
        let band = self.label_band();
        let height = band + legend_top + rows.len().saturating_sub(1) as f64 * LEGEND_ROW + 8.0;

        let mut o = String::new();
        let _ = write!(
            o,
            r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height:.0}" width="100%" role="img" aria-label="{title}" font-family="system-ui, -apple-system, Segoe UI, Roboto, Helvetica, Arial, sans-serif" font-size="12">"##,
            title = esc(self.title)
        );
        let _ = write!(
            o,
            r##"<text x="{LEFT}" y="20" font-size="15" font-weight="600" fill="#1f2328">{}</text>"##,
            esc(self.title)
        );
        if let YScale::Log { .. } = ys {
            let _ = write!(
                o,
                r##"<text x="{RIGHT}" y="20" text-anchor="end" fill="#656d76">log scale</text>"##
            );
        }

        // Everything below the title moves down by the label band, so the
        // plot keeps fixed coordinates.
        let _ = write!(
            o,
            r##"<g transform="translate(0 {band:.0})"><defs><clipPath id="clip-{id}"><rect x="{LEFT}" y="{:.1}" width="{w}" height="{:.1}"/></clipPath><clipPath id="clipl-{id}"><rect x="{LEFT}" y="{:.1}" width="{w}" height="{band:.1}"/></clipPath></defs>"##,
            // A line along the top or bottom edge keeps its full stroke.
            TOP - 2.0,
            PLOT_H + 4.0,
            TOP - band,
            id = esc(self.id),
            w = RIGHT - LEFT + 12.0
        );
        self.draw_shades(&mut o, &xs, x1, band);
        draw_axes(&mut o, &ys, x0, x1, &xs, self.y_unit);

        let mut any = false;
        let _ = write!(
            o,
            r#"<g clip-path="url(#clip-{})" fill="none" stroke-width="1.8" stroke-linejoin="round">"#,
            esc(self.id)
        );
        for s in &self.series {
            any |= draw_series(&mut o, s, &xs, &ys);
        }
        o.push_str("</g>");
        if !any {
            let _ = write!(
                o,
                r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#656d76" font-size="14">no data</text>"##,
                (LEFT + RIGHT) / 2.0,
                TOP + PLOT_H / 2.0
            );
        }

        for (row, items) in rows.iter().enumerate() {
            let y = legend_top + row as f64 * LEGEND_ROW;
            for (x, item) in items {
                item.draw(&mut o, *x, y);
            }
        }
        o.push_str("</g></svg>");
        o
    }

    fn label_band(&self) -> f64 {
        match self.shades.len().min(LABEL_ROWS) {
            0 => 0.0,
            n => n as f64 * LABEL_ROW + 6.0,
        }
    }

    fn draw_shades(&self, o: &mut String, xs: &impl Fn(f64) -> f64, x_end: f64, band: f64) {
        for (i, s) in self.shades.iter().enumerate() {
            let a = xs(s.start_s);
            let b = xs(s.end_s.unwrap_or(x_end));
            // A window that opened and healed within one pixel stays visible.
            let (a, w) = (a.min(b), (b - a).abs().max(1.5));
            let (fill, ink) = if s.in_model { IN_MODEL } else { OUT_OF_MODEL };
            let _ = write!(
                o,
                r#"<g><title>{title}</title><rect x="{a:.1}" y="{TOP}" width="{w:.1}" height="{PLOT_H}" fill="{fill}" fill-opacity="0.14" stroke="{fill}" stroke-opacity="0.5" stroke-width="0.8"/>"#,
                title = esc(&s.title)
            );
            // A flag: a pole from the plot up to the label in its row.
            let ly = TOP - band + 11.0 + (i % LABEL_ROWS) as f64 * LABEL_ROW;
            let open = if s.end_s.is_none() { " →" } else { "" };
            let _ = write!(
                o,
                r#"<line x1="{a:.1}" y1="{:.1}" x2="{a:.1}" y2="{TOP}" stroke="{fill}" stroke-width="1.2"/><text x="{:.1}" y="{ly:.1}" font-size="10.5" fill="{ink}" clip-path="url(#clipl-{})">{}{open}</text></g>"#,
                ly - 10.0,
                a + 3.0,
                esc(self.id),
                esc(&truncate(&s.label, LABEL_CHARS))
            );
        }
    }

    fn legend_items(&self) -> Vec<LegendItem> {
        let mut items: Vec<LegendItem> = self
            .series
            .iter()
            .map(|s| LegendItem {
                label: truncate(&s.name, LABEL_CHARS),
                color: s.color.clone(),
                area: false,
            })
            .collect();
        if self.shades.iter().any(|s| s.in_model) {
            items.push(LegendItem {
                label: "fault in model".into(),
                color: IN_MODEL.0.into(),
                area: true,
            });
        }
        if self.shades.iter().any(|s| !s.in_model) {
            items.push(LegendItem {
                label: "fault out of model".into(),
                color: OUT_OF_MODEL.0.into(),
                area: true,
            });
        }
        items
    }
}

struct LegendItem {
    label: String,
    color: String,
    /// A filled box (fault shading) instead of a line swatch.
    area: bool,
}

impl LegendItem {
    fn width(&self) -> f64 {
        22.0 + text_w(&self.label) + 16.0
    }

    fn draw(&self, o: &mut String, x: f64, y: f64) {
        let c = esc(&self.color);
        if self.area {
            let _ = write!(
                o,
                r#"<rect x="{x:.1}" y="{:.1}" width="16" height="10" fill="{c}" fill-opacity="0.25" stroke="{c}" stroke-opacity="0.6"/>"#,
                y - 9.0
            );
        } else {
            let _ = write!(
                o,
                r#"<line x1="{x:.1}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="{c}" stroke-width="2.5"/>"#,
                y - 4.0,
                x + 16.0,
                y - 4.0
            );
        }
        let _ = write!(
            o,
            r##"<text x="{:.1}" y="{y:.1}" fill="#1f2328">{}</text>"##,
            x + 22.0,
            esc(&self.label)
        );
    }
}

/// Wraps the legend into rows that fit the chart width.
fn legend_rows(items: &[LegendItem]) -> Vec<Vec<(f64, &LegendItem)>> {
    let mut rows: Vec<Vec<(f64, &LegendItem)>> = Vec::new();
    let mut x = LEFT;
    for item in items {
        let w = item.width();
        if rows.is_empty() || (x + w > RIGHT && x > LEFT) {
            rows.push(Vec::new());
            x = LEFT;
        }
        if let Some(row) = rows.last_mut() {
            row.push((x, item));
        }
        x += w;
    }
    rows
}

fn draw_axes(
    o: &mut String,
    ys: &YScale,
    x0: f64,
    x1: f64,
    xs: &impl Fn(f64) -> f64,
    y_unit: &str,
) {
    o.push_str(r##"<g stroke="#d0d7de" stroke-width="1">"##);
    for (v, _) in ys.ticks() {
        if let Some(y) = ys.y(v) {
            let _ = write!(
                o,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{RIGHT}" y2="{y:.1}"/>"#
            );
        }
    }
    o.push_str("</g>");
    let _ = write!(
        o,
        r##"<g stroke="#57606a" stroke-width="1"><line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{BOTTOM}"/><line x1="{LEFT}" y1="{BOTTOM}" x2="{RIGHT}" y2="{BOTTOM}"/></g>"##
    );

    o.push_str(r##"<g fill="#57606a" font-size="11">"##);
    for (v, label) in ys.ticks() {
        if let Some(y) = ys.y(v) {
            let _ = write!(
                o,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"#,
                LEFT - 6.0,
                y + 4.0,
                esc(&label)
            );
        }
    }
    let step = nice_step(x1 - x0, 10);
    let first = (x0 / step).ceil();
    for i in 0..=MAX_TICKS {
        let v = (first + i as f64) * step;
        if v > x1 + step * 1e-9 {
            break;
        }
        let x = xs(v);
        let _ = write!(
            o,
            r##"<line x1="{x:.1}" y1="{BOTTOM}" x2="{x:.1}" y2="{:.1}" stroke="#57606a"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            BOTTOM + 4.0,
            BOTTOM + 16.0,
            esc(&fmt_tick(v, step))
        );
    }
    o.push_str("</g>");
    let _ = write!(
        o,
        r##"<text x="{:.1}" y="{:.1}" text-anchor="middle" fill="#57606a">time since start (s)</text>"##,
        (LEFT + RIGHT) / 2.0,
        BOTTOM + 34.0
    );
    let _ = write!(
        o,
        r##"<text transform="translate(16 {:.1}) rotate(-90)" text-anchor="middle" fill="#57606a">{}</text>"##,
        TOP + PLOT_H / 2.0,
        esc(y_unit)
    );
}

/// Draws one series as a path broken at gaps, isolated points as dots.
/// Returns whether anything was drawn.
fn draw_series(o: &mut String, s: &Series, xs: &impl Fn(f64) -> f64, ys: &YScale) -> bool {
    let pts: Vec<Option<(f64, f64)>> = s
        .points
        .iter()
        .map(|&(x, v)| match v {
            Some(v) if v.is_finite() && x.is_finite() => Some((xs(x), ys.y(v)?)),
            _ => None,
        })
        .collect();
    let mut d = String::new();
    let mut dots = String::new();
    let c = esc(&s.color);
    for (i, p) in pts.iter().enumerate() {
        let Some((x, y)) = p else { continue };
        let prev = i > 0 && pts[i - 1].is_some();
        let next = pts.get(i + 1).is_some_and(|p| p.is_some());
        if prev {
            let _ = write!(d, "L{x:.1} {y:.1}");
        } else if next {
            let _ = write!(d, "M{x:.1} {y:.1}");
        } else {
            let _ = write!(
                dots,
                r#"<circle cx="{x:.1}" cy="{y:.1}" r="2.2" fill="{c}" stroke="none"/>"#
            );
        }
    }
    if d.is_empty() && dots.is_empty() {
        return false;
    }
    let _ = write!(o, r#"<g><title>{}</title>"#, esc(&s.name));
    if !d.is_empty() {
        let _ = write!(o, r#"<path d="{d}" stroke="{c}"/>"#);
    }
    o.push_str(&dots);
    o.push_str("</g>");
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chart<'a>(series: Vec<Series>, shades: &'a [Shade], log: bool) -> Chart<'a> {
        Chart {
            id: "t",
            title: "t",
            y_unit: "u",
            x_max: 10.0,
            series,
            shades,
            log_if_wide: log,
        }
    }

    fn series(vals: &[Option<f64>]) -> Series {
        Series {
            name: "s".into(),
            color: "#000".into(),
            points: vals
                .iter()
                .enumerate()
                .map(|(i, v)| (i as f64, *v))
                .collect(),
        }
    }

    #[test]
    fn nice_steps_and_ticks() {
        assert_eq!(nice_step(10.0, 5), 2.0);
        assert_eq!(nice_step(0.7, 5), 0.2);
        assert_eq!(nice_step(f64::NAN, 5), 1.0);
        let (top, ticks) = linear_ticks(173.0);
        assert_eq!(top, 200.0);
        assert_eq!(ticks.len(), 5);
        assert_eq!(linear_ticks(0.0).0, 1.0);
        assert_eq!(fmt_tick(0.30000000000000004, 0.1), "0.3");
        assert_eq!(fmt_tick(25.0, 5.0), "25");
    }

    #[test]
    fn log_scale_only_when_data_spans_decades() {
        let c = chart(vec![series(&[Some(1.0), Some(500.0)])], &[], true);
        assert!(matches!(c.y_scale(), YScale::Log { lo: 0, hi: 3 }));
        let c = chart(vec![series(&[Some(1.0), Some(50.0)])], &[], true);
        assert!(matches!(c.y_scale(), YScale::Linear { .. }));
        let c = chart(vec![series(&[Some(1.0), Some(500.0)])], &[], false);
        assert!(matches!(c.y_scale(), YScale::Linear { .. }));
    }

    #[test]
    fn hostile_input_draws_no_nan() {
        let shades = [Shade {
            start_s: f64::NAN,
            end_s: Some(f64::INFINITY),
            label: "<x>".into(),
            title: "&".into(),
            in_model: false,
        }];
        let s = series(&[
            Some(f64::NAN),
            Some(f64::INFINITY),
            None,
            Some(-1.0),
            Some(3.0),
        ]);
        for log in [false, true] {
            let out = chart(vec![s.clone()], &shades, log).render();
            assert!(!out.contains("NaN") && !out.contains("inf"), "{out}");
            assert!(out.contains("&lt;x&gt;"));
        }
        let empty = chart(vec![], &[], true).render();
        assert!(empty.contains("no data") && !empty.contains("NaN"));
    }

    #[test]
    fn gaps_break_the_line_and_lone_points_are_dots() {
        let s = series(&[
            Some(1.0),
            Some(2.0),
            None,
            Some(3.0),
            None,
            Some(1.0),
            Some(2.0),
        ]);
        let out = chart(vec![s], &[], false).render();
        let d = out
            .split(r#"<path d=""#)
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        assert_eq!(d.matches('M').count(), 2, "{d}");
        assert_eq!(out.matches("<circle").count(), 1);
    }
}
