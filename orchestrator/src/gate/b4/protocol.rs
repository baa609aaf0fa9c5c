//! b4's check protocol: the answer lab gives b4 after checking one patch mail.
//!
//! b4 (`mricon/b4`) runs check commands in two places, and reads their output in two forms:
//!
//! - `b4 review` (v0.15+), `b4.review-perpatch-check-cmd` and `b4.review-series-check-cmd`:
//!   on stdout a JSON array of `{"tool", "status", "summary", "url", "details"}` objects; only
//!   `tool` and `status` (`pass`, `warn` or `fail`) are required, `[]` means nothing to
//!   report, and a non-zero exit with no output is shown as a failure. See b4's
//!   `docs/maintainer/review.rst` ("CI check integration") and `src/b4/review/checks.py`
//!   (`_run_external_cmd()`). [`to_json`] writes this form and [`validate_json`] checks it.
//! - `b4 prep --check`, `b4.prep-perpatch-check-cmd`: lines, checkpatch-style: every stdout
//!   line is one finding, a failure if it contains `ERROR:` and a warning otherwise, every
//!   stderr line a failure, and no output with exit 0 means the patch passed
//!   (`LoreMessage.run_local_check()` in `src/b4/__init__.py`). [`to_prep_lines`] writes this
//!   form.
//!
//! Both are built from [`CheckResult`]s; [`checkpatch_result`] and [`warnings_result`] turn
//! the gate's own checks into one each. Everything here is pure: text in, text out.

use std::fmt::Write as _;

use serde::Serialize;

use crate::gate::checkpatch::{CheckpatchReport, Level};
use crate::gate::warnings::{CompilerWarning, Severity};

/// A check's outcome, as b4 colours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    /// The worst of several (pass for none).
    pub fn worst(all: impl IntoIterator<Item = Status>) -> Status {
        all.into_iter().max().unwrap_or(Status::Pass)
    }
}

/// One result object of b4's review check protocol. `url` and `details` are left out of
/// the JSON when None, as b4's own results do (b4 reads a missing key as empty).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// The column header in b4's results matrix.
    pub tool: String,
    pub status: Status,
    /// One line.
    pub summary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Several lines, for b4's scrollable detail view.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
}

/// The JSON array b4 reads from a `review-*-check-cmd` (no trailing newline).
pub fn to_json(results: &[CheckResult]) -> String {
    serde_json::to_string_pretty(results).unwrap_or_else(|e| {
        // Cannot happen for these types; if it did, b4 must still see a failure.
        serde_json::json!([{"tool": "lab", "status": "fail", "summary": e.to_string()}]).to_string()
    })
}

/// The lines b4 reads from a `prep-perpatch-check-cmd`: one per result that did not pass,
/// with `ERROR:` for a failure (b4 flags a line as failed exactly when it contains `ERROR:`,
/// so a warning's text must not). Empty when everything passed: b4 then says "passed all
/// checks". Exit 0 either way; b4 only looks at the exit code when there is no output.
pub fn to_prep_lines(results: &[CheckResult]) -> String {
    let mut out = String::new();
    for r in results {
        let one_line = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ");
        let mut text = format!("{}: {}", r.tool, one_line(&r.summary));
        if let Some(url) = &r.url {
            let _ = write!(text, " ({url})");
        }
        match r.status {
            Status::Pass => continue,
            Status::Warn => {
                let _ = writeln!(out, "WARNING: {}", text.replace("ERROR:", "ERROR"));
            }
            Status::Fail => {
                let _ = writeln!(out, "ERROR: {text}");
            }
        }
    }
    out
}

