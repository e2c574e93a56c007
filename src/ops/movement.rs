//! Shape and data movement, for F32 and I64 values alike: Flatten, Reshape, Squeeze and
//! Unsqueeze (which only relabel the shape), Transpose, Slice, Concat and Gather.

use super::shape::{self, counts_differ, fmt_shape, quotient, same, VType, D, K};
use super::Attrs;
use crate::tensor::Elem;
use crate::tensor::{Tensor, Value};

/// The product of some dimensions, as well as it is known.
fn product(dims: &[D]) -> D {
    match shape::count(dims) {
        Some(c) if c.syms.is_empty() => D::Fixed(c.coef),
        Some(c) if c.coef == 1 && c.syms.len() == 1 => D::Sym(c.syms[0].clone()),
        _ => D::Any,
    }
}

pub(super) fn infer_flatten(axis: i64, x: &VType) -> Result<VType, String> {
    let r = x.rank() as i64;
    let ax = if axis < 0 { axis + r } else { axis };
    if !(0..=r).contains(&ax) {
        return Err(format!(
            "axis {axis} is out of range for rank {r} (allowed {}..={r})",
            -r
        ));
    }
    let (a, b) = x.shape.split_at(ax as usize);
    Ok(VType::new(x.elem, vec![product(a), product(b)]).with_known(x.known.clone()))
}

pub(super) fn check_reshape(shape: &[i64]) -> Result<(), String> {
    if shape.len() > crate::format::MAX_RANK {
        return Err(format!(
            "attribute \"shape\" has more than {} dimensions",
            crate::format::MAX_RANK
        ));
    }
    if let Some(d) = shape.iter().find(|&&d| d < -1) {
        return Err(format!(
            "attribute \"shape\" holds {d}; only -1 (inferred), 0 (copied) and sizes are allowed"
        ));
    }
    if shape.iter().filter(|&&d| d == -1).count() > 1 {
        return Err("attribute \"shape\" holds more than one -1".into());
    }
    Ok(())
}

#[cfg(test)]
fn infer_reshape(spec: &[i64], x: &VType) -> Result<VType, String> {
    let spec: Vec<K> = spec.iter().map(|&d| K::Int(d)).collect();
    infer_reshape_to(&spec, x, false)
}

/// `Reshape` to a target that may hold symbols (a shape computed in the graph): 0 copies the
/// input's dimension (with `allowzero`, it is a size of 0), -1 takes what is left, a symbol or
/// derived size stands for itself.
pub(super) fn infer_reshape_to(spec: &[K], x: &VType, allowzero: bool) -> Result<VType, String> {
    let shown = || {
        let parts: Vec<String> = spec.iter().map(K::to_string).collect();
        format!("[{}]", parts.join(", "))
    };
    if spec.len() > crate::format::MAX_RANK {
        return Err(format!(
            "the target shape has more than {} dimensions",
            crate::format::MAX_RANK
        ));
    }
    if spec.iter().filter(|&d| *d == K::Int(-1)).count() > 1 {
        return Err(format!(
            "the target shape {} holds more than one -1",
            shown()
        ));
    }
    if allowzero && spec.contains(&K::Int(0)) && spec.contains(&K::Int(-1)) {
        return Err(format!(
            "the target shape {} holds both 0 and -1, which allowzero makes ambiguous",
            shown()
        ));
    }
    let mut out = Vec::with_capacity(spec.len());
    for (i, d) in spec.iter().enumerate() {
        out.push(match d {
            K::Int(0) if allowzero => D::Fixed(0),
            K::Int(0) => x.shape.get(i).cloned().ok_or_else(|| {
                format!(
                    "shape {} copies dimension {i} (a 0), but the input {} has rank {}",
                    shown(),
                    fmt_shape(&x.shape),
                    x.rank()
                )
            })?,
            K::Int(-1) => D::Any, // filled below
            K::Int(n) if *n > 0 => D::Fixed(*n as u64),
            K::Int(n) => {
                return Err(format!(
                    "the target shape {} holds {n}; only -1 (inferred), 0 (copied) and sizes are allowed",
                    shown()
                ))
            }
            K::Sym(s) => D::Sym(s.clone()),
            K::Any => D::Any,
        });
    }
    if let Some(i) = spec.iter().position(|d| *d == K::Int(-1)) {
        let known: Vec<D> = (out.iter().enumerate())
            .filter(|&(j, _)| j != i)
            .map(|(_, d)| d.clone())
            .collect();
        out[i] = quotient(&x.shape, &known)
            .map_err(|e| format!("cannot reshape {} to {}: {e}", fmt_shape(&x.shape), shown()))?;
    } else if counts_differ(&x.shape, &out) {
        return Err(format!(
            "cannot reshape {} to {}: the element count changes",
            fmt_shape(&x.shape),
            fmt_shape(&out)
        ));
    }
    Ok(VType::new(x.elem, out).with_known(x.known.clone()))
}

