//! Generates the prost types from `proto/`. Needs `protoc` (Debian `protobuf-compiler`; `.ci/run`
//! installs it) or `PROTOC` pointing at one.
fn main() -> std::io::Result<()> {
    let protos = [
        "proto/armoredtwins/v1/capsule.proto",
        "proto/armoredtwins/v1/envelope.proto",
        "proto/armoredtwins/v1/control.proto",
        "proto/armoredtwins/v1/identity.proto",
        "proto/armoredtwins/v1/mpc.proto",
    ];
    for p in &protos {
        println!("cargo:rerun-if-changed={p}");
    }
    let mut cfg = prost_build::Config::new();
    // Secret-bearing messages must not print their bytes.
    cfg.skip_debug(["armoredtwins.v1.KeyFile"]);
    cfg.compile_protos(&protos, &["proto"])
}
