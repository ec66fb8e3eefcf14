//! report: one row per scenario, the median of each figure over the runs;
//! when the floor row ran, each row's server CPU per request as a multiple of
//! the floor's.

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
    /// The row every CPU figure is divided by.
    floor: Option<String>,
}

impl Table {
    /// Records one run of scenario `name`.
    pub fn add(&mut self, name: &str, figures: Figures) {
        match self.rows.iter_mut().find(|(n, _)| n == name) {
            Some((_, runs)) => runs.push(figures),
            None => self.rows.push((name.to_owned(), vec![figures])),
        }
    }

    /// Makes row `name` the floor the others are read against.
    pub fn floor(&mut self, name: &str) {
        self.floor = Some(name.to_owned());
    }

    /// Server CPU per request of the floor row, when it ran and was measured.
    fn floor_cpu_us(&self) -> Option<f64> {
        let cpu = self.median(self.floor.as_deref()?)?.cpu_us;
        (cpu > 0.0).then_some(cpu)
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

    /// The table in Markdown; with a floor, a last column of CPU per request
    /// divided by the floor's.
    pub fn render(&self) -> String {
        let floor = self.floor_cpu_us();
        let (head, rule) = match floor {
            Some(_) => (" CPU × floor |", "---:|"),
            None => ("", ""),
        };
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| scenario | runs | req/s | p50 ms | p99 ms | server CPU µs/req | peak RSS MiB | lost+wrong (all runs) |{head}"
        );
        let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|---:|---:|{rule}");
        for (name, runs) in &self.rows {
            let f = self.median(name).expect("row exists");
            let _ = write!(
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
            if let Some(floor) = floor {
                let _ = write!(out, " {} |", fmt(f.cpu_us / floor, 1));
            }
            out.push('\n');
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

    fn row(rate: f64, cpu_us: f64) -> Figures {
        Figures {
            rate,
            cpu_us,
            ..Figures::default()
        }
    }

    #[test]
    fn rows_are_read_as_multiples_of_the_floor() {
        let mut table = Table::default();
        table.add("0. floor", row(300_000.0, 2.0));
        table.add("1. status", row(200_000.0, 3.0));
        table.add("5b. no cpu", row(50_000.0, f64::NAN));
        let plain = table.render();
        assert!(!plain.contains("× floor"), "no floor marked, no column:\n{plain}");
        table.floor("0. floor");
        let text = table.render();
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].ends_with("| CPU × floor |"), "{text}");
        assert!(
            lines[2].starts_with("| 0. floor |") && lines[2].ends_with("| 1.0 |"),
            "{text}"
        );
        assert!(lines[3].ends_with("| 3.0 | 0.0 | 0 | 1.5 |"), "{text}");
        assert!(lines[4].ends_with("| – |"), "{text}");
        assert!(lines
            .iter()
            .all(|l| l.matches('|').count() == lines[0].matches('|').count()));
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
        assert!(median(vec![]).is_nan());
    }
}
