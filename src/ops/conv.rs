//! 2-D convolution (direct, or im2col + SGEMM, one image per core), max and average pooling, and global
//! average pooling, all over `NCHW` tensors.

use super::direct::{arrange, Direct, CHANNELS};
use super::elementwise::Unary;
use super::linalg::gemm;
use super::shape::{fmt_shape, same, VType, D};
use super::{chunks, chunks_with, float, rank, spread, Attrs};
use crate::sys::MatRef;
use crate::tensor::Elem;
use crate::tensor::Tensor;

/// Strides, pads and dilations of a 2-D window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub strides: [usize; 2],
    /// Top, left, bottom, right.
    pub pads: [usize; 4],
    pub dilations: [usize; 2],
}

/// Largest stride, pad, dilation or kernel size accepted: far beyond any real model, small
/// enough that no arithmetic on them overflows.
pub(super) const MAX_WINDOW: i64 = 1 << 20;

fn pair(
    a: &mut Attrs<'_>,
    key: &'static str,
    len: usize,
    min: i64,
) -> Result<Option<Vec<usize>>, String> {
    let Some(v) = a.ints(key)? else {
        return Ok(None);
    };
    if v.len() != len || v.iter().any(|&x| x < min || x > MAX_WINDOW) {
        return Err(format!(
            "attribute {key:?} = {v:?} must be {len} integers in {min}..={MAX_WINDOW} (2-D only)"
        ));
    }
    Ok(Some(v.iter().map(|&x| x as usize).collect()))
}

impl Window {
    fn parse(a: &mut Attrs<'_>, dilations: bool) -> Result<Window, String> {
        a.only("auto_pad", "NOTSET")?;
        let strides = pair(a, "strides", 2, 1)?.unwrap_or(vec![1, 1]);
        let pads = pair(a, "pads", 4, 0)?.unwrap_or(vec![0; 4]);
        let dil = if dilations {
            pair(a, "dilations", 2, 1)?.unwrap_or(vec![1, 1])
        } else {
            vec![1, 1]
        };
        Ok(Window {
            strides: [strides[0], strides[1]],
            pads: [pads[0], pads[1], pads[2], pads[3]],
            dilations: [dil[0], dil[1]],
        })
    }

    /// Output size along axis `ax` (0: height, 1: width) for input `size` and kernel `k`.
    /// A pooling window's pads must be smaller than its kernel (as onnxruntime requires), so
    /// that every window holds at least one input cell; a convolution's may be anything.
    fn out(&self, ax: usize, size: &D, k: &D, pooling: bool) -> Result<D, String> {
        let (Some(n), Some(k)) = (size.fixed(), k.fixed()) else {
            return Ok(D::Any);
        };
        let extent = self.dilations[ax] as u64 * (k.max(1) - 1) + 1;
        let (p0, p1) = (self.pads[ax] as u64, self.pads[ax + 2] as u64);
        if pooling && (p0 >= k || p1 >= k) {
            return Err(format!(
                "pads {:?} must be smaller than the kernel {k}",
                self.pads
            ));
        }
        let padded = n + p0 + p1;
        if padded < extent {
            return Err(format!(
                "the kernel's extent {extent} is larger than the padded input {padded}"
            ));
        }
        Ok(D::Fixed((padded - extent) / self.strides[ax] as u64 + 1))
    }

    /// [`Window::out`] of a pooling with `ceil_mode` 1: the last window may run past the
    /// padded input, as long as it starts inside the input or its leading padding.
    fn out_ceil(&self, ax: usize, size: &D, k: &D) -> Result<D, String> {
        let D::Fixed(floor) = self.out(ax, size, k, true)? else {
            return Ok(D::Any);
        };
        let (n, k) = (size.fixed().expect("fixed"), k.fixed().expect("fixed"));
        let extent = self.dilations[ax] as u64 * (k.max(1) - 1) + 1;
        let (p0, p1, s) = (
            self.pads[ax] as u64,
            self.pads[ax + 2] as u64,
            self.strides[ax] as u64,
        );
        let mut o = (n + p0 + p1 - extent).div_ceil(s) + 1;
        if (o - 1) * s >= n + p0 {
            o -= 1;
        }
        Ok(D::Fixed(o.max(floor)))
    }

