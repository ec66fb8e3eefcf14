//! report: one row per scenario, the median of each figure over the runs.

use std::fmt::Write as _;

/// One scenario's figures from one run.
#[derive(Debug, Clone, Copy, Default)]
pub struct Figures {
    /// Good answers per second.
    pub rate: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
    /// 99th percentile latency, ms.
    pub p99_ms: f64,
    /// Server CPU per good answer, µs.
    pub cpu_us: f64,
    /// Server peak RSS, MiB.
    pub rss_mib: f64,
    /// Requests lost or wrongly answered.
    pub failed: u64,
}

/// Rows in the order they were first added.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<(String, Vec<Figures>)>,
    counts: Vec<(String, Vec<u64>)>,
}

impl Table {
    /// Records one run of scenario `name`.
    pub fn add(&mut self, name: &str, figures: Figures) {
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, runs)) => runs.push(figures),
            None => self.rows.push((name.to_owned(), vec![figures])),
        }
    }

    /// Records one run's value of a count printed under the table.
    pub fn count(&mut self, name: &str, value: u64) {
        match self.counts.iter_mut().find(|(n, _)| n == name) {
            Some((_, runs)) => runs.push(value),
            None => self.counts.push((name.to_owned(), vec![value])),
        }
    }

    /// The median figures of a scenario.
    pub fn median(&self, name: &str) -> Option<Figures> {
        let (_, runs) = self.rows.iter().find(|(n, _)| n == name)?;
        let m = |f: fn(&Figures) -> f64| median(runs.iter().map(f).collect());
        Some(Figures {
            rate: m(|f| f.rate),
            p50_ms: m(|f| f.p50_ms),
            p99_ms: m(|f| f.p99_ms),
            cpu_us: m(|f| f.cpu_us),
            rss_mib: m(|f| f.rss_mib),
            failed: runs.iter().map(|f| f.failed).sum(),
        })
    }

    /// The table in Markdown.
    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("| scenario | runs | req/s | p50 ms | p99 ms | server CPU µs/req | peak RSS MiB | lost+wrong (all runs) |\n");
        out.push_str("|---|---:|---:|---:|---:|---:|---:|---:|\n");
        for (name, runs) in &self.rows {
            let f = self.median(name).expect("row exists");
            let _ = writeln!(
                out,
                "| {name} | {} | {} | {} | {} | {} | {} | {} |",
                runs.len(),
                fmt(f.rate, 0),
                fmt(f.p50_ms, 2),
                fmt(f.p99_ms, 2),
                fmt(f.cpu_us, 1),
                fmt(f.rss_mib, 1),
                f.failed
            );
        }
        for (name, runs) in &self.counts {
            let shown: Vec<String> = runs.iter().map(u64::to_string).collect();
            let _ = writeln!(out, "\n{name}: {} (per run)", shown.join(", "));
        }
        out
    }
}

fn fmt(v: f64, decimals: usize) -> String {
    if v.is_nan() {
        "–".to_owned()
    } else {
        format!("{v:.decimals$}")
    }
}

/// The median; NaN for no values.
pub fn median(mut values: Vec<f64>) -> f64 {
    values.retain(|v| !v.is_nan());
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
