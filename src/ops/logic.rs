//! Comparisons (`Equal`, `Less`, ...) of F32 or I64 values into BOOL, the boolean ops `And`,
//! `Or`, `Xor` and `Not`, and `Cast` between F32, I64 and BOOL, all with NumPy broadcasting.

use super::elementwise::{broadcast_with, map_in_place};
use super::shape::{self, VType};
use super::Attrs;
use crate::tensor::{Elem, Tensor, Value};

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compare {
    Equal,
    Less,
    Greater,
    LessOrEqual,
    GreaterOrEqual,
}

impl Compare {
    pub(super) fn from_name(name: &str) -> Result<Compare, String> {
        Ok(match name {
            "Equal" => Compare::Equal,
            "Less" => Compare::Less,
            "Greater" => Compare::Greater,
            "LessOrEqual" => Compare::LessOrEqual,
            "GreaterOrEqual" => Compare::GreaterOrEqual,
            other => return Err(format!("{other} is not a comparison")),
        })
    }

    /// The output type: BOOL, broadcast, for two inputs both F32 or both I64 (or both BOOL,
    /// for `Equal`).
    pub(super) fn infer(self, a: &VType, b: &VType) -> Result<VType, String> {
        let ok = match a.elem {
            Elem::F32 | Elem::I64 => true,
            Elem::Bool => self == Compare::Equal,
        };
        if a.elem != b.elem || !ok {
            let allowed = match self {
                Compare::Equal => "both F32, both I64 or both BOOL",
                _ => "both F32 or both I64",
            };
            return Err(format!(
                "input A is {} and input B is {}: they must be {allowed}",
                a.elem.name(),
                b.elem.name()
            ));
        }
        Ok(VType::new(
            Elem::Bool,
            shape::broadcast(&a.shape, &b.shape)?,
        ))
    }

    /// The comparison element by element over the broadcast shape `out`. Any comparison with
    /// NaN is false (IEEE 754), `Equal` included.
    pub(super) fn run<T>(self, a: &Tensor<T>, b: &Tensor<T>, out: &[usize]) -> Tensor<bool>
    where
        T: Copy + PartialOrd + Sync,
    {
        match self {
            Compare::Equal => broadcast_with(a, b, out, |x, y| x == y),
            Compare::Less => broadcast_with(a, b, out, |x, y| x < y),
            Compare::Greater => broadcast_with(a, b, out, |x, y| x > y),
            Compare::LessOrEqual => broadcast_with(a, b, out, |x, y| x <= y),
            Compare::GreaterOrEqual => broadcast_with(a, b, out, |x, y| x >= y),
        }
    }
}

/// A boolean op of two inputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logic {
    And,
    Or,
    Xor,
}

impl Logic {
    pub(super) fn from_name(name: &str) -> Result<Logic, String> {
        Ok(match name {
            "And" => Logic::And,
            "Or" => Logic::Or,
            "Xor" => Logic::Xor,
            other => return Err(format!("{other} is not a boolean op")),
        })
    }

    /// The output type: BOOL, broadcast, for two BOOL inputs.
    pub(super) fn infer(self, a: &VType, b: &VType) -> Result<VType, String> {
        boolean(a, "input A")?;
        boolean(b, "input B")?;
        Ok(VType::new(
            Elem::Bool,
            shape::broadcast(&a.shape, &b.shape)?,
        ))
    }

    pub(super) fn run(self, a: &Tensor<bool>, b: &Tensor<bool>, out: &[usize]) -> Tensor<bool> {
        match self {
            Logic::And => broadcast_with(a, b, out, |x, y| x & y),
            Logic::Or => broadcast_with(a, b, out, |x, y| x | y),
            Logic::Xor => broadcast_with(a, b, out, |x, y| x ^ y),
        }
    }
}

fn boolean<'a>(t: &'a VType, what: &str) -> Result<&'a VType, String> {
    match t.elem {
        Elem::Bool => Ok(t),
        e => Err(format!("{what} must be BOOL, not {}", e.name())),
    }
}

/// `Not`'s output type: its BOOL input's.
pub(super) fn infer_not(x: &VType) -> Result<VType, String> {
    boolean(x, "input")?;
    Ok(VType::new(Elem::Bool, x.shape.clone()))
}

