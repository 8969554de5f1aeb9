//! "Did you mean …?" for misspelled names.

/// The candidate closest to `input`, if it is close enough to be a likely typo.
pub fn nearest<'a>(input: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (input.chars().count() / 3).max(2);
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(input, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// The help for a name that is not one of `candidates`: "did you mean
/// `x`?" for a likely typo, else `<intro>: `a`, `b`, …`, or `empty` when
/// there are no candidates.
pub fn help<'a>(
    input: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
    intro: &str,
    empty: &str,
) -> String {
    if let Some(s) = nearest(input, candidates.clone()) {
        return format!("did you mean `{s}`?");
    }
    let list: Vec<String> = candidates.into_iter().map(|c| format!("`{c}`")).collect();
    if list.is_empty() {
        empty.to_owned()
    } else {
        format!("{intro}: {}", list.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::nearest;

    #[test]
    fn suggests_the_closest_known_name_and_nothing_for_strangers() {
        let keys = ["prompt", "plugin", "persona", "timeout"];
        assert_eq!(nearest("promt", keys), Some("prompt"));
        assert_eq!(nearest("plugn", keys), Some("plugin"));
        assert_eq!(nearest("timeuot", keys), Some("timeout"));
        assert_eq!(nearest("zzzzzz", keys), None);
    }
}
