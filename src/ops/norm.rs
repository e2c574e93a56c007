//! Normalization at inference: BatchNormalization (per channel, with running statistics),
//! LayerNormalization (over the trailing axes) and InstanceNormalization (per image and
//! channel, over the spatial axes).

use super::shape::{self, fmt_shape, same, VType, D};
use super::{chunks, float, positive, rank, spread, Attrs};
use crate::tensor::Tensor;

pub(super) fn infer_batch_norm(ins: &[Option<&VType>]) -> Result<VType, String> {
    let x = float(ins[0].expect("required"), "input X")?;
    if x.rank() < 2 {
        return Err(format!(
            "input X {} must have rank 2 or more [n, c, ...]",
            fmt_shape(&x.shape)
        ));
    }
    let c = &x.shape[1];
    for (i, what) in ["scale", "B", "mean", "var"].iter().enumerate() {
        let p = rank(float(ins[i + 1].expect("required"), what)?, 1, what)?;
        same(&p.shape[0], c, || {
            format!("{what} {} does not match {c} channels", fmt_shape(&p.shape))
        })?;
    }
    Ok(x.clone())
}

pub(super) fn batch_norm(
    mut t: Tensor,
    [scale, b, mean, var]: [&Tensor; 4],
    epsilon: f32,
) -> Tensor {
    let c = t.shape[1];
    let inner: usize = t.shape[2..].iter().product();
    let (mul, add): (Vec<f32>, Vec<f32>) = (0..c)
        .map(|i| {
            let s = scale.data[i] as f64 / (var.data[i] as f64 + epsilon as f64).sqrt();
            (
                s as f32,
                (b.data[i] as f64 - mean.data[i] as f64 * s) as f32,
            )
        })
        .unzip();
    if inner > 0 {
        let par = spread(t.data.len(), 1 << 15);
        chunks(&mut t.data, inner, par, |p, plane| {
            let (m, a) = (mul[p % c], add[p % c]);
            plane.iter_mut().for_each(|v| *v = *v * m + a);
        });
    }
    t
}

pub(super) fn infer_layer_norm(
    axis: i64,
    x: &VType,
    scale: &VType,
    b: Option<&VType>,
) -> Result<VType, String> {
    float(x, "input X")?;
    let ax = shape::axis(axis, x.rank(), "axis")?;
    let normalized = &x.shape[ax..];
    for (p, what) in [(Some(scale), "Scale"), (b, "B")] {
        let Some(p) = p else { continue };
        float(p, what)?;
        let joined = shape::broadcast(&p.shape, normalized).ok();
        let fits = p.rank() <= normalized.len()
            && joined.is_some_and(|j| {
                j.iter()
                    .zip(normalized)
                    .all(|(a, b)| a == b || *a == D::Any)
            });
        if !fits {
            return Err(format!(
                "{what} {} does not broadcast to the normalized axes {}",
                fmt_shape(&p.shape),
                fmt_shape(normalized)
            ));
        }
    }
    Ok(x.clone())
}

pub(super) fn layer_norm(
    mut t: Tensor,
    scale: &Tensor,
    b: Option<&Tensor>,
    axis: i64,
    epsilon: f32,
) -> Tensor {
    let ax = shape::axis(axis, t.shape.len(), "axis").expect("inference checked the axis");
    let normalized = t.shape[ax..].to_vec();
    let normalized = &normalized[..];
    let n: usize = normalized.iter().product();
    // Scale and B spread over the normalized axes.
    let widen = |p: &Tensor| {
        let zero = Tensor {
            shape: vec![1],
            data: vec![0.0],
        };
        super::elementwise::broadcast_with(p, &zero, normalized, |v, _| v).data
    };
    let s = widen(scale);
    let bias = b.map(widen);
    if n == 0 {
        return t;
    }
    let par = spread(t.data.len(), 1 << 15);
    let per = (TASK / n).max(1);
    chunks(&mut t.data, per * n, par, |_, rows| {
        for row in rows.chunks_exact_mut(n) {
            // The mean and variance in f64 (two passes: no cancellation), the rest in f32, each
            // a loop the compiler runs on vector registers.
            let mean = sum_f64(row, |v| v) / n as f64;
            let var = sum_f64(row, |v| (v - mean) * (v - mean)) / n as f64;
            let inv = (1.0 / (var + epsilon as f64).sqrt()) as f32;
            let mean = mean as f32;
            match &bias {
                Some(bias) => {
                    for ((v, &s), &b) in row.iter_mut().zip(&s).zip(bias) {
                        *v = (*v - mean) * inv * s + b;
                    }
                }
                None => {
                    for (v, &s) in row.iter_mut().zip(&s) {
                        *v = (*v - mean) * inv * s;
                    }
                }
            }
        }
    });
    t
}

/// Elements one task of [`layer_norm`] takes.
const TASK: usize = 1 << 14;

/// The sum of `f(x)` over `xs`, in f64, in eight running sums (which the compiler keeps in
/// vector registers).
#[inline]
fn sum_f64(xs: &[f32], f: impl Fn(f64) -> f64) -> f64 {
    let mut lanes = [0f64; 8];
    let mut blocks = xs.chunks_exact(8);
    for b in &mut blocks {
        for (s, &v) in lanes.iter_mut().zip(b) {
            *s += f(v as f64);
        }
    }
    let rest: f64 = blocks.remainder().iter().map(|&v| f(v as f64)).sum();
    lanes.iter().sum::<f64>() + rest
}

