//! Keras 3 models (`.keras`: a zip of `config.json`, `metadata.json` and `model.weights.h5`) in,
//! without evaluating anything.
//!
//! The zip is checked first (only the records Keras writes, sizes and compression ratios
//! capped, no paths that leave the archive). `config.json` is read as data: a Sequential or
//! Functional model of the layers this importer maps becomes a schema graph; a `Lambda` layer,
//! a class from outside Keras or a layer it does not map is refused by name. Weights come from
//! the HDF5 file (`layers/<name>/vars/<i>`) through a read-only decoder; optimizer state is
//! never read.

use std::collections::{BTreeMap, HashSet};
use std::path::{Component, Path};

use serde_json::Value as Json;

use super::source::{invalid, over_zip_ratio, read_record, Bytes, ImportError, SourceTensor, Zip};
use crate::format::DType;
use crate::model::{Attr, Dim, Graph, Node, ValueInfo};

/// Largest `config.json` or `metadata.json`.
const MAX_CONFIG_LEN: u64 = 64 << 20;
/// Largest weights file.
const MAX_WEIGHTS_LEN: u64 = 16 << 30;

/// Whether a zip's records are a `.keras` model's.
pub fn is_keras(names: &[String]) -> bool {
    names.iter().any(|n| n == "config.json") && names.iter().any(|n| n == "model.weights.h5")
}

/// What a `.keras` file holds, for `pack`.
pub struct KerasModel {
    pub tensors: Vec<SourceTensor>,
    pub arch: Graph,
    pub labels: BTreeMap<String, String>,
}

/// Reads a `.keras` file, opened and checked by [`open_zip`].
///
/// [`open_zip`]: super::source::open_zip
pub fn read(path: &Path, zip: Zip<'_>) -> Result<KerasModel, ImportError> {
    let bad = |why: String| invalid(path, why);
    let mut zip = zip.archive;
    let mut read = |name: &str, cap: u64| -> Result<Vec<u8>, ImportError> {
        let mut e = zip.by_name(name).map_err(|e| bad(format!("{name}: {e}")))?;
        let (size, packed) = (e.size(), e.compressed_size());
        if size > cap || over_zip_ratio(size, packed) {
            return Err(bad(format!(
                "{name}: {size} bytes ({packed} compressed) is over the limits"
            )));
        }
        let buf = read_record(&mut e, size, cap).map_err(|e| bad(format!("{name}: {e}")))?;
        if buf.len() as u64 != size {
            return Err(bad(format!(
                "{name}: holds {} bytes, its header says {size}",
                buf.len()
            )));
        }
        Ok(buf)
    };
    let config = read("config.json", MAX_CONFIG_LEN)?;
    let metadata = read("metadata.json", MAX_CONFIG_LEN).ok();
    let weights = read("model.weights.h5", MAX_WEIGHTS_LEN)?;
    for n in zip.file_names().filter_map(|n| n.ok()) {
        let p = Path::new(n.as_ref());
        let known = matches!(
            n.as_ref(),
            "config.json" | "metadata.json" | "model.weights.h5"
        ) || n.starts_with("assets/");
        if !known || p.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!("unexpected record {n:?} in a .keras archive")));
        }
    }
    let config: Json =
        serde_json::from_slice(&config).map_err(|e| bad(format!("config.json: {e}")))?;
    let h5 = hdf5_reader::Hdf5File::from_vec(weights)
        .map_err(|e| bad(format!("model.weights.h5: {e}")))?;
    let mut b = Builder {
        path,
        h5: &h5,
        tensors: Vec::new(),
        nodes: Vec::new(),
        inputs: Vec::new(),
        names: HashSet::new(),
        groups: Default::default(),
        seen: Default::default(),
        kwargs: BTreeMap::new(),
        options: BTreeMap::new(),
    };
    let outputs = b.model(&config)?;
    let mut labels = BTreeMap::new();
    if let Some(v) = metadata
        .and_then(|m| serde_json::from_slice::<Json>(&m).ok())
        .and_then(|m| {
            m.get("keras_version")
                .and_then(|v| v.as_str())
                .map(str::to_owned)
        })
    {
        labels.insert("keras.version".into(), v);
    }
    let mut arch = Graph {
        opset: crate::model::OPSET,
        inputs: b.inputs,
        outputs,
        nodes: b.nodes,
    };
    arch.opset = crate::ops::lowest_opset(&arch);
    let infos: Vec<crate::format::TensorInfo> = b.tensors.iter().map(SourceTensor::info).collect();
    arch.declare_outputs(&infos)
        .map_err(|e| bad(format!("config.json: {e}")))?;
    Ok(KerasModel {
        tensors: b.tensors,
        arch,
        labels,
    })
}

struct Builder<'a> {
    path: &'a Path,
    h5: &'a hdf5_reader::Hdf5File,
    tensors: Vec<SourceTensor>,
    nodes: Vec<Node>,
    inputs: Vec<ValueInfo>,
    names: HashSet<String>,
    /// The HDF5 group of each layer's weights, by layer name.
    groups: std::collections::HashMap<String, String>,
    /// How many layers of each snake-case class name came before.
    seen: std::collections::HashMap<String, usize>,
    /// The tensor arguments the layer being added was called with by keyword
    /// (`attention_mask`), by keyword.
    kwargs: BTreeMap<String, String>,
    /// The other keyword arguments of that call (`training`, `use_causal_mask`, a list of
    /// tensors as `initial_state`), as `config.json` gives them.
    options: BTreeMap<String, Json>,
}

/// The nnsign op of a Keras activation name, with its attributes.
fn activation(name: &str) -> Option<Option<(&'static str, BTreeMap<String, Attr>)>> {
    let none = BTreeMap::new;
    Some(match name {
        "linear" => None,
        "relu" => Some(("Relu", none())),
        "sigmoid" => Some(("Sigmoid", none())),
        "tanh" => Some(("Tanh", none())),
        "exponential" => Some(("Exp", none())),
        "softmax" => Some((
            "Softmax",
            BTreeMap::from([("axis".to_owned(), Attr::Int(-1))]),
        )),
        "gelu" => Some((
            "Gelu",
            BTreeMap::from([("approximate".to_owned(), Attr::Text("none".into()))]),
        )),
        "leaky_relu" => Some((
            "LeakyRelu",
            BTreeMap::from([("alpha".to_owned(), Attr::Float(0.2))]),
        )),
        _ => return None,
    })
}

