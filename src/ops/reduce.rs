//! Reductions along axes (`ReduceSum`, `ReduceMean`, `ReduceMax`, ...), `ArgMax` and `ArgMin`,
//! `TopK`, and softmax's relatives `LogSoftmax` and `Hardmax` (op-set 13 semantics: along one
//! axis).
//!
//! A reduction's input is seen as runs of adjacent axes that are all reduced or all kept (axes
//! of size 1 dropped), so that its innermost loop is contiguous: a run of reduced elements
//! folded into one output, or a run of kept ones folded element-wise into as many outputs.

use super::elementwise::exp;
use super::shape::{self, fmt_shape, VType, D, K};
use super::{chunks, chunks_with, float, spread, Attrs};
use crate::tensor::{Elem, Tensor};
use std::cmp::Ordering;

/// Elements below which a reduction runs on one core.
const PAR_MIN: usize = 1 << 15;

/// A 0/1 attribute with a default of 1.
fn flag_on(a: &mut Attrs<'_>, key: &'static str) -> Result<bool, String> {
    match a.int(key, 1)? {
        0 => Ok(false),
        1 => Ok(true),
        v => Err(format!("attribute {key:?} must be 0 or 1, not {v}")),
    }
}

/// What a `Reduce*` op computes over each set of reduced elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sum,
    Mean,
    /// NaN if any element is NaN (as NumPy; onnxruntime skips NaN).
    Max,
    /// NaN if any element is NaN (as NumPy; onnxruntime skips NaN).
    Min,
    Prod,
    L1,
    L2,
    SumSquare,
    LogSum,
    /// `log(sum(exp(x)))`, computed as `m + log(sum(exp(x - m)))` with `m` the maximum, so
    /// that large elements do not overflow.
    LogSumExp,
}

/// A `Reduce*` op's attributes. Its axes are a parameter (ONNX's optional second input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reduce {
    pub kind: Kind,
    pub keepdims: bool,
    /// With no axes given (or none listed), return the input unchanged instead of reducing
    /// every axis.
    pub noop_with_empty_axes: bool,
}

impl Reduce {
    /// `ReduceSum`, `ReduceMean`, `ReduceMax`, `ReduceMin`, `ReduceProd`, `ReduceL1`,
    /// `ReduceL2`, `ReduceSumSquare`, `ReduceLogSum` or `ReduceLogSumExp`.
    pub(super) fn parse(name: &str, a: &mut Attrs<'_>) -> Result<Reduce, String> {
        let kind = match name {
            "ReduceSum" => Kind::Sum,
            "ReduceMean" => Kind::Mean,
            "ReduceMax" => Kind::Max,
            "ReduceMin" => Kind::Min,
            "ReduceProd" => Kind::Prod,
            "ReduceL1" => Kind::L1,
            "ReduceL2" => Kind::L2,
            "ReduceSumSquare" => Kind::SumSquare,
            "ReduceLogSum" => Kind::LogSum,
            "ReduceLogSumExp" => Kind::LogSumExp,
            other => return Err(format!("{other} is not a reduction")),
        };
        Ok(Reduce {
            kind,
            keepdims: flag_on(a, "keepdims")?,
            noop_with_empty_axes: a.flag("noop_with_empty_axes")?,
        })
    }

    /// Which of `rank` axes are reduced (`None`: none, the op returns its input).
    fn mask(&self, axes: Option<&[i64]>, rank: usize) -> Result<Option<Vec<bool>>, String> {
        let axes = axes.unwrap_or_default();
        if axes.is_empty() {
            return Ok((!self.noop_with_empty_axes).then(|| vec![true; rank]));
        }
        let mut mask = vec![false; rank];
        for &a in axes {
            let ax = shape::axis(a, rank, "axis")?;
            if std::mem::replace(&mut mask[ax], true) {
                return Err(format!("axes {axes:?} name axis {ax} twice"));
            }
        }
        Ok(Some(mask))
    }

    /// The output type for input `x` reduced along `axes` (`None` or empty: every axis, or
    /// none with `noop_with_empty_axes`). F32, or I64 for Sum, Max, Min and Prod.
    pub(super) fn infer(&self, x: &VType, axes: Option<&[i64]>) -> Result<VType, String> {
        let ints = matches!(self.kind, Kind::Sum | Kind::Max | Kind::Min | Kind::Prod);
        if !(x.elem == Elem::F32 || (ints && x.elem == Elem::I64)) {
            return Err(format!(
                "input must be F32{}, not {}",
                if ints { " or I64" } else { "" },
                x.elem.name()
            ));
        }
        let Some(mask) = self.mask(axes, x.rank())? else {
            return Ok(x.clone());
        };
        let shape = (x.shape.iter().zip(&mask))
            .filter_map(|(d, &r)| match (r, self.keepdims) {
                (false, _) => Some(d.clone()),
                (true, true) => Some(D::Fixed(1)),
                (true, false) => None,
            })
            .collect();
        let t = VType::new(x.elem, shape);
        let known = self.known(x, axes, &t);
        Ok(t.with_known(known))
    }

    /// The content of the output `t`, when the input's is known and all numbers (the
    /// product of a shape's dimensions, say): the kernel run on it.
    fn known(&self, x: &VType, axes: Option<&[i64]>, t: &VType) -> Option<Vec<K>> {
        let data = x.known_ints()?;
        let dims = |s: &[D]| -> Option<Vec<usize>> {
            s.iter().map(|d| Some(d.fixed()? as usize)).collect()
        };
        let x = Tensor {
            shape: dims(&x.shape)?,
            data,
        };
        let r = self.run_i64(&x, axes, &dims(&t.shape)?);
        Some(r.data.into_iter().map(K::Int).collect())
    }