/// `Not`, in place.
pub(super) fn not(mut t: Tensor<bool>) -> Tensor<bool> {
    map_in_place(&mut t.data, |x| !x);
    t
}

/// What `Cast` makes: an F32, I64 or BOOL value, whose elements ONNX's `to` type may limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cast {
    /// F32 elements rounded to the precision and range of `to`.
    Float(Round),
    /// I64 elements in the range of `to`.
    Int(Width),
    Bool,
}

/// The float type a `Cast` to F32 rounds to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// ONNX FLOAT, and DOUBLE: nnsign computes every float in F32, so a cast to DOUBLE keeps
    /// the F32 value (F32 to DOUBLE is exact) or rounds an I64 to F32.
    F32,
    /// FLOAT16: round to nearest even, to infinity beyond its range.
    F16,
    /// BFLOAT16: round to nearest even (an I64 goes through F32 first).
    BF16,
}

/// The integer type a `Cast` to I64 limits values to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    I64,
    I32,
    I16,
    I8,
    U32,
    U16,
    U8,
}

/// ONNX's `TensorProto.DataType` codes `Cast` accepts.
const TO: &[(i64, &str, Cast)] = &[
    (1, "FLOAT", Cast::Float(Round::F32)),
    (2, "UINT8", Cast::Int(Width::U8)),
    (3, "INT8", Cast::Int(Width::I8)),
    (4, "UINT16", Cast::Int(Width::U16)),
    (5, "INT16", Cast::Int(Width::I16)),
    (6, "INT32", Cast::Int(Width::I32)),
    (7, "INT64", Cast::Int(Width::I64)),
    (9, "BOOL", Cast::Bool),
    (10, "FLOAT16", Cast::Float(Round::F16)),
    (11, "DOUBLE", Cast::Float(Round::F32)),
    (12, "UINT32", Cast::Int(Width::U32)),
    (16, "BFLOAT16", Cast::Float(Round::BF16)),
];

impl Cast {
    /// `Cast`'s attributes: `to`, one of the types in [`TO`]; `saturate` and `round_mode`
    /// concern only float8 targets, which are refused, and are accepted and unused.
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Cast, String> {
        a.ignore("saturate");
        a.ignore("round_mode");
        let to = a.int_opt("to")?.ok_or("attribute \"to\" is required")?;
        match TO.iter().find(|(code, _, _)| *code == to) {
            Some(&(_, _, cast)) => Ok(cast),
            None => {
                let names: Vec<String> = TO.iter().map(|(c, n, _)| format!("{n} ({c})")).collect();
                Err(format!(
                    "attribute \"to\" = {to} is not a type nnsign casts to (it holds values as \
                     F32, I64 or BOOL; {})",
                    names.join(", ")
                ))
            }
        }
    }

    /// The element type of the output.
    pub(super) fn elem(self) -> Elem {
        match self {
            Cast::Float(_) => Elem::F32,
            Cast::Int(_) => Elem::I64,
            Cast::Bool => Elem::Bool,
        }
    }

    /// The output type: `x`'s shape with the cast's element type. Content known before the
    /// run stays known where the cast leaves every number as it is (I64 or BOOL to I64, BOOL
    /// to BOOL).
    pub(super) fn infer(self, x: &VType) -> Result<VType, String> {
        let t = VType::new(self.elem(), x.shape.clone());
        let keeps = matches!(
            (x.elem, self),
            (Elem::I64 | Elem::Bool, Cast::Int(Width::I64)) | (Elem::Bool, Cast::Bool)
        );
        Ok(if keeps {
            t.with_known(x.known.clone())
        } else {
            t
        })
    }

