//! Reports of a comparison: terminal, markdown, JSON, JUnit XML and self-contained HTML.
//! (Being written; the signature below is the contract.)

use crate::compare::model::CompareReport;

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
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("render the {format} report: {why}")]
    Render { format: &'static str, why: String },
}

/// Renders `report` in `format`.
pub fn render(report: &CompareReport, format: ReportFormat) -> Result<String, ReportError> {
    let _ = (report, format);
    Err(ReportError::Render {
        format: "any",
        why: "not written yet".into(),
    })
}
