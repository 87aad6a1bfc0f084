//! blst backend (feature `blst`): constant-time scalar multiplication, faster pairings.
compile_error!("the blst backend is not written yet");
