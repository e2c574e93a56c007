//! The values nnsign computes with and the element types of stored tensors: the bottom of the
//! model layers, below the artifact format, the schema, the ops and the runtime
//! (docs/ARCHITECTURE.md).
//!
//! [`DType`] is what a tensor is stored as (safetensors' names); [`Elem`] and [`Value`] are what a
//! graph computes with, F32 or I64; [`widen`] turns verified stored bytes into a value.

/// Element types of tensors, named as in safetensors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    Bool,
    U8,
    I8,
    F8E4M3,
    F8E5M2,
    U16,
    I16,
    F16,
    BF16,
    U32,
    I32,
    F32,
    U64,
    I64,
    F64,
}

impl DType {
    /// Whether a graph widens this dtype to F32.
    pub fn is_float(self) -> bool {
        matches!(self, DType::F16 | DType::BF16 | DType::F32 | DType::F64)
    }

    /// Whether a graph widens this dtype to I64.
    pub fn is_integer(self) -> bool {
        matches!(
            self,
            DType::I8
                | DType::I16
                | DType::I32
                | DType::I64
                | DType::U8
                | DType::U16
                | DType::U32
                | DType::U64
        )
    }

    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::U8,
        DType::I8,
        DType::F8E4M3,
        DType::F8E5M2,
        DType::U16,
        DType::I16,
        DType::F16,
        DType::BF16,
        DType::U32,
        DType::I32,
        DType::F32,
        DType::U64,
        DType::I64,
        DType::F64,
    ];

    /// The name used in manifests, architectures and safetensors headers.
    pub fn name(self) -> &'static str {
        match self {
            DType::Bool => "BOOL",
            DType::U8 => "U8",
            DType::I8 => "I8",
            DType::F8E4M3 => "F8_E4M3",
            DType::F8E5M2 => "F8_E5M2",
            DType::U16 => "U16",
            DType::I16 => "I16",
            DType::F16 => "F16",
            DType::BF16 => "BF16",
            DType::U32 => "U32",
            DType::I32 => "I32",
            DType::F32 => "F32",
            DType::U64 => "U64",
            DType::I64 => "I64",
            DType::F64 => "F64",
        }
    }

    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> u64 {
        match self {
            DType::Bool | DType::U8 | DType::I8 | DType::F8E4M3 | DType::F8E5M2 => 1,
            DType::U16 | DType::I16 | DType::F16 | DType::BF16 => 2,
            DType::U32 | DType::I32 | DType::F32 => 4,
            DType::U64 | DType::I64 | DType::F64 => 8,
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Element type of a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    F32,
    I64,
    /// Op-set 3: comparisons, masks, `Where` conditions.
    Bool,
}

impl Elem {
    pub fn name(self) -> &'static str {
        match self {
            Elem::F32 => "F32",
            Elem::I64 => "I64",
            Elem::Bool => "BOOL",
        }
    }

    pub fn from_name(s: &str) -> Option<Elem> {
        match s {
            "F32" => Some(Elem::F32),
            "I64" => Some(Elem::I64),
            "BOOL" => Some(Elem::Bool),
            _ => None,
        }
    }

    pub fn size(self) -> u64 {
        match self {
            Elem::F32 => 4,
            Elem::I64 => 8,
            Elem::Bool => 1,
        }
    }
}

/// A dense tensor in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor<T = f32> {
    pub shape: Vec<usize>,
    pub data: Vec<T>,
}

/// A value the graph computes with.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    F32(Tensor<f32>),
    I64(Tensor<i64>),
    Bool(Tensor<bool>),
}

/// Evaluates `$body` with `$t` bound to the tensor of value `$v`, whatever its element type,
/// and wraps the result in the same variant.
macro_rules! each_value {
    ($v:expr, $t:ident => $body:expr) => {
        match $v {
            $crate::tensor::Value::F32($t) => $crate::tensor::Value::F32($body),
            $crate::tensor::Value::I64($t) => $crate::tensor::Value::I64($body),
            $crate::tensor::Value::Bool($t) => $crate::tensor::Value::Bool($body),
        }
    };
}
pub(crate) use each_value;

impl Value {
    pub fn elem(&self) -> Elem {
        match self {
            Value::F32(_) => Elem::F32,
            Value::I64(_) => Elem::I64,
            Value::Bool(_) => Elem::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Value::F32(t) => &t.shape,
            Value::I64(t) => &t.shape,
            Value::Bool(t) => &t.shape,
        }
    }

