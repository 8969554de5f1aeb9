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
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) % (bytes.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    assert_eq!(decode(&chunks), whole, "chunking changed the result");
});