impl Builder<'_> {
    fn bad(&self, why: String) -> ImportError {
        invalid(self.path, why)
    }

    /// The graph outputs of a model config (Sequential or Functional).
    fn model(&mut self, config: &Json) -> Result<Vec<ValueInfo>, ImportError> {
        let class = config
            .get("class_name")
            .and_then(|c| c.as_str())
            .unwrap_or("");
        check_module(self.path, config, class, "model")?;
        let layers = (config.pointer("/config/layers").and_then(|l| l.as_array()))
            .ok_or_else(|| self.bad(format!("config.json: a {class} without layers")))?;
        let mut last: Option<String> = None;
        let mut outputs = Vec::new();
        for layer in layers {
            let class = layer
                .get("class_name")
                .and_then(|c| c.as_str())
                .unwrap_or("");
            let config = layer.get("config").cloned().unwrap_or(Json::Null);
            let name = config
                .get("name")
                .and_then(|n| n.as_str())
                .unwrap_or("")
                .to_owned();
            check_module(self.path, layer, class, &name)?;
            if name.is_empty() || !self.names.insert(name.clone()) {
                return Err(self.bad(format!(
                    "config.json: a {class} layer with an empty or repeated name {name:?}"
                )));
            }
            let inputs: Vec<String> = match class {
                _ if class == "InputLayer" => Vec::new(),
                _ => match (config_inbound(layer), &last) {
                    (Some(ins), _) => ins,
                    (None, Some(prev)) => vec![prev.clone()],
                    (None, None) => {
                        // A Sequential without an InputLayer: its first layer's build shape.
                        let shape = layer
                            .pointer("/build_config/input_shape")
                            .cloned()
                            .unwrap_or(Json::Null);
                        let input = format!("{name}_input");
                        self.input(&input, &shape, "float32")?;
                        vec![input]
                    }
                },
            };
            // Keras 3 saves a layer's weights under its class name in snake case, numbered
            // in the order of the model's layers (conv2d, conv2d_1, ...), not under its name.
            let snake = snake_case(class);
            let k = self.seen.entry(snake.clone()).or_insert(0);
            let group = if *k == 0 {
                snake.clone()
            } else {
                format!("{snake}_{k}")
            };
            *k += 1;
            self.groups.insert(name.clone(), group);
            (self.kwargs, self.options) = config_kwargs(layer);
            self.layer(class, &name, &config, &inputs)?;
            last = Some(name);
        }
        let declared = config
            .pointer("/config/output_layers")
            .and_then(|o| o.as_array());
        let out_names: Vec<String> = match declared {
            Some(list) => history_names(list),
            None => last.into_iter().collect(),
        };
        for n in out_names {
            // Output shapes are left to the graph: every dimension a symbol.
            outputs.push(ValueInfo {
                name: n.clone(),
                dtype: "F32".into(),
                shape: Vec::new(),
            });
        }
        Ok(outputs)
    }

    /// The shape the graph built so far gives `value`.
    fn shape_of(&self, value: &str) -> Result<Vec<Dim>, String> {
        let mut g = Graph {
            opset: crate::model::OPSET,
            inputs: self.inputs.clone(),
            outputs: vec![ValueInfo {
                name: value.into(),
                dtype: "F32".into(),
                shape: Vec::new(),
            }],
            nodes: self.nodes.clone(),
        };
        let infos: Vec<crate::format::TensorInfo> =
            self.tensors.iter().map(SourceTensor::info).collect();
        g.declare_outputs(&infos).map_err(|e| e.to_string())?;
        Ok(g.outputs.remove(0).shape)
    }

    fn input(&mut self, name: &str, shape: &Json, dtype: &str) -> Result<(), ImportError> {
        let dims = shape
            .as_array()
            .ok_or_else(|| self.bad(format!("input {name:?} has no shape")))?;
        let shape = (dims.iter().enumerate())
            .map(|(k, d)| match d.as_u64() {
                Some(n) => Dim::Fixed(n),
                None if k == 0 => Dim::Symbol("batch".into()),
                None => Dim::Symbol(format!("{name}_dim{k}")),
            })
            .collect();
        let dtype = if dtype.starts_with("int") || dtype.starts_with("uint") {
            "I64"
        } else {
            "F32"
        };
        self.inputs.push(ValueInfo {
            name: name.to_owned(),
            dtype: dtype.into(),
            shape,
        });
        Ok(())
    }

    /// The weight `layers/<layer>/vars/<i>`, named `<layer>/<var>`.
    fn var(
        &mut self,
        layer: &str,
        i: usize,
        var: &str,
    ) -> Result<(String, Vec<f32>, Vec<u64>), ImportError> {
        self.var_in(layer, "", i, var)
    }

    /// The weight `layers/<layer>/<within>/vars/<i>` of a layer that holds others (an RNN
    /// cell, an attention projection), named `<layer>/<var>`.
    fn var_in(
        &mut self,
        layer: &str,
        within: &str,
        i: usize,
        var: &str,
    ) -> Result<(String, Vec<f32>, Vec<u64>), ImportError> {
        let group = self
            .groups
            .get(layer)
            .cloned()
            .unwrap_or_else(|| layer.to_owned());
        let at = match within {
            "" => format!("layers/{group}/vars/{i}"),
            w => format!("layers/{group}/{w}/vars/{i}"),
        };
        let ds = self
            .h5
            .dataset(&at)
            .map_err(|e| self.bad(format!("model.weights.h5: {at}: {e}")))?;
        let float = matches!(
            ds.dtype(),
            hdf5_reader::Datatype::FloatingPoint { size: 4, .. }
        );
        if !float || !cfg!(target_endian = "little") {
            return Err(self.bad(format!(
                "model.weights.h5: {at} is {:?}, not float32",
                ds.dtype()
            )));
        }
        let shape = ds.shape().to_vec();
        let bytes = ds
            .read_native_bytes()
            .map_err(|e| self.bad(format!("model.weights.h5: {at}: {e}")))?;
        let expected = shape.iter().product::<u64>() * 4;
        if bytes.len() as u64 != expected {
            return Err(self.bad(format!(
                "model.weights.h5: {at} holds {} bytes for shape {shape:?}",
                bytes.len()
            )));
        }
        let values: Vec<f32> = bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().expect("4")))
            .collect();
        let name = format!("{layer}/{var}");
        Ok((name, values, shape))
    }

    fn add_tensor(&mut self, name: &str, values: &[f32], shape: Vec<u64>) {
        self.tensors.push(SourceTensor {
            name: name.to_owned(),
            dtype: DType::F32,
            shape,
            bytes: Bytes::Owned(
                values
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect::<Vec<u8>>()
                    .into(),
            ),
            origin: self.path.into(),
        });
    }

    fn node(
        &mut self,
        op: &str,
        name: &str,
        inputs: Vec<String>,
        output: &str,
        attrs: BTreeMap<String, Attr>,
    ) {
        self.nodes.push(Node {
            op: op.into(),
            name: name.into(),
            inputs,
            outputs: vec![output.into()],
            attrs,
        });
    }

    /// Adds the nodes of one layer, whose output value is named after it.
    fn layer(
        &mut self,
        class: &str,
        name: &str,
        config: &Json,
        inputs: &[String],
    ) -> Result<(), ImportError> {
        let at = |why: String| invalid(self.path, format!("layer {name:?} ({class}): {why}"));
        let text = |k: &str| config.get(k).and_then(|v| v.as_str());
        let one = || {
            inputs
                .first()
                .cloned()
                .ok_or_else(|| at("has no input".into()))
        };
        // A keyword argument of the call can change what a layer computes (an initial state, a
        // causal mask, `training=True` keeping dropout on, attention scores as a second output):
        // only the tensors a mapping reads, and options left at their defaults, are taken.
        if let Some((k, v)) =
            (self.options.iter()).find(|(_, v)| !matches!(v, Json::Null | Json::Bool(false)))
        {
            let mut tensors = Vec::new();
            collect_history(v, &mut tensors);
            return Err(at(match tensors.is_empty() {
                true => format!("is called with {k}={v}, which is not mapped"),
                false => format!("is called with {k} (tensors), which is not mapped"),
            }));
        }
        let reads: &[&str] = match class {
            "MultiHeadAttention" => &["key", "attention_mask"],
            _ => &[],
        };
        if let Some(k) = self.kwargs.keys().find(|k| !reads.contains(&k.as_str())) {
            return Err(at(format!(
                "is called with {k} (a tensor), which is not mapped"
            )));
        }
        match class {
            "InputLayer" => {
                let shape = config.get("batch_shape").or_else(|| config.get("batch_input_shape")).cloned().unwrap_or(Json::Null);
                self.input(name, &shape, text("dtype").unwrap_or("float32"))?;
            }
            "Dense" => {
                let x = one()?;
                let (kernel, k, kshape) = self.var(name, 0, "kernel")?;
                self.add_tensor(&kernel, &k, kshape);
                let act = text("activation").unwrap_or("linear");
                let op = activation(act).ok_or_else(|| at(format!("activation {act:?} is not one nnsign runs")))?;
                let mm = format!("{name}/matmul");
                self.node("MatMul", &mm, vec![x, kernel], &mm, BTreeMap::new());
                let mut last = mm;
                if config.get("use_bias").and_then(|b| b.as_bool()).unwrap_or(true) {
                    let (bias, v, s) = self.var(name, 1, "bias")?;
                    self.add_tensor(&bias, &v, s);
                    let add = format!("{name}/bias_add");
                    self.node("Add", &add, vec![last, bias], &add, BTreeMap::new());
                    last = add;
                }
                match op {
                    Some((op, attrs)) => self.node(op, name, vec![last], name, attrs),
                    None => self.node("Identity", name, vec![last], name, BTreeMap::new()),
                }
            }
            "Activation" => {
                let act = text("activation").unwrap_or("linear");
                match activation(act).ok_or_else(|| at(format!("activation {act:?} is not one nnsign runs")))? {
                    Some((op, attrs)) => self.node(op, name, vec![one()?], name, attrs),
                    None => self.node("Identity", name, vec![one()?], name, BTreeMap::new()),
                }
            }
            "Dropout" => self.node("Identity", name, vec![one()?], name, BTreeMap::new()),
            "Flatten" => self.node("Flatten", name, vec![one()?], name, BTreeMap::from([("axis".to_owned(), Attr::Int(1))])),
            "Reshape" => {
                let target = (config.get("target_shape").and_then(|t| t.as_array()))
                    .ok_or_else(|| at("has no target_shape".into()))?;
                let mut shape = vec![0i64];
                for d in target {
                    shape.push(d.as_i64().ok_or_else(|| at("target_shape holds a non-integer".into()))?);
                }
                self.node("Reshape", name, vec![one()?], name, BTreeMap::from([("shape".to_owned(), Attr::Ints(shape))]));
            }
            "Add" => {
                if inputs.len() < 2 {
                    return Err(at("takes at least two inputs".into()));
                }
                let mut acc = inputs[0].clone();
                for (k, x) in inputs[1..].iter().enumerate() {
                    let out = if k + 2 == inputs.len() { name.to_owned() } else { format!("{name}/add{k}") };
                    self.node("Add", &out, vec![acc, x.clone()], &out, BTreeMap::new());
                    acc = out;
                }
            }
            "Concatenate" => {
                let axis = config.get("axis").and_then(|a| a.as_i64()).unwrap_or(-1);
                self.node("Concat", name, inputs.to_vec(), name, BTreeMap::from([("axis".to_owned(), Attr::Int(axis))]));
            }
            "LayerNormalization" => {
                let axis = match config.get("axis") {
                    Some(Json::Array(a)) if a.len() == 1 => a[0].as_i64(),
                    Some(v) => v.as_i64(),
                    None => Some(-1),
                };
                if axis != Some(-1) {
                    return Err(at("normalizes over axes other than the last; nnsign maps axis -1 only".into()));
                }
                let eps = config.get("epsilon").and_then(|e| e.as_f64()).unwrap_or(1e-3);
                let (scale, center) = (flag(config, "scale"), flag(config, "center"));
                let mut ins = vec![one()?];
                let mut i = 0;
                for (on, var) in [(scale, "gamma"), (center, "beta")] {
                    if on {
                        let (n, v, s) = self.var(name, i, var)?;
                        self.add_tensor(&n, &v, s);
                        ins.push(n);
                        i += 1;
                    } else if var == "gamma" {
                        return Err(at("has scale=False, which nnsign does not map".into()));
                    }
                }
                let attrs = BTreeMap::from([("axis".to_owned(), Attr::Int(-1)), ("epsilon".to_owned(), Attr::Float(eps))]);
                self.node("LayerNormalization", name, ins, name, attrs);
            }
            "BatchNormalization" => {
                // Inference: one multiply and one add along the normalized (last) axis, from the
                // moving statistics.
                let axis = config.get("axis").and_then(|a| a.as_i64()).unwrap_or(-1);
                if axis != -1 {
                    return Err(at(format!("normalizes axis {axis}; nnsign maps axis -1 (channels last) only")));
                }
                let eps = config.get("epsilon").and_then(|e| e.as_f64()).unwrap_or(1e-3);
                let (scale, center) = (flag(config, "scale"), flag(config, "center"));
                let mut i = 0;
                let mut next = |b: &mut Self, var: &str| -> Result<(Vec<f32>, Vec<u64>), ImportError> {
                    let (_, v, s) = b.var(name, i, var)?;
                    i += 1;
                    Ok((v, s))
                };
                let gamma = if scale { Some(next(self, "gamma")?.0) } else { None };
                let beta = if center { Some(next(self, "beta")?.0) } else { None };
                let (mean, shape) = next(self, "moving_mean")?;
                let (var, _) = next(self, "moving_variance")?;
                let mul: Vec<f32> = (0..mean.len())
                    .map(|c| (gamma.as_ref().map_or(1.0, |g| g[c] as f64) / (var[c] as f64 + eps).sqrt()) as f32)
                    .collect();
                let add: Vec<f32> = (0..mean.len())
                    .map(|c| (beta.as_ref().map_or(0.0, |b| b[c] as f64) - mean[c] as f64 * mul[c] as f64) as f32)
                    .collect();
                let (m, a) = (format!("{name}/scale"), format!("{name}/shift"));
                self.add_tensor(&m, &mul, shape.clone());
                self.add_tensor(&a, &add, shape);
                let scaled = format!("{name}/scaled");
                self.node("Mul", &scaled, vec![one()?, m], &scaled, BTreeMap::new());
                self.node("Add", name, vec![scaled, a], name, BTreeMap::new());
            }
            "Embedding" => {
                if config.get("mask_zero").and_then(|m| m.as_bool()).unwrap_or(false) {
                    return Err(at("mask_zero=True is not mapped (Keras would mask the padded steps in the layers after it)".into()));
                }
                let (table, v, s) = self.var(name, 0, "embeddings")?;
                self.add_tensor(&table, &v, s);
                self.node("Gather", name, vec![table, one()?], name, BTreeMap::from([("axis".to_owned(), Attr::Int(0))]));
            }
            "Conv2D" | "MaxPooling2D" | "AveragePooling2D" => {
                let ints = |k: &str| -> Result<Option<Vec<u64>>, ImportError> {
                    match config.get(k) {
                        None | Some(Json::Null) => Ok(None),
                        Some(Json::Number(n)) => Ok(n.as_u64().map(|v| vec![v, v])),
                        Some(Json::Array(a)) => a
                            .iter()
                            .map(|v| v.as_u64().ok_or_else(|| at(format!("{k} holds a non-integer"))))
                            .collect::<Result<Vec<_>, _>>()
                            .map(Some),
                        Some(_) => Err(at(format!("{k} is not a list of integers"))),
                    }
                };
                let conv = class == "Conv2D";
                let kernel = ints(if conv { "kernel_size" } else { "pool_size" })?.ok_or_else(|| at("has no kernel size".into()))?;
                let strides = ints("strides")?.unwrap_or_else(|| if conv { vec![1, 1] } else { kernel.clone() });
                let dilations = if conv { ints("dilation_rate")?.unwrap_or(vec![1, 1]) } else { vec![1, 1] };
                if kernel.len() != 2 || strides.len() != 2 || dilations.len() != 2 {
                    return Err(at("is not 2-D".into()));
                }
                let last = text("data_format").unwrap_or("channels_last") == "channels_last";
                let pads = match text("padding").unwrap_or("valid") {
                    "valid" => vec![0; 4],
                    // Keras's "same": output size ceil(input / stride), the padding split with
                    // the odd cell after. With stride 1 it needs no input size.
                    "same" => {
                        let sizes: Vec<u64> = if strides == [1, 1] {
                            vec![0, 0]
                        } else {
                            let shape = self.shape_of(&one()?).map_err(|e| at(format!("its input's shape: {e}")))?;
                            let spatial = if last { [1, 2] } else { [2, 3] };
                            (spatial.iter())
                                .map(|&a| match shape.get(a) {
                                    Some(Dim::Fixed(n)) => Ok(*n),
                                    other => Err(at(format!("padding \"same\" with strides {strides:?} needs a fixed input size, not {other:?}"))),
                                })
                                .collect::<Result<_, _>>()?
                        };
                        let total: Vec<u64> = (0..2)
                            .map(|a| {
                                let extent = (kernel[a] - 1) * dilations[a] + 1;
                                if strides[a] == 1 {
                                    extent - 1
                                } else {
                                    let out = sizes[a].div_ceil(strides[a]);
                                    ((out.max(1) - 1) * strides[a] + extent).saturating_sub(sizes[a])
                                }
                            })
                            .collect();
                        vec![total[0] / 2, total[1] / 2, total[0] - total[0] / 2, total[1] - total[1] / 2]
                    }
                    other => return Err(at(format!("padding {other:?} is not \"valid\" or \"same\""))),
                };
                let mut x = one()?;
                if last {
                    let t = format!("{name}/to_nchw");
                    self.node("Transpose", &t, vec![x], &t, BTreeMap::from([("perm".to_owned(), Attr::Ints(vec![0, 3, 1, 2]))]));
                    x = t;
                }
                let i64s = |v: &[u64]| Attr::Ints(v.iter().map(|&d| d as i64).collect());
                let mut attrs = BTreeMap::from([
                    ("kernel_shape".to_owned(), i64s(&kernel)),
                    ("strides".to_owned(), i64s(&strides)),
                    ("pads".to_owned(), i64s(&pads)),
                ]);
                let op_out = format!("{name}/{}", if conv { "conv" } else { "pool" });
                if conv {
                    // Keras keeps kernels [kh, kw, in / groups, out]; Conv takes [out, in / groups, kh, kw].
                    let (wname, w, wshape) = self.var(name, 0, "kernel")?;
                    let [kh, kw, ci, co] = [wshape[0], wshape[1], wshape[2], wshape[3]].map(|d| d as usize);
                    let mut moved = vec![0f32; w.len()];
                    for i in 0..kh {
                        for j in 0..kw {
                            for c in 0..ci {
                                for o in 0..co {
                                    moved[((o * ci + c) * kh + i) * kw + j] = w[((i * kw + j) * ci + c) * co + o];
                                }
                            }
                        }
                    }
                    self.add_tensor(&wname, &moved, vec![co as u64, ci as u64, kh as u64, kw as u64]);
                    attrs.insert("dilations".into(), i64s(&dilations));
                    attrs.insert("group".into(), Attr::Int(config.get("groups").and_then(|g| g.as_i64()).unwrap_or(1)));
                    let mut ins = vec![x, wname];
                    if config.get("use_bias").and_then(|b| b.as_bool()).unwrap_or(true) {
                        let (bias, v, s) = self.var(name, 1, "bias")?;
                        self.add_tensor(&bias, &v, s);
                        ins.push(bias);
                    }
                    self.node("Conv", &op_out, ins, &op_out, attrs);
                } else {
                    let op = if class == "MaxPooling2D" { "MaxPool" } else { "AveragePool" };
                    self.node(op, &op_out, vec![x], &op_out, attrs);
                }
                let mut y = op_out;
                if last {
                    let t = format!("{name}/to_nhwc");
                    self.node("Transpose", &t, vec![y], &t, BTreeMap::from([("perm".to_owned(), Attr::Ints(vec![0, 2, 3, 1]))]));
                    y = t;
                }
                let act = if conv { text("activation").unwrap_or("linear") } else { "linear" };
                match activation(act).ok_or_else(|| at(format!("activation {act:?} is not one nnsign runs")))? {
                    Some((op, attrs)) => self.node(op, name, vec![y], name, attrs),
                    None => self.node("Identity", name, vec![y], name, BTreeMap::new()),
                }
            }
            "GlobalAveragePooling2D" => {
                let last = text("data_format").unwrap_or("channels_last") == "channels_last";
                let keep = config.get("keepdims").and_then(|k| k.as_bool()).unwrap_or(false);
                let mut x = one()?;
                if last {
                    let t = format!("{name}/to_nchw");
                    self.node("Transpose", &t, vec![x], &t, BTreeMap::from([("perm".to_owned(), Attr::Ints(vec![0, 3, 1, 2]))]));
                    x = t;
                }
                let g = format!("{name}/gap");
                self.node("GlobalAveragePool", &g, vec![x], &g, BTreeMap::new());
                match (keep, last) {
                    (false, _) => self.node("Flatten", name, vec![g], name, BTreeMap::from([("axis".to_owned(), Attr::Int(1))])),
                    (true, true) => self.node("Transpose", name, vec![g], name, BTreeMap::from([("perm".to_owned(), Attr::Ints(vec![0, 2, 3, 1]))])),
                    (true, false) => self.node("Identity", name, vec![g], name, BTreeMap::new()),
                }
            }
            "ReLU" => {
                let slope = config.get("negative_slope").and_then(|v| v.as_f64()).unwrap_or(0.0);
                let plain = config.get("max_value").is_none_or(Json::is_null)
                    && config.get("threshold").and_then(|v| v.as_f64()).unwrap_or(0.0) == 0.0;
                if !plain {
                    return Err(at("max_value and threshold are not mapped; give a plain ReLU or LeakyReLU".into()));
                }
                match slope {
                    0.0 => self.node("Relu", name, vec![one()?], name, BTreeMap::new()),
                    a => self.node("LeakyRelu", name, vec![one()?], name, BTreeMap::from([("alpha".to_owned(), Attr::Float(a))])),
                }
            }
            "Conv2DTranspose" => self.conv_transpose(name, config, one()?).map_err(at)?,
            "UpSampling2D" => self.upsampling(name, config, one()?).map_err(at)?,
            "LSTM" | "GRU" => {
                let x = one()?;
                self.recurrent(name, class, config, "", &x, false).map_err(at)?;
            }
            "Bidirectional" => self.bidirectional(name, config, one()?).map_err(at)?,
            "GlobalAveragePooling1D" => {
                if text("data_format").unwrap_or("channels_last") != "channels_last" {
                    return Err(at("channels_first is not mapped".into()));
                }
                let keep = config.get("keepdims").and_then(|k| k.as_bool()).unwrap_or(false);
                let attrs = BTreeMap::from([("axes".to_owned(), Attr::Ints(vec![1])), ("keepdims".to_owned(), Attr::Int(keep as i64))]);
                self.node("ReduceMean", name, vec![one()?], name, attrs);
            }
            "MultiHeadAttention" => self.attention(name, config, inputs).map_err(at)?,
            "Lambda" => return Err(at("a Lambda layer runs arbitrary Python when Keras loads it; nnsign refuses it".into())),
            other => {
                return Err(at(format!(
                    "the Keras importer does not map {other} layers yet (it maps InputLayer, Dense, Conv2D, Conv2DTranspose, MaxPooling2D, AveragePooling2D, GlobalAveragePooling1D, GlobalAveragePooling2D, UpSampling2D, Activation, ReLU, Dropout, Flatten, Reshape, Add, Concatenate, LayerNormalization, BatchNormalization, Embedding, LSTM, GRU, Bidirectional, MultiHeadAttention)"
                )))
            }
        }
        Ok(())
    }
}

