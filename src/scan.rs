//! `nnsign scan`: what a model file would execute or reference if a framework loaded it, found
//! without loading it. Pickles (raw, or inside torch checkpoints and object `.npy` arrays) are
//! run on [`crate::import::torch::pickle`] to list the globals they name; Keras configs are
//! searched for `Lambda` layers and classes from outside Keras; ONNX files for external data
//! and custom ops.

use std::io::Read;
use std::path::{Component, Path};

use prost::Message;

use crate::import::ImportError;

/// Largest file or record read whole by the scanner.
const MAX_SCAN_LEN: u64 = 256 << 20;

/// One thing found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Finding {
    /// Whether loading the file with its framework would run code (or read files) it names.
    pub danger: bool,
    /// Not code, but values that depend on the reader (a torch storage used with two dtypes or
    /// sizes): `nnsign pack` refuses the file, and `scan` fails on it (exit 1) unless a danger
    /// outranks it. Written to JSON only when set.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub refused: bool,
    pub what: String,
}

/// What a file is and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Report {
    pub format: &'static str,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn dangerous(&self) -> bool {
        self.findings.iter().any(|f| f.danger)
    }

    /// The first finding that makes `pack` refuse the file, if any.
    pub fn refusal(&self) -> Option<&Finding> {
        self.findings.iter().find(|f| f.refused)
    }
}

fn danger(what: String) -> Finding {
    Finding {
        danger: true,
        refused: false,
        what,
    }
}

fn note(what: String) -> Finding {
    Finding {
        danger: false,
        refused: false,
        what,
    }
}

fn refusal(what: String) -> Finding {
    Finding {
        danger: false,
        refused: true,
        what,
    }
}

fn invalid(path: &Path, why: impl Into<String>) -> ImportError {
    ImportError::Invalid {
        path: path.into(),
        why: why.into(),
    }
}

