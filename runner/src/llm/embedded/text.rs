//! Turning token pieces into text: whole UTF-8 characters only, and stop
//! strings cut out before anything is shown.

/// Decodes a stream of byte pieces; a piece may end inside a character, whose
/// bytes wait for the next piece.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text completed by `bytes`; invalid bytes become U+FFFD.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        loop {
            match std::str::from_utf8(&self.pending) {
                Ok(s) => {
                    out.push_str(s);
                    self.pending.clear();
                    return out;
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    out.push_str(&String::from_utf8_lossy(&self.pending[..valid]));
                    match e.error_len() {
                        // An unfinished character at the end: wait for more.
                        None => {
                            self.pending.drain(..valid);
                            return out;
                        }
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            self.pending.drain(..valid + bad);
                        }
                    }
                }
            }
        }
    }

    /// Whatever is left (an unfinished character becomes U+FFFD).
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        rest
    }
}

/// Holds back text that could be the start of a stop string, so a stop
/// string never reaches the caller.
#[derive(Debug, Default)]
pub struct StopScan {
    stops: Vec<String>,
    held: String,
}

impl StopScan {
    /// A scanner for `stops` (empty strings are never matched).
    pub fn new(stops: Vec<String>) -> Self {
        Self {
            stops: stops.into_iter().filter(|s| !s.is_empty()).collect(),
            held: String::new(),
        }
    }

    /// Adds generated text; returns the text that is safe to show and whether
    /// a stop string was reached (the stop string and anything after it are
    /// dropped).
    pub fn push(&mut self, text: &str) -> (String, bool) {
        self.held.push_str(text);
        let first_stop = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(at) = first_stop {
            self.held.truncate(at);
            return (std::mem::take(&mut self.held), true);
        }
        let keep = self
            .stops
            .iter()
            .map(|s| longest_prefix_suffix(&self.held, s))
            .max()
            .unwrap_or(0);
        let cut = self.held.len() - keep;
        let rest = self.held.split_off(cut);
        (std::mem::replace(&mut self.held, rest), false)
    }

    /// The held text, at the end of generation.
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }
}

/// The length of the longest end of `text` that is a proper prefix of `stop`.
fn longest_prefix_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len())
        .rev()
        .filter(|&n| stop.is_char_boundary(n))
        .find(|&n| text.ends_with(&stop[..n]))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_split_across_pieces_is_decoded_whole() {
        let mut d = Utf8Stream::default();
        let bytes = "é€😀".as_bytes();
        let mut text = String::new();
        for b in bytes {
            text.push_str(&d.push(std::slice::from_ref(b)));
        }
        assert_eq!(text, "é€😀");
        assert_eq!(d.finish(), "");
    }

    #[test]
    fn invalid_bytes_become_replacement_characters() {
        let mut d = Utf8Stream::default();
        assert_eq!(d.push(b"a\xffb\xe2\x82"), "a\u{fffd}b");
        assert_eq!(d.finish(), "\u{fffd}");
    }

    #[test]
    fn a_stop_string_is_cut_even_across_pieces() {
        let mut s = StopScan::new(vec!["END".into()]);
        assert_eq!(s.push("abc E"), ("abc ".into(), false));
        assert_eq!(s.push("N"), (String::new(), false));
        assert_eq!(s.push("Dxyz"), (String::new(), true));

        let mut s = StopScan::new(vec!["\n".into(), "lo".into()]);
        assert_eq!(s.push("hel"), ("he".into(), false));
        assert_eq!(s.push("p\nmore"), ("lp".into(), true));
    }

    #[test]
    fn held_text_is_released_when_it_cannot_start_a_stop() {
        let mut s = StopScan::new(vec!["ab".into()]);
        assert_eq!(s.push("xa"), ("x".into(), false));
        assert_eq!(s.push("c"), ("ac".into(), false));
        assert_eq!(s.push("a"), (String::new(), false));
        assert_eq!(s.finish(), "a");
        let mut none = StopScan::new(vec![String::new()]);
        assert_eq!(none.push("abc"), ("abc".into(), false));
    }
}