    /// The reduction of F32 `x` (whose type inference accepted with `axes`) into shape `out`.
    pub(super) fn run(&self, x: &Tensor<f32>, axes: Option<&[i64]>, out: &[usize]) -> Tensor {
        let mask = self.mask(axes, x.shape.len());
        let Some(mask) = mask.expect("inference checked the axes") else {
            return x.clone();
        };
        let plan = Plan::new(&x.shape, &mask);
        let count = plan.count as f32;
        let data = match self.kind {
            Kind::Sum | Kind::Mean | Kind::LogSum => {
                let sum = plan.sum(&x.data);
                match self.kind {
                    Kind::Mean => sum.into_iter().map(|s| s / count).collect(),
                    Kind::LogSum => sum.into_iter().map(f32::ln).collect(),
                    _ => sum,
                }
            }
            Kind::SumSquare | Kind::L2 => {
                let sq = plan.fold(
                    &x.data,
                    0.0,
                    |_, a, v| a + v * v,
                    |_, a, xs| a + xs.iter().map(|v| v * v).sum::<f32>(),
                );
                match self.kind {
                    Kind::L2 => sq.into_iter().map(f32::sqrt).collect(),
                    _ => sq,
                }
            }
            Kind::L1 => plan.fold(
                &x.data,
                0.0,
                |_, a, v| a + v.abs(),
                |_, a, xs| a + xs.iter().map(|v| v.abs()).sum::<f32>(),
            ),
            Kind::Prod => plan.fold(
                &x.data,
                1.0,
                |_, a, v| a * v,
                |_, a, xs| xs.iter().fold(a, |a, v| a * v),
            ),
            Kind::Max => max_f32(&plan, &x.data),
            Kind::Min => plan.fold(
                &x.data,
                f32::INFINITY,
                |_, a, v| nan_min(a, v),
                |_, a, xs| xs.iter().fold(a, |a, &v| nan_min(a, v)),
            ),
            Kind::LogSumExp => {
                // Shifting by a maximum that is not finite would give inf - inf: no shift
                // then (all -inf sums to 0, whose log is -inf; +inf and NaN carry through).
                let shift: Vec<f32> = (max_f32(&plan, &x.data).into_iter())
                    .map(|m| if m.is_finite() { m } else { 0.0 })
                    .collect();
                let s = &shift;
                let sum = plan.fold(
                    &x.data,
                    0.0,
                    |o, a, v| a + exp(v - s[o]),
                    |o, a, xs| a + sum_exp(xs, s[o]),
                );
                (sum.into_iter().zip(&shift))
                    .map(|(s, m)| m + s.ln())
                    .collect()
            }
        };
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }

