//! Errors about a user's file: what is wrong, where (file:line:column, the
//! line and a caret), and what to do.

use std::fmt;
use std::path::{Path, PathBuf};

/// A position in a file, 1-based, and how many characters the token there
/// spans (0 when unknown), so a caret run can underline all of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: u64,
    pub column: u64,
    pub len: u64,
}

impl Pos {
    /// A position without a known token length.
    pub const fn at(line: u64, column: u64) -> Self {
        Self {
            line,
            column,
            len: 0,
        }
    }
}

impl From<serde_saphyr::Location> for Pos {
    fn from(l: serde_saphyr::Location) -> Self {
        Self {
            line: l.line(),
            column: l.column(),
            len: l.span().len(),
        }
    }
}

/// One problem in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub message: String,
    pub pos: Option<Pos>,
    pub help: Option<String>,
    /// Other places that explain the problem ("first defined here").
    pub notes: Vec<(Pos, String)>,
    /// Lines quoted from another file (a template's), printed as they are.
    pub excerpt: Option<String>,
}

impl Diagnostic {
    pub fn new(message: impl Into<String>, pos: impl Into<Option<Pos>>) -> Self {
        Self {
            message: message.into(),
            pos: pos.into(),
            help: None,
            notes: Vec::new(),
            excerpt: None,
        }
    }

    /// Quotes lines of another file under the position.
    #[must_use]
    pub fn excerpt(mut self, excerpt: impl Into<String>) -> Self {
        self.excerpt = Some(excerpt.into());
        self
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

    /// Points at another place that explains the problem.
    #[must_use]
    pub fn note(mut self, pos: Pos, text: impl Into<String>) -> Self {
        self.notes.push((pos, text.into()));
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

    /// `--> file:line:col`, the line, and a caret run under the token.
    fn quote(&self, f: &mut fmt::Formatter<'_>, pos: Pos) -> fmt::Result {
        writeln!(
            f,
            "  --> {}:{}:{}",
            self.path.display(),
            pos.line,
            pos.column
        )?;
        let Some(text) = usize::try_from(pos.line)
            .ok()
            .and_then(|n| self.source.lines().nth(n.saturating_sub(1)))
        else {
            return Ok(());
        };
        let width = pos.line.to_string().len();
        let col = usize::try_from(pos.column.max(1) - 1).unwrap_or(0);
        let chars: Vec<char> = text.chars().collect();
        let start = col.saturating_sub(MAX_QUOTE / 2).min(chars.len());
        let end = (start + MAX_QUOTE).min(chars.len());
        let quoted: String = chars[start..end].iter().collect();
        writeln!(f, "{:width$} |", "")?;
        writeln!(f, "{} | {}", pos.line, quoted.trim_end())?;
        // Under the whole token, but no further than its line.
        let len = usize::try_from(pos.len).unwrap_or(1).max(1);
        let carets = len.min(end.saturating_sub(col).max(1));
        writeln!(
            f,
            "{:width$} | {}{}",
            "",
            " ".repeat(col.saturating_sub(start)),
            "^".repeat(carets)
        )
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
                Some(pos) => self.quote(f, pos)?,
                None => writeln!(f, "  --> {}", self.path.display())?,
            }
            if let Some(excerpt) = &d.excerpt {
                for line in excerpt.lines() {
                    writeln!(f, "  {line}")?;
                }
            }
            for (pos, text) in &d.notes {
                writeln!(f, "  = note: {text}")?;
                self.quote(f, *pos)?;
            }
            if let Some(help) = &d.help {
                writeln!(f, "  = help: {help}")?;
            }
        }
        Ok(())
    }
}
