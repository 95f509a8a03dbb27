//! `--plot FILE.svg`: a horizontal bar chart of the pi times, one bar per
//! transport, written as a self-contained SVG file or rendered to PNG.

use std::fmt::Write as _;
use std::path::Path;

use crate::pi::{Outcome, Run, variant};
use crate::report::significant;

/// Escapes text for an SVG text node.
fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The chart as SVG text.
pub fn svg(title: &str, runs: &[Run]) -> String {
    let (bar_h, gap, left, width, top) = (24.0, 8.0, 110.0, 460.0, 48.0);
    let max = runs
        .iter()
        .map(|r| r.seconds)
        .filter(|s| s.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    let height = top + runs.len() as f64 * (bar_h + gap) + 36.0;
    let total_w = left + width + 150.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{total_w}" height="{height}" viewBox="0 0 {total_w} {height}" font-family="sans-serif" font-size="13">"#
    );
    let _ = writeln!(s, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="24" font-size="15" font-weight="bold">{}</text>"#,
        left,
        escape(title)
    );
    for (i, r) in runs.iter().enumerate() {
        let y = top + i as f64 * (bar_h + gap);
        let name = variant(&r.transport);
        let w = if r.seconds.is_finite() {
            width * r.seconds / max
        } else {
            0.0
        };
        let color = if r.check == "ok" {
            "#4c78a8"
        } else {
            "#e45756"
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}" text-anchor="end">{}</text>"#,
            left - 8.0,
            y + bar_h * 0.7,
            escape(&name)
        );
        let _ = writeln!(
            s,
            r#"<rect x="{left}" y="{y}" width="{w:.1}" height="{bar_h}" fill="{color}"><title>{}: {} s ({})</title></rect>"#,
            escape(&name),
            significant(r.seconds, 4),
            escape(&r.check)
        );
        let label = if r.check == "ok" {
            format!("{} s", significant(r.seconds, 4))
        } else {
            format!("{} s ({})", significant(r.seconds, 4), r.check)
        };
        let _ = writeln!(
            s,
            r#"<text x="{}" y="{}">{}</text>"#,
            left + w + 6.0,
            y + bar_h * 0.7,
            escape(&label)
        );
    }
    let axis_y = top + runs.len() as f64 * (bar_h + gap);
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{}" x2="{left}" y2="{axis_y}" stroke="#333"/>"##,
        top - 4.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{left}" y="{}" fill="#555">wall-clock seconds (shorter is faster)</text>"##,
        axis_y + 22.0
    );
    s.push_str("</svg>\n");
    s
}

/// Renders the SVG chart to PNG at twice its size, with the system's fonts
/// (without any, the bars are drawn and the labels are missing).
fn png(svg: &str) -> Outcome<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    // fontdb's generic sans-serif is Arial; use a family this system has.
    let families: Vec<String> = db
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .collect();
    let family = ["DejaVu Sans", "Liberation Sans", "Noto Sans", "FreeSans"]
        .iter()
        .map(|f| f.to_string())
        .find(|f| families.contains(f))
        .or_else(|| families.first().cloned());
    if let Some(f) = family {
        db.set_sans_serif_family(f);
    }
    let tree = usvg::Tree::from_str(svg, &opt)?;
    let scale = 2.0;
    let size = tree
        .size()
        .to_int_size()
        .scale_by(scale)
        .ok_or("chart too large")?;
    let mut pixmap =
        tiny_skia::Pixmap::new(size.width(), size.height()).ok_or("chart too large")?;
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(scale, scale),
        &mut pixmap.as_mut(),
    );
    Ok(pixmap.encode_png()?)
}

/// The chart formats `--plot` draws, by file extension.
pub fn supported(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("svg") || e.eq_ignore_ascii_case("png"))
}

/// Writes the chart to `path`, as SVG or PNG by its extension.
pub fn write(path: &Path, title: &str, runs: &[Run]) -> Outcome<()> {
    let text = svg(title, runs);
    let bytes = match path.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("svg") => text.into_bytes(),
        Some(e) if e.eq_ignore_ascii_case("png") => png(&text)?,
        _ => {
            return Err(format!("--plot {}: give a .svg or .png file name", path.display()).into());
        }
    };
    std::fs::write(path, bytes).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(())
}