    /// How many elements the value holds (its data, whatever its shape says).
    pub fn elements(&self) -> usize {
        match self {
            Value::F32(t) => t.data.len(),
            Value::I64(t) => t.data.len(),
            Value::Bool(t) => t.data.len(),
        }
    }

    /// The float tensor; inference guarantees the dtype wherever this is called.
    pub fn f32(&self) -> &Tensor<f32> {
        match self {
            Value::F32(t) => t,
            _ => unreachable!("inference checked that this value is F32"),
        }
    }

    /// The integer tensor; inference guarantees the dtype wherever this is called.
    pub fn i64(&self) -> &Tensor<i64> {
        match self {
            Value::I64(t) => t,
            _ => unreachable!("inference checked that this value is I64"),
        }
    }

    /// The boolean tensor; inference guarantees the dtype wherever this is called.
    pub fn bool(&self) -> &Tensor<bool> {
        match self {
            Value::Bool(t) => t,
            _ => unreachable!("inference checked that this value is BOOL"),
        }
    }

    /// The same elements under another shape of the same size.
    pub fn with_shape(mut self, shape: Vec<usize>) -> Value {
        match &mut self {
            Value::F32(t) => t.shape = shape,
            Value::I64(t) => t.shape = shape,
            Value::Bool(t) => t.shape = shape,
        }
        self
    }

    /// A float32 value; an integer one is refused.
    pub fn into_f32(self) -> Option<Tensor<f32>> {
        match self {
            Value::F32(t) => Some(t),
            _ => None,
        }
    }
}

impl From<Tensor<f32>> for Value {
    fn from(t: Tensor<f32>) -> Value {
        Value::F32(t)
    }
}

/// Widens the stored bytes of tensor `name` (little-endian, as verified) to the value a graph
/// computes with: floats to F32, integers to I64, BOOL to booleans. Other dtypes, U64 values
/// above the I64 range and BOOL bytes other than 0 and 1 are refused with a message naming the
/// tensor.
pub fn widen(name: &str, dtype: DType, shape: &[u64], bytes: &[u8]) -> Result<Value, String> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    if dtype == DType::Bool {
        let data = (bytes.iter())
            .map(|&b| match b {
                0 => Ok(false),
                1 => Ok(true),
                other => Err(format!(
                    "tensor {name:?} is BOOL but holds the byte {other:#04x}; BOOL bytes are 0x00 or 0x01"
                )),
            })
            .collect::<Result<Vec<bool>, String>>()?;
        return Ok(Value::Bool(Tensor { shape, data }));
    }
    if dtype.is_float() {
        return Ok(Value::F32(Tensor {
            shape,
            data: widen_f32(name, dtype, bytes)?,
        }));
    }
    // Each element straight to i64: no wider copy of the tensor on the way.
    macro_rules! ints {
        ($t:ty, $n:expr) => {
            bytes
                .chunks_exact($n)
                .map(|b| {
                    i64::try_from(<$t>::from_le_bytes(b.try_into().expect("exact chunks"))).ok()
                })
                .collect::<Option<Vec<i64>>>()
        };
    }
    let data = match dtype {
        DType::I8 => ints!(i8, 1),
        DType::U8 => ints!(u8, 1),
        DType::I16 => ints!(i16, 2),
        DType::U16 => ints!(u16, 2),
        DType::I32 => ints!(i32, 4),
        DType::U32 => ints!(u32, 4),
        DType::I64 => ints!(i64, 8),
        DType::U64 => ints!(u64, 8),
        other => {
            return Err(format!(
                "tensor {name:?} has dtype {other}, which a graph cannot use"
            ))
        }
    }
    .ok_or_else(|| format!("tensor {name:?} holds a U64 value above the I64 range"))?;
    Ok(Value::I64(Tensor { shape, data }))
}

/// Widens the stored bytes of float tensor `name` to f32.
pub fn widen_f32(name: &str, dtype: DType, bytes: &[u8]) -> Result<Vec<f32>, String> {
    let out = match dtype {
        DType::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        DType::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::BF16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        DType::F64 => bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("chunks of 8")) as f32)
            .collect(),
        other => {
            return Err(format!(
                "tensor {name:?} has dtype {other}, which cannot be used as a float weight"
            ))
        }
    };
    Ok(out)
}