    /// The reduction of I64 `x` (Sum, Max, Min or Prod, as inference checked) into shape
    /// `out`. Sums and products wrap on overflow (as NumPy's do); the maximum of no elements
    /// is `i64::MIN` and the minimum `i64::MAX` (ONNX's rule).
    pub(super) fn run_i64(
        &self,
        x: &Tensor<i64>,
        axes: Option<&[i64]>,
        out: &[usize],
    ) -> Tensor<i64> {
        let mask = self.mask(axes, x.shape.len());
        let Some(mask) = mask.expect("inference checked the axes") else {
            return x.clone();
        };
        let plan = Plan::new(&x.shape, &mask);
        let (init, f): (i64, fn(i64, i64) -> i64) = match self.kind {
            Kind::Sum => (0, i64::wrapping_add),
            Kind::Prod => (1, i64::wrapping_mul),
            Kind::Max => (i64::MIN, std::cmp::max),
            Kind::Min => (i64::MAX, std::cmp::min),
            _ => unreachable!("inference accepts I64 only for Sum, Max, Min and Prod"),
        };
        let data = plan.fold(
            &x.data,
            init,
            |_, a, v| f(a, v),
            |_, a, xs| xs.iter().fold(a, |a, &v| f(a, v)),
        );
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

/// The sums of `x`, of shape `shape`, over the axes where `reduced` holds (in row-major order
/// of the axes kept): Einsum's sums over labels that only one operand has.
pub(super) fn sum_over(x: &[f32], shape: &[usize], reduced: &[bool]) -> Vec<f32> {
    Plan::new(shape, reduced).sum(x)
}

/// The larger of two floats, NaN if either is.
fn nan_max(a: f32, b: f32) -> f32 {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}

/// The smaller of two floats, NaN if either is.
fn nan_min(a: f32, b: f32) -> f32 {
    if a.is_nan() || a < b {
        a
    } else {
        b
    }
}

fn max_f32(plan: &Plan, x: &[f32]) -> Vec<f32> {
    plan.fold(
        x,
        f32::NEG_INFINITY,
        |_, a, v| nan_max(a, v),
        |_, a, xs| nan_max(a, max_of(xs)),
    )
}

/// The sum of `xs` over eight running sums, which the compiler keeps in one vector register
/// (faster, and more accurate than one running sum).
pub(super) fn sum(xs: &[f32]) -> f32 {
    lanes(xs, 0.0, |a, v| a + v, |a, b| a + b)
}

/// How a reduction walks its input: runs of adjacent axes that are all reduced or all kept,
/// outermost first, without axes of size 1.
struct Plan {
    runs: Vec<(usize, bool)>,
    /// Elements of the input.
    total: usize,
    /// Elements of the output.
    outputs: usize,
    /// Elements reduced into each output.
    count: usize,
}

impl Plan {
    fn new(shape: &[usize], reduced: &[bool]) -> Plan {
        let mut runs: Vec<(usize, bool)> = Vec::new();
        for (&d, &r) in shape.iter().zip(reduced) {
            match runs.last_mut() {
                _ if d == 1 => {}
                Some((n, last)) if *last == r => *n *= d,
                _ => runs.push((d, r)),
            }
        }
        let (total, count) = (shape.iter().zip(reduced)).fold((1, 1), |(t, c), (&d, &r)| {
            (t * d, if r { c * d } else { c })
        });
        let outputs = (shape.iter().zip(reduced))
            .filter(|(_, &r)| !r)
            .map(|(&d, _)| d)
            .product();
        Plan {
            runs,
            total,
            outputs,
            count,
        }
    }

    fn sum(&self, x: &[f32]) -> Vec<f32> {
        self.fold(x, 0.0, |_, a, v| a + v, |_, a, xs| a + sum(xs))
    }

    /// Folds the elements of `x` into one value per output, starting from `init`: `lane(o, a,
    /// v)` folds one element `v` into output `o`'s value `a`, `row(o, a, xs)` a contiguous
    /// run `xs` of elements all reduced into output `o`. Large inputs whose outermost run is
    /// kept are split over the cores along it.
    fn fold<T, L, R>(&self, x: &[T], init: T, lane: L, row: R) -> Vec<T>
    where
        T: Copy + Send + Sync,
        L: Fn(usize, T, T) -> T + Sync,
        R: Fn(usize, T, &[T]) -> T + Sync,
    {
        let mut acc = vec![init; self.outputs];
        if self.total == 0 {
            return acc;
        }
        match self.runs.split_first() {
            Some((&(n, false), rest)) if !rest.is_empty() && spread(self.total, PAR_MIN) => {
                let per = self.outputs / n;
                chunks_with(&mut acc, per, x, self.total / n, true, |i, a, xs| {
                    walk(xs, rest, a, i * per, &lane, &row)
                });
            }
            _ => walk(x, &self.runs, &mut acc, 0, &lane, &row),
        }
        acc
    }
}

/// [`Plan::fold`] of `x` (the elements of `runs`) into `acc`, the outputs from `base` on.
fn walk<T, L, R>(x: &[T], runs: &[(usize, bool)], acc: &mut [T], base: usize, lane: &L, row: &R)
where
    T: Copy,
    L: Fn(usize, T, T) -> T,
    R: Fn(usize, T, &[T]) -> T,
{
    let Some((&(n, reduced), rest)) = runs.split_first() else {
        // Every axis has size 1: one element, one output.
        if let (Some(a), Some(&v)) = (acc.first_mut(), x.first()) {
            *a = lane(base, *a, v);
        }
        return;
    };
    let size = x.len() / n;
    match (reduced, rest.is_empty()) {
        (true, true) => {
            if let Some(a) = acc.first_mut() {
                *a = row(base, *a, x);
            }
        }
        (false, true) => {
            for (j, (a, &v)) in acc.iter_mut().zip(x).enumerate() {
                *a = lane(base + j, *a, v);
            }
        }
        (true, false) => {
            for part in x.chunks_exact(size) {
                walk(part, rest, acc, base, lane, row);
            }
        }
        (false, false) => {
            let per = acc.len() / n;
            let parts = x.chunks_exact(size).zip(acc.chunks_exact_mut(per));
            for (i, (part, a)) in parts.enumerate() {
                walk(part, rest, a, base + i * per, lane, row);
            }
        }
    }
}

/// Whether `x` is NaN (never, for an integer type).
fn is_nan<T: PartialOrd>(x: &T) -> bool {
    #[allow(clippy::eq_op)] // x != x: NaN, for any PartialOrd element type
    let nan = x != x;
    nan
}

/// How one element ranks against another for ArgMax, ArgMin, TopK and Hardmax: NaN equal to
/// NaN, and above every number if `nan_high`, else below (NumPy places NaN so: its argmax and
/// argmin both pick the first NaN, its sort puts NaN last).
fn rank<T: PartialOrd>(a: &T, b: &T, nan_high: bool) -> Ordering {
    a.partial_cmp(b).unwrap_or_else(|| {
        let o = is_nan(a).cmp(&is_nan(b));
        if nan_high {
            o
        } else {
            o.reverse()
        }
    })
}

/// `ArgMax`'s and `ArgMin`'s attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arg {
    /// ArgMax (else ArgMin).
    pub max: bool,
    pub axis: i64,
    pub keepdims: bool,
    /// Of equal extremes, take the last (else the first).
    pub select_last_index: bool,
}

impl Arg {
    /// `ArgMax` or `ArgMin`.
    pub(super) fn parse(name: &str, a: &mut Attrs<'_>) -> Result<Arg, String> {
        Ok(Arg {
            max: name == "ArgMax",
            axis: a.int("axis", 0)?,
            keepdims: flag_on(a, "keepdims")?,
            select_last_index: a.flag("select_last_index")?,
        })
    }

