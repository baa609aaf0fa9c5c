//! Reports of a comparison: the terminal table, markdown for a cover letter or an LKML reply,
//! JSON, JUnit XML for CI, and one self-contained HTML file with inline SVG plots.
//!
//! One exporter per format, as hyperfine has one per format: each turns a
//! [`CompareReport`] into text and does nothing else, so a stored comparison re-renders the
//! same way every time and every exporter is tested without a VM. The figures and verdict
//! sentences all formats share live in `figures`, so no two reports word a verdict or round
//! a number differently. [`write`] is the one function here that touches the disk, and
//! [`write_folder`] calls it for the copies every comparison keeps in its own folder.

mod escape;
mod figures;
pub(crate) use figures::duration as human_duration;
mod html;
mod json;
mod junit;
mod markdown;
mod plots;
#[cfg(test)]
pub(crate) mod sample;
mod terminal;

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::compare::model::CompareReport;

pub use html::HtmlExporter;
pub use json::JsonExporter;
pub use junit::JunitExporter;
pub use markdown::MarkdownExporter;
pub use terminal::TerminalExporter;

/// The formats a report can be rendered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReportFormat {
    Terminal { color: bool },
    Markdown,
    Json,
    Junit,
    Html,
}

impl ReportFormat {
    /// Parses `terminal`, `markdown`/`md`, `json`, `junit`, `html`.
    pub fn parse(s: &str, color: bool) -> Option<ReportFormat> {
        match s {
            "terminal" | "text" => Some(ReportFormat::Terminal { color }),
            "markdown" | "md" => Some(ReportFormat::Markdown),
            "json" => Some(ReportFormat::Json),
            "junit" | "xml" => Some(ReportFormat::Junit),
            "html" => Some(ReportFormat::Html),
            _ => None,
        }
    }

    /// The name users type for this format.
    pub fn name(self) -> &'static str {
        match self {
            ReportFormat::Terminal { .. } => "terminal",
            ReportFormat::Markdown => "markdown",
            ReportFormat::Json => "json",
            ReportFormat::Junit => "junit",
            ReportFormat::Html => "html",
        }
    }

    /// The exporter that renders this format.
    pub fn exporter(self) -> Box<dyn Exporter> {
        match self {
            ReportFormat::Terminal { color } => Box::new(TerminalExporter { color }),
            ReportFormat::Markdown => Box::new(MarkdownExporter),
            ReportFormat::Json => Box::new(JsonExporter),
            ReportFormat::Junit => Box::new(JunitExporter),
            ReportFormat::Html => Box::new(HtmlExporter),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("render the {format} report: {why}")]
    Render { format: &'static str, why: String },
    #[error(
        "write the {format} report to {}: check that its folder exists and is writable",
        path.display()
    )]
    Write {
        format: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Renders a comparison in one format.
pub trait Exporter {
    /// The whole report as text, ready to print or to write to a file.
    fn render(&self, report: &CompareReport) -> Result<String, ReportError>;
}

/// Renders `report` in `format`.
pub fn render(report: &CompareReport, format: ReportFormat) -> Result<String, ReportError> {
    format.exporter().render(report)
}

/// Renders `report` in `format` and writes it to `path` atomically: into a temporary file in
/// the same folder, then renamed over `path`, so a reader never sees half a report and an
/// older report survives a failed render.
pub fn write(report: &CompareReport, format: ReportFormat, path: &Path) -> Result<(), ReportError> {
    let text = render(report, format)?;
    let fail = |source| ReportError::Write {
        format: format.name(),
        path: path.to_owned(),
        source,
    };
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".lab-report-")
        .tempfile_in(dir)
        .map_err(fail)?;
    tmp.write_all(text.as_bytes()).map_err(fail)?;
    tmp.as_file().sync_all().map_err(fail)?;
    // Temporary files are private (0600); a report is meant to be read and shared.
    {
        use std::os::unix::fs::PermissionsExt as _;
        let perms = std::fs::Permissions::from_mode(0o644);
        tmp.as_file().set_permissions(perms).map_err(fail)?;
    }
    tmp.persist(path).map_err(|e| fail(e.error))?;
    Ok(())
}

/// Writes `report.json`, `report.md` and `report.html` into `dir`, the comparison's folder,
/// where the user is told the reports are. Returns what could not be written, for the verb to
/// say: the comparison and its stored record are whole without these copies, so no failure
/// here ends it.
pub fn write_folder(report: &CompareReport, dir: &Path) -> Vec<ReportError> {
    // A folder that cannot be created shows up below as three failed writes, each naming it.
    let _ = std::fs::create_dir_all(dir);
    [
        (ReportFormat::Json, "report.json"),
        (ReportFormat::Markdown, "report.md"),
        (ReportFormat::Html, "report.html"),
    ]
    .into_iter()
    .filter_map(|(format, name)| write(report, format, &dir.join(name)).err())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_format_name_parses_back() {
        for f in [
            ReportFormat::Terminal { color: false },
            ReportFormat::Markdown,
            ReportFormat::Json,
            ReportFormat::Junit,
            ReportFormat::Html,
        ] {
            assert_eq!(ReportFormat::parse(f.name(), false), Some(f));
        }
        assert_eq!(ReportFormat::parse("pdf", false), None);
    }

    #[test]
    fn every_format_renders_the_sample() {
        let report = sample::small_report();
        for f in ["terminal", "markdown", "json", "junit", "html"] {
            let format = ReportFormat::parse(f, true).expect("known format");
            let text = render(&report, format).expect("renders");
            assert!(text.contains("futex_wake_race"), "{f} names the test");
        }
    }

    /// Every exporter's output of the sample, byte for byte: a refactor that changes a report
    /// shows up here (`cargo insta review`, or `INSTA_UPDATE=always` to accept on purpose).
    #[test]
    fn every_format_matches_its_snapshot() {
        let report = sample::small_report();
        for f in ["terminal", "markdown", "json", "junit", "html"] {
            let format = ReportFormat::parse(f, false).expect("known format");
            let text = render(&report, format).expect("renders");
            insta::assert_snapshot!(format!("report_{f}"), text);
        }
    }

    #[test]
    fn write_replaces_the_file_atomically() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("report.json");
        std::fs::write(&path, "old").expect("seed file");
        let report = sample::small_report();
        write(&report, ReportFormat::Json, &path).expect("writes");
        let text = std::fs::read_to_string(&path).expect("reads back");
        let back: CompareReport = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(back, report);
        let leftovers = std::fs::read_dir(dir.path()).expect("lists").count();
        assert_eq!(leftovers, 1, "no temporary file is left behind");
    }

    #[test]
    fn write_says_where_it_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("missing").join("report.html");
        let err = write(&sample::small_report(), ReportFormat::Markdown, &path)
            .expect_err("no such folder");
        let msg = err.to_string();
        assert!(msg.contains("missing/report.html"), "{msg}");
        assert!(msg.starts_with("write the markdown report"), "{msg}");
    }

    #[test]
    fn the_folder_gets_three_copies_or_says_which_failed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let report = sample::small_report();
        assert!(write_folder(&report, &dir.path().join("session")).is_empty());
        for name in ["report.json", "report.md", "report.html"] {
            assert!(dir.path().join("session").join(name).is_file(), "{name}");
        }
        let file = dir.path().join("a-file");
        std::fs::write(&file, "").expect("seed file");
        assert_eq!(write_folder(&report, &file.join("session")).len(), 3);
    }
}