pub(super) fn normalize_axes(axes: &[i64], rank: usize, what: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::with_capacity(axes.len());
    for &a in axes {
        let ax = shape::axis(a, rank, what)?;
        if out.contains(&ax) {
            return Err(format!("{what} {axes:?} names axis {ax} twice"));
        }
        out.push(ax);
    }
    Ok(out)
}

pub(super) fn infer_squeeze(axes: Option<&[i64]>, x: &VType) -> Result<VType, String> {
    let drop: Vec<usize> = match axes {
        Some(a) => {
            let axes = normalize_axes(a, x.rank(), "axes")?;
            for &ax in &axes {
                if matches!(x.shape[ax], D::Fixed(n) if n != 1) {
                    return Err(format!(
                        "axis {ax} of {} has size {}, not 1",
                        fmt_shape(&x.shape),
                        x.shape[ax]
                    ));
                }
            }
            axes
        }
        None => {
            if x.shape.iter().any(|d| d.fixed().is_none()) {
                return Err(format!(
                    "without \"axes\", which axes of {} have size 1 is not known before run time; give axes",
                    fmt_shape(&x.shape)
                ));
            }
            (0..x.rank())
                .filter(|&i| x.shape[i] == D::Fixed(1))
                .collect()
        }
    };
    let shape = (0..x.rank())
        .filter(|i| !drop.contains(i))
        .map(|i| x.shape[i].clone())
        .collect();
    Ok(VType::new(x.elem, shape).with_known(x.known.clone()))
}

pub(super) fn infer_unsqueeze(axes: &[i64], x: &VType) -> Result<VType, String> {
    let rank = x.rank() + axes.len();
    if rank > crate::format::MAX_RANK {
        return Err(format!(
            "the output would have more than {} dimensions",
            crate::format::MAX_RANK
        ));
    }
    let axes = normalize_axes(axes, rank, "axes")?;
    let mut rest = x.shape.iter();
    let shape = (0..rank)
        .map(|i| {
            if axes.contains(&i) {
                D::Fixed(1)
            } else {
                rest.next().expect("counted").clone()
            }
        })
        .collect();
    Ok(VType::new(x.elem, shape).with_known(x.known.clone()))
}

fn permutation(perm: Option<&[i64]>, rank: usize) -> Result<Vec<usize>, String> {
    match perm {
        None => Ok((0..rank).rev().collect()),
        Some(p) => {
            let mut seen = vec![false; rank];
            let ok = p.len() == rank
                && p.iter().all(|&a| {
                    usize::try_from(a)
                        .is_ok_and(|a| a < rank && !std::mem::replace(&mut seen[a], true))
                });
            if !ok {
                return Err(format!("perm {p:?} is not a permutation of 0..{rank}"));
            }
            Ok(p.iter().map(|&a| a as usize).collect())
        }
    }
}

pub(super) fn infer_transpose(perm: Option<&[i64]>, x: &VType) -> Result<VType, String> {
    let perm = permutation(perm, x.rank())?;
    Ok(VType::new(
        x.elem,
        perm.iter().map(|&a| x.shape[a].clone()).collect(),
    ))
}

/// Row-major strides of `shape`.
pub(super) fn strides(shape: &[usize]) -> Vec<usize> {
    let mut st = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        st[i] = st[i + 1] * shape[i + 1];
    }
    st
}

