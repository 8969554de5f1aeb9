//! Server-sent events framing over a byte stream (the WHATWG `text/event-stream`
//! format, as OpenAI-compatible servers stream completions).
//!
//! Network chunks do not respect events: an event may be split across chunks
//! (even inside a UTF-8 character, or between the `\r` and `\n` of a line
//! end), several events may share one. The decoder buffers bytes and
//! interprets whole lines only, so its output does not depend on how the
//! input was split (a property worth fuzzing).

/// Events (and lines) longer than this are refused, so a broken server cannot
/// make the client buffer without bound.
pub const DEFAULT_MAX_EVENT: usize = 16 * 1024 * 1024;

const BOM: &[u8] = "\u{feff}".as_bytes();

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field; `None` for the default type, `message`.
    pub event: Option<String>,
    /// The `data:` lines of the event, joined with `\n`.
    pub data: String,
}

/// An event the decoder refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line, or the data of the event, exceeds the decoder's limit; the
    /// event is dropped.
    #[error("the event at line {line} is longer than {max} bytes")]
    TooLong {
        /// 1-based line number in the stream where the limit was crossed.
        line: usize,
        max: usize,
    },
}

/// Splits a byte stream into server-sent events.
///
/// Lines end with `\r\n`, `\n` or `\r`; a blank line dispatches the event.
/// Comment lines (`:` first) are skipped, `data:` lines accumulate, `event:`
/// sets the type, other fields (`id:`, `retry:`) are ignored. Text is decoded
/// as UTF-8, invalid bytes becoming U+FFFD, as the format prescribes. Feed
/// chunks with [`push`](Self::push), then call [`finish`](Self::finish).
#[derive(Debug)]
pub struct SseDecoder {
    /// The unfinished line.
    buf: Vec<u8>,
    max: usize,
    /// Lines ended so far (for error messages).
    lines: usize,
    /// The last chunk ended with `\r`: a `\n` starting the next one belongs to
    /// the same line end.
    after_cr: bool,
    /// Data lines of the current event, each followed by `\n`.
    data: String,
    event: Option<String>,
    /// The current line was already reported as too long; drop the rest.
    discarding_line: bool,
    /// The current event was already reported as too long; drop it up to the
    /// blank line that ends it.
    discarding_event: bool,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder with the [`DEFAULT_MAX_EVENT`] limit.
    pub fn new() -> Self {
        Self::with_max_event(DEFAULT_MAX_EVENT)
    }

    /// A decoder refusing lines, and events' data, longer than `max` bytes.
    pub fn with_max_event(max: usize) -> Self {
        Self {
            buf: Vec::new(),
            max,
            lines: 0,
            after_cr: false,
            data: String::new(),
            event: None,
            discarding_line: false,
            discarding_event: false,
        }
    }