/// Scans one file.
pub fn scan(path: &Path) -> Result<Report, ImportError> {
    let io = |source| ImportError::Io {
        path: path.into(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if !meta.is_file() {
        return Err(invalid(path, "not a regular file"));
    }
    let mut magic = Vec::with_capacity(16);
    (&file).take(16).read_to_end(&mut magic).map_err(io)?;
    if magic.starts_with(b"PK\x03\x04") || magic.starts_with(b"PK\x05\x06") {
        return scan_zip(path, &file);
    }
    if meta.len() > MAX_SCAN_LEN {
        return Err(invalid(path, "over 256 MiB: too large to scan whole"));
    }
    let bytes = std::fs::read(path).map_err(io)?;
    if magic.starts_with(b"\x93NUMPY") {
        return Ok(Report {
            format: "npy",
            findings: npy_findings("the array", &bytes),
        });
    }
    if magic.first() == Some(&0x80) {
        return Ok(Report {
            format: "pickle",
            findings: pickle_findings("the pickle", &bytes),
        });
    }
    if magic.len() >= 9 && magic[8] == b'{' {
        return Ok(Report {
            format: "safetensors",
            findings: Vec::new(),
        });
    }
    if crate::import::onnx::looks_like(&magic) {
        return scan_onnx(path, &bytes);
    }
    Err(ImportError::UnknownFormat(path.into()))
}

/// The globals a pickle names: those a state dict needs are notes, anything else a danger.
fn pickle_findings(what: &str, bytes: &[u8]) -> Vec<Finding> {
    stream_findings(what, bytes, false)
}

/// [`pickle_findings`] of a pickle, or of the pickles of a `torch.save` stream. In a raw pickle
/// of tensors each storage is such a stream, which torch loads with no restriction: those are
/// read too, one level down (`nested`, where only dangers and ambiguous storages are reported:
/// a note per storage would bury them); a stream nested deeper is not, and is reported.
fn stream_findings(what: &str, bytes: &[u8], nested: bool) -> Vec<Finding> {
    // A legacy torch.save stream opens with a 10-byte integer this reader does not take, and
    // holds four more pickles; what follows is storage bytes, never unpickled.
    let (bytes, most) = match crate::import::torch::legacy_body(bytes) {
        Some(rest) => (rest, crate::import::torch::LEGACY_PICKLES),
        None => (bytes, usize::MAX),
    };
    let scan = crate::import::torch::pickle::scan_all(bytes, most);
    let mut out: Vec<Finding> = (scan.globals.into_iter())
        .filter_map(|g| {
            if crate::import::torch::allowed(&g) {
                (!nested).then(|| {
                    note(format!(
                        "{what} names {g} (needed to rebuild tensors; nnsign allows it)"
                    ))
                })
            } else if !nested && crate::import::torch::RAW_GLOBALS.contains(&g.as_str()) {
                Some(note(format!(
                    "{what} names {g} (a raw pickle of tensors needs it; the torch.save streams it loads are read too)"
                )))
            } else {
                Some(danger(format!(
                    "{what} names {g}: loading it with pickle would import and call it"
                )))
            }
        })
        .collect();
    // Not code, so not a danger: values that depend on the reader (`nnsign pack` refuses them).
    out.extend(
        (scan.ambiguous.into_iter())
            .map(|e| refusal(format!("{what}: {e} (nnsign pack refuses it)"))),
    );
    if let Some(e) = scan.error {
        // What follows the point where reading stopped is unknown: it may call anything.
        out.push(danger(format!(
            "{what} cannot be read to its end ({e}): what follows could run code"
        )));
    }
    if !nested && !scan.nested.is_empty() {
        out.push(note(format!(
            "{what} holds {} storages pickled on their own, as torch.save streams, each read too",
            scan.nested.len()
        )));
        for (k, stream) in scan.nested.iter().enumerate() {
            let what = format!("the torch.save stream of storage {k} in {what}");
            out.extend(stream_findings(&what, stream, true));
        }
    }
    out
}

/// An `.npy` of dtype object holds a pickle.
fn npy_findings(what: &str, bytes: &[u8]) -> Vec<Finding> {
    let header_len = match bytes.get(6) {
        Some(1) => bytes
            .get(8..10)
            .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize + 10),
        Some(2 | 3) => bytes
            .get(8..12)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize + 12),
        _ => None,
    };
    let Some(header) = header_len.and_then(|n| bytes.get(..n.min(bytes.len()))) else {
        return vec![note(format!("{what} has an unreadable header"))];
    };
    let text = String::from_utf8_lossy(header);
    let descr = text.split("'descr':").nth(1).unwrap_or("").trim_start();
    if descr.starts_with("'|O") || descr.starts_with("'O") || descr.starts_with('[') {
        let mut f = vec![danger(format!("{what} has dtype object: its data is a pickle, which numpy runs when allow_pickle=True"))];
        if let Some(n) = header_len {
            f.extend(pickle_findings(what, bytes.get(n..).unwrap_or_default()));
        }
        return f;
    }
    Vec::new()
}

fn scan_zip(path: &Path, file: &std::fs::File) -> Result<Report, ImportError> {
    let bad = |why: String| invalid(path, why);
    let mut zip =
        zip::ZipArchive::new(file).map_err(|e| bad(format!("not a valid zip archive ({e})")))?;
    let names: Vec<String> = zip
        .file_names()
        .filter_map(|n| Some(n.ok()?.into_owned()))
        .collect();
    let mut findings = Vec::new();
    if let Err(e) = crate::import::source::check_zip(path, file, &mut zip) {
        findings.push(danger(format!(
            "the archive is ambiguous or hides records from some readers: {e}"
        )));
    }
    for n in &names {
        let p = Path::new(n);
        if p.is_absolute() || p.components().any(|c| matches!(c, Component::ParentDir)) {
            findings.push(danger(format!(
                "record {n:?} would be extracted outside the target folder"
            )));
        }
    }
    let mut read = |name: &str| -> Result<Vec<u8>, ImportError> {
        let mut e = zip.by_name(name).map_err(|e| bad(format!("{name}: {e}")))?;
        if e.size() > MAX_SCAN_LEN {
            return Err(bad(format!("{name} is over 256 MiB: too large to scan")));
        }
        let mut buf = Vec::new();
        e.read_to_end(&mut buf)
            .map_err(|e| bad(format!("{name}: {e}")))?;
        Ok(buf)
    };
    if crate::import::torch::is_checkpoint(&names) {
        for n in names
            .iter()
            .filter(|n| n.ends_with("/data.pkl") || n.ends_with(".pkl"))
        {
            match read(n) {
                Ok(bytes) => findings.extend(pickle_findings(n, &bytes)),
                // Unreadable here (encrypted, damaged) is unreadable to a check, not to a
                // loader that ignores the damage.
                Err(e) => findings.push(danger(format!("{n} cannot be read to check it: {e}"))),
            }
        }
        return Ok(Report {
            format: "pytorch",
            findings,
        });
    }
    if names.iter().any(|n| n == "config.json") {
        let config = read("config.json")?;
        let value: serde_json::Value =
            serde_json::from_slice(&config).map_err(|e| bad(format!("config.json: {e}")))?;
        keras_findings(&value, 0, &mut findings);
        return Ok(Report {
            format: "keras",
            findings,
        });
    }
    for n in names.iter().filter(|n| n.ends_with(".npy")) {
        findings.extend(npy_findings(n, &read(n)?));
    }
    Ok(Report {
        format: "npz",
        findings,
    })
}

