//! A workflow's `options:` read for llama.cpp, with Ollama's names and defaults.

use indexmap::IndexMap;
use serde_json::Value;

/// `num_ctx` when the workflow does not set it.
pub const DEFAULT_N_CTX: u32 = 2048;
/// `num_predict` when the workflow does not set it.
pub const DEFAULT_NUM_PREDICT: u32 = 256;
/// `num_batch` when the workflow does not set it (llama.cpp's default).
pub const DEFAULT_N_BATCH: u32 = 512;

/// Calls to one model decoded together when `CHIMERA_EMBEDDED_PARALLEL` is
/// unset (llama.cpp's server sizes its `--parallel` to 4 by default, too).
pub const DEFAULT_SLOTS: u32 = 4;
/// The most sequences a context is split into (llama.cpp's `LLAMA_MAX_SEQ`
/// is 256; more than a few dozen only wastes memory on a CPU).
pub const MAX_SLOTS: u32 = 64;

/// Options that mean something to a server but nothing in-process; they are
/// accepted and ignored (with a debug log).
const IGNORED: &[&str] = &[
    "num_gpu",
    "main_gpu",
    "use_mmap",
    "use_mlock",
    "numa",
    "low_vram",
    "num_keep",
];

/// How one generation runs.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOptions {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_threads: i32,
    /// Calls decoded together, each with a KV cache of `n_ctx`: a setting
    /// of the process (`CHIMERA_EMBEDDED_PARALLEL`), not of a workflow.
    pub slots: u32,
    /// The most new tokens; `None`: until the context is full.
    pub num_predict: Option<u32>,
    /// `0` (or less) samples greedily.
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub typical_p: f32,
    pub repeat_penalty: f32,
    /// `-1`: the whole context.
    pub repeat_last_n: i32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// `None`: a random seed.
    pub seed: Option<u32>,
    pub stop: Vec<String>,
}

impl Default for GenOptions {
    /// Ollama's defaults, except the thread count (all available cores here).
    fn default() -> Self {
        Self {
            n_ctx: DEFAULT_N_CTX,
            n_batch: DEFAULT_N_BATCH,
            n_threads: default_threads(),
            slots: DEFAULT_SLOTS,
            num_predict: Some(DEFAULT_NUM_PREDICT),
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            typical_p: 1.0,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            stop: Vec::new(),
        }
    }
}

fn default_threads() -> i32 {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .try_into()
        .unwrap_or(1)
}

/// An option with a value this backend cannot use: "`name` must be …".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadOption {
    pub name: String,
    pub expected: &'static str,
    pub value: String,
}

