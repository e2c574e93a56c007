//! Matrix products: MatMul (NumPy semantics), Gemm, and the op-set 1 Dense layer. Every
//! product goes through matrixmultiply's SGEMM; large ones are split by rows over the cores.

use super::elementwise::{self, Unary};
use super::shape::{self, fmt_shape, same, VType, D};
use super::{chunks, float, rank, spread, Attrs};
use crate::sys::{sgemm_view, MatRef};
use crate::tensor::Elem;
use crate::tensor::Tensor;

/// Multiply-adds below which a product runs on one core.
const PAR_FLOPS: usize = 1 << 18;

/// `c = alpha * a · b + beta * c`, split by rows of `c` over the cores when it is large.
pub(crate) fn gemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    let threads = rayon::current_num_threads();
    if !spread(m.saturating_mul(k).saturating_mul(n), PAR_FLOPS) || m < 2 || n == 0 {
        return sgemm_view(alpha, a, b, beta, c);
    }
    // Row blocks of a multiple of 8 rows, the SGEMM kernel's height, about two per core.
    let per = m.div_ceil(2 * threads).next_multiple_of(8);
    chunks(c, per * n, true, |i, block| {
        let rows = block.len() / n;
        sgemm_view(alpha, a.rows(i * per, rows), b, beta, block);
    });
}

pub(super) fn infer_matmul(a: &VType, b: &VType) -> Result<VType, String> {
    float(a, "input A")?;
    float(b, "input B")?;
    if a.rank() == 0 || b.rank() == 0 {
        return Err("MatMul inputs must have rank 1 or more".into());
    }
    let (mut sa, mut sb) = (a.shape.clone(), b.shape.clone());
    if a.rank() == 1 {
        sa.insert(0, D::Fixed(1));
    }
    if b.rank() == 1 {
        sb.push(D::Fixed(1));
    }
    let (ra, rb) = (sa.len(), sb.len());
    same(&sa[ra - 1], &sb[rb - 2], || {
        format!(
            "inner dimensions of {} and {} differ",
            fmt_shape(&a.shape),
            fmt_shape(&b.shape)
        )
    })?;
    let mut out = shape::broadcast(&sa[..ra - 2], &sb[..rb - 2])
        .map_err(|e| format!("batch dimensions: {e}"))?;
    if a.rank() > 1 {
        out.push(sa[ra - 2].clone());
    }
    if b.rank() > 1 {
        out.push(sb[rb - 1].clone());
    }
    Ok(VType::new(Elem::F32, out))
}

/// NumPy `matmul` of shapes inference accepted, into shape `out`.
pub(super) fn matmul(a: &Tensor, b: &Tensor, out: &[usize]) -> Tensor {
    let mut sa = a.shape.clone();
    let mut sb = b.shape.clone();
    if sa.len() == 1 {
        sa.insert(0, 1);
    }
    if sb.len() == 1 {
        sb.push(1);
    }
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k, n) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    let total: usize = out.iter().product();
    let mut data = vec![0f32; total];
    let (ba, bb) = (&sa[..ra - 2], &sb[..rb - 2]);
    if bb.iter().all(|&d| d == 1) {
        // B is one matrix: A's batches stack into one tall product.
        let rows = ba.iter().product::<usize>() * m;
        gemm(
            1.0,
            MatRef::new(&a.data, rows, k),
            MatRef::new(&b.data, k, n),
            0.0,
            &mut data,
        );
    } else {
        let rank = ba.len().max(bb.len());
        let batch: Vec<usize> = (0..rank)
            .map(|i| {
                let x = (i + ba.len()).checked_sub(rank).map_or(1, |j| ba[j]);
                let y = (i + bb.len()).checked_sub(rank).map_or(1, |j| bb[j]);
                x.max(y)
            })
            .collect();
        let strides = |dims: &[usize], size: usize| {
            let mut st = vec![0; rank];
            let mut s = size;
            for (i, &d) in dims.iter().enumerate().rev() {
                st[rank - dims.len() + i] = if d == 1 { 0 } else { s };
                s *= d;
            }
            st
        };
        let (sta, stb) = (strides(ba, m * k), strides(bb, k * n));
        let one = |i: usize, c: &mut [f32]| {
            let (mut oa, mut ob, mut rest) = (0, 0, i);
            for ax in (0..rank).rev() {
                let j = rest % batch[ax];
                rest /= batch[ax];
                oa += j * sta[ax];
                ob += j * stb[ax];
            }
            sgemm_view(
                1.0,
                MatRef::new(&a.data[oa..oa + m * k], m, k),
                MatRef::new(&b.data[ob..ob + k * n], k, n),
                0.0,
                c,
            );
        };
        let par = spread(total / (m * n).max(1), 2);
        chunks(&mut data, m * n, par, one);
    }
    Tensor {
        shape: out.to_vec(),
        data,
    }
}

