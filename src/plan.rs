//! Validation of an architecture against an artifact's tensors, and its execution plan.
//!
//! Validation runs before anything is instantiated: it checks that every value is defined once
//! before use, infers every shape and dtype, checks them against the weights and the declared
//! outputs, and computes what the model will need in memory ([`crate::memory`]). Its output, a
//! [`Plan`], is what [`crate::runtime`] builds a runnable model from.

use std::collections::{HashMap, HashSet};

use crate::format::{TensorInfo, MAX_NAME_LEN, MAX_RANK};
use crate::model::{
    fmt_shape, invalid, topological_order, Dim, Graph, Node, SchemaError, ValueInfo, MAX_GRAPH_IO,
    MAX_NODES, OPSET,
};
use crate::ops::{self, Op, VType, D};
use crate::tensor::{DType, Elem};

/// One node of a validated graph, ready to run.
#[derive(Debug, Clone)]
pub struct Step {
    /// The node's name and op, for messages.
    pub node: String,
    pub op_name: String,
    pub op: Op,
    /// Value slots of the inputs (`None`: an omitted optional input).
    pub inputs: Vec<Option<usize>>,
    /// Value slots of the outputs, in the op's order (most ops have one).
    pub outputs: Vec<usize>,
    /// Values whose last use is this step: freed after it.
    pub free: Vec<usize>,
}

impl Step {
    /// The first output's slot (the only one of most ops).
    pub fn output(&self) -> usize {
        self.outputs[0]
    }

    /// The first input's slot, when the op runs in its memory: an in-place op at that
    /// value's last use (and taking it once).
    pub fn reused_input(&self) -> Option<usize> {
        match self.inputs.first() {
            Some(&Some(s))
                if self.op.in_place()
                    && self.free.contains(&s)
                    && self.inputs.iter().filter(|&&i| i == Some(s)).count() == 1 =>
            {
                Some(s)
            }
            _ => None,
        }
    }
}

/// A graph that passed validation: value slots, steps in an order where every input is ready,
/// the weights to load, and what it needs in memory.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Names of the values; steps refer to them by index.
    pub values: Vec<String>,
    /// Inferred type of every value (symbolic where the graph is).
    pub types: Vec<VType>,
    pub inputs: Vec<(usize, ValueInfo)>,
    pub outputs: Vec<(usize, ValueInfo)>,
    /// The weight tensors the graph uses, by value slot.
    pub weights: Vec<(usize, TensorInfo)>,
    pub steps: Vec<Step>,
    /// Bytes the weights take once widened (F32 or I64).
    pub weight_bytes: u64,
    /// Bytes of the values alive at once while it runs, at its worst, with every symbol at 1.
    pub peak_bytes_at_one: u64,
    /// The step after which that worst is reached.
    pub peak_step_at_one: Option<usize>,
    /// Set when the graph treats every item of a batch on its own (see [`Batching`]).
    pub batching: Option<Batching>,
}

impl Plan {
    /// Bytes the built model needs for a run with every symbol at 1: its weights and the
    /// values alive at once.
    pub fn memory_need(&self) -> u64 {
        self.weight_bytes.saturating_add(self.peak_bytes_at_one)
    }

