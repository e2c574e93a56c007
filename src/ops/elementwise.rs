//! Element-wise arithmetic with NumPy broadcasting (on F32, and on I64 for the shape
//! computations graphs do at run time), one-input activations and functions, Clip, PRelu, and
//! softmax.

use super::shape::{self, fmt_shape, VType, D, K};
use super::{chunks, chunks_with, float, spread, Attrs};
use crate::tensor::Elem;
use crate::tensor::Tensor;

/// Elements below which an element-wise op runs on one core: splitting costs more.
const PAR_MIN: usize = 1 << 15;

/// A binary arithmetic op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binary {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    /// ONNX `Mod`: with `fmod`, the remainder of truncated division (the sign of A, C's
    /// `fmod`); without, of floored division (the sign of B, Python's `%`).
    Mod {
        fmod: bool,
    },
}

impl Binary {
    pub(super) fn from_name(name: &str) -> Binary {
        match name {
            "Add" => Binary::Add,
            "Sub" => Binary::Sub,
            "Mul" => Binary::Mul,
            "Div" => Binary::Div,
            _ => Binary::Pow,
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Binary::Add => "Add",
            Binary::Sub => "Sub",
            Binary::Mul => "Mul",
            Binary::Div => "Div",
            Binary::Pow => "Pow",
            Binary::Mod { .. } => "Mod",
        }
    }

    /// `Add`, `Sub`, `Mul`, `Div`, `Pow` or `Mod` (with its `fmod` attribute).
    pub(super) fn parse(name: &str, a: &mut Attrs<'_>) -> Result<Binary, String> {
        Ok(match name {
            "Mod" => Binary::Mod {
                fmod: a.flag("fmod")?,
            },
            _ => Binary::from_name(name),
        })
    }

    /// The output type: both inputs F32, or both I64 for every op but `Pow`, broadcast.
    pub(super) fn infer(self, a: &VType, b: &VType) -> Result<VType, String> {
        match (a.elem, b.elem) {
            (Elem::F32, Elem::F32) => {}
            (Elem::I64, Elem::I64) if self != Binary::Pow => {}
            (Elem::I64, Elem::I64) => {
                return Err("Pow on I64 values is not supported (only F32)".into())
            }
            (x, y) => {
                return Err(format!(
                    "input A is {} and input B is {}: both must be F32, or both I64",
                    x.name(),
                    y.name()
                ))
            }
        }
        Ok(VType::new(a.elem, shape::broadcast(&a.shape, &b.shape)?))
    }

    pub(super) fn run(self, a: &Tensor, b: &Tensor, out: &[usize]) -> Tensor {
        match self {
            Binary::Add => broadcast_with(a, b, out, |x, y| x + y),
            Binary::Sub => broadcast_with(a, b, out, |x, y| x - y),
            Binary::Mul => broadcast_with(a, b, out, |x, y| x * y),
            Binary::Div => broadcast_with(a, b, out, |x, y| x / y),
            Binary::Pow => broadcast_with(a, b, out, f32::powf),
            // Rust's `%` on floats is C's fmod.
            Binary::Mod { fmod: true } => broadcast_with(a, b, out, |x, y| x % y),
            Binary::Mod { fmod: false } => broadcast_with(a, b, out, floored_mod),
        }
    }

    /// The op on I64 values, wrapping on overflow as two's complement does (as NumPy and
    /// onnxruntime do). `Div` truncates toward zero (C's `/`, ONNX's rule for integers), and
    /// `i64::MIN / -1` wraps to `i64::MIN`. Dividing by zero (`Div` or `Mod`) is an error,
    /// checked before anything is computed: ONNX leaves it undefined.
    pub(super) fn run_i64(
        self,
        a: &Tensor<i64>,
        b: &Tensor<i64>,
        out: &[usize],
    ) -> Result<Tensor<i64>, String> {
        let divides = matches!(self, Binary::Div | Binary::Mod { .. });
        // Every element of B is used when the output is not empty.
        if divides && out.iter().all(|&d| d > 0) && b.data.contains(&0) {
            return Err("integer division by zero: input B holds 0".into());
        }
        Ok(match self {
            Binary::Add => broadcast_with(a, b, out, i64::wrapping_add),
            Binary::Sub => broadcast_with(a, b, out, i64::wrapping_sub),
            Binary::Mul => broadcast_with(a, b, out, i64::wrapping_mul),
            Binary::Div => broadcast_with(a, b, out, |x, y| x.checked_div(y).unwrap_or(x)),
            Binary::Mod { fmod: true } => {
                broadcast_with(a, b, out, |x, y| x.checked_rem(y).unwrap_or(0))
            }
            Binary::Mod { fmod: false } => broadcast_with(a, b, out, |x, y| {
                // Only `i64::MIN % -1` overflows (and is 0); zero divisors were refused above.
                let r = x.checked_rem(y).unwrap_or(0);
                if r != 0 && (r < 0) != (y < 0) {
                    r + y
                } else {
                    r
                }
            }),
            Binary::Pow => unreachable!("inference refuses Pow on I64"),
        })
    }
}

