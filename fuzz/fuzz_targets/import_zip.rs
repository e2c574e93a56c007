//! The zip-based importers: PyTorch checkpoints, Keras .keras files and .npz (zip checks first), on an arbitrary file that starts with the format's magic.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"PK\x03\x04").unwrap();
    file.write_all(data).unwrap();
    file.flush().unwrap();
    let _ = nnsign::import::import(&[file.path().to_owned()]);
});
