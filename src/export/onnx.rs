//! A verified model out as ONNX, so that it goes straight into onnxruntime: the importer's
//! mapping run backwards. Attributes that ONNX takes as inputs (Reshape's shape, Slice's
//! bounds, Squeeze/Unsqueeze's axes) become int64 initializers; `Dense` becomes MatMul, Add
//! and its activation; weights are written as initializers with `raw_data`.

use std::collections::HashSet;

use prost::Message;

use crate::format::{DType, TensorInfo};
use crate::import::onnx::proto;
use crate::model::{Attr, Dim, Graph, Node, ValueInfo};

/// Why a graph has no ONNX form.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ExportError(pub String);

fn data_type(d: DType) -> Option<proto::tensor_proto::DataType> {
    use proto::tensor_proto::DataType as T;
    Some(match d {
        DType::F32 => T::Float,
        DType::F64 => T::Double,
        DType::F16 => T::Float16,
        DType::BF16 => T::Bfloat16,
        DType::I8 => T::Int8,
        DType::I16 => T::Int16,
        DType::I32 => T::Int32,
        DType::I64 => T::Int64,
        DType::U8 => T::Uint8,
        DType::U16 => T::Uint16,
        DType::U32 => T::Uint32,
        DType::U64 => T::Uint64,
        DType::Bool => T::Bool,
        _ => return None,
    })
}

fn value_info(v: &ValueInfo) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension, Dimension};
    let dims = (v.shape.iter())
        .map(|d| Dimension {
            value: Some(match d {
                Dim::Fixed(n) => dimension::Value::DimValue(*n as i64),
                Dim::Symbol(s) => dimension::Value::DimParam(s.clone()),
            }),
            denotation: None,
        })
        .collect();
    let elem = if v.dtype == "I64" {
        proto::tensor_proto::DataType::Int64
    } else {
        proto::tensor_proto::DataType::Float
    };
    proto::ValueInfoProto {
        name: Some(v.name.clone()),
        r#type: Some(proto::TypeProto {
            value: Some(proto::type_proto::Value::TensorType(
                proto::type_proto::Tensor {
                    elem_type: Some(elem as i32),
                    shape: Some(proto::TensorShapeProto { dim: dims }),
                },
            )),
            denotation: None,
        }),
        ..Default::default()
    }
}

fn int64s(name: &str, values: &[i64]) -> proto::TensorProto {
    proto::TensorProto {
        name: Some(name.to_owned()),
        dims: vec![values.len() as i64],
        data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
        raw_data: Some(values.iter().flat_map(|v| v.to_le_bytes()).collect()),
        ..Default::default()
    }
}

