//! Newline-delimited JSON framing over a byte stream.
//!
//! Network chunks do not respect lines: a line may be split across chunks,
//! several lines may share one, and a chunk may end inside a UTF-8 character.
//! The decoder buffers bytes and decodes whole lines only, so its output does
//! not depend on how the input was split (a property worth fuzzing).

use serde_json::Value;

/// Lines longer than this are refused, so a broken server cannot make the
/// client buffer without bound.
pub const DEFAULT_MAX_LINE: usize = 16 * 1024 * 1024;

/// How many bytes of a bad line an error quotes.
const SNIPPET: usize = 120;

/// A line that is not one JSON value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NdjsonError {
    /// The line is not JSON (or not UTF-8).
    #[error("line {line} is not JSON ({reason}): {snippet}")]
    Json {
        /// 1-based line number in the stream.
        line: usize,
        reason: String,
        /// The start of the line, lossily decoded.
        snippet: String,
    },
    /// The line exceeds the decoder's limit.
    #[error("line {line} is longer than {max} bytes")]
    TooLong { line: usize, max: usize },
}

/// Splits a byte stream into JSON values, one per `\n`-terminated line.
///
/// Blank lines are skipped and a trailing `\r` is ignored. Feed chunks with
/// [`push`](Self::push), then call [`finish`](Self::finish) for a last line
/// without a newline.
#[derive(Debug)]
pub struct NdjsonDecoder {
    buf: Vec<u8>,
    max_line: usize,
    /// Lines ended so far (for error messages).
    lines: usize,
    /// The current line was already reported as too long; drop it.
    discarding: bool,
}

impl Default for NdjsonDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl NdjsonDecoder {
    /// A decoder with the [`DEFAULT_MAX_LINE`] limit.
    pub fn new() -> Self {
        Self::with_max_line(DEFAULT_MAX_LINE)
    }

    /// A decoder refusing lines longer than `max_line` bytes.
    pub fn with_max_line(max_line: usize) -> Self {
        Self {
            buf: Vec::new(),
            max_line,
            lines: 0,
            discarding: false,
        }
    }

