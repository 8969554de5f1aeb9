//! What the stream-decoder targets share: cutting one input into network
//! chunks, and the property that doing so changes nothing.

use chimera::llm::ndjson::NdjsonDecoder;
use chimera::llm::sse::SseDecoder;

/// A stream decoder, its results rendered for comparison.
pub trait Decoder {
    fn push(&mut self, chunk: &[u8]) -> Vec<String>;
    fn finish(&mut self) -> Vec<String>;
}

impl Decoder for NdjsonDecoder {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        NdjsonDecoder::push(self, chunk)
            .iter()
            .map(|r| format!("{r:?}"))
            .collect()
    }
    fn finish(&mut self) -> Vec<String> {
        NdjsonDecoder::finish(self)
            .iter()
            .map(|r| format!("{r:?}"))
            .collect()
    }
}

impl Decoder for SseDecoder {
    fn push(&mut self, chunk: &[u8]) -> Vec<String> {
        SseDecoder::push(self, chunk)
            .iter()
            .map(|r| format!("{r:?}"))
            .collect()
    }
    fn finish(&mut self) -> Vec<String> {
        SseDecoder::finish(self)
            .iter()
            .map(|r| format!("{r:?}"))
            .collect()
    }
}

/// `bytes` cut at `cuts` (each taken modulo `bytes.len() + 1`, in order), so
/// a decoder sees the same stream as one chunk or as many.
pub fn chunks<'a>(bytes: &'a [u8], cuts: &[u16]) -> Vec<&'a [u8]> {
    let mut points: Vec<usize> = cuts
        .iter()
        .map(|c| usize::from(*c) % (bytes.len() + 1))
        .collect();
    points.sort_unstable();
    let mut chunks = Vec::with_capacity(points.len() + 1);
    let mut start = 0;
    for point in points {
        chunks.push(&bytes[start..point]);
        start = point;
    }
    chunks.push(&bytes[start..]);
    chunks
}

fn decode<D: Decoder>(mut decoder: D, chunks: &[&[u8]]) -> Vec<String> {
    let mut out: Vec<String> = chunks.iter().flat_map(|c| decoder.push(c)).collect();
    out.extend(decoder.finish());
    out
}

/// Decodes `bytes` whole and cut at `cuts` with fresh decoders from `make`;
/// panics (a fuzz finding) when the two differ.
pub fn assert_split_invariant<D: Decoder>(make: impl Fn() -> D, bytes: &[u8], cuts: &[u16]) {
    let whole = decode(make(), &[bytes]);
    let split = decode(make(), &chunks(bytes, cuts));
    assert_eq!(split, whole, "chunking changed the result");
}
