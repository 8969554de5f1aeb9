//! `--shard K/N` and `--shard auto`: which cells of a sweep this process
//! runs. Cells are sorted by key and dealt out in turn, so shards differ in
//! size by at most one cell and every process that sees the same cells
//! deals them the same way, whatever order it lists them in.

use crate::record::sweep::Shard;

/// The environment variables `--shard auto` reads, as the schedulers set them.
const SLURM_ID: &str = "SLURM_ARRAY_TASK_ID";
const SLURM_MIN: &str = "SLURM_ARRAY_TASK_MIN";
const SLURM_COUNT: &str = "SLURM_ARRAY_TASK_COUNT";
const K8S_INDEX: &str = "JOB_COMPLETION_INDEX";
/// Kubernetes does not tell a pod its Job's `completions`; the manifest
/// passes it in this variable.
pub const K8S_COUNT: &str = "CHIMERA_SHARD_COUNT";

/// Parses `--shard`: `K/N` (1-based, like cargo-nextest's `--partition
/// count:K/N`), or `auto` (from a Slurm job array or a Kubernetes Indexed
/// Job, via `env`).
///
/// # Errors
/// A message saying what to write instead.
pub fn parse(text: &str, env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    if text == "auto" {
        return from_env(env);
    }
    let (k, n) = text
        .split_once('/')
        .ok_or_else(|| format!("`--shard {text}`: write `K/N` (e.g. `2/4`) or `auto`"))?;
    let number = |s: &str| s.trim().parse::<u32>().ok();
    match (number(k), number(n)) {
        (Some(index), Some(count)) if index >= 1 && index <= count => Ok(Shard { index, count }),
        _ => Err(format!(
            "`--shard {text}`: K and N are whole numbers with 1 ≤ K ≤ N (shards count from 1)"
        )),
    }
}

fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Shard, String> {
    let number = |name: &str| -> Result<Option<u32>, String> {
        env(name)
            .map(|v| {
                v.trim()
                    .parse::<u32>()
                    .map_err(|_| format!("`{name}={v}` is not a whole number"))
            })
            .transpose()
    };
    if let Some(id) = number(SLURM_ID)? {
        let count = number(SLURM_COUNT)?.ok_or_else(|| {
            format!("`--shard auto`: `{SLURM_ID}` is set but `{SLURM_COUNT}` is not; submit with `sbatch --array`")
        })?;
        let min = number(SLURM_MIN)?.unwrap_or(0);
        // `--array=1-4` and `--array=0-3` both give shards 1..4; a stepped
        // or sparse array does not map onto shards.
        let index = id.checked_sub(min).map(|i| i + 1).filter(|&i| i <= count).ok_or_else(|| {
            format!("`--shard auto`: array task {id} (min {min}, count {count}) is not one of a contiguous array; use `--array=0-{}`", count.saturating_sub(1))
        })?;
        return Ok(Shard { index, count });
    }
    if let Some(index) = number(K8S_INDEX)? {
        let count = number(K8S_COUNT)?.ok_or_else(|| {
            format!("`--shard auto`: `{K8S_INDEX}` is set but `{K8S_COUNT}` is not; set it to the Job's `completions` in the pod's `env:`")
        })?;
        if index >= count {
            return Err(format!(
                "`--shard auto`: `{K8S_INDEX}={index}` is not below `{K8S_COUNT}={count}`"
            ));
        }
        return Ok(Shard {
            index: index + 1,
            count,
        });
    }
    Err(format!(
        "`--shard auto` found neither `{SLURM_ID}` (a Slurm job array) nor `{K8S_INDEX}` (a Kubernetes Indexed Job); pass `--shard K/N`"
    ))
}

/// The keys `shard` runs out of `keys`: sorted, every `count`-th from the
/// shard's index.
pub fn assign<'a>(keys: impl IntoIterator<Item = &'a str>, shard: Option<Shard>) -> Vec<String> {
    let mut sorted: Vec<&str> = keys.into_iter().collect();
    sorted.sort_unstable();
    sorted
        .into_iter()
        .enumerate()
        .filter(|(i, _)| {
            shard.is_none_or(|s| u32::try_from(*i).is_ok_and(|i| i % s.count == s.index - 1))
        })
        .map(|(_, k)| k.to_owned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn shards_parse_by_hand_and_from_the_schedulers_variables() {
        let none = env(&[]);
        assert_eq!(parse("2/3", &none), Ok(Shard { index: 2, count: 3 }));
        assert!(parse("0/3", &none).unwrap_err().contains("count from 1"));
        assert!(parse("4/3", &none).is_err());
        assert!(parse("2", &none).unwrap_err().contains("K/N"));
        assert!(parse("auto", &none).unwrap_err().contains("neither"));
        let slurm = env(&[(SLURM_ID, "2"), (SLURM_MIN, "0"), (SLURM_COUNT, "3")]);
        assert_eq!(parse("auto", &slurm), Ok(Shard { index: 3, count: 3 }));
        let from_one = env(&[(SLURM_ID, "1"), (SLURM_MIN, "1"), (SLURM_COUNT, "3")]);
        assert_eq!(parse("auto", &from_one), Ok(Shard { index: 1, count: 3 }));
        let k8s = env(&[(K8S_INDEX, "0"), (K8S_COUNT, "4")]);
        assert_eq!(parse("auto", &k8s), Ok(Shard { index: 1, count: 4 }));
        let k8s_no_count = env(&[(K8S_INDEX, "0")]);
        assert!(
            parse("auto", &k8s_no_count)
                .unwrap_err()
                .contains(K8S_COUNT)
        );
    }

    #[test]
    fn shards_split_the_cells_evenly_and_together_cover_them_once() {
        let keys = ["e", "a", "d", "b", "c", "f", "g", "h"];
        let parts: Vec<Vec<String>> = (1..=3)
            .map(|index| assign(keys, Some(Shard { index, count: 3 })))
            .collect();
        assert_eq!(parts[0], ["a", "d", "g"]);
        assert_eq!(parts[1], ["b", "e", "h"]);
        assert_eq!(parts[2], ["c", "f"]);
        let mut all: Vec<String> = parts.concat();
        all.sort();
        assert_eq!(all, assign(keys, None));
        let mut reversed = keys;
        reversed.reverse();
        assert_eq!(
            assign(reversed, Some(Shard { index: 2, count: 3 })),
            parts[1]
        );
    }
}
