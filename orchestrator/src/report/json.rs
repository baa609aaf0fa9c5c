//! The JSON report: the comparison model exactly as serde writes it, with its format version,
//! for scripts and for `lab results`.

use super::{Exporter, ReportError};
use crate::compare::model::CompareReport;

/// Pretty-printed JSON of the whole [`CompareReport`].
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonExporter;

impl Exporter for JsonExporter {
    fn render(&self, report: &CompareReport) -> Result<String, ReportError> {
        let mut text = serde_json::to_string_pretty(report).map_err(|e| ReportError::Render {
            format: "json",
            why: e.to_string(),
        })?;
        text.push('\n');
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trips() {
        let report = super::super::sample::small_report();
        let text = JsonExporter.render(&report).expect("renders");
        let back: CompareReport = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, report);
        assert!(text.contains("\"format_version\": 2"));
    }
}
