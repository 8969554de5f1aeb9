//! Ollama's NDJSON stream decoder on any bytes, split anywhere: it never
//! panics, and how the bytes are cut into network chunks never changes what
//! it decodes.
#![no_main]

use chimera::llm::ndjson::NdjsonDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (bytes, cuts) = input;
    chimera_fuzz::assert_split_invariant(|| NdjsonDecoder::with_max_line(4096), &bytes, &cuts);
});