/// Copies `src` into a new tensor of shape `out`, whose element at index `(i0, i1, ...)` is
/// `src[base + sum(ik * step[k])]`: one kernel for Transpose and Slice.
///
/// Axes are merged first where they read on as one (size-1 axes dropped), so that most
/// transpositions come down to copying contiguous runs. The output is then written row by row
/// (along its last axis), walking the outer axes without a division per row; where the axis
/// before the last reads contiguously (a transposition of the last two), rows go in bands of
/// [`TILE`] and columns in tiles of as many, so that both sides stay in cache.
pub(super) fn strided<T: Copy + Send + Sync + Default>(
    src: &[T],
    base: isize,
    step: &[isize],
    out: &[usize],
) -> Vec<T> {
    let total: usize = out.iter().product();
    let mut data = vec![T::default(); total];
    if total == 0 {
        return data;
    }
    let mut axes = merged(out, step);
    let last = axes.pop().unwrap_or((1, 0));
    let band = match axes.last() {
        Some(&(_, 1)) if last.1 != 1 => TILE,
        _ => usize::MAX,
    };
    if axes.is_empty() {
        axes.push((1, 0));
    }
    let n = last.0;
    let per = (COPY_BLOCK / n).max(1);
    super::chunks(
        &mut data,
        per * n,
        super::spread(total, 1 << 15),
        |t, block| {
            let mut walk = Walk::at(&axes, base, t * per);
            let mut rest = block;
            while !rest.is_empty() {
                let g = band.min(walk.left()).min(rest.len() / n);
                let (dst, tail) = std::mem::take(&mut rest).split_at_mut(g * n);
                copy_rows(src, walk.off, walk.inner_step(), last, dst);
                walk.advance(g);
                rest = tail;
            }
        },
    );
    data
}

/// Elements one task of [`strided`] copies.
const COPY_BLOCK: usize = 1 << 14;

/// Rows and columns of a tile of a transposition in [`strided`].
const TILE: usize = 16;

/// The `(size, step)` of each axis of `out` read with `step`, where neighbours that read on as
/// one are merged and axes of size 1 dropped.
fn merged(out: &[usize], step: &[isize]) -> Vec<(usize, isize)> {
    let mut axes: Vec<(usize, isize)> = Vec::with_capacity(out.len());
    for (&n, &s) in out.iter().zip(step) {
        match axes.last_mut() {
            _ if n == 1 => {}
            Some((m, t)) if *t == s * n as isize => {
                *m *= n;
                *t = s;
            }
            _ => axes.push((n, s)),
        }
    }
    axes
}

/// A position in the outer axes (`(size, step)`, at least one) of [`strided`]: the index along
/// each and the source offset it reads from.
struct Walk<'a> {
    axes: &'a [(usize, isize)],
    idx: Vec<usize>,
    off: isize,
}

