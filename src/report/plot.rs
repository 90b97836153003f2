//! A dependency-free SVG plot: accuracy per iteration with error bars for ours and step-level
//! DPO, zero-shot CoT and RFT as horizontal lines.

use std::fmt::Write as _;

use super::Row;

/// The SVG text.
pub fn accuracy_plot(rows: &[Row], title: &str) -> String {
    let (w, h, ml, mr, mt, mb) = (640.0, 400.0, 60.0, 170.0, 40.0, 50.0);
    let iters = rows.iter().filter_map(|r| r.r.iteration).max().unwrap_or(1).max(1);
    let vals: Vec<(f64, f64)> = rows.iter().map(|r| (r.eval.mean, r.eval.se)).collect();
    let lo = vals.iter().map(|(m, s)| m - s).fold(f64::INFINITY, f64::min);
    let hi = vals.iter().map(|(m, s)| m + s).fold(f64::NEG_INFINITY, f64::max);
    let pad = ((hi - lo) * 0.15).max(0.01);
    let (lo, hi) = ((lo - pad).max(0.0), (hi + pad).min(1.0));
    // Iterations sit inside the axes (0.7 .. iters + 0.3) so error bars clear the y axis.
    let x = |i: f64| ml + (w - ml - mr) * (i - 0.7) / (iters as f64 - 0.4);
    let y = |v: f64| mt + (h - mt - mb) * (1.0 - (v - lo) / (hi - lo).max(1e-9));
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="22" text-anchor="middle" font-size="14">{}</text>"#,
        (w - mr + ml) / 2.0,
        escape(title)
    );
    // Axes and ticks.
    let _ =
        writeln!(s, r#"<line x1="{ml}" y1="{}" x2="{}" y2="{}" stroke="black"/>"#, h - mb, w - mr, h - mb);
    let _ = writeln!(s, r#"<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{}" stroke="black"/>"#, h - mb);
    for k in 0..=5 {
        let v = lo + (hi - lo) * k as f64 / 5.0;
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{:.1}</text>"#,
            ml - 6.0,
            y(v) + 4.0,
            100.0 * v
        );
        let _ = writeln!(s, r##"<line x1="{ml}" y1="{0}" x2="{1}" y2="{0}" stroke="#eee"/>"##, y(v), w - mr);
    }
    for i in 1..=iters {
        let _ =
            writeln!(s, r#"<text x="{}" y="{}" text-anchor="middle">{i}</text>"#, x(i as f64), h - mb + 18.0);
    }
    let _ = writeln!(
        s,
        r#"<text x="{}" y="{}" text-anchor="middle">iteration</text>"#,
        (w - mr + ml) / 2.0,
        h - 12.0
    );
    let _ = writeln!(
        s,
        r#"<text x="16" y="{}" transform="rotate(-90 16 {})" text-anchor="middle">accuracy (%)</text>"#,
        (h - mb + mt) / 2.0,
        (h - mb + mt) / 2.0
    );
    // (method, colour, legend, horizontal offset in iterations so the two series' bars do not overlap)
    let series = [("ours", "#d62728", "Ours", 0.04), ("step_dpo", "#1f77b4", "Step-level DPO", -0.04)];
    let lines = [
        ("zero_shot_cot", "#7f7f7f", "Zero-shot-CoT"),
        ("rft", "#2ca02c", "RFT"),
        ("rft_matched", "#9467bd", "RFT (compute-matched)"),
    ];
    let mut legend = Vec::new();
    for (m, color, name) in lines {
        if let Some(r) = rows.iter().find(|r| r.r.method == m) {
            let _ = writeln!(
                s,
                r#"<line x1="{ml}" y1="{0}" x2="{1}" y2="{0}" stroke="{color}" stroke-dasharray="6 4"/>"#,
                y(r.eval.mean),
                w - mr
            );
            legend.push((color, name, true));
        }
    }
    for (m, color, name, dx) in series {
        let pts: Vec<&Row> = rows.iter().filter(|r| r.r.method == m && r.r.iteration.is_some()).collect();
        if pts.is_empty() {
            continue;
        }
        let path: Vec<String> = pts
            .iter()
            .map(|r| format!("{:.1},{:.1}", x(r.r.iteration.unwrap_or(1) as f64 + dx), y(r.eval.mean)))
            .collect();
        let _ = writeln!(
            s,
            r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        for r in pts {
            let cx = x(r.r.iteration.unwrap_or(1) as f64 + dx);
            let (m, e) = (r.eval.mean, r.eval.se);
            let _ = writeln!(
                s,
                r#"<line x1="{cx}" y1="{}" x2="{cx}" y2="{}" stroke="{color}"/>"#,
                y(m - e),
                y(m + e)
            );
            let _ = writeln!(s, r#"<circle cx="{cx}" cy="{}" r="3.5" fill="{color}"/>"#, y(m));
        }
        legend.push((color, name, false));
    }
    for (i, (color, name, dashed)) in legend.iter().enumerate() {
        let ly = mt + 10.0 + 20.0 * i as f64;
        let lx = w - mr + 15.0;
        let dash = if *dashed { r#" stroke-dasharray="6 4""# } else { "" };
        let _ = writeln!(
            s,
            r#"<line x1="{lx}" y1="{ly}" x2="{}" y2="{ly}" stroke="{color}" stroke-width="2"{dash}/>"#,
            lx + 24.0
        );
        let _ = writeln!(s, r#"<text x="{}" y="{}">{name}</text>"#, lx + 30.0, ly + 4.0);
    }
    s.push_str("</svg>\n");
    s
}

fn escape(t: &str) -> String {
    t.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}
