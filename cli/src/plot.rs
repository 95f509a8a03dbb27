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
    let longest = runs
        .iter()
        .map(|r| r.seconds)
        .filter(|s| s.is_finite())
        .fold(0.0f64, f64::max)
        .max(1e-9);
    // The axis ends at a whole number of ticks.
    let step = tick_step(longest);
    let ticks = (longest / step).ceil().max(1.0) as usize;
    let max = step * ticks as f64;
    let height = top + runs.len() as f64 * (bar_h + gap) + 56.0;
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
        // A failed check is named in short beside the bar (in full in the
        // bar's tooltip), so the label stays inside the chart.
        let label = if r.check == "ok" {
            format!("{} s", significant(r.seconds, 4))
        } else {
            let check: String = r.check.chars().take(16).collect();
            let more = if r.check.chars().count() > 16 {
                "..."
            } else {
                ""
            };
            format!("{} s ({check}{more})", significant(r.seconds, 4))
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
    // The time axis: a line, ticks and their values in seconds.
    let _ = writeln!(
        s,
        r##"<line x1="{left}" y1="{axis_y}" x2="{}" y2="{axis_y}" stroke="#333"/>"##,
        left + width
    );
    for i in 0..=ticks {
        let x = left + width * i as f64 / ticks as f64;
        let _ = writeln!(
            s,
            r##"<line class="tick" x1="{x:.1}" y1="{axis_y}" x2="{x:.1}" y2="{}" stroke="#333"/>"##,
            axis_y + 5.0
        );
        let _ = writeln!(
            s,
            r##"<text x="{x:.1}" y="{}" text-anchor="middle" font-size="11" fill="#333">{}</text>"##,
            axis_y + 18.0,
            tick_label(step * i as f64)
        );
    }
    let _ = writeln!(
        s,
        r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">wall-clock seconds (shorter is faster)</text>"##,
        left + width / 2.0,
        axis_y + 40.0
    );
    s.push_str("</svg>\n");
    s
}

/// A round step (1, 2 or 5 times a power of ten) that splits `0..max` into
/// about five ticks.
fn tick_step(max: f64) -> f64 {
    let rough = max / 5.0;
    let power = 10f64.powf(rough.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|s| *s >= rough)
        .unwrap_or(10.0 * power)
}

/// A tick's value without trailing zeros (0.005, 0.01, 2.5).
fn tick_label(x: f64) -> String {
    let s = significant(x, 3);
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// The families of the system's fonts, for the PNG's labels.
fn system_font_families(db: &mut resvg::usvg::fontdb::Database) -> Vec<String> {
    db.load_system_fonts();
    db.faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.clone()))
        .collect()
}

/// What `--plot FILE.png` needs besides a writable path: a font for the
/// labels (checked before the run, so a chart never silently loses them).
pub fn check_png_fonts() -> Outcome<()> {
    let mut db = resvg::usvg::fontdb::Database::new();
    if system_font_families(&mut db).is_empty() {
        return Err("no system fonts to draw the PNG's labels with; \
                    install one (e.g. apt-get install fonts-dejavu-core) or use --plot FILE.svg"
            .into());
    }
    Ok(())
}

/// Renders the SVG chart to PNG at twice its size, with the system's fonts
/// (refused without any: the labels would be missing).
fn png(svg: &str) -> Outcome<Vec<u8>> {
    use resvg::{tiny_skia, usvg};
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    // fontdb's generic sans-serif is Arial; use a family this system has.
    let families = system_font_families(db);
    if families.is_empty() {
        check_png_fonts()?;
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(name: &str, seconds: f64) -> Run {
        Run {
            transport: name.into(),
            seconds,
            pi: std::f64::consts::PI,
            check: "ok".into(),
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_longest_bar() {
        assert_eq!(tick_step(1.0), 0.2);
        assert_eq!(tick_step(0.00037), 0.0001);
        assert_eq!(tick_step(23.0), 5.0);
        assert_eq!(tick_label(0.0050000001), "0.005");
        assert_eq!(tick_label(20.0), "20");
        let chart = svg("t", &[run("seq", 0.00037), run("file", 0.0001)]);
        assert_eq!(chart.matches(r#"class="tick""#).count(), 5, "{chart}");
        for v in ["0", "0.0001", "0.0004"] {
            assert!(chart.contains(&format!(">{v}</text>")), "{v}: {chart}");
        }
        assert!(chart.contains(">fork_file</text>"), "{chart}");
        assert!(chart.contains(">0.0003700 s</text>"), "{chart}");
    }
}