    /// Infers the shape of every value from the graph inputs' types `inputs` (slot and
    /// concrete type): what a run with those inputs computes. Fails, naming the node, where
    /// they do not fit the graph.
    pub fn bind(&self, inputs: &[(usize, VType)]) -> Result<Vec<Vec<usize>>, String> {
        let mut types: Vec<Option<VType>> = vec![None; self.values.len()];
        for (slot, info) in &self.weights {
            types[*slot] = Some(weight_type(info));
        }
        for (slot, t) in inputs {
            types[*slot] = Some(t.clone());
        }
        for step in &self.steps {
            let ins: Vec<Option<&VType>> = (step.inputs.iter())
                .map(|s| s.map(|s| types[s].as_ref().expect("steps are in order")))
                .collect();
            let outs = step
                .op
                .infer_all(&ins)
                .map_err(|e| format!("node {:?} ({}): {e}", step.node, step.op_name))?;
            for (&slot, t) in step.outputs.iter().zip(outs) {
                types[slot] = Some(t);
            }
        }
        let shapes = (types.iter().enumerate())
            .map(|(slot, t)| match t {
                Some(t) => ops::shape::concrete(&t.shape)
                    .map_err(|e| format!("value {:?}: {e}", self.values[slot])),
                None => Ok(Vec::new()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        for (slot, info) in &self.outputs {
            let got = &shapes[*slot];
            let fits = got.len() == info.shape.len()
                && got.iter().zip(&info.shape).all(|(g, d)| match d {
                    Dim::Fixed(n) => *n as usize == *g,
                    Dim::Symbol(_) => true,
                });
            if !fits {
                return Err(format!(
                    "graph output {:?} is declared {} but these inputs make it {got:?}",
                    info.name,
                    fmt_shape(&info.shape)
                ));
            }
        }
        Ok(shapes)
    }

    /// Bytes of the values alive at once while the steps run, at their worst, for the value
    /// shapes `shapes` (from [`Plan::bind`]), with the working buffers each thread keeps;
    /// weights are not counted.
    pub fn peak_bytes(&self, shapes: &[Vec<usize>]) -> u64 {
        self.peak(shapes).0
    }

    /// [`Plan::peak_bytes`], and the step after which that peak is reached (`None`: before
    /// any step, with only the inputs alive).
    pub fn peak(&self, shapes: &[Vec<usize>]) -> (u64, Option<usize>) {
        let size = |slot: usize| {
            (shapes[slot].iter()).fold(self.types[slot].elem.size(), |acc, &d| {
                acc.saturating_mul(d as u64)
            })
        };
        // Each thread keeps the working buffers of the largest op it ran: count the largest,
        // once per thread, as alive throughout.
        let scratch = (self.steps.iter())
            .map(|step| {
                let ins: Vec<&[usize]> = (step.inputs.iter())
                    .map(|s| s.map_or(&[][..], |s| &shapes[s][..]))
                    .collect();
                step.op.scratch_bytes(&ins, &shapes[step.output()])
            })
            .max()
            .unwrap_or(0)
            .saturating_mul(rayon::current_num_threads() as u64);
        let inputs = self.inputs.iter().map(|(s, _)| size(*s));
        let steps = self.steps.iter().map(|step| {
            let reused = step.reused_input();
            crate::memory::StepUse {
                allocates: match reused {
                    Some(_) => None,
                    None => Some(
                        (step.outputs.iter())
                            .map(|&s| size(s))
                            .fold(0, u64::saturating_add),
                    ),
                },
                frees: (step.free.iter())
                    .filter(|&&s| Some(s) != reused)
                    .map(|&s| size(s))
                    .fold(0, u64::saturating_add),
            }
        });
        crate::memory::peak(scratch, inputs, steps)
    }

    /// What the built model needs beyond its weight tensors as they were read: the weights
    /// that are widened (every dtype but F32 becomes a new F32 or I64 buffer; F32 tensors are
    /// used as read) and the values alive at once, for the check at load when the tensors are
    /// read straight into their place ([`crate::load`]).
    pub fn need_beyond_tensors(&self) -> crate::memory::ModelNeed {
        let in_place = |t: &TensorInfo| t.dtype == DType::F32 && cfg!(target_endian = "little");
        let widened = (self.weights.iter())
            .filter(|(_, t)| !in_place(t))
            .map(|(slot, _)| self.types[*slot].bytes_at_one())
            .fold(0, u64::saturating_add);
        crate::memory::ModelNeed {
            bytes: widened.saturating_add(self.peak_bytes_at_one),
            described: format!(
                "widened weights {widened} bytes; {}",
                self.describe_values()
            ),
        }
    }

    /// Where a run with every symbol at 1 needs the most memory, for messages.
    fn describe_values(&self) -> String {
        let at = match self.peak_step_at_one {
            Some(k) => format!(
                "after node {:?} ({})",
                self.steps[k].node, self.steps[k].op_name
            ),
            None => "with its inputs".into(),
        };
        format!(
            "values alive at once, at most {} bytes per batch of 1, {at}",
            self.peak_bytes_at_one
        )
    }
}

/// A graph whose every op treats batch items independently: every graph input holds `symbol`
/// as its first dimension (and nowhere else), and each output carries the batch along its axis
/// in `outputs`. Running slices of a batch and joining the outputs gives the same values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batching {
    pub symbol: String,
    pub outputs: Vec<usize>,
}

/// How the batch travels through `plan`, if it does so item by item.
fn batching(plan: &Plan) -> Option<Batching> {
    let (_, first) = plan.inputs.first()?;
    let Some(Dim::Symbol(symbol)) = first.shape.first() else {
        return None;
    };
    let mut axes: Vec<Option<usize>> = vec![None; plan.values.len()];
    for (slot, info) in &plan.inputs {
        let here = info
            .shape
            .iter()
            .map(|d| matches!(d, Dim::Symbol(s) if s == symbol));
        if here.clone().next() != Some(true) || here.filter(|&h| h).count() != 1 {
            return None;
        }
        axes[*slot] = Some(0);
    }
    for step in &plan.steps {
        let ins: Vec<Option<ops::BatchIn<'_>>> = (step.inputs.iter())
            .map(|s| s.map(|s| (axes[s], &plan.types[s])))
            .collect();
        if step.outputs.len() != 1 {
            return None;
        }
        axes[step.output()] = step.op.batch_axis(&ins).ok()?;
    }
    let outputs = (plan.outputs.iter())
        .map(|(slot, _)| axes[*slot])
        .collect::<Option<Vec<usize>>>()?;
    Some(Batching {
        symbol: symbol.clone(),
        outputs,
    })
}

/// The type a weight tensor has in a graph.
fn weight_type(info: &TensorInfo) -> VType {
    let elem = if info.dtype.is_float() {
        Elem::F32
    } else if info.dtype == DType::Bool {
        Elem::Bool
    } else {
        Elem::I64
    };
    VType::new(elem, info.shape.iter().map(|&d| D::Fixed(d)).collect())
}
impl Graph {
    /// Checks the graph against the artifact's tensors and builds the execution plan.
    /// Checks the graph against the artifact's tensors and plans its execution; every error
    /// names the node or value at fault (docs/SCHEMA.md, "Validation").
    pub fn validate(&self, tensors: &[TensorInfo]) -> Result<Plan, SchemaError> {
        self.validate_with(tensors, true)
    }

    /// Fills in the dtype and shape of every graph output from what the graph computes (for
    /// importers, whose sources do not always declare them). A dimension known only at run
    /// time is refused: a declaration needs sizes and symbols.
    pub fn declare_outputs(&mut self, tensors: &[TensorInfo]) -> Result<(), SchemaError> {
        let plan = self.validate_with(tensors, false)?;
        for (output, (slot, _)) in self.outputs.iter_mut().zip(&plan.outputs) {
            let t = &plan.types[*slot];
            output.dtype = t.elem.name().into();
            output.shape = (t.shape.iter())
                .map(|d| match d {
                    D::Fixed(n) => Ok(Dim::Fixed(*n)),
                    D::Sym(s) => Ok(Dim::Symbol(s.clone())),
                    D::Any => Err(invalid(format!(
                        "graph output {:?} has a dimension known only at run time",
                        output.name
                    ))),
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(())
    }

    fn validate_with(
        &self,
        tensors: &[TensorInfo],
        check_outputs: bool,
    ) -> Result<Plan, SchemaError> {
        if self.opset > OPSET {
            return Err(invalid(format!(
                "architecture needs op-set {}, this nnsign implements op-sets 1 to {OPSET}; upgrade nnsign",
                self.opset
            )));
        }
        if self.opset == 0 {
            return Err(invalid(format!(
                "architecture op-set 0 does not exist; use 1 to {OPSET}"
            )));
        }
        if self.inputs.is_empty() || self.outputs.is_empty() {
            return Err(invalid("graph needs at least one input and one output"));
        }
        if self.inputs.len() > MAX_GRAPH_IO || self.outputs.len() > MAX_GRAPH_IO {
            return Err(invalid(format!(
                "graph has more than {MAX_GRAPH_IO} inputs or outputs"
            )));
        }
        if self.nodes.len() > MAX_NODES {
            return Err(invalid(format!(
                "graph has {} nodes, more than the limit of {MAX_NODES}",
                self.nodes.len()
            )));
        }
        let weights: HashMap<&str, &TensorInfo> =
            tensors.iter().map(|t| (t.name.as_str(), t)).collect();
        // Every op parses, and every node has a unique name, before anything else.
        let mut node_names = HashSet::new();
        let mut parsed = Vec::with_capacity(self.nodes.len());
        for node in &self.nodes {
            if node.name.is_empty() || node.name.len() > MAX_NAME_LEN {
                return Err(invalid(format!(
                    "a {} node has an empty or over-long name",
                    node.op
                )));
            }
            if !node_names.insert(node.name.as_str()) {
                return Err(invalid(format!("node {:?}: name used twice", node.name)));
            }
            parsed.push(Op::parse(node, self.opset).map_err(|e| at(node, e))?);
        }
        // Who defines each value: a graph input, a weight, or exactly one node.
        let mut b = Builder::default();
        for input in &self.inputs {
            let elem = check_value_info("graph input", input, self.opset)?;
            if weights.contains_key(input.name.as_str()) {
                return Err(invalid(format!(
                    "graph input {:?} has the name of a weight tensor",
                    input.name
                )));
            }
            let shape = input.shape.iter().map(D::from_dim).collect();
            let slot = b.define(&input.name, "a graph input", Some(VType::new(elem, shape)))?;
            b.inputs.push((slot, input.clone()));
        }
        let mut producer: HashMap<&str, usize> = HashMap::new();
        for (i, node) in self.nodes.iter().enumerate() {
            for out in &node.outputs {
                if out.is_empty() {
                    return Err(at(node, "an output has an empty name".into()));
                }
                if weights.contains_key(out.as_str()) {
                    return Err(at(
                        node,
                        format!("output {out:?} has the name of a weight tensor"),
                    ));
                }
                b.define(out, &format!("node {:?}", node.name), None)?;
                producer.insert(out, i);
            }
        }
        // Inputs that are weights get a slot; anything else undefined is an error.
        let mut weight_slots = Vec::new();
        for node in &self.nodes {
            for name in node.inputs.iter().filter(|n| !n.is_empty()) {
                if b.slots.contains_key(name.as_str()) {
                    continue;
                }
                let Some(info) = weights.get(name.as_str()) else {
                    return Err(at(node, format!(
                        "input {name:?} is not defined: not a graph input, a weight tensor or any node's output"
                    )));
                };
                let usable = info.dtype.is_float()
                    || info.dtype.is_integer()
                    || (info.dtype == DType::Bool && self.opset >= 3);
                if !usable {
                    return Err(at(
                        node,
                        format!(
                            "weight {name:?} has dtype {}, which a graph cannot use",
                            info.dtype
                        ),
                    ));
                }
                let slot = b.define(name, "a weight", Some(weight_type(info)))?;
                weight_slots.push((slot, (*info).clone()));
            }
        }
        let order = topological_order(&self.nodes, &producer)?;
        for &i in &order {
            let node = &self.nodes[i];
            let ins: Vec<Option<usize>> = (node.inputs.iter())
                .map(|n| (!n.is_empty()).then(|| b.slots[n.as_str()]))
                .collect();
            let types: Vec<Option<&VType>> = (ins.iter())
                .map(|s| s.map(|s| b.types[s].as_ref().expect("defined before use")))
                .collect();
            let outs = parsed[i].infer_all(&types).map_err(|e| {
                let given: Vec<String> = (node.inputs.iter().zip(&types))
                    .filter_map(|(n, t)| {
                        Some(format!(
                            "{n:?} {}",
                            ops::shape::fmt_shape(&t.as_ref()?.shape)
                        ))
                    })
                    .collect();
                at(node, format!("{e} (its inputs: {})", given.join(", ")))
            })?;
            let slots: Vec<usize> = (node.outputs.iter()).map(|o| b.slots[o.as_str()]).collect();
            for (&slot, t) in slots.iter().zip(outs) {
                b.types[slot] = Some(t);
            }
            b.steps.push(Step {
                node: node.name.clone(),
                op_name: node.op.clone(),
                op: parsed[i].clone(),
                inputs: ins,
                outputs: slots,
                free: Vec::new(),
            });
        }
        for output in &self.outputs {
            let slot = *b.slots.get(output.name.as_str()).ok_or_else(|| {
                invalid(format!(
                    "graph output {:?} is not produced by any node",
                    output.name
                ))
            })?;
            if !check_outputs {
                b.outputs.push((slot, output.clone()));
                continue;
            }
            let elem = check_value_info("graph output", output, self.opset)?;
            let inferred = b.types[slot].as_ref().expect("every value is typed");
            let agree = inferred.elem == elem
                && inferred.shape.len() == output.shape.len()
                && inferred.shape.iter().zip(&output.shape).all(|(i, d)| {
                    matches!((i, d), (D::Any, _))
                        || matches!((i, d), (D::Fixed(p), Dim::Fixed(q)) if p == q)
                        || matches!((i, d), (D::Sym(p), Dim::Symbol(q)) if p == q)
                });
            if !agree {
                return Err(invalid(format!(
                    "graph output {:?} is declared {} {} but the graph computes {} {}",
                    output.name,
                    output.dtype,
                    fmt_shape(&output.shape),
                    inferred.elem.name(),
                    ops::shape::fmt_shape(&inferred.shape)
                )));
            }
            b.outputs.push((slot, output.clone()));
        }
        fuse(&mut b.steps, &b.outputs.iter().map(|(s, _)| *s).collect());
        // Free every activation after its last use; outputs and weights are kept.
        let mut last_use: HashMap<usize, usize> = HashMap::new();
        for (k, step) in b.steps.iter().enumerate() {
            for s in step.inputs.iter().flatten() {
                last_use.insert(*s, k);
            }
        }
        let read: HashSet<usize> = last_use.keys().copied().collect();
        let keep: HashSet<usize> = (b.outputs.iter().map(|(s, _)| *s))
            .chain(weight_slots.iter().map(|(s, _)| *s))
            .collect();
        for (slot, k) in last_use {
            if !keep.contains(&slot) {
                b.steps[k].free.push(slot);
            }
        }
        // An output nothing reads (an LSTM's last cell state, say) is freed as soon as made.
        for step in &mut b.steps {
            let unread: Vec<usize> = (step.outputs.iter().copied())
                .filter(|s| !keep.contains(s) && !read.contains(s))
                .collect();
            step.free.extend(unread);
        }
        let weight_bytes = (weight_slots.iter())
            .map(|(s, _)| b.types[*s].as_ref().expect("typed").bytes_at_one())
            .fold(0u64, u64::saturating_add);
        let mut plan = Plan {
            values: b.names,
            types: b
                .types
                .into_iter()
                .map(|t| t.expect("every value is typed"))
                .collect(),
            inputs: b.inputs,
            outputs: b.outputs,
            weights: weight_slots,
            steps: b.steps,
            weight_bytes,
            peak_bytes_at_one: 0,
            peak_step_at_one: None,
            batching: None,
        };
        plan.batching = batching(&plan);
        // The memory at batch 1 (every symbol at 1); a graph that cannot run with 1s is
        // estimated from its symbolic shapes instead.
        let ones: Vec<(usize, VType)> = (plan.inputs.iter())
            .map(|(slot, info)| {
                let t = &plan.types[*slot];
                let shape = info.shape.iter().map(|d| match d {
                    Dim::Fixed(n) => D::Fixed(*n),
                    Dim::Symbol(_) => D::Fixed(1),
                });
                (*slot, VType::new(t.elem, shape.collect()))
            })
            .collect();
        (plan.peak_bytes_at_one, plan.peak_step_at_one) = match plan.bind(&ones) {
            Ok(shapes) => plan.peak(&shapes),
            Err(_) => {
                let shapes: Vec<Vec<usize>> = (plan.types.iter())
                    .map(|t| {
                        t.shape
                            .iter()
                            .map(|d| d.fixed().unwrap_or(1) as usize)
                            .collect()
                    })
                    .collect();
                plan.peak(&shapes)
            }
        };
        Ok(plan)
    }
}

/// Fuses a Conv with the BatchNormalization and then the activation that alone take its output
/// (and are not graph outputs): they run on each image's output while it is in cache, instead
/// of each streaming the whole batch through memory again. Values and shapes are unchanged:
/// the fused step makes the last node's output.
fn fuse(steps: &mut Vec<Step>, outputs: &HashSet<usize>) {
    let mut k = 0;
    while k < steps.len() {
        if matches!(steps[k].op, Op::Conv(_)) {
            // Nothing follows a fused pooling: it changes the output's size.
            let pooled = |s: &Step| matches!(&s.op, Op::Conv(c) if c.then.last() == Some(&ops::Then::MaxPool2x2));
            while let Some(j) = sole_user(steps, k, outputs).filter(|_| !pooled(&steps[k])) {
                let next = &steps[j];
                let then = match &next.op {
                    Op::BatchNorm { epsilon }
                        if next.inputs[0] == Some(steps[k].output())
                            && !matches!(&steps[k].op, Op::Conv(c) if !c.then.is_empty()) =>
                    {
                        ops::Then::BatchNorm(*epsilon)
                    }
                    Op::Unary(u) if matches!(&steps[k].op, Op::Conv(c) if !c.then.iter().any(|t| matches!(t, ops::Then::Unary(_)))) => {
                        ops::Then::Unary(*u)
                    }
                    Op::Pool(p) if p.is_halving() => ops::Then::MaxPool2x2,
                    _ => break,
                };
                let next = steps.remove(j);
                let conv = &mut steps[k];
                if let ops::Then::BatchNorm(_) = then {
                    conv.inputs.resize(3, None);
                    conv.inputs.extend_from_slice(&next.inputs[1..5]);
                }
                let Op::Conv(c) = &mut conv.op else {
                    unreachable!("checked above")
                };
                c.then.push(then);
                conv.node = format!("{}+{}", conv.node, next.node);
                conv.op_name = format!("{}+{}", conv.op_name, next.op_name);
                conv.outputs = next.outputs;
            }
        }
        k += 1;
    }
}

/// The one step after `k` that reads step `k`'s output, when its output is not a graph output
/// and nothing else reads it.
fn sole_user(steps: &[Step], k: usize, outputs: &HashSet<usize>) -> Option<usize> {
    let out = steps[k].output();
    if outputs.contains(&out) {
        return None;
    }
    let mut users = (0..steps.len()).filter(|&j| steps[j].inputs.contains(&Some(out)));
    let j = users.next()?;
    let reads = steps[j].inputs.iter().filter(|&&i| i == Some(out)).count();
    (users.next().is_none() && reads == 1 && j > k).then_some(j)
}

/// An error about `node`, naming it.
fn at(node: &Node, msg: String) -> SchemaError {
    invalid(format!("node {:?} ({}): {msg}", node.name, node.op))
}

fn check_value_info(what: &str, v: &ValueInfo, opset: u64) -> Result<Elem, SchemaError> {
    if v.name.is_empty() || v.name.len() > MAX_NAME_LEN {
        return Err(invalid(format!("a {what} has an empty or over-long name")));
    }
    let elem = Elem::from_name(&v.dtype)
        .filter(|e| *e != Elem::Bool || opset >= 3)
        .ok_or_else(|| {
            invalid(format!(
                "{what} {:?} has dtype {:?}; graphs compute with F32 and I64 values (and BOOL from op-set 3)",
                v.name, v.dtype
            ))
        })?;
    if v.shape.len() > MAX_RANK {
        return Err(invalid(format!(
            "{what} {:?} has more than {MAX_RANK} dimensions",
            v.name
        )));
    }
    Ok(elem)
}

#[derive(Default)]
struct Builder {
    names: Vec<String>,
    types: Vec<Option<VType>>,
    slots: HashMap<String, usize>,
    inputs: Vec<(usize, ValueInfo)>,
    outputs: Vec<(usize, ValueInfo)>,
    steps: Vec<Step>,
}

impl Builder {
    fn define(&mut self, name: &str, by: &str, t: Option<VType>) -> Result<usize, SchemaError> {
        if self.slots.contains_key(name) {
            return Err(invalid(format!(
                "value {name:?} is defined twice (again by {by})"
            )));
        }
        let slot = self.names.len();
        self.names.push(name.to_owned());
        self.types.push(t);
        self.slots.insert(name.to_owned(), slot);
        Ok(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Attr;

    fn tensor(name: &str, shape: &[u64]) -> TensorInfo {
        TensorInfo {
            name: name.into(),
            dtype: DType::F32,
            shape: shape.to_vec(),
            offset: 0,
            length: shape.iter().product::<u64>() * 4,
        }
    }

    fn mlp_json() -> String {
        r#"{"opset": 1,
            "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 4]}],
            "outputs": [{"name": "probs", "dtype": "F32", "shape": ["batch", 3]}],
            "nodes": [
              {"op": "Dense", "name": "d1", "inputs": ["x", "k1", "b1"], "outputs": ["h"], "attrs": {"activation": "relu"}},
              {"op": "Dense", "name": "d2", "inputs": ["h", "k2"], "outputs": ["probs"], "attrs": {"activation": "softmax"}}
            ]}"#
        .to_string()
    }

    fn weights() -> Vec<TensorInfo> {
        vec![
            tensor("k1", &[4, 5]),
            tensor("b1", &[5]),
            tensor("k2", &[5, 3]),
        ]
    }

    #[test]
    fn a_valid_mlp_plans_two_dense_steps() {
        let g = Graph::from_json(&mlp_json()).unwrap();
        let plan = g.validate(&weights()).unwrap();
        assert_eq!(plan.steps.len(), 2);
        assert_eq!(plan.weight_bytes, (20 + 5 + 15) * 4);
        assert_eq!(plan.values, vec!["x", "h", "probs", "k1", "b1", "k2"]);
    }

    fn rejection(edit: impl Fn(&mut Graph), tensors: Vec<TensorInfo>) -> String {
        let mut g = Graph::from_json(&mlp_json()).unwrap();
        edit(&mut g);
        g.validate(&tensors).unwrap_err().to_string()
    }

    #[test]
    fn each_rule_names_the_node_at_fault() {
        let msg = rejection(|g| g.nodes[0].op = "Conv".into(), weights());
        assert!(
            msg.contains(
                "node \"d1\" (Conv): op \"Conv\" needs op-set 2, and the graph declares op-set 1"
            ),
            "{msg}"
        );
        let msg = rejection(|g| g.nodes[0].op = "Frobnicate".into(), weights());
        assert!(
            msg.contains("unknown op \"Frobnicate\" (op-set 1 has: Dense)"),
            "{msg}"
        );
        let bad_k2 = vec![
            tensor("k1", &[4, 5]),
            tensor("b1", &[5]),
            tensor("k2", &[6, 3]),
        ];
        let msg = rejection(|_| {}, bad_k2);
        assert!(
            msg.contains("node \"d2\" (Dense): input [batch, 5] does not fit kernel [6, 3] (kernel is [inputs, units]): 5 != 6"),
            "{msg}"
        );
        let bad_b1 = vec![
            tensor("k1", &[4, 5]),
            tensor("b1", &[4]),
            tensor("k2", &[5, 3]),
        ];
        let msg = rejection(|_| {}, bad_b1);
        assert!(
            msg.contains("bias [4] does not match 5 units: 4 != 5"),
            "{msg}"
        );
        let msg = rejection(|g| g.nodes[1].inputs[1] = "nope".into(), weights());
        assert!(
            msg.contains("node \"d2\" (Dense): input \"nope\" is not defined: not a graph input, a weight tensor or any node's output"),
            "{msg}"
        );
        let msg = rejection(|g| g.outputs[0].shape[1] = Dim::Fixed(4), weights());
        assert!(
            msg.contains("declared F32 [batch, 4] but the graph computes F32 [batch, 3]"),
            "{msg}"
        );
        let msg = rejection(|g| g.nodes[1].outputs[0] = "h".into(), weights());
        assert!(msg.contains("value \"h\" is defined twice"), "{msg}");
        let msg = rejection(
            |g| {
                g.nodes[0]
                    .attrs
                    .insert("activation".into(), Attr::Text("swish".into()));
            },
            weights(),
        );
        assert!(msg.contains("unknown activation \"swish\""), "{msg}");
        let msg = rejection(|g| g.opset = 4, weights());
        assert!(msg.contains("needs op-set 4"), "{msg}");
        let msg = rejection(
            |g| {
                g.nodes[0]
                    .attrs
                    .insert("units".into(), Attr::Int(3))
                    .map(drop)
                    .unwrap_or(())
            },
            weights(),
        );
        assert!(
            msg.contains("unknown attribute \"units\" for Dense"),
            "{msg}"
        );
    }

    #[test]
    fn nodes_run_in_dependency_order_whatever_their_listed_order() {
        let mut g = Graph::from_json(&mlp_json()).unwrap();
        g.nodes.swap(0, 1);
        let plan = g.validate(&weights()).unwrap();
        let order: Vec<&str> = plan.steps.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(order, vec!["d1", "d2"]);
    }

    #[test]
    fn a_cycle_is_refused_naming_its_nodes() {
        let g = Graph::from_json(
            r#"{"opset": 2,
            "inputs": [{"name": "x", "dtype": "F32", "shape": [2]}],
            "outputs": [{"name": "y", "dtype": "F32", "shape": [2]}],
            "nodes": [
              {"op": "Add", "name": "a", "inputs": ["x", "c"], "outputs": ["y"]},
              {"op": "Relu", "name": "b", "inputs": ["y"], "outputs": ["z"]},
              {"op": "Tanh", "name": "c", "inputs": ["z"], "outputs": ["c"]}
            ]}"#,
        )
        .unwrap();
        let msg = g.validate(&[]).unwrap_err().to_string();
        assert!(
            msg.contains("the graph has a cycle: \"a\" -> \"b\" -> \"c\" -> \"a\""),
            "{msg}"
        );
    }

    #[test]
    fn memory_need_counts_weights_and_the_values_alive_at_once() {
        let plan = Graph::from_json(&mlp_json())
            .unwrap()
            .validate(&weights())
            .unwrap();
        // At batch 1: x (16 bytes) and h (20) are alive together; then h and probs (12).
        assert_eq!(plan.weight_bytes, 160);
        assert_eq!(plan.peak_bytes_at_one, 36);
        assert_eq!(plan.memory_need(), 196);
        let shapes = plan
            .bind(&[(0, VType::new(Elem::F32, vec![D::Fixed(1000), D::Fixed(4)]))])
            .unwrap();
        assert_eq!(plan.peak_bytes(&shapes), 36_000);
    }

    fn cnn(softmax_axis: i64) -> Plan {
        let g = format!(
            r#"{{"opset": 2,
            "inputs": [{{"name": "x", "dtype": "F32", "shape": ["batch", 1, 4, 4]}}],
            "outputs": [{{"name": "y", "dtype": "F32", "shape": ["batch", 2]}}],
            "nodes": [
              {{"op": "Conv", "name": "c", "inputs": ["x", "w"], "outputs": ["a"]}},
              {{"op": "BatchNormalization", "name": "bn", "inputs": ["a", "s", "b", "m", "v"], "outputs": ["a2"]}},
              {{"op": "Relu", "name": "r", "inputs": ["a2"], "outputs": ["a3"]}},
              {{"op": "GlobalAveragePool", "name": "g", "inputs": ["a3"], "outputs": ["a4"]}},
              {{"op": "Flatten", "name": "f", "inputs": ["a4"], "outputs": ["a5"]}},
              {{"op": "Softmax", "name": "sm", "inputs": ["a5"], "outputs": ["y"], "attrs": {{"axis": {softmax_axis}}}}}
            ]}}"#
        );
        let t = vec![
            tensor("w", &[2, 1, 3, 3]),
            tensor("s", &[2]),
            tensor("b", &[2]),
            tensor("m", &[2]),
            tensor("v", &[2]),
        ];
        Graph::from_json(&g).unwrap().validate(&t).unwrap()
    }

    #[test]
    fn conv_batch_norm_and_relu_fuse_into_one_step() {
        let plan = cnn(-1);
        let names: Vec<&str> = plan.steps.iter().map(|s| s.node.as_str()).collect();
        assert_eq!(names, vec!["c+bn+r", "g", "f", "sm"]);
        assert_eq!(plan.steps[0].inputs.len(), 7);
        assert_eq!(plan.values[plan.steps[0].output()], "a3");
    }

    #[test]
    fn batching_follows_the_batch_through_the_graph() {
        assert_eq!(
            cnn(1).batching,
            Some(Batching {
                symbol: "batch".into(),
                outputs: vec![0]
            })
        );
        // A softmax across the batch mixes its items: no slicing.
        assert_eq!(cnn(0).batching, None);
        // Nor when the batch is not the first dimension of an input.
        let g = Graph::from_json(
            r#"{"opset": 2,
            "inputs": [{"name": "x", "dtype": "F32", "shape": [3, "batch"]}],
            "outputs": [{"name": "y", "dtype": "F32", "shape": [3, "batch"]}],
            "nodes": [{"op": "Relu", "name": "r", "inputs": ["x"], "outputs": ["y"]}]}"#,
        )
        .unwrap();
        assert_eq!(g.validate(&[]).unwrap().batching, None);
        // A transpose moves it: the output carries it on its last axis.
        let g = Graph::from_json(
            r#"{"opset": 2,
            "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", 3]}],
            "outputs": [{"name": "y", "dtype": "F32", "shape": [3, "batch"]}],
            "nodes": [{"op": "Transpose", "name": "t", "inputs": ["x"], "outputs": ["y"]}]}"#,
        )
        .unwrap();
        let b = g.validate(&[]).unwrap().batching.unwrap();
        assert_eq!(b.outputs, vec![1]);
    }
}
