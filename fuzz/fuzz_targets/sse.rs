//! The OpenAI backend's server-sent-events decoder on any bytes, split
//! anywhere: it never panics, and how the bytes are cut into network chunks
//! never changes what it decodes.
#![no_main]

use chimera::llm::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (bytes, cuts) = input;
    chimera_fuzz::assert_split_invariant(|| SseDecoder::with_max_event(4096), &bytes, &cuts);
});
