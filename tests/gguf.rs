//! GGUF: the tiny llama.cpp file of tests/fixtures/gguf_tiny imports with exactly the tensors
//! llama.cpp's own reader gives (scripts/make_gguf_expected.py) and its typed metadata; damaged
//! files are refused, never a panic.

mod common;

use common::*;
use nnsign::format::DType;

#[test]
fn tensors_and_metadata_match_llama_cpp_s_reader() {
    let got = nnsign::import::import(&[fixture("gguf_tiny/model.gguf")]).unwrap();
    let want = nnsign::import::import(&[fixture("gguf_tiny/expected.npz")]).unwrap();
    for w in &want.tensors {
        let g = got
            .tensors
            .iter()
            .find(|t| t.name == w.name)
            .unwrap_or_else(|| panic!("{} missing", w.name));
        assert_eq!((g.dtype, &g.shape), (w.dtype, &w.shape), "{}", w.name);
        assert_eq!(&g.bytes[..], &w.bytes[..], "{}", w.name);
    }
    let q = got
        .tensors
        .iter()
        .find(|t| t.name == "blk.0.ffn_down.weight")
        .unwrap();
    assert_eq!((q.dtype, q.shape.as_slice()), (DType::U8, &[272u64][..]));
    let l = &got.labels;
    assert_eq!(
        l["gguf.quantized"],
        r#"{"blk.0.ffn_down.weight":"Q8_0 [4, 64]"}"#
    );
    assert_eq!(l["gguf.general.name"], "str tiny-test");
    assert_eq!(l["gguf.test.answer"], "u32 42");
    assert_eq!(l["gguf.test.list"], "i32[] [1, 2, 3]");
    assert_eq!(l["gguf.llama.context_length"], "u32 64");
    // The metadata section itself, byte for byte: it holds "tiny-test".
    let meta = got
        .tensors
        .iter()
        .find(|t| t.name == "gguf.metadata")
        .unwrap();
    assert!(meta.bytes.windows(9).any(|w| w == b"tiny-test"));
}

#[test]
fn damaged_gguf_files_are_refused_never_panic() {
    let good = std::fs::read(fixture("gguf_tiny/model.gguf")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.gguf");
    let mut state = 0x6767_7566_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut refused = 0;
    for _ in 0..2000 {
        let mut bad = good.clone();
        // Damage the header and metadata, where the lengths are.
        for _ in 0..1 + next() % 3 {
            let i = 4 + (next() % 700) as usize;
            bad[i] = next() as u8;
        }
        if next() % 8 == 0 {
            bad.truncate((next() % bad.len() as u64) as usize);
        }
        std::fs::write(&path, &bad).unwrap();
        match std::panic::catch_unwind(|| nnsign::import::import(std::slice::from_ref(&path))) {
            Ok(Err(_)) => refused += 1,
            Ok(Ok(_)) => {}
            Err(_) => panic!("a damaged GGUF file panicked the importer: {bad:02x?}"),
        }
    }
    assert!(refused > 500, "{refused}");
    // A claimed 2^60 tensors, and a tensor past the end of the file.
    let mut bad = good.clone();
    bad[8..16].copy_from_slice(&(1u64 << 60).to_le_bytes());
    std::fs::write(&path, &bad).unwrap();
    let err = nnsign::import::import(std::slice::from_ref(&path))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("over the limits"), "{err}");
    std::fs::write(&path, &good[..good.len() - 100]).unwrap();
    let err = nnsign::import::import(std::slice::from_ref(&path))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("run past the end of the file"), "{err}");
}
