//! PyTorch checkpoints: real `torch.save` archives (tests/fixtures/torch_real) import with the
//! values their makers documented, and raw pickles of state dicts (tests/fixtures/torch_pickle)
//! with the values numpy wrote beside them; files that are malformed, tampered with or that
//! would run code are refused by name, and no damage to a pickle can make the importer panic.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use common::*;
use nnsign::import::{self, ImportError};

fn int64s(t: &nnsign::import::SourceTensor) -> Vec<i64> {
    t.bytes
        .chunks(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

fn load(path: &Path) -> Result<Vec<nnsign::import::SourceTensor>, ImportError> {
    import::import(&[path.to_owned()]).map(|i| i.tensors)
}

#[test]
fn real_checkpoints_import_with_their_documented_values() {
    let t = load(&fixture("torch_real/test.pt")).unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(
        (t[0].name.as_str(), t[0].dtype, t[0].shape.as_slice()),
        ("test", nnsign::format::DType::I64, &[2u64, 4][..])
    );
    assert_eq!(int64s(&t[0]), vec![1, 2, 3, 4, 5, 6, 7, 8]);
    let t = load(&fixture("torch_real/test_with_key.pt")).unwrap();
    assert_eq!(t[0].name, "model_state_dict.test");
    assert_eq!(int64s(&t[0]), vec![1, 2, 3, 4, 5, 6, 7, 8]);
    // Stored with Fortran-order strides (1, 2, 6): read back in C order.
    let t = load(&fixture("torch_real/fortran_tensor_3d.pth")).unwrap();
    assert_eq!(
        (t[0].name.as_str(), t[0].shape.as_slice()),
        ("tensor_fortran", &[2u64, 3, 4][..])
    );
    assert_eq!(int64s(&t[0]), (1..25).collect::<Vec<i64>>());
}

/// `nnsign pack INPUT --sign test-a`, then `nnsign unpack` trusting test-a, in `dir`: the
/// verified safetensors file.
fn pack_and_unpack(dir: &Path, input: &Path) -> std::path::PathBuf {
    let art = dir.join("packed.nns");
    let out = dir.join("unpacked.safetensors");
    let key = test_key("test-a.key");
    let run = nnsign([
        "pack".as_ref(),
        input.as_os_str(),
        "--sign".as_ref(),
        key.as_os_str(),
        "-o".as_ref(),
        art.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let trust = test_key("test-a.pub");
    let run = nnsign([
        "unpack".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    out
}

#[test]
fn a_checkpoint_packs_and_unpacks_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let out = pack_and_unpack(dir.path(), &fixture("torch_real/fortran_tensor_3d.pth"));
    let bytes = std::fs::read(&out).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let t = st.tensor("tensor_fortran").unwrap();
    let got: Vec<i64> = t
        .data()
        .chunks(8)
        .map(|b| i64::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(got, (1..25).collect::<Vec<i64>>());
}

/// The records of a zip archive, in order.
fn records(path: &Path) -> Vec<(String, Vec<u8>)> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut e = z.by_index(i).unwrap();
            let mut b = Vec::new();
            e.read_to_end(&mut b).unwrap();
            (e.name().unwrap().into_owned(), b)
        })
        .collect()
}

/// Writes `entries` as a zip archive (stored unless `deflate` names the record).
fn write_zip(path: &Path, entries: &[(String, Vec<u8>)], deflate: Option<&str>) {
    let mut z = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
    for (name, bytes) in entries {
        let method = if Some(name.as_str()) == deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        z.start_file(name.as_str(), options).unwrap();
        z.write_all(bytes).unwrap();
    }
    z.finish().unwrap();
}

fn refused(dir: &Path, name: &str, entries: &[(String, Vec<u8>)], deflate: Option<&str>) -> String {
    let path: PathBuf = dir.join(name);
    write_zip(&path, entries, deflate);
    match load(&path) {
        Err(e) => e.to_string(),
        Ok(t) => panic!("{name}: accepted, {} tensors", t.len()),
    }
}

#[test]
fn malicious_and_malformed_checkpoints_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let good = records(&fixture("torch_real/test.pt"));
    let with = |name: &str, bytes: Vec<u8>| -> Vec<(String, Vec<u8>)> {
        good.iter()
            .map(|(n, b)| {
                if n == name {
                    (n.clone(), bytes.clone())
                } else {
                    (n.clone(), b.clone())
                }
            })
            .collect()
    };
    // data.pkl replaced with pickle.dumps of an object whose __reduce__ is
    // (os.system, ("echo owned",)): refused at the global, before anything refers to it.
    let evil =
        b"\x80\x02cposix\nsystem\nq\x00X\n\x00\x00\x00echo ownedq\x01\x85q\x02Rq\x03.".to_vec();
    let msg = refused(dir.path(), "evil.pt", &with("test/data.pkl", evil), None);
    assert!(
        msg.contains("data.pkl: refused global posix.system (at byte 2)"),
        "{msg}"
    );
    // builtins.eval through STACK_GLOBAL (protocol 4), and a torch global that is not a
    // tensor rebuilder.
    let evil = b"\x80\x04\x95\x1b\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94\x8c\x011\x94\x85\x94R\x94.".to_vec();
    let msg = refused(dir.path(), "eval.pt", &with("test/data.pkl", evil), None);
    assert!(msg.contains("refused global builtins.eval"), "{msg}");
    let evil = b"\x80\x02ctorch\nload\n.".to_vec();
    let msg = refused(dir.path(), "load.pt", &with("test/data.pkl", evil), None);
    assert!(msg.contains("refused global torch.load"), "{msg}");
    // Storages pickled on their own, as in a raw pickle of tensors: torch.save never writes
    // them in a checkpoint.
    let raw = std::fs::read(fixture("torch_pickle/state_dict.pkl")).unwrap();
    let msg = refused(dir.path(), "inline.pt", &with("test/data.pkl", raw), None);
    assert!(
        msg.contains("refused global torch.storage._load_from_bytes"),
        "{msg}"
    );
    // The container: an extra record, a second folder, a duplicate, a compressed record, a
    // storage record cut short, a flipped byte under a good CRC.
    let mut extra = good.clone();
    extra.push(("test/run_me.py".into(), b"import os".to_vec()));
    assert!(refused(dir.path(), "extra.pt", &extra, None)
        .contains("unexpected record \"test/run_me.py\""));
    let mut two = good.clone();
    two.push(("other/data/1".into(), vec![0; 8]));
    assert!(refused(dir.path(), "two.pt", &two, None).contains("records in two folders"));
    // A record written twice (scripts/make_torch_fixtures.py): which one counts is the
    // reader's guess, so neither does.
    let msg = match load(&fixture("torch_bad/duplicate.pt")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a duplicated record was accepted"),
    };
    assert!(
        msg.contains("lists 6 records but 5 distinct names"),
        "{msg}"
    );
    let msg = match load(&fixture("torch_bad/duplicate.npz")) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an .npz with a member twice was accepted"),
    };
    assert!(
        msg.contains("lists 2 records but 1 distinct names"),
        "{msg}"
    );
    assert!(
        refused(dir.path(), "deflated.pt", &good, Some("test/data/0")).contains("is compressed")
    );
    let msg = refused(
        dir.path(),
        "short.pt",
        &with("test/data/0", vec![0; 60]),
        None,
    );
    assert!(
        msg.contains("storage data/0 holds 60 bytes, 8 I64 elements need 64"),
        "{msg}"
    );
    // A byte of a stored record changed after the archive was written: the CRC catches it.
    let path = dir.path().join("flipped.pt");
    write_zip(&path, &good, None);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes
        .windows(8)
        .position(|w| w == 1i64.to_le_bytes())
        .unwrap();
    bytes[at] = 9;
    std::fs::write(&path, &bytes).unwrap();
    let msg = match load(&path) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("a flipped byte was accepted"),
    };
    assert!(
        msg.to_lowercase().contains("checksum") || msg.contains("crc"),
        "{msg}"
    );
}