/// Checks that `text` is what b4's review check protocol accepts: a JSON array of objects,
/// each with a non-empty string `tool` and a `status` of `pass`, `warn` or `fail`, and
/// optionally `summary`, `url` and `details`, each a string or null. Stricter than b4, which
/// ignores other keys: an unknown key here is most likely a typo (`detail`) that b4 would
/// silently drop. Returns the number of results.
pub fn validate_json(text: &str) -> Result<usize, String> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let items = value
        .as_array()
        .ok_or_else(|| format!("the top level is not an array but {}", kind_of(&value)))?;
    for (i, item) in items.iter().enumerate() {
        let obj = item
            .as_object()
            .ok_or_else(|| format!("result {i} is not an object but {}", kind_of(item)))?;
        for key in obj.keys() {
            if !["tool", "status", "summary", "url", "details"].contains(&key.as_str()) {
                return Err(format!(
                    "result {i} has an unknown key {key:?} (b4 reads tool, status, summary, url, details)"
                ));
            }
        }
        match obj.get("tool") {
            Some(serde_json::Value::String(t)) if !t.trim().is_empty() => {}
            Some(v) => {
                return Err(format!(
                    "result {i}: tool must be a non-empty string, not {v}"
                ))
            }
            None => return Err(format!("result {i} has no tool")),
        }
        match obj.get("status") {
            Some(serde_json::Value::String(s))
                if ["pass", "warn", "fail"].contains(&s.as_str()) => {}
            Some(v) => {
                return Err(format!(
                    "result {i}: status must be \"pass\", \"warn\" or \"fail\", not {v}"
                ))
            }
            None => return Err(format!("result {i} has no status")),
        }
        for key in ["summary", "url", "details"] {
            match obj.get(key) {
                None | Some(serde_json::Value::String(_) | serde_json::Value::Null) => {}
                Some(v) => {
                    return Err(format!(
                        "result {i}: {key} must be a string or null, not {}",
                        kind_of(v)
                    ))
                }
            }
        }
    }
    Ok(items.len())
}

