#![no_main]
// Entry point and property: `armored_crypto::fuzz_targets::audit_batch`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    armored_crypto::fuzz_targets::audit_batch(data);
});
