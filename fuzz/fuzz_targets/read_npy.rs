//! The `.npy` reader `pack` and `verify-load --input` use on files of unknown origin.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nnsign::import::npy::parse_npy(std::path::Path::new("fuzz.npy"), "fuzz", data.to_vec());
});
