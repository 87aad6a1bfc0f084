//! `atctl` as a library (the binary is a thin clap layer over it, and tests call it in-process):
//! the owner's management device (phases 1 and 2, M1) and a processing service (phase 6).
#![forbid(unsafe_code)]

pub mod backup;
pub mod bench;
pub mod demo;
pub mod demo_history;
pub mod demo_mpc;
pub mod demo_requests;
pub mod designate;
pub mod history;
pub mod history_cmd;
pub mod kafka;
pub mod mpc;
pub mod owner;
pub mod request;
pub mod service;
pub mod service_write;
pub mod view;
pub mod when;
pub mod write_token;