/// `x - floor(x / y) * y` with ONNX's special cases: the sign of `y`, a zero result signed as
/// `y`, NaN for an infinite `x` or a zero `y`, and `y` for an infinite `y` against an `x` of
/// the other sign.
fn floored_mod(x: f32, y: f32) -> f32 {
    let r = x % y;
    if r == 0.0 {
        0f32.copysign(y)
    } else if (r < 0.0) != (y < 0.0) {
        r + y
    } else {
        r
    }
}

/// Strides of `shape` (row-major) as seen from an output of rank `rank`: 0 along broadcast
/// axes, and for the leading axes `shape` lacks.
pub(super) fn broadcast_strides(shape: &[usize], rank: usize) -> Vec<usize> {
    let mut strides = vec![0; rank];
    let mut s = 1;
    for (i, &d) in shape.iter().enumerate().rev() {
        strides[rank - shape.len() + i] = if d == 1 { 0 } else { s };
        s *= d;
    }
    strides
}

/// `shape` without its leading 1s (which broadcasting ignores).
fn trim_ones(shape: &[usize]) -> &[usize] {
    let ones = shape.iter().take_while(|&&d| d == 1).count();
    &shape[ones..]
}

/// `f(a, b)` element by element over the broadcast shape `out`.
pub(crate) fn broadcast_with<A, B, O>(
    a: &Tensor<A>,
    b: &Tensor<B>,
    out: &[usize],
    f: impl Fn(A, B) -> O + Sync,
) -> Tensor<O>
where
    A: Copy + Sync,
    B: Copy + Sync,
    O: Copy + Send + Default,
{
    let total: usize = out.iter().product();
    let mut data = vec![O::default(); total];
    if a.shape == out && b.shape == out {
        zip_into(&mut data, &a.data, &b.data, &f);
    } else if b.data.len() == 1 && a.shape == out {
        let y = b.data[0];
        map_into(&mut data, &a.data, |x| f(x, y));
    } else if a.data.len() == 1 && b.shape == out {
        let x = a.data[0];
        map_into(&mut data, &b.data, |y| f(x, y));
    } else if a.shape == out && out.ends_with(trim_ones(&b.shape)) && !b.data.is_empty() {
        // A bias along the trailing axes: every block of `a` meets all of `b`.
        let n = b.data.len();
        chunks_with(
            &mut data,
            n,
            &a.data,
            n,
            spread(total, PAR_MIN),
            |_, d, x| {
                for ((d, &x), &y) in d.iter_mut().zip(x).zip(&b.data) {
                    *d = f(x, y);
                }
            },
        );
    } else if b.shape == out && out.ends_with(trim_ones(&a.shape)) && !a.data.is_empty() {
        // The same with the roles swapped: every block of `b` meets all of `a`.
        let n = a.data.len();
        chunks_with(
            &mut data,
            n,
            &b.data,
            n,
            spread(total, PAR_MIN),
            |_, d, y| {
                for ((d, &x), &y) in d.iter_mut().zip(&a.data).zip(y) {
                    *d = f(x, y);
                }
            },
        );
    } else if total > 0 {
        let rank = out.len();
        let (sa, sb) = (
            broadcast_strides(&a.shape, rank),
            broadcast_strides(&b.shape, rank),
        );
        // Rows along the last axis; each row's start is found from its index.
        let inner = out[rank - 1];
        let (ia, ib) = (sa[rank - 1], sb[rank - 1]);
        let row = |r: usize, dst: &mut [O]| {
            let (mut oa, mut ob, mut rest) = (0, 0, r);
            for ax in (0..rank - 1).rev() {
                let i = rest % out[ax];
                rest /= out[ax];
                oa += i * sa[ax];
                ob += i * sb[ax];
            }
            for (j, d) in dst.iter_mut().enumerate() {
                *d = f(a.data[oa + j * ia], b.data[ob + j * ib]);
            }
        };
        chunks(&mut data, inner, spread(total, PAR_MIN), row);
    }
    Tensor {
        shape: out.to_vec(),
        data,
    }
}