/// `Gemm`'s attributes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Gemm {
    pub alpha: f32,
    pub beta: f32,
    pub trans_a: bool,
    pub trans_b: bool,
}

impl Gemm {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Gemm, String> {
        Ok(Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.flag("transA")?,
            trans_b: a.flag("transB")?,
        })
    }

    pub(super) fn infer(&self, a: &VType, b: &VType, c: Option<&VType>) -> Result<VType, String> {
        rank(float(a, "input A")?, 2, "input A")?;
        rank(float(b, "input B")?, 2, "input B")?;
        let (m, k) = pick(&a.shape, self.trans_a);
        let (kb, n) = pick(&b.shape, self.trans_b);
        same(k, kb, || {
            format!(
                "A {}{} and B {}{} do not multiply",
                fmt_shape(&a.shape),
                if self.trans_a { " (transposed)" } else { "" },
                fmt_shape(&b.shape),
                if self.trans_b { " (transposed)" } else { "" }
            )
        })?;
        let out = vec![m.clone(), n.clone()];
        if let Some(c) = c {
            float(c, "input C")?;
            let joined = shape::broadcast(&c.shape, &out).ok();
            let fits = c.rank() <= 2
                && joined.is_some_and(|j| j.iter().zip(&out).all(|(x, y)| x == y || *x == D::Any));
            if !fits {
                return Err(format!(
                    "C {} does not broadcast to the output {}",
                    fmt_shape(&c.shape),
                    fmt_shape(&out)
                ));
            }
        }
        Ok(VType::new(Elem::F32, out))
    }

    pub(super) fn run(&self, a: &Tensor, b: &Tensor, c: Option<&Tensor>, out: &[usize]) -> Tensor {
        let (m, n) = (out[0], out[1]);
        let k = if self.trans_a { a.shape[0] } else { a.shape[1] };
        let (va, vb) = (view(a, self.trans_a, m, k), view(b, self.trans_b, k, n));
        let mut data;
        let beta = match c {
            Some(c) if self.beta != 0.0 => {
                data = elementwise::broadcast_with(
                    c,
                    &Tensor {
                        shape: vec![1],
                        data: vec![0.0],
                    },
                    out,
                    |x, _| x,
                )
                .data;
                self.beta
            }
            _ => {
                data = vec![0f32; m * n];
                0.0
            }
        };
        gemm(self.alpha, va, vb, beta, &mut data);
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

/// A `[rows, cols]` view of `t`, which holds the matrix transposed if `trans`.
fn view(t: &Tensor, trans: bool, rows: usize, cols: usize) -> MatRef<'_> {
    if trans {
        MatRef {
            data: &t.data,
            rows,
            cols,
            rs: 1,
            cs: rows,
        }
    } else {
        MatRef::new(&t.data, rows, cols)
    }
}

/// `(rows, cols)` of a 2-D shape, transposed if asked.
fn pick(s: &[D], trans: bool) -> (&D, &D) {
    if trans {
        (&s[1], &s[0])
    } else {
        (&s[0], &s[1])
    }
}

/// Activation functions of the `Dense` op.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Linear,
    Relu,
    Sigmoid,
    Tanh,
    Softmax,
}

impl Activation {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Activation, String> {
        Ok(match a.text("activation")?.unwrap_or("linear") {
            "linear" => Activation::Linear,
            "relu" => Activation::Relu,
            "sigmoid" => Activation::Sigmoid,
            "tanh" => Activation::Tanh,
            "softmax" => Activation::Softmax,
            other => {
                return Err(format!(
                    "unknown activation {other:?} (linear, relu, sigmoid, tanh, softmax)"
                ))
            }
        })
    }
}

