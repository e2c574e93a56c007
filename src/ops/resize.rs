//! Resize (ONNX op-set 19): nearest-neighbour and N-linear interpolation over any axes, with
//! every coordinate transformation but `tf_crop_and_resize`.
//!
//! Both interpolations are separable: each output element reads, along every resized axis, one
//! input position (nearest) or two with weights (linear). The kernels precompute those per axis
//! and walk the output row by row (a row runs along the last axis): the rows of the input that
//! an output row reads are found from the other axes, blended when linear, then sampled along
//! the last axis. An output row that reads the same input row as the one before it (nearest
//! upsampling) is copied from it.

use super::layout::{by_rows, capped};
use super::movement::{normalize_axes, strides};
use super::shape::{fmt_shape, VType, D};
use super::{float, Attrs};
use crate::memory::MAX_ELEMENTS;
use crate::tensor::{Elem, Tensor};

/// How an output element picks its input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The input position nearest the source coordinate, rounded so.
    Nearest(Rounding),
    /// Linear between the two input positions around the source coordinate, on every resized
    /// axis (bilinear on two, trilinear on three).
    Linear,
}

/// `nearest_mode`: how a source coordinate rounds to an input position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rounding {
    /// To the nearest, halves down (the default).
    PreferFloor,
    /// To the nearest, halves up.
    PreferCeil,
    Floor,
    Ceil,
}

/// `coordinate_transformation_mode`: where output position `x` of an axis resized from
/// `length_original` to `length_resized` by `scale` reads, as ONNX defines it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transform {
    /// `(x + 0.5) / scale - 0.5` (the default; what torch computes without align_corners).
    HalfPixel,
    /// `half_pixel`, shifted to keep the centre when the output length was rounded down.
    HalfPixelSymmetric,
    /// `half_pixel`, but 0 for an output of length 1.
    PytorchHalfPixel,
    /// `x * (length_original - 1) / (length_resized - 1)`, or 0 for an output of length 1.
    AlignCorners,
    /// `x / scale`.
    Asymmetric,
}

/// `keep_aspect_ratio_policy`: how `sizes` are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Policy {
    /// Each resized axis gets its size (the default).
    Stretch,
    /// One scale for every resized axis, the largest that fits in every size.
    NotLarger,
    /// One scale for every resized axis, the smallest that covers every size.
    NotSmaller,
}

/// `Resize`'s attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Resize {
    pub mode: Mode,
    pub transform: Transform,
    pub policy: Policy,
    /// The axes `scales` or `sizes` give values for (`None`: every axis, in order).
    pub axes: Option<Vec<i64>>,
}