/// Elements one task of an element-wise op takes.
const BLOCK: usize = 1 << 14;

fn zip_into<A: Copy + Sync, B: Copy + Sync, O: Send>(
    dst: &mut [O],
    a: &[A],
    b: &[B],
    f: &(impl Fn(A, B) -> O + Sync),
) {
    chunks_with(
        dst,
        BLOCK,
        a,
        BLOCK,
        spread(dst.len(), PAR_MIN),
        |i, d, x| {
            for ((d, &x), &y) in d.iter_mut().zip(x).zip(&b[i * BLOCK..]) {
                *d = f(x, y);
            }
        },
    );
}

fn map_into<A: Copy + Sync, O: Send>(dst: &mut [O], src: &[A], f: impl Fn(A) -> O + Sync) {
    chunks_with(
        dst,
        BLOCK,
        src,
        BLOCK,
        spread(dst.len(), PAR_MIN),
        |_, d, x| {
            for (d, &x) in d.iter_mut().zip(x) {
                *d = f(x);
            }
        },
    );
}

/// Applies `f` to every element in place, on every core for large tensors.
pub(crate) fn map_in_place<T: Copy + Send>(data: &mut [T], f: impl Fn(T) -> T + Sync) {
    let par = spread(data.len(), PAR_MIN);
    chunks(data, BLOCK, par, |_, d| {
        d.iter_mut().for_each(|x| *x = f(*x))
    });
}

/// A one-input activation or function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Sqrt,
    Erf,
    LeakyRelu(f32),
    Gelu {
        tanh: bool,
    },
    /// `max(0, min(1, alpha * x + beta))`.
    HardSigmoid {
        alpha: f32,
        beta: f32,
    },
    /// `x * HardSigmoid(x)` with alpha 1/6 and beta 1/2.
    HardSwish,
    Log,
    /// On F32 and I64 (wrapping: `-i64::MIN` is `i64::MIN`, as in NumPy).
    Neg,
    /// On F32 and I64 (wrapping: `|i64::MIN|` is `i64::MIN`, as in NumPy).
    Abs,
    Reciprocal,
    Floor,
    Ceil,
    Sin,
    Cos,
}

impl Unary {
    pub(super) fn parse(name: &str, a: &mut Attrs<'_>) -> Result<Unary, String> {
        Ok(match name {
            "Relu" => Unary::Relu,
            "Sigmoid" => Unary::Sigmoid,
            "Tanh" => Unary::Tanh,
            "Exp" => Unary::Exp,
            "Sqrt" => Unary::Sqrt,
            "Erf" => Unary::Erf,
            "LeakyRelu" => Unary::LeakyRelu(a.float("alpha", 0.01)?),
            "HardSigmoid" => Unary::HardSigmoid {
                alpha: a.float("alpha", 0.2)?,
                beta: a.float("beta", 0.5)?,
            },
            "HardSwish" => Unary::HardSwish,
            "Log" => Unary::Log,
            "Neg" => Unary::Neg,
            "Abs" => Unary::Abs,
            "Reciprocal" => Unary::Reciprocal,
            "Floor" => Unary::Floor,
            "Ceil" => Unary::Ceil,
            "Sin" => Unary::Sin,
            "Cos" => Unary::Cos,
            _ => match a.text("approximate")?.unwrap_or("none") {
                "none" => Unary::Gelu { tanh: false },
                "tanh" => Unary::Gelu { tanh: true },
                other => {
                    return Err(format!(
                        "attribute \"approximate\" = {other:?} must be \"none\" or \"tanh\""
                    ))
                }
            },
        })
    }

