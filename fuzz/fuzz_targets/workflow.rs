//! The workflow loader on any text: parsing and every check must end in a
//! workflow or located diagnostics, and rendering those (quotes, carets,
//! long-line cuts) must not panic either.
#![no_main]

use chimera::workflow::{FileErrors, Workflow};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let path = Path::new("fuzz/workflow.yaml");
    if let Err(diagnostics) = Workflow::from_source(path, source) {
        assert!(!diagnostics.is_empty(), "a refused workflow says why");
        let shown = FileErrors::new(path, source, diagnostics).to_string();
        assert!(shown.contains("error"), "{shown}");
    }
});