    /// The kernel offsets `k0..k1` (of `k`) whose input along `ax`, for output position `o`,
    /// lies inside the input of size `n`.
    fn inside(&self, ax: usize, o: usize, k: usize, n: usize) -> (usize, usize) {
        let (s, d, p) = (self.strides[ax], self.dilations[ax], self.pads[ax]);
        let start = o * s;
        let k0 = p.saturating_sub(start).div_ceil(d).min(k);
        let k1 = (n + p).saturating_sub(start).div_ceil(d).clamp(k0, k);
        (k0, k1)
    }

    /// Input row or column for output position `o` and kernel offset `k` along `ax`, if it is
    /// inside the input of size `n` (else it is padding).
    #[inline]
    fn at(&self, ax: usize, o: usize, k: usize, n: usize) -> Option<usize> {
        (o * self.strides[ax] + k * self.dilations[ax])
            .checked_sub(self.pads[ax])
            .filter(|&i| i < n)
    }
}

/// `Conv`'s attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct Conv2d {
    pub window: Window,
    pub group: usize,
    pub kernel_shape: Option<[usize; 2]>,
    /// Ops of the following nodes done on each image's output while it is in cache (set by
    /// [`crate::plan`]'s fusion, never by a graph): the values they read follow the Conv's
    /// own inputs.
    pub then: Vec<Then>,
}

/// How a convolution runs: pointwise products are plain SGEMMs on the input; a few output
/// channels per group go through im2col + SGEMM; more through the direct kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Pointwise,
    Unfold,
    Direct,
}

/// An op fused after a convolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Then {
    /// BatchNormalization with this epsilon; its scale, B, mean and var are the 4 inputs
    /// after the Conv's 3 (an omitted bias still counts).
    BatchNorm(f32),
    Unary(Unary),
    /// A 2x2, stride 2, unpadded MaxPool, always last: each image's output is pooled while
    /// it is in cache, and the full-size output never exists.
    MaxPool2x2,
}

impl Window {
    /// Output size along `ax` for input `n` and kernel `k`, as checked by inference.
    fn out_len(&self, ax: usize, n: usize, k: usize) -> usize {
        let extent = self.dilations[ax] * k.saturating_sub(1) + 1;
        (n + self.pads[ax] + self.pads[ax + 2]).saturating_sub(extent) / self.strides[ax] + 1
    }
}

/// The one pooling a convolution can absorb.
pub const HALVING: Window = Window {
    strides: [2, 2],
    pads: [0; 4],
    dilations: [1, 1],
};

impl Conv2d {
    pub(super) fn parse(a: &mut Attrs<'_>) -> Result<Conv2d, String> {
        let window = Window::parse(a, true)?;
        let group = a.int("group", 1)?;
        if !(1..=MAX_WINDOW).contains(&group) {
            return Err(format!("attribute \"group\" = {group} must be at least 1"));
        }
        let kernel_shape = pair(a, "kernel_shape", 2, 1)?.map(|k| [k[0], k[1]]);
        Ok(Conv2d {
            window,
            group: group as usize,
            kernel_shape,
            then: Vec::new(),
        })
    }