    /// The output type: the input's, F32, or I64 for `Neg` and `Abs`, whose content known
    /// before the run is followed (a size stays itself under `Abs`).
    pub(super) fn infer(self, x: &VType) -> Result<VType, String> {
        let ints = matches!(self, Unary::Neg | Unary::Abs);
        if x.elem == Elem::F32 || (ints && x.elem == Elem::I64) {
            let known = x.known.as_ref().map(|k| {
                (k.iter())
                    .map(|k| match (self, k) {
                        (Unary::Neg, K::Int(v)) => K::Int(v.wrapping_neg()),
                        (_, K::Int(v)) => K::Int(v.wrapping_abs()),
                        (Unary::Abs, K::Sym(s)) => K::Sym(s.clone()),
                        _ => K::Any,
                    })
                    .collect()
            });
            return Ok(VType::new(x.elem, x.shape.clone()).with_known(known));
        }
        Err(format!(
            "input must be F32{}, not {}",
            if ints { " or I64" } else { "" },
            x.elem.name()
        ))
    }

    pub(super) fn run(self, mut t: Tensor) -> Tensor {
        self.apply(&mut t.data);
        t
    }

    /// `Neg` or `Abs` on I64 values, in place.
    pub(super) fn run_i64(self, mut t: Tensor<i64>) -> Tensor<i64> {
        let f = match self {
            Unary::Neg => i64::wrapping_neg,
            Unary::Abs => i64::wrapping_abs,
            _ => unreachable!("inference accepts I64 only for Neg and Abs"),
        };
        map_in_place(&mut t.data, f);
        t
    }

    /// Applies the activation in place.
    pub(crate) fn apply(self, data: &mut [f32]) {
        match self {
            Unary::Relu => map_in_place(data, |v| v.max(0.0)),
            Unary::Sigmoid => map_in_place(data, sigmoid),
            Unary::Tanh => map_in_place(data, f32::tanh),
            Unary::Exp => map_in_place(data, f32::exp),
            Unary::Sqrt => map_in_place(data, f32::sqrt),
            Unary::Erf => map_in_place(data, |v| libm::erf(v as f64) as f32),
            Unary::LeakyRelu(alpha) => map_in_place(data, |v| if v >= 0.0 { v } else { alpha * v }),
            Unary::Gelu { tanh: false } => map_in_place(data, |v| {
                let x = v as f64;
                (0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2))) as f32
            }),
            Unary::Gelu { tanh: true } => map_in_place(data, |v| {
                let x = v as f64;
                let k = (2.0 / std::f64::consts::PI).sqrt();
                (0.5 * x * (1.0 + (k * (x + 0.044715 * x * x * x)).tanh())) as f32
            }),
            Unary::HardSigmoid { alpha, beta } => {
                map_in_place(data, |v| (alpha * v + beta).clamp(0.0, 1.0))
            }
            Unary::HardSwish => map_in_place(data, |v| v * (v / 6.0 + 0.5).clamp(0.0, 1.0)),
            Unary::Log => map_in_place(data, f32::ln),
            Unary::Neg => map_in_place(data, |v| -v),
            Unary::Abs => map_in_place(data, f32::abs),
            Unary::Reciprocal => map_in_place(data, f32::recip),
            Unary::Floor => map_in_place(data, f32::floor),
            Unary::Ceil => map_in_place(data, f32::ceil),
            Unary::Sin => map_in_place(data, f32::sin),
            Unary::Cos => map_in_place(data, f32::cos),
        }
    }
}

/// `Clip`'s output type: its input's, F32 or I64 (whose content, if known before the run, is
/// not followed). Its `min` and `max` are parameters.
pub(super) fn infer_clip(x: &VType) -> Result<VType, String> {
    if matches!(x.elem, Elem::F32 | Elem::I64) {
        return Ok(VType::new(x.elem, x.shape.clone()));
    }
    Err(format!("input must be F32 or I64, not {}", x.elem.name()))
}

/// ONNX `Clip`, in place: `min(max(x, min), max)`, so every element is `max` when `min` is
/// above it (as ONNX says). A NaN element stays NaN; a NaN bound bounds nothing (every
/// comparison with it is false). For F32 and I64 values alike.
pub(super) fn clip<T>(mut t: Tensor<T>, min: Option<T>, max: Option<T>) -> Tensor<T>
where
    T: Copy + PartialOrd + Send + Sync,
{
    map_in_place(&mut t.data, |x| {
        let y = match min {
            Some(lo) if x < lo => lo,
            _ => x,
        };
        match max {
            Some(hi) if y > hi => hi,
            _ => y,
        }
    });
    t
}

