//! `lab results`: list, show, runs and export what the results store holds.
//!
//! Read-only: a store that does not exist yet reads as an empty one and is not created, so
//! looking never leaves a file behind.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::Context;
use crate::cli::ResultsCommand;
use crate::compare::model::{CompareReport, Overall, REPORT_FORMAT_VERSION};
use crate::errors::{LabError, Outcome, ResultsError};
use crate::io_error::io;
use crate::report::{self, ReportFormat};
use crate::results::store::{RunRow, SessionRow, Store, StoreError};

pub fn run(ctx: &Context, cmd: &ResultsCommand) -> Result<Outcome, LabError> {
    let path = ctx.settings.store.clone();
    let store = open(&path)?;
    match cmd {
        ResultsCommand::List { limit, json } => list(&store, &path, *limit, *json),
        ResultsCommand::Show {
            session,
            format,
            output,
        } => show(ctx, &store, &path, *session, format, output.as_deref()),
        ResultsCommand::Runs {
            kernel,
            limit,
            json,
        } => runs(&store, kernel.as_deref(), *limit, *json),
        ResultsCommand::Export { format, output } => {
            export(ctx, &store, &path, format, output.as_deref())
        }
    }
}

/// The store at `path`, or an empty one when lab has recorded nothing yet.
fn open(path: &Path) -> Result<Store, LabError> {
    if path.exists() {
        Store::open(path)
    } else {
        Store::open_in_memory()
    }
    .map_err(store_error)
}

/// A store error as the user sees it: what failed, on which file, and why.
pub fn store_error(e: StoreError) -> LabError {
    LabError::Store(e)
}

/// "failed to ...: cause: cause", for messages that are not a [`LabError`].
pub fn store_error_text(e: &StoreError) -> String {
    e.with_causes()
}

/// A session as `list` shows it: the report reduced to one line.
#[derive(Debug, Serialize)]
struct SessionLine {
    id: i64,
    kind: String,
    key: String,
    status: String,
    created_at: String,
    finished_at: Option<String>,
    overall: Option<Overall>,
    /// regression, improvement, no difference, inconclusive.
    tally: Option<[usize; 4]>,
    summary: String,
}

fn session_line(s: &SessionRow) -> SessionLine {
    let mut line = SessionLine {
        id: s.id,
        kind: s.kind.clone(),
        key: s.key.clone(),
        status: s.status.clone(),
        created_at: s.created_at.clone(),
        finished_at: s.finished_at.clone(),
        overall: None,
        tally: None,
        summary: String::new(),
    };
    line.summary = match (&s.finished_at, &s.report_json) {
        (None, _) => format!(
            "unfinished: running, or interrupted (the same `lab {}` resumes it)",
            s.kind
        ),
        (Some(_), None) => "finished without a report".into(),
        (Some(_), Some(json)) if s.kind == "compare" => {
            match serde_json::from_str::<CompareReport>(json) {
                Ok(r) => {
                    let (reg, imp, same, open) = r.tally();
                    line.overall = Some(r.overall);
                    line.tally = Some([reg, imp, same, open]);
                    format!(
                        "{} vs {}: {}; {reg} regression, {imp} improvement, {same} no difference, {open} inconclusive",
                        r.a.label,
                        r.b.label,
                        overall_text(r.overall)
                    )
                }
                Err(e) => format!("report not readable by this lab: {e}"),
            }
        }
        (Some(_), Some(_)) => "finished".into(),
    };
    line
}

fn overall_text(o: Overall) -> &'static str {
    o.describe()
}

fn list(store: &Store, path: &Path, limit: usize, json: bool) -> Result<Outcome, LabError> {
    let sessions: Vec<SessionLine> = store
        .sessions(limit)
        .map_err(store_error)?
        .iter()
        .map(session_line)
        .collect();
    let runs = store.runs(None, limit).map_err(store_error)?;
    if json {
        let v = serde_json::json!({
            "store": path,
            "sessions": sessions,
            "runs": runs,
        });
        stdout(&pretty(&v))?;
        return Ok(Outcome::Pass);
    }
    let mut out = vec![format!("results store {}", path.display())];
    if sessions.is_empty() {
        out.push("\nno sessions yet: `lab compare` records one per comparison".into());
    } else {
        out.push("\nsessions, newest first:".into());
        out.push(format!(
            "{:>5}  {:<8} {:<12} {:<20}  summary",
            "id", "kind", "status", "created"
        ));
        for s in &sessions {
            out.push(format!(
                "{:>5}  {:<8} {:<12} {:<20}  {}",
                s.id, s.kind, s.status, s.created_at, s.summary
            ));
        }
    }
    if runs.is_empty() {
        out.push("\nno runs yet: `lab run` and `lab compare` record every run".into());
    } else {
        out.push("\nruns, newest first:".into());
        out.extend(run_table(&runs));
    }
    stdout(&out.join("\n"))?;
    Ok(Outcome::Pass)
}