    /// Floats of the buffers [`Conv2d::run`] keeps per thread for input `x` and weights `w`
    /// (shapes that inference accepted): the unfolded or staged input, and one image's output
    /// before pooling.
    pub(super) fn scratch_floats(&self, x: &[usize], w: &[usize]) -> u64 {
        let [h, wd] = [x[2], x[3]].map(|d| d as u64);
        let [_, cg, kh, kw] = [w[0], w[1], w[2], w[3]].map(|d| d as u64);
        let win = &self.window;
        let (oh, ow) = (
            win.out_len(0, h as usize, kh as usize) as u64,
            win.out_len(1, wd as usize, kw as usize) as u64,
        );
        let input = match self.path(w) {
            Path::Pointwise => 0,
            Path::Unfold => cg
                .saturating_mul(kh * kw)
                .saturating_mul(oh.saturating_mul(ow)),
            Path::Direct => {
                let (sw, dw) = (win.strides[1] as u64, win.dilations[1] as u64);
                let len = ow.div_ceil(8) * 8 + (kw.saturating_sub(1) * dw) / sw;
                let rows = h + (win.pads[0] + win.pads[2]) as u64;
                cg.saturating_mul(rows)
                    .saturating_mul(sw)
                    .saturating_mul(len)
            }
        };
        let pooled = match self.then.last() == Some(&Then::MaxPool2x2) {
            true => (w[0] as u64).saturating_mul(oh.saturating_mul(ow)),
            false => 0,
        };
        input.saturating_add(pooled)
    }

    /// How [`Conv2d::run`] computes with weights of shape `w`.
    fn path(&self, w: &[usize]) -> Path {
        let win = &self.window;
        if w[2] == 1 && w[3] == 1 && win.strides == [1, 1] && win.pads == [0; 4] {
            Path::Pointwise
        } else if w[0] / self.group >= CHANNELS / 2 {
            // Direct convolution when there are enough output channels to fill its blocks half.
            Path::Direct
        } else {
            Path::Unfold
        }
    }

    pub(super) fn infer(&self, x: &VType, w: &VType, b: Option<&VType>) -> Result<VType, String> {
        rank(float(x, "input X")?, 4, "input X [n, c, h, w]")?;
        rank(float(w, "weight W")?, 4, "weight W [m, c / group, kh, kw]")?;
        let g = self.group as u64;
        let c_per = &w.shape[1];
        if let Some(c) = x.shape[1].fixed() {
            if c % g != 0 {
                return Err(format!("{c} input channels do not divide into {g} groups"));
            }
            same(&D::Fixed(c / g), c_per, || {
                format!(
                    "input X {} has {c} channels, {} per group, but W {} expects {c_per}",
                    fmt_shape(&x.shape),
                    c / g,
                    fmt_shape(&w.shape)
                )
            })?;
        }
        let m = &w.shape[0];
        if let Some(m) = m.fixed() {
            if m % g != 0 {
                return Err(format!("{m} output channels do not divide into {g} groups"));
            }
        }
        if let Some(k) = self.kernel_shape {
            for ax in 0..2 {
                same(&D::Fixed(k[ax] as u64), &w.shape[2 + ax], || {
                    format!(
                        "kernel_shape {k:?} does not match W {}",
                        fmt_shape(&w.shape)
                    )
                })?;
            }
        }
        if let Some(b) = b {
            rank(float(b, "bias B")?, 1, "bias B")?;
            same(&b.shape[0], m, || {
                format!(
                    "bias {} does not match {m} output channels",
                    fmt_shape(&b.shape)
                )
            })?;
        }
        let mut oh = self.window.out(0, &x.shape[2], &w.shape[2], false)?;
        let mut ow = self.window.out(1, &x.shape[3], &w.shape[3], false)?;
        if self.then.last() == Some(&Then::MaxPool2x2) {
            let two = D::Fixed(2);
            oh = HALVING
                .out(0, &oh, &two, true)
                .map_err(|e| format!("fused MaxPool: {e}"))?;
            ow = HALVING
                .out(1, &ow, &two, true)
                .map_err(|e| format!("fused MaxPool: {e}"))?;
        }
        Ok(VType::new(
            Elem::F32,
            vec![x.shape[0].clone(), m.clone(), oh, ow],
        ))
    }