/// A weight read and laid out for nnsign: its name, values and shape.
type Weight = (String, Vec<f32>, Vec<u64>);

/// Layers of op-set 3.
impl Builder<'_> {
    /// A scalar F32 constant, named `name`.
    fn scalar(&mut self, name: &str, v: f64) -> String {
        self.node(
            "Constant",
            name,
            Vec::new(),
            name,
            BTreeMap::from([("value_float".to_owned(), Attr::Float(v))]),
        );
        name.to_owned()
    }

    /// `x` transposed by `perm`, as value `name`.
    fn transpose(&mut self, name: &str, x: String, perm: &[i64]) -> String {
        self.node(
            "Transpose",
            name,
            vec![x],
            name,
            BTreeMap::from([("perm".to_owned(), Attr::Ints(perm.to_vec()))]),
        );
        name.to_owned()
    }

    /// `x` reshaped to `shape` (0 copies, -1 infers), as value `name`.
    fn reshape(&mut self, name: &str, x: String, shape: &[i64]) -> String {
        self.node(
            "Reshape",
            name,
            vec![x],
            name,
            BTreeMap::from([("shape".to_owned(), Attr::Ints(shape.to_vec()))]),
        );
        name.to_owned()
    }

    /// The layer's activation applied to `x`, as value `name`.
    fn activate(&mut self, name: &str, config: &Json, x: String) -> Result<(), String> {
        let act = config
            .get("activation")
            .and_then(|a| a.as_str())
            .unwrap_or("linear");
        match activation(act).ok_or_else(|| format!("activation {act:?} is not one nnsign runs"))? {
            Some((op, attrs)) => self.node(op, name, vec![x], name, attrs),
            None => self.node("Identity", name, vec![x], name, BTreeMap::new()),
        }
        Ok(())
    }

    /// Two integers from a config entry given as one or a pair.
    fn pair(config: &Json, key: &str, default: [u64; 2]) -> Result<[u64; 2], String> {
        match config.get(key) {
            None | Some(Json::Null) => Ok(default),
            Some(Json::Number(n)) => n
                .as_u64()
                .map(|v| [v, v])
                .ok_or_else(|| format!("{key} is not a size")),
            Some(Json::Array(a)) if a.len() == 2 => match (a[0].as_u64(), a[1].as_u64()) {
                (Some(p), Some(q)) => Ok([p, q]),
                _ => Err(format!("{key} holds a non-integer")),
            },
            Some(_) => Err(format!("{key} is not one or two integers")),
        }
    }

    /// `Conv2DTranspose`: Keras keeps the kernel as `[kh, kw, out, in]`, ONNX's ConvTranspose
    /// takes `[in, out, kh, kw]`.
    fn conv_transpose(&mut self, name: &str, config: &Json, x: String) -> Result<(), String> {
        let kernel = Self::pair(config, "kernel_size", [0, 0])?;
        let strides = Self::pair(config, "strides", [1, 1])?;
        if kernel.contains(&0) || strides.contains(&0) {
            return Err(format!(
                "kernel {kernel:?} or strides {strides:?} holds a 0"
            ));
        }
        if Self::pair(config, "dilation_rate", [1, 1])? != [1, 1] {
            return Err("dilation_rate other than 1 is not mapped".into());
        }
        let same = match config
            .get("padding")
            .and_then(|p| p.as_str())
            .unwrap_or("valid")
        {
            "valid" => false,
            "same" => true,
            p => return Err(format!("padding {p:?} is not \"valid\" or \"same\"")),
        };
        let output_padding = match config.get("output_padding") {
            None | Some(Json::Null) => None,
            Some(_) => Some(Self::pair(config, "output_padding", [0, 0])?),
        };
        // ONNX's ConvTranspose scatters each input cell over `k` outputs, a full product
        // `(n - 1) s + k` long, then drops `pads` at either end and adds `output_padding` cells
        // (bias only) at the end. Keras pads as JAX's transposed convolution does: `left` and
        // `right` cells around the stride-dilated input before a plain convolution, where the
        // full product would have `k - 1` on each side.
        let (mut pads, mut extra) = ([0i64; 4], [0i64; 2]);
        for a in 0..2 {
            let (k, s) = (kernel[a] as i64, strides[a] as i64);
            let (left, right) =
                keras_transpose_padding(k, s, same, output_padding.map(|p| p[a] as i64));
            pads[a] = k - 1 - left;
            if right < k {
                pads[a + 2] = k - 1 - right;
            } else {
                extra[a] = right - (k - 1);
            }
        }
        let last = config
            .get("data_format")
            .and_then(|d| d.as_str())
            .unwrap_or("channels_last")
            == "channels_last";
        let (wname, w, wshape) = self.var(name, 0, "kernel").map_err(|e| e.to_string())?;
        let [kh, kw, co, ci] = <[u64; 4]>::try_from(wshape.as_slice())
            .map_err(|_| format!("kernel has shape {wshape:?}, not 4-D"))?
            .map(|d| d as usize);
        if w.len() != kh * kw * co * ci {
            return Err(format!(
                "kernel holds {} values for shape {wshape:?}",
                w.len()
            ));
        }
        let mut moved = vec![0f32; w.len()];
        for i in 0..kh {
            for j in 0..kw {
                for o in 0..co {
                    for c in 0..ci {
                        moved[((c * co + o) * kh + i) * kw + j] =
                            w[((i * kw + j) * co + o) * ci + c];
                    }
                }
            }
        }
        self.add_tensor(
            &wname,
            &moved,
            vec![ci as u64, co as u64, kh as u64, kw as u64],
        );
        let x = if last {
            self.transpose(&format!("{name}/to_nchw"), x, &[0, 3, 1, 2])
        } else {
            x
        };
        let mut ins = vec![x, wname];
        if config
            .get("use_bias")
            .and_then(|b| b.as_bool())
            .unwrap_or(true)
        {
            let (bias, v, s) = self.var(name, 1, "bias").map_err(|e| e.to_string())?;
            self.add_tensor(&bias, &v, s);
            ins.push(bias);
        }
        let i64s = |v: [u64; 2]| Attr::Ints(v.iter().map(|&d| d as i64).collect());
        let mut attrs = BTreeMap::from([
            ("kernel_shape".to_owned(), i64s(kernel)),
            ("strides".to_owned(), i64s(strides)),
            ("pads".to_owned(), Attr::Ints(pads.to_vec())),
        ]);
        if extra != [0, 0] {
            attrs.insert("output_padding".into(), Attr::Ints(extra.to_vec()));
        }
        let out = format!("{name}/deconv");
        self.node("ConvTranspose", &out, ins, &out, attrs);
        let y = if last {
            self.transpose(&format!("{name}/to_nhwc"), out, &[0, 2, 3, 1])
        } else {
            out
        };
        self.activate(name, config, y)
    }

    /// `UpSampling2D`: nearest repeats each cell (ONNX Resize, asymmetric, floor); bilinear
    /// interpolates with half-pixel centers, as Keras's `image.resize` does.
    fn upsampling(&mut self, name: &str, config: &Json, x: String) -> Result<(), String> {
        let [sh, sw] = Self::pair(config, "size", [2, 2])?;
        let attrs = match config
            .get("interpolation")
            .and_then(|i| i.as_str())
            .unwrap_or("nearest")
        {
            "nearest" => [
                ("mode", "nearest"),
                ("coordinate_transformation_mode", "asymmetric"),
                ("nearest_mode", "floor"),
            ],
            "bilinear" => [
                ("mode", "linear"),
                ("coordinate_transformation_mode", "half_pixel"),
                ("nearest_mode", "floor"),
            ],
            other => {
                return Err(format!(
                    "interpolation {other:?} is not mapped (nearest, bilinear)"
                ))
            }
        };
        let mut attrs: BTreeMap<String, Attr> = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), Attr::Text(v.to_string())))
            .collect();
        let last = config
            .get("data_format")
            .and_then(|d| d.as_str())
            .unwrap_or("channels_last")
            == "channels_last";
        let scales = if last {
            [1.0, sh as f64, sw as f64, 1.0]
        } else {
            [1.0, 1.0, sh as f64, sw as f64]
        };
        attrs.insert("scales".into(), Attr::Floats(scales.to_vec()));
        self.node("Resize", name, vec![x], name, attrs);
        Ok(())
    }

    /// An `LSTM` or `GRU` layer (or the half of a `Bidirectional` at `within`), run as ONNX's
    /// op on `x` `[batch, steps, features]` (layout 1). Returns the weights `(W, R, B)` it
    /// added, for a `Bidirectional` to stack; with `stacked` false it also adds the node.
    fn recurrent(
        &mut self,
        name: &str,
        class: &str,
        config: &Json,
        within: &str,
        x: &str,
        stacked: bool,
    ) -> Result<Option<[Weight; 3]>, String> {
        let flag = |k: &str| config.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        for k in ["stateful", "return_state", "unroll"] {
            if flag(k) {
                return Err(format!("{k}=True is not mapped"));
            }
        }
        if flag("go_backwards") && !stacked {
            return Err("go_backwards=True outside Bidirectional is not mapped".into());
        }
        let units = config
            .get("units")
            .and_then(|u| u.as_u64())
            .ok_or("has no units")? as usize;
        let act = |k: &str, default: &str| -> Result<&'static str, String> {
            match config.get(k).and_then(|a| a.as_str()).unwrap_or(default) {
                "tanh" => Ok("Tanh"),
                "sigmoid" => Ok("Sigmoid"),
                "relu" => Ok("Relu"),
                other => Err(format!("{k} {other:?} is not mapped (tanh, sigmoid, relu)")),
            }
        };
        let (f, g) = (
            act("recurrent_activation", "sigmoid")?,
            act("activation", "tanh")?,
        );
        let lstm = class == "LSTM";
        let gates = if lstm { 4 } else { 3 };
        let reset_after = !lstm
            && config
                .get("reset_after")
                .and_then(|v| v.as_bool())
                .unwrap_or(true);
        let cell = if within.is_empty() {
            "cell".to_owned()
        } else {
            format!("{within}/cell")
        };
        let read = |b: &mut Self, i: usize, var: &str| {
            b.var_in(name, &cell, i, var).map_err(|e| e.to_string())
        };
        let (_, k, kshape) = read(self, 0, "kernel")?;
        let (_, r, rshape) = read(self, 1, "recurrent_kernel")?;
        let width = gates * units;
        let input = match kshape.as_slice() {
            [i, w] if *w as usize == width => *i as usize,
            s => return Err(format!("kernel has shape {s:?}, not [features, {width}]")),
        };
        if rshape != [units as u64, width as u64] {
            return Err(format!(
                "recurrent_kernel has shape {rshape:?}, not [{units}, {width}]"
            ));
        }
        // Keras orders gates i, f, c, o (LSTM) and z, r, h (GRU), each a column block of the
        // kernel [in, gates * units]; ONNX wants i, o, f, c and z, r, h as row blocks.
        let order: &[usize] = if lstm { &[0, 3, 1, 2] } else { &[0, 1, 2] };
        let rows = |m: &[f32], cols_in: usize| -> Vec<f32> {
            let mut out = Vec::with_capacity(m.len());
            for &gate in order {
                for u in 0..units {
                    let col = gate * units + u;
                    out.extend((0..cols_in).map(|i| m[i * width + col]));
                }
            }
            out
        };
        let w = rows(&k, input);
        let rr = rows(&r, units);
        let mut bias = vec![0f32; 2 * width];
        if config
            .get("use_bias")
            .and_then(|b| b.as_bool())
            .unwrap_or(true)
        {
            let (_, b, bshape) = read(self, 2, "bias")?;
            // LSTM and GRU without reset_after: one bias [gates * units] on the input side; GRU
            // with reset_after: [2, gates * units], input then recurrent.
            let halves: usize = match (reset_after, bshape.as_slice()) {
                (false, [n]) if *n as usize == width => 1,
                (true, [2, n]) if *n as usize == width => 2,
                (_, s) => return Err(format!("bias has shape {s:?}")),
            };
            for h in 0..halves {
                for (slot, &gate) in order.iter().enumerate() {
                    for u in 0..units {
                        bias[h * width + slot * units + u] = b[h * width + gate * units + u];
                    }
                }
            }
        }
        let tensors = [
            (
                format!(
                    "{name}{}/W",
                    if within.is_empty() {
                        String::new()
                    } else {
                        format!("/{within}")
                    }
                ),
                w,
                vec![1, width as u64, input as u64],
            ),
            (
                format!(
                    "{name}{}/R",
                    if within.is_empty() {
                        String::new()
                    } else {
                        format!("/{within}")
                    }
                ),
                rr,
                vec![1, width as u64, units as u64],
            ),
            (
                format!(
                    "{name}{}/B",
                    if within.is_empty() {
                        String::new()
                    } else {
                        format!("/{within}")
                    }
                ),
                bias,
                vec![1, 2 * width as u64],
            ),
        ];
        if stacked {
            return Ok(Some(tensors));
        }
        let names: Vec<String> = tensors.iter().map(|t| t.0.clone()).collect();
        for (n, v, s) in tensors {
            self.add_tensor(&n, &v, s);
        }
        let sequences = config
            .get("return_sequences")
            .and_then(|v| v.as_bool())
            .unwrap_or(false);
        self.rnn_node(
            name,
            class,
            units,
            "forward",
            [f, g],
            reset_after,
            x,
            &names,
            sequences,
        );
        Ok(None)
    }

    /// `Bidirectional` around an `LSTM` or `GRU`: one ONNX node with `direction`
    /// bidirectional, the weights of both halves stacked.
    fn bidirectional(&mut self, name: &str, config: &Json, x: String) -> Result<(), String> {
        let merge = match config.get("merge_mode") {
            None => "concat",
            Some(Json::String(m)) if matches!(m.as_str(), "concat" | "sum" | "ave") => m.as_str(),
            // The two directions as two outputs, which the layers after pick by index.
            Some(Json::Null) => {
                return Err("merge_mode None (two outputs) is not mapped (concat, sum, ave)".into())
            }
            Some(other) => {
                return Err(format!(
                    "merge_mode {other} is not mapped (concat, sum, ave)"
                ))
            }
        };
        let half = |key: &str| -> Result<(&str, &Json), String> {
            let layer = config.get(key).ok_or_else(|| format!("has no {key}"))?;
            let class = layer
                .get("class_name")
                .and_then(|c| c.as_str())
                .unwrap_or("");
            if !matches!(class, "LSTM" | "GRU") {
                return Err(format!(
                    "wraps a {class:?}; nnsign maps Bidirectional LSTM and GRU"
                ));
            }
            if layer
                .get("module")
                .and_then(|m| m.as_str())
                .is_some_and(|m| !m.starts_with("keras"))
            {
                return Err(format!("its {key} comes from outside Keras"));
            }
            Ok((class, layer.get("config").unwrap_or(&Json::Null)))
        };
        let (class, fwd) = half("layer")?;
        let (back_class, bwd) = half("backward_layer")?;
        let get = |c: &Json, k: &str| c.get(k).cloned().unwrap_or(Json::Null);
        if back_class != class
            || get(fwd, "units") != get(bwd, "units")
            || get(fwd, "return_sequences") != get(bwd, "return_sequences")
        {
            return Err("its two halves differ in class, units or return_sequences".into());
        }
        if get(fwd, "go_backwards") == Json::Bool(true)
            || get(bwd, "go_backwards") != Json::Bool(true)
        {
            return Err("its halves must run forward and backward".into());
        }
        for k in [
            "activation",
            "recurrent_activation",
            "use_bias",
            "reset_after",
        ] {
            if get(fwd, k) != get(bwd, k) {
                return Err(format!("its two halves differ in {k}"));
            }
        }
        let [wf, rf, bf] = self
            .recurrent(name, class, fwd, "forward_layer", &x, true)?
            .expect("stacked");
        let [wb, rb, bb] = self
            .recurrent(name, class, bwd, "backward_layer", &x, true)?
            .expect("stacked");
        let mut names = Vec::new();
        for ((n, mut v, mut shape), (_, v2, _)) in [(wf, wb), (rf, rb), (bf, bb)] {
            v.extend(v2);
            shape[0] = 2;
            let n = n.replace("/forward_layer", "");
            self.add_tensor(&n, &v, shape);
            names.push(n);
        }
        let units = get(fwd, "units").as_u64().unwrap_or(0) as usize;
        let act = |k: &str, default: &str| match get(fwd, k).as_str().unwrap_or(default) {
            "tanh" => "Tanh",
            "relu" => "Relu",
            _ => "Sigmoid",
        };
        let reset_after = class == "GRU" && get(fwd, "reset_after").as_bool().unwrap_or(true);
        let sequences = get(fwd, "return_sequences").as_bool().unwrap_or(false);
        let node = format!("{name}/rnn");
        self.rnn_node(
            &node,
            class,
            units,
            "bidirectional",
            [
                act("recurrent_activation", "sigmoid"),
                act("activation", "tanh"),
            ],
            reset_after,
            &x,
            &names,
            sequences,
        );
        // `{node}` is [batch, (steps,) 2 * units], the directions concatenated.
        match merge {
            "concat" => self.node("Identity", name, vec![node], name, BTreeMap::new()),
            _ => {
                let split = self.reshape(
                    &format!("{name}/directions"),
                    node,
                    if sequences {
                        &[0, 0, 2, -1]
                    } else {
                        &[0, 2, -1]
                    },
                );
                let op = if merge == "sum" {
                    "ReduceSum"
                } else {
                    "ReduceMean"
                };
                let axis = if sequences { 2 } else { 1 };
                self.node(
                    op,
                    name,
                    vec![split],
                    name,
                    BTreeMap::from([
                        ("axes".to_owned(), Attr::Ints(vec![axis])),
                        ("keepdims".to_owned(), Attr::Int(0)),
                    ]),
                );
            }
        }
        Ok(())
    }

    /// `MultiHeadAttention` over `[batch, steps, features]` inputs (attention over axis 1):
    /// projections as MatMul + Add, scores scaled by 1 / sqrt(key_dim), an `attention_mask`
    /// (kept where > 0.5) applied as Keras's masked softmax does (masked scores set to -1e9
    /// before the softmax, their probabilities to 0 after).
    fn attention(&mut self, name: &str, config: &Json, inputs: &[String]) -> Result<(), String> {
        let int = |k: &str| config.get(k).and_then(|v| v.as_u64());
        let heads = int("num_heads").ok_or("has no num_heads")? as i64;
        let key_dim = int("key_dim").ok_or("has no key_dim")? as i64;
        let value_dim = int("value_dim").unwrap_or(key_dim as u64) as i64;
        let axes_ok = config
            .get("attention_axes")
            .is_none_or(|a| a.is_null() || *a == serde_json::json!([1]));
        if !axes_ok {
            return Err("attention_axes other than [1] is not mapped".into());
        }
        if !config.get("output_shape").is_none_or(Json::is_null) {
            return Err("output_shape is not mapped".into());
        }
        if config
            .get("use_gate")
            .and_then(|g| g.as_bool())
            .unwrap_or(false)
            || !config.get("sliding_window").is_none_or(Json::is_null)
        {
            return Err("use_gate and sliding_window are not mapped".into());
        }
        let (query, value) = match inputs {
            [q, v] => (q.clone(), v.clone()),
            [q, v, _] => (q.clone(), v.clone()),
            _ => {
                return Err(format!(
                    "takes query and value (and key), {} given",
                    inputs.len()
                ))
            }
        };
        let key = inputs
            .get(2)
            .cloned()
            .or_else(|| self.kwargs.get("key").cloned())
            .unwrap_or_else(|| value.clone());
        let bias = config
            .get("use_bias")
            .and_then(|b| b.as_bool())
            .unwrap_or(true);
        // One projection: x · kernel [features, heads, dim] + bias [heads, dim], split into
        // heads: [batch, heads, steps, dim].
        let project = |b: &mut Self, part: &str, x: String, dim: i64| -> Result<String, String> {
            let (_, w, shape) = b
                .var_in(name, part, 0, "kernel")
                .map_err(|e| e.to_string())?;
            let features = match shape.as_slice() {
                [f, h, d] if *h as i64 == heads && *d as i64 == dim => *f,
                s => {
                    return Err(format!(
                        "{part} kernel has shape {s:?}, not [features, {heads}, {dim}]"
                    ))
                }
            };
            let wname = format!("{name}/{part}/kernel");
            b.add_tensor(&wname, &w, vec![features, (heads * dim) as u64]);
            let mm = format!("{name}/{part}/matmul");
            b.node("MatMul", &mm, vec![x, wname], &mm, BTreeMap::new());
            let mut y = mm;
            if bias {
                let (_, v, _) = b.var_in(name, part, 1, "bias").map_err(|e| e.to_string())?;
                let bname = format!("{name}/{part}/bias");
                b.add_tensor(&bname, &v, vec![(heads * dim) as u64]);
                let add = format!("{name}/{part}/add");
                b.node("Add", &add, vec![y, bname], &add, BTreeMap::new());
                y = add;
            }
            let split = b.reshape(&format!("{name}/{part}/heads"), y, &[0, 0, heads, dim]);
            Ok(b.transpose(&format!("{name}/{part}/bhsd"), split, &[0, 2, 1, 3]))
        };
        let q = project(self, "query_dense", query, key_dim)?;
        let k = project(self, "key_dense", key, key_dim)?;
        let v = project(self, "value_dense", value, value_dim)?;
        let scale = self.scalar(&format!("{name}/scale"), 1.0 / (key_dim as f64).sqrt());
        let qs = format!("{name}/scaled_query");
        self.node("Mul", &qs, vec![q, scale], &qs, BTreeMap::new());
        let kt = self.transpose(&format!("{name}/key_t"), k, &[0, 1, 3, 2]);
        let scores = format!("{name}/scores");
        self.node("MatMul", &scores, vec![qs, kt], &scores, BTreeMap::new());
        let probs = format!("{name}/probs");
        match self.kwargs.get("attention_mask").cloned() {
            None => self.node(
                "Softmax",
                &probs,
                vec![scores],
                &probs,
                BTreeMap::from([("axis".to_owned(), Attr::Int(-1))]),
            ),
            Some(mask) => {
                // [batch, steps or 1, keys] → [batch, 1, steps or 1, keys], over every head.
                let m = format!("{name}/mask");
                self.node(
                    "Unsqueeze",
                    &m,
                    vec![mask],
                    &m,
                    BTreeMap::from([("axes".to_owned(), Attr::Ints(vec![1]))]),
                );
                let half = self.scalar(&format!("{name}/half"), 0.5);
                let keep = format!("{name}/keep");
                self.node("Greater", &keep, vec![m, half], &keep, BTreeMap::new());
                let low = self.scalar(&format!("{name}/masked_score"), -1e9);
                let masked = format!("{name}/masked_scores");
                self.node(
                    "Where",
                    &masked,
                    vec![keep.clone(), scores, low],
                    &masked,
                    BTreeMap::new(),
                );
                let soft = format!("{name}/softmax");
                self.node(
                    "Softmax",
                    &soft,
                    vec![masked],
                    &soft,
                    BTreeMap::from([("axis".to_owned(), Attr::Int(-1))]),
                );
                let zero = self.scalar(&format!("{name}/zero"), 0.0);
                self.node(
                    "Where",
                    &probs,
                    vec![keep, soft, zero],
                    &probs,
                    BTreeMap::new(),
                );
            }
        }
        let ctx = format!("{name}/context");
        self.node("MatMul", &ctx, vec![probs, v], &ctx, BTreeMap::new());
        let t = self.transpose(&format!("{name}/context_bshd"), ctx, &[0, 2, 1, 3]);
        let merged = self.reshape(
            &format!("{name}/context_merged"),
            t,
            &[0, 0, heads * value_dim],
        );
        let (_, w, shape) = self
            .var_in(name, "output_dense", 0, "kernel")
            .map_err(|e| e.to_string())?;
        let out_features = match shape.as_slice() {
            [h, d, o] if *h as i64 == heads && *d as i64 == value_dim => *o,
            s => {
                return Err(format!(
                    "output_dense kernel has shape {s:?}, not [{heads}, {value_dim}, features]"
                ))
            }
        };
        let wname = format!("{name}/output_dense/kernel");
        self.add_tensor(&wname, &w, vec![(heads * value_dim) as u64, out_features]);
        let mm = format!("{name}/output_dense/matmul");
        self.node("MatMul", &mm, vec![merged, wname], &mm, BTreeMap::new());
        if bias {
            let (_, v, s) = self
                .var_in(name, "output_dense", 1, "bias")
                .map_err(|e| e.to_string())?;
            let bname = format!("{name}/output_dense/bias");
            self.add_tensor(&bname, &v, s);
            self.node("Add", name, vec![mm, bname], name, BTreeMap::new());
        } else {
            self.node("Identity", name, vec![mm], name, BTreeMap::new());
        }
        Ok(())
    }

    /// The ONNX RNN node and the reshape of its output to Keras's: `[batch, steps, dirs *
    /// units]` for sequences (the directions concatenated per step), `[batch, dirs * units]`
    /// for the last state.
    #[allow(clippy::too_many_arguments)]
    fn rnn_node(
        &mut self,
        name: &str,
        class: &str,
        units: usize,
        direction: &str,
        [f, g]: [&str; 2],
        reset_after: bool,
        x: &str,
        weights: &[String],
        sequences: bool,
    ) {
        let acts: Vec<String> = if class == "LSTM" {
            vec![f.into(), g.into(), g.into()]
        } else {
            vec![f.into(), g.into()]
        };
        let mut attrs = BTreeMap::from([
            ("hidden_size".to_owned(), Attr::Int(units as i64)),
            ("direction".to_owned(), Attr::Text(direction.into())),
            ("layout".to_owned(), Attr::Int(1)),
        ]);
        if [f, g] != ["Sigmoid", "Tanh"] {
            // ONNX's list of names, one per gate function, for every direction.
            let per_dir = acts.join(",");
            let all = if direction == "bidirectional" {
                format!("{per_dir},{per_dir}")
            } else {
                per_dir
            };
            attrs.insert("activations".into(), Attr::Text(all));
        }
        if class == "GRU" {
            attrs.insert("linear_before_reset".into(), Attr::Int(reset_after as i64));
        }
        let (y, yh) = (format!("{name}/Y"), format!("{name}/Y_h"));
        let mut inputs = vec![x.to_owned()];
        inputs.extend(weights.iter().cloned());
        self.nodes.push(Node {
            op: class.into(),
            name: format!("{name}/{}", class.to_lowercase()),
            inputs,
            outputs: vec![y.clone(), yh.clone()],
            attrs,
        });
        // layout 1: Y [batch, steps, dirs, units], Y_h [batch, dirs, units].
        if sequences {
            self.reshape(name, y, &[0, 0, -1]);
        } else {
            self.reshape(name, yh, &[0, -1]);
        }
    }
}

