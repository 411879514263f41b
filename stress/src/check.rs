//! The report's unit: one [`Check`] per measured figure, with its target and verdict.

use std::fmt::Write as _;

use serde::Serialize;

/// Whether a check met its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The figure met its target.
    Pass,
    /// The figure missed its target; the run fails.
    Fail,
    /// A timing figure missed its target in a run too short to judge it (`--quick`): shown,
    /// but the run does not fail for it.
    Warn,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Warn => "WARN",
        }
    }
}

/// One row of the report: a named figure, the target it is held to, and the verdict.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The part (crate) the check belongs to, e.g. `mm-track`.
    pub part: &'static str,
    /// What was measured.
    pub name: String,
    /// The measured value, in `unit`.
    pub value: f64,
    /// The unit of `value` (`%`, `bytes`, `allocs`, ...).
    pub unit: &'static str,
    /// The target, as people read it (`<= 1.0 %`).
    pub target: String,
    /// The verdict.
    pub status: Status,
    /// Extra figures behind the value (for example both timings of a ratio).
    pub detail: String,
}

impl Check {
    fn new(part: &'static str, name: &str, value: f64, unit: &'static str) -> Self {
        Self {
            part,
            name: name.to_owned(),
            value,
            unit,
            target: String::new(),
            status: Status::Fail,
            detail: String::new(),
        }
    }

    /// Passes when `value <= limit`.
    pub fn at_most(
        part: &'static str,
        name: &str,
        value: f64,
        unit: &'static str,
        limit: f64,
    ) -> Self {
        let mut c = Self::new(part, name, value, unit);
        c.target = format!("<= {} {unit}", fmt_num(limit));
        c.status = pass_if(value <= limit);
        c
    }

    /// Passes when `value >= limit`.
    pub fn at_least(
        part: &'static str,
        name: &str,
        value: f64,
        unit: &'static str,
        limit: f64,
    ) -> Self {
        let mut c = Self::new(part, name, value, unit);
        c.target = format!(">= {} {unit}", fmt_num(limit));
        c.status = pass_if(value >= limit);
        c
    }

    /// Passes when `value > limit` (strictly).
    pub fn above(
        part: &'static str,
        name: &str,
        value: f64,
        unit: &'static str,
        limit: f64,
    ) -> Self {
        let mut c = Self::new(part, name, value, unit);
        c.target = format!("> {} {unit}", fmt_num(limit));
        c.status = pass_if(value > limit);
        c
    }

    /// Passes when `value == expected`.
    pub fn equals(
        part: &'static str,
        name: &str,
        value: f64,
        unit: &'static str,
        expected: f64,
    ) -> Self {
        let mut c = Self::new(part, name, value, unit);
        c.target = format!("= {} {unit}", fmt_num(expected));
        c.status = pass_if(value == expected);
        c
    }

    /// Passes when `ok`; `value` is 1 or 0 and `target` says what was expected.
    pub fn holds(part: &'static str, name: &str, ok: bool, target: &str) -> Self {
        let mut c = Self::new(part, name, if ok { 1.0 } else { 0.0 }, "");
        c.target = target.to_owned();
        c.status = pass_if(ok);
        c
    }

    /// Adds the figures behind the value.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = detail.into();
        self
    }

    /// Fails the check as well when `ok` is false, adding `why` to its detail (for a figure
    /// that is only meaningful when a precondition held, e.g. the budget was reached).
    pub fn require(mut self, ok: bool, why: &str) -> Self {
        if !ok {
            self.status = Status::Fail;
            if !self.detail.is_empty() {
                self.detail.push_str("; ");
            }
            self.detail.push_str("FAILED: ");
            self.detail.push_str(why);
        }
        self
    }

    /// Turns a failure into a warning (for timing figures in runs too short to judge them).
    pub fn soft(mut self, soft: bool) -> Self {
        if soft && self.status == Status::Fail {
            self.status = Status::Warn;
        }
        self
    }
}

fn pass_if(ok: bool) -> Status {
    if ok { Status::Pass } else { Status::Fail }
}

/// Formats a figure compactly: integers with thousands separators, others to 3 significant
/// decimals.
pub fn fmt_num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        let digits = format!("{}", v.abs() as u64);
        let mut out = String::new();
        for (i, ch) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(ch);
        }
        if v < 0.0 { format!("-{out}") } else { out }
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

/// All checks of a run.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// True when no check failed.
    pub passed: bool,
    /// The rows, in the order they were run.
    pub checks: Vec<Check>,
}

impl Report {
    /// An empty report.
    pub fn new() -> Self {
        Self {
            passed: true,
            checks: Vec::new(),
        }
    }

    /// Adds a row.
    pub fn push(&mut self, check: Check) {
        self.passed &= check.status != Status::Fail;
        self.checks.push(check);
    }

    /// The report as a table for people.
    pub fn table(&self) -> String {
        let rows: Vec<[String; 5]> = self
            .checks
            .iter()
            .map(|c| {
                let figure = if c.unit.is_empty() {
                    if c.value == 1.0 {
                        "yes".to_owned()
                    } else {
                        "no".to_owned()
                    }
                } else {
                    format!("{} {}", fmt_num(c.value), c.unit)
                };
                [
                    c.part.to_owned(),
                    c.name.clone(),
                    figure,
                    c.target.clone(),
                    c.status.label().to_owned(),
                ]
            })
            .collect();
        let head = ["part", "check", "figure", "target", "status"].map(str::to_owned);
        let mut width = head.clone().map(|h| h.len());
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for r in std::iter::once(&head).chain(&rows) {
            let line: Vec<String> = r
                .iter()
                .zip(width)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            let _ = writeln!(out, "{}", line.join("  ").trim_end());
        }
        for c in self.checks.iter().filter(|c| !c.detail.is_empty()) {
            let _ = writeln!(out, "  {}: {}", c.name, c.detail);
        }
        let verdict = if self.passed {
            "all checks passed"
        } else {
            "SOME CHECKS FAILED"
        };
        let _ = writeln!(out, "{verdict} ({} checks)", self.checks.len());
        out
    }

    /// The report as JSON for machines.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_and_report_outcome() {
        let mut r = Report::new();
        r.push(Check::at_most("p", "small", 0.5, "%", 1.0));
        r.push(Check::at_least("p", "many", 10.0, "allocs", 10.0));
        assert!(r.passed);
        r.push(Check::at_most("p", "slow", 5.0, "%", 1.0).soft(true));
        assert!(r.passed, "a soft miss does not fail the run");
        assert_eq!(r.checks[2].status, Status::Warn);
        r.push(Check::equals("p", "leak", 8.0, "bytes", 0.0));
        assert!(!r.passed);
        let t = r.table();
        assert!(
            t.contains("FAIL") && t.contains("SOME CHECKS FAILED"),
            "{t}"
        );
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["passed"], false);
        assert_eq!(j["checks"][3]["status"], "fail");
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(1_234_567.0), "1,234,567");
        assert_eq!(fmt_num(-1000.0), "-1,000");
        assert_eq!(fmt_num(0.4567), "0.457");
    }
}