    /// The output type: I64 indices, for an F32 or I64 input with a non-empty axis.
    pub(super) fn infer(&self, x: &VType) -> Result<VType, String> {
        if !matches!(x.elem, Elem::F32 | Elem::I64) {
            return Err(format!("input must be F32 or I64, not {}", x.elem.name()));
        }
        let ax = shape::axis(self.axis, x.rank(), "axis")?;
        if x.shape[ax] == D::Fixed(0) {
            return Err(format!(
                "axis {ax} of {} is empty: it has no extreme",
                fmt_shape(&x.shape)
            ));
        }
        let mut shape = x.shape.clone();
        if self.keepdims {
            shape[ax] = D::Fixed(1);
        } else {
            shape.remove(ax);
        }
        Ok(VType::new(Elem::I64, shape))
    }

    /// The indices of the extremes of `x` along the axis, into shape `out`. NaN is the
    /// largest element for ArgMax and the smallest for ArgMin (NumPy's choice: the first NaN
    /// wins either way).
    pub(super) fn run<T>(&self, x: &Tensor<T>, out: &[usize]) -> Tensor<i64>
    where
        T: Copy + PartialOrd + Sync,
    {
        let ax = shape::axis(self.axis, x.shape.len(), "axis").expect("inference checked it");
        let (n, inner) = (x.shape[ax], x.shape[ax + 1..].iter().product::<usize>());
        let mut data = vec![0i64; out.iter().product()];
        let (max, last) = (self.max, self.select_last_index);
        let par = spread(x.data.len(), PAR_MIN);
        // Whether `v` replaces `cur` as the extreme so far: plain comparisons (an integer
        // is never NaN, so its test folds away).
        let wins = |v: &T, cur: &T| {
            let (beyond, equal) = match max {
                true => (v > cur, v == cur),
                false => (v < cur, v == cur),
            };
            match (is_nan(v), is_nan(cur)) {
                (false, false) => beyond || (last && equal),
                (true, false) => true,
                (false, true) => false,
                (true, true) => last,
            }
        };
        chunks_with(&mut data, inner, &x.data, n * inner, par, |_, best, xs| {
            if let ([b], [first, ..]) = (&mut best[..], xs) {
                // One contiguous row: its extreme (on vector registers for floats), then where
                // it first (or last) is.
                let nan = lanes(xs, false, |a, v| a | is_nan(&v), |a, b| a | b);
                let m = match max {
                    true => lanes(
                        xs,
                        *first,
                        |a, v| if v > a { v } else { a },
                        |a, b| if b > a { b } else { a },
                    ),
                    false => lanes(
                        xs,
                        *first,
                        |a, v| if v < a { v } else { a },
                        |a, b| if b < a { b } else { a },
                    ),
                };
                let hit = |v: &T| if nan { is_nan(v) } else { *v == m };
                let at = match last {
                    false => xs.iter().position(hit),
                    true => xs.iter().rposition(hit),
                };
                *b = at.expect("the extreme is an element") as i64;
                return;
            }
            // `best` holds, per inner position, the index of the extreme so far: rows are
            // read whole, in order.
            for (k, row) in xs.chunks_exact(inner).enumerate().skip(1) {
                for (i, (b, v)) in best.iter_mut().zip(row).enumerate() {
                    if wins(v, &xs[*b as usize * inner + i]) {
                        *b = k as i64;
                    }
                }
            }
        });
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

/// `TopK`'s attributes. Its `k` is a parameter (ONNX's second input).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopK {
    pub axis: i64,
    pub largest: bool,
    pub sorted: bool,
}

impl TopK {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<TopK, String> {
        Ok(TopK {
            axis: a.int("axis", -1)?,
            largest: flag_on(a, "largest")?,
            sorted: flag_on(a, "sorted")?,
        })
    }

    /// The types of the two outputs, values (the input's type) and I64 indices, both with
    /// `k` elements along the axis.
    pub(super) fn infer(&self, x: &VType, k: i64) -> Result<Vec<VType>, String> {
        if !matches!(x.elem, Elem::F32 | Elem::I64) {
            return Err(format!("input must be F32 or I64, not {}", x.elem.name()));
        }
        let ax = shape::axis(self.axis, x.rank(), "axis")?;
        let k = u64::try_from(k).map_err(|_| format!("k = {k} must not be negative"))?;
        match x.shape[ax] {
            D::Fixed(n) if k > n => {
                return Err(format!(
                    "k = {k} is more than the {n} elements along axis {ax} of {}",
                    fmt_shape(&x.shape)
                ))
            }
            _ => {}
        }
        let mut shape = x.shape.clone();
        shape[ax] = D::Fixed(k);
        Ok(vec![
            VType::new(x.elem, shape.clone()),
            VType::new(Elem::I64, shape),
        ])
    }