/// 400 copies of `good`, each with one to three random bytes changed and one in five cut
/// short (the same ones every run).
fn damaged(good: &[u8]) -> Vec<Vec<u8>> {
    let mut state = 0x0bad_5eed_u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    (0..400)
        .map(|_| {
            let mut bad = good.to_vec();
            for _ in 0..1 + next() % 3 {
                let i = (next() % bad.len() as u64) as usize;
                bad[i] = next() as u8;
            }
            if next() % 5 == 0 {
                bad.truncate((next() % bad.len() as u64) as usize);
            }
            bad
        })
        .collect()
}

#[test]
fn damaged_pickles_are_refused_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let good = records(&fixture("torch_real/test_with_key.pt"));
    let pkl = good
        .iter()
        .find(|(n, _)| n.ends_with("data.pkl"))
        .unwrap()
        .1
        .clone();
    let path = dir.path().join("bad.pt");
    let mut refusals = 0;
    for bad in damaged(&pkl) {
        let entries: Vec<(String, Vec<u8>)> = good
            .iter()
            .map(|(n, b)| {
                (
                    n.clone(),
                    if n.ends_with("data.pkl") {
                        bad.clone()
                    } else {
                        b.clone()
                    },
                )
            })
            .collect();
        write_zip(&path, &entries, None);
        match std::panic::catch_unwind(|| load(&path)) {
            Ok(Err(_)) => refusals += 1,
            Ok(Ok(_)) => {}
            Err(_) => panic!("the importer panicked on a damaged pickle: {bad:02x?}"),
        }
    }
    assert!(refusals > 300, "{refusals}");
}