impl<'a> Walk<'a> {
    /// At output row `row`, from source offset `base`.
    fn at(axes: &'a [(usize, isize)], base: isize, mut row: usize) -> Walk<'a> {
        let mut idx = vec![0; axes.len()];
        let mut off = base;
        for (i, &(n, s)) in idx.iter_mut().zip(axes).rev() {
            *i = row % n;
            row /= n;
            off += *i as isize * s;
        }
        Walk { axes, idx, off }
    }

    /// Rows left along the innermost outer axis.
    fn left(&self) -> usize {
        let k = self.axes.len() - 1;
        self.axes[k].0 - self.idx[k]
    }

    /// The source step from one row to the next along the innermost outer axis.
    fn inner_step(&self) -> isize {
        self.axes[self.axes.len() - 1].1
    }

    /// `g` rows on (at most [`Walk::left`]), carrying into the outer axes.
    fn advance(&mut self, g: usize) {
        let mut k = self.axes.len() - 1;
        self.idx[k] += g;
        self.off += g as isize * self.axes[k].1;
        while k > 0 && self.idx[k] == self.axes[k].0 {
            self.off -= self.axes[k].0 as isize * self.axes[k].1;
            self.idx[k] = 0;
            k -= 1;
            self.idx[k] += 1;
            self.off += self.axes[k].1;
        }
    }
}

/// Fills `dst`, rows of `n`, where row `k` element `j` is `src[off + k * row_step + j * s]`.
fn copy_rows<T: Copy>(
    src: &[T],
    off: isize,
    row_step: isize,
    (n, s): (usize, isize),
    dst: &mut [T],
) {
    let at = |k: usize, j: usize| (off + k as isize * row_step + j as isize * s) as usize;
    if s == 1 {
        for (k, d) in dst.chunks_exact_mut(n).enumerate() {
            d.copy_from_slice(&src[at(k, 0)..at(k, 0) + n]);
        }
    } else if row_step == 1 {
        // A transposition: tiles of TILE columns, so that the rows read stay in cache.
        let rows = dst.len() / n;
        for j0 in (0..n).step_by(TILE) {
            let j1 = (j0 + TILE).min(n);
            for k in 0..rows {
                for (j, d) in (j0..j1).zip(&mut dst[k * n + j0..k * n + j1]) {
                    *d = src[at(k, j)];
                }
            }
        }
    } else {
        for (k, d) in dst.chunks_exact_mut(n).enumerate() {
            for (j, d) in d.iter_mut().enumerate() {
                *d = src[at(k, j)];
            }
        }
    }
}

pub(super) fn transpose(x: &Value, perm: Option<&[i64]>, out: &[usize]) -> Value {
    let perm = permutation(perm, x.shape().len()).expect("inference checked the permutation");
    let st = strides(x.shape());
    let step: Vec<isize> = perm.iter().map(|&a| st[a] as isize).collect();
    crate::tensor::each_value!(x, t => Tensor { shape: out.to_vec(), data: strided(&t.data, 0, &step, out) })
}

/// `Slice`'s attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slice {
    pub starts: Vec<i64>,
    pub ends: Vec<i64>,
    pub axes: Option<Vec<i64>>,
    pub steps: Option<Vec<i64>>,
}

impl Slice {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Slice, String> {
        let starts = a
            .ints("starts")?
            .ok_or("attribute \"starts\" is required (or, in op-set 3, inputs starts and ends)")?;
        let ends = a.ints("ends")?.ok_or("attribute \"ends\" is required")?;
        let s = Slice {
            starts,
            ends,
            axes: a.ints("axes")?,
            steps: a.ints("steps")?,
        };
        s.check()?;
        Ok(s)
    }

    fn check(&self) -> Result<(), String> {
        let n = self.starts.len();
        if self.ends.len() != n
            || self.axes.as_ref().is_some_and(|x| x.len() != n)
            || self.steps.as_ref().is_some_and(|x| x.len() != n)
        {
            return Err("starts, ends, axes and steps must have the same length".into());
        }
        if self.steps.as_ref().is_some_and(|s| s.contains(&0)) {
            return Err("a step of 0 is not allowed".into());
        }
        Ok(())
    }

    /// Per axis of a value of rank `rank`: `(axis, start, end, step)`.
    fn plan(&self, rank: usize) -> Result<Vec<(usize, i64, i64, i64)>, String> {
        let axes: Vec<i64> = self
            .axes
            .clone()
            .unwrap_or_else(|| (0..self.starts.len() as i64).collect());
        let axes = normalize_axes(&axes, rank, "axes")?;
        Ok((0..axes.len())
            .map(|i| {
                (
                    axes[i],
                    self.starts[i],
                    self.ends[i],
                    self.steps.as_ref().map_or(1, |s| s[i]),
                )
            })
            .collect())
    }

    pub(super) fn infer(&self, x: &VType) -> Result<VType, String> {
        let mut shape = x.shape.clone();
        let mut known = None;
        for (ax, start, end, step) in self.plan(x.rank())? {
            shape[ax] = match x.shape[ax].fixed() {
                Some(d) => {
                    let (first, count) = clamp(d, start, end, step);
                    if x.rank() == 1 {
                        known = super::known::slice(x, first, step, count);
                    }
                    D::Fixed(count)
                }
                None if start == 0 && step == 1 && end >= i32::MAX as i64 => x.shape[ax].clone(),
                None => D::Any,
            };
        }
        let known = if self.starts.is_empty() {
            x.known.clone()
        } else {
            known
        };
        Ok(VType::new(x.elem, shape).with_known(known))
    }

