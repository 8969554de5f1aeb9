//! Small pieces of English the CLI and records share.

/// `1 agent`, `2 agents`, `3 directories`: a count with its noun, singular
/// for one. The regular English endings cover every noun the CLI counts.
pub fn plural<N: std::fmt::Display + TryInto<u64> + Copy>(n: N, what: &str) -> String {
    if n.try_into().ok() == Some(1) {
        return format!("{n} {what}");
    }
    let consonant_y = what
        .strip_suffix('y')
        .filter(|stem| !stem.ends_with(|c: char| "aeiou".contains(c.to_ascii_lowercase())));
    if let Some(stem) = consonant_y {
        format!("{n} {stem}ies")
    } else if ["s", "x", "z", "ch", "sh"]
        .iter()
        .any(|e| what.ends_with(e))
    {
        format!("{n} {what}es")
    } else {
        format!("{n} {what}s")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn one_is_singular_and_every_other_count_plural() {
        assert_eq!(super::plural(1, "agent"), "1 agent");
        assert_eq!(super::plural(0, "cell"), "0 cells");
        assert_eq!(super::plural(2, "LLM call"), "2 LLM calls");
        assert_eq!(super::plural(2, "directory"), "2 directories");
        assert_eq!(super::plural(1, "directory"), "1 directory");
        assert_eq!(super::plural(3, "day"), "3 days");
        assert_eq!(super::plural(2, "batch"), "2 batches");
    }
}
