//! Shared helpers for integration tests.

pub mod fake_ollama;
pub mod fake_openai;
pub mod http;
pub mod support;