    /// `Slice` with its parameters as inputs (op-set 3), whose content inference knows:
    /// starts and ends may hold sizes known only at run time (`x[:, :n]`), which leave the
    /// dimensions they cut unknown until then.
    pub(super) fn infer_inputs(x: &VType, params: [Option<&VType>; 4]) -> Result<VType, String> {
        use super::known::{param, param_ints};
        let [starts, ends, axes, steps] = params;
        let starts = param(starts, "input \"starts\"")?.expect("parse checked it is given");
        let ends = param(ends, "input \"ends\"")?.expect("parse checked it is given");
        let axes = param_ints(axes, "input \"axes\"")?;
        let steps = param_ints(steps, "input \"steps\"")?;
        let ints = |k: &[K]| k.iter().map(K::int).collect::<Option<Vec<i64>>>();
        let check = |starts, ends| -> Result<Slice, String> {
            let s = Slice {
                starts,
                ends,
                axes: axes.clone(),
                steps: steps.clone(),
            };
            s.check()?;
            Ok(s)
        };
        if let (Some(s), Some(e)) = (ints(&starts), ints(&ends)) {
            return check(s, e)?.infer(x);
        }
        // Some bound is a size known only at run time: check what can be checked with zeros
        // there, and leave the axes those bounds cut unknown.
        let zeros = |k: &[K]| k.iter().map(|k| k.int().unwrap_or(0)).collect();
        let s = check(zeros(&starts), zeros(&ends))?;
        let mut shape = x.shape.clone();
        for (i, (ax, _, _, step)) in s.plan(x.rank())?.into_iter().enumerate() {
            let whole = starts[i] == K::Int(0)
                && step == 1
                && matches!((&ends[i], &x.shape[ax]), (K::Sym(e), D::Sym(d)) if e == d);
            if !whole && (starts[i].int().is_none() || ends[i].int().is_none()) {
                shape[ax] = D::Any;
            } else if !whole {
                shape[ax] = s.infer(&VType::new(x.elem, x.shape.clone()))?.shape[ax].clone();
            }
        }
        Ok(VType::new(x.elem, shape))
    }

    /// A `Slice` of the parameter values given as inputs at run time.
    pub(super) fn of_inputs(params: [Option<&Tensor<i64>>; 4]) -> Result<Slice, String> {
        let [starts, ends, axes, steps] = params.map(|t| t.map(|t| t.data.clone()));
        let s = Slice {
            starts: starts.expect("parse checked it is given"),
            ends: ends.expect("parse checked it is given"),
            axes,
            steps,
        };
        s.check()?;
        Ok(s)
    }

    pub(super) fn run(&self, x: &Value, out: &[usize]) -> Value {
        let shape = x.shape();
        let st = strides(shape);
        let mut base = 0isize;
        let mut step: Vec<isize> = st.iter().map(|&s| s as isize).collect();
        for (ax, start, end, s) in self.plan(shape.len()).expect("inference checked the axes") {
            let (first, _) = clamp(shape[ax] as u64, start, end, s);
            base += first as isize * st[ax] as isize;
            step[ax] = st[ax] as isize * s as isize;
        }
        crate::tensor::each_value!(x, t => Tensor { shape: out.to_vec(), data: strided(&t.data, base, &step, out) })
    }
}

/// ONNX's clamping of a slice of a dimension of size `d`: the first index and the count.
fn clamp(d: u64, start: i64, end: i64, step: i64) -> (i64, u64) {
    if d == 0 {
        return (0, 0);
    }
    let d = d.min(i64::MAX as u64) as i64;
    let fix = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (fix(start), fix(end));
    if step > 0 {
        let (s, e) = (s.clamp(0, d), e.clamp(0, d));
        (
            s,
            if e > s {
                ((e - s) as u64).div_ceil(step as u64)
            } else {
                0
            },
        )
    } else {
        let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
        (
            s,
            if s > e {
                ((s - e) as u64).div_ceil(step.unsigned_abs())
            } else {
                0
            },
        )
    }
}