#[test]
fn legacy_checkpoints_import_and_raw_pickles_are_refused() {
    // scripts/make_torch_fixtures.py: the pre-1.6 layout, a Fortran-order float tensor and a
    // nested int64 one.
    let t = load(&fixture("torch_legacy/legacy.pt")).unwrap();
    let w = t.iter().find(|t| t.name == "w").unwrap();
    let floats: Vec<f32> = w
        .bytes
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    assert_eq!(
        (w.shape.as_slice(), floats),
        (&[2u64, 3][..], vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0])
    );
    let b = t.iter().find(|t| t.name == "n.b").unwrap();
    assert_eq!(int64s(b), vec![7, -8]);
    // Bytes after the last storage, and a storage cut short.
    let good = std::fs::read(fixture("torch_legacy/legacy.pt")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.pt");
    for (bad, message) in [
        (
            [good.clone(), b"extra".to_vec()].concat(),
            "5 bytes follow the last storage",
        ),
        (
            good[..good.len() - 4].to_vec(),
            "run past the end of the stream",
        ),
    ] {
        std::fs::write(&path, &bad).unwrap();
        let err = load(&path).err().unwrap().to_string();
        assert!(err.contains(message), "{err}");
    }
    // Any other pickle is refused as such, pointing at scan.
    std::fs::write(&path, b"\x80\x02}q\x00.").unwrap();
    let err = load(&path).err().unwrap().to_string();
    assert!(
        err.contains("a raw pickle") && err.contains("nnsign scan"),
        "{err}"
    );
}

/// Name, dtype, shape and bytes of each tensor, by name.
fn values(
    tensors: &[nnsign::import::SourceTensor],
) -> BTreeMap<String, (String, Vec<u64>, Vec<u8>)> {
    (tensors.iter())
        .map(|t| {
            let v = (t.dtype.to_string(), t.shape.clone(), t.bytes.to_vec());
            (t.name.clone(), v)
        })
        .collect()
}

#[test]
fn raw_pickles_of_state_dicts_pack_and_unpack_bit_identical() {
    // scripts/make_torch_fixtures.py: pickle.dump(model.state_dict(), f) as PyTorch 2.x pickles
    // tensors, each storage a legacy torch.save stream in bytes; expected.npz holds numpy's
    // values: a weight, a bias with -0.0 and a subnormal, a 0-d int64, a Fortran-order view,
    // and two views of one storage at offsets 0 and 4.
    let expected = values(&load(&fixture("torch_pickle/expected.npz")).unwrap());
    assert_eq!(
        expected.keys().collect::<Vec<_>>(),
        [
            "attn.kv",
            "attn.q",
            "bn.num_batches_tracked",
            "fc.bias",
            "fc.weight",
            "proj.weight"
        ]
    );
    let dir = tempfile::tempdir().unwrap();
    let out = pack_and_unpack(dir.path(), &fixture("torch_pickle/state_dict.pkl"));
    assert_eq!(values(&load(&out).unwrap()), expected);
    // The same at Python's default protocol (4: bytes as BINBYTES, frames); with the two
    // views' storage pickled once and shared through the memo; and as a big-endian machine
    // writes it (torch writes storages little-endian there too; only the streams' system info
    // says "little_endian": False).
    for other in [
        "state_dict_protocol4.pkl",
        "memo_shared.pkl",
        "big_endian_host.pkl",
    ] {
        let got = load(&fixture(&format!("torch_pickle/{other}"))).unwrap();
        assert_eq!(values(&got), expected, "{other}");
    }
}

