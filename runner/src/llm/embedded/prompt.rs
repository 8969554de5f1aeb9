//! What one call hands llama.cpp: the prompt text through the chat
//! template, its tokens cut to fit the context, and the sampling chain.

use super::engine::Job;
use super::options::GenOptions;
use crate::llm::Message;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;

/// The prompt: the messages through the model's chat template (or the
/// catalogue's override), falling back to ChatML.
pub(super) fn prompt_text(model: &LlamaModel, job: &Job) -> Result<String, String> {
    let chat: Result<Vec<LlamaChatMessage>, _> = job
        .messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
        .collect();
    let chat = chat.map_err(|_| {
        format!(
            "a message for model `{}` contains a NUL character, which llama.cpp cannot take; remove it from the prompt",
            job.name
        )
    })?;
    let template = match &job.chat_template {
        Some(t) => LlamaChatTemplate::new(t).map_err(|e| e.to_string()),
        None => model.chat_template(None).map_err(|e| e.to_string()),
    };
    let applied = template.and_then(|t| {
        model
            .apply_chat_template(&t, &chat, true)
            .map_err(|e| e.to_string())
    });
    match applied {
        Ok(prompt) => Ok(prompt),
        Err(e) => {
            tracing::debug!(model = %job.name, error = %e, "no usable chat template in the model; using ChatML");
            Ok(chatml(&job.messages))
        }
    }
}

fn chatml(messages: &[Message]) -> String {
    let mut out = String::new();
    for m in messages {
        out.push_str(&format!(
            "<|im_start|>{}\n{}<|im_end|>\n",
            m.role, m.content
        ));
    }
    out.push_str("<|im_start|>assistant\n");
    out
}

/// The last `keep` tokens, after the BOS token when the prompt starts with it.
pub(super) fn truncate_front(
    tokens: Vec<LlamaToken>,
    keep: usize,
    bos: LlamaToken,
) -> Vec<LlamaToken> {
    if tokens.len() <= keep {
        return tokens;
    }
    let lead = usize::from(keep > 1 && tokens[0] == bos);
    let mut out = tokens[..lead].to_vec();
    out.extend_from_slice(&tokens[tokens.len() - (keep - lead)..]);
    out
}

/// Ollama's sampling chain: penalties, top-k, typical, top-p, min-p,
/// temperature, then a seeded draw (or the most likely token at temperature 0).
pub(super) fn sampler(model: &LlamaModel, o: &GenOptions) -> LlamaSampler {
    let last_n = if o.repeat_last_n < 0 {
        i32::try_from(o.n_ctx).unwrap_or(i32::MAX)
    } else {
        o.repeat_last_n
    };
    let penalties = LlamaSampler::penalties(
        model.n_vocab(),
        last_n,
        o.repeat_penalty,
        o.frequency_penalty,
        o.presence_penalty,
    );
    if o.temperature <= 0.0 {
        return LlamaSampler::chain_simple([penalties, LlamaSampler::greedy()]);
    }
    let mut chain = vec![penalties];
    if o.top_k > 0 {
        chain.push(LlamaSampler::top_k(o.top_k));
    }
    if o.typical_p < 1.0 {
        chain.push(LlamaSampler::typical(o.typical_p, 1));
    }
    if o.top_p < 1.0 {
        chain.push(LlamaSampler::top_p(o.top_p, 1));
    }
    if o.min_p > 0.0 {
        chain.push(LlamaSampler::min_p(o.min_p, 1));
    }
    chain.push(LlamaSampler::temp(o.temperature));
    // llama.cpp draws a random seed for `LLAMA_DEFAULT_SEED` (u32::MAX).
    chain.push(LlamaSampler::dist(o.seed.unwrap_or(u32::MAX)));
    LlamaSampler::chain_simple(chain)
}
