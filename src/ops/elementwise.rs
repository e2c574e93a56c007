//! Element-wise arithmetic with NumPy broadcasting, activations, and softmax.

use super::shape::{self, VType};
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
        }
    }

    pub(super) fn run(self, a: &Tensor, b: &Tensor, out: &[usize]) -> Tensor {
        match self {
            Binary::Add => broadcast_with(a, b, out, |x, y| x + y),
            Binary::Sub => broadcast_with(a, b, out, |x, y| x - y),
            Binary::Mul => broadcast_with(a, b, out, |x, y| x * y),
            Binary::Div => broadcast_with(a, b, out, |x, y| x / y),
            Binary::Pow => broadcast_with(a, b, out, f32::powf),
        }
    }
}

pub(super) fn infer_binary(a: &VType, b: &VType) -> Result<VType, String> {
    float(a, "input A")?;
    float(b, "input B")?;
    Ok(VType::new(Elem::F32, shape::broadcast(&a.shape, &b.shape)?))
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

/// `f(a, b)` element by element over the broadcast shape `out`.
pub(crate) fn broadcast_with(
    a: &Tensor,
    b: &Tensor,
    out: &[usize],
    f: impl Fn(f32, f32) -> f32 + Sync,
) -> Tensor {
    let total: usize = out.iter().product();
    let mut data = vec![0f32; total];
    if a.shape == out && b.shape == out {
        zip_into(&mut data, &a.data, &b.data, &f);
    } else if b.data.len() == 1 && a.shape == out {
        let y = b.data[0];
        map_into(&mut data, &a.data, |x| f(x, y));
    } else if a.data.len() == 1 && b.shape == out {
        let x = a.data[0];
        map_into(&mut data, &b.data, |y| f(x, y));
    } else if a.shape == out && out.ends_with(&b.shape) && !b.data.is_empty() {
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
    } else if total > 0 {
        let rank = out.len();
        let (sa, sb) = (
            broadcast_strides(&a.shape, rank),
            broadcast_strides(&b.shape, rank),
        );
        // Rows along the last axis; each row's start is found from its index.
        let inner = out[rank - 1];
        let (ia, ib) = (sa[rank - 1], sb[rank - 1]);
        let row = |r: usize, dst: &mut [f32]| {
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

fn zip_into(dst: &mut [f32], a: &[f32], b: &[f32], f: &(impl Fn(f32, f32) -> f32 + Sync)) {
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

fn map_into(dst: &mut [f32], src: &[f32], f: impl Fn(f32) -> f32 + Sync) {
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
pub(crate) fn map_in_place(data: &mut [f32], f: impl Fn(f32) -> f32 + Sync) {
    let par = spread(data.len(), PAR_MIN);
    chunks(data, BLOCK, par, |_, d| {
        d.iter_mut().for_each(|x| *x = f(*x))
    });
}

/// A one-input activation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Unary {
    Relu,
    Sigmoid,
    Tanh,
    Exp,
    Sqrt,
    Erf,
    LeakyRelu(f32),
    Gelu { tanh: bool },
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

    pub(super) fn run(self, mut t: Tensor) -> Tensor {
        self.apply(&mut t.data);
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
        }
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

/// Softmax along `axis` (inference already checked it).
pub(super) fn softmax(mut t: Tensor, axis: i64) -> Tensor {
    let ax = shape::axis(axis, t.shape.len(), "axis").expect("inference checked the axis");
    let n = t.shape[ax];
    let inner: usize = t.shape[ax + 1..].iter().product();
    if n == 0 || inner == 0 || t.data.is_empty() {
        return t;
    }
    let block = n * inner;
    let par = spread(t.data.len(), PAR_MIN);
    chunks(&mut t.data, block, par, |_, b| {
        for i in 0..inner {
            softmax_strided(b, i, inner, n);
        }
    });
    t
}

/// Softmax of `b[start], b[start + stride], ...` (`n` elements), stable against overflow.
fn softmax_strided(b: &mut [f32], start: usize, stride: usize, n: usize) {
    let idx = |k: usize| start + k * stride;
    let max = (0..n).map(|k| b[idx(k)]).fold(f32::NEG_INFINITY, f32::max);
    let mut sum = 0f32;
    for k in 0..n {
        let e = (b[idx(k)] - max).exp();
        b[idx(k)] = e;
        sum += e;
    }
    for k in 0..n {
        b[idx(k)] /= sum;
    }
}

/// Softmax of each row of `data` (rows of `n`), for `Dense`.
pub(crate) fn softmax_rows(data: &mut [f32], n: usize) {
    if n == 0 {
        return;
    }
    for row in data.chunks_mut(n) {
        softmax_strided(row, 0, 1, n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