fn show(
    ctx: &Context,
    store: &Store,
    path: &Path,
    id: i64,
    format: &str,
    output: Option<&Path>,
) -> Result<Outcome, LabError> {
    let color = output.is_none() && std::io::stdout().is_terminal();
    let fmt = ReportFormat::parse(format, color).ok_or_else(|| {
        LabError::usage(
            "--format",
            format!("{format:?}: use terminal, markdown, json, junit or html"),
        )
    })?;
    let session = store.session(id).map_err(store_error)?.ok_or_else(|| {
        LabError::usage(
            "SESSION",
            format!(
                "no session {id} in the results store {}: `lab results list` shows the sessions it holds",
                path.display()
            ),
        )
    })?;
    let Some(report_json) = session
        .report_json
        .as_deref()
        .filter(|_| session.finished_at.is_some())
    else {
        let state = match session.state_json.as_deref() {
            Some(state) => format!("state:\n{}", pretty_text(state)),
            None => "no state saved yet".into(),
        };
        stdout(&format!(
            "session {id} ({}) is unfinished: started {}, status {}; it is running, or was interrupted and resumes when the same `lab {}` runs again\n{state}",
            session.kind, session.created_at, session.status, session.kind
        ))?;
        return match output {
            Some(file) => Err(LabError::usage(
                "--output",
                format!(
                    "session {id} has no report yet, so nothing was written to {}",
                    file.display()
                ),
            )),
            None => Ok(Outcome::Pass),
        };
    };
    let text = if session.kind == "compare" {
        let report: CompareReport =
            serde_json::from_str(report_json).map_err(|source| ResultsError::Unreadable {
                session: id,
                path: path.to_owned(),
                supported: REPORT_FORMAT_VERSION,
                source,
            })?;
        if report.format_version > REPORT_FORMAT_VERSION {
            return Err(ResultsError::TooNew {
                session: id,
                path: path.to_owned(),
                found: report.format_version,
                supported: REPORT_FORMAT_VERSION,
            }
            .into());
        }
        report::render(&report, fmt)?
    } else if fmt == ReportFormat::Json {
        pretty_text(report_json)
    } else {
        return Err(LabError::usage(
            "--format",
            format!(
                "session {id} is a {} session, whose report only `--format json` prints",
                session.kind
            ),
        ));
    };
    emit(ctx, &text, output)?;
    Ok(Outcome::Pass)
}

/// Writes `text` to `output`, or stdout.
fn emit(ctx: &Context, text: &str, output: Option<&Path>) -> Result<(), LabError> {
    match output {
        Some(file) => {
            std::fs::write(file, text).map_err(io("cannot write", file))?;
            if !ctx.quiet {
                crate::errln!("lab: wrote {}", file.display());
            }
        }
        None => stdout(text)?,
    }
    Ok(())
}

/// Writes `text` to stdout with a final newline. A closed pipe (`| head`) is not an error:
/// the reader has what it wanted.
fn stdout(text: &str) -> Result<(), LabError> {
    let mut out = std::io::stdout().lock();
    let nl = if text.ends_with('\n') { "" } else { "\n" };
    match write!(out, "{text}{nl}").and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(LabError::Output {
            stream: "stdout",
            source: e,
        }),
        _ => Ok(()),
    }
}

