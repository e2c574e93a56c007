//! ONNX models in: the graph onto the nnsign schema (docs/SCHEMA.md), initializers into
//! tensors. Decoded with prost from the official `onnx.proto` (vendored next to this file, from
//! the `onnx` 1.23.2 wheel; the Rust in `proto.rs` is generated from it by
//! `scripts/gen_onnx_proto.sh`). Nothing is evaluated: ONNX is data, and this reads it as such.
//!
//! ONNX gives some shape-determining values as inputs (Reshape's shape, Slice's bounds,
//! Squeeze's and Unsqueeze's axes); nnsign takes them as attributes, so they must be
//! initializers or Constant nodes, which are folded in. External data is read only from files
//! inside the model's folder.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Component, Path};

use prost::Message;

use super::source::{invalid, Bytes, ImportError, SourceTensor};
use crate::format::{self, DType};
use crate::model::{Attr, Dim, Graph, Node, ValueInfo};

#[allow(clippy::all, missing_docs)]
pub mod proto {
    include!("proto.rs");
}

use proto::{
    attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto::dimension,
    type_proto,
};

/// Largest ONNX file: protobuf's own limit.
pub const MAX_ONNX_LEN: u64 = 2 << 30;
/// Op-sets of the default domain this importer maps: from 13 (where Softmax, Squeeze and
/// Unsqueeze took their current meaning) to 28 (onnx 1.23's newest; the versions from 23 of the
/// ops nnsign maps add element types, and Range 27 a `stash_type` for float16 ranges).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=28;

/// What an ONNX file holds, for `pack`.
pub struct OnnxModel {
    pub tensors: Vec<SourceTensor>,
    /// `None` when imported with `weights_only`.
    pub arch: Option<Graph>,
    pub labels: BTreeMap<String, String>,
}

/// Whether an ONNX op maps onto the nnsign op of the same name: every op of the newest op-set but
/// `Dense`, which ONNX does not have.
fn same_op(op: &str) -> bool {
    op != "Dense" && crate::ops::ops_of(crate::model::OPSET).contains(&op)
}

/// Whether `bytes` start like an ONNX model: a ModelProto's first field, `ir_version`, as a
/// varint (tag 0x08).
pub fn looks_like(magic: &[u8]) -> bool {
    magic.first() == Some(&0x08)
}

