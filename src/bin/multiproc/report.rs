//! Measurements as the JSON lines of `shared/WORKLOADS.md`, and the summary
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
        format!("{x:.4}")
    }
}

/// The Python variant that measures the same thing as a multiproc variant
/// (the two sides name some variants after their own types).
fn python_variant<'a>(ours: &Line, python: &'a [Line]) -> Option<&'a Line> {
    let same = |l: &&Line| l.workload == ours.workload && l.metric == ours.metric && l.ok();
    let candidates: Vec<&Line> = python.iter().filter(same).collect();
    let by_name = |name: &str| candidates.iter().copied().find(|l| l.variant == name);
    let same_chunks = |l: &&Line| ours.workload != "pi" || l.param("C") == ours.param("C");
    if let Some(l) = by_name(&ours.variant).filter(same_chunks) {
        return Some(l);
    }
    let alias: &[&str] = match (ours.workload.as_str(), ours.variant.as_str()) {
        ("pool_map", v) if v.contains("default") => &["default", "chunksize_default"],
        ("pool_map", _) => &["chunksize1", "chunksize_1"],
        ("spawn", v) if v.contains("spawn") => &["spawn", "spawn_start_method"],
        ("spawn", _) => &["fork", "fork_start_method"],
        ("counter", v) if v.contains("fetch_add") => &[],
        _ => &[],
    };
    if let Some(l) = alias.iter().find_map(|a| by_name(a)) {
        return Some(l);
    }
    // A workload with a single Python variant compares against it.
    if ours.workload != "pi" && ours.workload != "spawn" && candidates.len() == 1 {
        return Some(candidates[0]);
    }
    None
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
        "{:<15} {:<22} {:<18} {:>11}  {:<32}",
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
            "{:<15} {:<22} {:<18} {:>11}  {:<32}",
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
    fn speed_follows_the_metric_direction() {
        assert_eq!(speed("ns_per_op", 10.0, 40.0), 4.0);
        assert_eq!(speed("messages_per_s", 10.0, 40.0), 0.25);
    }
}
