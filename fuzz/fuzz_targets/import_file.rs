//! Every importer `pack` picks by content (safetensors, .npy, .npz, PyTorch and Keras zips,
//! ONNX, GGUF) on an arbitrary file; the first byte chooses a format's magic so that each gets
//! its share of inputs.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let magic: &[u8] = match pick % 6 {
        0 => b"GGUF",
        1 => b"PK\x03\x04",
        2 => b"\x93NUMPY",
        3 => b"\x08",
        _ => b"",
    };
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(magic).unwrap();
    file.write_all(rest).unwrap();
    file.flush().unwrap();
    let _ = nnsign::import::import(&[file.path().to_owned()]);
    let _ = nnsign::scan::scan(file.path());
});