fn runs(
    store: &Store,
    kernel: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<Outcome, LabError> {
    let runs = store.runs(kernel, limit).map_err(store_error)?;
    let text = if json {
        pretty(&runs)
    } else if runs.is_empty() {
        match kernel {
            Some(k) => format!("no stored runs of a kernel key starting with {k:?}"),
            None => "no runs yet: `lab run` and `lab compare` record every run".into(),
        }
    } else {
        run_table(&runs).join("\n")
    };
    stdout(&text)?;
    Ok(Outcome::Pass)
}

fn run_table(runs: &[RunRow]) -> Vec<String> {
    let mut out = vec![format!(
        "{:>5} {:>7} {:<4} {:<7} {:<24} {:<12} {:>8} {:>8}  {:<16} dir",
        "id", "session", "side", "arch", "kernel", "key", "outcomes", "failures", "where"
    )];
    for r in runs {
        let key: String = r.kernel_key.chars().take(12).collect();
        let label: String = r.kernel_label.chars().take(24).collect();
        let unfinished = if r.finished_at.is_none() {
            " (unfinished)"
        } else {
            ""
        };
        // `local` alone for runs from before placements were recorded.
        let place = match (&r.job, &r.node) {
            (Some(job), Some(node)) => format!("{} {job}@{node}", r.engine),
            (None, Some(node)) => format!("{}@{node}", r.engine),
            (_, None) => r.engine.clone(),
        };
        let place: String = place.chars().take(16).collect();
        out.push(format!(
            "{:>5} {:>7} {:<4} {:<7} {:<24} {:<12} {:>8} {:>8}  {:<16} {}{unfinished}",
            r.id,
            r.session.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            r.side.as_deref().unwrap_or("-"),
            r.arch,
            label,
            key,
            r.outcomes,
            r.failures,
            place,
            r.dir
        ));
    }
    out
}

fn export(
    ctx: &Context,
    store: &Store,
    path: &Path,
    format: &str,
    output: Option<&Path>,
) -> Result<Outcome, LabError> {
    if !matches!(format, "json" | "jsonl") {
        return Err(LabError::usage(
            "--format",
            format!("{format:?}: the export is JSON lines; use json"),
        ));
    }
    let lines = match output {
        Some(file) => {
            let f = std::fs::File::create(file).map_err(io("cannot create", file))?;
            let mut w = std::io::BufWriter::new(f);
            store.export_jsonl(&mut w).map_err(store_error)?
        }
        None => {
            let stdout = std::io::stdout();
            let mut w = std::io::BufWriter::new(stdout.lock());
            // A closed pipe (`| head`) ends the export early; the reader has what it wanted.
            let closed = |e: &std::io::Error| e.kind() == std::io::ErrorKind::BrokenPipe;
            match store.export_jsonl(&mut w) {
                Err(StoreError::ExportWrite { source, .. }) if closed(&source) => {
                    return Ok(Outcome::Pass)
                }
                other => other.map_err(store_error)?,
            }
        }
    };
    if !ctx.quiet {
        let to = output.map_or_else(|| PathBuf::from("stdout"), Path::to_owned);
        crate::errln!(
            "lab: exported {lines} rows of {} to {}",
            path.display(),
            to.display()
        );
    }
    Ok(Outcome::Pass)
}

fn pretty<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// A JSON text, indented; as it is when it is not JSON.
fn pretty_text(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text).map_or_else(|_| text.to_owned(), |v| pretty(&v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_errors_keep_their_cause() {
        let dir = tempfile::tempdir().expect("tempdir");
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "x").expect("write");
        let err = Store::open(&blocker.join("results.db")).expect_err("not a folder");
        let msg = store_error_text(&err);
        let err = store_error(err);
        assert_eq!(err.exit_code(), crate::errors::EXIT_INFRA);
        assert!(
            err.to_string()
                .starts_with("failed to create the folder of the results store "),
            "{err}"
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "the cause is kept"
        );
        assert!(msg.contains("results.db: "), "{msg}");
        let missing = StoreError::NoSuchSession {
            path: "x".into(),
            id: 1,
        };
        assert_eq!(store_error(missing).exit_code(), crate::errors::EXIT_INFRA);
    }

    #[test]
    fn an_unfinished_session_says_so() {
        let row = SessionRow {
            id: 3,
            kind: "compare".into(),
            key: "k".into(),
            args_json: "{}".into(),
            state_json: None,
            status: "running".into(),
            report_json: None,
            created_at: "2024-05-01T12:34:56Z".into(),
            finished_at: None,
        };
        let line = session_line(&row);
        assert!(line.summary.starts_with("unfinished"), "{}", line.summary);
        assert!(line.overall.is_none());
        let broken = SessionRow {
            finished_at: Some("2024-05-01T13:00:00Z".into()),
            report_json: Some("{\"not\": \"a report\"}".into()),
            ..row
        };
        assert!(session_line(&broken)
            .summary
            .starts_with("report not readable"));
    }
}
