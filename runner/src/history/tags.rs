//! A record's tags, kept in its own `tags.json` (a JSON list of strings) so
//! the record carries them wherever it is copied; the index only mirrors them.

use crate::record::RunDir;
use std::path::Path;

/// The file in a record's directory.
pub const FILE: &str = "tags.json";

/// The tags in `dir/tags.json`; none when the file is missing.
///
/// # Errors
/// When the file exists but cannot be read or is not a list of strings.
pub fn read(dir: &Path) -> std::io::Result<Vec<String>> {
    match std::fs::read_to_string(dir.join(FILE)) {
        Ok(text) => serde_json::from_str(&text).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", dir.join(FILE).display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Writes `tags` to `dir/tags.json` atomically.
///
/// # Errors
/// On I/O failure.
pub fn write(dir: &Path, tags: &[String]) -> std::io::Result<()> {
    RunDir::at(dir.to_path_buf())?
        .write_json(FILE, &tags)
        .map(drop)
}

/// Checks a tag as given on the command line: a tag is a word people type
/// (letters, digits, `.`, `_`, `-`, `/`, `:`, `+`), at most 64 characters.
///
/// # Errors
/// Says what is wrong and what a tag may hold.
pub fn check(tag: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_alphanumeric() || "._-/:+".contains(c);
    if tag.is_empty() || tag.chars().count() > 64 || !tag.chars().all(allowed) {
        return Err(format!(
            "`{tag}` is not a tag: use 1 to 64 letters, digits and `.`, `_`, `-`, `/`, `:`, `+` (e.g. `baseline`, `v1.2`, `gpu:a100`)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_round_trip_through_the_record_and_a_missing_file_is_no_tags() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read(dir.path()).unwrap().is_empty());
        write(dir.path(), &["baseline".into(), "gpu:a100".into()]).unwrap();
        assert_eq!(read(dir.path()).unwrap(), ["baseline", "gpu:a100"]);
        std::fs::write(dir.path().join(FILE), "{").unwrap();
        assert!(read(dir.path()).is_err());
    }

    #[test]
    fn a_tag_is_one_word() {
        assert!(check("v1.2").is_ok());
        assert!(check("two words").is_err());
        assert!(check("").is_err());
        assert!(check(&"x".repeat(65)).is_err());
    }
}
