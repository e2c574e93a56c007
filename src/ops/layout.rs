//! Data movement and selection that builds new values, for any element type: Pad, Tile, Expand,
//! ConstantOfShape, Range, Split and Where; and the size checks and the row-by-row walk the
//! op-set 3 vision ops share.
//!
//! Pad, Tile and Expand are one kernel ([`remap`]): every output element reads, along each
//! axis, an input position given by a table (or the padding value). Along the last axis the
//! table is cut into runs, copied, repeated or filled whole; an output row that reads the same
//! input row as the one before it is copied from it.

use super::elementwise::broadcast_strides;
use super::known;
use super::movement::{normalize_axes, strides};
use super::shape::{self, fmt_shape, VType, D, K, MAX_KNOWN};
use super::{chunks, spread, Attrs};
use crate::format::MAX_RANK;
use crate::memory::MAX_ELEMENTS;
use crate::tensor::{Elem, Tensor};

/// `shape`, if a value of that shape can be held: the product of its known dimensions,
/// computed without overflow, is at most [`MAX_ELEMENTS`] (symbols count as at least 1, so a
/// shape refused here is too large for every binding but an empty one).
pub(super) fn capped(shape: Vec<D>) -> Result<Vec<D>, String> {
    if shape.len() > MAX_RANK {
        return Err(format!(
            "the output would have {} dimensions, more than {MAX_RANK}",
            shape.len()
        ));
    }
    let known = (shape.iter().filter_map(D::fixed)).try_fold(1u64, u64::checked_mul);
    let empty = shape.contains(&D::Fixed(0));
    match known {
        Some(n) if n <= MAX_ELEMENTS => Ok(shape),
        _ if empty => Ok(shape),
        _ => Err(format!(
            "the output {} would have more than {MAX_ELEMENTS} elements",
            fmt_shape(&shape)
        )),
    }
}

/// A shape given as a parameter (Expand's and ConstantOfShape's `shape`, Resize's `sizes`),
/// from its content (`VType::known` before the run; the values, as `K::Int`, at run time):
/// numbers, and sizes that symbols stand for. `what` names it in messages.
pub(super) fn shape_param(k: &[K], what: &str) -> Result<Vec<D>, String> {
    k.iter()
        .map(|k| match k {
            K::Int(v) => u64::try_from(*v)
                .ok()
                .filter(|&n| n <= MAX_ELEMENTS)
                .map(D::Fixed)
                .ok_or_else(|| format!("{what} holds {v}; each must be in 0..={MAX_ELEMENTS}")),
            K::Sym(s) => Ok(D::Sym(s.clone())),
            K::Any => Ok(D::Any),
        })
        .collect()
}

/// Output rows (along the last axis) one task takes: about 16 K elements.
fn rows_per_task(row: usize) -> usize {
    ((1 << 14) / row.max(1)).max(1)
}

/// The output of shape `out` (rank 1 or more), filled by `f(first, block)` block by block:
/// `block` holds whole rows along the last axis, the first of them row `first`. Large outputs
/// are filled on every core.
pub(super) fn by_rows<T: Copy + Default + Send + Sync>(
    out: &[usize],
    f: impl Fn(usize, &mut [T]) + Sync + Send,
) -> Vec<T> {
    let total: usize = out.iter().product();
    let row = *out.last().expect("rank 1 or more");
    let per = rows_per_task(row);
    let mut data = vec![T::default(); total];
    chunks(&mut data, per * row, spread(total, 1 << 15), |t, block| {
        f(t * per, block)
    });
    data
}

/// A stretch of an output row along the last axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// Input elements `from..from + len`.
    Copy { from: usize, len: usize },
    /// Input element `from`, `len` times.
    Repeat { from: usize, len: usize },
    /// The padding value, `len` times.
    Fill { len: usize },
}

impl Run {
    fn len(self) -> usize {
        match self {
            Run::Copy { len, .. } | Run::Repeat { len, .. } | Run::Fill { len } => len,
        }
    }
}

/// The runs of a row whose element `o` reads input element `map[o]` (`None`: padding).
fn runs(map: &[Option<usize>]) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for &m in map {
        let next = match (out.last().copied(), m) {
            (Some(Run::Fill { len }), None) => Some(Run::Fill { len: len + 1 }),
            (Some(Run::Copy { from, len }), Some(i)) if i == from + len => {
                Some(Run::Copy { from, len: len + 1 })
            }
            (Some(Run::Copy { from, len: 1 }), Some(i)) if i == from => {
                Some(Run::Repeat { from, len: 2 })
            }
            (Some(Run::Repeat { from, len }), Some(i)) if i == from => {
                Some(Run::Repeat { from, len: len + 1 })
            }
            _ => None,
        };
        match next {
            Some(r) => *out.last_mut().expect("extends the last run") = r,
            None => out.push(match m {
                None => Run::Fill { len: 1 },
                Some(i) => Run::Copy { from: i, len: 1 },
            }),
        }
    }
    out
}

/// A value of shape `out` built from `src` (of shape `shape`, the same rank): its element at
/// `(o0, o1, ...)` is the input's at `(maps[0][o0], maps[1][o1], ...)`, or `fill` where a map
/// says `None`. Every map holds one entry per output position.
fn remap<T: Copy + Default + Send + Sync>(
    src: &[T],
    shape: &[usize],
    maps: &[Vec<Option<usize>>],
    fill: T,
    out: &[usize],
) -> Vec<T> {
    let total: usize = out.iter().product();
    if total == 0 {
        return Vec::new();
    }
    let Some(&m) = out.last() else {
        return src.to_vec();
    };
    let rank = out.len();
    let st = strides(shape);
    let runs = runs(&maps[rank - 1]);
    // Where output row `r` starts reading in the input; `None`: it is all padding.
    let source = |mut r: usize| -> Option<usize> {
        let mut off = 0;
        for ax in (0..rank - 1).rev() {
            let i = r % out[ax];
            r /= out[ax];
            off += maps[ax][i]? * st[ax];
        }
        Some(off)
    };
    by_rows(out, |first, block| {
        let mut prev: Option<Option<usize>> = None;
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
            let Some(off) = off else {
                dst.fill(fill);
                continue;
            };
            let mut at = 0;
            for &run in &runs {
                let d = &mut dst[at..at + run.len()];
                match run {
                    Run::Copy { from, len } => d.copy_from_slice(&src[off + from..][..len]),
                    Run::Repeat { from, .. } => d.fill(src[off + from]),
                    Run::Fill { .. } => d.fill(fill),
                }
                at += run.len();
            }
        }
    })
}

/// The content of `t` after an op that only moves elements (`f`, on the tensor of element
/// indices, into shape `out`): known when `t`'s is and the output is small.
fn moved(
    t: &VType,
    out: &[D],
    f: impl Fn(&Tensor<usize>, &[usize]) -> Vec<usize>,
) -> Option<Vec<K>> {
    let k = t.known.as_ref()?;
    let dims = |s: &[D]| -> Option<Vec<usize>> {
        s.iter().map(|d| usize::try_from(d.fixed()?).ok()).collect()
    };
    let (shape, out) = (dims(&t.shape)?, dims(out)?);
    let n = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d))?;
    if n > MAX_KNOWN {
        return None;
    }
    let idx = Tensor {
        shape,
        data: (0..k.len()).collect(),
    };
    f(&idx, &out)
        .into_iter()
        .map(|i| k.get(i).cloned())
        .collect()
}

