//! Charts as inline SVG, drawn on the server from the figures a page shows (issue 19). Two
//! shapes cover the console: horizontal bars (one or more series per category: leads by
//! source, budget vs actual) and columns over days (stacked series: new leads per day by
//! source). Each SVG has a title, axes with ticks and labels, `role="img"` and an
//! `aria-labelledby` title; the page puts the same figures in a table beneath it.
//!
//! Hand-made rather than a plotting crate: the shapes are few, the output is small text that
//! a browser styles and scales, and no font files are needed on the server.

/// One named series of values (one per category or per day).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub name: String,
    pub values: Vec<f64>,
}

/// Colours with at least 3:1 contrast against white, told apart without colour by order and
/// the legend's text.
const PALETTE: [&str; 8] = ["#1f5fa8", "#c0392b", "#1e7b4a", "#8e44ad", "#b9770e", "#117a8b", "#6d4c41", "#555555"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A step for about `ticks` gridlines up to `max`: 1, 2 or 5 times a power of ten.
pub fn nice_step(max: f64, ticks: u32) -> f64 {
    if max <= 0.0 || !max.is_finite() {
        return 1.0;
    }
    let raw = max / f64::from(ticks.max(1));
    let pow = 10f64.powf(raw.log10().floor());
    let m = raw / pow;
    let k = if m <= 1.0 {
        1.0
    } else if m <= 2.0 {
        2.0
    } else if m <= 5.0 {
        5.0
    } else {
        10.0
    };
    k * pow
}

/// The gridline step for these values: counts get whole steps.
fn step_for(max: f64, ticks: u32, values: impl Iterator<Item = f64>) -> f64 {
    let step = nice_step(max, ticks);
    let mut vals = values;
    if vals.all(|v| v.fract() == 0.0) { step.max(1.0) } else { step }
}

fn fmt_num(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{v:.1}") }
}

fn open_svg(id: &str, title: &str, w: u32, h: u32) -> String {
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"chart\" viewBox=\"0 0 {w} {h}\" width=\"100%\" \
            role=\"img\" aria-labelledby=\"{id}-t\">\
         <title id=\"{id}-t\">{}</title>",
        esc(title)
    )
}

fn legend(out: &mut String, series: &[Series], x0: f64, y: f64) {
    let mut x = x0;
    for (i, s) in series.iter().enumerate() {
        out.push_str(&format!(
            "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"10\" height=\"10\" fill=\"{}\"/><text x=\"{:.1}\" \
                y=\"{y:.1}\" class=\"legend\">{}</text>",
            y - 9.0,
            PALETTE[i % PALETTE.len()],
            x + 14.0,
            esc(&s.name)
        ));
        x += 24.0 + 7.0 * s.name.chars().count() as f64;
    }
}

