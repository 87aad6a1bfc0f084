//! The stable CI run of the fuzz entry points: every seed accepted, the committed corpus, and a
//! bounded proptest over random and mutated bytes.

use super::*;
use proptest::prelude::*;
use std::path::PathBuf;
use std::sync::OnceLock;

fn corpus_dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target)
}

fn target(name: &str) -> Target {
    *TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Every generated seed is accepted (the harness reaches the deepest checks), and every target
/// has seeds.
#[test]
fn fuzz_seeds_are_accepted() {
    let seeds = seeds();
    for t in TARGETS {
        let s = seeds
            .iter()
            .find(|(n, _)| *n == t.name)
            .unwrap_or_else(|| panic!("no seeds for {}", t.name));
        assert!(!s.1.is_empty());
        for (i, input) in s.1.iter().enumerate() {
            assert!((t.run)(input), "seed {i} of {} is refused", t.name);
        }
    }
}

/// Every committed corpus file of every target runs without a finding.
#[test]
fn fuzz_committed_corpus() {
    for t in TARGETS {
        let dir = corpus_dir(t.name);
        let entries = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e} (run write_seed_corpus)", dir.display()));
        let mut n = 0;
        for e in entries {
            let bytes = std::fs::read(e.unwrap().path()).unwrap();
            (t.run)(&bytes);
            n += 1;
        }
        assert!(n > 0, "empty corpus for {}", t.name);
    }
    for (name, inputs) in regressions() {
        for input in inputs {
            (target(name).run)(&input);
        }
    }
}

/// Rewrites `fuzz/corpus/<target>/seed-<i>` from [`seeds`] and [`regressions`].
#[test]
#[ignore = "writes the seed corpus; run by hand after changing an encoder"]
fn write_seed_corpus() {
    for (name, inputs) in seeds() {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("seed-{i}")), input).unwrap();
        }
    }
    for (name, inputs) in regressions() {
        let dir = corpus_dir(name);
        std::fs::create_dir_all(&dir).unwrap();
        for (i, input) in inputs.iter().enumerate() {
            std::fs::write(dir.join(format!("regression-{i}")), input).unwrap();
        }
    }
}

/// One byte-level mutation: overwrite, flip, insert, delete or truncate at a position.
fn mutate(mut v: Vec<u8>, ops: &[(usize, u8, u8)]) -> Vec<u8> {
    for &(pos, byte, op) in ops {
        let at = if v.is_empty() { 0 } else { pos % v.len() };
        match op % 5 {
            0 if !v.is_empty() => v[at] = byte,
            1 if !v.is_empty() => v[at] ^= 1 << (byte % 8),
            2 => v.insert(at, byte),
            3 if !v.is_empty() => {
                v.remove(at);
            }
            4 => v.truncate(at),
            _ => {}
        }
    }
    v
}

fn config() -> ProptestConfig {
    // Cases come from PROPTEST_CASES (CI: 64); no regression files in the source tree.
    ProptestConfig {
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    /// Random bytes into every target (with a mode byte in front, where targets have modes).
    #[test]
    fn fuzz_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        for t in TARGETS {
            (t.run)(&data);
        }
    }

    /// Mutated seeds: each target's seeds, mutated a few bytes at a time.
    #[test]
    fn fuzz_mutated_seeds(
        pick in any::<usize>(),
        ops in proptest::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 1..6),
    ) {
        for (name, inputs) in seeds_cached() {
            let seed = inputs[pick % inputs.len()].clone();
            (target(name).run)(&mutate(seed, &ops));
        }
    }
}

fn seeds_cached() -> &'static [(&'static str, Vec<Vec<u8>>)] {
    static S: OnceLock<Seeds> = OnceLock::new();
    S.get_or_init(seeds)
}