/// The cells Keras (as JAX's `conv_transpose`, `_convert_conv_transpose_padding_args_from_keras_to_jax`
/// in keras/src/backend/common/backend_utils.py) pads on the left and right of one axis of the
/// stride-dilated input, for kernel `k` and stride `s` (no dilation), so that "valid" gives
/// `(n - 1) s + max(k, s)` outputs and "same" `n s`; with `output_padding` given, `(n - 1) s +
/// k + output_padding` and `(n - 1) s + k % 2 + output_padding`. `left` is at most `k - 1`
/// and neither is negative, so the ONNX pads made from them are never negative.
fn keras_transpose_padding(k: i64, s: i64, same: bool, output_padding: Option<i64>) -> (i64, i64) {
    if same {
        let total = match output_padding {
            None => s + k - 2,
            Some(op) => k + k % 2 - 2 + op,
        };
        let left = (total / 2 + total % 2).min(k - 1);
        (left, total - left)
    } else {
        (k - 1, k - 1 + output_padding.unwrap_or(k.max(s) - k))
    }
}

/// Keras's `to_snake_case` of a class name: `Conv2D` → `conv2d`, `MaxPooling2D` →
/// `max_pooling2d`, `BatchNormalization` → `batch_normalization`.
fn snake_case(class: &str) -> String {
    let c: Vec<char> = class.chars().collect();
    let mut out = String::new();
    for (i, &ch) in c.iter().enumerate() {
        // An underscore before an upper-case letter that starts a lower-case word, or that
        // follows a lower-case letter.
        let starts_word = i > 0
            && ch.is_ascii_uppercase()
            && c.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
        let after_lower = i > 0 && ch.is_ascii_uppercase() && c[i - 1].is_ascii_lowercase();
        if starts_word || after_lower {
            out.push('_');
        }
        out.push(ch.to_ascii_lowercase());
    }
    out
}

