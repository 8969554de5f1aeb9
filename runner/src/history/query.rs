//! Reading the run index: the records a filter matches, newest first; every
//! id with its tags (to resolve what a person names); one row.

use super::entry::{Entry, Kind};
use super::index::{Index, IndexError};
use rusqlite::OptionalExtension;

/// What the records listed must match.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub workflow: Option<String>,
    pub status: Option<String>,
    pub kind: Option<Kind>,
    /// Every one of these.
    pub tags: Vec<String>,
    /// Started at or after, in ms since the epoch.
    pub since_ms: Option<i64>,
    /// Started before.
    pub until_ms: Option<i64>,
    pub limit: Option<usize>,
}

impl Index {
    /// The records that match `filter`, newest first, and how many match
    /// in all (before `limit`).
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn list(&self, filter: &Filter) -> Result<(Vec<Entry>, usize), IndexError> {
        let mut clauses = vec!["kind != 'other'".to_owned()];
        let mut values: Vec<rusqlite::types::Value> = Vec::new();
        let mut bind = |clause: &str, value: rusqlite::types::Value| {
            values.push(value);
            clauses.push(clause.replace('?', &format!("?{}", values.len())));
        };
        if let Some(w) = &filter.workflow {
            bind("workflow = ?", w.clone().into());
        }
        if let Some(s) = &filter.status {
            bind("status = ?", s.clone().into());
        }
        if let Some(k) = filter.kind {
            bind("kind = ?", k.as_str().to_owned().into());
        }
        for tag in &filter.tags {
            bind(
                "EXISTS (SELECT 1 FROM json_each(records.tags) WHERE value = ?)",
                tag.clone().into(),
            );
        }
        if let Some(t) = filter.since_ms {
            bind("started_ms >= ?", t.into());
        }
        if let Some(t) = filter.until_ms {
            bind("started_ms < ?", t.into());
        }
        let filter_sql = clauses.join(" AND ");
        let total: usize = self
            .conn
            .query_row(
                &format!("SELECT COUNT(*) FROM records WHERE {filter_sql}"),
                rusqlite::params_from_iter(&values),
                |r| r.get::<_, i64>(0),
            )
            .map_err(|e| self.sqlite(e))?
            .try_into()
            .unwrap_or(0);
        let limit = filter
            .limit
            .map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let sql = format!(
            "SELECT {COLUMNS} FROM records WHERE {filter_sql} \
             ORDER BY started_ms DESC NULLS LAST, id DESC LIMIT {limit}"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(&values), row_entry)
            .map_err(|e| self.sqlite(e))?;
        let entries = rows
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sqlite(e))?;
        Ok((entries, total))
    }

    /// Every record's id and tags (not `other` directories), newest first.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn ids(&self) -> Result<Vec<(String, Vec<String>)>, IndexError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, tags FROM records WHERE kind != 'other' \
                 ORDER BY started_ms DESC NULLS LAST, id DESC",
            )
            .map_err(|e| self.sqlite(e))?;
        let rows = stmt
            .query_map([], |r| {
                let tags: String = r.get(1)?;
                Ok((
                    r.get::<_, String>(0)?,
                    serde_json::from_str(&tags).unwrap_or_default(),
                ))
            })
            .map_err(|e| self.sqlite(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.sqlite(e))
    }

    /// The row of `id`.
    ///
    /// # Errors
    /// When the index cannot be read.
    pub fn get(&self, id: &str) -> Result<Option<Entry>, IndexError> {
        self.conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM records WHERE id = ?1"),
                [id],
                row_entry,
            )
            .optional()
            .map_err(|e| self.sqlite(e))
    }
}

const COLUMNS: &str =
    "id, kind, workflow, status, started_at, finished_at, took_ms, runs, models, tags";

fn row_entry(r: &rusqlite::Row<'_>) -> rusqlite::Result<Entry> {
    let json_list = |i: usize| -> rusqlite::Result<Vec<String>> {
        let text: String = r.get(i)?;
        serde_json::from_str(&text).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, Box::new(e))
        })
    };
    let kind: String = r.get(1)?;
    Ok(Entry {
        id: r.get(0)?,
        kind: Kind::parse(&kind).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                1,
                rusqlite::types::Type::Text,
                format!("unknown kind `{kind}`").into(),
            )
        })?,
        workflow: r.get(2)?,
        status: r.get(3)?,
        started_at: r.get(4)?,
        finished_at: r.get(5)?,
        took_ms: r.get(6)?,
        runs: r.get(7)?,
        models: json_list(8)?,
        tags: json_list(9)?,
    })
}