/// InstanceNormalization's attribute: its epsilon.
pub(super) fn parse_instance_norm(a: &mut Attrs<'_>) -> Result<f32, String> {
    positive(a.float("epsilon", 1e-5)?, "epsilon")
}

pub(super) fn infer_instance_norm(x: &VType, scale: &VType, b: &VType) -> Result<VType, String> {
    float(x, "input X")?;
    if x.rank() < 3 {
        return Err(format!(
            "input X {} must have rank 3 or more [n, c, spatial...]",
            fmt_shape(&x.shape)
        ));
    }
    let c = &x.shape[1];
    for (p, what) in [(scale, "scale"), (b, "B")] {
        rank(float(p, what)?, 1, what)?;
        same(&p.shape[0], c, || {
            format!("{what} {} does not match {c} channels", fmt_shape(&p.shape))
        })?;
    }
    Ok(x.clone())
}

/// Normalizes each image's channels of `t` over their spatial axes (mean and variance in f64),
/// in place.
pub(super) fn instance_norm(mut t: Tensor, scale: &Tensor, b: &Tensor, epsilon: f32) -> Tensor {
    let c = t.shape[1];
    let inner: usize = t.shape[2..].iter().product();
    if inner == 0 {
        return t;
    }
    let par = spread(t.data.len(), 1 << 15);
    chunks(&mut t.data, inner, par, |p, plane| {
        let n = inner as f64;
        let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / n;
        let var = plane
            .iter()
            .map(|&v| (v as f64 - mean).powi(2))
            .sum::<f64>()
            / n;
        let k = (scale.data[p % c] as f64 / (var + epsilon as f64).sqrt()) as f32;
        // Centred first: folding the mean into one multiply-add would cancel badly when the
        // variance is small and k large.
        let (mean, add) = (mean as f32, b.data[p % c]);
        plane.iter_mut().for_each(|v| *v = (*v - mean) * k + add);
    });
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_norm_centres_and_scales_each_row() {
        let x = Tensor {
            shape: vec![2, 2],
            data: vec![1., 3., -2., 2.],
        };
        let s = Tensor {
            shape: vec![2],
            data: vec![1., 2.],
        };
        let r = layer_norm(x, &s, None, -1, 0.0);
        assert_eq!(r.data, vec![-1., 2., -1., 2.]);
    }

    #[test]
    fn batch_norm_uses_running_statistics() {
        let x = Tensor {
            shape: vec![1, 2, 1],
            data: vec![3., 3.],
        };
        let p = |v: [f32; 2]| Tensor {
            shape: vec![2],
            data: v.to_vec(),
        };
        let r = batch_norm(
            x,
            [&p([2., 1.]), &p([1., 0.]), &p([1., 3.]), &p([4., 1.])],
            0.0,
        );
        assert_eq!(r.data, vec![3., 0.]);
    }

    #[test]
    fn instance_norm_matches_the_reference_cases() {
        use super::super::layout::fixture::{self, close, f32s};
        for case in fixture::cases("InstanceNormalization") {
            let mut a = Attrs::new(&case.node);
            let eps = parse_instance_norm(&mut a).unwrap();
            a.finish().unwrap();
            let [x, s, b] = [0, 1, 2].map(|i| f32s(case.inputs[i].as_ref().expect("input")));
            let fixed = |t: &Tensor| {
                VType::new(
                    crate::tensor::Elem::F32,
                    t.shape.iter().map(|&d| D::Fixed(d as u64)).collect(),
                )
            };
            let t = infer_instance_norm(&fixed(&x), &fixed(&s), &fixed(&b)).unwrap();
            assert_eq!(t, fixed(&x));
            let want = f32s(&case.outputs[0]);
            close(&case.name, &instance_norm(x, &s, &b, eps), &want);
        }
    }

    #[test]
    fn instance_norm_refuses_bad_shapes_and_epsilon() {
        let t = |s: &[u64]| {
            VType::new(
                crate::tensor::Elem::F32,
                s.iter().map(|&d| D::Fixed(d)).collect(),
            )
        };
        assert_eq!(
            infer_instance_norm(&t(&[2, 3]), &t(&[3]), &t(&[3])).unwrap_err(),
            "input X [2, 3] must have rank 3 or more [n, c, spatial...]"
        );
        assert_eq!(
            infer_instance_norm(&t(&[2, 3, 4]), &t(&[3]), &t(&[4])).unwrap_err(),
            "B [4] does not match 3 channels: 4 != 3"
        );
        assert_eq!(
            infer_instance_norm(&t(&[2, 3, 4]), &t(&[1, 3]), &t(&[3])).unwrap_err(),
            "scale must have rank 1, not 2 (shape [1, 3])"
        );
        let ints = VType::new(crate::tensor::Elem::I64, vec![D::Fixed(1); 3]);
        assert_eq!(
            infer_instance_norm(&ints, &t(&[1]), &t(&[1])).unwrap_err(),
            "input X must be F32, not I64"
        );
        let sym = VType::new(
            crate::tensor::Elem::F32,
            vec![D::Sym("n".into()), D::Fixed(3), D::Sym("l".into())],
        );
        assert_eq!(infer_instance_norm(&sym, &t(&[3]), &t(&[3])).unwrap(), sym);
        let node = crate::model::Node {
            op: "InstanceNormalization".into(),
            name: "i".into(),
            inputs: vec![],
            outputs: vec![],
            attrs: [("epsilon".to_string(), crate::model::Attr::Float(0.0))].into(),
        };
        assert_eq!(
            parse_instance_norm(&mut Attrs::new(&node)).unwrap_err(),
            "attribute \"epsilon\" must be positive, not 0"
        );
    }
}
