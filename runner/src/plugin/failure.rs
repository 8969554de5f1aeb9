//! How a stage fails: the failure kinds a record keeps, and a wasmtime
//! error turned into one with the plugin's own words where it left any.

use super::MAX_OUTPUT_BYTES;
use super::write_limit::WriteLimitExceeded;
use std::time::Duration;

/// Why a stage failed. Serialized as `{"kind": "timed_out", "message": "…"}`.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StageFailure {
    #[error("{0}")]
    Failed(String),
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    #[error("the plugin crashed: {0}")]
    Trap(String),
    #[error("timed out after {} s", .0.as_secs_f64())]
    TimedOut(Duration),
    #[error("the plugin's output was refused: {0}")]
    InvalidOutput(String),
    #[error("interrupted")]
    Interrupted,
}

impl StageFailure {
    /// A stable snake_case name for records.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Failed(_) => "failed",
            Self::InvalidConfig(_) => "invalid_config",
            Self::Trap(_) => "trap",
            Self::TimedOut(_) => "timed_out",
            Self::InvalidOutput(_) => "invalid_output",
            Self::Interrupted => "interrupted",
        }
    }
}

/// Read back from a record (for `--resume`): the kind is kept where it
/// carries data-free meaning, the message always.
impl<'de> serde::Deserialize<'de> for StageFailure {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(serde::Deserialize)]
        struct Raw {
            kind: String,
            message: String,
        }
        let raw = Raw::deserialize(d)?;
        Ok(match raw.kind.as_str() {
            "interrupted" => Self::Interrupted,
            _ => Self::Failed(raw.message),
        })
    }
}

impl serde::Serialize for StageFailure {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut out = s.serialize_struct("StageFailure", 2)?;
        out.serialize_field("kind", self.kind())?;
        out.serialize_field("message", &self.to_string())?;
        out.end()
    }
}

/// Turns a wasmtime error into the stage's failure, keeping the plugin's own
/// words (a Rust panic message on stderr) where there are any.
pub(super) fn trap_failure(
    error: &wasmtime::Error,
    timeout: Duration,
    memory_limit: usize,
    stderr: &str,
) -> StageFailure {
    if let Some(over) = error.downcast_ref::<WriteLimitExceeded>() {
        return StageFailure::InvalidOutput(over.to_string());
    }
    let trap = error.downcast_ref::<wasmtime::Trap>();
    if let Some(wasmtime::Trap::Interrupt) = trap {
        return StageFailure::TimedOut(timeout);
    }
    let text = format!("{error:#}");
    if text.contains("forcing trap when growing memory") {
        return StageFailure::Trap(format!(
            "the plugin exceeded its memory limit of {} MiB; raise the stage's `memory:` if it needs more",
            memory_limit >> 20
        ));
    }
    if text.contains("fuel allocated for hostcalls has been exhausted") {
        return StageFailure::InvalidOutput(format!(
            "the plugin tried to pass more than the limit of {MAX_OUTPUT_BYTES} bytes to the host in one call"
        ));
    }
    let plugin_words = stderr
        .lines()
        .position(|l| l.contains("panicked at") || l.contains("memory allocation of"))
        .map(|i| {
            let lines: Vec<&str> = stderr.lines().skip(i).take(2).map(str::trim).collect();
            if lines[0].ends_with(':') && lines.len() > 1 {
                lines.join(" ")
            } else {
                lines[0].to_owned()
            }
        });
    let reason = match trap {
        Some(wasmtime::Trap::StackOverflow) => "stack overflow".to_owned(),
        Some(wasmtime::Trap::MemoryOutOfBounds) => {
            "out-of-bounds memory access (a stack overflow in the plugin, or a bug in it)"
                .to_owned()
        }
        Some(t) => t.to_string(),
        None => text,
    };
    match plugin_words {
        Some(words) => StageFailure::Trap(format!("{words} ({reason})")),
        None => StageFailure::Trap(reason),
    }
}
