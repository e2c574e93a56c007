//! Models in several files: a Hugging Face sharded safetensors model read from its index, and
//! llama.cpp GGUF splits read from the first (tests/fixtures/multifile, made by
//! scripts/make_multifile_fixtures.py with huggingface_hub, safetensors and gguf). Each packs
//! into a sharded artifact (about as many shards as input files unless --shard-size says
//! otherwise) whose tensors are the values the tools wrote; an index or split that names a
//! file outside its folder, a missing file, or tensors where the index does not put them is
//! refused with exit 1 and one line naming the file and the problem.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use common::{fixture, nnsign, test_key, Run};

/// A tensor as `pack` reads it from a file: dtype, shape and little-endian bytes.
type Raw = (nnsign::format::DType, Vec<u64>, Vec<u8>);

/// The tensors of a file `pack` reads (here `.npz` files, numpy's or nnsign's), by name.
fn arrays(path: &Path) -> BTreeMap<String, Raw> {
    let imported = nnsign::import::import(&[path.to_owned()]).unwrap();
    (imported.tensors.into_iter())
        .map(|t| (t.name.clone(), (t.dtype, t.shape.clone(), t.bytes.to_vec())))
        .collect()
}

const HF_SHARDS: [&str; 4] = [
    "model-00001-of-00004.safetensors",
    "model-00002-of-00004.safetensors",
    "model-00003-of-00004.safetensors",
    "model-00004-of-00004.safetensors",
];
const SPLITS: [&str; 3] = [
    "tiny-00001-of-00003.gguf",
    "tiny-00002-of-00003.gguf",
    "tiny-00003-of-00003.gguf",
];

