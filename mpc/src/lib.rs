//! Three-party Shamir MPC engine and contact tracing (`specs/mpc.md`). Work in progress.
#![forbid(unsafe_code)]