    /// The `k` largest (or smallest) elements of `x` along the axis and their indices, into
    /// shape `out` (as inferred for both). They are always sorted, even when `sorted` is 0
    /// (ONNX leaves that order free); equal elements come in the order of their indices, and
    /// NaN ranks above every number (as in onnx's reference implementation).
    pub(super) fn run<T>(&self, x: &Tensor<T>, k: i64, out: &[usize]) -> (Tensor<T>, Tensor<i64>)
    where
        T: Copy + PartialOrd + Send + Sync,
    {
        let ax = shape::axis(self.axis, x.shape.len(), "axis").expect("inference checked it");
        let k = usize::try_from(k).expect("inference checked k");
        let (n, inner) = (x.shape[ax], x.shape[ax + 1..].iter().product::<usize>());
        let mut indices = vec![0i64; out.iter().product()];
        let largest = self.largest;
        let order = |a: &(T, usize), b: &(T, usize)| {
            let by_value = if largest {
                rank(&b.0, &a.0, true)
            } else {
                rank(&a.0, &b.0, true)
            };
            by_value.then(a.1.cmp(&b.1))
        };
        let par = spread(x.data.len(), PAR_MIN);
        // Whether `v` ranks strictly before `w` (NaN highest).
        let beats = |v: &T, w: &T| match (is_nan(v), is_nan(w)) {
            (false, false) => (largest && v > w) || (!largest && v < w),
            (nan_v, nan_w) => (largest && nan_v && !nan_w) || (!largest && nan_w && !nan_v),
        };
        // A small k is found in one pass, keeping the best so far in order (most elements
        // lose to the worst of them at once); a larger one by selection, then sorting.
        let small = k <= 64 && 4 * k <= n;
        chunks_with(
            &mut indices,
            k * inner,
            &x.data,
            n * inner,
            par,
            |_, idx, xs| {
                let mut top: Vec<(T, usize)> = Vec::with_capacity(if small { k + 1 } else { n });
                for i in 0..inner {
                    top.clear();
                    if small {
                        for (j, v) in xs.iter().skip(i).step_by(inner).copied().enumerate() {
                            if top.len() == k {
                                // Only a strictly better value beats the worst (an equal one has
                                // a higher index).
                                match top.last() {
                                    Some(worst) if beats(&v, &worst.0) => top.pop(),
                                    _ => continue,
                                };
                            }
                            let at = top.partition_point(|t| order(t, &(v, j)) == Ordering::Less);
                            top.insert(at, (v, j));
                        }
                    } else {
                        top.extend((0..n).map(|j| (xs[j * inner + i], j)));
                        if k < n {
                            top.select_nth_unstable_by(k, order);
                        }
                        top.truncate(k);
                        top.sort_unstable_by(order);
                    }
                    for (j, &(_, at)) in top.iter().enumerate() {
                        idx[j * inner + i] = at as i64;
                    }
                }
            },
        );
        // The values, gathered by index: block by block along the outer axes.
        let values = if k * inner == 0 {
            Vec::new()
        } else {
            (indices
                .chunks_exact(k * inner)
                .zip(x.data.chunks_exact(n * inner)))
            .flat_map(|(idx, xs)| {
                (idx.iter().enumerate()).map(move |(p, &j)| xs[j as usize * inner + p % inner])
            })
            .collect()
        };
        let shape = out.to_vec();
        (
            Tensor {
                shape: shape.clone(),
                data: values,
            },
            Tensor {
                shape,
                data: indices,
            },
        )
    }
}

/// The output type of `LogSoftmax` and `Hardmax` along `axis`: F32 `x`'s.
pub(super) fn infer_along(axis: i64, x: &VType) -> Result<VType, String> {
    let t = float(x, "input")?;
    shape::axis(axis, t.rank(), "axis")?;
    Ok(t.clone())
}

/// `LogSoftmax` along `axis`, in place: `x - m - log(sum(exp(x - m)))` with `m` the maximum
/// along the axis, so that nothing overflows or underflows to `-inf` needlessly. A task takes
/// whole blocks of the axis and what follows it, about [`TASK`] elements.
pub(super) fn log_softmax(mut t: Tensor, axis: i64) -> Tensor {
    let ax = shape::axis(axis, t.shape.len(), "axis").expect("inference checked the axis");
    let (n, inner) = (t.shape[ax], t.shape[ax + 1..].iter().product::<usize>());
    let block = n * inner;
    if block == 0 {
        return t;
    }
    let per = (TASK / block).max(1);
    let par = spread(t.data.len(), PAR_MIN);
    chunks(&mut t.data, per * block, par, |_, blocks| {
        if inner == 1 {
            blocks.chunks_exact_mut(n).for_each(log_softmax_row);
            return;
        }
        // Per inner position, the maximum and then the sum, over rows read whole.
        let (mut max, mut sum) = (vec![0f32; inner], vec![0f32; inner]);
        for block in blocks.chunks_exact_mut(block) {
            max.fill(f32::NEG_INFINITY);
            for row in block.chunks_exact(inner) {
                max.iter_mut()
                    .zip(row)
                    .for_each(|(m, &v)| *m = nan_max(*m, v));
            }
            max.iter_mut().for_each(|m| *m = finite_or_zero(*m));
            sum.fill(0.0);
            for row in block.chunks_exact(inner) {
                for ((s, &v), &m) in sum.iter_mut().zip(row).zip(&max) {
                    *s += exp(v - m);
                }
            }
            // (v - m) - log(s): subtracting m first keeps the small differences exact.
            sum.iter_mut().for_each(|s| *s = s.ln());
            for row in block.chunks_exact_mut(inner) {
                for ((v, &m), &ls) in row.iter_mut().zip(&max).zip(&sum) {
                    *v = (*v - m) - ls;
                }
            }
        }
    });
    t
}

/// Elements one task of [`log_softmax`] takes.
const TASK: usize = 1 << 14;

/// A maximum to shift by: one that is not finite shifts nothing (inf - inf would be NaN).
fn finite_or_zero(m: f32) -> f32 {
    if m.is_finite() {
        m
    } else {
        0.0
    }
}

/// [`log_softmax`] of one contiguous row.
fn log_softmax_row(row: &mut [f32]) {
    let m = finite_or_zero(max_of(row));
    let ls = sum_exp(row, m).ln();
    row.iter_mut().for_each(|v| *v = (*v - m) - ls);
}

/// The sum of `e^(x - m)` over `xs`.
fn sum_exp(xs: &[f32], m: f32) -> f32 {
    // The exponentials of a block first, in a loop the compiler runs on vector registers.
    let mut buf = [0f32; 256];
    let mut total = 0.0;
    for block in xs.chunks(buf.len()) {
        let e = &mut buf[..block.len()];
        e.iter_mut().zip(block).for_each(|(e, &v)| *e = exp(v - m));
        total += sum(e);
    }
    total
}

/// The maximum of `xs` (-inf if empty), NaN if any element is.
fn max_of(xs: &[f32]) -> f32 {
    // `max` of numbers, and apart whether any is NaN: both run on vector registers.
    let m = lanes(
        xs,
        f32::NEG_INFINITY,
        |a, v| if v > a { v } else { a },
        f32::max,
    );
    let nan = lanes(xs, 0.0, |a, v| if v.is_nan() { 1.0 } else { a }, f32::max);
    if nan > 0.0 {
        f32::NAN
    } else {
        m
    }
}

/// `f` folded over `xs` in eight interleaved running values (which the compiler keeps in one
/// vector register), joined by `join`: for associative folds only.
pub(super) fn lanes<T: Copy, A: Copy>(
    xs: &[T],
    init: A,
    f: impl Fn(A, T) -> A,
    join: impl Fn(A, A) -> A,
) -> A {
    let mut acc = [init; 8];
    let mut blocks = xs.chunks_exact(8);
    for b in &mut blocks {
        for (a, &v) in acc.iter_mut().zip(b) {
            *a = f(*a, v);
        }
    }
    let tail = blocks.remainder().iter().fold(init, |a, &v| f(a, v));
    acc.into_iter().fold(tail, join)
}

/// `Hardmax` along `axis`, in place: 1 at the first maximum along the axis (the first NaN,
/// if any), 0 elsewhere.
pub(super) fn hardmax(mut t: Tensor, axis: i64) -> Tensor {
    let ax = shape::axis(axis, t.shape.len(), "axis").expect("inference checked the axis");
    let (n, inner) = (t.shape[ax], t.shape[ax + 1..].iter().product::<usize>());
    let arg = Arg {
        max: true,
        axis,
        keepdims: true,
        select_last_index: false,
    };
    let mut at = t.shape.clone();
    at[ax] = 1;
    let best = arg.run(&t, &at).data;
    let par = spread(t.data.len(), PAR_MIN);
    chunks_with(
        &mut t.data,
        n * inner,
        &best,
        inner,
        par,
        |_, block, best| {
            for (k, row) in block.chunks_exact_mut(inner).enumerate() {
                for (v, &b) in row.iter_mut().zip(best) {
                    *v = if b as usize == k { 1.0 } else { 0.0 };
                }
            }
        },
    );
    t
}

#[cfg(test)]
mod tests {
    use super::super::math_fixture::{self as fixture, Arr, Case};
    use super::*;
    use crate::model::{Attr, Node};

