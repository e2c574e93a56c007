//! The nnsign model schema: a graph of typed operations over named values (docs/SCHEMA.md).
//!
//! The same structure is read from the JSON given to `pack --arch` and stored as CBOR in the
//! manifest, where it stays as signed bytes until the artifact is authenticated
//! ([`Graph::decode`]). This module holds the document only; checking it against the weights
//! and planning its execution is [`crate::plan`]'s work.

use std::collections::{BTreeMap, HashMap};

use ciborium::value::Value;
use serde::{Deserialize, Serialize};

use crate::cbor;
use crate::format::{check_text, Arch, FormatError, Lines, MAX_NAME_LEN};

/// Highest op-set this nnsign implements (docs/SCHEMA.md). A graph with a higher one is refused
/// by its op-set.
pub const OPSET: u64 = 3;
/// Most nodes in one graph.
pub const MAX_NODES: usize = 65536;
/// Most graph inputs or outputs.
pub const MAX_GRAPH_IO: usize = 256;
/// A model architecture: a graph over named values. Weights are values whose names are tensors
/// of the artifact.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    pub opset: u64,
    pub inputs: Vec<ValueInfo>,
    pub outputs: Vec<ValueInfo>,
    pub nodes: Vec<Node>,
}

/// A graph input or output.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ValueInfo {
    pub name: String,
    pub dtype: String,
    pub shape: Vec<Dim>,
}

/// One dimension: a fixed size, or a symbol (such as `"batch"`) bound when the model runs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Hash)]
#[serde(untagged)]
pub enum Dim {
    Fixed(u64),
    Symbol(String),
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(n) => write!(f, "{n}"),
            Dim::Symbol(s) => f.write_str(s),
        }
    }
}

/// A node: one operation from named inputs to named outputs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub op: String,
    pub name: String,
    pub inputs: Vec<String>,
    pub outputs: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, Attr>,
}

/// A typed attribute value.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Text(String),
    Ints(Vec<i64>),
    Floats(Vec<f64>),
}

/// Why an architecture was refused. Every message names the node or value at fault.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// The JSON given to `--arch` does not parse as a graph.
    #[error("{0}")]
    Parse(String),
    /// A rule of the schema is broken.
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn invalid(msg: impl Into<String>) -> SchemaError {
    SchemaError::Invalid(msg.into())
}

impl Graph {
    /// Calls `check` on every string of the graph with a description of where it is, stopping
    /// at the first error: names printed in messages must pass the same checks as metadata.
    pub fn for_each_text<E>(
        &self,
        check: &mut impl FnMut(&str, &str) -> Result<(), E>,
    ) -> Result<(), E> {
        for v in self.inputs.iter().chain(&self.outputs) {
            check("graph value name", &v.name)?;
            check("graph value dtype", &v.dtype)?;
            for d in &v.shape {
                if let Dim::Symbol(s) = d {
                    check("dimension symbol", s)?;
                }
            }
        }
        for n in &self.nodes {
            check("node op", &n.op)?;
            check("node name", &n.name)?;
            for s in n.inputs.iter().chain(&n.outputs) {
                check("node value name", s)?;
            }
            for (k, a) in &n.attrs {
                check("attribute name", k)?;
                if let Attr::Text(t) = a {
                    check("attribute value", t)?;
                }
            }
        }
        Ok(())
    }

    /// Decodes a signed architecture: its CBOR must have the graph's structure, and every text
    /// in it must be a one-line name (FORMAT.md section 5). Errors are the manifest's own
    /// (exit 5): an architecture that does not decode is a malformed artifact, whatever the
    /// graph would mean.
    pub fn decode(arch: &Arch) -> Result<Graph, FormatError> {
        let value = cbor::decode(arch.encoded()).map_err(FormatError::Manifest)?;
        check_structure(&value)?;
        let graph: Graph = value
            .deserialized()
            .map_err(|e| FormatError::Manifest(cbor::shape_error(e)))?;
        graph.for_each_text(&mut |what, s| check_text(what, s, MAX_NAME_LEN, Lines::One))?;
        Ok(graph)
    }

    /// The deterministic CBOR form the manifest signs.
    pub fn encode(&self) -> Arch {
        Arch::from_encoded(cbor::to_vec(self).expect("graphs always encode"))
    }

    /// Parses the JSON form given to `pack --arch`.
    pub fn from_json(text: &str) -> Result<Graph, SchemaError> {
        serde_json::from_str(text).map_err(|e| SchemaError::Parse(e.to_string()))
    }
}