fn kind_of(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// checkpatch's report as one result: fail on errors, warn on warnings or checks.
pub fn checkpatch_result(report: &CheckpatchReport) -> CheckResult {
    let status = if !report.errors.is_empty() {
        Status::Fail
    } else if !report.warnings.is_empty() || !report.checks.is_empty() {
        Status::Warn
    } else {
        Status::Pass
    };
    let summary = if status == Status::Pass {
        "passed all checks".to_owned()
    } else {
        let mut parts = Vec::new();
        for (n, what) in [
            (report.errors.len(), "error"),
            (report.warnings.len(), "warning"),
            (report.checks.len(), "check"),
        ] {
            if n > 0 {
                parts.push(plural(n, what));
            }
        }
        parts.join(", ")
    };
    let mut details = String::new();
    for f in report.findings() {
        let level = match f.level {
            Level::Error => "ERROR",
            Level::Warning => "WARNING",
            Level::Check => "CHECK",
        };
        let _ = write!(details, "{level}:{}: {}", f.kind, f.message);
        match (&f.file, f.line) {
            (Some(file), Some(line)) => {
                let _ = write!(details, " ({file}:{line})");
            }
            (Some(file), None) => {
                let _ = write!(details, " ({file})");
            }
            _ => {}
        }
        details.push('\n');
    }
    for n in &report.notes {
        let _ = writeln!(details, "note: {n}");
    }
    CheckResult {
        tool: "checkpatch".to_owned(),
        status,
        summary,
        url: None,
        details: (!details.is_empty()).then_some(details),
    }
}

/// New compiler warnings as one result: fail on a new error, warn on a new warning.
pub fn warnings_result(new: &[CompilerWarning]) -> CheckResult {
    let errors = new.iter().filter(|w| w.severity == Severity::Error).count();
    let status = match (errors, new.len()) {
        (0, 0) => Status::Pass,
        (0, _) => Status::Warn,
        _ => Status::Fail,
    };
    let summary = if new.is_empty() {
        "no new compiler warnings".to_owned()
    } else {
        format!(
            "{} in the touched files",
            plural(new.len(), "new compiler diagnostic")
        )
    };
    let mut details = String::new();
    for w in new {
        let loc = match (w.line, w.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}", w.file),
            (Some(l), None) => format!("{}:{l}", w.file),
            _ => w.file.clone(),
        };
        let sev = match w.severity {
            Severity::Warning => "warning",
            Severity::Error => "error",
        };
        let _ = write!(details, "{loc}: {sev}: {}", w.message);
        if let Some(flag) = &w.flag {
            let _ = write!(details, " [{flag}]");
        }
        details.push('\n');
    }
    CheckResult {
        tool: "build-warnings".to_owned(),
        status,
        summary,
        url: None,
        details: (!details.is_empty()).then_some(details),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<CheckResult> {
        vec![
            CheckResult {
                tool: "checkpatch".into(),
                status: Status::Pass,
                summary: "passed all checks".into(),
                url: None,
                details: None,
            },
            CheckResult {
                tool: "lab-compare".into(),
                status: Status::Fail,
                summary: "futex_errno regressed on x86_64".into(),
                url: Some("file:///tmp/report.html".into()),
                details: Some("failure rate 0/40 -> 9/40\n".into()),
            },
            CheckResult {
                tool: "build-warnings".into(),
                status: Status::Warn,
                summary: "1 new compiler diagnostic; was ERROR: before".into(),
                url: None,
                details: None,
            },
        ]
    }

    #[test]
    fn json_output_has_the_documented_shape() {
        let json = to_json(&sample());
        assert_eq!(validate_json(&json), Ok(3));
        let v: serde_json::Value = serde_json::from_str(&json).expect("json");
        assert_eq!(v[0]["status"], "pass");
        assert_eq!(v[1]["status"], "fail");
        assert_eq!(v[1]["url"], "file:///tmp/report.html");
        assert_eq!(v[2]["status"], "warn");
        assert!(v[0].get("url").is_none(), "None is left out");
        assert_eq!(validate_json(&to_json(&[])), Ok(0));
    }

    #[test]
    fn the_validator_rejects_bad_shapes() {
        for (bad, why) in [
            ("", "not JSON"),
            ("{\"tool\": \"x\", \"status\": \"pass\"}", "not an array"),
            ("[1]", "not an object"),
            ("[{\"status\": \"pass\"}]", "no tool"),
            ("[{\"tool\": \"\", \"status\": \"pass\"}]", "non-empty"),
            ("[{\"tool\": 3, \"status\": \"pass\"}]", "non-empty string"),
            ("[{\"tool\": \"x\"}]", "no status"),
            (
                "[{\"tool\": \"x\", \"status\": \"PASS\"}]",
                "status must be",
            ),
            (
                "[{\"tool\": \"x\", \"status\": \"success\"}]",
                "status must be",
            ),
            (
                "[{\"tool\": \"x\", \"status\": \"pass\", \"url\": 5}]",
                "url must be",
            ),
            (
                "[{\"tool\": \"x\", \"status\": \"pass\", \"details\": []}]",
                "details must be",
            ),
            (
                "[{\"tool\": \"x\", \"status\": \"pass\", \"detail\": \"y\"}]",
                "unknown key",
            ),
        ] {
            let err = validate_json(bad).expect_err(bad);
            assert!(err.contains(why), "{bad}: {err}");
        }
        assert_eq!(
            validate_json("[{\"tool\": \"x\", \"status\": \"warn\", \"url\": null}]"),
            Ok(1)
        );
    }

    #[test]
    fn prep_lines_follow_b4s_line_rules() {
        let out = to_prep_lines(&sample());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert!(lines[0].starts_with("ERROR: lab-compare: futex_errno regressed"));
        assert!(lines[0].ends_with("(file:///tmp/report.html)"));
        assert!(lines[1].starts_with("WARNING: build-warnings:"));
        assert!(
            !lines[1].contains("ERROR:"),
            "b4 would count it as a failure"
        );
        assert_eq!(to_prep_lines(&sample()[..1]), "");
    }

    #[test]
    fn checkpatch_and_warning_results() {
        let report = crate::gate::checkpatch::parse_output(
            "ERROR:TRAILING_WHITESPACE: trailing whitespace\n#28: FILE: kernel/futex/core.c:49:\n\
             + x \n\ntotal: 1 errors, 0 warnings, 9 lines checked\n",
        )
        .expect("parses");
        let r = checkpatch_result(&report);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.summary, "1 error");
        assert_eq!(
            r.details.as_deref(),
            Some("ERROR:TRAILING_WHITESPACE: trailing whitespace (kernel/futex/core.c:49)\n")
        );
        let ws = crate::gate::warnings::parse_warnings(
            "kernel/futex/core.c:5:3: warning: unused variable 'a' [-Wunused-variable]\n",
        );
        let r = warnings_result(&ws);
        assert_eq!(r.status, Status::Warn);
        assert_eq!(
            r.details.as_deref(),
            Some("kernel/futex/core.c:5:3: warning: unused variable 'a' [-Wunused-variable]\n")
        );
        assert_eq!(warnings_result(&[]).status, Status::Pass);
        assert_eq!(
            Status::worst([Status::Warn, Status::Pass, Status::Fail]),
            Status::Fail
        );
        assert_eq!(validate_json(&to_json(&[r])), Ok(1));
    }
}