fn flag(config: &Json, key: &str) -> bool {
    config.get(key).and_then(|v| v.as_bool()).unwrap_or(true)
}

/// Refuses a class Keras would import from a module outside Keras, or a custom object.
fn check_module(path: &Path, obj: &Json, class: &str, name: &str) -> Result<(), ImportError> {
    if let Some(m) = obj
        .get("module")
        .and_then(|m| m.as_str())
        .filter(|m| !m.is_empty() && !m.starts_with("keras"))
    {
        return Err(invalid(path, format!("{class} {name:?} comes from module {m:?}: loading it would import and run that module; nnsign refuses it")));
    }
    if let Some(r) = obj
        .get("registered_name")
        .and_then(|r| r.as_str())
        .filter(|r| r.contains('>'))
    {
        return Err(invalid(path, format!("{class} {name:?} is the custom object {r:?}, whose code is not in the file; nnsign refuses it")));
    }
    Ok(())
}

/// The keyword arguments of a Functional layer's first call: those that pass one tensor, as
/// the name of the layer that made it, and the others as written.
fn config_kwargs(layer: &Json) -> (BTreeMap<String, String>, BTreeMap<String, Json>) {
    let kwargs = layer
        .pointer("/inbound_nodes/0/kwargs")
        .and_then(|k| k.as_object());
    let (mut tensors, mut options) = (BTreeMap::new(), BTreeMap::new());
    for (k, v) in kwargs.into_iter().flatten() {
        let mut names = Vec::new();
        collect_history(v, &mut names);
        if names.len() == 1 {
            tensors.insert(k.clone(), names.remove(0));
        } else {
            options.insert(k.clone(), v.clone());
        }
    }
    (tensors, options)
}