#[test]
fn hostile_raw_pickles_are_refused_each_with_its_message() {
    // tests/fixtures/hostile (scripts/make_hostile_fixtures.py): raw pickles of state dicts
    // with payloads, and storages whose torch.save streams are hostile or broken; cases.json
    // gives each one's message.
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("hostile/cases.json")).unwrap())
            .unwrap();
    let raw: Vec<&serde_json::Value> = (cases["cases"].as_array().unwrap().iter())
        .filter(|c| {
            let file = c["file"].as_str().unwrap();
            file.starts_with("raw_state_dict_") || file.starts_with("storage_")
        })
        .collect();
    assert_eq!(raw.len(), 15);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.nns");
    for case in raw {
        let path = fixture("hostile").join(case["file"].as_str().unwrap());
        let message = case["expect_message"].as_str().unwrap();
        assert_eq!(case["expect_exit"], 1, "{case}");
        match load(&path) {
            Err(ImportError::Invalid { path: p, why }) => {
                assert_eq!(p, path);
                assert!(why.contains(message), "{}: {why}", path.display());
            }
            other => panic!("{}: {:?}", path.display(), other.map(|t| t.len())),
        }
        pack_is_refused(&path, &out, message);
    }
}

/// `pack PATH -o OUT` exits 1 with one error line naming the file and holding `message`, and
/// writes nothing.
fn pack_is_refused(path: &Path, out: &Path, message: &str) {
    let run = nnsign([
        "pack".as_ref(),
        path.as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.lines().count() == 1
            && run.stderr.contains(&format!("{}: ", path.display()))
            && run.stderr.contains(message),
        "{message}: {run:?}"
    );
    assert!(!out.exists());
}

#[test]
fn a_storage_key_used_with_two_dtypes_or_sizes_is_refused() {
    // scripts/make_hostile_fixtures.py: torch.load types a storage by the first persistent id
    // that names its key, so a second use with another dtype or element count would read its
    // bytes differently here than in torch. In a checkpoint, a legacy torch.save file and a
    // raw pickle's storage stream, `pack` refuses it by the key and both uses, one line naming
    // the file.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.nns");
    for (file, message) in [
        (
            "tensor_storage_two_dtypes.pt",
            "data.pkl: persistent id: storage \"0\" is used as FloatStorage and as DoubleStorage; torch.load would read it as one type, so its values are ambiguous",
        ),
        (
            "tensor_storage_two_sizes.pt",
            "data.pkl: persistent id: storage \"0\" is used with 8 elements and with 4; torch.load would read it at one size, so its values are ambiguous",
        ),
        (
            "legacy_storage_two_dtypes.pt",
            "legacy torch.save file: the object: persistent id: storage \"140001\" is used as FloatStorage and as IntStorage; torch.load would read it as one type",
        ),
        (
            "storage_stream_two_dtypes.pkl",
            "its torch.save stream: the object: persistent id: storage \"0\" is used as FloatStorage and as LongStorage; torch.load would read it as one type",
        ),
    ] {
        pack_is_refused(&fixture("hostile").join(file), &out, message);
    }
}

#[test]
fn damaged_raw_pickles_are_refused_never_panic() {
    let good = std::fs::read(fixture("torch_pickle/state_dict.pkl")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.pkl");
    let mut refusals = 0;
    for bad in damaged(&good) {
        std::fs::write(&path, &bad).unwrap();
        match std::panic::catch_unwind(|| (load(&path), nnsign::scan::scan(&path))) {
            Ok((Err(_), _)) => refusals += 1,
            Ok((Ok(_), _)) => {}
            Err(_) => panic!("a damaged raw pickle panicked the importer or scan: {bad:02x?}"),
        }
    }
    assert!(refusals > 300, "{refusals}");
}

#[test]
fn zip_bombs_are_refused_before_inflating() {
    // An .npz member of 4 MiB of zeros deflates about 1000:1.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bomb.npz");
    {
        use std::io::Write;
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        z.start_file("zeros.npy", options).unwrap();
        let mut header = b"\x93NUMPY\x01\x00v\x00{'descr': '|u1', 'fortran_order': False, 'shape': (4194304,), }".to_vec();
        header.resize(127, b' ');
        header.push(b'\n');
        z.write_all(&header).unwrap();
        z.write_all(&vec![0u8; 4 << 20]).unwrap();
        z.finish().unwrap();
    }
    assert!(std::fs::metadata(&path).unwrap().len() < 16 << 10);
    let err = load(&path).err().unwrap().to_string();
    assert!(err.contains("refused as a zip bomb"), "{err}");
}
