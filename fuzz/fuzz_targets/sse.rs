//! The OpenAI backend's server-sent-events decoder on any bytes, split
//! anywhere: it never panics, and how the bytes are cut into network chunks
//! never changes what it decodes.
#![no_main]

use chimera::llm::sse::SseDecoder;
use libfuzzer_sys::fuzz_target;

fn decode(chunks: &[&[u8]]) -> Vec<String> {
    let mut decoder = SseDecoder::with_max_event(4096);
    let mut out: Vec<String> = Vec::new();
    for chunk in chunks {
        out.extend(decoder.push(chunk).into_iter().map(|r| format!("{r:?}")));
    }
    out.extend(decoder.finish().into_iter().map(|r| format!("{r:?}")));
    out
}

fuzz_target!(|input: (Vec<u8>, Vec<u16>)| {
    let (bytes, cuts) = input;
    let whole = decode(&[&bytes]);
    let split = decode(&chimera_fuzz::chunks(&bytes, &cuts));
    assert_eq!(split, whole, "chunking changed the result");
});
