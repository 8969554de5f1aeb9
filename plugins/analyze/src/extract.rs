//! Pulls the parts later stages need out of a model's markdown answer: the
//! executive summary, the key findings and the recommendations.
//!
//! Small models format loosely: `#`/`##` headings or `**Bold:**` lines that
//! act as headings, numbered headings (`**2. Key Findings**`), `*`/`-`/`1.`
//! items that wrap over several lines or nest, a chatty first paragraph
//! ("Okay, here's …") and a closing question. The parse is line based and
//! pure, so it is tested on the host.

/// What an analysis says, pulled out of its markdown.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Extracted {
    /// The executive summary; without one, the first substantive paragraph.
    pub summary: String,
    /// Items under headings that mention "finding".
    pub key_findings: Vec<String>,
    /// Items under headings that mention "recommend".
    pub recommendations: Vec<String>,
}

/// Extracts the summary, key findings and recommendations from `text`.
pub fn extract(text: &str) -> Extracted {
    let blocks = blocks(unwrap_fence(text));
    Extracted {
        summary: summary(&blocks),
        key_findings: items_under(&blocks, "finding"),
        recommendations: items_under(&blocks, "recommend"),
    }
}

/// Pseudo-headings (bold lines, `Key Findings:` lines) rank below every `#` level.
const PSEUDO_LEVEL: usize = 7;

/// The section words whose headings end any other section.
const TARGETS: [&str; 3] = ["summary", "finding", "recommend"];

/// Titles that are headings even when written as a list item or plain line.
const KNOWN_TITLES: [&str; 20] = [
    "executive summary",
    "summary",
    "overview",
    "key findings",
    "findings",
    "main findings",
    "key performance findings",
    "recommendations",
    "key recommendations",
    "performance metrics",
    "performance analysis",
    "performance metrics analysis",
    "metrics",
    "data ingestion summary",
    "appendix",
    "conclusion",
    "conclusions",
    "next steps",
    "limitations",
    "introduction",
];

/// Openings of paragraphs that talk to the reader instead of analysing.
const CHATTER: [&str; 27] = [
    "okay",
    "ok,",
    "sure",
    "certainly",
    "absolutely",
    "of course",
    "alright",
    "great",
    "here's",
    "here is",
    "below is",
    "as requested",
    "i've",
    "i have",
    "would you like",
    "do you want",
    "let me know",
    "please let me know",
    "to help me",
    "if you'd like",
    "if you would like",
    "if you want",
    "i can also",
    "i hope",
    "could you tell me",
    "feel free",
    "shall i",
];