    /// Takes the next chunk; returns the events it completed, in order, with
    /// an error in place of each refused event.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<Result<SseEvent, SseError>> {
        let mut out = Vec::new();
        let mut rest = chunk;
        if self.after_cr && !rest.is_empty() {
            self.after_cr = false;
            if rest[0] == b'\n' {
                rest = &rest[1..];
            }
        }
        while let Some(pos) = rest.iter().position(|&b| b == b'\n' || b == b'\r') {
            let (line, tail) = rest.split_at(pos);
            rest = &tail[1..];
            if tail[0] == b'\r' {
                match rest.first() {
                    Some(b'\n') => rest = &rest[1..],
                    Some(_) => {}
                    None => self.after_cr = true,
                }
            }
            self.end_line(line, &mut out);
        }
        if !self.discarding_line {
            self.buf.extend_from_slice(rest);
            if self.buf.len() > self.max {
                self.buf = Vec::new();
                self.discarding_line = true;
                self.refuse(self.lines + 1, &mut out);
            }
        }
        out
    }

    /// Ends the stream, and hands over the event it ended in, if any.
    ///
    /// A browser drops an event the stream ends inside; this decoder hands it
    /// over (with an unterminated last line), so a server that closes right
    /// after its last `data:` line loses nothing, and the caller judges
    /// whether a cut event is whole. The decoder is then reset.
    pub fn finish(&mut self) -> Vec<Result<SseEvent, SseError>> {
        let mut out = Vec::new();
        let line = std::mem::take(&mut self.buf);
        if !self.discarding_line && !line.is_empty() {
            self.end_line(&line, &mut out);
        }
        self.end_line(b"", &mut out);
        *self = Self::with_max_event(self.max);
        out
    }

    /// Whether an event has started and not ended yet.
    pub fn has_partial_event(&self) -> bool {
        !self.buf.is_empty() || !self.data.is_empty() || self.discarding_event
    }

    fn end_line(&mut self, line: &[u8], out: &mut Vec<Result<SseEvent, SseError>>) {
        self.lines += 1;
        if std::mem::take(&mut self.discarding_line) {
            return;
        }
        let whole;
        let line = if self.buf.is_empty() {
            line
        } else {
            self.buf.extend_from_slice(line);
            whole = std::mem::take(&mut self.buf);
            &whole
        };
        if line.len() > self.max {
            self.refuse(self.lines, out);
            return;
        }
        let line = if self.lines == 1 {
            line.strip_prefix(BOM).unwrap_or(line)
        } else {
            line
        };
        if line.is_empty() {
            self.dispatch(out);
            return;
        }
        if self.discarding_event || line[0] == b':' {
            return;
        }
        let line = String::from_utf8_lossy(line);
        let (field, value) = match line.split_once(':') {
            Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
            None => (&*line, ""),
        };
        match field {
            "data" => {
                self.data.push_str(value);
                self.data.push('\n');
                if self.data.len() > self.max {
                    self.refuse(self.lines, out);
                }
            }
            "event" => self.event = Some(value.to_owned()).filter(|e| !e.is_empty()),
            _ => {}
        }
    }

    /// A blank line: hands over the event, if it has data.
    fn dispatch(&mut self, out: &mut Vec<Result<SseEvent, SseError>>) {
        let mut data = std::mem::take(&mut self.data);
        let event = self.event.take();
        if std::mem::take(&mut self.discarding_event) || data.is_empty() {
            return;
        }
        data.pop();
        out.push(Ok(SseEvent { event, data }));
    }

    /// Drops the current event, reporting it once.
    fn refuse(&mut self, line: usize, out: &mut Vec<Result<SseEvent, SseError>>) {
        self.data = String::new();
        if !std::mem::replace(&mut self.discarding_event, true) {
            out.push(Err(SseError::TooLong {
                line,
                max: self.max,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Out = Vec<Result<SseEvent, SseError>>;

    fn ev(data: &str) -> Result<SseEvent, SseError> {
        Ok(SseEvent {
            event: None,
            data: data.to_owned(),
        })
    }

    fn decode_with(mut d: SseDecoder, pieces: &[&[u8]]) -> Out {
        let mut out = Vec::new();
        for piece in pieces {
            out.extend(d.push(piece));
        }
        out.extend(d.finish());
        out
    }

    fn decode(input: &[u8]) -> Out {
        decode_with(SseDecoder::new(), &[input])
    }

    /// Decodes `input` cut in pieces of every size, and cut at every one and
    /// every two points; all must give the same output as the whole input.
    fn assert_split_invariant(input: &[u8], make: impl Fn() -> SseDecoder) -> Out {
        let whole = decode_with(make(), &[input]);
        for size in 1..input.len() {
            let pieces: Vec<&[u8]> = input.chunks(size).collect();
            assert_eq!(decode_with(make(), &pieces), whole, "piece size {size}");
        }
        for i in 0..=input.len() {
            let (a, b) = input.split_at(i);
            assert_eq!(decode_with(make(), &[a, b]), whole, "cut at {i}");
            if input.len() <= 200 {
                for j in i..=input.len() {
                    let pieces = [&input[..i], &input[i..j], &input[j..]];
                    assert_eq!(decode_with(make(), &pieces), whole, "cut at {i}, {j}");
                }
            }
        }
        whole
    }

    #[test]
    fn an_event_split_across_chunks_is_dispatched_once_whole() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"da").is_empty());
        assert!(d.push(b"ta: {\"a\":").is_empty());
        assert!(d.has_partial_event());
        assert!(d.push(b"1}\n").is_empty());
        assert_eq!(d.push(b"\n"), vec![ev("{\"a\":1}")]);
        assert!(!d.has_partial_event());
        assert!(d.finish().is_empty());
    }

    #[test]
    fn several_events_in_one_chunk_come_out_in_order() {
        let out = decode(b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n");
        assert_eq!(out, vec![ev("1"), ev("2"), ev("[DONE]")]);
    }

    #[test]
    fn crlf_lf_and_cr_line_ends_are_all_line_ends() {
        let out = assert_split_invariant(
            b"data: a\r\n\r\ndata: b\n\ndata: c\r\rdata: d\r\n\ndata: e\n\r\n",
            SseDecoder::new,
        );
        assert_eq!(out, vec![ev("a"), ev("b"), ev("c"), ev("d"), ev("e")]);
    }

    #[test]
    fn a_cr_at_the_end_of_a_chunk_and_a_lf_at_the_start_of_the_next_are_one_line_end() {
        let mut d = SseDecoder::new();
        assert!(d.push(b"data: x\r").is_empty());
        // Were the `\n` a second line end, it would dispatch the event here.
        assert!(d.push(b"\n").is_empty());
        assert_eq!(d.push(b"\r\n"), vec![ev("x")]);
    }

    #[test]
    fn comments_are_skipped() {
        let out = decode(b": keep-alive\n\n:\ndata: x\n: inside\n\n: OPENROUTER PROCESSING\n\n");
        assert_eq!(out, vec![ev("x")]);
    }

    #[test]
    fn multi_line_data_is_joined_with_newlines() {
        let out = decode(b"data: first\ndata:second\ndata:  third\ndata\n\n");
        assert_eq!(out, vec![ev("first\nsecond\n third\n")]);
    }

    #[test]
    fn the_event_type_is_kept_and_other_fields_are_ignored() {
        let out = decode(b"event: error\nid: 7\nretry: 1000\ndata: {\"e\":1}\n\ndata: x\n\n");
        assert_eq!(
            out,
            vec![
                Ok(SseEvent {
                    event: Some("error".into()),
                    data: "{\"e\":1}".into()
                }),
                ev("x"),
            ]
        );
    }

    #[test]
    fn a_blank_line_without_data_dispatches_nothing() {
        assert_eq!(decode(b"\n\nevent: ping\n\n\r\n"), vec![]);
        // An empty `data:` line is data: an event with empty text.
        assert_eq!(decode(b"data:\n\n"), vec![ev("")]);
    }

    #[test]
    fn a_leading_byte_order_mark_is_skipped() {
        let input = "\u{feff}data: x\n\n";
        assert_eq!(
            assert_split_invariant(input.as_bytes(), SseDecoder::new),
            vec![ev("x")]
        );
    }

    #[test]
    fn finish_hands_over_an_event_the_stream_ended_inside() {
        assert_eq!(
            decode(b"data: 1\n\ndata: [DONE]\n"),
            vec![ev("1"), ev("[DONE]")]
        );
        assert_eq!(decode(b"data: 1\n\ndata: [DO"), vec![ev("1"), ev("[DO")]);
        assert_eq!(decode(b"data: 1\n\nevent: x\n"), vec![ev("1")]);
    }

    #[test]
    fn a_utf8_character_split_across_chunks_survives_every_split() {
        let event = "data: {\"choices\":[{\"delta\":{\"content\":\"héllo wörld 🚀\"}}]}\n\n";
        let out = assert_split_invariant(event.repeat(2).as_bytes(), SseDecoder::new);
        let data = &event["data: ".len()..event.len() - 2];
        assert_eq!(out, vec![ev(data), ev(data)]);
    }

    #[test]
    fn invalid_utf8_becomes_replacement_characters_not_a_panic() {
        assert_eq!(
            decode(b"data: \xff\xfeok\n\n"),
            vec![ev("\u{fffd}\u{fffd}ok")]
        );
    }

    #[test]
    fn an_overlong_event_is_reported_once_whatever_the_split() {
        let input = b"data: a\n\ndata: 0123456789abcdef\ndata: more\n\ndata: b\n\n";
        let out = assert_split_invariant(input, || SseDecoder::with_max_event(16));
        assert_eq!(
            out,
            vec![
                ev("a"),
                Err(SseError::TooLong { line: 3, max: 16 }),
                ev("b")
            ]
        );
    }

    #[test]
    fn data_lines_that_together_exceed_the_limit_drop_the_event() {
        // Each line fits in 9 bytes; the third brings the data to 12.
        let input = b"data: 012\ndata: 012\ndata: 012\n\ndata: b\n\n";
        let out = assert_split_invariant(input, || SseDecoder::with_max_event(9));
        assert_eq!(
            out,
            vec![Err(SseError::TooLong { line: 3, max: 9 }), ev("b")]
        );
    }

    #[test]
    fn output_does_not_depend_on_how_the_input_was_split() {
        let input = "\u{feff}: hi\r\ndata: {\"x\":\"ä\"}\r\n\r\nevent: e\rdata: 1\rdata: 2\r\r\
                     data: [DONE]\n\ndata: tail ö";
        let out = assert_split_invariant(input.as_bytes(), SseDecoder::new);
        assert_eq!(
            out,
            vec![
                ev("{\"x\":\"ä\"}"),
                Ok(SseEvent {
                    event: Some("e".into()),
                    data: "1\n2".into()
                }),
                ev("[DONE]"),
                ev("tail ö"),
            ]
        );
    }
}