pub(super) fn infer_concat(axis: i64, ins: &[&VType]) -> Result<VType, String> {
    let first = ins[0];
    let ax = shape::axis(axis, first.rank(), "axis")?;
    let mut shape = first.shape.clone();
    let mut along = vec![first.shape[ax].clone()];
    for (i, t) in ins.iter().enumerate().skip(1) {
        if t.elem != first.elem || t.rank() != first.rank() {
            return Err(format!(
                "input {i} is {} {}, input 0 is {} {}: inputs must share dtype and rank",
                t.elem.name(),
                fmt_shape(&t.shape),
                first.elem.name(),
                fmt_shape(&first.shape)
            ));
        }
        for k in (0..t.rank()).filter(|&k| k != ax) {
            shape[k] = same(&shape[k], &t.shape[k], || {
                format!(
                    "input {i} {} does not match input 0 {} off axis {ax}",
                    fmt_shape(&t.shape),
                    fmt_shape(&first.shape)
                )
            })?;
        }
        along.push(t.shape[ax].clone());
    }
    shape[ax] = match shape::count(&along) {
        _ if along.len() == 1 => along[0].clone(),
        _ if along.iter().all(|d| d.fixed().is_some()) => {
            D::Fixed(along.iter().map(|d| d.fixed().expect("fixed")).sum())
        }
        _ => D::Any,
    };
    Ok(VType::new(first.elem, shape))
}

pub(super) fn concat(ins: &[&Value], axis: i64, out: &[usize]) -> Value {
    let ax = shape::axis(axis, out.len(), "axis").expect("inference checked the axis");
    let outer: usize = out[..ax].iter().product();
    let inner: usize = out[ax + 1..].iter().product();
    fn join<T: Copy>(parts: Vec<(&[T], usize)>, outer: usize, total: usize) -> Vec<T> {
        let mut data = Vec::with_capacity(total);
        for o in 0..outer {
            for (src, block) in &parts {
                data.extend_from_slice(&src[o * block..(o + 1) * block]);
            }
        }
        data
    }
    let total: usize = out.iter().product();
    let shape = out.to_vec();
    macro_rules! join_as {
        ($variant:ident) => {{
            let parts = (ins.iter())
                .map(|v| match v {
                    Value::$variant(t) => (&t.data[..], v.shape()[ax] * inner),
                    _ => unreachable!("inference checked that the inputs share a dtype"),
                })
                .collect();
            Value::$variant(Tensor {
                shape,
                data: join(parts, outer, total),
            })
        }};
    }
    match ins[0] {
        Value::F32(_) => join_as!(F32),
        Value::I64(_) => join_as!(I64),
        Value::Bool(_) => join_as!(Bool),
    }
}

pub(super) fn infer_gather(axis: i64, data: &VType, indices: &VType) -> Result<VType, String> {
    if indices.elem != Elem::I64 {
        return Err(format!("indices must be I64, not {}", indices.elem.name()));
    }
    let ax = shape::axis(axis, data.rank(), "axis")?;
    let mut shape = data.shape[..ax].to_vec();
    shape.extend(indices.shape.iter().cloned());
    shape.extend(data.shape[ax + 1..].iter().cloned());
    if shape.len() > crate::format::MAX_RANK {
        return Err(format!(
            "the output would have more than {} dimensions",
            crate::format::MAX_RANK
        ));
    }
    Ok(VType::new(data.elem, shape))
}

