//! Topic names: DESIGN's table (`infra/topics.tsv`, the one list the scripts use too) with the
//! configured prefix.

use armored_schemas::topics as names;

/// Topic names with the configured prefix.
#[derive(Clone, Debug, Default)]
pub struct Topics {
    prefix: String,
}

impl Topics {
    /// Topics under `prefix` (empty in production).
    pub fn new(prefix: &str) -> Self {
        Self {
            prefix: prefix.to_string(),
        }
    }
    /// `prefix + base`.
    pub fn name(&self, base: &str) -> String {
        format!("{}{}", self.prefix, base)
    }
    /// State changes.
    pub fn sync(&self) -> String {
        self.name(names::SYNC)
    }
    /// Deliveries.
    pub fn deliver(&self) -> String {
        self.name(names::DELIVER)
    }
    /// Re-key uploads and revocations.
    pub fn rekeys(&self) -> String {
        self.name(names::REKEYS)
    }
    /// Registry.
    pub fn registry(&self) -> String {
        self.name(names::REGISTRY)
    }
    /// Tokens.
    pub fn tokens(&self) -> String {
        self.name(names::TOKENS)
    }
    /// Dead letters.
    pub fn dlq(&self) -> String {
        self.name(names::DLQ)
    }
    /// The workers' signed audit batches.
    pub fn audit(&self) -> String {
        self.name(names::AUDIT)
    }
    /// Requests.
    pub fn requests(&self) -> String {
        self.name(names::REQUESTS)
    }
    /// Responses.
    pub fn responses(&self) -> String {
        self.name(names::RESPONSES)
    }
    /// Control records.
    pub fn control(&self) -> String {
        self.name(names::CONTROL)
    }
    /// Share topic of MPC node `j`.
    pub fn mpc_shares(&self, j: u32) -> String {
        self.name(&names::mpc_shares(j))
    }
    /// `at.mpc.jobs.v1`.
    pub fn mpc_jobs(&self) -> String {
        self.name(names::MPC_JOBS)
    }
    /// `at.mpc.peer.v1`.
    pub fn mpc_peer(&self) -> String {
        self.name(names::MPC_PEER)
    }
    /// `at.mpc.results.v1`.
    pub fn mpc_results(&self) -> String {
        self.name(names::MPC_RESULTS)
    }
    /// Every topic of DESIGN's table with its partition count, from `infra/topics.tsv` (the one
    /// list the scripts use too).
    pub fn all(&self) -> Vec<(String, i32)> {
        table()
            .map(|(name, partitions, _)| (self.name(name), partitions))
            .collect()
    }
}

/// The rows of `infra/topics.tsv`: (base name, partitions, retention.ms).
fn table() -> impl Iterator<Item = (&'static str, i32, i64)> {
    TOPICS_TSV
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .filter_map(|l| {
            let mut cols = l.split('\t').map(str::trim);
            let name = cols.next()?;
            let partitions = cols.next()?.parse().ok()?;
            let retention = cols.next()?.parse().ok()?;
            Some((name, partitions, retention))
        })
}

/// retention.ms of the table's topic whose name `topic` ends with (after a prefix), if any.
pub(crate) fn table_retention(topic: &str) -> Option<i64> {
    table()
        .find(|(base, _, _)| {
            topic
                .strip_suffix(base)
                .is_some_and(|p| p.is_empty() || p.ends_with('.'))
        })
        .map(|(_, _, retention)| retention)
}

const TOPICS_TSV: &str = include_str!("../../infra/topics.tsv");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_from_the_table_with_the_prefix() {
        let all = Topics::new("t1.").all();
        assert_eq!(all.len(), 16);
        assert!(all.contains(&("t1.at.sync.v1".to_string(), 12)));
        assert!(all.contains(&("t1.at.mpc.jobs.v1".to_string(), 1)));
        assert!(all.contains(&(Topics::new("t1.").mpc_shares(3), 6)));
    }

    #[test]
    fn retention_comes_from_the_table_by_base_name() {
        assert_eq!(table_retention("t1.at.sync.v1"), Some(-1));
        assert_eq!(table_retention("at.deliver.v1"), Some(604_800_000));
        assert_eq!(table_retention("t1.at.dlq.v1"), Some(1_209_600_000));
        assert_eq!(
            table_retention("t1.xat.sync.v1"),
            None,
            "only whole names match"
        );
        assert_eq!(table_retention("t1.probe"), None);
    }
}
