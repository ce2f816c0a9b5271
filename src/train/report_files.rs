//! Writes a run's report files: report.json, the PNG plots and report.md (embedding the plots that could be
//! drawn). Must not depend on front-ends.

use std::path::Path;

use super::checkpoint::write_atomic;
use super::report::RunReport;
use crate::error::Result;

/// report.json, the PNG plots and report.md, each atomically. Plots that cannot be drawn are left out and
/// report.md says why; that does not stop the run.
pub fn write(report: &RunReport, dir: &Path) -> Result<()> {
    write_atomic(&dir.join("report.json"), serde_json::to_string_pretty(report)?.as_bytes())?;
    let md = match super::plots::write_all(report, dir) {
        Ok(plots) => report.markdown_with(&plots),
        Err(e) => format!(
            "{}\n_Plots not drawn: {}_\n",
            report.markdown_with(&[]),
            crate::error::format_error(&e).replace('\n', " ")
        ),
    };
    write_atomic(&dir.join("report.md"), md.as_bytes())
}
