//! The pickle machine behind the PyTorch importer and `nnsign scan`, on arbitrary bytes: it may
//! refuse, never panic, hang or allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = nnsign::import::torch::load_pickle(data);
    let _ = nnsign::import::torch::pickle::scan_all(data, usize::MAX);
});
