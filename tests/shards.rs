//! Sharded artifacts (FORMAT.md section 14): `pack --shard-size` writes shard files beside
//! one signed `.nns`, every reader follows them, and a missing, swapped, duplicated, cut or
//! extended shard is refused with the integrity exit code, naming it.

mod common;

use std::path::{Path, PathBuf};

use common::{arrays, listing, nnsign, test_key, write_npy_f32, Run};

/// Four float32 tensors, packed sorted by name: `a` 3,000,000 bytes, `b` 1,000,000, `c` 40
/// (64 with its padding) and `d` 5,000,000: with 4 MiB shards, `a`, `b` and `c` fill the
/// first (4,000,064 bytes), and `d`, larger than a shard, is cut at its chunk start after
/// 4 MiB, its last 805,696 bytes in the third.
const SIZES: [(&str, usize); 4] = [("a", 750_000), ("b", 250_000), ("c", 10), ("d", 1_250_000)];
const SHARDS: [u64; 3] = [4_000_064, 4_194_304, 805_696];

fn inputs(dir: &Path) -> Vec<PathBuf> {
    SIZES
        .iter()
        .enumerate()
        .map(|(k, (name, n))| {
            let path = dir.join(format!("{name}.npy"));
            let values: Vec<f32> = (0..*n).map(|i| (i % 1000) as f32 + k as f32).collect();
            write_npy_f32(&path, &[*n as u64], &values);
            path
        })
        .collect()
}

fn pack(dir: &Path, out: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> = vec!["pack".into()];
    args.extend(inputs(dir).into_iter().map(Into::into));
    args.extend(["--sign".into(), test_key("test-a.key").into()]);
    args.extend(["-o".into(), out.into(), "--json".into()]);
    args.extend(extra.iter().map(Into::into));
    nnsign(args)
}

fn verify(art: &Path) -> Run {
    nnsign([
        "verify".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
    ])
}

fn shard(dir: &Path, k: usize) -> PathBuf {
    dir.join(format!("m-{k:05}-of-00003.nnshard"))
}