/// The inside of an answer that is one fenced block as a whole (models
/// sometimes wrap their markdown in ```` ```markdown ````).
fn unwrap_fence(text: &str) -> &str {
    let trimmed = text.trim();
    let Some(rest) = trimmed
        .strip_prefix("```")
        .or_else(|| trimmed.strip_prefix("~~~"))
    else {
        return text;
    };
    let Some((_info, body)) = rest.split_once('\n') else {
        return text;
    };
    let body = body.trim_end();
    match body
        .strip_suffix(&trimmed[..3])
        .filter(|inner| !inner.contains(&trimmed[..3]))
    {
        Some(inner) => inner,
        None => text,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Block {
    Heading { level: usize, title: String },
    Item { indent: usize, text: String },
    Paragraph(String),
    Break,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Open {
    Nothing,
    Item,
    Paragraph,
}

fn blocks(text: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut open = Open::Nothing;
    let mut blank_since = false;
    let mut fence: Option<&str> = None;
    for line in text.lines() {
        let line = line.trim_end();
        let trimmed = line.trim_start();
        let indent = indent_of(line);
        if let Some(marker) = fence {
            if trimmed.starts_with(marker) {
                fence = None;
            }
            continue;
        }
        if trimmed.starts_with("```") || trimmed.starts_with("~~~") {
            fence = Some(&trimmed[..3]);
            open = Open::Nothing;
            continue;
        }
        if trimmed.is_empty() {
            blank_since = true;
            if open == Open::Paragraph {
                open = Open::Nothing;
            }
            continue;
        }
        let was_blank = std::mem::replace(&mut blank_since, false);
        if is_rule(trimmed) {
            out.push(Block::Break);
            open = Open::Nothing;
        } else if let Some((level, title, rest)) = heading(trimmed, indent) {
            out.push(Block::Heading { level, title });
            open = Open::Nothing;
            if let Some(rest) = rest {
                out.push(Block::Paragraph(rest.to_owned()));
                open = Open::Paragraph;
            }
        } else if trimmed.starts_with('|') {
            // Tables carry numbers, not findings.
            open = Open::Nothing;
        } else if let Some(text) = list_item(trimmed) {
            out.push(Block::Item {
                indent,
                text: text.to_owned(),
            });
            open = Open::Item;
        } else {
            let joins = match open {
                Open::Item => !was_blank || indent >= 2,
                Open::Paragraph => !was_blank && bold_label(trimmed).is_none(),
                Open::Nothing => false,
            };
            match out.last_mut() {
                Some(Block::Item { text, .. } | Block::Paragraph(text)) if joins => {
                    text.push(' ');
                    text.push_str(trimmed);
                }
                _ => {
                    out.push(Block::Paragraph(trimmed.to_owned()));
                    open = Open::Paragraph;
                }
            }
        }
    }
    out
}

fn indent_of(line: &str) -> usize {
    line.chars()
        .take_while(|c| c.is_whitespace())
        .map(|c| if c == '\t' { 4 } else { 1 })
        .sum()
}

/// `---`, `***`, `___` (spaces allowed) and setext underlines.
fn is_rule(line: &str) -> bool {
    let marks: Vec<char> = line.chars().filter(|c| !c.is_whitespace()).collect();
    marks.len() >= 3
        && ['-', '*', '_', '='].contains(&marks[0])
        && marks.iter().all(|&c| c == marks[0])
}

/// A heading line: its level, its title, and text that follows a bold label
/// on the same line (`**Executive Summary:** The data …`).
fn heading(line: &str, indent: usize) -> Option<(usize, String, Option<&str>)> {
    let hashes = line.chars().take_while(|&c| c == '#').count();
    if (1..=6).contains(&hashes) {
        let rest = &line[hashes..];
        if rest.is_empty() || rest.starts_with(char::is_whitespace) {
            return Some((hashes, title_of(rest.trim_end_matches('#')), None));
        }
    }
    if let Some(content) = list_item(line) {
        // `1. **Executive Summary**`, `2. Key Findings`: numbered headings.
        let title = title_of(content);
        return (bold_whole(content).is_some() || !content.contains("**"))
            .then_some(())
            .filter(|()| is_known_title(&title.to_lowercase()))
            .map(|()| (PSEUDO_LEVEL, title, None));
    }
    if let Some(inner) = bold_whole(line) {
        let words = inner.split_whitespace().count();
        if words <= 12 && !inner.trim_end().ends_with('.') {
            return Some((PSEUDO_LEVEL, title_of(inner), None));
        }
        return None;
    }
    if let Some((label, rest)) = bold_label(line) {
        let title = title_of(label);
        let lower = title.to_lowercase();
        if (is_target(&lower) && title.split_whitespace().count() <= 5) || is_known_title(&lower) {
            return Some((PSEUDO_LEVEL, title, Some(rest)));
        }
        return None;
    }
    if indent >= 2 {
        // An indented plain line continues an item, whatever it says.
        return None;
    }
    let title = title_of(line);
    let lower = title.to_lowercase();
    let short_label =
        line.ends_with(':') && title.split_whitespace().count() <= 6 && is_target(&lower);
    (is_known_title(&lower) || short_label).then_some((PSEUDO_LEVEL, title, None))
}

/// The content of a `-`/`*`/`+`/`•` bullet or a `1.`/`1)`/`a)` numbered item.
fn list_item(line: &str) -> Option<&str> {
    let mut chars = line.char_indices();
    let (_, first) = chars.next()?;
    let after = if ['-', '*', '+', '•', '●', '▪', '‣', '◦', '–'].contains(&first) {
        first.len_utf8()
    } else if first.is_ascii_digit() {
        let digits = line.chars().take_while(char::is_ascii_digit).count();
        if digits > 3 || !matches!(line[digits..].chars().next(), Some('.' | ')')) {
            return None;
        }
        digits + 1
    } else if first.is_ascii_lowercase() && line[1..].starts_with(')') {
        2
    } else {
        return None;
    };
    let rest = &line[after..];
    if rest.is_empty() {
        return Some("");
    }
    rest.starts_with(char::is_whitespace).then(|| rest.trim())
}

/// The inside of a line that is bold as a whole: `**Title**`, `**Title:**`,
/// `**Title**:`, `__Title__`.
fn bold_whole(line: &str) -> Option<&str> {
    let (label, rest) = bold_span(line)?;
    rest.trim_start_matches(':')
        .trim()
        .is_empty()
        .then_some(label)
}

/// A bold label that opens a line, and the text after it: `**Latency:** 26 ms`.
fn bold_label(line: &str) -> Option<(&str, &str)> {
    let (label, rest) = bold_span(line)?;
    let labelled = label.trim_end().ends_with(':') || rest.starts_with(':');
    let rest = rest.trim_start_matches(':').trim();
    (labelled && !rest.is_empty()).then_some((label, rest))
}

/// Splits `**inner**rest` (or `__inner__rest`) at the closing delimiter.
fn bold_span(line: &str) -> Option<(&str, &str)> {
    let delim = ["**", "__"].into_iter().find(|d| line.starts_with(d))?;
    let body = line[2..].trim_start_matches(&delim[..1]);
    let close = body.find(delim)?;
    let inner = &body[..close];
    if inner.trim().is_empty() {
        return None;
    }
    let rest = body[close..].trim_start_matches(&delim[..1]);
    Some((inner, rest))
}

/// A heading's words without markup, numbering or a trailing colon.
fn title_of(raw: &str) -> String {
    let cleaned: String = raw.chars().filter(|c| !matches!(c, '*' | '`')).collect();
    let mut title = cleaned
        .trim()
        .trim_matches('_')
        .trim()
        .trim_end_matches(':');
    // Numbering: `1.`, `2)`, `3.1`, `IV.`
    if let Some((first, rest)) = title.split_once(char::is_whitespace) {
        let numeral = first.trim_end_matches(['.', ')', ':']);
        let arabic = numeral.starts_with(|c: char| c.is_ascii_digit())
            && numeral.chars().all(|c| c.is_ascii_digit() || c == '.');
        let roman = !numeral.is_empty()
            && first != numeral
            && numeral.chars().all(|c| matches!(c, 'I' | 'V' | 'X'));
        let numbered = arabic || roman;
        if numbered {
            title = rest.trim();
        }
    }
    title.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn is_known_title(lower: &str) -> bool {
    KNOWN_TITLES.contains(&lower)
        || lower.starts_with("recommendations for ")
        || lower.starts_with("recommendations to ")
}

fn is_chatter(paragraph: &str) -> bool {
    let lower = paragraph.trim_start_matches(['*', '_']).to_lowercase();
    CHATTER.iter().any(|c| {
        lower.starts_with(c)
            && lower[c.len()..]
                .chars()
                .next()
                .is_none_or(|next| !next.is_alphanumeric())
    })
}

fn is_target(lower: &str) -> bool {
    TARGETS.iter().any(|t| lower.contains(t))
}

/// The blocks of the section that heading `at` opens, for the section word
/// `own`: up to a heading of the same or a higher rank, a heading about
/// another section word, a thematic break after some content, or a closing
/// remark to the reader.
fn section<'a>(blocks: &'a [Block], at: usize, own: &str) -> &'a [Block] {
    let Some(Block::Heading { level, .. }) = blocks.get(at) else {
        return &[];
    };
    let body = &blocks[at + 1..];
    let end = body
        .iter()
        .enumerate()
        .position(|(i, block)| match block {
            Block::Heading { level: l, title } => {
                let lower = title.to_lowercase();
                l <= level || (is_target(&lower) && !lower.contains(own))
            }
            Block::Break => i > 0,
            Block::Paragraph(p) => is_chatter(p) && i > 0,
            Block::Item { .. } => false,
        })
        .unwrap_or(body.len());
    &body[..end]
}

fn headings<'a>(
    blocks: &'a [Block],
    wanted: impl Fn(&str) -> bool + 'a,
) -> impl Iterator<Item = usize> + 'a {
    blocks
        .iter()
        .enumerate()
        .filter_map(move |(i, block)| match block {
            Block::Heading { title, .. } if wanted(&title.to_lowercase()) => Some(i),
            _ => None,
        })
}

