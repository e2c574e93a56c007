//! ConvTranspose (ONNX op-set 22) over 1, 2 or 3 spatial axes, with groups, strides, pads,
//! dilations, output_padding, output_shape and auto_pad.
//!
//! Each image and group is one SGEMM, `W_gᵀ · X_g`, giving for every input position and every
//! output channel and kernel cell the value that cell adds to the output; those columns are
//! then added into place (col2im), each output channel on its own core. The product runs over
//! blocks of input rows so that the column buffer each thread keeps stays small. 1-D and 2-D
//! run as 3-D with leading axes of size 1.

use super::conv::MAX_WINDOW;
use super::layout::capped;
use super::linalg::gemm;
use super::shape::{fmt_shape, same, VType, D};
use super::{chunks, float, spread, Attrs};
use crate::memory::MAX_ELEMENTS;
use crate::sys::MatRef;
use crate::tensor::{Elem, Tensor};

/// `auto_pad`: how the pads are found when they are not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AutoPad {
    /// From `pads`, or from `output_shape` (an odd total puts the extra one at the start).
    NotSet,
    /// So that the output is `input * stride` long (or as long as the product, if that is
    /// shorter), an odd total's extra at the end.
    SameUpper,
    /// As `SameUpper`, an odd total's extra at the start.
    SameLower,
    /// No padding.
    Valid,
}

/// `ConvTranspose`'s attributes. The lists hold one value per spatial axis (pads two: all
/// starts, then all ends); `None` takes ONNX's default.
#[derive(Debug, Clone, PartialEq)]
pub struct ConvTranspose {
    pub auto_pad: AutoPad,
    pub group: usize,
    pub kernel_shape: Option<Vec<usize>>,
    pub strides: Option<Vec<usize>>,
    pub pads: Option<Vec<usize>>,
    pub dilations: Option<Vec<usize>>,
    pub output_padding: Option<Vec<usize>>,
    pub output_shape: Option<Vec<usize>>,
}

/// Floats of input-row blocks whose columns one product makes, at most (unless a single row
/// needs more): 4 MiB, which bounds the buffer each thread keeps.
const COLUMNS: usize = 1 << 20;

/// The geometry of one spatial axis, once its input length is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Axis {
    /// Input length, kernel size, stride, dilation.
    n: usize,
    k: usize,
    s: usize,
    d: usize,
    /// Padding at the start: output position `i * s + j * d - begin` gets input `i`'s
    /// contribution through kernel cell `j`.
    begin: usize,
    /// Output length.
    out: usize,
}

/// An axis of length 1 that changes nothing: what 1-D and 2-D get to run as 3-D.
const FLAT: Axis = Axis {
    n: 1,
    k: 1,
    s: 1,
    d: 1,
    begin: 0,
    out: 1,
};

fn list(
    a: &mut Attrs<'_>,
    key: &'static str,
    min: i64,
    max: i64,
) -> Result<Option<Vec<usize>>, String> {
    let Some(v) = a.ints(key)? else {
        return Ok(None);
    };
    if v.is_empty() || v.iter().any(|&x| x < min || x > max) {
        return Err(format!(
            "attribute {key:?} = {v:?} must hold integers in {min}..={max}"
        ));
    }
    Ok(Some(v.iter().map(|&x| x as usize).collect()))
}