/// Horizontal bars: one row per category, one bar per series in it. `id` makes the title's
/// id unique on the page.
pub fn bars(id: &str, title: &str, categories: &[String], series: &[Series]) -> String {
    let (label_w, plot_w, right) = (190.0, 400.0, 60.0);
    let per = series.len().max(1) as f64;
    let bar_h = if per > 1.0 { 12.0 } else { 16.0 };
    let row_h = bar_h * per + 8.0;
    let top = 24.0;
    let legend_h = if series.len() > 1 { 22.0 } else { 0.0 };
    let plot_h = row_h * categories.len().max(1) as f64;
    let h = top + plot_h + 24.0 + legend_h;
    let w = label_w + plot_w + right;
    let max = series.iter().flat_map(|s| s.values.iter().copied()).fold(0.0, f64::max);
    let step = step_for(max, 4, series.iter().flat_map(|s| s.values.iter().copied()));
    let top_value = (max / step).ceil().max(1.0) * step;
    let x_of = |v: f64| label_w + plot_w * (v / top_value);
    let mut out = open_svg(id, title, w as u32, h as u32);
    // Gridlines and the value axis beneath the bars.
    let mut v = 0.0;
    while v <= top_value + 1e-9 {
        let x = x_of(v);
        out.push_str(&format!(
            "<line x1=\"{x:.1}\" y1=\"{top:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" class=\"grid\"/><text x=\"{x:.1}\" \
                y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
            top + plot_h,
            top + plot_h + 14.0,
            fmt_num(v)
        ));
        v += step;
    }
    for (ci, cat) in categories.iter().enumerate() {
        let y0 = top + row_h * ci as f64 + 4.0;
        let short: String = cat.chars().take(28).collect();
        let short = if short.chars().count() < cat.chars().count() { format!("{short}…") } else { short };
        out.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"cat\" text-anchor=\"end\">{}</text>",
            label_w - 8.0,
            y0 + (row_h - 8.0) / 2.0 + 4.0,
            esc(&short)
        ));
        for (si, s) in series.iter().enumerate() {
            let value = s.values.get(ci).copied().unwrap_or(0.0);
            let y = y0 + bar_h * si as f64;
            let bw = (x_of(value) - label_w).max(0.0);
            out.push_str(&format!(
                "<rect x=\"{label_w:.1}\" y=\"{y:.1}\" width=\"{bw:.1}\" height=\"{:.1}\" \
                    fill=\"{}\"><title>{}: {}</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"val\">{}</text>",
                bar_h - 2.0,
                PALETTE[si % PALETTE.len()],
                esc(&s.name),
                fmt_num(value),
                label_w + bw + 4.0,
                y + bar_h - 4.0,
                fmt_num(value)
            ));
        }
    }
    out.push_str(&format!(
        "<line x1=\"{label_w:.1}\" y1=\"{top:.1}\" x2=\"{label_w:.1}\" y2=\"{:.1}\" class=\"axis\"/>",
        top + plot_h
    ));
    if series.len() > 1 {
        legend(&mut out, series, label_w, h - 6.0);
    }
    out.push_str("</svg>");
    out
}

/// Columns over `x_labels` (days), the series stacked (parts of one total).
pub fn stacked_columns(id: &str, title: &str, x_labels: &[String], series: &[Series]) -> String {
    columns(id, title, x_labels, series, true)
}

/// Columns over `x_labels` (days), the series side by side (figures to compare).
pub fn grouped_columns(id: &str, title: &str, x_labels: &[String], series: &[Series]) -> String {
    columns(id, title, x_labels, series, false)
}