    pub(super) fn run(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        params: [Option<&Tensor>; 4],
        out: &[usize],
    ) -> Tensor {
        let [n, c, h, wd] = [x.shape[0], x.shape[1], x.shape[2], x.shape[3]];
        let [m, cg, kh, kw] = [w.shape[0], w.shape[1], w.shape[2], w.shape[3]];
        let win = self.window;
        let pooled = self.then.last() == Some(&Then::MaxPool2x2);
        let [oh, ow] = match pooled {
            true => [win.out_len(0, h, kh), win.out_len(1, wd, kw)],
            false => [out[2], out[3]],
        };
        let g = self.group;
        let mg = m / g;
        let (plane, oplane, patch) = (h * wd, oh * ow, cg * kh * kw);
        let mut data = vec![0f32; n * m * out[2] * out[3]];
        if data.is_empty() {
            return Tensor {
                shape: out.to_vec(),
                data,
            };
        }
        let path = self.path(&w.shape);
        let pointwise = path == Path::Pointwise;
        let direct =
            (path == Path::Direct).then(|| Direct::new([cg, h, wd], [kh, kw], [oh, ow], &win));
        let arranged: Vec<_> = match direct {
            Some(_) => (w.data.chunks_exact(mg * patch))
                .map(|wg| arrange(wg, mg, patch))
                .collect(),
            None => Vec::new(),
        };
        // Bias, then the fused ops, as one affine map per channel and an activation.
        let mut act = None;
        let affine: Vec<(f32, f32)> = (0..m)
            .map(|ch| {
                let (mut mul, mut add) = (1.0f32, b.map_or(0.0, |b| b.data[ch]));
                for t in &self.then {
                    match *t {
                        Then::BatchNorm(eps) => {
                            let [s, sh, mean, var] =
                                params.map(|p| p.expect("fused").data[ch] as f64);
                            let k = s / (var + eps as f64).sqrt();
                            (mul, add) = (
                                (mul as f64 * k) as f32,
                                ((add as f64 - mean) * k + sh) as f32,
                            );
                        }
                        Then::Unary(u) => act = Some(u),
                        Then::MaxPool2x2 => {}
                    }
                }
                (mul, add)
            })
            .collect();
        // The direct kernel applies a Relu as it stores.
        let relu = direct.is_some() && act == Some(Unary::Relu);
        let act = act.filter(|_| !relu);
        // One image per task; with fewer images than cores, each product is split instead.
        let image = |i: usize, out_dst: &mut [f32]| {
            // The staged or unfolded input, in a buffer each thread keeps; when the output is
            // pooled, the image's full-size output too.
            let mut buf = COLS.take();
            let mut compute = |dst: &mut [f32]| {
                for gi in 0..g {
                    let src = &x.data[(i * c + gi * cg) * plane..(i * c + (gi + 1) * cg) * plane];
                    let dst = &mut dst[gi * mg * oplane..(gi + 1) * mg * oplane];
                    let affine = &affine[gi * mg..(gi + 1) * mg];
                    if let Some(d) = &direct {
                        d.stage(src, &mut buf);
                        d.run(&buf, &arranged[gi], affine, relu, dst);
                        continue;
                    }
                    let wg = &w.data[gi * mg * patch..(gi + 1) * mg * patch];
                    let cols: &[f32] = if pointwise {
                        src
                    } else {
                        buf.resize(patch * oplane, 0.0);
                        im2col(src, [cg, h, wd], [kh, kw], [oh, ow], &win, &mut buf);
                        &buf
                    };
                    gemm(
                        1.0,
                        MatRef::new(wg, mg, patch),
                        MatRef::new(cols, patch, oplane),
                        0.0,
                        dst,
                    );
                    for (row, &(mul, add)) in dst.chunks_mut(oplane).zip(affine) {
                        if (mul, add) != (1.0, 0.0) {
                            row.iter_mut().for_each(|v| *v = *v * mul + add);
                        }
                    }
                }
                if let Some(u) = act {
                    u.apply(dst);
                }
            };
            if pooled {
                let mut full = FULL.take();
                full.resize(m * oplane, 0.0);
                compute(&mut full);
                let pw = out[3];
                let planes = full
                    .chunks_exact(oplane)
                    .zip(out_dst.chunks_exact_mut(out[2] * pw));
                for (src, to) in planes {
                    max_2x2(src, ow, to, pw);
                }
                FULL.set(full);
            } else {
                compute(out_dst);
            }
            COLS.set(buf);
        };
        chunks(&mut data, m * out[2] * out[3], spread(n, 2), image);
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

thread_local! {
    /// Each thread's staging or im2col buffer, kept between images and runs.
    static COLS: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
    /// Each thread's buffer for one image's output before pooling.
    static FULL: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Unfolds one image's channels `src` `[c, h, w]` into `cols` `[c * kh * kw, oh * ow]`: row
/// `(ci, ki, kj)` holds, for every output position, the input under kernel cell `(ki, kj)`, or
/// 0 in the padding.
fn im2col(
    src: &[f32],
    [c, h, w]: [usize; 3],
    [kh, kw]: [usize; 2],
    [oh, ow]: [usize; 2],
    win: &Window,
    cols: &mut [f32],
) {
    let (sw, dw, pl) = (win.strides[1], win.dilations[1], win.pads[1]);
    let mut r = 0;
    for ci in 0..c {
        let ch = &src[ci * h * w..(ci + 1) * h * w];
        for ki in 0..kh {
            for kj in 0..kw {
                // Output columns whose input column `ox * sw + kj * dw - pl` is inside 0..w.
                let shift = kj * dw;
                let lo = pl.saturating_sub(shift).div_ceil(sw).min(ow);
                let hi = (w + pl).saturating_sub(shift).div_ceil(sw).clamp(lo, ow);
                let row = &mut cols[r * oh * ow..(r + 1) * oh * ow];
                for oy in 0..oh {
                    let dst = &mut row[oy * ow..(oy + 1) * ow];
                    let Some(iy) = win.at(0, oy, ki, h) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let line = &ch[iy * w..(iy + 1) * w];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    let first = lo * sw + shift - pl;
                    if sw == 1 {
                        dst[lo..hi].copy_from_slice(&line[first..first + (hi - lo)]);
                    } else {
                        for (k, d) in dst[lo..hi].iter_mut().enumerate() {
                            *d = line[first + k * sw];
                        }
                    }
                }
                r += 1;
            }
        }
    }
}

/// `MaxPool` or `AveragePool`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    pub window: Window,
    pub kernel: [usize; 2],
    /// `None` for max pooling; for average pooling, whether padding counts in the divisor.
    pub average: Option<bool>,
    /// `ceil_mode` 1: output sizes rounded up, the last windows clipped to the input.
    pub ceil: bool,
}

impl Pool {
    pub(super) fn parse(name: &str, a: &mut Attrs<'_>) -> Result<Pool, String> {
        let max = name == "MaxPool";
        let window = Window::parse(a, max)?;
        let kernel =
            pair(a, "kernel_shape", 2, 1)?.ok_or("attribute \"kernel_shape\" is required")?;
        let ceil = a.flag("ceil_mode")?;
        let average = if max {
            a.only_int("storage_order", 0)?;
            None
        } else {
            Some(a.flag("count_include_pad")?)
        };
        if ceil && average == Some(true) {
            return Err(
                "ceil_mode 1 with count_include_pad 1 is not supported (the divisor of a window past the padding is ambiguous)"
                    .into(),
            );
        }
        Ok(Pool {
            window,
            kernel: [kernel[0], kernel[1]],
            average,
            ceil,
        })
    }

    /// A 2x2, stride 2, unpadded max pooling: the most common, with its own loop, and the one
    /// a convolution before it can absorb.
    pub fn is_halving(&self) -> bool {
        self.average.is_none() && self.kernel == [2, 2] && self.window == HALVING && !self.ceil
    }

    pub(super) fn infer(&self, x: &VType) -> Result<VType, String> {
        rank(float(x, "input X")?, 4, "input X [n, c, h, w]")?;
        let [kh, kw] = self.kernel.map(|k| D::Fixed(k as u64));
        let (oh, ow) = match self.ceil {
            false => (
                self.window.out(0, &x.shape[2], &kh, true)?,
                self.window.out(1, &x.shape[3], &kw, true)?,
            ),
            true => (
                self.window.out_ceil(0, &x.shape[2], &kh)?,
                self.window.out_ceil(1, &x.shape[3], &kw)?,
            ),
        };
        Ok(VType::new(
            Elem::F32,
            vec![x.shape[0].clone(), x.shape[1].clone(), oh, ow],
        ))
    }

    pub(super) fn run(&self, x: &Tensor, out: &[usize]) -> Tensor {
        let [h, w] = [x.shape[2], x.shape[3]];
        let [oh, ow] = [out[2], out[3]];
        let [kh, kw] = self.kernel;
        let win = self.window;
        let mut data = vec![0f32; out.iter().product()];
        if data.is_empty() {
            return Tensor {
                shape: out.to_vec(),
                data,
            };
        }
        // The kernel cells inside the input, per output column (the same for every row).
        let cols: Vec<(usize, usize)> = (0..ow).map(|ox| win.inside(1, ox, kw, w)).collect();
        let rows: Vec<(usize, usize)> = (0..oh).map(|oy| win.inside(0, oy, kh, h)).collect();
        let geometry = Geometry {
            win,
            w,
            ow,
            rows: &rows,
            cols: &cols,
        };
        let halving = self.is_halving();
        let plane = |(src, dst): (&[f32], &mut [f32])| match self.average {
            None if halving => max_2x2(src, w, dst, ow),
            // A NaN in a window makes its maximum NaN, as in onnxruntime.
            None => geometry.pool(
                src,
                dst,
                f32::NEG_INFINITY,
                |a, v| if v > a || v.is_nan() { v } else { a },
                |acc, _| acc,
            ),
            // Windows lie inside the padded input (ceil_mode 0): all kh * kw cells count.
            Some(true) => {
                geometry.pool(src, dst, 0.0, |a, v| a + v, |acc, _| acc / (kh * kw) as f32)
            }
            Some(false) => {
                geometry.pool(src, dst, 0.0, |a, v| a + v, |acc, n| acc / n.max(1) as f32)
            }
        };
        let par = spread(data.len(), 1 << 12);
        chunks_with(&mut data, oh * ow, &x.data, h * w, par, |_, d, s| {
            plane((s, d))
        });
        Tensor {
            shape: out.to_vec(),
            data,
        }
    }
}

/// Max pooling of one plane `src` (`w` wide) by 2x2 windows at stride 2, the most common
/// pooling.
fn max_2x2(src: &[f32], w: usize, dst: &mut [f32], ow: usize) {
    for (oy, out) in dst.chunks_exact_mut(ow).enumerate() {
        let r0 = &src[2 * oy * w..][..2 * ow];
        let r1 = &src[(2 * oy + 1) * w..][..2 * ow];
        crate::sys::max_pairs(r0, r1, out);
    }
}

/// Where each output cell of a pooling window reads, for one plane.
struct Geometry<'a> {
    win: Window,
    w: usize,
    ow: usize,
    /// Kernel rows and columns inside the input, per output row and column.
    rows: &'a [(usize, usize)],
    cols: &'a [(usize, usize)],
}

impl Geometry<'_> {
    /// Folds every window of `src` into `dst` with `step`, then `finish(acc, cells)`. The loop
    /// runs kernel cell by kernel cell over the rectangle of outputs whose window holds that
    /// cell inside the input, so that its innermost loop is a plain walk along an input row.
    #[inline(always)]
    fn pool(
        &self,
        src: &[f32],
        dst: &mut [f32],
        init: f32,
        step: impl Fn(f32, f32) -> f32,
        finish: impl Fn(f32, usize) -> f32,
    ) {
        let win = &self.win;
        let (sh, dh, pt) = (win.strides[0], win.dilations[0], win.pads[0]);
        let (sw, dw, pl) = (win.strides[1], win.dilations[1], win.pads[1]);
        dst.fill(init);
        let kh = self.rows.iter().map(|r| r.1).max().unwrap_or(0);
        let kw = self.cols.iter().map(|c| c.1).max().unwrap_or(0);
        for ki in 0..kh {
            for kj in 0..kw {
                // Outputs whose window has cell (ki, kj) inside the input: a rectangle.
                let oys = span(self.rows, ki);
                let (ox0, ox1) = span(self.cols, kj);
                if ox0 >= ox1 {
                    continue;
                }
                for oy in oys.0..oys.1 {
                    let row = &src[(oy * sh + ki * dh - pt) * self.w..][..self.w];
                    let out = &mut dst[oy * self.ow + ox0..oy * self.ow + ox1];
                    let first = ox0 * sw + kj * dw - pl;
                    if sw == 2 {
                        // The common 2-wide stride, as pairs the compiler can vectorize.
                        let pairs = row[first..].chunks_exact(2).map(|p| p[0]);
                        for (o, v) in out.iter_mut().zip(pairs) {
                            *o = step(*o, v);
                        }
                        let done = (row.len() - first) / 2;
                        if done < out.len() {
                            // An odd-sized row's last cell.
                            out[done] = step(out[done], row[first + 2 * done]);
                        }
                    } else if sw == 1 {
                        for (o, &v) in out.iter_mut().zip(&row[first..]) {
                            *o = step(*o, v);
                        }
                    } else {
                        for (o, v) in out.iter_mut().zip(row[first..].iter().step_by(sw)) {
                            *o = step(*o, *v);
                        }
                    }
                }
            }
        }
        for (oy, &(k0, k1)) in self.rows.iter().enumerate() {
            let out = &mut dst[oy * self.ow..(oy + 1) * self.ow];
            for (o, &(j0, j1)) in out.iter_mut().zip(self.cols) {
                *o = finish(*o, (k1 - k0) * (j1 - j0));
            }
        }
    }
}