/// Checks a signed architecture against the CDDL of FORMAT.md section 5, exactly: what a
/// verifier checks of it without knowing the schema. Done on the CBOR values before they are
/// mapped onto [`Graph`], whose mapping is looser in places (it would read a byte string as
/// text, or an integer beyond the 64-bit signed range as a float) where two readers must not
/// disagree.
fn check_structure(graph: &Value) -> Result<(), FormatError> {
    let g = fields(graph, "", &["opset", "inputs", "outputs", "nodes"], &[])?;
    uint(g[0], "opset")?;
    for (list, at) in [(g[1], "inputs"), (g[2], "outputs")] {
        for (i, v) in array(list, at)?.iter().enumerate() {
            let at = format!("{at}[{i}]");
            let f = fields(v, &at, &["name", "dtype", "shape"], &[])?;
            text(f[0], &format!("{at}.name"))?;
            text(f[1], &format!("{at}.dtype"))?;
            for (d, dim) in array(f[2], &format!("{at}.shape"))?.iter().enumerate() {
                if !(dim.is_text() || dim.as_integer().is_some_and(|n| u64::try_from(n).is_ok())) {
                    return Err(arch_error(
                        &format!("{at}.shape[{d}]"),
                        "is neither an unsigned integer nor text",
                    ));
                }
            }
        }
    }
    for (i, node) in array(g[3], "nodes")?.iter().enumerate() {
        let at = format!("nodes[{i}]");
        let f = fields(node, &at, &["op", "name", "inputs", "outputs"], &["attrs"])?;
        text(f[0], &format!("{at}.op"))?;
        text(f[1], &format!("{at}.name"))?;
        for (list, what) in [(f[2], "inputs"), (f[3], "outputs")] {
            let what = format!("{at}.{what}");
            for (j, name) in array(list, &what)?.iter().enumerate() {
                text(name, &format!("{what}[{j}]"))?;
            }
        }
        let Some(attrs) = f[4..].first() else {
            continue;
        };
        let Value::Map(attrs) = attrs else {
            return Err(arch_error(&format!("{at}.attrs"), "is not a map"));
        };
        for (k, v) in attrs {
            let Some(name) = k.as_text() else {
                return Err(arch_error(
                    &format!("{at}.attrs"),
                    "has a key that is not text",
                ));
            };
            let at = format!("{at}.attrs.{name:?}");
            match v {
                Value::Text(_) | Value::Float(_) => {}
                Value::Integer(n) => int64(*n, &at)?,
                Value::Array(items) => {
                    for (j, item) in items.iter().enumerate() {
                        match item {
                            Value::Float(_) => {}
                            Value::Integer(n) => int64(*n, &format!("{at}[{j}]"))?,
                            _ => {
                                return Err(arch_error(
                                    &format!("{at}[{j}]"),
                                    "is neither an integer nor a float",
                                ))
                            }
                        }
                    }
                }
                _ => {
                    return Err(arch_error(
                        &at,
                        "is not an integer, a float, text, or an array of numbers",
                    ))
                }
            }
        }
    }
    Ok(())
}

fn arch_error(at: &str, what: &str) -> FormatError {
    let at = if at.is_empty() { "the graph" } else { at };
    FormatError::Invalid(format!("architecture: {at} {what}"))
}

/// The values of a closed map's keys: `required` in order, then `optional` where present.
fn fields<'a>(
    v: &'a Value,
    at: &str,
    required: &[&str],
    optional: &[&str],
) -> Result<Vec<&'a Value>, FormatError> {
    let Value::Map(entries) = v else {
        return Err(arch_error(at, "is not a map"));
    };
    for (k, _) in entries {
        match k.as_text() {
            Some(k) if required.contains(&k) || optional.contains(&k) => {}
            Some(k) => return Err(arch_error(at, &format!("has the unknown key {k:?}"))),
            None => return Err(arch_error(at, "has a key that is not text")),
        }
    }
    let get = |name: &str| entries.iter().find(|(k, _)| k.as_text() == Some(name));
    let mut out = Vec::with_capacity(required.len() + optional.len());
    for name in required {
        match get(name) {
            Some((_, v)) => out.push(v),
            None => return Err(arch_error(at, &format!("lacks the key {name:?}"))),
        }
    }
    out.extend(optional.iter().filter_map(|name| get(name).map(|(_, v)| v)));
    Ok(out)
}

fn array<'a>(v: &'a Value, at: &str) -> Result<&'a [Value], FormatError> {
    v.as_array()
        .map(Vec::as_slice)
        .ok_or_else(|| arch_error(at, "is not an array"))
}

fn text(v: &Value, at: &str) -> Result<(), FormatError> {
    match v {
        Value::Text(_) => Ok(()),
        _ => Err(arch_error(at, "is not a text string")),
    }
}

fn uint(v: &Value, at: &str) -> Result<(), FormatError> {
    match v.as_integer().map(u64::try_from) {
        Some(Ok(_)) => Ok(()),
        _ => Err(arch_error(at, "is not an unsigned integer")),
    }
}

fn int64(n: ciborium::value::Integer, at: &str) -> Result<(), FormatError> {
    match i64::try_from(n) {
        Ok(_) => Ok(()),
        Err(_) => Err(arch_error(
            at,
            &format!(
                "is the integer {}, outside the signed 64-bit range of an attribute",
                i128::from(n)
            ),
        )),
    }
}

