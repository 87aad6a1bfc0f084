//! Tools around ArmoredTwins that are not part of the user-facing command line: the demo
//! (`at-demo`, run by `infra/demo.sh`) and the job-path benchmark (`at-bench`, run by
//! `infra/bench.sh`), and the sync path's throughput benchmark (`at-sync-bench`, `infra/bench.sh
//! --sync`). They drive the real brokers and services through `armored-client`.
#![forbid(unsafe_code)]

pub mod bench;
mod contacts;
pub mod demo;
mod procs;
pub mod site;
pub mod sync_bench;