/// The output size of a Resize, from its `scales` or its `sizes` input (parameters the
/// caller resolved before inference).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Target<'a> {
    Scales(&'a [f32]),
    /// Output lengths, which may be sizes symbols stand for (a graph that resizes to the
    /// batch size it read with `Shape`); see [`super::layout::shape_param`].
    Sizes(&'a [D]),
}

impl<'a> Target<'a> {
    /// The one of `scales` and `sizes` that is given. An empty tensor counts as omitted, as
    /// exporters give an empty `scales` beside `sizes`.
    pub fn new(scales: Option<&'a [f32]>, sizes: Option<&'a [D]>) -> Result<Self, String> {
        match (
            scales.filter(|s| !s.is_empty()),
            sizes.filter(|s| !s.is_empty()),
        ) {
            (Some(s), None) => Ok(Target::Scales(s)),
            (None, Some(s)) => Ok(Target::Sizes(s)),
            (Some(_), Some(_)) => Err("give scales or sizes, not both".into()),
            (None, None) => Err("give scales or sizes (neither is given)".into()),
        }
    }
}

/// How one resized axis is resized: the output length and the scale its coordinates use.
#[derive(Debug, Clone, PartialEq)]
struct Axis {
    out: D,
    /// `None` until the lengths are known (a symbolic input or size).
    scale: Option<f64>,
}

impl Resize {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Resize, String> {
        let rounding = match a.text("nearest_mode")?.unwrap_or("round_prefer_floor") {
            "round_prefer_floor" => Rounding::PreferFloor,
            "round_prefer_ceil" => Rounding::PreferCeil,
            "floor" => Rounding::Floor,
            "ceil" => Rounding::Ceil,
            other => return Err(format!(
                "attribute \"nearest_mode\" = {other:?} is not supported (round_prefer_floor, round_prefer_ceil, floor or ceil)"
            )),
        };
        let mode = match a.text("mode")?.unwrap_or("nearest") {
            "nearest" => Mode::Nearest(rounding),
            "linear" => Mode::Linear,
            other => {
                return Err(format!(
                    "attribute \"mode\" = {other:?} is not supported (nearest or linear)"
                ))
            }
        };
        let transform = match a.text("coordinate_transformation_mode")?.unwrap_or("half_pixel") {
            "half_pixel" => Transform::HalfPixel,
            "half_pixel_symmetric" => Transform::HalfPixelSymmetric,
            "pytorch_half_pixel" => Transform::PytorchHalfPixel,
            "align_corners" => Transform::AlignCorners,
            "asymmetric" => Transform::Asymmetric,
            other => return Err(format!(
                "attribute \"coordinate_transformation_mode\" = {other:?} is not supported (half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners or asymmetric)"
            )),
        };
        let policy = match a.text("keep_aspect_ratio_policy")?.unwrap_or("stretch") {
            "stretch" => Policy::Stretch,
            "not_larger" => Policy::NotLarger,
            "not_smaller" => Policy::NotSmaller,
            other => return Err(format!(
                "attribute \"keep_aspect_ratio_policy\" = {other:?} is not supported (stretch, not_larger or not_smaller)"
            )),
        };
        a.only_int("antialias", 0)?;
        // Read for their type, then unused: the cubic coefficient is for the cubic mode, and
        // the extrapolation value for tf_crop_and_resize, neither supported; excluding the
        // outside changes nothing in these modes, where a neighbour outside the input either
        // has weight 0 or is replaced by the edge, which has the weight of both.
        a.float("cubic_coeff_a", -0.75)?;
        a.float("extrapolation_value", 0.0)?;
        a.flag("exclude_outside")?;
        Ok(Resize {
            mode,
            transform,
            policy,
            axes: a.ints("axes")?,
        })
    }

    /// How each axis of an input of shape `x` is resized (`None`: it is not).
    fn plan(&self, x: &[D], target: Target<'_>) -> Result<Vec<Option<Axis>>, String> {
        let rank = x.len();
        let axes = match &self.axes {
            Some(a) => normalize_axes(a, rank, "axes")?,
            None => (0..rank).collect(),
        };
        let given = match target {
            Target::Scales(s) => s.len(),
            Target::Sizes(s) => s.len(),
        };
        if given != axes.len() {
            let what = match target {
                Target::Scales(_) => "scales",
                Target::Sizes(_) => "sizes",
            };
            return Err(format!(
                "{what} has {given} values for {} axes of the input {}",
                axes.len(),
                fmt_shape(x)
            ));
        }
        let mut plan = vec![None; rank];
        match target {
            Target::Scales(scales) => {
                for (&ax, &s) in axes.iter().zip(scales) {
                    if !(s.is_finite() && s > 0.0) {
                        return Err(format!(
                            "scale {s} for axis {ax} must be positive and finite"
                        ));
                    }
                    let s = s as f64;
                    let out = match x[ax].fixed() {
                        Some(n) => D::Fixed(scaled(n, s, 0.0, ax)?),
                        None if s == 1.0 => x[ax].clone(),
                        None => D::Any,
                    };
                    plan[ax] = Some(Axis {
                        out,
                        scale: Some(s),
                    });
                }
            }
            Target::Sizes(sizes) => {
                let want: Vec<(usize, &D)> = axes.iter().copied().zip(sizes).collect();
                // Each axis's scale, when its lengths are known.
                let ratio = |ax: usize, s: &D| Some(s.fixed()? as f64 / x[ax].fixed()? as f64);
                // One scale for every axis, when the policy keeps the aspect ratio.
                let uniform = match self.policy {
                    Policy::Stretch => None,
                    p => {
                        let ratios: Option<Vec<f64>> =
                            want.iter().map(|&(ax, s)| ratio(ax, s)).collect();
                        let pick = |a: f64, b: f64| match p {
                            Policy::NotLarger => a.min(b),
                            _ => a.max(b),
                        };
                        let s = ratios.map(|r| r.into_iter().reduce(pick).unwrap_or(1.0));
                        if s.is_some_and(|s| !(s.is_finite() && s > 0.0)) {
                            return Err(format!(
                                "cannot keep the aspect ratio of {} resized to sizes {}",
                                fmt_shape(x),
                                fmt_shape(sizes)
                            ));
                        }
                        Some(s)
                    }
                };
                for (ax, s) in want {
                    plan[ax] = Some(match uniform {
                        None => {
                            if let (Some(0), Some(n @ 1..)) = (x[ax].fixed(), s.fixed()) {
                                return Err(format!("cannot resize axis {ax} of size 0 to {n}"));
                            }
                            Axis {
                                out: s.clone(),
                                scale: ratio(ax, s),
                            }
                        }
                        Some(None) => Axis {
                            out: D::Any,
                            scale: None,
                        },
                        Some(Some(scale)) => {
                            let n = x[ax].fixed().expect("ratios are known when all are");
                            Axis {
                                out: D::Fixed(scaled(n, scale, 0.5, ax)?),
                                scale: Some(scale),
                            }
                        }
                    });
                }
            }
        }
        Ok(plan)
    }

    pub(super) fn infer(&self, x: &VType, target: Target<'_>) -> Result<VType, String> {
        float(x, "input X")?;
        let plan = self.plan(&x.shape, target)?;
        let shape = (plan.into_iter().zip(&x.shape))
            .map(|(p, d)| p.map_or_else(|| d.clone(), |p| p.out))
            .collect();
        Ok(VType::new(Elem::F32, capped(shape)?))
    }

    /// Where output position `o` of an axis resized from `n` to `m` by `scale` reads.
    fn source(&self, o: usize, n: usize, m: usize, scale: f64) -> f64 {
        let (o, nf, mf) = (o as f64, n as f64, m as f64);
        match self.transform {
            Transform::HalfPixel => (o + 0.5) / scale - 0.5,
            Transform::HalfPixelSymmetric => {
                let adjustment = mf / (scale * nf);
                let offset = nf / 2.0 * (1.0 - adjustment);
                offset + (o + 0.5) / scale - 0.5
            }
            Transform::PytorchHalfPixel if m > 1 => (o + 0.5) / scale - 0.5,
            Transform::PytorchHalfPixel => 0.0,
            Transform::AlignCorners if m > 1 => o * (nf - 1.0) / (mf - 1.0),
            Transform::AlignCorners => 0.0,
            Transform::Asymmetric => o / scale,
        }
    }

    /// Runs on `x` with the target inference accepted, into shape `out`.
    pub(super) fn run(&self, x: &Tensor, target: Target<'_>, out: &[usize]) -> Tensor {
        let total: usize = out.iter().product();
        if total == 0 || out.is_empty() {
            return Tensor {
                shape: out.to_vec(),
                data: if total == 0 {
                    Vec::new()
                } else {
                    x.data.clone()
                },
            };
        }
        let dims: Vec<D> = x.shape.iter().map(|&d| D::Fixed(d as u64)).collect();
        let plan = self
            .plan(&dims, target)
            .expect("inference checked the target");
        // Each output length is at most `total`, so these tables are no larger than the output.
        let scale = |ax: usize| -> Option<f64> {
            let p = plan[ax].as_ref()?;
            Some(p.scale.expect("every length is known at run time"))
        };
        let data = match self.mode {
            Mode::Nearest(r) => {
                let maps: Vec<Option<Vec<usize>>> = (0..out.len())
                    .map(|ax| {
                        let (n, m) = (x.shape[ax], out[ax]);
                        let s = scale(ax)?;
                        let map: Vec<usize> = (0..m)
                            .map(|o| nearest(self.source(o, n, m, s), r, n))
                            .collect();
                        (n != m || map.iter().enumerate().any(|(i, &j)| i != j)).then_some(map)
                    })
                    .collect();
                resample_nearest(x, &maps, out)
            }
            Mode::Linear => {
                let taps: Vec<Option<Vec<Tap>>> = (0..out.len())
                    .map(|ax| {
                        let (n, m) = (x.shape[ax], out[ax]);
                        let s = scale(ax)?;
                        let taps: Vec<Tap> = (0..m)
                            .map(|o| Tap::at(self.source(o, n, m, s), n))
                            .collect();
                        let same = n == m
                            && (taps.iter().enumerate()).all(|(i, t)| t.i0 == i && t.w1 == 0.0);
                        (!same).then_some(taps)
                    })
                    .collect();
                resample_linear(x, &taps, out)
            }
        };
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

/// `floor(n * scale + half)` as a length (`half` 0 rounds down, as ONNX sizes an output from
/// scales; 0.5 rounds halves up, as its `round_int`), refused above [`MAX_ELEMENTS`].
fn scaled(n: u64, scale: f64, half: f64, ax: usize) -> Result<u64, String> {
    let v = (n as f64 * scale + half).floor();
    if v > MAX_ELEMENTS as f64 {
        return Err(format!(
            "resizing axis {ax} of size {n} by {scale} gives more than {MAX_ELEMENTS} elements"
        ));
    }
    Ok(v as u64)
}

/// The input position of `n` nearest source coordinate `x`, rounded as `r` says, at the edge
/// when `x` lies outside.
fn nearest(x: f64, r: Rounding, n: usize) -> usize {
    let f = x.floor();
    let frac = x - f;
    let v = match r {
        Rounding::Floor => f,
        Rounding::Ceil => x.ceil(),
        Rounding::PreferFloor if frac <= 0.5 => f,
        Rounding::PreferCeil if frac < 0.5 => f,
        Rounding::PreferFloor | Rounding::PreferCeil => f + 1.0,
    };
    v.clamp(0.0, (n - 1) as f64) as usize
}

/// The two input positions around a source coordinate, and the weight of the second.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

impl Tap {
    /// Around source coordinate `x` on an axis of length `n`; outside, the edge (which is what
    /// ONNX's edge padding of the input gives).
    fn at(x: f64, n: usize) -> Tap {
        let x = x.clamp(0.0, (n - 1) as f64);
        let i0 = x.floor() as usize;
        let w1 = (x - i0 as f64) as f32;
        Tap {
            i0,
            i1: (i0 + 1).min(n - 1),
            w0: 1.0 - w1,
            w1,
        }
    }
}

fn resample_nearest(x: &Tensor, maps: &[Option<Vec<usize>>], out: &[usize]) -> Vec<f32> {
    let rank = out.len();
    let st = strides(&x.shape);
    let (n, m) = (x.shape[rank - 1], out[rank - 1]);
    let last = maps[rank - 1].as_deref();
    // Upsampling by a whole factor `k` repeats each input element `k` times.
    let repeat = last.and_then(|map| {
        let k = m / n;
        (m == k * n && (map.iter().enumerate()).all(|(j, &i)| i == j / k)).then_some(k)
    });
    // Where output row `r` starts reading in the input.
    let source = |mut r: usize| -> usize {
        let mut off = 0;
        for ax in (0..rank - 1).rev() {
            let i = r % out[ax];
            r /= out[ax];
            off += maps[ax].as_ref().map_or(i, |map| map[i]) * st[ax];
        }
        off
    };
    by_rows(out, |first, block| {
        let mut prev = None;
        for j in 0..block.len() / m {
            let off = source(first + j);
            let (done, rest) = block.split_at_mut(j * m);
            let dst = &mut rest[..m];
            if prev == Some(off) {
                // The row before reads the same input row: it is this row already.
                dst.copy_from_slice(&done[(j - 1) * m..]);
                continue;
            }
            prev = Some(off);
            let src = &x.data[off..off + n];
            match (last, repeat) {
                (None, _) => dst.copy_from_slice(src),
                (Some(_), Some(2)) => {
                    // The common doubling, in a form the compiler vectorizes.
                    for (d, &v) in dst.chunks_exact_mut(2).zip(src) {
                        d.copy_from_slice(&[v, v]);
                    }
                }
                (Some(_), Some(k)) => {
                    for (d, &v) in dst.chunks_exact_mut(k).zip(src) {
                        d.fill(v);
                    }
                }
                (Some(map), None) => {
                    for (d, &i) in dst.iter_mut().zip(map) {
                        *d = src[i];
                    }
                }
            }
        }
    })
}

fn resample_linear(x: &Tensor, taps: &[Option<Vec<Tap>>], out: &[usize]) -> Vec<f32> {
    let rank = out.len();
    let st = strides(&x.shape);
    let (n, m) = (x.shape[rank - 1], out[rank - 1]);
    let last = taps[rank - 1].as_deref();
    by_rows(out, |first, block| {
        // The input rows an output row blends, with their weights: one per combination of the
        // two taps of each resized axis (a tap of weight 0 is left out).
        let mut rows: Vec<(usize, f32)> = Vec::new();
        let mut buf = vec![0f32; n];
        for (j, dst) in block.chunks_exact_mut(m).enumerate() {
            rows.clear();
            rows.push((0, 1.0));
            let mut r = first + j;
            for ax in (0..rank - 1).rev() {
                let i = r % out[ax];
                r /= out[ax];
                match &taps[ax] {
                    None => rows.iter_mut().for_each(|(o, _)| *o += i * st[ax]),
                    Some(t) => {
                        let t = t[i];
                        for k in 0..rows.len() {
                            let (o, w) = rows[k];
                            if t.w1 != 0.0 {
                                rows.push((o + t.i1 * st[ax], w * t.w1));
                            }
                            rows[k] = (o + t.i0 * st[ax], w * t.w0);
                        }
                    }
                }
            }
            let src: &[f32] = match rows.as_slice() {
                [(off, _)] => &x.data[*off..*off + n],
                _ => {
                    buf.fill(0.0);
                    for &(off, w) in &rows {
                        for (b, &v) in buf.iter_mut().zip(&x.data[off..off + n]) {
                            *b += w * v;
                        }
                    }
                    &buf
                }
            };
            match last {
                None => dst.copy_from_slice(src),
                Some(t) => {
                    for (d, t) in dst.iter_mut().zip(t) {
                        *d = src[t.i0] * t.w0 + src[t.i1] * t.w1;
                    }
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::super::layout::fixture::{self, close, f32s, i64s};
    use super::super::layout::shape_param;
    use super::*;
    use crate::ops::shape::K;

    fn parse(attrs: &[(&str, crate::model::Attr)]) -> Result<Resize, String> {
        let node = crate::model::Node {
            op: "Resize".into(),
            name: "r".into(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let mut a = Attrs::new(&node);
        let r = Resize::parse(&mut a)?;
        a.finish()?;
        Ok(r)
    }

    fn text(s: &str) -> crate::model::Attr {
        crate::model::Attr::Text(s.into())
    }

    fn fixed(shape: &[u64]) -> VType {
        VType::new(Elem::F32, shape.iter().map(|&d| D::Fixed(d)).collect())
    }

    #[test]
    fn matches_the_reference_cases() {
        for case in fixture::cases("Resize") {
            let mut a = Attrs::new(&case.node);
            let r = Resize::parse(&mut a).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            a.finish().unwrap();
            let x = f32s(case.inputs[0].as_ref().expect("X"));
            let scales = case.inputs[2].as_ref().map(|t| f32s(t).data);
            let sizes = case.inputs[3].as_ref().map(|t| {
                let k: Vec<K> = i64s(t).data.into_iter().map(K::Int).collect();
                shape_param(&k, "sizes").unwrap()
            });
            let target = Target::new(scales.as_deref(), sizes.as_deref()).unwrap();
            let want = f32s(&case.outputs[0]);
            let t = r.infer(
                &fixed(&x.shape.iter().map(|&d| d as u64).collect::<Vec<_>>()),
                target,
            );
            let shape = crate::ops::shape::concrete(&t.unwrap().shape).unwrap();
            assert_eq!(shape, want.shape, "{}: inferred shape", case.name);
            close(&case.name, &r.run(&x, target, &shape), &want);
        }
    }

    #[test]
    fn refuses_what_it_does_not_implement() {
        let cases = [
            (
                vec![("mode", text("cubic"))],
                "attribute \"mode\" = \"cubic\" is not supported (nearest or linear)",
            ),
            (
                vec![("coordinate_transformation_mode", text("tf_crop_and_resize"))],
                "attribute \"coordinate_transformation_mode\" = \"tf_crop_and_resize\" is not supported (half_pixel, half_pixel_symmetric, pytorch_half_pixel, align_corners or asymmetric)",
            ),
            (
                vec![("antialias", crate::model::Attr::Int(1))],
                "attribute \"antialias\" = 1 is not supported (only 0)",
            ),
            (
                vec![("nearest_mode", text("round"))],
                "attribute \"nearest_mode\" = \"round\" is not supported (round_prefer_floor, round_prefer_ceil, floor or ceil)",
            ),
            (
                vec![("keep_aspect_ratio_policy", text("fit"))],
                "attribute \"keep_aspect_ratio_policy\" = \"fit\" is not supported (stretch, not_larger or not_smaller)",
            ),
            (
                vec![("roi", crate::model::Attr::Ints(vec![0]))],
                "unknown attribute \"roi\" for Resize",
            ),
        ];
        for (attrs, want) in cases {
            assert_eq!(parse(&attrs).unwrap_err(), want);
        }
    }

    #[test]
    fn refuses_bad_targets_and_sizes() {
        let r = parse(&[]).unwrap();
        let x = fixed(&[1, 2, 4, 4]);
        assert_eq!(
            Target::new(Some(&[1.0]), Some(&[D::Fixed(1)])).unwrap_err(),
            "give scales or sizes, not both"
        );
        assert_eq!(
            Target::new(Some(&[]), None).unwrap_err(),
            "give scales or sizes (neither is given)"
        );
        // An empty scales beside sizes is how exporters omit it.
        let two = [D::Fixed(2)];
        assert_eq!(Target::new(Some(&[]), Some(&two)), Ok(Target::Sizes(&two)));
        let err = |t: Target<'_>| r.infer(&x, t).unwrap_err();
        assert_eq!(
            err(Target::Scales(&[1.0, 2.0])),
            "scales has 2 values for 4 axes of the input [1, 2, 4, 4]"
        );
        assert_eq!(
            err(Target::Scales(&[1.0, 1.0, 0.0, 2.0])),
            "scale 0 for axis 2 must be positive and finite"
        );
        assert_eq!(
            err(Target::Scales(&[1.0, 1.0, f32::NAN, 2.0])),
            "scale NaN for axis 2 must be positive and finite"
        );
        assert_eq!(
            shape_param(&[K::Int(1), K::Int(-1)], "sizes").unwrap_err(),
            "sizes holds -1; each must be in 0..=1099511627776"
        );
        assert_eq!(
            err(Target::Scales(&[1.0, 1.0, 1e30, 1.0])),
            "resizing axis 2 of size 4 by 1000000015047466200000000000000 gives more than 1099511627776 elements"
        );
        assert_eq!(
            err(Target::Scales(&[1.0, 1.0, 1e6, 1e6])),
            "the output [1, 2, 4000000, 4000000] would have more than 1099511627776 elements"
        );
        assert_eq!(
            r.infer(&fixed(&[1, 0]), Target::Sizes(&[D::Fixed(1), D::Fixed(3)]))
                .unwrap_err(),
            "cannot resize axis 1 of size 0 to 3"
        );
        let ints = VType::new(Elem::I64, x.shape.clone());
        assert_eq!(
            r.infer(&ints, Target::Scales(&[1.0; 4])).unwrap_err(),
            "input X must be F32, not I64"
        );
        let axes = parse(&[("axes", crate::model::Attr::Ints(vec![2, -2]))]).unwrap();
        assert_eq!(
            axes.infer(&x, Target::Scales(&[2.0, 2.0])).unwrap_err(),
            "axes [2, -2] names axis 2 twice"
        );
    }

    #[test]
    fn symbols_survive_where_the_target_allows() {
        let r = parse(&[]).unwrap();
        let x = VType::new(
            Elem::F32,
            vec![
                D::Sym("n".into()),
                D::Fixed(3),
                D::Sym("h".into()),
                D::Fixed(5),
            ],
        );
        let t = r.infer(&x, Target::Scales(&[1.0, 1.0, 2.0, 2.0])).unwrap();
        assert_eq!(
            t.shape,
            vec![D::Sym("n".into()), D::Fixed(3), D::Any, D::Fixed(10)]
        );
        // Sizes a graph computes from its input's shape: [batch, c, 2 * 4, 8].
        let sizes = [D::Sym("n".into()), D::Fixed(3), D::Fixed(8), D::Fixed(8)];
        let t = r.infer(&x, Target::Sizes(&sizes)).unwrap();
        assert_eq!(t.shape, sizes);
        let any = [D::Sym("n".into()), D::Fixed(3), D::Any, D::Fixed(8)];
        assert_eq!(r.infer(&x, Target::Sizes(&any)).unwrap().shape, any);
        let keep = parse(&[
            ("keep_aspect_ratio_policy", text("not_larger")),
            ("axes", crate::model::Attr::Ints(vec![2, 3])),
        ])
        .unwrap();
        let t = keep
            .infer(&x, Target::Sizes(&[D::Fixed(8), D::Fixed(8)]))
            .unwrap();
        assert_eq!(t.shape[2..], [D::Any, D::Any]);
    }

    #[test]
    fn nearest_rounding_and_the_edges() {
        use Rounding::*;
        assert_eq!(nearest(1.5, PreferFloor, 4), 1);
        assert_eq!(nearest(1.5, PreferCeil, 4), 2);
        assert_eq!(nearest(1.2, Ceil, 4), 2);
        assert_eq!(nearest(1.8, Floor, 4), 1);
        assert_eq!(nearest(-0.5, PreferCeil, 4), 0);
        assert_eq!(nearest(9.0, PreferFloor, 4), 3);
    }

    #[test]
    fn a_large_upsampling_is_split_and_matches_the_definition() {
        // Large enough to run on every core; nearest x2 and bilinear against a direct sum.
        let (h, w) = (64, 96);
        let x = Tensor {
            shape: vec![2, 3, h, w],
            data: (0..2 * 3 * h * w)
                .map(|i| ((i * 37) % 101) as f32 / 10.0)
                .collect(),
        };
        let out = [2, 3, 2 * h, 2 * w];
        let near = parse(&[
            ("coordinate_transformation_mode", text("asymmetric")),
            ("nearest_mode", text("floor")),
        ])
        .unwrap()
        .run(&x, Target::Scales(&[1.0, 1.0, 2.0, 2.0]), &out);
        let lin = parse(&[("mode", text("linear"))]).unwrap().run(
            &x,
            Target::Scales(&[1.0, 1.0, 2.0, 2.0]),
            &out,
        );
        let at = |p: usize, y: usize, c: usize| x.data[p * h * w + y * w + c];
        for p in 0..6 {
            for oy in 0..2 * h {
                for ox in 0..2 * w {
                    let o = p * 4 * h * w + oy * 2 * w + ox;
                    assert_eq!(near.data[o], at(p, oy / 2, ox / 2));
                    let sy = ((oy as f64 + 0.5) / 2.0 - 0.5).clamp(0.0, (h - 1) as f64);
                    let sx = ((ox as f64 + 0.5) / 2.0 - 0.5).clamp(0.0, (w - 1) as f64);
                    let (y0, x0) = (sy.floor() as usize, sx.floor() as usize);
                    let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                    let (fy, fx) = (sy - y0 as f64, sx - x0 as f64);
                    let v = (1.0 - fy)
                        * ((1.0 - fx) * at(p, y0, x0) as f64 + fx * at(p, y0, x1) as f64)
                        + fy * ((1.0 - fx) * at(p, y1, x0) as f64 + fx * at(p, y1, x1) as f64);
                    assert!((lin.data[o] as f64 - v).abs() < 1e-5, "{p} {oy} {ox}");
                }
            }
        }
    }
}
