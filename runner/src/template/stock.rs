//! The stock templates built into the binary, searched last as [`BUILTIN`].

use std::path::Path;

/// The search-path entry that stands for the templates built into chimera:
/// always last, so a workflow written anywhere can use the stock ones and
/// any directory before it can shadow them.
pub const BUILTIN: &str = "(built-in)";

/// The stock templates, built into the binary: (name, text).
pub const STOCK: &[(&str, &str)] = &[
    (
        "prompts/analyze.md.j2",
        include_str!("../../../templates/prompts/analyze.md.j2"),
    ),
    (
        "prompts/report.md.j2",
        include_str!("../../../templates/prompts/report.md.j2"),
    ),
    (
        "reports/agent-report.md.j2",
        include_str!("../../../templates/reports/agent-report.md.j2"),
    ),
    (
        "macros/benchmark.j2",
        include_str!("../../../templates/macros/benchmark.j2"),
    ),
    (
        "personas/data-collector-9000.md.j2",
        include_str!("../../../templates/personas/data-collector-9000.md.j2"),
    ),
    (
        "personas/insight-analyst.md.j2",
        include_str!("../../../templates/personas/insight-analyst.md.j2"),
    ),
];

/// Whether a search-path entry is [`BUILTIN`].
pub fn is_builtin(dir: &Path) -> bool {
    dir == Path::new(BUILTIN)
}