/// Keras config classes that run code on load: `Lambda` (its function travels as bytecode),
/// and any class from outside Keras (deserializing it imports its module).
fn keras_findings(v: &serde_json::Value, depth: usize, out: &mut Vec<Finding>) {
    if depth > 256 {
        out.push(danger("config.json nests deeper than 256 levels".into()));
        return;
    }
    match v {
        serde_json::Value::Object(map) => {
            if let Some(class) = map.get("class_name").and_then(|c| c.as_str()) {
                let name = (map
                    .get("config")
                    .and_then(|c| c.get("name"))
                    .and_then(|n| n.as_str()))
                .unwrap_or("?");
                if class == "Lambda" {
                    out.push(danger(format!(
                        "layer {name:?} is a Lambda: Keras would run its function on load"
                    )));
                }
                let module = map.get("module").and_then(|m| m.as_str());
                if let Some(m) = module.filter(|m| !m.is_empty() && !m.starts_with("keras")) {
                    out.push(danger(format!(
                        "{class} {name:?} comes from module {m:?}: Keras would import it"
                    )));
                }
                if let Some(r) = map
                    .get("registered_name")
                    .and_then(|r| r.as_str())
                    .filter(|r| r.contains('>'))
                {
                    out.push(danger(format!("{class} {name:?} is the custom object {r:?}: loading needs (and runs) its code")));
                }
            }
            for child in map.values() {
                keras_findings(child, depth + 1, out);
            }
        }
        serde_json::Value::Array(items) => {
            for child in items {
                keras_findings(child, depth + 1, out);
            }
        }
        _ => {}
    }
}

fn scan_onnx(path: &Path, bytes: &[u8]) -> Result<Report, ImportError> {
    use crate::import::onnx::proto;
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| invalid(path, format!("not a valid ONNX model ({e})")))?;
    let mut findings = Vec::new();
    let Some(graph) = &model.graph else {
        return Ok(Report {
            format: "onnx",
            findings,
        });
    };
    for t in &graph.initializer {
        for e in t
            .external_data
            .iter()
            .filter(|e| e.key.as_deref() == Some("location"))
        {
            let loc = e.value.clone().unwrap_or_default();
            let p = Path::new(&loc);
            let escapes =
                p.is_absolute() || p.components().any(|c| !matches!(c, Component::Normal(_)));
            let name = t.name.as_deref().unwrap_or("?");
            if escapes {
                findings.push(danger(format!(
                    "initializer {name:?} reads {loc:?}, outside the model's folder"
                )));
            } else {
                findings.push(note(format!(
                    "initializer {name:?} reads external file {loc:?}"
                )));
            }
        }
    }
    let mut custom: Vec<String> = (graph.node.iter())
        .filter(|n| !matches!(n.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .map(|n| {
            format!(
                "{}::{}",
                n.domain.as_deref().unwrap_or(""),
                n.op_type.as_deref().unwrap_or("")
            )
        })
        .collect();
    custom.sort();
    custom.dedup();
    for c in custom {
        findings.push(note(format!(
            "custom op {c}: runs only with the runtime library that defines it"
        )));
    }
    Ok(Report {
        format: "onnx",
        findings,
    })
}