/// `PRelu`'s output type: X's, with `slope` broadcast to X (unidirectionally: X's shape is
/// the output's).
pub(super) fn infer_prelu(x: &VType, slope: &VType) -> Result<VType, String> {
    float(x, "input X")?;
    float(slope, "slope")?;
    let fits = slope.rank() <= x.rank()
        && (x.shape[x.rank() - slope.rank()..].iter().zip(&slope.shape)).all(|(a, b)| {
            // Symbols and derived sizes are checked again, exactly, at run time.
            !matches!((a, b), (D::Fixed(p), D::Fixed(q)) if p != q && *q != 1)
        });
    if !fits {
        return Err(format!(
            "slope {} does not broadcast to X {} (only the slope may be broadcast)",
            fmt_shape(&slope.shape),
            fmt_shape(&x.shape)
        ));
    }
    Ok(x.clone())
}

/// `slope * x` where `x < 0`, else `x`, with `slope` broadcast to `x`'s shape `out`.
pub(super) fn prelu(x: &Tensor, slope: &Tensor, out: &[usize]) -> Tensor {
    broadcast_with(x, slope, out, |x, s| if x < 0.0 { s * x } else { x })
}

/// `e^x` to within 2 units in the last place (Cephes' `expf`: `x = n ln 2 + r`, a degree-6
/// polynomial for `e^r`, then `2^n`), written without branches or calls so that loops over it
/// use vector instructions: about ten times as fast as `f32::exp` over a slice. NaN stays
/// NaN; below -87.34 (where `e^x` leaves the normal floats) it is 0, above 88.72 infinity.
#[inline]
pub(crate) fn exp(x: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let c = x.clamp(-87.336_54, 88.722_84);
    let t = c * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    // The same integer, from the bits: `t`'s mantissa holds it above 2^22.
    let k = t.to_bits() as i32 - MAGIC.to_bits() as i32;
    let r = c - n * LN2_HI - n * LN2_LO;
    let p = 1.987_569_2e-4;
    let p = p * r + 1.398_2e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    // 2^k in two factors, each a normal float even at k = -126 or 128.
    let half = k >> 1;
    let two = |j: i32| f32::from_bits(((j + 127) as u32) << 23);
    let e = y * two(half) * two(k - half);
    if x < -87.336_54 {
        0.0
    } else if x > 88.722_84 {
        f32::INFINITY
    } else {
        e
    }
}

pub(crate) fn sigmoid(v: f32) -> f32 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

/// Softmax along `axis` (inference already checked it), in place: a task takes whole blocks
/// of the axis and what follows it, about [`BLOCK`] elements.
pub(super) fn softmax(mut t: Tensor, axis: i64) -> Tensor {
    let ax = shape::axis(axis, t.shape.len(), "axis").expect("inference checked the axis");
    let n = t.shape[ax];
    let inner: usize = t.shape[ax + 1..].iter().product();
    if n == 0 || inner == 0 || t.data.is_empty() {
        return t;
    }
    let block = n * inner;
    let per = (BLOCK / block).max(1);
    let par = spread(t.data.len(), PAR_MIN);
    chunks(&mut t.data, per * block, par, |_, blocks| {
        if inner == 1 {
            softmax_rows(blocks, n);
            return;
        }
        let mut scratch = vec![0f32; 2 * inner];
        for b in blocks.chunks_exact_mut(block) {
            softmax_across(b, inner, &mut scratch);
        }
    });
    t
}

