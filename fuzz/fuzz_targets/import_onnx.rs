//! The ONNX importer on arbitrary bytes (decoded as a ModelProto, then mapped onto the schema
//! and validated).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::path::Path::new("/nonexistent-fuzz-dir/model.onnx");
    if let Ok(m) = nnsign::import::onnx::read(path, data, false) {
        if let Some(arch) = m.arch {
            let infos: Vec<nnsign::format::TensorInfo> = m.tensors.iter().map(|t| t.info()).collect();
            let _ = arch.validate(&infos);
        }
    }
});