/// `nnsign pack INPUTS -o OUT --json --sign test-a.key EXTRA`.
fn pack(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> Run {
    let key = test_key("test-a.key");
    let mut with_key = vec!["--json", "--sign", key.to_str().unwrap()];
    with_key.extend(extra);
    unsigned(inputs, out, &with_key)
}

/// `nnsign pack INPUTS -o OUT EXTRA`: unsigned, so that stderr holds nothing but the error (a
/// key file checked out with mode 0644 gets a warning).
fn unsigned(inputs: &[PathBuf], out: &Path, extra: &[&str]) -> Run {
    let mut args: Vec<std::ffi::OsString> = vec!["pack".into()];
    args.extend(inputs.iter().map(Into::into));
    args.extend(["-o".into(), out.into()]);
    args.extend(extra.iter().map(Into::into));
    nnsign(args)
}

/// Verifies `art` and unpacks it to an `.npz` in `dir`: its tensors, by name.
fn verified_tensors(art: &Path, dir: &Path) -> BTreeMap<String, Raw> {
    let trust = test_key("test-a.pub");
    let run = nnsign([
        "verify".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let out = dir.join("unpacked.npz");
    let run = nnsign([
        "unpack".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        trust.as_os_str(),
        "--format".as_ref(),
        "npz".as_ref(),
        "-o".as_ref(),
        out.as_os_str(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    arrays(&out)
}

fn labels(art: &Path) -> serde_json::Value {
    let run = nnsign(["inspect".as_ref(), art.as_os_str(), "--json".as_ref()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.json()["model"]["labels"].clone()
}

/// Exit 1, and a first line that is exactly `nnsign: error: PATH: WHY`.
fn assert_refused(run: &Run, path: &Path, why: &str) {
    assert_eq!(run.code, 1, "stdout {} stderr {}", run.stdout, run.stderr);
    let line = run.stderr.lines().next().unwrap_or_default();
    assert_eq!(line, format!("nnsign: error: {}: {why}", path.display()));
}

/// A copy of a fixture folder's files `names` in a new temporary folder.
fn copy(folder: &str, names: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for name in names {
        let from = fixture(&format!("multifile/{folder}/{name}"));
        std::fs::copy(from, dir.path().join(name)).unwrap();
    }
    dir
}

#[test]
fn an_hf_index_packs_sharded_with_the_values_numpy_made() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("model.nns");
    let run = pack(
        &[fixture("multifile/hf/model.safetensors.index.json")],
        &art,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Four shards of under 1 KiB: one 4 MiB shard, the least there is.
    let shards = run.json()["shards"].as_array().unwrap().len();
    assert_eq!(shards, 1);
    assert!(dir.path().join("model-00001-of-00001.nnshard").exists());
    let got = verified_tensors(&art, dir.path());
    let want = arrays(&fixture("multifile/hf/expected.npz"));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, tensor) in &want {
        assert_eq!(&got[name], tensor, "{name}");
    }
    // The shards' __metadata__ and the index's string metadata; total_size, a number, is not a
    // label. The name is the index's without its extensions.
    let l = labels(&art);
    assert_eq!(
        l,
        serde_json::json!({"format": "pt", "note": "tiny sharded fixture"})
    );
    let run = nnsign(["inspect".as_ref(), art.as_os_str(), "--json".as_ref()]);
    assert_eq!(run.json()["model"]["name"], "model");
}

#[test]
fn gguf_splits_pack_from_the_first_with_the_values_gguf_reads() {
    let dir = tempfile::tempdir().unwrap();
    let art = dir.path().join("tiny.nns");
    let run = pack(
        &[fixture(&format!("multifile/gguf/{}", SPLITS[0]))],
        &art,
        &[],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["shards"].as_array().unwrap().len(), 1);
    assert_eq!(run.json()["tensors"], 6);
    let got = verified_tensors(&art, dir.path());
    let want = arrays(&fixture("multifile/gguf/expected.npz"));
    for (name, tensor) in &want {
        assert_eq!(&got[name], tensor, "{name}");
    }
    // The five tensors gguf reads, and the first split's metadata section.
    assert_eq!(got.len(), want.len() + 1);
    let meta = &got["gguf.metadata"].2;
    assert!(meta.windows(10).any(|w| w == b"tiny-split"));
    let l = labels(&art);
    assert_eq!(l["gguf.general.name"], "str tiny-split");
    assert_eq!(l["gguf.test.answer"], "u32 42");
    assert_eq!(
        l["gguf.quantized"],
        r#"{"blk.0.ffn_down.weight":"Q8_0 [4, 64]"}"#
    );
    let keys: Vec<&String> = l.as_object().unwrap().keys().collect();
    assert!(
        keys.iter().all(|k| !k.starts_with("gguf.split.")),
        "{keys:?}"
    );
    let run = nnsign(["inspect".as_ref(), art.as_os_str(), "--json".as_ref()]);
    assert_eq!(run.json()["model"]["name"], "tiny");
}

#[test]
fn every_split_given_in_any_order_is_read_once() {
    let splits: Vec<PathBuf> = (SPLITS.iter())
        .map(|s| fixture(&format!("multifile/gguf/{s}")))
        .collect();
    let one = nnsign::import::import(&splits[..1]).unwrap();
    for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
        let given: Vec<PathBuf> = order.iter().map(|&i| splits[i].clone()).collect();
        let all = nnsign::import::import(&given).unwrap();
        let names = |i: &nnsign::import::Imported| {
            let mut n: Vec<String> = i.tensors.iter().map(|t| t.name.clone()).collect();
            n.sort();
            n
        };
        assert_eq!(names(&all), names(&one), "{order:?}");
        assert_eq!(all.labels, one.labels);
    }
    let dir = tempfile::tempdir().unwrap();
    let run = pack(&splits, &dir.path().join("all.nns"), &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["tensors"], 6);
    // An index's shards given after it are skipped the same way.
    let mut inputs = vec![fixture("multifile/hf/model.safetensors.index.json")];
    inputs.extend(HF_SHARDS.map(|s| fixture(&format!("multifile/hf/{s}"))));
    assert_eq!(nnsign::import::import(&inputs).unwrap().tensors.len(), 8);
}

#[test]
fn the_default_shard_size_follows_the_largest_input_file() {
    let gguf = nnsign::import::import(&[fixture(&format!("multifile/gguf/{}", SPLITS[0]))]);
    assert_eq!(gguf.unwrap().suggested_shard_size, Some(4 << 20));
    let one = nnsign::import::import(&[fixture("gguf_tiny/model.gguf")]).unwrap();
    assert_eq!(one.suggested_shard_size, None);

    // Three shards of two 3,000,000-byte tensors each: the largest file is just over 6 MB, so
    // shards of 8 MiB, one per file.
    let dir = tempfile::tempdir().unwrap();
    let mut map = serde_json::Map::new();
    for (k, file) in ["a", "b", "c"].iter().enumerate() {
        let name = format!("big-{:05}-of-00003.safetensors", k + 1);
        let data: Vec<Vec<u8>> = (0..2).map(|i| vec![(k * 2 + i) as u8; 3_000_000]).collect();
        let tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = (0..2)
            .map(|i| {
                let view = safetensors::tensor::TensorView::new(
                    safetensors::Dtype::U8,
                    vec![3_000_000],
                    &data[i],
                )
                .unwrap();
                (format!("{file}.{i}"), view)
            })
            .collect();
        for (t, _) in &tensors {
            map.insert(t.clone(), name.clone().into());
        }
        safetensors::tensor::serialize_to_file(tensors, None, &dir.path().join(&name)).unwrap();
    }
    let index = dir.path().join("big.safetensors.index.json");
    let text = serde_json::json!({"metadata": {"total_size": 18_000_000}, "weight_map": map});
    std::fs::write(&index, text.to_string()).unwrap();
    let imported = nnsign::import::import(std::slice::from_ref(&index)).unwrap();
    assert_eq!(imported.suggested_shard_size, Some(8 << 20));
    let art = dir.path().join("big.nns");
    let run = pack(std::slice::from_ref(&index), &art, &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let bytes: Vec<u64> = (run.json()["shards"].as_array().unwrap().iter())
        .map(|s| s["bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(bytes, [6_000_000; 3]);
    assert_eq!(verified_tensors(&art, dir.path()).len(), 6);
    // --shard-size wins.
    let run = pack(
        &[index],
        &dir.path().join("two.nns"),
        &["--shard-size", "12MiB"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.json()["shards"].as_array().unwrap().len(), 2);
}

/// The fixture's index with `edit` applied, in a folder with copies of its shards.
fn edited_index(edit: impl FnOnce(&mut serde_json::Value)) -> (tempfile::TempDir, PathBuf) {
    let dir = copy("hf", &HF_SHARDS);
    let text = std::fs::read_to_string(fixture("multifile/hf/model.safetensors.index.json"));
    let mut index: serde_json::Value = serde_json::from_str(&text.unwrap()).unwrap();
    edit(&mut index);
    let path = dir.path().join("model.safetensors.index.json");
    std::fs::write(&path, serde_json::to_string_pretty(&index).unwrap()).unwrap();
    (dir, path)
}

fn pack_index(index: &Path) -> Run {
    let out = index.with_file_name("out.nns");
    unsigned(&[index.to_owned()], &out, &[])
}

#[test]
fn fail_an_index_naming_a_file_outside_its_folder() {
    for name in [
        "../model-00004-of-00004.safetensors",
        "/etc/passwd",
        "sub/model-00004-of-00004.safetensors",
        "..\\model-00004-of-00004.safetensors",
        "..",
        "",
    ] {
        let (_dir, index) = edited_index(|i| i["weight_map"]["lm_head.weight"] = name.into());
        assert_refused(
            &pack_index(&index),
            &index,
            &format!(
                "weight_map puts tensor \"lm_head.weight\" in {name:?}, which is not a plain file name in the index's folder"
            ),
        );
    }
}

#[test]
fn fail_an_index_naming_a_missing_file() {
    let (dir, index) = edited_index(|_| {});
    std::fs::remove_file(dir.path().join(HF_SHARDS[2])).unwrap();
    assert_refused(
        &pack_index(&index),
        &index,
        "weight_map names \"model-00003-of-00004.safetensors\", but there is no such file beside the index",
    );
}

#[test]
fn fail_a_tensor_in_another_file_than_the_index_says() {
    let (dir, index) = edited_index(|i| i["weight_map"]["lm_head.weight"] = HF_SHARDS[0].into());
    // model-00004 is then named by nothing, and not read; model-00001 lacks the tensor.
    assert_refused(
        &pack_index(&index),
        &dir.path().join(HF_SHARDS[0]),
        &format!(
            "the safetensors index {} puts tensor \"lm_head.weight\" in this file, which does not hold it",
            index.display()
        ),
    );
    let (dir, index) = edited_index(|i| {
        i["weight_map"]["model.layers.0.attn.q.bias"] = HF_SHARDS[3].into();
    });
    assert_refused(
        &pack_index(&index),
        &dir.path().join(HF_SHARDS[1]),
        &format!(
            "holds tensor \"model.layers.0.attn.q.bias\", which the safetensors index {} puts in {:?}",
            index.display(),
            HF_SHARDS[3]
        ),
    );
    let (dir, index) = edited_index(|i| {
        i["weight_map"]
            .as_object_mut()
            .unwrap()
            .remove("model.scale");
    });
    assert_refused(
        &pack_index(&index),
        &dir.path().join(HF_SHARDS[2]),
        &format!(
            "holds tensor \"model.scale\", which the safetensors index {} does not list",
            index.display()
        ),
    );
}

#[test]
fn fail_a_tensor_in_two_shards() {
    // A copy of the third shard that the index names for one of its tensors: the others are
    // then in both files.
    let (dir, index) = edited_index(|i| i["weight_map"]["model.scale"] = "copy.safetensors".into());
    std::fs::copy(
        dir.path().join(HF_SHARDS[2]),
        dir.path().join("copy.safetensors"),
    )
    .unwrap();
    assert_refused(
        &pack_index(&index),
        &dir.path().join("copy.safetensors"),
        &format!(
            "tensor \"model.layers.0.norm.weight\" is also in {:?}, where the safetensors index {} puts it: a tensor must be in one shard",
            HF_SHARDS[2],
            index.display()
        ),
    );
}

#[test]
fn fail_json_that_is_not_an_index() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    for (text, why) in [
        (
            r#"{"architectures": ["Llama"]}"#,
            "unknown field `architectures`, expected `metadata` or `weight_map` at line 1 column 16",
        ),
        (r#"{"metadata": {}}"#, "missing field `weight_map` at line 1 column 16"),
        (
            r#"{"weight_map": {"a": "x.safetensors", "a": "y.safetensors"}}"#,
            "\"a\" appears twice at line 1 column 41",
        ),
        (
            r#"{"weight_map": {"a": 3}}"#,
            "invalid type: integer `3`, expected a string at line 1 column 22",
        ),
    ] {
        std::fs::write(&path, text).unwrap();
        assert_refused(
            &pack_index(&path),
            &path,
            &format!("a JSON file, but not a safetensors index (an object with \"weight_map\" and optionally \"metadata\"): {why}"),
        );
    }
    std::fs::write(&path, r#"{"weight_map": {}}"#).unwrap();
    assert_refused(
        &pack_index(&path),
        &path,
        "the safetensors index's weight_map is empty",
    );
    // Over the size limit: refused before a byte of it is parsed.
    let f = std::fs::File::create(&path).unwrap();
    std::io::Write::write_all(&mut &f, b"{           ").unwrap();
    f.set_len(nnsign::import::safetensors::MAX_INDEX_LEN + 1)
        .unwrap();
    assert_refused(
        &pack_index(&path),
        &path,
        "a JSON file of 67108865 bytes, over the 67108864-byte limit for a safetensors index",
    );
}

#[test]
fn fail_a_shard_given_before_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let shard = fixture(&format!("multifile/hf/{}", HF_SHARDS[1]));
    let index = fixture("multifile/hf/model.safetensors.index.json");
    let run = unsigned(
        &[shard.clone(), index.clone()],
        &dir.path().join("m.nns"),
        &[],
    );
    assert_refused(
        &run,
        &shard,
        &format!(
            "given before {}, which brings it in too; give {} alone, or first",
            index.display(),
            index.display()
        ),
    );
}

fn splits_copy() -> tempfile::TempDir {
    copy("gguf", &SPLITS)
}

/// Sets the little-endian value of metadata `key` (a u16 or i32, as gguf writes them) in `path`.
fn set_split_key(path: &Path, key: &str, value: i64) {
    let mut bytes = std::fs::read(path).unwrap();
    let at = (bytes.windows(key.len()))
        .position(|w| w == key.as_bytes())
        .unwrap()
        + key.len();
    let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let width = if kind == 2 { 2 } else { 4 };
    bytes[at + 4..at + 4 + width].copy_from_slice(&value.to_le_bytes()[..width]);
    std::fs::write(path, bytes).unwrap();
}

fn pack_first(dir: &Path) -> Run {
    unsigned(&[dir.join(SPLITS[0])], &dir.join("out.nns"), &[])
}

#[test]
fn fail_a_missing_gguf_split() {
    let dir = splits_copy();
    std::fs::remove_file(dir.path().join(SPLITS[1])).unwrap();
    assert_refused(
        &pack_first(dir.path()),
        &dir.path().join(SPLITS[1]),
        "GGUF: split 2 of 3 is missing (tiny-00001-of-00003.gguf is the first of 3)",
    );
}

#[test]
fn fail_gguf_splits_that_disagree() {
    let dir = splits_copy();
    set_split_key(&dir.path().join(SPLITS[2]), "split.count", 4);
    assert_refused(
        &pack_first(dir.path()),
        &dir.path().join(SPLITS[2]),
        "GGUF: split.count is 4 here but 3 in tiny-00001-of-00003.gguf",
    );
    let dir = splits_copy();
    set_split_key(&dir.path().join(SPLITS[2]), "split.no", 1);
    assert_refused(
        &pack_first(dir.path()),
        &dir.path().join(SPLITS[2]),
        "GGUF: split.no is 1 here, but as split 3 of 3 it must be 2",
    );
    let dir = splits_copy();
    for s in SPLITS {
        set_split_key(&dir.path().join(s), "split.tensors.count", 6);
    }
    assert_refused(
        &pack_first(dir.path()),
        &dir.path().join(SPLITS[0]),
        "GGUF: its 3 splits hold 5 tensors, but split.tensors.count says 6",
    );
    // A first split renamed: the others' names cannot be made from its name.
    let dir = splits_copy();
    let renamed = dir.path().join("tiny.gguf");
    std::fs::rename(dir.path().join(SPLITS[0]), &renamed).unwrap();
    let run = unsigned(
        std::slice::from_ref(&renamed),
        &dir.path().join("out.nns"),
        &[],
    );
    assert_refused(
        &run,
        &renamed,
        "GGUF: the first of 3 splits, but its name does not end in -00001-of-00003.gguf, from which the others' names are made",
    );
}

#[test]
fn fail_a_later_gguf_split_given_alone() {
    let dir = tempfile::tempdir().unwrap();
    for s in &SPLITS[1..] {
        let split = fixture(&format!("multifile/gguf/{s}"));
        let run = unsigned(std::slice::from_ref(&split), &dir.path().join("m.nns"), &[]);
        let k = &s[5..10].trim_start_matches('0');
        assert_refused(
            &run,
            &split,
            &format!("GGUF: split {k} of 3 of a split model: pass the first split, tiny-00001-of-00003.gguf, which brings in the others"),
        );
    }
    assert!(common::listing(dir.path()).is_empty());
}