    /// The cast of `x`, reusing its memory when the element type stays. Floats become
    /// integers by truncation toward zero, saturating at the target's bounds, NaN becoming 0
    /// (Rust's `as`; ONNX leaves values out of range undefined); integers wrap to a narrower
    /// width (two's complement, as ONNX says); anything but 0 (NaN included) is true; true is
    /// 1.
    pub(super) fn run(self, x: Value) -> Value {
        match (x, self) {
            (Value::F32(t), Cast::Float(r)) => Value::F32(round(t, r)),
            (Value::F32(t), Cast::Int(w)) => Value::I64(map(&t, |v| w.saturate(v))),
            (Value::F32(t), Cast::Bool) => Value::Bool(map(&t, |v| v != 0.0)),
            (Value::I64(t), Cast::Float(r)) => Value::F32(round(map(&t, |v| v as f32), r)),
            (Value::I64(t), Cast::Int(Width::I64)) => Value::I64(t),
            (Value::I64(mut t), Cast::Int(w)) => {
                map_in_place(&mut t.data, |v| w.wrap(v));
                Value::I64(t)
            }
            (Value::I64(t), Cast::Bool) => Value::Bool(map(&t, |v| v != 0)),
            (Value::Bool(t), Cast::Float(_)) => Value::F32(map(&t, |v| v as u8 as f32)),
            (Value::Bool(t), Cast::Int(_)) => Value::I64(map(&t, |v| v as i64)),
            (v @ Value::Bool(_), Cast::Bool) => v,
        }
    }
}

impl Width {
    /// `v` truncated toward zero and saturated to this type's range (NaN: 0).
    fn saturate(self, v: f32) -> i64 {
        match self {
            Width::I64 => v as i64,
            Width::I32 => v as i32 as i64,
            Width::I16 => v as i16 as i64,
            Width::I8 => v as i8 as i64,
            Width::U32 => v as u32 as i64,
            Width::U16 => v as u16 as i64,
            Width::U8 => v as u8 as i64,
        }
    }

    /// `v`'s low bits as this type (two's complement).
    fn wrap(self, v: i64) -> i64 {
        match self {
            Width::I64 => v,
            Width::I32 => v as i32 as i64,
            Width::I16 => v as i16 as i64,
            Width::I8 => v as i8 as i64,
            Width::U32 => v as u32 as i64,
            Width::U16 => v as u16 as i64,
            Width::U8 => v as u8 as i64,
        }
    }
}

/// `f` of every element, into a new tensor of the same shape.
fn map<T: Copy, U>(t: &Tensor<T>, f: impl Fn(T) -> U) -> Tensor<U> {
    Tensor {
        shape: t.shape.clone(),
        data: t.data.iter().map(|&v| f(v)).collect(),
    }
}

/// `t` rounded to the precision of `r`, in place.
fn round(mut t: Tensor, r: Round) -> Tensor {
    match r {
        Round::F32 => {}
        Round::F16 => map_in_place(&mut t.data, |v| half::f16::from_f32(v).to_f32()),
        Round::BF16 => map_in_place(&mut t.data, |v| half::bf16::from_f32(v).to_f32()),
    }
    t
}

#[cfg(test)]
mod tests {
    use super::super::math_fixture::{self as fixture, Arr};
    use super::*;
    use crate::model::{Attr, Node};
    use crate::ops::shape::D;

    #[test]
    fn comparisons_match_the_reference() {
        let ops = ["Equal", "Less", "Greater", "LessOrEqual", "GreaterOrEqual"];
        for c in fixture::cases(&ops, 16) {
            let cmp = Compare::from_name(&c.op).unwrap();
            let t = cmp.infer(&c.vtype(0), &c.vtype(1)).unwrap();
            assert_eq!(
                (t.elem, t.shape),
                (Elem::Bool, c.out_shape(0)),
                "{}",
                c.name
            );
            let out = c.outputs[0].shape();
            let got = match (c.input(0), c.input(1)) {
                (Arr::F32(a), Arr::F32(b)) => cmp.run(a, b, out),
                (Arr::I64(a), Arr::I64(b)) => cmp.run(a, b, out),
                (Arr::Bool(a), Arr::Bool(b)) => cmp.run(a, b, out),
                other => panic!("{}: {other:?}", c.name),
            };
            c.check_bool(&got, 0);
        }
    }

    #[test]
    fn boolean_ops_match_the_reference() {
        for c in fixture::cases(&["And", "Or", "Xor", "Not"], 7) {
            let (Arr::Bool(a), b) = (c.input(0), c.inputs.get(1)) else {
                panic!("{}: not BOOL", c.name)
            };
            let got = match (c.op.as_str(), b) {
                ("Not", None) => {
                    assert_eq!(infer_not(&c.vtype(0)).unwrap().shape, c.out_shape(0));
                    not(a.clone())
                }
                (op, Some(Some(Arr::Bool(b)))) => {
                    let l = Logic::from_name(op).unwrap();
                    let t = l.infer(&c.vtype(0), &c.vtype(1)).unwrap();
                    assert_eq!((t.elem, t.shape), (Elem::Bool, c.out_shape(0)));
                    l.run(a, b, c.outputs[0].shape())
                }
                other => panic!("{}: {other:?}", c.name),
            };
            c.check_bool(&got, 0);
        }
    }