pub(super) fn gather(
    data: &Value,
    indices: &Tensor<i64>,
    axis: i64,
    out: &[usize],
) -> Result<Value, String> {
    let shape = data.shape();
    let ax = shape::axis(axis, shape.len(), "axis").expect("inference checked the axis");
    let d = shape[ax];
    let outer: usize = shape[..ax].iter().product();
    let inner: usize = shape[ax + 1..].iter().product();
    let rows: Vec<usize> = indices
        .data
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + d as i64 } else { i };
            usize::try_from(j)
                .ok()
                .filter(|&j| j < d)
                .ok_or_else(|| format!("index {i} is out of range for axis {ax} of size {d}"))
        })
        .collect::<Result<_, _>>()?;
    fn pick<T: Copy>(src: &[T], rows: &[usize], outer: usize, d: usize, inner: usize) -> Vec<T> {
        let mut data = Vec::with_capacity(outer * rows.len() * inner);
        for o in 0..outer {
            for &r in rows {
                let at = (o * d + r) * inner;
                data.extend_from_slice(&src[at..at + inner]);
            }
        }
        data
    }
    Ok(
        crate::tensor::each_value!(data, t => Tensor { shape: out.to_vec(), data: pick(&t.data, &rows, outer, d, inner) }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_clamp_as_onnx_does() {
        assert_eq!(clamp(5, 1, 1000, 1), (1, 4));
        assert_eq!(clamp(5, -2, 5, 1), (3, 2));
        assert_eq!(clamp(5, 0, 5, 2), (0, 3));
        assert_eq!(clamp(5, -1, -1000, -1), (4, 5));
        assert_eq!(clamp(5, 4, 1, -2), (4, 2));
        assert_eq!(clamp(5, 3, 3, 1), (3, 0));
    }

    #[test]
    fn reshape_infers_minus_one_and_copies_zero() {
        let x = VType::new(
            Elem::F32,
            vec![D::Sym("b".into()), D::Fixed(4), D::Fixed(4)],
        );
        let r = infer_reshape(&[0, -1], &x).unwrap();
        assert_eq!(r.shape, vec![D::Sym("b".into()), D::Fixed(16)]);
        let fixed = VType::new(Elem::F32, vec![D::Fixed(3), D::Fixed(4)]);
        assert!(infer_reshape(&[5, 2], &fixed).is_err());
        assert!(infer_reshape(&[5, -1], &fixed).is_err());
    }

    #[test]
    fn transpose_moves_elements() {
        let x = Value::F32(Tensor {
            shape: vec![2, 3],
            data: vec![0., 1., 2., 3., 4., 5.],
        });
        let t = transpose(&x, None, &[3, 2]);
        assert_eq!(t.f32().data, vec![0., 3., 1., 4., 2., 5.]);
    }

    /// [`strided`] element by element, as it was written before it merged axes and copied
    /// runs and tiles.
    fn strided_by_element(src: &[i64], base: isize, step: &[isize], out: &[usize]) -> Vec<i64> {
        let total: usize = out.iter().product();
        (0..total)
            .map(|mut e| {
                let mut off = base;
                for (&n, &s) in out.iter().zip(step).rev() {
                    off += (e % n) as isize * s;
                    e /= n;
                }
                src[off as usize]
            })
            .collect()
    }

    #[test]
    fn transposes_and_slices_copy_what_element_by_element_indexing_reads() {
        // Every permutation of shapes with size-1 axes, runs that merge, small and large
        // transposed tiles (with partial tiles), and more than one task's worth of rows.
        let shapes: [&[usize]; 7] = [
            &[2, 3, 4],
            &[1, 12, 5, 1, 8],
            &[3, 4, 12, 8],
            &[37, 19],
            &[2, 300, 70],
            &[1, 1],
            &[5],
        ];
        for shape in shapes {
            let n: usize = shape.iter().product();
            let src: Vec<i64> = (0..n as i64).collect();
            let st = strides(shape);
            let rank = shape.len();
            let mut perm: Vec<usize> = (0..rank).collect();
            // Heap's algorithm: every permutation of the axes.
            let mut c = vec![0; rank];
            let mut i = 0;
            loop {
                let out: Vec<usize> = perm.iter().map(|&a| shape[a]).collect();
                let step: Vec<isize> = perm.iter().map(|&a| st[a] as isize).collect();
                assert_eq!(
                    strided(&src, 0, &step, &out),
                    strided_by_element(&src, 0, &step, &out),
                    "shape {shape:?} perm {perm:?}"
                );
                while i < rank && c[i] >= i {
                    c[i] = 0;
                    i += 1;
                }
                if i >= rank {
                    break;
                }
                perm.swap(if i % 2 == 0 { 0 } else { c[i] }, i);
                c[i] += 1;
                i = 0;
            }
        }
        // Slices with negative and larger steps, from an offset.
        let src: Vec<i64> = (0..6 * 7 * 9).collect();
        for (base, step, out) in [
            (62isize, vec![-63isize, 9, -2], vec![1usize, 6, 4]),
            (8, vec![63, -1], vec![6, 9]),
            (0, vec![126, 18, 3], vec![3, 4, 3]),
            (377, vec![-63, -9, -1], vec![6, 7, 9]),
        ] {
            assert_eq!(
                strided(&src, base, &step, &out),
                strided_by_element(&src, base, &step, &out),
                "base {base} step {step:?} out {out:?}"
            );
        }
    }
}
