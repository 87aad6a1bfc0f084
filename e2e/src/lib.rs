//! Harness of the end-to-end tests: the brokers are the real mosquitto and Apache Kafka started by
//! `infra/start.sh` (addresses and passwords from `infra/env.sh`'s variables or its state dir);
//! every test gets its own topic prefix, consumer groups and twin ids, and runs the services
//! in-process through their `run(config, shutdown)` (MPC nodes also as processes).
#![forbid(unsafe_code)]

mod devices;
mod env;
pub mod load;
mod mqtt;
mod nodes;
mod pair;
mod receivers;
mod records;
mod services;

pub use devices::{applied, rejected, TestDevice};
pub use env::{free_addr, rand_id, repo_root, Env, SERIAL};
pub use mqtt::mqtt_login_ok;
pub use nodes::{wait_healthy, MpcNodes, NodeProcess};
pub use pair::Pair;
pub use receivers::consume;
pub use records::DeadLetter;
pub use services::Running;