    fn parsed<T>(c: &Case, parse: impl FnOnce(&mut Attrs<'_>) -> Result<T, String>) -> T {
        let node = c.node();
        let mut a = Attrs::new(&node);
        let op = parse(&mut a).unwrap();
        a.finish().unwrap();
        op
    }

    fn vt(elem: Elem, s: &[u64]) -> VType {
        VType::new(elem, s.iter().map(|&d| D::Fixed(d)).collect())
    }

    #[test]
    fn reductions_match_the_reference() {
        let ops = [
            "ReduceSum",
            "ReduceMean",
            "ReduceMax",
            "ReduceMin",
            "ReduceProd",
            "ReduceL1",
            "ReduceL2",
            "ReduceSumSquare",
            "ReduceLogSum",
            "ReduceLogSumExp",
        ];
        for c in fixture::cases(&ops, 85) {
            let r = parsed(c, |a| Reduce::parse(&c.op, a));
            let axes = c.ints(1);
            let out = c.outputs[0].shape();
            match c.input(0) {
                Arr::F32(x) => {
                    let t = r.infer(&c.vtype(0), axes.as_deref()).unwrap();
                    assert_eq!(t.shape, c.out_shape(0), "{}", c.name);
                    c.check_f32(&r.run(x, axes.as_deref(), out), 0);
                }
                Arr::I64(x) => {
                    let t = r.infer(&c.vtype(0), axes.as_deref()).unwrap();
                    assert_eq!((t.elem, t.shape), (Elem::I64, c.out_shape(0)));
                    c.check_i64(&r.run_i64(x, axes.as_deref(), out), 0);
                }
                other => panic!("{}: {other:?}", c.name),
            }
        }
    }

    #[test]
    fn reductions_refuse_bad_axes_and_types() {
        let r = |kind| Reduce {
            kind,
            keepdims: true,
            noop_with_empty_axes: false,
        };
        let x = vt(Elem::F32, &[2, 3]);
        assert_eq!(
            r(Kind::Sum).infer(&x, Some(&[1, -1])).unwrap_err(),
            "axes [1, -1] name axis 1 twice"
        );
        assert_eq!(
            r(Kind::Sum).infer(&x, Some(&[2])).unwrap_err(),
            "axis 2 is out of range for rank 2 (allowed -2..=1)"
        );
        assert_eq!(
            r(Kind::Mean).infer(&vt(Elem::I64, &[2]), None).unwrap_err(),
            "input must be F32, not I64"
        );
        let node = Node {
            op: "ReduceSum".into(),
            name: "r".into(),
            inputs: vec!["x".into()],
            outputs: vec!["y".into()],
            attrs: [("keepdims".to_string(), Attr::Int(2))].into(),
        };
        let e = Reduce::parse("ReduceSum", &mut Attrs::new(&node)).unwrap_err();
        assert_eq!(e, "attribute \"keepdims\" must be 0 or 1, not 2");
        // Symbols pass through kept axes; reduced ones become 1.
        let s = VType::new(Elem::F32, vec![D::Sym("b".into()), D::Fixed(7)]);
        let t = r(Kind::Max).infer(&s, Some(&[1])).unwrap();
        assert_eq!(t.shape, vec![D::Sym("b".into()), D::Fixed(1)]);
    }

    #[test]
    fn integer_reductions_of_known_content_are_known() {
        let r = |kind| Reduce {
            kind,
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let shape = VType::new(Elem::I64, vec![D::Fixed(3)]).with_known(Some(vec![
            K::Int(2),
            K::Int(3),
            K::Int(4),
        ]));
        let prod = r(Kind::Prod).infer(&shape, None).unwrap();
        assert_eq!((prod.shape, prod.known), (vec![], Some(vec![K::Int(24)])));
        let sym = VType::new(Elem::I64, vec![D::Fixed(2)])
            .with_known(Some(vec![K::Sym("b".into()), K::Int(3)]));
        assert_eq!(r(Kind::Sum).infer(&sym, None).unwrap().known, None);
    }

    #[test]
    fn large_reductions_split_over_cores_agree_with_a_plain_loop() {
        // [64, 40, 33] over axes 1 (a middle run) and 2 (the last), with a kept outer run.
        let shape = [64usize, 40, 33];
        let data: Vec<f32> = (0..64 * 40 * 33)
            .map(|i| ((i * 7) % 19) as f32 - 9.0)
            .collect();
        let x = Tensor {
            shape: shape.to_vec(),
            data,
        };
        let r = Reduce {
            kind: Kind::Sum,
            keepdims: false,
            noop_with_empty_axes: false,
        };
        let mid = r.run(&x, Some(&[1]), &[64, 33]);
        let last = r.run(&x, Some(&[2]), &[64, 40]);
        for a in 0..64 {
            for c in 0..33 {
                let want: f32 = (0..40).map(|b| x.data[(a * 40 + b) * 33 + c]).sum();
                assert_eq!(mid.data[a * 33 + c], want);
            }
            for b in 0..40 {
                let want: f32 = (0..33).map(|c| x.data[(a * 40 + b) * 33 + c]).sum();
                assert_eq!(last.data[a * 40 + b], want);
            }
        }
    }

    #[test]
    fn arg_extremes_match_the_reference() {
        for c in fixture::cases(&["ArgMax", "ArgMin"], 14) {
            let arg = parsed(c, |a| Arg::parse(&c.op, a));
            let out = c.outputs[0].shape();
            let got = match c.input(0) {
                Arr::F32(x) => {
                    let t = arg.infer(&c.vtype(0)).unwrap();
                    assert_eq!((t.elem, t.shape), (Elem::I64, c.out_shape(0)));
                    arg.run(x, out)
                }
                Arr::I64(x) => arg.run(x, out),
                other => panic!("{}: {other:?}", c.name),
            };
            c.check_i64(&got, 0);
        }
    }

    #[test]
    fn arg_extremes_pick_nan_and_refuse_empty_axes() {
        let x = Tensor {
            shape: vec![5],
            data: vec![1.0, f32::NAN, 7.0, f32::NAN, -3.0],
        };
        let arg = |max, last| Arg {
            max,
            axis: 0,
            keepdims: false,
            select_last_index: last,
        };
        assert_eq!(arg(true, false).run(&x, &[]).data, vec![1]);
        assert_eq!(arg(false, false).run(&x, &[]).data, vec![1]);
        assert_eq!(arg(true, true).run(&x, &[]).data, vec![3]);
        assert_eq!(arg(false, true).run(&x, &[]).data, vec![3]);
        assert_eq!(
            arg(true, false).infer(&vt(Elem::F32, &[0, 2])).unwrap_err(),
            "axis 0 of [0, 2] is empty: it has no extreme"
        );
        assert_eq!(
            arg(true, false).infer(&vt(Elem::F32, &[])).unwrap_err(),
            "axis 0 is out of range for rank 0 (allowed 0..=-1)"
        );
    }

    #[test]
    fn topk_matches_the_reference() {
        for c in fixture::cases(&["TopK"], 9) {
            let top = parsed(c, TopK::parse);
            let k = c.ints(1).unwrap()[0];
            let out = c.outputs[0].shape();
            match c.input(0) {
                Arr::F32(x) => {
                    let t = top.infer(&c.vtype(0), k).unwrap();
                    assert_eq!(t[0].shape, c.out_shape(0));
                    assert_eq!((t[1].elem, &t[1].shape), (Elem::I64, &c.out_shape(1)));
                    let (v, i) = top.run(x, k, out);
                    c.check_f32(&v, 0);
                    c.check_i64(&i, 1);
                }
                Arr::I64(x) => {
                    let (v, i) = top.run(x, k, out);
                    c.check_i64(&v, 0);
                    c.check_i64(&i, 1);
                }
                other => panic!("{}: {other:?}", c.name),
            }
        }
    }

    #[test]
    fn topk_ranks_nan_highest_and_checks_k() {
        let top = TopK {
            axis: -1,
            largest: true,
            sorted: true,
        };
        let x = Tensor {
            shape: vec![4],
            data: vec![2.0, f32::NAN, 5.0, -1.0],
        };
        let (_, i) = top.run(&x, 2, &[2]);
        assert_eq!(i.data, vec![1, 2]);
        let small = TopK {
            largest: false,
            ..top
        };
        assert_eq!(small.run(&x, 4, &[4]).1.data, vec![3, 0, 2, 1]);
        assert_eq!(
            top.infer(&vt(Elem::F32, &[3, 4]), 5).unwrap_err(),
            "k = 5 is more than the 4 elements along axis 1 of [3, 4]"
        );
        assert_eq!(
            top.infer(&vt(Elem::F32, &[4]), -1).unwrap_err(),
            "k = -1 must not be negative"
        );
        // Along a symbolic axis, k is checked at run time.
        let s = VType::new(Elem::F32, vec![D::Sym("n".into())]);
        assert_eq!(top.infer(&s, 3).unwrap()[0].shape, vec![D::Fixed(3)]);
    }

    #[test]
    fn log_softmax_and_hardmax_match_the_reference() {
        for c in fixture::cases(&["LogSoftmax", "Hardmax"], 9) {
            let node = c.node();
            let mut a = Attrs::new(&node);
            let axis = a.int("axis", -1).unwrap();
            a.finish().unwrap();
            let t = infer_along(axis, &c.vtype(0)).unwrap();
            assert_eq!(t.shape, c.out_shape(0));
            let x = c.f32(0).clone();
            let got = match c.op.as_str() {
                "LogSoftmax" => log_softmax(x, axis),
                _ => hardmax(x, axis),
            };
            c.check_f32(&got, 0);
        }
    }

    #[test]
    fn log_softmax_stays_finite_and_hardmax_takes_the_first_nan() {
        let x = Tensor {
            shape: vec![3],
            data: vec![-f32::INFINITY, 0.0, 1e30],
        };
        let r = log_softmax(x, 0);
        assert_eq!(r.data, vec![-f32::INFINITY, -1e30, 0.0]);
        let x = Tensor {
            shape: vec![4],
            data: vec![1.0, f32::NAN, 3.0, f32::NAN],
        };
        assert_eq!(hardmax(x, 0).data, vec![0.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn topk_in_one_pass_and_by_selection_agree_with_a_full_sort() {
        // 3 x 100 x 2 with many ties and a few NaN, along axis 1 (strided) and, transposed,
        // along the last axis (contiguous).
        let data: Vec<f32> = (0..600)
            .map(|i| match i % 97 {
                13 => f32::NAN,
                r => ((r * 31) % 9) as f32,
            })
            .collect();
        let x = Tensor {
            shape: vec![3, 100, 2],
            data,
        };
        for (k, largest) in [(5, true), (5, false), (40, true), (100, false)] {
            let top = TopK {
                axis: 1,
                largest,
                sorted: true,
            };
            let (v, i) = top.run(&x, k, &[3, k as usize, 2]);
            for o in 0..3 {
                for p in 0..2 {
                    let mut lane: Vec<(f32, usize)> = (0..100)
                        .map(|j| (x.data[(o * 100 + j) * 2 + p], j))
                        .collect();
                    lane.sort_by(|a, b| {
                        let by = if largest {
                            rank(&b.0, &a.0, true)
                        } else {
                            rank(&a.0, &b.0, true)
                        };
                        by.then(a.1.cmp(&b.1))
                    });
                    for (j, &(want_v, want_i)) in lane.iter().take(k as usize).enumerate() {
                        let at = (o * k as usize + j) * 2 + p;
                        assert_eq!(i.data[at], want_i as i64, "k {k}, lane {o} {p}, #{j}");
                        assert!(v.data[at] == want_v || (v.data[at].is_nan() && want_v.is_nan()));
                    }
                }
            }
        }
    }

    #[test]
    fn long_rows_find_nan_and_extremes() {
        let mut row: Vec<f32> = (0..100).map(|i| (i % 17) as f32).collect();
        let x = Tensor {
            shape: vec![1, 100],
            data: row.clone(),
        };
        let arg = |max, last| Arg {
            max,
            axis: 1,
            keepdims: false,
            select_last_index: last,
        };
        assert_eq!(arg(true, false).run(&x, &[1]).data, vec![16]);
        assert_eq!(arg(true, true).run(&x, &[1]).data, vec![84]);
        assert_eq!(arg(false, true).run(&x, &[1]).data, vec![85]);
        row[50] = f32::NAN;
        let x = Tensor {
            shape: vec![1, 100],
            data: row,
        };
        assert_eq!(arg(false, false).run(&x, &[1]).data, vec![50]);
        let max = Reduce {
            kind: Kind::Max,
            keepdims: false,
            noop_with_empty_axes: false,
        };
        assert!(max.run(&x, Some(&[1]), &[1]).data[0].is_nan());
        let lse = Reduce {
            kind: Kind::LogSumExp,
            ..max
        };
        let big = Tensor {
            shape: vec![40],
            data: vec![100.0; 40],
        };
        let r = lse.run(&big, None, &[]).data[0];
        assert!((r - (100.0 + 40f32.ln())).abs() < 1e-4, "{r}");
    }
}