/// The layer names of a Functional layer's inbound tensors, if it lists them.
fn config_inbound(layer: &Json) -> Option<Vec<String>> {
    let nodes = layer.get("inbound_nodes")?.as_array()?;
    let first = nodes.first()?;
    let mut out = Vec::new();
    let mut walk = |v: &Json| collect_history(v, &mut out);
    walk(first.get("args").unwrap_or(&Json::Null));
    (!out.is_empty()).then_some(out)
}

fn collect_history(v: &Json, out: &mut Vec<String>) {
    match v {
        Json::Object(o)
            if o.get("class_name").and_then(|c| c.as_str()) == Some("__keras_tensor__") =>
        {
            if let Some(name) = v
                .pointer("/config/keras_history/0")
                .and_then(|n| n.as_str())
            {
                out.push(name.to_owned());
            }
        }
        Json::Array(items) => items.iter().for_each(|i| collect_history(i, out)),
        _ => {}
    }
}

/// Layer names of `[[name, node, tensor], ...]` or `[name, node, tensor]`.
fn history_names(list: &[Json]) -> Vec<String> {
    match list.first() {
        Some(Json::String(s)) => vec![s.clone()],
        _ => list
            .iter()
            .filter_map(|e| e.get(0).and_then(|n| n.as_str()).map(str::to_owned))
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn class_names_snake_case_as_keras_does() {
        for (class, snake) in [
            ("Conv2D", "conv2d"),
            ("MaxPooling2D", "max_pooling2d"),
            ("GlobalAveragePooling2D", "global_average_pooling2d"),
            ("BatchNormalization", "batch_normalization"),
            ("InputLayer", "input_layer"),
            ("Dense", "dense"),
            ("LayerNormalization", "layer_normalization"),
        ] {
            assert_eq!(super::snake_case(class), snake);
        }
    }
}
