//! Measurements as the JSON lines of `benches/WORKLOADS.md`, and the summary
//! table that sets multiproc's figures beside the raw baseline and Python's.

use std::fmt::Write as _;

/// One measurement: one JSON line.
#[derive(Clone, Debug)]
pub struct Line {
    /// `multiproc`, `raw` (a bare-syscall baseline) or `python`.
    pub imp: String,
    pub workload: String,
    pub variant: String,
    /// Parameter names and their values as JSON literals, in order.
    pub params: Vec<(String, String)>,
    pub metric: String,
    pub value: f64,
    /// "ok" when the result was verified, else what was wrong.
    pub check: String,
}

/// Parameters as `(name, JSON literal)` pairs: `params!["N" => n, "C" => c]`.
macro_rules! params {
    ($($k:literal => $v:expr),* $(,)?) => {
        vec![$(($k.to_string(), serde_json::to_string(&$v).unwrap_or_default())),*]
    };
}
pub(crate) use params;

impl Line {
    pub fn new(
        imp: &str,
        workload: &str,
        variant: &str,
        params: &[(String, String)],
        metric: &str,
        value: f64,
        check: &str,
    ) -> Line {
        Line {
            imp: imp.into(),
            workload: workload.into(),
            variant: variant.into(),
            params: params.to_vec(),
            metric: metric.into(),
            value,
            check: check.into(),
        }
    }

    /// The line as WORKLOADS.md prints it (keys in its order).
    pub fn json(&self) -> String {
        let s = |x: &str| serde_json::to_string(x).unwrap_or_else(|_| "\"?\"".into());
        let mut params = String::from("{");
        for (i, (k, v)) in self.params.iter().enumerate() {
            if i > 0 {
                params.push_str(", ");
            }
            let _ = write!(params, "{}: {v}", s(k));
        }
        params.push('}');
        // JSON has no NaN or infinity: a failed measurement prints null.
        let value = if self.value.is_finite() {
            format!("{}", self.value)
        } else {
            "null".into()
        };
        format!(
            "{{\"impl\": {}, \"workload\": {}, \"variant\": {}, \"params\": {params}, \"metric\": {}, \"value\": {value}, \"check\": {}}}",
            s(&self.imp),
            s(&self.workload),
            s(&self.variant),
            s(&self.metric),
            s(&self.check)
        )
    }

    /// Reads a line another implementation printed (Python's script).
    pub fn parse(text: &str) -> Option<Line> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let str_of = |k: &str| v.get(k)?.as_str().map(str::to_string);
        let params = v
            .get("params")?
            .as_object()?
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect();
        Some(Line {
            imp: str_of("impl")?,
            workload: str_of("workload")?,
            variant: str_of("variant")?,
            params,
            metric: str_of("metric")?,
            value: v.get("value")?.as_f64().unwrap_or(f64::NAN),
            check: str_of("check")?,
        })
    }

    pub fn ok(&self) -> bool {
        self.check == "ok"
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Whether a smaller value of `metric` is better (times) or a larger one
/// (rates).
pub fn lower_is_better(metric: &str) -> bool {
    metric.starts_with("ns_") || metric.starts_with("us_") || metric == "seconds"
}

/// How many times faster `a` is than `b` for this metric (above 1: `a` is
/// faster).
pub fn speed(metric: &str, a: f64, b: f64) -> f64 {
    if lower_is_better(metric) {
        b / a
    } else {
        a / b
    }
}

/// A number in a few significant digits, with thousands grouped.
pub fn human(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.2} M", x / 1e6)
    } else if a >= 1e4 {
        format!("{:.0} k", x / 1e3)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        significant(x, 3)
    }
}

/// `x` with `digits` significant digits in plain decimal notation (small
/// times keep their digits: 0.00001234 s stays 0.00001234, never 0.0000).
pub fn significant(x: f64, digits: u32) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    if x == 0.0 {
        return "0".into();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (digits as i32 - 1 - magnitude).clamp(0, 15) as usize;
    format!("{x:.decimals$}")
}

/// A variant name without case or underscores: `Value_lock`, `value_lock`
/// and `valuelock` name the same thing.
fn normalized(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The Python line that measures the same thing as a multiproc line: the
/// variant of the same name (the two sides name some after their own types,
/// hence the aliases), else Python's best variant of the workload. For pi,
/// the chunk count must match where it shapes the work (joinable).
fn python_variant<'a>(ours: &Line, python: &'a [Line]) -> Option<&'a Line> {
    let fine_grained = ours.workload == "pi" && ours.variant == "joinable";
    let candidates: Vec<&Line> = python
        .iter()
        .filter(|l| l.workload == ours.workload && l.metric == ours.metric && l.ok())
        .filter(|l| !fine_grained || l.param("C") == ours.param("C"))
        .collect();
    let alias = match ours.variant.as_str() {
        "Process_fork" => "fork",
        "Process_spawn" => "spawn",
        v => v,
    };
    let wanted = normalized(alias);
    if let Some(l) = candidates.iter().find(|l| normalized(&l.variant) == wanted) {
        return Some(l);
    }
    if ours.workload == "pi" || ours.workload == "spawn" {
        return None;
    }
    // Python's best: the smallest time or the largest rate.
    let better = |a: &&Line, b: &&Line| {
        let (x, y) = (a.value, b.value);
        if lower_is_better(&ours.metric) {
            y.total_cmp(&x)
        } else {
            x.total_cmp(&y)
        }
    };
    candidates.into_iter().max_by(better)
}