/// The nodes in an order where each runs after the nodes whose outputs it takes (Kahn's
/// algorithm, keeping the listed order among ready nodes); a cycle is an error naming its nodes.
pub(crate) fn topological_order(
    nodes: &[Node],
    producer: &HashMap<&str, usize>,
) -> Result<Vec<usize>, SchemaError> {
    let deps: Vec<Vec<usize>> = (nodes.iter())
        .map(|n| {
            let mut d: Vec<usize> = (n.inputs.iter())
                .filter_map(|i| producer.get(i.as_str()).copied())
                .collect();
            d.sort_unstable();
            d.dedup();
            d
        })
        .collect();
    let mut users: Vec<Vec<usize>> = vec![Vec::new(); nodes.len()];
    for (i, d) in deps.iter().enumerate() {
        for &p in d {
            users[p].push(i);
        }
    }
    let mut waiting: Vec<usize> = deps.iter().map(Vec::len).collect();
    let mut ready: std::collections::BTreeSet<usize> =
        (0..nodes.len()).filter(|&i| waiting[i] == 0).collect();
    let mut order = Vec::with_capacity(nodes.len());
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &u in &users[i] {
            waiting[u] -= 1;
            if waiting[u] == 0 {
                ready.insert(u);
            }
        }
    }
    if order.len() == nodes.len() {
        return Ok(order);
    }
    // Walk back through unfinished producers from an unfinished node until one repeats.
    let mut path: Vec<usize> = Vec::new();
    let mut i = (0..nodes.len())
        .find(|&i| waiting[i] > 0)
        .expect("some node waits");
    while !path.contains(&i) {
        path.push(i);
        i = *deps[i]
            .iter()
            .find(|&&p| waiting[p] > 0)
            .expect("a waiting node waits on one");
    }
    let start = path.iter().position(|&p| p == i).expect("it repeats");
    // Producers first, starting from the node listed first, and back to it.
    let mut ids: Vec<usize> = path[start..].iter().rev().copied().collect();
    let first = (0..ids.len())
        .min_by_key(|&k| ids[k])
        .expect("a cycle has nodes");
    ids.rotate_left(first);
    ids.push(ids[0]);
    let cycle: Vec<&str> = ids.iter().map(|&p| nodes[p].name.as_str()).collect();
    Err(invalid(format!(
        "the graph has a cycle: {} (each takes the output of the one before)",
        cycle
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(" -> ")
    )))
}

pub fn fmt_shape(s: &[Dim]) -> String {
    let dims: Vec<String> = s.iter().map(|d| d.to_string()).collect();
    format!("[{}]", dims.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A one-node graph's CBOR, its node changed by `edit`, decoded as a signed architecture.
    fn signed(edit: impl Fn(&mut Vec<(Value, Value)>)) -> Result<Graph, FormatError> {
        let text = |t: &str| Value::Text(t.into());
        let mut node = vec![
            (text("op"), text("Relu")),
            (text("name"), text("r")),
            (text("inputs"), Value::Array(vec![text("x")])),
            (text("outputs"), Value::Array(vec![text("y")])),
        ];
        edit(&mut node);
        let graph = Value::Map(vec![
            (text("opset"), Value::Integer(3.into())),
            (text("inputs"), Value::Array(vec![])),
            (text("outputs"), Value::Array(vec![])),
            (text("nodes"), Value::Array(vec![Value::Map(node)])),
        ]);
        Graph::decode(&Arch::from_encoded(cbor::encode(&graph).unwrap()))
    }

    #[test]
    fn the_signed_structure_is_checked_exactly() {
        let attr = |v: Value| {
            move |n: &mut Vec<(Value, Value)>| {
                n.push((
                    Value::Text("attrs".into()),
                    Value::Map(vec![(Value::Text("a".into()), v.clone())]),
                ))
            }
        };
        assert!(signed(|_| {}).is_ok());
        let max = Value::Integer(i64::MAX.into());
        assert!(signed(attr(max)).is_ok());
        let mixed = Value::Array(vec![Value::Integer(1.into()), Value::Float(0.5)]);
        assert!(signed(attr(mixed)).is_ok());
        for (bad, why) in [
            (
                Value::Integer((1u64 << 63).into()),
                "outside the signed 64-bit range",
            ),
            (
                Value::Bytes(b"relu".to_vec()),
                "is not an integer, a float, text",
            ),
            (Value::Bool(true), "is not an integer, a float, text"),
            (
                Value::Array(vec![Value::Text("a".into())]),
                "is neither an integer nor a float",
            ),
        ] {
            let err = signed(attr(bad)).unwrap_err().to_string();
            assert!(err.contains(why), "{err}");
        }
        let err = signed(|n| n[0].1 = Value::Bytes(b"Relu".to_vec()))
            .unwrap_err()
            .to_string();
        assert!(err.contains("nodes[0].op is not a text string"), "{err}");
        let err = signed(|n| n.push((Value::Text("extra".into()), Value::Null)))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("nodes[0] has the unknown key \"extra\""),
            "{err}"
        );
    }

    #[test]
    fn unknown_json_fields_are_refused() {
        let err = Graph::from_json(r#"{"opset":1,"inputs":[],"outputs":[],"nodes":[],"extra":1}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `extra`"), "{err}");
    }
}
