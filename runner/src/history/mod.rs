//! Run history: every record directory under a runs directory (`runs/` by
//! default), found fast through an index that is only ever a cache of the
//! directories ([`index`]), read by [`entry`], tagged in each record's own
//! `tags.json` ([`tags`]).

pub mod diff;
pub mod entry;
pub mod index;
pub mod query;
pub mod show;
pub mod tags;

pub use entry::{Entry, Kind};
pub use index::{Index, IndexError, Synced};
pub use query::Filter;
use std::path::Path;

/// The runs directory `chimera run` writes to when not given `--out`.
pub const DEFAULT_ROOT: &str = "runs";

/// Stores the record just written in `dir` in its runs directory's index,
/// when that directory is the default `runs/` or already has an index (a
/// record written elsewhere with `--out` is left alone). Never fails the
/// run: the record is on disk, and the next `chimera runs` finds it.
pub fn note_finished(dir: &Path) {
    let (Some(root), Some(id)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let root = if root.as_os_str().is_empty() {
        Path::new(".")
    } else {
        root
    };
    let default = Path::new(DEFAULT_ROOT).canonicalize().ok();
    if root.canonicalize().ok() != default && !Index::path_in(root).is_file() {
        return;
    }
    let id = id.to_string_lossy();
    if let Err(e) = Index::open(root).and_then(|(mut index, _)| index.note(&id)) {
        tracing::warn!("the run index was not updated (the next `chimera runs` will be): {e}");
    }
}

/// How a record named on the command line was not found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("no record `{query}` in `{root}`")]
    NotFound { query: String, root: String },
    #[error("`{query}` names {} records in `{root}`: {}", candidates.len(), candidates.iter().take(5).map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", "))]
    Ambiguous {
        query: String,
        root: String,
        candidates: Vec<String>,
    },
}

/// The record id a person means by `query`, among `records` (id and tags,
/// newest first): `latest` (or `latest~N`, the Nth before it), an id, a tag
/// (the newest record with it), or a part of exactly one id (its start
/// first, then anywhere in it).
///
/// # Errors
/// When nothing matches, or a part matches several ids.
pub fn resolve(
    query: &str,
    records: &[(String, Vec<String>)],
    root: &Path,
) -> Result<String, ResolveError> {
    let not_found = || ResolveError::NotFound {
        query: query.to_owned(),
        root: root.display().to_string(),
    };
    if let Some(back) = query.strip_prefix("latest") {
        let n = if back.is_empty() {
            Some(0)
        } else {
            back.strip_prefix('~').and_then(|n| n.parse::<usize>().ok())
        };
        if let Some(n) = n {
            return records
                .get(n)
                .map(|(id, _)| id.clone())
                .ok_or_else(not_found);
        }
    }
    if records.iter().any(|(id, _)| id == query) {
        return Ok(query.to_owned());
    }
    if let Some((id, _)) = records
        .iter()
        .find(|(_, tags)| tags.iter().any(|t| t == query))
    {
        return Ok(id.clone());
    }
    for matches in [
        |id: &str, q: &str| id.starts_with(q),
        |id: &str, q: &str| id.contains(q),
    ] {
        let found: Vec<String> = records
            .iter()
            .filter(|(id, _)| matches(id, query))
            .map(|(id, _)| id.clone())
            .collect();
        match found.len() {
            0 => {}
            1 => return Ok(found.into_iter().next().unwrap_or_default()),
            _ => {
                return Err(ResolveError::Ambiguous {
                    query: query.to_owned(),
                    root: root.display().to_string(),
                    candidates: found,
                });
            }
        }
    }
    Err(not_found())
}

/// A time on the command line: `2026-12-01`, `2026-12-01T10:00:00Z`, or a
/// span before now (`90m`, `12h`, `7d`, `2w`); ms since the epoch.
///
/// # Errors
/// Says which forms are understood.
pub fn parse_when(text: &str, now: jiff::Timestamp) -> Result<i64, String> {
    let text = text.trim();
    if let Ok(at) = text.parse::<jiff::Timestamp>() {
        return Ok(at.as_millisecond());
    }
    if let Ok(date) = text.parse::<jiff::civil::Date>()
        && let Ok(at) = date.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(at.timestamp().as_millisecond());
    }
    if let Ok(span) = text.parse::<jiff::Span>()
        && let Ok(at) = now
            .to_zoned(jiff::tz::TimeZone::UTC)
            .checked_sub(span.abs())
    {
        return Ok(at.timestamp().as_millisecond());
    }
    Err(format!(
        "`{text}` is not a time: write a date (`2026-12-01`, UTC), a time (`2026-12-01T10:00:00Z`) or a span before now (`90m`, `12h`, `7d`, `2w`)"
    ))
}

/// A duration for people: `850 ms`, `12.3 s`, `4 min 05 s`, `1 h 02 min`.
pub fn took(ms: f64) -> String {
    if ms < 1000.0 {
        return format!("{ms:.0} ms");
    }
    let s = ms / 1000.0;
    if s < 120.0 {
        return format!("{s:.1} s");
    }
    // Whole seconds from here on: truncation is what a clock shows.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let s = s as u64;
    if s < 3600 {
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        format!("{} h {:02} min", s / 3600, (s % 3600) / 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_is_named_by_latest_by_its_id_a_tag_or_a_part_of_one_id() {
        let records: Vec<(String, Vec<String>)> = [
            ("20261203T100000Z-agent-b", vec![]),
            ("20261203T090000Z-agent-a", vec!["baseline".to_owned()]),
            ("20261202T090000Z-agent-a", vec!["baseline".to_owned()]),
        ]
        .map(|(id, tags)| (id.to_owned(), tags))
        .into();
        let ids: Vec<&String> = records.iter().map(|(id, _)| id).collect();
        let root = Path::new("runs");
        let r = |q: &str| resolve(q, &records, root);
        assert_eq!(r("baseline").unwrap(), *ids[1], "the newest with the tag");
        assert_eq!(r("latest").unwrap(), *ids[0]);
        assert_eq!(r("latest~2").unwrap(), *ids[2]);
        assert!(matches!(r("latest~3"), Err(ResolveError::NotFound { .. })));
        assert_eq!(r(ids[1]).unwrap(), *ids[1]);
        assert_eq!(r("20261202").unwrap(), *ids[2]);
        assert_eq!(r("agent-b").unwrap(), *ids[0]);
        let Err(ResolveError::Ambiguous { candidates, .. }) = r("agent-a") else {
            panic!("two ids hold `agent-a`");
        };
        assert_eq!(candidates.len(), 2);
        assert!(matches!(r("agent-c"), Err(ResolveError::NotFound { .. })));
    }

    #[test]
    fn durations_read_at_a_glance() {
        assert_eq!(took(850.4), "850 ms");
        assert_eq!(took(12_340.0), "12.3 s");
        assert_eq!(took(245_000.0), "4 min 05 s");
        assert_eq!(took(3_720_000.0), "1 h 02 min");
    }

    #[test]
    fn times_are_dates_instants_or_spans_before_now() {
        let now: jiff::Timestamp = "2026-12-03T12:00:00Z".parse().unwrap();
        let at = |t: &str| parse_when(t, now).unwrap();
        assert_eq!(at("2026-12-01"), at("2026-12-01T00:00:00Z"));
        assert_eq!(at("12h"), at("2026-12-03T00:00:00Z"));
        assert_eq!(at("2d"), at("2026-12-01T12:00:00Z"));
        assert!(parse_when("last tuesday", now).is_err());
    }
}