/// A list parameter's values as sizes: each in 0..=[`MAX_ELEMENTS`].
fn sizes(v: &[i64], what: &str) -> Result<Vec<u64>, String> {
    v.iter()
        .map(|&x| {
            u64::try_from(x)
                .ok()
                .filter(|&n| n <= MAX_ELEMENTS)
                .ok_or_else(|| {
                    format!("{what} {v:?} holds {x}; each must be in 0..={MAX_ELEMENTS}")
                })
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Pad
// ---------------------------------------------------------------------------------------------

/// `Pad`'s `mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PadMode {
    /// The constant value (the default).
    Constant,
    /// The input mirrored about its first and last elements (which are not repeated).
    Reflect,
    /// The first and last elements repeated.
    Edge,
    /// The input repeated, as if its ends were joined.
    Wrap,
}

/// `Pad`. Its parameters are inputs: `pads` (starts for every axis padded, then ends; a
/// negative pad crops), `constant_value` and `axes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pad {
    pub mode: PadMode,
}

impl Pad {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Pad, String> {
        let mode = match a.text("mode")?.unwrap_or("constant") {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            other => {
                return Err(format!(
                "attribute \"mode\" = {other:?} is not supported (constant, reflect, edge or wrap)"
            ))
            }
        };
        Ok(Pad { mode })
    }

    /// Each axis's pads at its start and end, for a value of rank `rank`.
    fn per_axis(
        pads: &[i64],
        axes: Option<&[i64]>,
        rank: usize,
    ) -> Result<Vec<(i64, i64)>, String> {
        let axes = match axes {
            Some(a) => normalize_axes(a, rank, "axes")?,
            None => (0..rank).collect(),
        };
        if pads.len() != 2 * axes.len() {
            return Err(format!(
                "pads has {} values; {} axes need {}",
                pads.len(),
                axes.len(),
                2 * axes.len()
            ));
        }
        let mut out = vec![(0, 0); rank];
        for (i, &ax) in axes.iter().enumerate() {
            out[ax] = (pads[i], pads[i + axes.len()]);
        }
        Ok(out)
    }

    /// The output length of axis `ax` of length `n` padded by `(b, e)`, after the checks
    /// that make its map valid.
    fn length(&self, ax: usize, n: u64, (b, e): (i64, i64)) -> Result<u64, String> {
        let (n, b, e) = (n as i128, b as i128, e as i128);
        let out = n + b + e;
        // What is left of the input once the negative pads have cropped it.
        let kept = n - (-b).max(0) - (-e).max(0);
        if kept < 0 || out < 0 {
            return Err(format!(
                "axis {ax}: pads ({b}, {e}) crop more than its {n} elements"
            ));
        }
        if out > MAX_ELEMENTS as i128 {
            return Err(format!(
                "axis {ax}: pads ({b}, {e}) make it longer than {MAX_ELEMENTS}"
            ));
        }
        let most = b.max(e);
        match self.mode {
            PadMode::Constant => {}
            _ if most > 0 && kept == 0 => {
                let mode = match self.mode {
                    PadMode::Reflect => "reflect",
                    PadMode::Edge => "edge",
                    _ => "wrap",
                };
                return Err(format!(
                    "axis {ax}: {mode} padding needs at least one element, and none is left"
                ));
            }
            PadMode::Reflect if most > kept - 1 => {
                return Err(format!(
                    "axis {ax}: reflect padding of {most} needs more than {most} elements, and {kept} are left"
                ))
            }
            _ => {}
        }
        Ok(out as u64)
    }

    /// Which input element output position `o` of an axis of length `n` padded by `(b, e)`
    /// reads (`None`: the constant), for pads that [`Pad::length`] accepted.
    fn map(&self, n: usize, (b, e): (i64, i64), out: usize) -> Vec<Option<usize>> {
        let lo = (-b).max(0) as usize;
        let kept = (n as i64 - (-b).max(0) - (-e).max(0)) as usize;
        let start = b.max(0) as usize;
        (0..out)
            .map(|o| {
                let p = o as i64 - start as i64;
                let k = kept as i64;
                let at = match self.mode {
                    _ if (0..k).contains(&p) => p,
                    PadMode::Constant => return None,
                    PadMode::Edge => p.clamp(0, k - 1),
                    PadMode::Reflect if p < 0 => -p,
                    PadMode::Reflect => 2 * (k - 1) - p,
                    PadMode::Wrap => p.rem_euclid(k),
                };
                Some(lo + at as usize)
            })
            .collect()
    }

    /// The output type for input `x`, `pads` and `axes` (parameters), and the type of the
    /// `constant_value` input if given.
    pub(super) fn infer(
        &self,
        x: &VType,
        pads: &[i64],
        axes: Option<&[i64]>,
        value: Option<&VType>,
    ) -> Result<VType, String> {
        if let Some(v) = value {
            if v.elem != x.elem {
                return Err(format!(
                    "constant_value must be {} as the input, not {}",
                    x.elem.name(),
                    v.elem.name()
                ));
            }
            if v.rank() > 1 || shape::count(&v.shape).is_some_and(|c| c.coef != 1) {
                return Err(format!(
                    "constant_value must hold one value, not shape {}",
                    fmt_shape(&v.shape)
                ));
            }
        }
        let per = Self::per_axis(pads, axes, x.rank())?;
        let mut shape = Vec::with_capacity(x.rank());
        for (ax, (d, &p)) in x.shape.iter().zip(&per).enumerate() {
            shape.push(match d.fixed() {
                Some(n) => D::Fixed(self.length(ax, n, p)?),
                None if p.0.checked_add(p.1) == Some(0) => d.clone(),
                None => D::Any,
            });
        }
        Ok(VType::new(x.elem, capped(shape)?))
    }

    /// Runs on `x` with the parameters inference accepted, into shape `out`.
    pub(super) fn run<T: Copy + Default + Send + Sync>(
        &self,
        x: &Tensor<T>,
        pads: &[i64],
        axes: Option<&[i64]>,
        value: Option<&Tensor<T>>,
        out: &[usize],
    ) -> Tensor<T> {
        let fill = value
            .and_then(|v| v.data.first().copied())
            .unwrap_or_default();
        let data = if out.iter().product::<usize>() == 0 {
            Vec::new()
        } else {
            let per =
                Self::per_axis(pads, axes, x.shape.len()).expect("inference checked the pads");
            let maps: Vec<Vec<Option<usize>>> = (0..out.len())
                .map(|ax| self.map(x.shape[ax], per[ax], out[ax]))
                .collect();
            remap(&x.data, &x.shape, &maps, fill, out)
        };
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Tile and Expand
// ---------------------------------------------------------------------------------------------

/// `Tile` of `x` by `repeats` (a parameter: one count per axis).
pub(super) fn infer_tile(x: &VType, repeats: &[i64]) -> Result<VType, String> {
    if repeats.len() != x.rank() {
        return Err(format!(
            "repeats has {} values for the {} axes of the input {}",
            repeats.len(),
            x.rank(),
            fmt_shape(&x.shape)
        ));
    }
    let reps = sizes(repeats, "repeats")?;
    let mut shape = Vec::with_capacity(x.rank());
    for (d, &r) in x.shape.iter().zip(&reps) {
        shape.push(match (d.fixed(), r) {
            (_, 0) => D::Fixed(0),
            (_, 1) => d.clone(),
            (Some(n), r) => D::Fixed(n.checked_mul(r).ok_or_else(|| {
                format!("tiling {} by {repeats:?} overflows", fmt_shape(&x.shape))
            })?),
            (None, _) => D::Any,
        });
    }
    let shape = capped(shape)?;
    let known = moved(x, &shape, |t, out| tile(t, out).data);
    Ok(VType::new(x.elem, shape).with_known(known))
}

/// `Tile` of `x` into shape `out` (which inference derived from the repeats).
pub(super) fn tile<T: Copy + Default + Send + Sync>(x: &Tensor<T>, out: &[usize]) -> Tensor<T> {
    let data = if out.iter().product::<usize>() == 0 {
        Vec::new()
    } else {
        let maps: Vec<Vec<Option<usize>>> = (out.iter().zip(&x.shape))
            .map(|(&m, &n)| (0..m).map(|o| Some(o % n)).collect())
            .collect();
        remap(&x.data, &x.shape, &maps, T::default(), out)
    };
    Tensor {
        shape: out.to_vec(),
        data,
    }
}

/// `Expand` of `x` to `shape` (a parameter, whose dimensions may be symbols): the two
/// broadcast together, as NumPy does.
pub(super) fn infer_expand(x: &VType, target: &[D]) -> Result<VType, String> {
    if target.len() > MAX_RANK {
        return Err(format!(
            "shape has {} dimensions, more than {MAX_RANK}",
            target.len()
        ));
    }
    let shape = shape::broadcast(&x.shape, target).map_err(|e| format!("cannot expand: {e}"))?;
    let shape = capped(shape)?;
    let known = moved(x, &shape, |t, out| expand(t, out).data);
    Ok(VType::new(x.elem, shape).with_known(known))
}

/// `Expand` of `x` into shape `out` (which inference derived).
pub(super) fn expand<T: Copy + Default + Send + Sync>(x: &Tensor<T>, out: &[usize]) -> Tensor<T> {
    let data = if out.iter().product::<usize>() == 0 {
        Vec::new()
    } else {
        // The input's shape aligned at the last axis, 1 where it has no axis.
        let mut shape = vec![1; out.len() - x.shape.len()];
        shape.extend_from_slice(&x.shape);
        let maps: Vec<Vec<Option<usize>>> = (out.iter().zip(&shape))
            .map(|(&m, &n)| (0..m).map(|o| Some(if n == 1 { 0 } else { o })).collect())
            .collect();
        remap(&x.data, &shape, &maps, T::default(), out)
    };
    Tensor {
        shape: out.to_vec(),
        data,
    }
}

// ---------------------------------------------------------------------------------------------
// ConstantOfShape and Range
// ---------------------------------------------------------------------------------------------

/// One value of any element type.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar {
    F32(f32),
    I64(i64),
    Bool(bool),
}

impl Scalar {
    pub fn elem(self) -> Elem {
        match self {
            Scalar::F32(_) => Elem::F32,
            Scalar::I64(_) => Elem::I64,
            Scalar::Bool(_) => Elem::Bool,
        }
    }
}

/// `ConstantOfShape`'s value. ONNX gives it as a one-element tensor attribute `value`; the
/// nnsign schema as one of `value_float`, `value_int` or `value_bool` (0 or 1), as for
/// `Constant`. Without one, the value is float 0.
pub(super) fn parse_constant_of_shape(a: &mut Attrs<'_>) -> Result<Scalar, String> {
    // Absent is NaN here, which `float` never returns for a given attribute.
    let f = Some(a.float("value_float", f32::NAN)?).filter(|v| !v.is_nan());
    let i = a.int_opt("value_int")?;
    let b = match a.int_opt("value_bool")? {
        None => None,
        Some(0) => Some(false),
        Some(1) => Some(true),
        Some(v) => return Err(format!("attribute \"value_bool\" must be 0 or 1, not {v}")),
    };
    match (f, i, b) {
        (None, None, None) => Ok(Scalar::F32(0.0)),
        (Some(v), None, None) => Ok(Scalar::F32(v)),
        (None, Some(v), None) => Ok(Scalar::I64(v)),
        (None, None, Some(v)) => Ok(Scalar::Bool(v)),
        _ => Err("give at most one of value_float, value_int and value_bool".into()),
    }
}

/// `ConstantOfShape` of `value` and `shape` (a parameter, whose dimensions may be symbols).
pub(super) fn infer_constant_of_shape(value: Scalar, shape: &[D]) -> Result<VType, String> {
    if shape.len() > MAX_RANK {
        return Err(format!(
            "shape has {} dimensions, more than {MAX_RANK}",
            shape.len()
        ));
    }
    let shape = capped(shape.to_vec())?;
    let n = shape::count(&shape)
        .filter(|c| c.syms.is_empty())
        .map(|c| c.coef);
    let one = match value {
        Scalar::I64(v) => Some(K::Int(v)),
        Scalar::Bool(v) => Some(K::Int(v as i64)),
        Scalar::F32(_) => None,
    };
    let known = match (one, n) {
        (Some(k), Some(n)) if n <= MAX_KNOWN as u64 => Some(vec![k; n as usize]),
        _ => None,
    };
    Ok(VType::new(value.elem(), shape).with_known(known))
}

/// `ConstantOfShape`: `value` in every element of shape `out`.
pub(super) fn constant_of_shape<T: Copy>(value: T, out: &[usize]) -> Tensor<T> {
    Tensor {
        shape: out.to_vec(),
        data: vec![value; out.iter().product()],
    }
}

/// `Range`'s start, limit and delta (parameters, all of one element type): floats, or
/// integers that may be sizes known only once symbols are bound.
#[derive(Debug, Clone, PartialEq)]
pub enum RangeArgs {
    /// Not built by the schema yet: a float range's length depends on float values, which
    /// inference does not follow before the run (only integers), so such a graph is refused.
    #[cfg_attr(not(test), allow(dead_code))]
    F32 {
        start: f32,
        limit: f32,
        delta: f32,
    },
    I64 {
        start: K,
        limit: K,
        delta: K,
    },
}

/// `Range`'s attribute `stash_type` only changes float16 and bfloat16 ranges, which nnsign
/// computes in float32: it is read and has no effect.
pub(super) fn parse_range(a: &mut Attrs<'_>) -> Result<(), String> {
    a.int("stash_type", 1)?;
    Ok(())
}

/// `Range`: `max(ceil((limit - start) / delta), 0)` elements, `start + i * delta`.
pub(super) fn infer_range(args: &RangeArgs) -> Result<VType, String> {
    let too_many = |n: f64| format!("the range would have {n} elements, more than {MAX_ELEMENTS}");
    match args {
        RangeArgs::F32 {
            start,
            limit,
            delta,
        } => {
            if ![start, limit, delta].iter().all(|v| v.is_finite()) {
                return Err(format!(
                    "start {start}, limit {limit} and delta {delta} must be finite"
                ));
            }
            if *delta == 0.0 {
                return Err("delta must not be 0".into());
            }
            let n = ((*limit as f64 - *start as f64) / *delta as f64)
                .ceil()
                .max(0.0);
            if n > MAX_ELEMENTS as f64 {
                return Err(too_many(n));
            }
            Ok(VType::new(Elem::F32, vec![D::Fixed(n as u64)]))
        }
        RangeArgs::I64 {
            start,
            limit,
            delta,
        } => {
            if *delta == K::Int(0) {
                return Err("delta must not be 0".into());
            }
            let (K::Int(s), K::Int(l), K::Int(d)) = (start, limit, delta) else {
                // `Range(0, n, 1)` of a size `n` is `n` long: positions in a sequence.
                let len = match (start, limit, delta) {
                    (K::Int(0), K::Sym(n), K::Int(1)) => D::Sym(n.clone()),
                    _ => D::Any,
                };
                return Ok(VType::new(Elem::I64, vec![len]));
            };
            let (s, l, d) = (*s as i128, *l as i128, *d as i128);
            let n = if (l - s).signum() == d.signum() {
                ((l - s).abs() + d.abs() - 1) / d.abs()
            } else {
                0
            };
            if n > MAX_ELEMENTS as i128 {
                return Err(too_many(n as f64));
            }
            let t = VType::new(Elem::I64, vec![D::Fixed(n as u64)]);
            let known = (n <= MAX_KNOWN as i128)
                .then(|| (0..n).map(|i| K::Int((s + i * d) as i64)).collect());
            Ok(t.with_known(known))
        }
    }
}

/// `Range` of floats, `out[0]` long (as inference found).
pub(super) fn range_f32(start: f32, delta: f32, out: &[usize]) -> Tensor<f32> {
    let (s, d) = (start as f64, delta as f64);
    Tensor {
        shape: out.to_vec(),
        data: (0..out[0]).map(|i| (s + i as f64 * d) as f32).collect(),
    }
}

/// `Range` of integers, `out[0]` long (as inference found): every element lies between start
/// and limit, so none overflows.
pub(super) fn range_i64(start: i64, delta: i64, out: &[usize]) -> Tensor<i64> {
    Tensor {
        shape: out.to_vec(),
        data: (0..out[0] as i64).map(|i| start + i * delta).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Split
// ---------------------------------------------------------------------------------------------

/// `Split`'s attributes. Its sizes come from the `split` input (a parameter) or, as equal
/// parts, from `num_outputs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    pub axis: i64,
    pub num_outputs: Option<u64>,
}

impl Split {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Split, String> {
        let num_outputs = match a.int_opt("num_outputs")? {
            None => None,
            Some(n) if n >= 1 => Some(n as u64),
            Some(n) => {
                return Err(format!(
                    "attribute \"num_outputs\" = {n} must be at least 1"
                ))
            }
        };
        Ok(Split {
            axis: a.int("axis", 0)?,
            num_outputs,
        })
    }

    /// The types of the node's `outputs` outputs, for input `x` and the `split` input.
    pub(super) fn infer(
        &self,
        x: &VType,
        split: Option<&[i64]>,
        outputs: usize,
    ) -> Result<Vec<VType>, String> {
        let ax = shape::axis(self.axis, x.rank(), "axis")?;
        let d = &x.shape[ax];
        let parts: Vec<D> = match (split, self.num_outputs) {
            (Some(_), Some(_)) => {
                return Err("give the input split or attribute num_outputs, not both".into())
            }
            (None, None) => return Err("give the input split or attribute num_outputs".into()),
            (Some(s), None) => {
                if s.len() != outputs {
                    return Err(format!("split has {} sizes for {outputs} outputs", s.len()));
                }
                let s = sizes(s, "split")?;
                let sum = s.iter().sum::<u64>();
                if d.fixed().is_some_and(|n| n != sum) {
                    return Err(format!(
                        "split {s:?} adds up to {sum}, not the {d} of axis {ax}"
                    ));
                }
                s.into_iter().map(D::Fixed).collect()
            }
            (None, Some(n)) => {
                if n != outputs as u64 {
                    return Err(format!(
                        "attribute \"num_outputs\" = {n}, and the node has {outputs} outputs"
                    ));
                }
                match d.fixed() {
                    _ if n == 1 => vec![d.clone()],
                    None => vec![D::Any; outputs],
                    Some(len) => {
                        // Parts of ceil(len / n), the last one what is left.
                        let part = len.div_ceil(n);
                        let last = len.checked_sub(part * (n - 1)).ok_or_else(|| {
                            format!(
                                "axis {ax} of {len} does not split into {n} parts of {part} (the last would be negative)"
                            )
                        })?;
                        let mut parts = vec![D::Fixed(part); outputs - 1];
                        parts.push(D::Fixed(last));
                        parts
                    }
                }
            }
        };
        let mut first = 0u64;
        Ok(parts
            .into_iter()
            .map(|p| {
                let mut shape = x.shape.clone();
                let n = p.fixed();
                shape[ax] = p;
                let known = match (n, x.rank()) {
                    (Some(n), 1) => known::slice(x, first as i64, 1, n),
                    _ => None,
                };
                first += n.unwrap_or(0);
                VType::new(x.elem, shape).with_known(known)
            })
            .collect())
    }

    /// The outputs, of shapes `outs` (what inference found), of splitting `x`.
    pub(super) fn run<T: Copy>(&self, x: &Tensor<T>, outs: &[&[usize]]) -> Vec<Tensor<T>> {
        let ax = shape::axis(self.axis, x.shape.len(), "axis").expect("inference checked the axis");
        let outer: usize = x.shape[..ax].iter().product();
        let inner: usize = x.shape[ax + 1..].iter().product();
        let d = x.shape[ax];
        let mut start = 0;
        outs.iter()
            .map(|&shape| {
                let len = shape[ax];
                let mut data = Vec::with_capacity(outer * len * inner);
                for o in 0..outer {
                    data.extend_from_slice(&x.data[(o * d + start) * inner..][..len * inner]);
                }
                start += len;
                Tensor {
                    shape: shape.to_vec(),
                    data,
                }
            })
            .collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Where
// ---------------------------------------------------------------------------------------------

/// `Where`: the three inputs broadcast together; `x` and `y` of one element type.
pub(super) fn infer_where(cond: &VType, x: &VType, y: &VType) -> Result<VType, String> {
    if cond.elem != Elem::Bool {
        return Err(format!("condition must be BOOL, not {}", cond.elem.name()));
    }
    if x.elem != y.elem {
        return Err(format!(
            "X and Y must have one element type, not {} and {}",
            x.elem.name(),
            y.elem.name()
        ));
    }
    let shape = shape::broadcast(&shape::broadcast(&cond.shape, &x.shape)?, &y.shape)?;
    Ok(VType::new(x.elem, capped(shape)?).with_known(known::select(cond, x, y)))
}

/// `Where`: `x` where `cond`, else `y`, into the broadcast shape `out`.
pub(super) fn select<T: Copy + Default + Send + Sync>(
    cond: &Tensor<bool>,
    x: &Tensor<T>,
    y: &Tensor<T>,
    out: &[usize],
) -> Tensor<T> {
    let total: usize = out.iter().product();
    let pick = |c: bool, a: T, b: T| if c { a } else { b };
    let data = if total == 0 {
        Vec::new()
    } else if out.is_empty() {
        vec![pick(cond.data[0], x.data[0], y.data[0])]
    } else if cond.shape == out && x.shape == out && y.shape == out {
        let mut data = vec![T::default(); total];
        let n = 1 << 14;
        chunks(&mut data, n, spread(total, 1 << 15), |i, d| {
            let at = i * n;
            let (c, a, b) = (&cond.data[at..], &x.data[at..], &y.data[at..]);
            for (k, v) in d.iter_mut().enumerate() {
                *v = pick(c[k], a[k], b[k]);
            }
        });
        data
    } else {
        let rank = out.len();
        let st = [&cond.shape, &x.shape, &y.shape].map(|s| broadcast_strides(s, rank));
        let m = out[rank - 1];
        let [ic, ia, ib] = st.each_ref().map(|s| s[rank - 1]);
        by_rows(out, |first, block| {
            for (j, dst) in block.chunks_exact_mut(m).enumerate() {
                let (mut r, mut off) = (first + j, [0usize; 3]);
                for ax in (0..rank - 1).rev() {
                    let i = r % out[ax];
                    r /= out[ax];
                    for (o, s) in off.iter_mut().zip(&st) {
                        *o += i * s[ax];
                    }
                }
                let [oc, oa, ob] = off;
                for (k, v) in dst.iter_mut().enumerate() {
                    *v = pick(
                        cond.data[oc + k * ic],
                        x.data[oa + k * ia],
                        y.data[ob + k * ib],
                    );
                }
            }
        })
    };
    Tensor {
        shape: out.to_vec(),
        data,
    }
}

#[cfg(test)]
pub(super) mod fixture {
    //! The reference cases of `tests/fixtures/ops3/vision.json`, written by
    //! `scripts/make_vision_reference.py`.

    use std::collections::BTreeMap;

    use serde_json::Value as Json;

    use crate::model::{Attr, Node};
    use crate::tensor::Tensor;

    /// One case: a node with its attributes, its inputs (`None`: omitted) and the outputs
    /// expected.
    pub struct Case {
        pub name: String,
        pub node: Node,
        pub inputs: Vec<Option<Json>>,
        pub outputs: Vec<Json>,
    }

    /// Every case of op `op`.
    pub fn cases(op: &str) -> Vec<Case> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ops3/vision.json"
        );
        let text = std::fs::read_to_string(path).expect("the fixture is in the repository");
        let all: Json = serde_json::from_str(&text).expect("the fixture is JSON");
        let cases: Vec<Case> = (all["cases"].as_array().expect("a list of cases").iter())
            .filter(|c| c["op"] == op)
            .map(|c| {
                let attrs: BTreeMap<String, Attr> =
                    serde_json::from_value(c["attrs"].clone()).expect("attributes");
                let inputs: Vec<Option<Json>> = (c["inputs"].as_array().expect("inputs").iter())
                    .map(|t| (!t.is_null()).then(|| t.clone()))
                    .collect();
                let outputs = c["outputs"].as_array().expect("outputs").clone();
                let name = c["name"].as_str().expect("a name").to_owned();
                let node = Node {
                    op: op.into(),
                    name: name.clone(),
                    inputs: (0..inputs.len()).map(|i| format!("in{i}")).collect(),
                    outputs: (0..outputs.len()).map(|i| format!("out{i}")).collect(),
                    attrs,
                };
                Case {
                    name,
                    node,
                    inputs,
                    outputs,
                }
            })
            .collect();
        assert!(!cases.is_empty(), "no cases of {op}");
        cases
    }

    fn shape(t: &Json) -> Vec<usize> {
        (t["shape"].as_array().expect("a shape").iter())
            .map(|d| d.as_u64().expect("a size") as usize)
            .collect()
    }

    fn data<T>(t: &Json, f: impl Fn(&Json) -> Option<T>) -> Vec<T> {
        (t["data"].as_array().expect("data").iter())
            .map(|v| f(v).expect("an element of the right type"))
            .collect()
    }

    pub fn dtype(t: &Json) -> &str {
        t["dtype"].as_str().expect("a dtype")
    }

    pub fn f32s(t: &Json) -> Tensor<f32> {
        assert_eq!(dtype(t), "f32");
        Tensor {
            shape: shape(t),
            data: data(t, |v| v.as_f64().map(|x| x as f32)),
        }
    }

    pub fn i64s(t: &Json) -> Tensor<i64> {
        assert_eq!(dtype(t), "i64");
        Tensor {
            shape: shape(t),
            data: data(t, Json::as_i64),
        }
    }

    pub fn bools(t: &Json) -> Tensor<bool> {
        assert_eq!(dtype(t), "bool");
        Tensor {
            shape: shape(t),
            data: data(t, Json::as_bool),
        }
    }

    /// Checks `got` against `want` within 1e-5 (absolute, or relative for large values).
    pub fn close(name: &str, got: &Tensor<f32>, want: &Tensor<f32>) {
        assert_eq!(got.shape, want.shape, "{name}: shape");
        assert_eq!(got.data.len(), want.data.len(), "{name}: element count");
        for (i, (g, w)) in got.data.iter().zip(&want.data).enumerate() {
            let tol = 1e-5 * w.abs().max(1.0);
            assert!(
                (g - w).abs() <= tol,
                "{name}: element {i} is {g}, expected {w}"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fixture::{self, bools, close, dtype, f32s, i64s, Case};
    use super::*;
    use crate::model::Attr;
    use serde_json::Value as Json;

    fn fixed(elem: Elem, shape: &[usize]) -> VType {
        VType::new(elem, shape.iter().map(|&d| D::Fixed(d as u64)).collect())
    }

    fn vt(t: &Json) -> VType {
        let elem = match dtype(t) {
            "f32" => Elem::F32,
            "i64" => Elem::I64,
            _ => Elem::Bool,
        };
        let shape: Vec<usize> = (t["shape"].as_array().unwrap().iter())
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        fixed(elem, &shape)
    }

    fn attrs(case: &Case) -> Attrs<'_> {
        Attrs::new(&case.node)
    }

    fn input(case: &Case, i: usize) -> &Json {
        case.inputs[i].as_ref().expect("given")
    }

    fn param(case: &Case, i: usize) -> Option<Vec<i64>> {
        case.inputs.get(i).cloned().flatten().map(|t| i64s(&t).data)
    }

    /// Runs `$f` on the tensors of inputs `$i...` of `$case` for their element type, and
    /// checks its output against output 0.
    macro_rules! check {
        ($case:expr, $dtype:expr, |$($t:ident),*| $f:expr) => {
            match $dtype {
                "f32" => {
                    $(let $t = |j: &Json| f32s(j);)*
                    close(&$case.name, &$f, &f32s(&$case.outputs[0]))
                }
                "i64" => {
                    $(let $t = |j: &Json| i64s(j);)*
                    assert_eq!($f, i64s(&$case.outputs[0]), "{}", $case.name)
                }
                _ => {
                    $(let $t = |j: &Json| bools(j);)*
                    assert_eq!($f, bools(&$case.outputs[0]), "{}", $case.name)
                }
            }
        };
    }

    fn shape_of(t: &VType) -> Vec<usize> {
        shape::concrete(&t.shape).unwrap()
    }

    #[test]
    fn pad_matches_the_reference_cases() {
        for case in fixture::cases("Pad") {
            let mut a = attrs(&case);
            let p = Pad::parse(&mut a).unwrap();
            a.finish().unwrap();
            let x = input(&case, 0);
            let (pads, axes) = (param(&case, 1).unwrap(), param(&case, 3));
            let value = case.inputs[2].as_ref();
            let t = p
                .infer(&vt(x), &pads, axes.as_deref(), value.map(vt).as_ref())
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let out = shape_of(&t);
            check!(case, dtype(x), |t| p.run(
                &t(x),
                &pads,
                axes.as_deref(),
                value.map(t).as_ref(),
                &out
            ));
        }
    }

    #[test]
    fn tile_expand_and_constant_of_shape_match_the_reference_cases() {
        for case in fixture::cases("Tile") {
            let x = input(&case, 0);
            let t = infer_tile(&vt(x), &param(&case, 1).unwrap()).unwrap();
            let out = shape_of(&t);
            check!(case, dtype(x), |t| tile(&t(x), &out));
        }
        for case in fixture::cases("Expand") {
            let x = input(&case, 0);
            let target: Vec<D> = (param(&case, 1).unwrap().iter())
                .map(|&d| D::Fixed(d as u64))
                .collect();
            let t = infer_expand(&vt(x), &target).unwrap();
            let out = shape_of(&t);
            check!(case, dtype(x), |t| expand(&t(x), &out));
        }
        for case in fixture::cases("ConstantOfShape") {
            let mut a = attrs(&case);
            let v = parse_constant_of_shape(&mut a).unwrap();
            a.finish().unwrap();
            let dims: Vec<D> = (param(&case, 0).unwrap().iter())
                .map(|&d| D::Fixed(d as u64))
                .collect();
            let t = infer_constant_of_shape(v, &dims).unwrap();
            let out = shape_of(&t);
            match v {
                Scalar::F32(v) => close(
                    &case.name,
                    &constant_of_shape(v, &out),
                    &f32s(&case.outputs[0]),
                ),
                Scalar::I64(v) => assert_eq!(constant_of_shape(v, &out), i64s(&case.outputs[0])),
                Scalar::Bool(v) => {
                    assert_eq!(constant_of_shape(v, &out), bools(&case.outputs[0]))
                }
            }
        }
    }

    #[test]
    fn range_split_and_where_match_the_reference_cases() {
        for case in fixture::cases("Range") {
            let mut a = attrs(&case);
            parse_range(&mut a).unwrap();
            a.finish().unwrap();
            let ins = [0, 1, 2].map(|i| input(&case, i).clone());
            if dtype(&ins[0]) == "f32" {
                let [s, l, d] = ins.each_ref().map(|t| f32s(t).data[0]);
                let t = infer_range(&RangeArgs::F32 {
                    start: s,
                    limit: l,
                    delta: d,
                })
                .unwrap();
                close(
                    &case.name,
                    &range_f32(s, d, &shape_of(&t)),
                    &f32s(&case.outputs[0]),
                );
            } else {
                let [s, l, d] = ins.each_ref().map(|t| i64s(t).data[0]);
                let t = infer_range(&RangeArgs::I64 {
                    start: K::Int(s),
                    limit: K::Int(l),
                    delta: K::Int(d),
                })
                .unwrap();
                let want = i64s(&case.outputs[0]);
                assert_eq!(range_i64(s, d, &shape_of(&t)), want, "{}", case.name);
                // The content is known before the run, for shapes computed from it.
                let known: Vec<K> = want.data.iter().map(|&v| K::Int(v)).collect();
                assert_eq!(t.known, Some(known), "{}", case.name);
            }
        }
        for case in fixture::cases("Split") {
            let mut a = attrs(&case);
            let sp = Split::parse(&mut a).unwrap();
            a.finish().unwrap();
            let x = input(&case, 0);
            let types = sp
                .infer(&vt(x), param(&case, 1).as_deref(), case.outputs.len())
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let outs: Vec<Vec<usize>> = types.iter().map(shape_of).collect();
            let outs: Vec<&[usize]> = outs.iter().map(Vec::as_slice).collect();
            for (k, want) in case.outputs.iter().enumerate() {
                match dtype(x) {
                    "f32" => close(&case.name, &sp.run(&f32s(x), &outs)[k], &f32s(want)),
                    _ => assert_eq!(sp.run(&i64s(x), &outs)[k], i64s(want), "{}", case.name),
                }
            }
        }
        for case in fixture::cases("Where") {
            let [c, x, y] = [0, 1, 2].map(|i| input(&case, i));
            let t = infer_where(&vt(c), &vt(x), &vt(y)).unwrap();
            let out = shape_of(&t);
            let cond = bools(c);
            check!(case, dtype(x), |t| select(&cond, &t(x), &t(y), &out));
        }
    }

    /// The definition of [`remap`], one element at a time.
    fn remap_naive(
        src: &[i64],
        shape: &[usize],
        maps: &[Vec<Option<usize>>],
        out: &[usize],
    ) -> Vec<i64> {
        let st = strides(shape);
        let total: usize = out.iter().product();
        (0..total)
            .map(|mut i| {
                let mut off = 0;
                for ax in (0..out.len()).rev() {
                    let o = i % out[ax];
                    i /= out[ax];
                    match maps[ax][o] {
                        Some(j) => off += j * st[ax],
                        None => return -1,
                    }
                }
                src[off]
            })
            .collect()
    }

    #[test]
    fn remap_runs_rows_and_threads_match_the_definition() {
        // Maps with runs of every kind, repeated rows and padding, on outputs large enough to
        // be spread over the cores.
        let mut seed = 7u64;
        let mut next = move |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for (shape, out) in [
            (vec![3, 40, 50], vec![4, 90, 130]),
            (vec![5, 7], vec![300, 41]),
            (vec![6], vec![70_000]),
        ] {
            let src: Vec<i64> = (0..shape.iter().product::<usize>() as i64).collect();
            let maps: Vec<Vec<Option<usize>>> = (out.iter().zip(&shape))
                .map(|(&m, &n)| {
                    let mut last = 0;
                    (0..m)
                        .map(|_| {
                            last = match next(4) {
                                0 => return None,
                                1 => last,
                                2 => (last + 1) % n,
                                _ => next(n as u64) as usize,
                            };
                            Some(last)
                        })
                        .collect()
                })
                .collect();
            assert_eq!(
                remap(&src, &shape, &maps, -1, &out),
                remap_naive(&src, &shape, &maps, &out),
                "{shape:?} -> {out:?}"
            );
        }
        use Run::*;
        let map = [
            Some(2),
            Some(3),
            Some(3),
            Some(3),
            None,
            None,
            Some(0),
            Some(0),
            Some(5),
        ];
        assert_eq!(
            runs(&map),
            vec![
                Copy { from: 2, len: 2 },
                Repeat { from: 3, len: 2 },
                Fill { len: 2 },
                Repeat { from: 0, len: 2 },
                Copy { from: 5, len: 1 }
            ]
        );
    }

    #[test]
    fn pad_refuses_what_onnxruntime_refuses() {
        let parse = |mode: &str| {
            let node = crate::model::Node {
                op: "Pad".into(),
                name: "p".into(),
                inputs: vec![],
                outputs: vec![],
                attrs: [("mode".to_string(), Attr::Text(mode.into()))].into(),
            };
            Pad::parse(&mut Attrs::new(&node))
        };
        assert_eq!(
            parse("symmetric").unwrap_err(),
            "attribute \"mode\" = \"symmetric\" is not supported (constant, reflect, edge or wrap)"
        );
        let x = fixed(Elem::F32, &[2, 3]);
        let err = |mode: &str, pads: &[i64]| parse(mode).unwrap().infer(&x, pads, None, None);
        assert_eq!(
            err("reflect", &[0, 3, 0, 0]).unwrap_err(),
            "axis 1: reflect padding of 3 needs more than 3 elements, and 3 are left"
        );
        assert!(err("reflect", &[0, 2, 0, 2]).is_ok());
        assert_eq!(
            err("reflect", &[0, -1, 0, 2]).unwrap_err(),
            "axis 1: reflect padding of 2 needs more than 2 elements, and 2 are left"
        );
        assert_eq!(
            err("edge", &[0, -3, 0, 1]).unwrap_err(),
            "axis 1: edge padding needs at least one element, and none is left"
        );
        assert_eq!(
            err("constant", &[0, -3, 0, 1]).unwrap().shape,
            vec![D::Fixed(2), D::Fixed(1)]
        );
        assert_eq!(
            err("constant", &[0, -4, 0, 2]).unwrap_err(),
            "axis 1: pads (-4, 2) crop more than its 3 elements"
        );
        assert_eq!(
            err("constant", &[-2, 0, -1, 0]).unwrap_err(),
            "axis 0: pads (-2, -1) crop more than its 2 elements"
        );
        assert_eq!(
            err("constant", &[0, 0, 0]).unwrap_err(),
            "pads has 3 values; 2 axes need 4"
        );
        assert_eq!(
            err("constant", &[0, 1 << 40, 0, 0]).unwrap_err(),
            "axis 1: pads (1099511627776, 0) make it longer than 1099511627776"
        );
        assert_eq!(
            err("constant", &[1 << 20, 0, 1 << 20, 1 << 20]).unwrap_err(),
            "the output [2097154, 1048579] would have more than 1099511627776 elements"
        );
        assert_eq!(
            err("constant", &[i64::MAX, 0, i64::MAX, 0]).unwrap_err(),
            "axis 0: pads (9223372036854775807, 9223372036854775807) make it longer than 1099511627776"
        );
        let p = parse("constant").unwrap();
        assert_eq!(
            p.infer(&x, &[1, 1], Some(&[1, -1]), None).unwrap_err(),
            "axes [1, -1] names axis 1 twice"
        );
        let ints = fixed(Elem::I64, &[]);
        assert_eq!(
            p.infer(&x, &[0; 4], None, Some(&ints)).unwrap_err(),
            "constant_value must be F32 as the input, not I64"
        );
        assert_eq!(
            p.infer(&x, &[0; 4], None, Some(&fixed(Elem::F32, &[2])))
                .unwrap_err(),
            "constant_value must hold one value, not shape [2]"
        );
        // Symbols: kept where the pads cancel, derived otherwise; checked again when bound.
        let sym = VType::new(Elem::F32, vec![D::Sym("n".into()), D::Sym("l".into())]);
        let t = p.infer(&sym, &[1, -1, 0, 1], None, None).unwrap();
        assert_eq!(t.shape, vec![D::Any, D::Sym("l".into())]);
    }

    #[test]
    fn tile_expand_and_constant_of_shape_refuse_and_follow_content() {
        let x = fixed(Elem::F32, &[2, 3]);
        assert_eq!(
            infer_tile(&x, &[2]).unwrap_err(),
            "repeats has 1 values for the 2 axes of the input [2, 3]"
        );
        assert_eq!(
            infer_tile(&x, &[2, -1]).unwrap_err(),
            "repeats [2, -1] holds -1; each must be in 0..=1099511627776"
        );
        assert_eq!(
            infer_tile(&x, &[1 << 40, 1 << 40]).unwrap_err(),
            "the output [2199023255552, 3298534883328] would have more than 1099511627776 elements"
        );
        let big = fixed(Elem::F32, &[1 << 40, 1 << 30]);
        assert_eq!(
            infer_tile(&big, &[1 << 40, 1]).unwrap_err(),
            "tiling [1099511627776, 1073741824] by [1099511627776, 1] overflows"
        );
        assert_eq!(
            infer_expand(&x, &[D::Fixed(4), D::Fixed(2)]).unwrap_err(),
            "cannot expand: shapes [2, 3] and [4, 2] do not broadcast (dimension 2 against 4)"
        );
        assert_eq!(
            infer_expand(&x, &vec![D::Fixed(1); 17]).unwrap_err(),
            "shape has 17 dimensions, more than 16"
        );
        assert_eq!(
            shape_param(&[K::Int(2), K::Int(-1)], "shape").unwrap_err(),
            "shape holds -1; each must be in 0..=1099511627776"
        );
        let target = shape_param(&[K::Sym("b".into()), K::Int(5)], "shape").unwrap();
        let sym = VType::new(Elem::F32, vec![D::Sym("b".into()), D::Fixed(1)]);
        let t = infer_expand(&sym, &target).unwrap();
        assert_eq!(t.shape, vec![D::Sym("b".into()), D::Fixed(5)]);
        // Known content goes through Expand and Tile (exporters build shapes with them).
        let list = VType::new(Elem::I64, vec![D::Fixed(2)])
            .with_known(Some(vec![K::Sym("b".into()), K::Int(7)]));
        let t = infer_expand(&list, &[D::Fixed(2), D::Fixed(2)]).unwrap();
        assert_eq!(
            t.known,
            Some(vec![
                K::Sym("b".into()),
                K::Int(7),
                K::Sym("b".into()),
                K::Int(7)
            ])
        );
        let t = infer_tile(&list, &[2]).unwrap();
        assert_eq!(t.known.map(|k| k.len()), Some(4));
        let ones = infer_constant_of_shape(Scalar::I64(1), &[D::Fixed(3)]).unwrap();
        assert_eq!(ones.known, Some(vec![K::Int(1); 3]));
        let t = infer_constant_of_shape(Scalar::Bool(true), &[D::Sym("b".into())]).unwrap();
        assert_eq!((t.elem, t.known), (Elem::Bool, None));
        assert_eq!(
            infer_constant_of_shape(Scalar::F32(0.0), &[D::Fixed(1 << 30), D::Fixed(1 << 20)])
                .unwrap_err(),
            "the output [1073741824, 1048576] would have more than 1099511627776 elements"
        );
        let node = |attrs: &[(&str, Attr)]| crate::model::Node {
            op: "ConstantOfShape".into(),
            name: "c".into(),
            inputs: vec![],
            outputs: vec![],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let parse = |attrs: &[(&str, Attr)]| {
            let n = node(attrs);
            let mut a = Attrs::new(&n);
            parse_constant_of_shape(&mut a)
        };
        assert_eq!(parse(&[]), Ok(Scalar::F32(0.0)));
        assert_eq!(
            parse(&[
                ("value_int", Attr::Int(3)),
                ("value_float", Attr::Float(1.0))
            ])
            .unwrap_err(),
            "give at most one of value_float, value_int and value_bool"
        );
        assert_eq!(
            parse(&[("value_bool", Attr::Int(2))]).unwrap_err(),
            "attribute \"value_bool\" must be 0 or 1, not 2"
        );
        assert_eq!(
            parse(&[("value_float", Attr::Floats(vec![1.0, 2.0]))]).unwrap_err(),
            "attribute \"value_float\" must be a number"
        );
    }

    #[test]
    fn range_split_and_where_refuse_and_follow_symbols() {
        let f = |start, limit, delta| {
            infer_range(&RangeArgs::F32 {
                start,
                limit,
                delta,
            })
        };
        assert_eq!(f(0.0, 1.0, 0.0).unwrap_err(), "delta must not be 0");
        assert_eq!(
            f(0.0, f32::INFINITY, 1.0).unwrap_err(),
            "start 0, limit inf and delta 1 must be finite"
        );
        assert_eq!(
            f(0.0, 1e30, 1.0).unwrap_err(),
            "the range would have 1000000015047466200000000000000 elements, more than 1099511627776"
        );
        let i = |start, limit, delta| {
            infer_range(&RangeArgs::I64 {
                start,
                limit,
                delta,
            })
        };
        assert_eq!(
            i(K::Int(i64::MIN), K::Int(i64::MAX), K::Int(1)).unwrap_err(),
            "the range would have 18446744073709552000 elements, more than 1099511627776"
        );
        assert_eq!(
            i(K::Int(0), K::Sym("t".into()), K::Int(0)).unwrap_err(),
            "delta must not be 0"
        );
        let t = i(K::Int(0), K::Sym("t".into()), K::Int(1)).unwrap();
        assert_eq!(t.shape, vec![D::Sym("t".into())]);
        let t = i(K::Int(1), K::Sym("t".into()), K::Int(1)).unwrap();
        assert_eq!(t.shape, vec![D::Any]);
        // Values near the ends of i64 do not overflow.
        let t = i(K::Int(i64::MAX - 2), K::Int(i64::MAX), K::Int(1)).unwrap();
        assert_eq!(
            range_i64(i64::MAX - 2, 1, &shape_of(&t)).data,
            vec![i64::MAX - 2, i64::MAX - 1]
        );

        let x = fixed(Elem::F32, &[5, 2]);
        let sp = |num_outputs| Split {
            axis: 0,
            num_outputs,
        };
        assert_eq!(
            sp(None).infer(&x, Some(&[2, 2]), 2).unwrap_err(),
            "split [2, 2] adds up to 4, not the 5 of axis 0"
        );
        assert_eq!(
            sp(None).infer(&x, Some(&[6, -1]), 2).unwrap_err(),
            "split [6, -1] holds -1; each must be in 0..=1099511627776"
        );
        assert_eq!(
            sp(None).infer(&x, Some(&[5]), 2).unwrap_err(),
            "split has 1 sizes for 2 outputs"
        );
        assert_eq!(
            sp(Some(2)).infer(&x, Some(&[2, 3]), 2).unwrap_err(),
            "give the input split or attribute num_outputs, not both"
        );
        assert_eq!(
            sp(None).infer(&x, None, 2).unwrap_err(),
            "give the input split or attribute num_outputs"
        );
        assert_eq!(
            sp(Some(3)).infer(&x, None, 2).unwrap_err(),
            "attribute \"num_outputs\" = 3, and the node has 2 outputs"
        );
        assert_eq!(
            sp(Some(4)).infer(&x, None, 4).unwrap_err(),
            "axis 0 of 5 does not split into 4 parts of 2 (the last would be negative)"
        );
        let sym = VType::new(Elem::F32, vec![D::Sym("n".into()), D::Fixed(2)]);
        let parts = sp(None).infer(&sym, Some(&[1, 3]), 2).unwrap();
        assert_eq!(parts[1].shape, vec![D::Fixed(3), D::Fixed(2)]);
        let parts = sp(Some(2)).infer(&sym, None, 2).unwrap();
        assert_eq!(parts[0].shape, vec![D::Any, D::Fixed(2)]);
        let list = VType::new(Elem::I64, vec![D::Fixed(3)]).with_known(Some(vec![
            K::Sym("b".into()),
            K::Int(4),
            K::Int(5),
        ]));
        let parts = sp(None).infer(&list, Some(&[1, 2]), 2).unwrap();
        assert_eq!(parts[0].known, Some(vec![K::Sym("b".into())]));
        assert_eq!(parts[1].known, Some(vec![K::Int(4), K::Int(5)]));

        let b = fixed(Elem::Bool, &[2, 1]);
        assert_eq!(
            infer_where(&x, &x, &x).unwrap_err(),
            "condition must be BOOL, not F32"
        );
        assert_eq!(
            infer_where(&b, &x, &fixed(Elem::I64, &[1])).unwrap_err(),
            "X and Y must have one element type, not F32 and I64"
        );
        assert_eq!(
            infer_where(&fixed(Elem::Bool, &[3, 1]), &x, &x).unwrap_err(),
            "shapes [3, 1] and [5, 2] do not broadcast (dimension 3 against 5)"
        );
        let t = infer_where(&b, &sym, &fixed(Elem::F32, &[1])).unwrap();
        assert_eq!(t.shape, vec![D::Fixed(2), D::Fixed(2)]);
    }
}