/// The summary table: each multiproc line with its value, its speed
/// relative to the raw baseline of the same workload and metric, and
/// relative to Python's matching variant when Python ran.
pub fn table(lines: &[Line]) -> String {
    let ours: Vec<&Line> = lines
        .iter()
        .filter(|l| l.imp == "multiproc" && l.metric != "pi")
        .collect();
    let raw: Vec<&Line> = lines.iter().filter(|l| l.imp == "raw").collect();
    let python: Vec<Line> = lines
        .iter()
        .filter(|l| l.imp == "python")
        .cloned()
        .collect();
    let with_python = !python.is_empty();
    let mut out = String::new();
    let _ = write!(
        out,
        "{:<15} {:<22} {:<18} {:>11}  {:<42}",
        "workload", "variant", "metric", "value", "vs raw baseline (speed ratio)"
    );
    if with_python {
        let _ = write!(out, " {:>11} {:>9}", "python", "vs python");
    }
    out.push_str("  check\n");
    for l in ours {
        // The raw line measured with the same parameters, else the
        // workload's first (pi's bare loop runs with one chunk).
        let comparable = |r: &&&Line| r.workload == l.workload && r.metric == l.metric && r.ok();
        let base = raw
            .iter()
            .filter(comparable)
            .find(|r| r.params == l.params)
            .or_else(|| raw.iter().find(comparable))
            .map(|r| {
                format!(
                    "{:.2}x of {} ({})",
                    speed(&l.metric, l.value, r.value),
                    r.variant,
                    human(r.value)
                )
            })
            .unwrap_or_else(|| "-".into());
        let variant = match l.param("C") {
            Some(c) if l.workload == "pi" => format!("{} C={c}", l.variant),
            _ => l.variant.clone(),
        };
        let _ = write!(
            out,
            "{:<15} {:<22} {:<18} {:>11}  {:<42}",
            l.workload,
            variant,
            l.metric,
            human(l.value),
            base
        );
        if with_python {
            match python_variant(l, &python) {
                Some(p) => {
                    let _ = write!(
                        out,
                        " {:>11} {:>8.1}x",
                        human(p.value),
                        speed(&l.metric, l.value, p.value)
                    );
                }
                None => {
                    let _ = write!(out, " {:>11} {:>9}", "-", "-");
                }
            }
        }
        let _ = writeln!(out, "  {}", l.check);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let l = Line::new(
            "multiproc",
            "pi",
            "seq",
            &[("N".into(), "100".into()), ("C".into(), "10".into())],
            "seconds",
            0.5,
            "ok",
        );
        let back = Line::parse(&l.json()).unwrap();
        assert_eq!(back.json(), l.json());
        assert_eq!(back.param("N"), Some("100"));
        assert_eq!(params!["N" => 100u64], back.params[..1]);
        assert!(
            l.json()
                .starts_with("{\"impl\": \"multiproc\", \"workload\": \"pi\"")
        );
    }

    #[test]
    fn python_lines_pair_by_name_else_the_best() {
        let line = |imp: &str, w: &str, v: &str, c: &str, metric: &str, value: f64| Line {
            imp: imp.into(),
            workload: w.into(),
            variant: v.into(),
            params: vec![("C".into(), c.into())],
            metric: metric.into(),
            value,
            check: "ok".into(),
        };
        let py = vec![
            line(
                "python",
                "counter",
                "value_lock",
                "1",
                "ns_per_increment",
                800.0,
            ),
            line("python", "spawn", "fork", "1", "us_per_child", 7000.0),
            line("python", "spawn", "spawn", "1", "us_per_child", 70000.0),
            line("python", "array_fill", "python_loop", "1", "GB_per_s", 0.07),
            line("python", "array_fill", "slices", "1", "GB_per_s", 0.06),
            line("python", "pi", "joinable", "10000", "seconds", 5.0),
        ];
        let find = |l: Line| python_variant(&l, &py).map(|p| p.variant.clone());
        let ours = |w: &str, v: &str, c: &str, m: &str| line("multiproc", w, v, c, m, 1.0);
        assert_eq!(
            find(ours("counter", "Value_lock", "1", "ns_per_increment")).as_deref(),
            Some("value_lock")
        );
        assert_eq!(
            find(ours("spawn", "Process_spawn", "1", "us_per_child")).as_deref(),
            Some("spawn")
        );
        assert_eq!(
            find(ours("array_fill", "RawArray", "1", "GB_per_s")).as_deref(),
            Some("python_loop")
        );
        assert_eq!(find(ours("pi", "joinable", "10", "seconds")), None);
        assert_eq!(
            find(ours("pi", "joinable", "10000", "seconds")).as_deref(),
            Some("joinable")
        );
    }

    #[test]
    fn small_values_keep_their_significant_digits() {
        assert_eq!(significant(0.000012346, 4), "0.00001235");
        assert_eq!(significant(0.1234567, 4), "0.1235");
        assert_eq!(significant(12.34567, 4), "12.35");
        assert_eq!(significant(12345.6, 4), "12346");
        assert_eq!(significant(0.0, 4), "0");
        assert_eq!(human(0.0000456), "0.0000456");
        assert_eq!(human(0.5), "0.500");
    }

    #[test]
    fn speed_follows_the_metric_direction() {
        assert_eq!(speed("ns_per_op", 10.0, 40.0), 4.0);
        assert_eq!(speed("messages_per_s", 10.0, 40.0), 0.25);
    }
}
