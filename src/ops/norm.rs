//! Normalization at inference: BatchNormalization (per channel, with running statistics) and
//! LayerNormalization (over the trailing axes).

use super::shape::{self, fmt_shape, same, VType, D};
use super::{chunks, float, rank, spread};
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
    chunks(&mut t.data, n, par, |_, row| {
        let mean = row.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = row.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        let inv = 1.0 / (var + epsilon as f64).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            let y = (*v as f64 - mean) * inv * s[i] as f64;
            *v = (y + bias.as_ref().map_or(0.0, |b| b[i] as f64)) as f32;
        }
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
}