/// Columns over `x_labels`; about ten x labels are shown, evenly spaced.
fn columns(id: &str, title: &str, x_labels: &[String], series: &[Series], stacked: bool) -> String {
    let (left, plot_w, top, plot_h) = (44.0, 620.0, 16.0, 200.0);
    let legend_rows = series.len().div_ceil(4).max(1) as f64;
    let h = top + plot_h + 30.0 + 18.0 * legend_rows;
    let w = left + plot_w + 16.0;
    let n = x_labels.len().max(1);
    let value = |s: &Series, i: usize| s.values.get(i).copied().unwrap_or(0.0);
    let heights: Vec<f64> = (0..n)
        .map(|i| {
            let vals = series.iter().map(|s| value(s, i));
            if stacked { vals.sum() } else { vals.fold(0.0, f64::max) }
        })
        .collect();
    let max = heights.iter().copied().fold(0.0, f64::max);
    let step = step_for(max, 4, heights.iter().copied());
    let top_value = (max / step).ceil().max(1.0) * step;
    let y_of = |v: f64| top + plot_h - plot_h * (v / top_value);
    let slot = plot_w / n as f64;
    let col_w = (slot * 0.75).max(1.0);
    let mut out = open_svg(id, title, w as u32, h as u32);
    let mut v = 0.0;
    while v <= top_value + 1e-9 {
        let y = y_of(v);
        out.push_str(&format!(
            "<line x1=\"{left:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{:.1}\" \
                y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            left + plot_w,
            left - 6.0,
            y + 4.0,
            fmt_num(v)
        ));
        v += step;
    }
    let label_every = n.div_ceil(10).max(1);
    for (i, label) in x_labels.iter().enumerate() {
        let x = left + slot * i as f64 + (slot - col_w) / 2.0;
        let mut acc = 0.0;
        let part_w = if stacked { col_w } else { col_w / series.len().max(1) as f64 };
        for (si, s) in series.iter().enumerate() {
            let v = value(s, i);
            if v <= 0.0 {
                continue;
            }
            let (y1, y2, px) =
                if stacked { (y_of(acc + v), y_of(acc), x) } else { (y_of(v), y_of(0.0), x + part_w * si as f64) };
            out.push_str(&format!(
                "<rect x=\"{px:.1}\" y=\"{y1:.1}\" width=\"{part_w:.1}\" height=\"{:.1}\" \
                    fill=\"{}\"><title>{} · {}: {}</title></rect>",
                y2 - y1,
                PALETTE[si % PALETTE.len()],
                esc(label),
                esc(&s.name),
                fmt_num(v)
            ));
            acc += v;
        }
        if i % label_every == 0 || i + 1 == n {
            out.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>",
                x + col_w / 2.0,
                top + plot_h + 14.0,
                esc(label)
            ));
        }
    }
    out.push_str(&format!(
        "<line x1=\"{left:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" class=\"axis\"/><line x1=\"{left:.1}\" \
            y1=\"{top:.1}\" x2=\"{left:.1}\" y2=\"{:.1}\" class=\"axis\"/>",
        top + plot_h,
        left + plot_w,
        top + plot_h,
        top + plot_h
    ));
    for (row, chunk) in series.chunks(4).enumerate() {
        legend(&mut out, chunk, left, top + plot_h + 34.0 + 18.0 * row as f64);
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_get_whole_steps() {
        assert_eq!(step_for(2.0, 4, [1.0, 2.0].into_iter()), 1.0);
        assert_eq!(step_for(2.0, 4, [1.5, 2.0].into_iter()), 0.5);
    }

    #[test]
    fn steps_are_round() {
        assert_eq!(nice_step(7.0, 4), 2.0);
        assert_eq!(nice_step(100.0, 4), 50.0);
        assert_eq!(nice_step(0.0, 4), 1.0);
        assert_eq!(nice_step(1234.0, 5), 500.0);
    }

    #[test]
    fn bars_have_a_title_labels_and_one_bar_per_value() {
        let svg = bars(
            "s",
            "Leads <by> source",
            &["Web".into(), "Trade Show".into()],
            &[Series { name: "Leads".into(), values: vec![3.0, 1.0] }],
        );
        assert!(svg.contains("<title id=\"s-t\">Leads &lt;by&gt; source</title>"));
        assert!(svg.contains("aria-labelledby=\"s-t\""));
        assert_eq!(svg.matches("<rect ").count(), 2);
        assert!(svg.contains(">Trade Show</text>") && svg.contains("<title>Leads: 3</title>"));
        // The longest bar spans the plot up to the top tick (3, with step 1); 1 is a third.
        assert!(svg.contains("width=\"400.0\"") && svg.contains("width=\"133.3\""), "{svg}");
    }

    #[test]
    fn grouped_columns_stand_side_by_side_from_zero() {
        let svg = grouped_columns(
            "g",
            "Calls",
            &["01".into()],
            &[
                Series { name: "Answered".into(), values: vec![2.0] },
                Series { name: "Missed".into(), values: vec![2.0] },
            ],
        );
        // Two equal bars the plot's full height (the axis tops at 2), at different x.
        assert_eq!(svg.matches("height=\"200.0\"").count(), 2, "{svg}");
        assert!(svg.contains("<title>01 · Missed: 2</title>"));
    }

    #[test]
    fn columns_stack_series_and_skip_zeroes() {
        let svg = stacked_columns(
            "c",
            "New leads",
            &["01".into(), "02".into()],
            &[
                Series { name: "Web".into(), values: vec![1.0, 0.0] },
                Series { name: "Phone".into(), values: vec![1.0, 2.0] },
            ],
        );
        // Three non-zero segments, plus two legend swatches.
        assert_eq!(svg.matches("<rect ").count(), 5);
        assert!(svg.contains("<title>01 · Phone: 1</title>") && svg.contains(">Phone</text>"));
    }
}