/// The positions (a range, since windows slide in order) whose kernel range holds `k`.
fn span(ranges: &[(usize, usize)], k: usize) -> (usize, usize) {
    let first = ranges.iter().position(|&(a, b)| a <= k && k < b);
    match first {
        None => (0, 0),
        Some(f) => {
            let len = ranges[f..]
                .iter()
                .take_while(|&&(a, b)| a <= k && k < b)
                .count();
            (f, f + len)
        }
    }
}

pub(super) fn infer_global_pool(x: &VType) -> Result<VType, String> {
    float(x, "input X")?;
    if x.rank() < 3 {
        return Err(format!(
            "input X {} must have rank 3 or more [n, c, ...]",
            fmt_shape(&x.shape)
        ));
    }
    let mut shape = x.shape[..2].to_vec();
    shape.extend(std::iter::repeat_n(D::Fixed(1), x.rank() - 2));
    Ok(VType::new(Elem::F32, shape))
}

pub(super) fn global_pool(x: &Tensor, out: &[usize]) -> Tensor {
    let spatial: usize = x.shape[2..].iter().product();
    let planes = x.shape[0] * x.shape[1];
    let mut data = vec![f32::NAN; planes];
    let par = spread(x.data.len(), 1 << 15);
    chunks_with(&mut data, 1, &x.data, spatial, par, |_, d, p| {
        d[0] = (p.iter().map(|&v| v as f64).sum::<f64>() / spatial as f64) as f32;
    });
    Tensor {
        shape: out.to_vec(),
        data,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_arithmetic_matches_onnx() {
        let win = Window {
            strides: [2, 2],
            pads: [1, 1, 1, 1],
            dilations: [1, 1],
        };
        // 28 + 2 - 3 = 27, / 2 = 13, + 1 = 14.
        assert_eq!(
            win.out(0, &D::Fixed(28), &D::Fixed(3), true),
            Ok(D::Fixed(14))
        );
        assert_eq!(win.at(0, 0, 0, 28), None);
        assert_eq!(win.at(0, 0, 1, 28), Some(0));
        assert_eq!(win.at(0, 13, 2, 28), Some(27));
        let too_much = Window {
            pads: [3, 0, 0, 0],
            ..win
        };
        assert!(too_much.out(0, &D::Fixed(28), &D::Fixed(3), true).is_err());
        assert_eq!(
            too_much.out(0, &D::Fixed(28), &D::Fixed(3), false),
            Ok(D::Fixed(15))
        );
    }

    #[test]
    fn the_halving_max_pool_matches_the_general_one_nans_included() {
        let general = |x: &Tensor, out: &[usize]| {
            let [h, w] = [x.shape[2], x.shape[3]];
            let win = Window {
                strides: [2, 2],
                pads: [0; 4],
                dilations: [1, 1],
            };
            let rows: Vec<_> = (0..out[2]).map(|oy| win.inside(0, oy, 2, h)).collect();
            let cols: Vec<_> = (0..out[3]).map(|ox| win.inside(1, ox, 2, w)).collect();
            let g = Geometry {
                win,
                w,
                ow: out[3],
                rows: &rows,
                cols: &cols,
            };
            let mut y = vec![0f32; out.iter().product()];
            let step = |a: f32, v: f32| if v > a || v.is_nan() { v } else { a };
            g.pool(&x.data, &mut y, f32::NEG_INFINITY, step, |a, _| a);
            y
        };
        let p = Pool {
            window: Window {
                strides: [2, 2],
                pads: [0; 4],
                dilations: [1, 1],
            },
            kernel: [2, 2],
            average: None,
            ceil: false,
        };
        for [h, w] in [[4, 4], [5, 7], [2, 19], [9, 2], [2, 16], [3, 41], [4, 64]] {
            let mut data: Vec<f32> = (0..h * w)
                .map(|i| ((i * 7919) % 23) as f32 - 11.0)
                .collect();
            data[(h * w) / 3] = f32::NAN;
            data[h * w - 1] = f32::NAN;
            let x = Tensor {
                shape: vec![1, 1, h, w],
                data,
            };
            let out = [1, 1, h / 2, w / 2];
            let fast = p.run(&x, &out).data;
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&general(&x, &out)), "{h}x{w}");
        }
    }

    #[test]
    fn a_padded_max_pool_never_picks_the_padding() {
        let p = Pool {
            window: Window {
                strides: [1, 1],
                pads: [1, 1, 1, 1],
                dilations: [1, 1],
            },
            kernel: [3, 3],
            average: None,
            ceil: false,
        };
        let x = Tensor {
            shape: vec![1, 1, 2, 2],
            data: vec![-4., -3., -2., -1.],
        };
        assert_eq!(p.run(&x, &[1, 1, 2, 2]).data, vec![-1., -1., -1., -1.]);
        let avg = Pool {
            average: Some(false),
            ..p.clone()
        };
        assert_eq!(avg.run(&x, &[1, 1, 2, 2]).data, vec![-2.5; 4]);
        let avg = Pool {
            average: Some(true),
            ..p
        };
        assert_eq!(avg.run(&x, &[1, 1, 2, 2]).data, vec![-10. / 9.; 4]);
    }
}