/// The items under every heading that mentions `own`, nested items folded
/// into their parent; a section without items contributes its paragraphs.
fn items_under(blocks: &[Block], own: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for at in headings(blocks, |t| t.contains(own)) {
        let body = section(blocks, at, own);
        let mut items: Vec<String> = Vec::new();
        let mut parent: Option<usize> = None;
        for block in body {
            match block {
                Block::Item { indent, text } => match (parent, items.last_mut()) {
                    (Some(top), Some(last)) if *indent >= top + 2 => {
                        if !text.is_empty() {
                            let sentence_done =
                                last.trim_end_matches(['*', '_']).ends_with([':', '.', ';']);
                            last.push_str(if sentence_done { " " } else { "; " });
                            last.push_str(text);
                        }
                    }
                    _ => {
                        parent = Some(*indent);
                        items.push(text.clone());
                    }
                },
                Block::Heading { .. } => parent = None,
                Block::Paragraph(_) | Block::Break => {}
            }
        }
        if items.iter().all(String::is_empty) {
            items = body
                .iter()
                .filter_map(|b| match b {
                    Block::Paragraph(p) if !is_chatter(p) && !p.ends_with(':') => Some(p.clone()),
                    _ => None,
                })
                .collect();
        }
        for item in items.iter().map(|i| clean(i)).filter(|i| !i.is_empty()) {
            if !out.contains(&item) {
                out.push(item);
            }
        }
    }
    out
}