    #[test]
    fn types_must_fit() {
        let t = |e| VType::new(e, vec![D::Fixed(2)]);
        assert_eq!(
            Compare::Less
                .infer(&t(Elem::F32), &t(Elem::I64))
                .unwrap_err(),
            "input A is F32 and input B is I64: they must be both F32 or both I64"
        );
        assert_eq!(
            Compare::Less
                .infer(&t(Elem::Bool), &t(Elem::Bool))
                .unwrap_err(),
            "input A is BOOL and input B is BOOL: they must be both F32 or both I64"
        );
        assert!(Compare::Equal.infer(&t(Elem::Bool), &t(Elem::Bool)).is_ok());
        assert_eq!(
            Logic::And.infer(&t(Elem::Bool), &t(Elem::I64)).unwrap_err(),
            "input B must be BOOL, not I64"
        );
        assert_eq!(
            infer_not(&t(Elem::F32)).unwrap_err(),
            "input must be BOOL, not F32"
        );
        let f = VType::new(Elem::F32, vec![D::Fixed(2), D::Fixed(3)]);
        assert!(Compare::Equal.infer(&f, &t(Elem::F32)).is_err());
    }

    fn cast_of(attrs: &[(&str, Attr)]) -> Result<Cast, String> {
        let node = Node {
            op: "Cast".into(),
            name: "c".into(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let mut a = Attrs::new(&node);
        let c = Cast::parse(&mut a)?;
        a.finish()?;
        Ok(c)
    }

    #[test]
    fn casts_match_the_reference() {
        for c in fixture::cases(&["Cast"], 21) {
            let cast = cast_of(&[("to", c.attrs["to"].clone())]).unwrap();
            let t = cast.infer(&c.vtype(0)).unwrap();
            assert_eq!(t.shape, c.out_shape(0));
            let got = cast.run(c.value(0));
            assert_eq!(got.elem(), t.elem, "{}", c.name);
            c.check(&got, 0);
        }
    }

    #[test]
    fn casts_of_floats_to_integers_saturate_and_odd_targets_are_refused() {
        let x = Value::F32(Tensor {
            shape: vec![5],
            data: vec![f32::NAN, f32::INFINITY, -f32::INFINITY, 3e9, -2.9],
        });
        let to = |code| cast_of(&[("to", Attr::Int(code))]).unwrap();
        let r = to(7).run(x.clone());
        assert_eq!(r.i64().data, vec![0, i64::MAX, i64::MIN, 3_000_000_000, -2]);
        let r = to(6).run(x.clone());
        assert_eq!(
            r.i64().data,
            vec![0, i32::MAX as i64, i32::MIN as i64, i32::MAX as i64, -2]
        );
        let r = to(2).run(x.clone());
        assert_eq!(r.i64().data, vec![0, 255, 0, 255, 0]);
        assert_eq!(to(9).run(x).bool().data, vec![true; 5]);
        let e = cast_of(&[("to", Attr::Int(13))]).unwrap_err();
        assert!(
            e.starts_with("attribute \"to\" = 13 is not a type nnsign casts to (it holds values as F32, I64 or BOOL; FLOAT (1), UINT8 (2),"),
            "{e}"
        );
        assert_eq!(cast_of(&[]).unwrap_err(), "attribute \"to\" is required");
        // float8's settings are accepted, and unused.
        assert!(cast_of(&[("to", Attr::Int(1)), ("saturate", Attr::Int(0))]).is_ok());
    }

    #[test]
    fn casts_keep_known_content_only_where_numbers_stay() {
        use crate::ops::shape::K;
        let x = VType::new(Elem::I64, vec![D::Fixed(2)])
            .with_known(Some(vec![K::Int(3), K::Sym("b".into())]));
        let to_i64 = Cast::Int(Width::I64).infer(&x).unwrap();
        assert_eq!(to_i64.known, x.known);
        assert_eq!(Cast::Int(Width::I32).infer(&x).unwrap().known, None);
        assert_eq!(Cast::Float(Round::F32).infer(&x).unwrap().known, None);
    }
}