/// The larger of `m` and `v`, `m` when `v` is NaN (as `f32::max`, in a form that vectorizes).
#[inline]
fn max_skip_nan(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// Softmax of each row of `data` (rows of `n`), stable against overflow. Every pass is a loop
/// the compiler runs on vector registers, even over short rows: each row's maximum (in eight
/// lanes) subtracted, then the exponentials of the whole slice at once (with AVX2 where the CPU
/// has it), then each row scaled
/// by the inverse of its sum (in eight lanes).
pub(crate) fn softmax_rows(data: &mut [f32], n: usize) {
    if n == 0 {
        return;
    }
    for row in data.chunks_mut(n) {
        let max = super::reduce::lanes(row, f32::NEG_INFINITY, max_skip_nan, max_skip_nan);
        row.iter_mut().for_each(|v| *v -= max);
    }
    crate::sys::map_f32(data, exp);
    for row in data.chunks_mut(n) {
        let k = 1.0 / super::reduce::sum(row);
        row.iter_mut().for_each(|v| *v *= k);
    }
}

/// Softmax of a block `[n, inner]` along its first axis, whole rows at a time (`scratch` holds
/// `2 inner` floats).
fn softmax_across(b: &mut [f32], inner: usize, scratch: &mut [f32]) {
    let (max, sum) = scratch.split_at_mut(inner);
    max.fill(f32::NEG_INFINITY);
    for row in b.chunks_exact(inner) {
        max.iter_mut()
            .zip(row)
            .for_each(|(m, &v)| *m = max_skip_nan(*m, v));
    }
    sum.fill(0.0);
    for row in b.chunks_exact_mut(inner) {
        for ((v, &m), s) in row.iter_mut().zip(&*max).zip(sum.iter_mut()) {
            *v = exp(*v - m);
            *s += *v;
        }
    }
    sum.iter_mut().for_each(|s| *s = 1.0 / *s);
    for row in b.chunks_exact_mut(inner) {
        row.iter_mut().zip(&*sum).for_each(|(v, &k)| *v *= k);
    }
}

#[cfg(test)]
mod tests {
    use super::super::math_fixture::{self as fixture, Arr};
    use super::*;
    use crate::model::Node;
    use crate::ops::Attrs;

    fn t(shape: &[usize], data: &[f32]) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data: data.to_vec(),
        }
    }

    #[test]
    fn broadcasting_matches_numpy() {
        // [2,1] + [3] -> [2,3]
        let r = Binary::Add.run(&t(&[2, 1], &[10., 20.]), &t(&[3], &[1., 2., 3.]), &[2, 3]);
        assert_eq!(r.data, vec![11., 12., 13., 21., 22., 23.]);
        let r = Binary::Sub.run(&t(&[1], &[1.]), &t(&[2], &[5., 7.]), &[2]);
        assert_eq!(r.data, vec![-4., -6.]);
        // A trailing block with leading 1s, on either side: [2,2] - [1,2] and [1,2] - [2,2].
        let (x, y) = (t(&[2, 2], &[1., 2., 3., 4.]), t(&[1, 2], &[10., 20.]));
        assert_eq!(
            Binary::Sub.run(&x, &y, &[2, 2]).data,
            vec![-9., -18., -7., -16.]
        );
        assert_eq!(
            Binary::Sub.run(&y, &x, &[2, 2]).data,
            vec![9., 18., 7., 16.]
        );
    }

    #[test]
    fn softmax_is_stable_and_sums_to_one() {
        let r = softmax(t(&[2, 2], &[1000., 1000., -1000., 0.]), -1);
        assert_eq!(r.data[..2], [0.5, 0.5]);
        assert!((r.data[2] + r.data[3] - 1.0).abs() < 1e-6);
        // Along axis 0 of [2, 2].
        let r = softmax(t(&[2, 2], &[0., 5., 0., 5.]), 0);
        assert_eq!(r.data, vec![0.5, 0.5, 0.5, 0.5]);
    }

    #[test]
    fn softmax_matches_f64_along_every_axis() {
        // Rows longer and shorter than the eight lanes of the sum, more than one task's worth
        // of blocks, NaN and infinities (which make their row NaN, as in onnxruntime).
        let shape = [3usize, 11, 5, 40];
        let n: usize = shape.iter().product();
        let mut x: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 1000) as f32 / 50.0 - 10.0)
            .collect();
        x[17] = f32::NAN;
        x[n - 1] = f32::INFINITY;
        for axis in 0..4 {
            let got = softmax(t(&shape, &x), axis as i64).data;
            let inner: usize = shape[axis + 1..].iter().product();
            let len = shape[axis];
            for (start, _) in x
                .iter()
                .enumerate()
                .filter(|(i, _)| i % (len * inner) < inner)
            {
                let at = |k: usize| start + k * inner;
                // The differences from the maximum as f32 computes them (exactly, but for the
                // rounding of large ones, which no f32 softmax avoids).
                let max = (0..len).map(|k| x[at(k)]).fold(f32::NEG_INFINITY, f32::max);
                let d = |k: usize| (x[at(k)] - max) as f64;
                let sum: f64 = (0..len).map(|k| d(k).exp()).sum();
                for k in 0..len {
                    let want = d(k).exp() / sum;
                    let g = got[at(k)] as f64;
                    assert!(
                        (g - want).abs() <= 1e-6 * want.abs().max(1e-30)
                            || (g.is_nan() && want.is_nan()),
                        "axis {axis}, element {}: {g}, not {want}",
                        at(k)
                    );
                }
            }
        }
    }

    #[test]
    fn the_vector_exp_is_within_two_ulps() {
        let mut x = -87.3f32;
        while x < 88.7 {
            let (got, want) = (exp(x), (x as f64).exp());
            let ulp = (want as f32).abs() * f32::EPSILON;
            assert!(
                ((got as f64) - want).abs() <= 2.0 * ulp as f64,
                "exp({x}) = {got}, not {want}"
            );
            x += 0.0137;
        }
        assert!(exp(f32::NAN).is_nan());
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(-100.0), 0.0);
        assert_eq!(exp(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(89.0), f32::INFINITY);
        assert_eq!(exp(0.0), 1.0);
    }

    #[test]
    fn unary_functions_match_the_reference() {
        let ops = [
            "HardSigmoid",
            "HardSwish",
            "Log",
            "Neg",
            "Abs",
            "Reciprocal",
            "Floor",
            "Ceil",
            "Sin",
            "Cos",
        ];
        for c in fixture::cases(&ops, 16) {
            let node = c.node();
            let mut a = Attrs::new(&node);
            let u = Unary::parse(&c.op, &mut a).unwrap();
            a.finish().unwrap();
            match c.input(0) {
                Arr::F32(x) => {
                    assert_eq!(u.infer(&c.vtype(0)).unwrap().shape, c.out_shape(0));
                    c.check_f32(&u.run(x.clone()), 0);
                }
                Arr::I64(x) => {
                    assert_eq!(u.infer(&c.vtype(0)).unwrap().elem, Elem::I64);
                    c.check_i64(&u.run_i64(x.clone()), 0);
                }
                other => panic!("{}: {other:?}", c.name),
            }
        }
    }

    #[test]
    fn neg_and_abs_follow_known_content() {
        let sizes = VType::new(Elem::I64, vec![D::Fixed(2)])
            .with_known(Some(vec![K::Int(-3), K::Sym("b".into())]));
        let neg = Unary::Neg.infer(&sizes).unwrap();
        assert_eq!(neg.known, Some(vec![K::Int(3), K::Any]));
        let abs = Unary::Abs.infer(&sizes).unwrap();
        assert_eq!(abs.known, Some(vec![K::Int(3), K::Sym("b".into())]));
    }

    #[test]
    fn only_neg_and_abs_take_integers() {
        let x = VType::new(Elem::I64, vec![D::Fixed(2)]);
        assert_eq!(
            Unary::Log.infer(&x).unwrap_err(),
            "input must be F32, not I64"
        );
        assert!(Unary::Abs.infer(&x).is_ok());
    }

    #[test]
    fn clip_matches_the_reference() {
        for c in fixture::cases(&["Clip"], 8) {
            let param = |i: usize| c.inputs.get(i).and_then(Option::as_ref);
            match c.input(0) {
                Arr::F32(x) => {
                    let bound = |i| param(i).map(|_| c.f32(i).data[0]);
                    assert_eq!(infer_clip(&c.vtype(0)).unwrap().shape, c.out_shape(0));
                    c.check_f32(&clip(x.clone(), bound(1), bound(2)), 0);
                }
                Arr::I64(x) => {
                    let bound = |i| param(i).map(|_| c.i64(i).data[0]);
                    c.check_i64(&clip(x.clone(), bound(1), bound(2)), 0);
                }
                other => panic!("{}: {other:?}", c.name),
            }
        }
    }

    #[test]
    fn prelu_matches_the_reference() {
        for c in fixture::cases(&["PRelu"], 4) {
            let t = infer_prelu(&c.vtype(0), &c.vtype(1)).unwrap();
            assert_eq!(t.shape, c.out_shape(0));
            c.check_f32(&prelu(c.f32(0), c.f32(1), c.outputs[0].shape()), 0);
        }
    }

    #[test]
    fn prelu_broadcasts_only_the_slope() {
        let f = |s: &[u64]| VType::new(Elem::F32, s.iter().map(|&d| D::Fixed(d)).collect());
        let e = infer_prelu(&f(&[2, 1]), &f(&[3])).unwrap_err();
        assert_eq!(
            e,
            "slope [3] does not broadcast to X [2, 1] (only the slope may be broadcast)"
        );
        assert!(infer_prelu(&f(&[4]), &f(&[2, 4])).is_err());
        // A symbol may be the slope's size: checked again at run time.
        let x = VType::new(Elem::F32, vec![D::Sym("n".into()), D::Fixed(3)]);
        assert_eq!(infer_prelu(&x, &f(&[2, 1])).unwrap(), x);
    }

    #[test]
    fn arithmetic_matches_the_reference() {
        for c in fixture::cases(&["Add", "Sub", "Mul", "Div", "Mod"], 11) {
            let node = c.node();
            let mut a = Attrs::new(&node);
            let b = Binary::parse(&c.op, &mut a).unwrap();
            a.finish().unwrap();
            let out = c.outputs[0].shape().to_vec();
            match (c.input(0), c.input(1)) {
                (Arr::I64(x), Arr::I64(y)) => {
                    let t = b.infer(&c.vtype(0), &c.vtype(1)).unwrap();
                    assert_eq!((t.elem, t.shape), (Elem::I64, c.out_shape(0)));
                    c.check_i64(&b.run_i64(x, y, &out).unwrap(), 0);
                }
                (Arr::F32(x), Arr::F32(y)) => c.check_f32(&b.run(x, y, &out), 0),
                other => panic!("{}: {other:?}", c.name),
            }
        }
    }

    #[test]
    fn integer_division_by_zero_is_an_error_and_overflow_wraps() {
        let i = |v: &[i64]| Tensor {
            shape: vec![v.len()],
            data: v.to_vec(),
        };
        for op in [
            Binary::Div,
            Binary::Mod { fmod: false },
            Binary::Mod { fmod: true },
        ] {
            let e = op.run_i64(&i(&[1, 2]), &i(&[3, 0]), &[2]).unwrap_err();
            assert_eq!(e, "integer division by zero: input B holds 0");
        }
        // An empty output divides nothing.
        let empty = Tensor {
            shape: vec![0],
            data: vec![],
        };
        assert!(Binary::Div.run_i64(&empty, &i(&[0]), &[0]).is_ok());
        let (min, max) = (i64::MIN, i64::MAX);
        let r = Binary::Div.run_i64(&i(&[min]), &i(&[-1]), &[1]).unwrap();
        assert_eq!(r.data, vec![min]);
        let r = (Binary::Mod { fmod: false }).run_i64(&i(&[min]), &i(&[-1]), &[1]);
        assert_eq!(r.unwrap().data, vec![0]);
        let r = Binary::Add.run_i64(&i(&[max]), &i(&[1]), &[1]).unwrap();
        assert_eq!(r.data, vec![min]);
        assert_eq!(Unary::Neg.run_i64(i(&[min])).data, vec![min]);
    }

    #[test]
    fn arithmetic_types_must_agree() {
        let (f, n) = (
            VType::new(Elem::F32, vec![D::Fixed(2)]),
            VType::new(Elem::I64, vec![D::Fixed(2)]),
        );
        assert_eq!(
            Binary::Add.infer(&f, &n).unwrap_err(),
            "input A is F32 and input B is I64: both must be F32, or both I64"
        );
        assert_eq!(
            Binary::Pow.infer(&n, &n).unwrap_err(),
            "Pow on I64 values is not supported (only F32)"
        );
        let node = Node {
            op: "Mod".into(),
            name: "m".into(),
            inputs: vec!["a".into(), "b".into()],
            outputs: vec!["y".into()],
            attrs: [("fmod".to_string(), crate::model::Attr::Int(2))].into(),
        };
        let e = Binary::parse("Mod", &mut Attrs::new(&node)).unwrap_err();
        assert_eq!(e, "attribute \"fmod\" must be 0 or 1, not 2");
    }
}
