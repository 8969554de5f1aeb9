//! Errors about a user's file: what is wrong, where (file:line:column, the
//! line and a caret), and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a file, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Self {
        Self {
            line: l.line(),
            column: l.column(),
        }
    }
}

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub pos: Option<Pos>,
    pub help: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, pos: impl Into<Option<Pos>>) -> Self {
        Self {
            message: message.into(),
            pos: pos.into(),
            help: None,
        }
    }

    #[must_use]
    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    #[must_use]
    pub fn help_opt(mut self, help: Option<String>) -> Self {
        self.help = help;
        self
    }
}

/// Every problem found in one workflow file, with the text to quote from.
#[derive(Debug, Clone)]
pub struct FileErrors {
    pub path: PathBuf,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileErrors {
    pub fn new(path: &Path, source: &str, diagnostics: Vec<Diagnostic>) -> Self {
        Self {
            path: path.to_path_buf(),
            source: source.to_owned(),
            diagnostics,
        }
    }
}

/// Lines longer than this are cut around the caret so an error stays on one screen.
const MAX_QUOTE: usize = 100;

impl fmt::Display for FileErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "error: {}", d.message)?;
            match d.pos {
                Some(pos) => {
                    writeln!(
                        f,
                        "  --> {}:{}:{}",
                        self.path.display(),
                        pos.line,
                        pos.column
                    )?;
                    if let Some(text) = usize::try_from(pos.line)
                        .ok()
                        .and_then(|n| self.source.lines().nth(n.saturating_sub(1)))
                    {
                        let width = pos.line.to_string().len();
                        let col = usize::try_from(pos.column.max(1) - 1).unwrap_or(0);
                        let chars: Vec<char> = text.chars().collect();
                        let start = col.saturating_sub(MAX_QUOTE / 2).min(chars.len());
                        let end = (start + MAX_QUOTE).min(chars.len());
                        let quoted: String = chars[start..end].iter().collect();
                        writeln!(f, "{:width$} |", "")?;
                        writeln!(f, "{} | {}", pos.line, quoted.trim_end())?;
                        writeln!(f, "{:width$} | {}^", "", " ".repeat(col - start))?;
                    }
                }
                None => writeln!(f, "  --> {}", self.path.display())?,
            }
            if let Some(help) = &d.help {
                writeln!(f, "  = help: {help}")?;
            }
        }
        Ok(())
    }
}