impl GenOptions {
    /// Reads `options`; unknown and meaningless options are ignored with a
    /// debug log (the workflow checker already rejects unknown names).
    ///
    /// # Errors
    /// When a known option has a value of the wrong type or range.
    pub fn from_options(options: &IndexMap<String, Value>) -> Result<Self, BadOption> {
        let mut o = Self::default();
        for (name, value) in options {
            let bad = |expected: &'static str| BadOption {
                name: name.clone(),
                expected,
                value: value.to_string(),
            };
            let positive = || {
                value
                    .as_u64()
                    .filter(|v| *v > 0)
                    .and_then(|v| u32::try_from(v).ok())
                    .ok_or_else(|| bad("a positive integer"))
            };
            let number = || {
                value
                    .as_f64()
                    .filter(|v| v.is_finite())
                    .map(|v| v as f32)
                    .ok_or_else(|| bad("a number"))
            };
            match name.as_str() {
                "num_ctx" => o.n_ctx = positive()?,
                "num_batch" => o.n_batch = positive()?,
                "num_thread" => {
                    o.n_threads =
                        i32::try_from(positive()?).map_err(|_| bad("a positive integer"))?;
                }
                "num_predict" => {
                    let n = value
                        .as_i64()
                        .ok_or_else(|| bad("an integer (-1: no limit)"))?;
                    o.num_predict = if n < 0 {
                        None
                    } else {
                        Some(u32::try_from(n).map_err(|_| bad("an integer (-1: no limit)"))?)
                    };
                }
                "temperature" => o.temperature = number()?,
                "top_k" => {
                    let k = value.as_i64().ok_or_else(|| bad("an integer"))?;
                    o.top_k = i32::try_from(k).map_err(|_| bad("an integer"))?;
                }
                "top_p" => o.top_p = number()?,
                "min_p" => o.min_p = number()?,
                "typical_p" => o.typical_p = number()?,
                "repeat_penalty" => o.repeat_penalty = number()?,
                "repeat_last_n" => {
                    let n = value
                        .as_i64()
                        .filter(|n| *n >= -1)
                        .ok_or_else(|| bad("an integer ≥ -1"))?;
                    o.repeat_last_n = i32::try_from(n).map_err(|_| bad("an integer ≥ -1"))?;
                }
                "presence_penalty" => o.presence_penalty = number()?,
                "frequency_penalty" => o.frequency_penalty = number()?,
                "seed" => {
                    let s = value.as_i64().ok_or_else(|| bad("an integer"))?;
                    // Ollama's -1 (any negative) is "random"; larger seeds wrap
                    // to llama.cpp's 32 bits.
                    o.seed = (s >= 0).then(|| (s as u64 & u64::from(u32::MAX)) as u32);
                }
                "stop" => {
                    o.stop = match value {
                        Value::String(s) => vec![s.clone()],
                        Value::Array(items) => items
                            .iter()
                            .map(|v| v.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()
                            .ok_or_else(|| bad("a string or a list of strings"))?,
                        _ => return Err(bad("a string or a list of strings")),
                    };
                    o.stop.retain(|s| !s.is_empty());
                }
                other if IGNORED.contains(&other) => {
                    tracing::debug!(
                        option = other,
                        "ignored: it means nothing to the embedded backend"
                    );
                }
                other => {
                    tracing::debug!(option = other, "ignored: unknown to the embedded backend")
                }
            }
        }
        Ok(o)
    }

    /// The generation budget: `num_predict`, or what is left of the context.
    pub fn budget(&self, prompt_tokens: usize) -> usize {
        let room = (self.n_ctx as usize).saturating_sub(prompt_tokens);
        self.num_predict.map_or(room, |n| (n as usize).min(room))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(pairs: &[(&str, Value)]) -> Result<GenOptions, BadOption> {
        GenOptions::from_options(
            &pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn defaults_follow_ollama() {
        let o = opts(&[]).expect("ok");
        assert_eq!(
            (o.n_ctx, o.num_predict, o.top_k, o.seed),
            (2048, Some(256), 40, None)
        );
        assert!(o.n_threads >= 1);
    }

    #[test]
    fn known_options_are_mapped() {
        let o = opts(&[
            ("num_ctx", json!(512)),
            ("num_predict", json!(-1)),
            ("temperature", json!(0)),
            ("seed", json!(1)),
            ("stop", json!("\n")),
            ("num_thread", json!(2)),
            ("num_gpu", json!(99)),
        ])
        .expect("ok");
        assert_eq!(
            (o.n_ctx, o.num_predict, o.temperature, o.seed, o.n_threads),
            (512, None, 0.0, Some(1), 2)
        );
        assert_eq!(o.stop, ["\n"]);
        assert_eq!(o.budget(500), 12);
        assert_eq!(opts(&[("seed", json!(-1))]).expect("ok").seed, None);
        assert_eq!(opts(&[("stop", json!(["a", ""]))]).expect("ok").stop, ["a"]);
    }

    #[test]
    fn ill_typed_options_are_refused() {
        let e = opts(&[("num_ctx", json!("big"))]).unwrap_err();
        assert_eq!(
            (e.name.as_str(), e.expected),
            ("num_ctx", "a positive integer")
        );
        assert!(opts(&[("stop", json!([1]))]).is_err());
        assert!(opts(&[("temperature", json!("hot"))]).is_err());
    }
}