/// A folder holding `m.nns` packed with 4 MiB shards, and the npy inputs.
fn sharded() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let run = pack(
        dir.path(),
        &dir.path().join("m.nns"),
        &["--shard-size", "4MiB"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    dir
}

fn assert_refused(run: &Run, code: i32, says: &str) {
    assert_eq!(
        run.code, code,
        "stdout {} stderr {}",
        run.stdout, run.stderr
    );
    let line = run.stderr.lines().next().unwrap_or_default();
    assert!(line.contains(says), "{line:?} does not say {says:?}");
}

#[test]
fn shards_are_cut_at_tensor_and_chunk_starts_and_listed() {
    let dir = sharded();
    let names: Vec<String> = (1..=3)
        .map(|k| format!("m-{k:05}-of-00003.nnshard"))
        .chain(["a.npy", "b.npy", "c.npy", "d.npy", "m.nns"].map(String::from))
        .collect();
    let mut want = names.clone();
    want.sort();
    assert_eq!(listing(dir.path()), want);
    for (k, len) in SHARDS.iter().enumerate() {
        let meta = std::fs::metadata(shard(dir.path(), k + 1)).unwrap();
        assert_eq!(meta.len(), *len, "shard {}", k + 1);
    }
    let inspect = nnsign([
        "inspect".as_ref(),
        dir.path().join("m.nns").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(inspect.code, 0, "{}", inspect.stderr);
    let shards = inspect.json()["shards"].clone();
    let starts: Vec<u64> = (shards.as_array().unwrap().iter())
        .map(|s| s["payload_offset"].as_u64().unwrap())
        .collect();
    assert_eq!(starts, [0, SHARDS[0], SHARDS[0] + SHARDS[1]]);
    assert_eq!(
        shards[1]["file"].as_str().unwrap(),
        shard(dir.path(), 2).to_str().unwrap()
    );
    // The artifact's own file is the header alone.
    let head = std::fs::metadata(dir.path().join("m.nns")).unwrap().len();
    assert!(head < 4096, "{head}");
}

#[test]
fn a_sharded_artifact_verifies_loads_and_unpacks_to_the_same_tensors() {
    let dir = sharded();
    let art = dir.path().join("m.nns");
    let run = verify(&art);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = dir.path().join("out.npz");
    let run = nnsign([
        "unpack".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--format".as_ref(),
        "npz".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = arrays(&out);
    for (name, _) in SIZES {
        let want = arrays(&dir.path().join(format!("{name}.npy")));
        assert_eq!(got[name].1, want[name].1, "tensor {name}");
    }
    let run = nnsign([
        "verify-load".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
}

#[test]
fn a_missing_shard_is_refused_naming_it() {
    let dir = sharded();
    std::fs::remove_file(shard(dir.path(), 3)).unwrap();
    assert_refused(
        &verify(&dir.path().join("m.nns")),
        5,
        &format!(
            "shard 3 of 3 is missing: no file {}",
            shard(dir.path(), 3).display()
        ),
    );
}

#[test]
fn a_shard_cut_short_or_extended_is_refused_naming_it() {
    let dir = sharded();
    let path = shard(dir.path(), 2);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    assert_refused(
        &verify(&dir.path().join("m.nns")),
        5,
        &format!(
            "shard 2 of 3 ({}) has 4194303 bytes, the signed manifest says 4194304",
            path.display()
        ),
    );
    let mut longer = bytes.clone();
    longer.push(0);
    std::fs::write(&path, &longer).unwrap();
    assert_refused(
        &verify(&dir.path().join("m.nns")),
        5,
        "has 4194305 bytes, the signed manifest says 4194304",
    );
    // A byte appended to the header file is refused as any appended byte is.
    std::fs::write(&path, &bytes).unwrap();
    let head = dir.path().join("m.nns");
    let mut h = std::fs::read(&head).unwrap();
    h.push(0);
    std::fs::write(&head, &h).unwrap();
    assert_refused(
        &verify(&head),
        5,
        "1 unexpected bytes after the header: the payload of a sharded artifact is in its shard files alone",
    );
}

#[test]
fn a_changed_byte_in_a_shard_is_refused_naming_tensor_and_shard() {
    let dir = sharded();
    let path = shard(dir.path(), 3);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, &bytes).unwrap();
    assert_refused(
        &verify(&dir.path().join("m.nns")),
        5,
        &format!(
            "payload chunk 4 (bytes 4194304..5000000 of tensor \"d\", in shard 3 of 3 ({})) does not match its signed digest",
            path.display()
        ),
    );
}

/// Two shards of one length, swapped or one copied over the other, pass the length check and
/// fail their digests.
#[test]
fn swapped_or_duplicated_shards_of_equal_length_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let values: Vec<f32> = (0..1_048_576).map(|i| i as f32).collect();
    let x = dir.path().join("x.npy");
    let y = dir.path().join("y.npy");
    write_npy_f32(&x, &[1_048_576], &values);
    let other: Vec<f32> = values.iter().map(|v| -v).collect();
    write_npy_f32(&y, &[1_048_576], &other);
    let art = dir.path().join("two.nns");
    let run = nnsign([
        "pack".as_ref(),
        x.as_os_str(),
        y.as_os_str(),
        "--sign".as_ref(),
        test_key("test-a.key").as_os_str(),
        "-o".as_ref(),
        art.as_os_str(),
        "--shard-size".as_ref(),
        "4MiB".as_ref(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let one = dir.path().join("two-00001-of-00002.nnshard");
    let two = dir.path().join("two-00002-of-00002.nnshard");
    let (b1, b2) = (std::fs::read(&one).unwrap(), std::fs::read(&two).unwrap());
    assert_eq!((b1.len(), b2.len()), (4 << 20, 4 << 20));
    assert_eq!(verify(&art).code, 0);

    std::fs::write(&one, &b2).unwrap();
    std::fs::write(&two, &b1).unwrap();
    assert_refused(&verify(&art), 5, "of tensor \"x\", in shard 1 of 2");
    std::fs::write(&one, &b1).unwrap();
    assert_refused(&verify(&art), 5, "of tensor \"y\", in shard 2 of 2");
}

#[test]
fn an_encrypted_payload_is_sharded_too_and_verifies_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("secret.nns");
    let run = pack(
        dir.path(),
        &art,
        &[
            "--shard-size",
            "5MiB",
            "--encrypt-to",
            test_key("test-enc1.pub").to_str().unwrap(),
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    let shards = run.json()["shards"].as_array().unwrap().len();
    // 9,000,064 plaintext bytes and a small header: chunks of 4 MiB + 1 KiB of ciphertext
    // and a last one of about 0.6 MB; in 5 MiB shards, the first alone, the other two together.
    assert_eq!(shards, 2);
    assert_eq!(verify(&art).code, 0);
    let out = dir.path().join("out.npz");
    let run = nnsign([
        "unpack".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--decrypt-with".as_ref(),
        test_key("test-enc1.key").as_os_str(),
        "--format".as_ref(),
        "npz".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let got = arrays(&out);
    let want = arrays(&dir.path().join("d.npy"));
    assert_eq!(got["d"].1, want["d"].1);
}

#[test]
fn cosigning_keeps_the_shards_in_place_or_copies_them_for_a_new_name() {
    let dir = sharded();
    let art = dir.path().join("m.nns");
    let before = std::fs::read(shard(dir.path(), 2)).unwrap();
    let run = nnsign([
        "sign".as_ref(),
        art.as_os_str(),
        "--key".as_ref(),
        test_key("test-b.key").as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(std::fs::read(shard(dir.path(), 2)).unwrap(), before);
    let both = |a: &Path| {
        nnsign([
            "verify".as_ref(),
            a.as_os_str(),
            "--trust".as_ref(),
            test_key("test-b.pub").as_os_str(),
        ])
    };
    assert_eq!(both(&art).code, 0);

    let copy = dir.path().join("copy.nns");
    let run = nnsign([
        "sign".as_ref(),
        art.as_os_str(),
        "--key".as_ref(),
        test_key("test-b.key").as_os_str(),
        "-o".as_ref(),
        copy.as_os_str(),
    ]);
    // Already signed by test-b: refused, and nothing written.
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!dir.path().join("copy-00001-of-00003.nnshard").exists());

    let tmp = tempfile::tempdir().unwrap();
    let fresh = tmp.path().join("f.nns");
    assert_eq!(pack(tmp.path(), &fresh, &["--shard-size", "4MiB"]).code, 0);
    let run = nnsign([
        "sign".as_ref(),
        fresh.as_os_str(),
        "--key".as_ref(),
        test_key("test-b.key").as_os_str(),
        "-o".as_ref(),
        copy.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    for k in 1..=3 {
        let name = format!("-{k:05}-of-00003.nnshard");
        assert_eq!(
            std::fs::read(dir.path().join(format!("copy{name}"))).unwrap(),
            std::fs::read(tmp.path().join(format!("f{name}"))).unwrap()
        );
    }
    assert_eq!(both(&copy).code, 0);
}

#[test]
fn shard_sizes_below_one_chunk_or_unreadable_are_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("m.nns");
    for (size, says) in [
        ("1MiB", "below the smallest shard size, 4MiB"),
        ("2 parsecs", "unknown unit"),
        ("GiB", "is not a size"),
    ] {
        let run = pack(dir.path(), &out, &["--shard-size", size]);
        assert_eq!(run.code, 2, "{size}: {}", run.stderr);
        assert!(run.stderr.contains(says), "{size}: {}", run.stderr);
    }
    assert!(!out.exists());
    // Without .nns, `m` and `m.nns` would share shard names.
    let run = pack(dir.path(), &dir.path().join("m"), &["--shard-size", "4MiB"]);
    assert_eq!(run.code, 2, "{}", run.stdout);
    let message = run.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.ends_with(
            "a sharded artifact's name must end in .nns (its shard files are named after it)"
        ),
        "{message}"
    );
    assert!(!dir.path().join("m").exists());
}

/// A named pipe where the artifact or a shard should be is refused (exit 3) without waiting for
/// a writer.
#[test]
fn a_pipe_in_place_of_the_artifact_or_a_shard_is_refused_at_once() {
    let dir = sharded();
    let path = shard(dir.path(), 2);
    std::fs::remove_file(&path).unwrap();
    let fifo = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert_refused(&verify(&dir.path().join("m.nns")), 3, "not a regular file");
    let head = dir.path().join("pipe.nns");
    let fifo = std::ffi::CString::new(head.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
    assert_refused(&verify(&head), 3, "not a regular file");
}