fn attribute(name: &str, a: &Attr) -> proto::AttributeProto {
    use proto::attribute_proto::AttributeType as A;
    let mut p = proto::AttributeProto {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    match a {
        Attr::Int(v) => (p.r#type, p.i) = (Some(A::Int as i32), Some(*v)),
        Attr::Float(v) => (p.r#type, p.f) = (Some(A::Float as i32), Some(*v as f32)),
        Attr::Text(s) => (p.r#type, p.s) = (Some(A::String as i32), Some(s.clone().into_bytes())),
        Attr::Ints(v) => (p.r#type, p.ints) = (Some(A::Ints as i32), v.clone()),
        Attr::Floats(v) => {
            (p.r#type, p.floats) = (
                Some(A::Floats as i32),
                v.iter().map(|&f| f as f32).collect(),
            )
        }
    }
    p
}

fn node(
    op: &str,
    name: &str,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attrs: Vec<proto::AttributeProto>,
) -> proto::NodeProto {
    proto::NodeProto {
        op_type: Some(op.to_owned()),
        name: Some(name.to_owned()),
        input: inputs,
        output: outputs,
        attribute: attrs,
        ..Default::default()
    }
}

/// The ONNX model of `graph` with the weights `tensors` (name, info, little-endian bytes).
pub fn model(
    graph: &Graph,
    tensors: &[(&TensorInfo, &[u8])],
    producer: &str,
) -> Result<Vec<u8>, ExportError> {
    let mut nodes = Vec::new();
    let mut initializers = Vec::new();
    // Names the graph already uses, so that the values added here never shadow one.
    let mut used_names: HashSet<String> = (graph.nodes.iter())
        .flat_map(|n| {
            n.inputs
                .iter()
                .chain(&n.outputs)
                .chain(std::iter::once(&n.name))
                .cloned()
        })
        .chain(
            graph
                .inputs
                .iter()
                .chain(&graph.outputs)
                .map(|v| v.name.clone()),
        )
        .chain(tensors.iter().map(|(t, _)| t.name.clone()))
        .collect();
    let mut fresh = |base: String| {
        let mut n = base.clone();
        let mut k = 0;
        while !used_names.insert(n.clone()) {
            k += 1;
            n = format!("{base}_{k}");
        }
        n
    };
    let mut opset = 17;
    // ONNX wants its nodes in an order where each runs after those it takes from.
    let producers: std::collections::HashMap<&str, usize> = (graph.nodes.iter().enumerate())
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let order = crate::model::topological_order(&graph.nodes, &producers)
        .map_err(|e| ExportError(e.to_string()))?;
    for n in order.iter().map(|&i| &graph.nodes[i]) {
        let Node {
            op,
            name,
            inputs,
            outputs,
            attrs,
        } = n;
        let mut ins = inputs.clone();
        let mut rest: Vec<proto::AttributeProto> = Vec::new();
        let moved: &[&str] = match op.as_str() {
            "Reshape" => &["shape"],
            "Slice" => &["starts", "ends", "axes", "steps"],
            "Squeeze" | "Unsqueeze" => &["axes"],
            _ => &[],
        };
        for key in moved {
            match attrs.get(*key) {
                Some(Attr::Ints(v)) => {
                    let t = fresh(format!("{name}.{key}"));
                    initializers.push(int64s(&t, v));
                    ins.push(t);
                }
                Some(_) => {
                    return Err(ExportError(format!(
                        "node {name:?}: attribute {key:?} is not a list of integers"
                    )))
                }
                // Slice's optional axes/steps: "" keeps later positions right.
                None if *op == "Slice" => ins.push(String::new()),
                None => {}
            }
        }
        while ins.last().is_some_and(String::is_empty) {
            ins.pop();
        }
        for (k, a) in attrs.iter().filter(|(k, _)| !moved.contains(&k.as_str())) {
            if op == "Constant" && matches!(k.as_str(), "value_floats" | "value_ints" | "shape") {
                continue;
            }
            rest.push(attribute(k, a));
        }
        match op.as_str() {
            "Dense" => {
                let act = match attrs.get("activation") {
                    None => "linear",
                    Some(Attr::Text(t)) => t.as_str(),
                    Some(_) => {
                        return Err(ExportError(format!(
                            "node {name:?}: activation is not text"
                        )))
                    }
                };
                let mm = fresh(format!("{name}.matmul"));
                nodes.push(node(
                    "MatMul",
                    &mm,
                    ins[..2].to_vec(),
                    vec![mm.clone()],
                    vec![],
                ));
                let mut last = mm;
                if let Some(b) = ins.get(2).filter(|b| !b.is_empty()) {
                    let add = fresh(format!("{name}.add"));
                    nodes.push(node(
                        "Add",
                        &add,
                        vec![last, b.clone()],
                        vec![add.clone()],
                        vec![],
                    ));
                    last = add;
                }
                let (ops, attrs): (&str, Vec<proto::AttributeProto>) = match act {
                    "linear" => ("Identity", vec![]),
                    "relu" => ("Relu", vec![]),
                    "sigmoid" => ("Sigmoid", vec![]),
                    "tanh" => ("Tanh", vec![]),
                    "softmax" => ("Softmax", vec![attribute("axis", &Attr::Int(-1))]),
                    other => {
                        return Err(ExportError(format!("node {name:?}: activation {other:?}")))
                    }
                };
                nodes.push(node(ops, name, vec![last], outputs.clone(), attrs));
            }
            "Constant" => {
                let shape: Vec<i64> = match attrs.get("shape") {
                    Some(Attr::Ints(s)) => s.clone(),
                    _ => Vec::new(),
                };
                let mut t = proto::TensorProto {
                    name: Some(outputs[0].clone()),
                    ..Default::default()
                };
                match (attrs.get("value_floats"), attrs.get("value_ints")) {
                    (Some(Attr::Floats(v)), _) => {
                        t.dims = if attrs.contains_key("shape") {
                            shape
                        } else {
                            vec![v.len() as i64]
                        };
                        t.data_type = Some(proto::tensor_proto::DataType::Float as i32);
                        t.float_data = v.iter().map(|&f| f as f32).collect();
                    }
                    (_, Some(Attr::Ints(v))) => {
                        t.dims = if attrs.contains_key("shape") {
                            shape
                        } else {
                            vec![v.len() as i64]
                        };
                        t.data_type = Some(proto::tensor_proto::DataType::Int64 as i32);
                        t.int64_data = v.clone();
                    }
                    _ => {
                        // value_float / value_int pass through as attributes.
                        nodes.push(node("Constant", name, vec![], outputs.clone(), rest));
                        continue;
                    }
                }
                let value = proto::AttributeProto {
                    name: Some("value".into()),
                    r#type: Some(proto::attribute_proto::AttributeType::Tensor as i32),
                    t: Some(t),
                    ..Default::default()
                };
                nodes.push(node("Constant", name, vec![], outputs.clone(), vec![value]));
            }
            other => {
                if other == "Gelu" {
                    opset = opset.max(20);
                }
                nodes.push(node(other, name, ins, outputs.clone(), rest));
            }
        }
    }
    for (info, bytes) in tensors {
        let dt = data_type(info.dtype).ok_or_else(|| {
            ExportError(format!(
                "tensor {:?}: dtype {} has no ONNX type",
                info.name, info.dtype
            ))
        })?;
        initializers.push(proto::TensorProto {
            name: Some(info.name.clone()),
            dims: info.shape.iter().map(|&d| d as i64).collect(),
            data_type: Some(dt as i32),
            raw_data: Some(bytes.to_vec()),
            ..Default::default()
        });
    }
    let model = proto::ModelProto {
        ir_version: Some(if opset >= 20 { 9 } else { 8 }),
        opset_import: vec![proto::OperatorSetIdProto {
            domain: Some(String::new()),
            version: Some(opset),
        }],
        producer_name: Some(producer.to_owned()),
        graph: Some(proto::GraphProto {
            name: Some("nnsign".into()),
            node: nodes,
            initializer: initializers,
            input: graph.inputs.iter().map(value_info).collect(),
            output: graph.outputs.iter().map(value_info).collect(),
            ..Default::default()
        }),
        ..Default::default()
    };
    Ok(model.encode_to_vec())
}