/// Reads an ONNX model from `bytes` (the file at `path`).
pub fn read(path: &Path, bytes: &[u8], weights_only: bool) -> Result<OnnxModel, ImportError> {
    let bad = |why: String| invalid(path, why);
    if bytes.len() as u64 > MAX_ONNX_LEN {
        return Err(bad("over 2 GiB, protobuf's limit for an ONNX model".into()));
    }
    let model = proto::ModelProto::decode(bytes)
        .map_err(|e| bad(format!("not a valid ONNX model ({e})")))?;
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| bad("the ONNX model has no graph".into()))?;
    let mut labels = BTreeMap::new();
    for (key, value) in [
        ("onnx.producer", model.producer_name.clone()),
        ("onnx.producer_version", model.producer_version.clone()),
        ("onnx.graph", graph.name.clone()),
    ] {
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            labels.insert(key.to_owned(), v);
        }
    }
    let mut tensors = Vec::with_capacity(graph.initializer.len());
    let mut constants: HashMap<&str, &proto::TensorProto> = HashMap::new();
    for t in &graph.initializer {
        let name = t.name.clone().unwrap_or_default();
        tensors.push(tensor(path, &name, t)?);
        constants.insert(t.name.as_deref().unwrap_or(""), t);
    }
    if weights_only {
        return Ok(OnnxModel {
            tensors,
            arch: None,
            labels,
        });
    }
    let opset = (model.opset_import.iter())
        .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
        .and_then(|o| o.version)
        .ok_or_else(|| bad("the model declares no op-set for the default ONNX domain".into()))?;
    if !OPSETS.contains(&opset) {
        return Err(bad(format!(
            "ONNX op-set {opset}: nnsign maps op-sets {} to {}; convert the model (onnx.version_converter) or give --weights-only",
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    let unsupported: Vec<String> = (graph.node.iter())
        .filter_map(|n| {
            let op = n.op_type.as_deref().unwrap_or("");
            let domain = n.domain.as_deref().unwrap_or("");
            let ours = matches!(domain, "" | "ai.onnx") && same_op(op);
            (!ours).then(|| {
                if domain.is_empty() {
                    op.to_owned()
                } else {
                    format!("{domain}::{op}")
                }
            })
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if !unsupported.is_empty() {
        return Err(bad(format!(
            "the graph uses op{} nnsign does not run: {}; give --weights-only to pack its initializers without the graph",
            if unsupported.len() == 1 { "" } else { "s" },
            unsupported.join(", ")
        )));
    }
    for n in &graph.node {
        if n.op_type.as_deref() == Some("Constant") {
            if let (Some(out), Some(t)) = (n.output.first(), constant_tensor(n)) {
                constants.insert(out, t);
            }
        }
    }
    let (arch, lifted) = graph_of(path, graph, opset, &constants)?;
    // Initializers that became Constant nodes are part of the architecture, not weights.
    tensors.retain(|t| !lifted.contains(&t.name));
    let mut arch = arch;
    name_outputs_by_inputs(&mut arch, &tensors);
    Ok(OnnxModel {
        tensors,
        arch: Some(arch),
        labels,
    })
}

/// Exporters name an output's dimensions on their own (`Sigmoid422_dim_0` for what is the
/// batch): a symbol no graph input has says nothing, so it becomes what the graph computes
/// there (`batch`), when inference can tell.
fn name_outputs_by_inputs(arch: &mut Graph, tensors: &[SourceTensor]) {
    let bound: HashSet<String> = (arch.inputs.iter().flat_map(|v| &v.shape))
        .filter_map(|d| match d {
            Dim::Symbol(s) => Some(s.clone()),
            Dim::Fixed(_) => None,
        })
        .collect();
    let foreign = |d: &Dim| matches!(d, Dim::Symbol(s) if !bound.contains(s));
    if !arch.outputs.iter().flat_map(|v| &v.shape).any(foreign) {
        return;
    }
    let infos: Vec<format::TensorInfo> = tensors.iter().map(SourceTensor::info).collect();
    let mut inferred = arch.clone();
    if inferred.declare_outputs(&infos).is_err() {
        return; // pack names what is wrong
    }
    for (o, i) in arch.outputs.iter_mut().zip(&inferred.outputs) {
        if o.shape.len() != i.shape.len() {
            continue;
        }
        for (d, known) in o.shape.iter_mut().zip(&i.shape) {
            if foreign(d) {
                *d = known.clone();
            }
        }
    }
}

/// The `value` tensor of a Constant node, when it has one.
fn constant_tensor(n: &proto::NodeProto) -> Option<&proto::TensorProto> {
    n.attribute
        .iter()
        .find(|a| a.name.as_deref() == Some("value"))?
        .t
        .as_ref()
}

/// The nnsign dtype of an ONNX tensor data type.
fn dtype(code: i32) -> Option<DType> {
    Some(match DataType::try_from(code).ok()? {
        DataType::Float => DType::F32,
        DataType::Uint8 => DType::U8,
        DataType::Int8 => DType::I8,
        DataType::Uint16 => DType::U16,
        DataType::Int16 => DType::I16,
        DataType::Int32 => DType::I32,
        DataType::Int64 => DType::I64,
        DataType::Bool => DType::Bool,
        DataType::Float16 => DType::F16,
        DataType::Double => DType::F64,
        DataType::Uint32 => DType::U32,
        DataType::Uint64 => DType::U64,
        DataType::Bfloat16 => DType::BF16,
        _ => return None,
    })
}

/// An initializer as a tensor: from `raw_data`, the typed fields, or an external file.
fn tensor(path: &Path, name: &str, t: &proto::TensorProto) -> Result<SourceTensor, ImportError> {
    let at = |why: String| invalid(path, format!("initializer {name:?}: {why}"));
    format::check_tensor_name(name).map_err(|e| at(e.to_string()))?;
    let code = t.data_type.unwrap_or(0);
    let dtype =
        dtype(code).ok_or_else(|| at(format!("ONNX data type {code} is not one nnsign stores")))?;
    if t.dims.len() > format::MAX_RANK || t.dims.iter().any(|&d| d < 0) {
        return Err(at(format!("dims {:?} are not a shape", t.dims)));
    }
    let shape: Vec<u64> = t.dims.iter().map(|&d| d as u64).collect();
    let len = format::tensor_len(dtype, &shape)
        .filter(|&n| n <= format::MAX_PAYLOAD_LEN)
        .ok_or_else(|| at(format!("shape {shape:?} is too large")))?;
    let external = t.data_location == Some(proto::tensor_proto::DataLocation::External as i32);
    let bytes: Vec<u8> = if external {
        external_data(path, name, t, len)?
    } else if let Some(raw) = &t.raw_data {
        raw.clone()
    } else {
        typed_data(dtype, t)
            .ok_or_else(|| at("its data field does not match its data type".into()))?
    };
    if bytes.len() as u64 != len {
        return Err(at(format!(
            "holds {} bytes, its shape {shape:?} of {dtype} needs {len}",
            bytes.len()
        )));
    }
    Ok(SourceTensor {
        name: name.to_owned(),
        dtype,
        shape,
        bytes: Bytes::Owned(bytes.into()),
        origin: path.into(),
    })
}

/// Little-endian bytes from the typed repeated fields (ONNX keeps 8- and 16-bit types, and
/// booleans, in `int32_data`; float16 and bfloat16 as their bits).
fn typed_data(dtype: DType, t: &proto::TensorProto) -> Option<Vec<u8>> {
    let narrow = |n: usize| -> Vec<u8> {
        t.int32_data
            .iter()
            .flat_map(|v| v.to_le_bytes()[..n].to_vec())
            .collect()
    };
    Some(match dtype {
        DType::F32 => t.float_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F64 => t.double_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::I64 => t.int64_data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::U64 | DType::U32 if !t.uint64_data.is_empty() => {
            let n = dtype.size() as usize;
            t.uint64_data
                .iter()
                .flat_map(|v| v.to_le_bytes()[..n].to_vec())
                .collect()
        }
        DType::I32 => narrow(4),
        DType::I16 | DType::U16 | DType::F16 | DType::BF16 => narrow(2),
        DType::I8 | DType::U8 | DType::Bool => narrow(1),
        _ => return None,
    })
}

/// Reads an initializer kept in a file beside the model (ONNX external data): the location
/// must be a relative path inside the model's folder, with no `..` and no symbolic link on
/// the way, and offset and length must lie inside the file.
fn external_data(
    path: &Path,
    name: &str,
    t: &proto::TensorProto,
    len: u64,
) -> Result<Vec<u8>, ImportError> {
    let at = |why: String| invalid(path, format!("initializer {name:?}: external data {why}"));
    let field = |key: &str| {
        t.external_data
            .iter()
            .find(|e| e.key.as_deref() == Some(key))
            .and_then(|e| e.value.clone())
    };
    let location = field("location").ok_or_else(|| at("has no location".into()))?;
    let rel = Path::new(&location);
    if rel.components().any(|c| !matches!(c, Component::Normal(_))) || location.is_empty() {
        return Err(at(format!(
            "location {location:?} leaves the model's folder (only plain relative paths are read)"
        )));
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    // No component may be a link: a link could point anywhere.
    let mut walk = dir.to_path_buf();
    for c in rel.components() {
        walk.push(c);
        let meta =
            std::fs::symlink_metadata(&walk).map_err(|e| at(format!("{}: {e}", walk.display())))?;
        if meta.file_type().is_symlink() {
            return Err(at(format!(
                "{} is a symbolic link, which is not followed",
                walk.display()
            )));
        }
    }
    let number = |key: &str| -> Result<Option<u64>, ImportError> {
        field(key)
            .map(|v| {
                v.parse::<u64>()
                    .map_err(|_| at(format!("{key} {v:?} is not a number")))
            })
            .transpose()
    };
    let offset = number("offset")?.unwrap_or(0);
    let length = number("length")?.unwrap_or(len);
    if length != len {
        return Err(at(format!(
            "length {length} does not match the {len} bytes its shape needs"
        )));
    }
    let file = std::fs::File::open(&walk).map_err(|e| at(format!("{}: {e}", walk.display())))?;
    let size = file.metadata().map_err(|e| at(e.to_string()))?.len();
    if offset.checked_add(length).is_none_or(|end| end > size) {
        return Err(at(format!(
            "bytes {offset}..+{length} run past the end of {} ({size} bytes)",
            walk.display()
        )));
    }
    let mut buf = vec![0u8; length as usize];
    std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf, offset)
        .map_err(|e| at(e.to_string()))?;
    Ok(buf)
}

/// The nnsign graph of an ONNX graph.
fn graph_of(
    path: &Path,
    g: &proto::GraphProto,
    opset: i64,
    constants: &HashMap<&str, &proto::TensorProto>,
) -> Result<(Graph, HashSet<String>), ImportError> {
    let initializers: HashSet<&str> = g
        .initializer
        .iter()
        .filter_map(|t| t.name.as_deref())
        .collect();
    let inputs = (g.input.iter())
        .filter(|v| !initializers.contains(v.name.as_deref().unwrap_or("")))
        .map(|v| value_info(path, v))
        .collect::<Result<Vec<_>, _>>()?;
    let outputs = g
        .output
        .iter()
        .map(|v| value_info(path, v))
        .collect::<Result<Vec<_>, _>>()?;
    // Values read by some node, to tell which extra outputs (Dropout's mask) are unused.
    let read: HashSet<&str> = (g
        .node
        .iter()
        .flat_map(|n| n.input.iter().map(String::as_str)))
    .chain(g.output.iter().filter_map(|v| v.name.as_deref()))
    .collect();
    // Values folded into attributes: no node computes them any more.
    let mut folded: HashSet<&str> = HashSet::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut nodes = Vec::with_capacity(g.node.len());
    for (i, n) in g.node.iter().enumerate() {
        let op = n.op_type.clone().unwrap_or_default();
        let mut name = n
            .name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| format!("{op}_{i}"));
        while !names.insert(name.clone()) {
            name = format!("{name}_{i}");
        }
        let at = |why: String| invalid(path, format!("node {name:?} ({op}): {why}"));
        let mut attrs = BTreeMap::new();
        for a in &n.attribute {
            if let Some((k, v)) = attr(a).map_err(&at)? {
                attrs.insert(k, v);
            }
        }
        let mut inputs = n.input.clone();
        // Inputs that ONNX gives as tensors and nnsign as attributes.
        let fold: &[(usize, &str)] = match op.as_str() {
            "Reshape" => &[(1, "shape")],
            "Slice" => &[(1, "starts"), (2, "ends"), (3, "axes"), (4, "steps")],
            "Squeeze" | "Unsqueeze" => &[(1, "axes")],
            _ => &[],
        };
        // Constant parameters become attributes, readable by every op-set; a parameter computed
        // in the graph (a shape, say) keeps them all inputs, which op-set 3 evaluates before
        // the model runs.
        let given = || {
            fold.iter()
                .filter_map(|&(k, key)| Some((n.input.get(k).filter(|s| !s.is_empty())?, key)))
        };
        let constant = |src: &String| constants.get(src.as_str()).and_then(|t| ints(t));
        if given().all(|(src, _)| constant(src).is_some()) {
            for (src, key) in given() {
                let values = constant(src).expect("checked above");
                attrs.insert(key.to_owned(), Attr::Ints(values));
                folded.insert(src);
            }
            if let Some(&(first, _)) = fold.first() {
                inputs.truncate(first);
            }
        }
        if op == "Constant" {
            if let Some(t) = constant_tensor(n) {
                attrs.remove("value");
                let shape: Vec<i64> = t.dims.clone();
                match dtype(t.data_type.unwrap_or(0)) {
                    Some(DType::F32 | DType::F64 | DType::F16 | DType::BF16) => {
                        let v = floats(t)
                            .ok_or_else(|| at("its value tensor does not decode".into()))?;
                        attrs.insert("value_floats".into(), Attr::Floats(v));
                    }
                    _ => {
                        let v = ints(t).ok_or_else(|| {
                            at("its value tensor is neither float nor integer".into())
                        })?;
                        attrs.insert("value_ints".into(), Attr::Ints(v));
                    }
                }
                attrs.insert("shape".into(), Attr::Ints(shape));
            }
        }
        if op == "Split" && opset < 18 && n.input.get(1).is_none_or(String::is_empty) {
            // Before op-set 18, a Split without sizes cuts equal parts, one per output.
            attrs.insert("num_outputs".into(), Attr::Int(n.output.len() as i64));
        }
        if op == "ConstantOfShape" {
            // ONNX's one-element `value` tensor becomes value_float, value_int or value_bool.
            if let Some(t) = constant_tensor(n) {
                let code = t.data_type.unwrap_or(0);
                let one = |v: Option<Vec<f64>>| {
                    v.filter(|v| v.len() == 1)
                        .map(|v| v[0])
                        .ok_or_else(|| at("its value is not a tensor of one number".into()))
                };
                let (key, value) = match dtype(code) {
                    Some(DType::F32 | DType::F64 | DType::F16 | DType::BF16) => {
                        ("value_float", Attr::Float(one(floats(t))?))
                    }
                    Some(DType::Bool) => {
                        let v = match &t.raw_data {
                            Some(raw) if raw.len() == 1 => raw[0] as i64,
                            None if t.int32_data.len() == 1 => t.int32_data[0] as i64,
                            _ => return Err(at("its value is not a tensor of one boolean".into())),
                        };
                        ("value_bool", Attr::Int(v))
                    }
                    _ => {
                        let v = ints(t)
                            .filter(|v| v.len() == 1)
                            .ok_or_else(|| at("its value is not a tensor of one number".into()))?;
                        ("value_int", Attr::Int(v[0]))
                    }
                };
                attrs.insert(key.into(), value);
            }
        }
        if op == "Resize" {
            // Constant scales become the attribute; an empty scales (given beside sizes) and
            // a constant roi (read by tf_crop_and_resize only, which is refused) go.
            let constant = |k: usize| {
                (n.input.get(k).filter(|s| !s.is_empty()))
                    .and_then(|src| Some((src, constants.get(src.as_str())?)))
            };
            if let Some((src, t)) = constant(2) {
                let v = floats(t).ok_or_else(|| at("its scales are not floats".into()))?;
                if !v.is_empty() {
                    attrs.insert("scales".into(), Attr::Floats(v));
                }
                inputs[2] = String::new();
                folded.insert(src);
            }
            if let Some((src, _)) = constant(1) {
                inputs[1] = String::new();
                folded.insert(src);
            }
            while inputs.last().is_some_and(String::is_empty) {
                inputs.pop();
            }
        }
        // Extra outputs nnsign does not compute (Dropout's mask, MaxPool's indices, training
        // statistics) are dropped when nothing reads them; of an op that makes several (TopK,
        // Split, LSTM), the outputs up to the last one read are kept, an omitted one named.
        let mut outputs = n.output.clone();
        if outputs.iter().all(String::is_empty) {
            return Err(at("has no output".into()));
        }
        let makes = crate::ops::max_outputs(&op);
        if let Some(used) =
            (outputs.iter().skip(makes)).find(|o| !o.is_empty() && read.contains(o.as_str()))
        {
            return Err(at(match makes {
                1 => format!("its output {used:?} is used, and nnsign computes only the first output of {op}"),
                n => format!("its output {used:?} is used, and nnsign computes only the first {n} outputs of {op}"),
            }));
        }
        let keep = (outputs.iter().take(makes))
            .rposition(|o| !o.is_empty() && (read.contains(o.as_str()) || outputs[0] == *o))
            .map_or(1, |k| k + 1);
        outputs.truncate(keep);
        for (k, o) in outputs.iter_mut().enumerate() {
            if o.is_empty() {
                *o = format!("{name}:unused{k}");
            }
        }
        nodes.push(Node {
            op,
            name,
            inputs,
            outputs,
            attrs,
        });
    }
    // Constant nodes whose value became an attribute, and nothing else reads, go.
    let still_read: HashSet<String> = (nodes.iter())
        .flat_map(|n| n.inputs.iter().cloned())
        .chain(outputs.iter().map(|v: &ValueInfo| v.name.clone()))
        .collect();
    nodes.retain(|n| {
        let out = n.outputs.first().map_or("", String::as_str);
        !(n.op == "Constant" && folded.contains(out) && !still_read.contains(out))
    });
    // Small integer initializers still read become Constant nodes: their values are part of
    // the signed architecture, and inference can follow the shapes they help compute.
    let still_read: HashSet<&str> = (nodes.iter())
        .flat_map(|n| n.inputs.iter().map(String::as_str))
        .collect();
    let mut lifted = Vec::new();
    for t in &g.initializer {
        let name = t.name.as_deref().unwrap_or("");
        let small = dtype(t.data_type.unwrap_or(0)).is_some_and(DType::is_integer)
            && (t.dims.iter().try_fold(1i64, |n, &d| n.checked_mul(d)))
                .is_some_and(|n| (0..=crate::ops::shape::MAX_KNOWN as i64).contains(&n))
            && t.dims.len() <= crate::format::MAX_RANK;
        let Some(values) = ints(t).filter(|_| small && still_read.contains(name)) else {
            continue;
        };
        let mut node_name = format!("{name}:constant");
        while !names.insert(node_name.clone()) {
            node_name.push('_');
        }
        let attrs = BTreeMap::from([
            ("value_ints".to_owned(), Attr::Ints(values)),
            ("shape".to_owned(), Attr::Ints(t.dims.clone())),
        ]);
        lifted.push(Node {
            op: "Constant".into(),
            name: node_name,
            inputs: Vec::new(),
            outputs: vec![name.to_owned()],
            attrs,
        });
    }
    let lifted_names: HashSet<String> = lifted.iter().map(|n| n.outputs[0].clone()).collect();
    nodes.splice(0..0, lifted);
    let mut g = Graph {
        opset: crate::model::OPSET,
        inputs,
        outputs,
        nodes,
    };
    g.opset = crate::ops::lowest_opset(&g);
    Ok((g, lifted_names))
}

/// A graph input or output.
fn value_info(path: &Path, v: &proto::ValueInfoProto) -> Result<ValueInfo, ImportError> {
    let name = v.name.clone().unwrap_or_default();
    let at = |why: String| invalid(path, format!("graph value {name:?}: {why}"));
    let Some(type_proto::Value::TensorType(t)) = v.r#type.as_ref().and_then(|t| t.value.as_ref())
    else {
        return Err(at("is not a tensor".into()));
    };
    let code = t.elem_type.unwrap_or(0);
    let dtype = match dtype(code) {
        Some(DType::F32) => "F32",
        Some(DType::I64) => "I64",
        Some(DType::Bool) => "BOOL",
        Some(other) => {
            return Err(at(format!(
                "has element type {other}; nnsign graphs take F32, I64 and BOOL"
            )))
        }
        None => {
            return Err(at(format!(
                "has ONNX element type {code}, which nnsign does not know; nnsign graphs take F32, I64 and BOOL"
            )))
        }
    };
    let dims = t
        .shape
        .as_ref()
        .map(|s| s.dim.as_slice())
        .unwrap_or_default();
    let shape = (dims.iter().enumerate())
        .map(|(k, d)| match &d.value {
            Some(dimension::Value::DimValue(n)) if *n >= 0 => Ok(Dim::Fixed(*n as u64)),
            Some(dimension::Value::DimParam(p)) if !p.is_empty() => Ok(Dim::Symbol(p.clone())),
            None => Ok(Dim::Symbol(format!("{name}_dim{k}"))),
            Some(other) => Err(at(format!("dimension {k} is {other:?}"))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(ValueInfo {
        name,
        dtype: dtype.into(),
        shape,
    })
}

/// An ONNX attribute as an nnsign one; `None` for those nnsign has no use for.
fn attr(a: &proto::AttributeProto) -> Result<Option<(String, Attr)>, String> {
    let name = a.name.clone().unwrap_or_default();
    let kind = AttributeType::try_from(a.r#type.unwrap_or(0)).unwrap_or(AttributeType::Undefined);
    let value = match kind {
        AttributeType::Int => Attr::Int(a.i.unwrap_or(0)),
        AttributeType::Float => Attr::Float(a.f.unwrap_or(0.0) as f64),
        AttributeType::Ints => Attr::Ints(a.ints.clone()),
        AttributeType::Floats => Attr::Floats(a.floats.iter().map(|&f| f as f64).collect()),
        AttributeType::String => Attr::Text(
            String::from_utf8(a.s.clone().unwrap_or_default())
                .map_err(|_| format!("attribute {name:?} is not UTF-8 text"))?,
        ),
        // ONNX's lists of names (an RNN's `activations`), joined with commas.
        AttributeType::Strings => Attr::Text(
            (a.strings.iter())
                .map(|s| String::from_utf8(s.clone()))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| format!("attribute {name:?} is not UTF-8 text"))?
                .join(","),
        ),
        // A Constant's `value`, handled by the caller.
        AttributeType::Tensor if name == "value" => return Ok(None),
        other => return Err(format!("attribute {name:?} is of type {other:?}, which nnsign does not take (subgraphs, sparse tensors and lists of strings are refused)")),
    };
    Ok(Some((name, value)))
}

/// An integer tensor's values.
fn ints(t: &proto::TensorProto) -> Option<Vec<i64>> {
    let n: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
    let v: Vec<i64> = match dtype(t.data_type.unwrap_or(0))? {
        DType::I64 => match &t.raw_data {
            Some(raw) => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().expect("8")))
                .collect(),
            None => t.int64_data.clone(),
        },
        DType::I32 => match &t.raw_data {
            Some(raw) => raw
                .chunks_exact(4)
                .map(|b| i32::from_le_bytes(b.try_into().expect("4")) as i64)
                .collect(),
            None => t.int32_data.iter().map(|&v| v as i64).collect(),
        },
        _ => return None,
    };
    (v.len() == n && n <= crate::ops::MAX_CONSTANT).then_some(v)
}

/// A float tensor's values, as f64 (what an nnsign attribute holds).
fn floats(t: &proto::TensorProto) -> Option<Vec<f64>> {
    let n: usize = t.dims.iter().map(|&d| d.max(0) as usize).product();
    let v: Vec<f64> = match dtype(t.data_type.unwrap_or(0))? {
        DType::F32 => match &t.raw_data {
            Some(raw) => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().expect("4")) as f64)
                .collect(),
            None => t.float_data.iter().map(|&v| v as f64).collect(),
        },
        DType::F64 => match &t.raw_data {
            Some(raw) => raw
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("8")))
                .collect(),
            None => t.double_data.clone(),
        },
        _ => return None,
    };
    (v.len() == n && n <= crate::ops::MAX_CONSTANT).then_some(v)
}
