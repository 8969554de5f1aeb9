//! The plugins compiled into the `chimera` binary (see `runner/build.rs`).

/// A plugin embedded in the binary.
#[derive(Debug)]
pub struct Builtin {
    /// The name workflows use in `plugin:`.
    pub name: &'static str,
    /// The component's bytes.
    pub wasm: &'static [u8],
    /// SHA-256 of `wasm`, computed at build time so start-up does not hash.
    pub sha256: &'static str,
}

include!(concat!(env!("OUT_DIR"), "/builtins.rs"));

/// All built-in plugins.
pub fn builtins() -> &'static [Builtin] {
    BUILTINS
}
