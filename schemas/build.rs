//! Generates the prost types from `proto/` with a pure-Rust protobuf compiler (`protox`), so a fresh
//! machine needs nothing but cargo.
use std::error::Error;

fn main() -> Result<(), Box<dyn Error>> {
    let protos = [
        "proto/armoredtwins/v1/capsule.proto",
        "proto/armoredtwins/v1/envelope.proto",
        "proto/armoredtwins/v1/control.proto",
        "proto/armoredtwins/v1/identity.proto",
        "proto/armoredtwins/v1/mpc.proto",
        "proto/armoredtwins/v1/request.proto",
        "proto/armoredtwins/v1/audit.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let fds = protox::compile(protos, ["proto"])?;
    let mut cfg = prost_build::Config::new();
    // Secret-bearing messages get a hand-written, redacting Debug.
    cfg.skip_debug([
        "armoredtwins.v1.KeyFile",
        "armoredtwins.v1.ShareBody",
        "armoredtwins.v1.RequestBody",
    ]);
    cfg.compile_fds(fds)?;
    Ok(())
}