fn summary(blocks: &[Block]) -> String {
    let executive = headings(blocks, |t| t.contains("executive summary")).next();
    let any = headings(blocks, |t| {
        t.contains("summary") || matches!(t, "overview" | "tl;dr" | "tldr" | "abstract")
    })
    .next();
    for at in executive.into_iter().chain(any) {
        let body = section(blocks, at, "summary");
        let paragraphs: Vec<String> = body
            .iter()
            .filter_map(|b| match b {
                Block::Paragraph(p) if !is_chatter(p) => Some(clean(p)),
                _ => None,
            })
            .collect();
        if !paragraphs.is_empty() {
            return paragraphs.join("\n\n");
        }
        let items: Vec<String> = body
            .iter()
            .filter_map(|b| match b {
                Block::Item { text, .. } if !text.is_empty() => Some(format!("- {}", clean(text))),
                _ => None,
            })
            .collect();
        if !items.is_empty() {
            return items.join("\n");
        }
    }
    blocks
        .iter()
        .find_map(|b| match b {
            Block::Paragraph(p) if !is_chatter(p) && !p.ends_with(':') => Some(clean(p)),
            _ => None,
        })
        .unwrap_or_default()
}

/// One line of text: whitespace collapsed, a dangling `**` dropped.
fn clean(text: &str) -> String {
    let joined = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if joined.matches("**").count() % 2 == 1 {
        joined.replace("**", "")
    } else {
        joined
    }
}

#[cfg(test)]
mod tests;