    /// Takes the next chunk; returns the values of the lines it completed, in
    /// order, with an error in place of each bad line.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<Value, NdjsonError>> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
            let (line, tail) = rest.split_at(pos);
            rest = &tail[1..];
            self.lines += 1;
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let item = if self.buf.is_empty() {
                self.decode(line)
            } else {
                self.buf.extend_from_slice(line);
                let whole = std::mem::take(&mut self.buf);
                self.decode(&whole)
            };
            out.extend(item);
        }
        if !self.discarding {
            self.buf.extend_from_slice(rest);
            if self.buf.len() > self.max_line {
                self.buf = Vec::new();
                self.discarding = true;
                out.push(Err(NdjsonError::TooLong {
                    line: self.lines + 1,
                    max: self.max_line,
                }));
            }
        }
        out
    }

    /// Ends the stream: decodes a last line that had no newline.
    pub fn finish(&mut self) -> Option<Result<Value, NdjsonError>> {
        let rest = std::mem::take(&mut self.buf);
        if std::mem::take(&mut self.discarding) {
            return None;
        }
        self.lines += 1;
        self.decode(&rest)
    }

    /// Whether bytes of an unfinished line are waiting.
    pub fn has_partial_line(&self) -> bool {
        self.buf.iter().any(|b| !b.is_ascii_whitespace())
    }

    fn decode(&self, line: &[u8]) -> Option<Result<Value, NdjsonError>> {
        // Checked before anything is stripped, as `push` checks partial lines.
        if line.len() > self.max_line {
            return Some(Err(NdjsonError::TooLong {
                line: self.lines,
                max: self.max_line,
            }));
        }
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        Some(serde_json::from_slice(line).map_err(|e| NdjsonError::Json {
            line: self.lines,
            reason: e.to_string(),
            snippet: String::from_utf8_lossy(&line[..line.len().min(SNIPPET)]).into_owned(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Feeds `input` in pieces of `size` bytes and collects everything.
    fn decode_in_pieces(input: &[u8], size: usize) -> Vec<Result<Value, NdjsonError>> {
        let mut d = NdjsonDecoder::new();
        let mut out = Vec::new();
        for piece in input.chunks(size) {
            out.extend(d.push(piece));
        }
        out.extend(d.finish());
        out
    }

    fn values(results: Vec<Result<Value, NdjsonError>>) -> Vec<Value> {
        results
            .into_iter()
            .map(|r| r.expect("valid line"))
            .collect()
    }

    #[test]
    fn a_line_split_across_chunks_is_decoded_once_whole() {
        let mut d = NdjsonDecoder::new();
        assert!(d.push(br#"{"a":"#).is_empty());
        assert!(d.has_partial_line());
        assert!(d.push(b"1").is_empty());
        let out = values(d.push(b"}\n"));
        assert_eq!(out, vec![json!({"a": 1})]);
        assert!(!d.has_partial_line());
        assert!(d.finish().is_none());
    }

    #[test]
    fn many_lines_in_one_chunk_come_out_in_order() {
        let mut d = NdjsonDecoder::new();
        let out = values(d.push(b"{\"n\":1}\n{\"n\":2}\r\n\n{\"n\":3}\n{\"n\":"));
        assert_eq!(out, vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]);
        assert_eq!(values(d.push(b"4}\n")), vec![json!({"n": 4})]);
    }

    #[test]
    fn a_utf8_character_split_across_chunks_survives_every_split() {
        let line = "{\"message\":{\"content\":\"héllo wörld 🚀\"},\"done\":false}\n";
        let input = line.repeat(3);
        for size in 1..=input.len() {
            let out = values(decode_in_pieces(input.as_bytes(), size));
            assert_eq!(out.len(), 3, "piece size {size}");
            for v in out {
                assert_eq!(
                    v["message"]["content"], "héllo wörld 🚀",
                    "piece size {size}"
                );
            }
        }
    }

    #[test]
    fn a_trailing_line_without_newline_is_decoded_by_finish() {
        let mut d = NdjsonDecoder::new();
        assert_eq!(
            values(d.push(b"{\"a\":1}\n{\"done\":true}")),
            vec![json!({"a": 1})]
        );
        let last = d.finish().expect("a last line").expect("valid");
        assert_eq!(last, json!({"done": true}));
        assert!(d.finish().is_none());
    }

    #[test]
    fn a_garbage_line_is_an_error_and_the_next_line_still_decodes() {
        let out = decode_in_pieces(b"{\"a\":1}\nnot json at all\n{\"b\":2}\n", 5);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0], Ok(json!({"a": 1})));
        match &out[1] {
            Err(NdjsonError::Json { line, snippet, .. }) => {
                assert_eq!(*line, 2);
                assert_eq!(snippet, "not json at all");
            }
            other => panic!("expected a JSON error, got {other:?}"),
        }
        assert_eq!(out[2], Ok(json!({"b": 2})));
    }

    #[test]
    fn invalid_utf8_in_a_line_is_an_error_not_a_panic() {
        let out = decode_in_pieces(b"{\"a\":\"\xff\xfe\"}\n", 1);
        assert!(matches!(
            out.as_slice(),
            [Err(NdjsonError::Json { line: 1, .. })]
        ));
    }

    #[test]
    fn an_overlong_line_is_reported_once_whatever_the_split() {
        let input = b"{\"a\":1}\n{\"long\":\"0123456789abcdef\"}\n{\"b\":2}\n";
        for size in 1..=input.len() {
            let mut d = NdjsonDecoder::with_max_line(16);
            let mut out = Vec::new();
            for piece in input.chunks(size) {
                out.extend(d.push(piece));
            }
            out.extend(d.finish());
            assert_eq!(
                out,
                vec![
                    Ok(json!({"a": 1})),
                    Err(NdjsonError::TooLong { line: 2, max: 16 }),
                    Ok(json!({"b": 2})),
                ],
                "piece size {size}"
            );
        }
    }

    #[test]
    fn output_does_not_depend_on_how_the_input_was_split() {
        let input = "{\"x\":\"ä\"}\n\n{\"y\":[1,2,3]}\r\nbad\n{\"z\":null}";
        let whole = decode_in_pieces(input.as_bytes(), input.len());
        assert_eq!(whole.len(), 4);
        for size in 1..input.len() {
            assert_eq!(
                decode_in_pieces(input.as_bytes(), size),
                whole,
                "piece size {size}"
            );
        }
    }
}
