//! Helpers shared by the integration tests.
#![allow(dead_code)]

pub mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;

/// What a run of the binary did.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {:?}", self.stdout))
    }
}

/// Runs `nnsign` with `args`, without inheriting NNSIGN_TRUST or a terminal.
pub fn nnsign<I, S>(args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    nnsign_env(args, &[])
}

pub fn nnsign_env<I, S>(args: I, env: &[(&str, &str)]) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nnsign"));
    cmd.args(args)
        .env_remove("NNSIGN_TRUST")
        .env_remove("SOURCE_DATE_EPOCH");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .expect("nnsign runs");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn fixture(rel: &str) -> PathBuf {
    root().join("tests/fixtures").join(rel)
}

pub fn test_key(name: &str) -> PathBuf {
    root().join("tests/keys").join(name)
}

/// The files in `dir` (to check that nothing, not even a temporary file, was left behind).
pub fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Reads a little-endian float32 `.npy` written by numpy or nnsign: (shape, values).
pub fn read_npy_f32(path: &Path) -> (Vec<u64>, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap();
    let npy = npyz::NpyFile::new(&bytes[..]).unwrap();
    let shape = npy.shape().to_vec();
    let data: Vec<f32> = npy.into_vec().unwrap();
    (shape, data)
}

/// Splits an artifact into (manifest bytes, signatures, payload).
pub fn parts(artifact: &[u8]) -> (Vec<u8>, Vec<nnsign::format::RawSignature>, Vec<u8>) {
    let len = u32::from_be_bytes(artifact[12..16].try_into().unwrap());
    let env = nnsign::format::Envelope::parse(&artifact[16..16 + len as usize]).unwrap();
    let payload = artifact[nnsign::format::payload_offset(len) as usize..].to_vec();
    (env.manifest, env.signatures, payload)
}

/// Re-signs manifest bytes (possibly hand-edited) and lays out the artifact.
pub fn resigned(manifest: &[u8], payload: &[u8], key: &nnsign::keys::SecretKey) -> Vec<u8> {
    nnsign::pack::assemble(
        manifest,
        vec![nnsign::signature::sign(key, manifest)],
        payload,
    )
}

/// Writes a little-endian float32 `.npy`.
pub fn write_npy_f32(path: &Path, shape: &[u64], data: &[f32]) {
    use npyz::WriterBuilder;
    let mut file = std::fs::File::create(path).unwrap();
    let mut w = npyz::WriteOptions::<f32>::new()
        .default_dtype()
        .shape(shape)
        .writer(&mut file)
        .begin_nd()
        .unwrap();
    w.extend(data.iter().copied()).unwrap();
    w.finish().unwrap();
}

/// `src` (a zip) rewritten with `edit` applied to each record.
pub fn rezip(src: &Path, dst: &Path, edit: impl Fn(&str, Vec<u8>) -> Vec<u8>) {
    use std::io::{Read, Write};
    let mut z = zip::ZipArchive::new(std::fs::File::open(src).unwrap()).unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(dst).unwrap());
    for i in 0..z.len() {
        let mut e = z.by_index(i).unwrap();
        let name = e.name().unwrap().into_owned();
        let mut b = Vec::new();
        e.read_to_end(&mut b).unwrap();
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored);
        w.start_file(name.as_str(), options).unwrap();
        w.write_all(&edit(&name, b)).unwrap();
    }
    w.finish().unwrap();
}

/// The arrays of a file `pack` reads (an `.npz`, `.npy` or safetensors), by name: each one's
/// table entry and its value.
pub fn arrays(
    path: &Path,
) -> std::collections::BTreeMap<String, (nnsign::format::TensorInfo, nnsign::runtime::Value)> {
    let imported = nnsign::import::import(&[path.to_owned()]).unwrap();
    (imported.tensors.into_iter())
        .map(|t| {
            let info = t.info();
            let v = nnsign::runtime::to_value(&info, &t.bytes).unwrap();
            (t.name, (info, v))
        })
        .collect()
}

/// Of an op fixture's arrays, those named `prefix` + name (`weight.`, `input.`, `output.`),
/// by that name, which their table entries carry too.
pub fn with_prefix(
    all: &std::collections::BTreeMap<String, (nnsign::format::TensorInfo, nnsign::runtime::Value)>,
    prefix: &str,
) -> std::collections::BTreeMap<String, (nnsign::format::TensorInfo, nnsign::runtime::Value)> {
    (all.iter())
        .filter_map(|(k, (info, v))| {
            let name = k.strip_prefix(prefix)?.to_owned();
            let info = nnsign::format::TensorInfo {
                name: name.clone(),
                ..info.clone()
            };
            Some((name, (info, v.clone())))
        })
        .collect()
}

/// A tensor to pack, held in memory.
pub fn tensor(
    name: &str,
    dtype: nnsign::format::DType,
    shape: &[u64],
    bytes: Vec<u8>,
) -> nnsign::import::SourceTensor {
    nnsign::import::SourceTensor {
        name: name.into(),
        dtype,
        shape: shape.to_vec(),
        bytes: nnsign::import::Bytes::Owned(bytes.into()),
        origin: "test".into(),
    }
}

/// A file's arrays by name, as [`arrays`] reads them.
pub type Arrays =
    std::collections::BTreeMap<String, (nnsign::format::TensorInfo, nnsign::runtime::Value)>;

/// `nnsign pack MODEL --sign tests/keys/test-a.key -o OUT`.
pub fn pack_signed(model: &Path, out: &Path) -> Run {
    nnsign([
        "pack".as_ref(),
        model.as_os_str(),
        "--sign".as_ref(),
        test_key("test-a.key").as_os_str(),
        "-o".as_ref(),
        out.as_os_str(),
    ])
}

/// Runs `nnsign verify-load ART --trust tests/keys/test-a.pub` on the arrays of `all` named
/// `input.<input>` (written to `DIR/in.npz`), and returns the run and, when it succeeded, the
/// outputs it wrote (`DIR/out.npz`) by name.
pub fn verify_load_npz(dir: &Path, art: &Path, all: &Arrays) -> (Run, Arrays) {
    let inputs: Vec<(String, nnsign::runtime::Value)> = (with_prefix(all, "input.").into_iter())
        .map(|(n, (_, v))| (n, v))
        .collect();
    let given = dir.join("in.npz");
    let out = dir.join("out.npz");
    let _ = std::fs::remove_file(&out);
    nnsign::export::write_npz(&given, &inputs).unwrap();
    let run = nnsign([
        "verify-load".as_ref(),
        art.as_os_str(),
        "--trust".as_ref(),
        test_key("test-a.pub").as_os_str(),
        "--input".as_ref(),
        given.as_os_str(),
        "--output".as_ref(),
        out.as_os_str(),
    ]);
    let got = match run.code {
        0 => arrays(&out),
        _ => Arrays::new(),
    };
    (run, got)
}

/// The largest absolute difference between two float32 values of the same shape.
pub fn max_diff(got: &nnsign::runtime::Value, want: &nnsign::runtime::Value) -> f64 {
    assert_eq!(got.shape(), want.shape());
    (got.f32().data.iter().zip(&want.f32().data))
        .map(|(a, b)| (*a as f64 - *b as f64).abs())
        .fold(0.0, f64::max)
}