impl ConvTranspose {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<ConvTranspose, String> {
        let auto_pad = match a.text("auto_pad")?.unwrap_or("NOTSET") {
            "NOTSET" => AutoPad::NotSet,
            "SAME_UPPER" => AutoPad::SameUpper,
            "SAME_LOWER" => AutoPad::SameLower,
            "VALID" => AutoPad::Valid,
            other => {
                return Err(format!(
                "attribute \"auto_pad\" = {other:?} is not supported (NOTSET, SAME_UPPER, SAME_LOWER or VALID)"
            ))
            }
        };
        let group = a.int("group", 1)?;
        if !(1..=MAX_WINDOW).contains(&group) {
            return Err(format!(
                "attribute \"group\" = {group} must be in 1..={MAX_WINDOW}"
            ));
        }
        let c = ConvTranspose {
            auto_pad,
            group: group as usize,
            kernel_shape: list(a, "kernel_shape", 1, MAX_WINDOW)?,
            strides: list(a, "strides", 1, MAX_WINDOW)?,
            pads: list(a, "pads", 0, MAX_WINDOW)?,
            dilations: list(a, "dilations", 1, MAX_WINDOW)?,
            output_padding: list(a, "output_padding", 0, MAX_WINDOW)?,
            output_shape: list(a, "output_shape", 1, MAX_ELEMENTS as i64)?,
        };
        if c.pads.is_some() && auto_pad != AutoPad::NotSet {
            return Err("attribute \"pads\" goes with auto_pad NOTSET only".into());
        }
        // The spec says output_shape overrides pads; onnxruntime's shape inference and ONNX's
        // reference implementation each read the pair differently, so it is refused.
        if c.pads.is_some() && c.output_shape.is_some() {
            return Err("give attribute \"pads\" or \"output_shape\", not both".into());
        }
        let lens = [
            ("kernel_shape", c.kernel_shape.as_ref().map(Vec::len)),
            ("strides", c.strides.as_ref().map(Vec::len)),
            ("pads", c.pads.as_ref().map(|p| p.len() / 2)),
            ("dilations", c.dilations.as_ref().map(Vec::len)),
            ("output_padding", c.output_padding.as_ref().map(Vec::len)),
            ("output_shape", c.output_shape.as_ref().map(Vec::len)),
        ];
        let odd_pads = c.pads.as_ref().is_some_and(|p| p.len() % 2 != 0);
        let mut given = lens.iter().filter_map(|&(k, n)| Some((k, n?)));
        if let Some((_, n)) = given.next() {
            if odd_pads || given.any(|(_, m)| m != n) || n > 3 {
                return Err(format!(
                    "attributes {} must give 1, 2 or 3 spatial axes alike (pads two values per axis)",
                    lens.iter()
                        .filter(|(_, n)| n.is_some())
                        .map(|(k, _)| *k)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        Ok(c)
    }

    /// Attribute `v`'s value for spatial axis `i`, or `default`.
    fn at(v: &Option<Vec<usize>>, i: usize, default: usize) -> usize {
        v.as_ref().map_or(default, |v| v[i])
    }

    /// The output length of spatial axis `i` (of `axes`) for input length `n` and kernel `k`,
    /// with its geometry when both are known.
    fn axis(&self, i: usize, axes: usize, n: &D, k: &D) -> Result<(D, Option<Axis>), String> {
        let s = Self::at(&self.strides, i, 1);
        let d = Self::at(&self.dilations, i, 1);
        let op = Self::at(&self.output_padding, i, 0);
        let given = self.output_shape.as_ref().map(|o| o[i]);
        let (Some(n), Some(k)) = (n.fixed(), k.fixed()) else {
            let out = match (given, self.auto_pad) {
                (Some(o), _) => D::Fixed(o as u64),
                (None, AutoPad::SameUpper | AutoPad::SameLower) if s == 1 => n.clone(),
                _ => D::Any,
            };
            return Ok((out, None));
        };
        if n == 0 {
            return Err(format!("spatial axis {i} of the input is empty"));
        }
        // Every term is at most 2^40 * 2^20, far inside i128.
        let (n, k) = (n as i128, k as i128);
        let (s, d, op) = (s as i128, d as i128, op as i128);
        let natural = s * (n - 1) + op + (k - 1) * d + 1;
        // The padding to reach a target length, split as auto_pad says. A target longer than
        // the product pads nothing (as onnxruntime and ONNX's shape inference have it).
        let split = |total: i128| match self.auto_pad {
            AutoPad::SameUpper => total / 2,
            _ => total - total / 2,
        };
        let (begin, out) = match (given, self.auto_pad) {
            // The rest of a longer output is the bias alone.
            (Some(out), _) => (split((natural - out as i128).max(0)), out as i128),
            // Input * stride long, unless the product is shorter: then the product.
            (None, AutoPad::SameUpper | AutoPad::SameLower) => {
                let total = (natural - n * s).max(0);
                (split(total), natural - total)
            }
            _ => {
                let (b, e) = match (&self.pads, self.auto_pad) {
                    (Some(p), AutoPad::NotSet) => (p[i] as i128, p[i + axes] as i128),
                    _ => (0, 0),
                };
                (b, natural - b - e)
            }
        };
        if out < 1 {
            return Err(format!(
                "spatial axis {i}: the output would be {out} long (input {n}, kernel {k}, stride {s}, dilation {d}, output_padding {op}, pads)"
            ));
        }
        if out > MAX_ELEMENTS as i128 {
            return Err(format!(
                "spatial axis {i}: the output would be {out} long, more than {MAX_ELEMENTS}"
            ));
        }
        let geo = Axis {
            n: n as usize,
            k: k as usize,
            s: s as usize,
            d: d as usize,
            begin: begin as usize,
            out: out as usize,
        };
        Ok((D::Fixed(out as u64), Some(geo)))
    }

    pub(super) fn infer(&self, x: &VType, w: &VType, b: Option<&VType>) -> Result<VType, String> {
        float(x, "input X")?;
        float(w, "weight W")?;
        let rank = x.rank();
        if !(3..=5).contains(&rank) {
            return Err(format!(
                "input X {} must have rank 3, 4 or 5 [n, c, spatial...]",
                fmt_shape(&x.shape)
            ));
        }
        let axes = rank - 2;
        if w.rank() != rank {
            return Err(format!(
                "weight W {} must have rank {rank} [c, m / group, kernel...], as X {}",
                fmt_shape(&w.shape),
                fmt_shape(&x.shape)
            ));
        }
        let lists = [
            &self.kernel_shape,
            &self.strides,
            &self.dilations,
            &self.output_padding,
            &self.output_shape,
        ];
        let pads = self.pads.as_ref().map(|p| p.len() / 2);
        let lens = lists.iter().filter_map(|l| l.as_ref().map(Vec::len));
        if let Some(n) = lens.chain(pads).find(|&n| n != axes) {
            return Err(format!(
                "the attributes give {n} spatial axes, and X {} has {axes}",
                fmt_shape(&x.shape)
            ));
        }
        let g = self.group as u64;
        same(&x.shape[1], &w.shape[0], || {
            format!(
                "X {} has {} channels, and W {} is for {}",
                fmt_shape(&x.shape),
                x.shape[1],
                fmt_shape(&w.shape),
                w.shape[0]
            )
        })?;
        if let Some(c) = x.shape[1].fixed().or(w.shape[0].fixed()) {
            if c % g != 0 {
                return Err(format!("{c} input channels do not divide into {g} groups"));
            }
        }
        let m = match w.shape[1].fixed() {
            Some(mg) => D::Fixed(mg.checked_mul(g).ok_or("too many output channels")?),
            None if g == 1 => w.shape[1].clone(),
            None => D::Any,
        };
        for (i, k) in w.shape[2..].iter().enumerate() {
            if *k == D::Fixed(0) {
                return Err(format!("W {} has an empty kernel", fmt_shape(&w.shape)));
            }
            if let Some(ks) = &self.kernel_shape {
                same(&D::Fixed(ks[i] as u64), k, || {
                    format!(
                        "kernel_shape {ks:?} does not match W {}",
                        fmt_shape(&w.shape)
                    )
                })?;
            }
        }
        if let Some(b) = b {
            float(b, "bias B")?;
            if b.rank() != 1 {
                return Err(format!("bias B {} must have rank 1", fmt_shape(&b.shape)));
            }
            same(&b.shape[0], &m, || {
                format!(
                    "bias B {} does not match {m} output channels",
                    fmt_shape(&b.shape)
                )
            })?;
        }
        let mut shape = vec![x.shape[0].clone(), m];
        for i in 0..axes {
            shape.push(self.axis(i, axes, &x.shape[2 + i], &w.shape[2 + i])?.0);
        }
        Ok(VType::new(Elem::F32, capped(shape)?))
    }

    /// The three spatial axes (1-D and 2-D behind leading flat ones) for inputs of shapes
    /// `x` and `w` that inference accepted.
    fn geometry(&self, x: &[usize], w: &[usize]) -> [Axis; 3] {
        let axes = x.len() - 2;
        let mut geo = [FLAT; 3];
        for i in 0..axes {
            let (n, k) = (D::Fixed(x[2 + i] as u64), D::Fixed(w[2 + i] as u64));
            geo[3 - axes + i] = (self
                .axis(i, axes, &n, &k)
                .expect("inference checked the axes")
                .1)
                .expect("every length is known at run time");
        }
        geo
    }

    /// Input rows (all but the last spatial axis) per product, and the floats of its columns.
    fn block(geo: &[Axis; 3], rows: usize) -> (usize, usize) {
        let per_row = rows.saturating_mul(geo[2].n).max(1);
        let block = (COLUMNS / per_row).clamp(1, geo[0].n * geo[1].n);
        (block, block.saturating_mul(per_row))
    }

    /// Floats of the column buffer [`ConvTranspose::run`] keeps per thread for inputs of shapes
    /// `x` and `w` (accepted by inference).
    pub(super) fn scratch_floats(&self, x: &[usize], w: &[usize]) -> u64 {
        let geo = self.geometry(x, w);
        let kk: usize = geo.iter().map(|a| a.k).product();
        Self::block(&geo, w[1] * kk).1 as u64
    }

    pub(super) fn run(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>, out: &[usize]) -> Tensor {
        let geo = self.geometry(&x.shape, &w.shape);
        let (images, c, m) = (x.shape[0], x.shape[1], out[1]);
        let g = self.group;
        let (cg, mg) = (c / g, m / g);
        let kk: usize = geo.iter().map(|a| a.k).product();
        let in_sp: usize = geo.iter().map(|a| a.n).product();
        let out_sp: usize = geo.iter().map(|a| a.out).product();
        let mut data = vec![0f32; images * m * out_sp];
        if data.is_empty() {
            return Tensor {
                shape: out.to_vec(),
                data,
            };
        }
        let (block, _) = Self::block(&geo, mg * kk);
        let row = geo[2].n;
        let outer = geo[0].n * geo[1].n;
        let image = |i: usize, dst: &mut [f32]| {
            for (ch, plane) in dst.chunks_exact_mut(out_sp).enumerate() {
                plane.fill(b.map_or(0.0, |b| b.data[ch]));
            }
            let mut cols = COLS.take();
            for gi in 0..g {
                let xg = &x.data[(i * c + gi * cg) * in_sp..][..cg * in_sp];
                let wg = MatRef {
                    data: &w.data[gi * cg * mg * kk..][..cg * mg * kk],
                    rows: mg * kk,
                    cols: cg,
                    rs: 1,
                    cs: mg * kk,
                };
                let dg = &mut dst[gi * mg * out_sp..][..mg * out_sp];
                for r0 in (0..outer).step_by(block) {
                    let rows = block.min(outer - r0);
                    let len = rows * row;
                    cols.resize(mg * kk * len, 0.0);
                    let xb = MatRef {
                        data: &xg[r0 * row..],
                        rows: cg,
                        cols: len,
                        rs: in_sp,
                        cs: 1,
                    };
                    gemm(1.0, wg, xb, 0.0, &mut cols[..mg * kk * len]);
                    let par = spread(mg * out_sp, 1 << 15);
                    chunks(dg, out_sp, par, |mm, plane| {
                        let cols = &cols[mm * kk * len..(mm + 1) * kk * len];
                        col2im(cols, &geo, r0..r0 + rows, plane);
                    });
                }
            }
            COLS.set(cols);
        };
        chunks(&mut data, m * out_sp, spread(images, 2), image);
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

thread_local! {
    /// Each thread's column buffer, kept between images and runs.
    static COLS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Adds one output channel's columns `cols` (`[kernel cells, input rows × row length]`, for
/// input rows `rows` of the flattened leading axes) into its output `plane`.
fn col2im(cols: &[f32], geo: &[Axis; 3], rows: std::ops::Range<usize>, plane: &mut [f32]) {
    let [a0, a1, a2] = *geo;
    let len = rows.len() * a2.n;
    // Output position along an axis for input `i` and kernel cell `j`, if inside.
    let at = |a: &Axis, i: usize, j: usize| {
        (i * a.s + j * a.d)
            .checked_sub(a.begin)
            .filter(|&o| o < a.out)
    };
    let mut cell = 0;
    for j0 in 0..a0.k {
        for j1 in 0..a1.k {
            for j2 in 0..a2.k {
                let src = &cols[cell * len..(cell + 1) * len];
                cell += 1;
                // Input columns whose output column `i * s + j2 * d - begin` is inside.
                let shift = j2 * a2.d;
                let lo = a2.begin.saturating_sub(shift).div_ceil(a2.s).min(a2.n);
                let hi = (a2.out + a2.begin)
                    .saturating_sub(shift)
                    .div_ceil(a2.s)
                    .clamp(lo, a2.n);
                if lo == hi {
                    continue;
                }
                let first = lo * a2.s + shift - a2.begin;
                for (r, line) in rows.clone().zip(src.chunks_exact(a2.n)) {
                    let (i0, i1) = (r / a1.n, r % a1.n);
                    let (Some(o0), Some(o1)) = (at(&a0, i0, j0), at(&a1, i1, j1)) else {
                        continue;
                    };
                    let dst = &mut plane[(o0 * a1.out + o1) * a2.out..][..a2.out];
                    let line = &line[lo..hi];
                    if a2.s == 1 {
                        for (d, &v) in dst[first..].iter_mut().zip(line) {
                            *d += v;
                        }
                    } else {
                        for (d, &v) in dst[first..].iter_mut().step_by(a2.s).zip(line) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::fixture::{self, close, f32s};
    use super::*;
    use crate::model::Attr;

    fn parse(attrs: &[(&str, Attr)]) -> Result<ConvTranspose, String> {
        let node = crate::model::Node {
            op: "ConvTranspose".into(),
            name: "t".into(),
            inputs: vec!["x".into(), "w".into()],
            outputs: vec!["y".into()],
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        };
        let mut a = Attrs::new(&node);
        let c = ConvTranspose::parse(&mut a)?;
        a.finish()?;
        Ok(c)
    }

    fn vt(shape: &[u64]) -> VType {
        VType::new(Elem::F32, shape.iter().map(|&d| D::Fixed(d)).collect())
    }

    fn dims(t: &Tensor) -> VType {
        vt(&t.shape.iter().map(|&d| d as u64).collect::<Vec<_>>())
    }

    #[test]
    fn matches_the_reference_cases() {
        for case in fixture::cases("ConvTranspose") {
            let mut a = Attrs::new(&case.node);
            let c = ConvTranspose::parse(&mut a).unwrap_or_else(|e| panic!("{}: {e}", case.name));
            a.finish().unwrap();
            let x = f32s(case.inputs[0].as_ref().expect("X"));
            let w = f32s(case.inputs[1].as_ref().expect("W"));
            let b = case.inputs[2].as_ref().map(f32s);
            let want = f32s(&case.outputs[0]);
            let t = c
                .infer(&dims(&x), &dims(&w), b.as_ref().map(dims).as_ref())
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            let shape = crate::ops::shape::concrete(&t.shape).unwrap();
            assert_eq!(shape, want.shape, "{}: inferred shape", case.name);
            close(&case.name, &c.run(&x, &w, b.as_ref(), &shape), &want);
        }
    }

    /// The definition, one input element at a time.
    fn naive(c: &ConvTranspose, x: &Tensor, w: &Tensor, out: &[usize]) -> Vec<f32> {
        let geo = c.geometry(&x.shape, &w.shape);
        let (cn, m) = (x.shape[1], out[1]);
        let (cg, mg) = (cn / c.group, m / c.group);
        let mut y = vec![0f32; out.iter().product()];
        let osp = geo[0].out * geo[1].out * geo[2].out;
        for n in 0..x.shape[0] {
            for ci in 0..cn {
                let gi = ci / cg;
                for i0 in 0..geo[0].n {
                    for i1 in 0..geo[1].n {
                        for i2 in 0..geo[2].n {
                            let v = x.data[((n * cn + ci) * geo[0].n + i0) * geo[1].n * geo[2].n
                                + i1 * geo[2].n
                                + i2];
                            for mo in 0..mg {
                                for j0 in 0..geo[0].k {
                                    for j1 in 0..geo[1].k {
                                        for j2 in 0..geo[2].k {
                                            let pos = |a: &Axis, i: usize, j: usize| {
                                                (i * a.s + j * a.d) as i64 - a.begin as i64
                                            };
                                            let (o0, o1, o2) = (
                                                pos(&geo[0], i0, j0),
                                                pos(&geo[1], i1, j1),
                                                pos(&geo[2], i2, j2),
                                            );
                                            let inside =
                                                |o: i64, a: &Axis| o >= 0 && (o as usize) < a.out;
                                            if !(inside(o0, &geo[0])
                                                && inside(o1, &geo[1])
                                                && inside(o2, &geo[2]))
                                            {
                                                continue;
                                            }
                                            let wv = w.data[((ci * mg + mo) * geo[0].k + j0)
                                                * geo[1].k
                                                * geo[2].k
                                                + j1 * geo[2].k
                                                + j2];
                                            let at = (n * m + gi * mg + mo) * osp
                                                + (o0 as usize * geo[1].out + o1 as usize)
                                                    * geo[2].out
                                                + o2 as usize;
                                            y[at] += v * wv;
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        y
    }

    #[test]
    fn blocks_threads_and_strides_match_the_definition() {
        // Large enough to be split into row blocks and spread over the cores.
        let ints = |v: &[i64]| Attr::Ints(v.to_vec());
        let cases = [
            (
                vec![2, 2, 100, 800],
                vec![2, 8, 2, 2],
                vec![("strides", ints(&[2, 2]))],
            ),
            (
                vec![1, 4, 30, 200],
                vec![4, 3, 3, 3],
                vec![
                    ("strides", ints(&[2, 3])),
                    ("pads", ints(&[1, 2, 0, 1])),
                    ("dilations", ints(&[1, 2])),
                    ("group", Attr::Int(2)),
                ],
            ),
            (
                vec![1, 2, 3, 4, 5],
                vec![2, 2, 2, 3, 2],
                vec![("strides", ints(&[2, 1, 3]))],
            ),
        ];
        for (xs, ws, attrs) in cases {
            let c = parse(&attrs).unwrap();
            let fill = |s: &[usize], k: usize| Tensor {
                shape: s.to_vec(),
                data: (0..s.iter().product::<usize>())
                    .map(|i| ((i * k) % 17) as f32 / 8.0 - 1.0)
                    .collect(),
            };
            let (x, w) = (fill(&xs, 7), fill(&ws, 5));
            let t = c.infer(&dims(&x), &dims(&w), None).unwrap();
            let out = crate::ops::shape::concrete(&t.shape).unwrap();
            let got = c.run(&x, &w, None, &out);
            let want = Tensor {
                shape: out.clone(),
                data: naive(&c, &x, &w, &out),
            };
            close(&format!("{xs:?}"), &got, &want);
        }
        // The first case runs in blocks of 40 input rows (of 100): 32 kernel cells and output
        // channels times 800 columns each, under the cap of 2^20 floats.
        let c = parse(&[("strides", ints(&[2, 2]))]).unwrap();
        assert_eq!(
            c.scratch_floats(&[2, 2, 100, 800], &[2, 8, 2, 2]),
            40 * 32 * 800
        );
    }

    #[test]
    fn refuses_bad_attributes_and_shapes() {
        let ints = |v: &[i64]| Attr::Ints(v.to_vec());
        let bad = [
            (
                vec![("auto_pad", Attr::Text("SAME".into()))],
                "attribute \"auto_pad\" = \"SAME\" is not supported (NOTSET, SAME_UPPER, SAME_LOWER or VALID)",
            ),
            (
                vec![("strides", ints(&[0, 1]))],
                "attribute \"strides\" = [0, 1] must hold integers in 1..=1048576",
            ),
            (
                vec![("pads", ints(&[1, 1, 1, 1])), ("auto_pad", Attr::Text("SAME_UPPER".into()))],
                "attribute \"pads\" goes with auto_pad NOTSET only",
            ),
            (
                vec![("pads", ints(&[1, 1, 1, 1])), ("output_shape", ints(&[5, 5]))],
                "give attribute \"pads\" or \"output_shape\", not both",
            ),
            (
                vec![("strides", ints(&[2, 2])), ("dilations", ints(&[1]))],
                "attributes strides, dilations must give 1, 2 or 3 spatial axes alike (pads two values per axis)",
            ),
            (vec![("group", Attr::Int(0))], "attribute \"group\" = 0 must be in 1..=1048576"),
        ];
        for (attrs, want) in bad {
            assert_eq!(parse(&attrs).unwrap_err(), want);
        }
        let plain = parse(&[]).unwrap();
        let err = |c: &ConvTranspose, x: &[u64], w: &[u64], b: Option<&[u64]>| {
            c.infer(&vt(x), &vt(w), b.map(vt).as_ref()).unwrap_err()
        };
        assert_eq!(
            err(&plain, &[1, 3, 4], &[3, 2, 2, 2], None),
            "weight W [3, 2, 2, 2] must have rank 3 [c, m / group, kernel...], as X [1, 3, 4]"
        );
        assert_eq!(
            err(&plain, &[1, 3, 4, 4, 4, 4], &[3, 2, 2, 2, 2, 2], None),
            "input X [1, 3, 4, 4, 4, 4] must have rank 3, 4 or 5 [n, c, spatial...]"
        );
        assert_eq!(
            err(&plain, &[1, 3, 4, 4], &[2, 2, 2, 2], None),
            "X [1, 3, 4, 4] has 3 channels, and W [2, 2, 2, 2] is for 2: 3 != 2"
        );
        assert_eq!(
            err(&plain, &[1, 3, 4, 4], &[3, 2, 2, 2], Some(&[3])),
            "bias B [3] does not match 2 output channels: 3 != 2"
        );
        let groups = parse(&[("group", Attr::Int(2))]).unwrap();
        assert_eq!(
            err(&groups, &[1, 3, 4, 4], &[3, 2, 2, 2], None),
            "3 input channels do not divide into 2 groups"
        );
        let three = parse(&[("strides", ints(&[2, 2, 2]))]).unwrap();
        assert_eq!(
            err(&three, &[1, 3, 4, 4], &[3, 2, 2, 2], None),
            "the attributes give 3 spatial axes, and X [1, 3, 4, 4] has 2"
        );
        let cropped = parse(&[("pads", ints(&[3, 0, 2, 0]))]).unwrap();
        assert_eq!(
            err(&cropped, &[1, 3, 2, 4], &[3, 2, 2, 2], None),
            "spatial axis 0: the output would be -2 long (input 2, kernel 2, stride 1, dilation 1, output_padding 0, pads)"
        );
        assert_eq!(
            err(&plain, &[1, 3, 0, 4], &[3, 2, 2, 2], None),
            "spatial axis 0 of the input is empty"
        );
        let huge = parse(&[("strides", ints(&[1 << 20, 1 << 20]))]).unwrap();
        assert_eq!(
            err(&huge, &[1, 1, 1 << 20, 1 << 20], &[1, 1, 1, 1], None),
            "the output [1, 1, 1099510579201, 1099510579201] would have more than 1099511627776 elements"
        );
        assert_eq!(
            err(&plain, &[1, 3, 4, 4], &[3, 2, 0, 2], None),
            "W [3, 2, 0, 2] has an empty kernel"
        );
    }

    #[test]
    fn symbols_pass_where_the_output_allows() {
        let c = parse(&[("auto_pad", Attr::Text("SAME_UPPER".into()))]).unwrap();
        let x = VType::new(
            Elem::F32,
            vec![
                D::Sym("n".into()),
                D::Fixed(3),
                D::Sym("h".into()),
                D::Fixed(4),
            ],
        );
        let t = c.infer(&x, &vt(&[3, 2, 3, 3]), None).unwrap();
        assert_eq!(
            t.shape,
            vec![
                D::Sym("n".into()),
                D::Fixed(2),
                D::Sym("h".into()),
                D::Fixed(4)
            ]
        );
        let s2 = parse(&[("strides", Attr::Ints(vec![2, 2]))]).unwrap();
        let t = s2.infer(&x, &vt(&[3, 2, 2, 2]), None).unwrap();
        assert_eq!(t.shape[2..], [D::Any, D::Fixed(8)]);
    }
}
