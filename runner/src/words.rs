//! Small pieces of English the CLI and records share.

/// `1 agent`, `2 agents`: a count with its noun, singular for one.
pub fn plural<N: std::fmt::Display + TryInto<u64> + Copy>(n: N, what: &str) -> String {
    if n.try_into().ok() == Some(1) {
        format!("{n} {what}")
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
    }
}
