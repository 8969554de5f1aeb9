//! What the stream-decoder targets share: cutting one input into network chunks.

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