pub(super) fn infer_dense(
    x: &VType,
    kernel: &VType,
    bias: Option<&VType>,
) -> Result<VType, String> {
    rank(float(x, "input x")?, 2, "input x")?;
    rank(float(kernel, "kernel")?, 2, "kernel")?;
    same(&x.shape[1], &kernel.shape[0], || {
        format!(
            "input {} does not fit kernel {} (kernel is [inputs, units])",
            fmt_shape(&x.shape),
            fmt_shape(&kernel.shape)
        )
    })?;
    let units = kernel.shape[1].clone();
    if let Some(b) = bias {
        rank(float(b, "bias")?, 1, "bias")?;
        same(&b.shape[0], &units, || {
            format!(
                "bias {} does not match {} units",
                fmt_shape(&b.shape),
                units
            )
        })?;
    }
    Ok(VType::new(Elem::F32, vec![x.shape[0].clone(), units]))
}

pub(super) fn dense(
    act: Activation,
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    out: &[usize],
) -> Tensor {
    let (rows, k, n) = (x.shape[0], x.shape[1], kernel.shape[1]);
    let mut data = vec![0f32; rows * n];
    gemm(
        1.0,
        MatRef::new(&x.data, rows, k),
        MatRef::new(&kernel.data, k, n),
        0.0,
        &mut data,
    );
    if let (Some(b), true) = (bias, n > 0) {
        for row in data.chunks_mut(n) {
            row.iter_mut().zip(&b.data).for_each(|(v, b)| *v += b);
        }
    }
    match act {
        Activation::Linear => {}
        Activation::Relu => Unary::Relu.apply(&mut data),
        Activation::Sigmoid => Unary::Sigmoid.apply(&mut data),
        Activation::Tanh => Unary::Tanh.apply(&mut data),
        Activation::Softmax => elementwise::softmax_rows(&mut data, n),
    }
    Tensor {
        shape: out.to_vec(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::super::math_fixture as fixture;
    use super::*;

    fn t(shape: &[usize], data: Vec<f32>) -> Tensor {
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    #[test]
    fn split_and_whole_products_agree() {
        let (m, k, n) = (100, 70, 90);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 5) % 11) as f32 - 5.0).collect();
        let mut whole = vec![0f32; m * n];
        sgemm_view(
            1.0,
            MatRef::new(&a, m, k),
            MatRef::new(&b, k, n),
            0.0,
            &mut whole,
        );
        let mut split = vec![0f32; m * n];
        gemm(
            1.0,
            MatRef::new(&a, m, k),
            MatRef::new(&b, k, n),
            0.0,
            &mut split,
        );
        assert_eq!(whole, split);
        // One element by hand.
        let c01: f32 = (0..k).map(|j| a[j] * b[j * n + 1]).sum();
        assert_eq!(whole[1], c01);
    }

    #[test]
    fn gemm_transposes_and_adds_c() {
        // A^T with A = [[1, 2], [3, 4], [5, 6]] (3x2) -> [2, 3]; B = I3; C = [10, 20, 30].
        let g = Gemm {
            alpha: 1.0,
            beta: 1.0,
            trans_a: true,
            trans_b: false,
        };
        let a = t(&[3, 2], vec![1., 2., 3., 4., 5., 6.]);
        let b = t(&[3, 3], vec![1., 0., 0., 0., 1., 0., 0., 0., 1.]);
        let c = t(&[3], vec![10., 20., 30.]);
        let r = g.run(&a, &b, Some(&c), &[2, 3]);
        assert_eq!(r.data, vec![11., 23., 35., 12., 24., 36.]);
    }

    #[test]
    fn matmul_broadcasts_batches() {
        // [2, 1, 2] x [3, 2, 1]: batch dims [2] and [3] broadcast to... ranks differ: A [2,1,2]
        // has batch [2], B [3,2,1] has batch [3]: incompatible unless one is 1, so use [1,2].
        let a = t(&[1, 1, 2], vec![1., 2.]);
        let b = t(&[3, 2, 1], vec![1., 1., 2., 2., 3., 3.]);
        let r = matmul(&a, &b, &[3, 1, 1]);
        assert_eq!(r.data, vec![3., 6., 9.]);
    }

    #[test]
    fn matmul_matches_the_reference() {
        for c in fixture::cases(&["MatMul"], 11) {
            let t = infer_matmul(&c.vtype(0), &c.vtype(1)).unwrap();
            assert_eq!(t.shape, c.out_shape(0), "{}", c.name);
            c.check_f32(&matmul(c.f32(0), c.f32(1), c.outputs[0].shape()), 0);
        }
    }
}
