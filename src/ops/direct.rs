//! Direct 2-D convolution, for convolutions with a few output channels per group or more.
//!
//! Each step computes an 8-wide block of one output row for 8 output channels at once, in
//! registers, over every input channel and kernel cell of the group. No unfolded copy of the
//! input is made: the image is only padded and, for strides above 1, split by column phase
//! ("staged"), so that every kernel cell reads 8 consecutive floats whatever the stride or
//! dilation. For the small products of small images (a few channels, 3x3 kernels), this does
//! several times less work than im2col + SGEMM, whose packing and unfolding dominate there.

use super::conv::Window;
use crate::sys::{conv_row, Taps, BLOCK};

/// Output columns per block: one AVX register of f32.
const LANES: usize = BLOCK;
/// Output channels per block.
pub(super) const CHANNELS: usize = BLOCK;

/// The sizes of one group of a convolution, and where each kernel cell reads.
pub(super) struct Direct {
    /// Input channels of the group, input height and width.
    c: usize,
    h: usize,
    w: usize,
    /// Output height and width.
    oh: usize,
    ow: usize,
    /// Vertical and horizontal stride (the horizontal one is also the number of phases).
    sh: usize,
    sw: usize,
    /// Top padding.
    pt: usize,
    /// Padded height, length of a staged phase row.
    rows: usize,
    len: usize,
    /// For each phase, the staged columns `first..end` that hold input columns, and the input
    /// column of `first` (the others are padding).
    spans: Vec<(usize, usize, usize)>,
    /// Where kernel cell `(ci, ki, kj)` (in the weights' order) reads, relative to the start of
    /// the block it computes.
    taps: Taps,
}

impl Direct {
    pub(super) fn new(
        [c, h, w]: [usize; 3],
        [kh, kw]: [usize; 2],
        [oh, ow]: [usize; 2],
        win: &Window,
    ) -> Direct {
        let [sh, sw] = win.strides;
        let [dh, dw] = win.dilations;
        let rows = h + win.pads[0] + win.pads[2];
        let blocks = ow.div_ceil(LANES);
        // Block `b` of a row reads staged columns `b * 8 + (kj * dw) / sw` and the 7 after.
        let len = blocks * LANES + ((kw - 1) * dw) / sw;
        let pl = win.pads[1];
        let spans = (0..sw)
            .map(|p| {
                // Staged column q is padded column q * sw + p, input column q * sw + p - pl.
                let first = pl.saturating_sub(p).div_ceil(sw).min(len);
                let end = (w + pl).saturating_sub(p).div_ceil(sw).clamp(first, len);
                (first, end, (first * sw + p).saturating_sub(pl))
            })
            .collect();
        let mut taps = Vec::with_capacity(c * kh * kw);
        for ci in 0..c {
            for ki in 0..kh {
                for kj in 0..kw {
                    let (phase, shift) = ((kj * dw) % sw, (kj * dw) / sw);
                    taps.push(((ci * rows + ki * dh) * sw + phase) * len + shift);
                }
            }
        }
        Direct {
            c,
            h,
            w,
            oh,
            ow,
            sh,
            sw,
            pt: win.pads[0],
            rows,
            len,
            spans,
            taps: Taps::new(taps),
        }
    }

    /// Stages the group's input `src` `[c, h, w]` into `buf`: `[c, rows, sw, len]`, where
    /// phase `p` of padded row `r` holds the padded columns `p, p + sw, p + 2 sw, ...`, and
    /// zeros in the padding.
    pub(super) fn stage(&self, src: &[f32], buf: &mut Vec<f32>) {
        let (s, len, pt) = (self.sw, self.len, self.pt);
        // One bulk clear for the padding (cheaper than many short ones), then the input.
        buf.clear();
        buf.resize(self.c * self.rows * s * len, 0.0);
        let planes = buf.chunks_exact_mut(self.rows * s * len);
        for (staged, plane) in planes.zip(src.chunks_exact(self.h * self.w)) {
            let rows = staged.chunks_exact_mut(s * len).skip(pt);
            for (row, line) in rows.zip(plane.chunks_exact(self.w)) {
                for (dst, &(first, end, at)) in row.chunks_exact_mut(len).zip(&self.spans) {
                    let dst = &mut dst[first..end];
                    let Some(last) = dst.len().checked_sub(1) else {
                        continue;
                    };
                    let line = &line[at..=at + last * s];
                    if s == 1 {
                        dst.copy_from_slice(line);
                    } else {
                        (dst.iter_mut().enumerate()).for_each(|(k, d)| *d = line[k * s]);
                    }
                }
            }
        }
    }

    /// Convolves a staged group with `weights` (for each block of 8 output channels, each
    /// kernel cell's weights for those channels, zeros past the last channel) into `dst`
    /// `[m, oh, ow]`, mapping each output channel's sums `v` to `v * mul + add` with its
    /// `affine` pair, then to `max(v, 0)` if `relu`.
    pub(super) fn run(
        &self,
        staged: &[f32],
        weights: &[[f32; CHANNELS]],
        affine: &[(f32, f32)],
        relu: bool,
        dst: &mut [f32],
    ) {
        let k = self.taps.len();
        let oplane = self.oh * self.ow;
        let m = dst.len() / oplane.max(1);
        for (b, wb) in weights.chunks_exact(k).enumerate() {
            let chans = CHANNELS.min(m - b * CHANNELS);
            let affine = &affine[b * CHANNELS..b * CHANNELS + chans];
            for oy in 0..self.oh {
                let base = oy * self.sh * self.sw * self.len;
                let dst = &mut dst[b * CHANNELS * oplane + oy * self.ow..];
                conv_row(
                    staged, &self.taps, wb, base, affine, dst, oplane, self.ow, relu,
                );
            }
        }
    }
}

/// Reorders weights `[m, k]` (one group's, `k` = input channels x kernel cells) as the kernel
/// reads them: per block of 8 output channels, per kernel cell, the 8 channels' weights.
pub(super) fn arrange(w: &[f32], m: usize, k: usize) -> Vec<[f32; CHANNELS]> {
    let mut out = vec![[0f32; CHANNELS]; m.div_ceil(CHANNELS) * k];
    for (ch, row) in w.chunks_exact(k).take(m).enumerate() {
        let block = &mut out[(ch / CHANNELS) * k..][..k];
        for (cell, &v) in block.iter_mut().zip(row) {
            cell[ch % CHANNELS] = v;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The definition, loop by loop, for one group.
    fn naive(
        x: &[f32],
        w: &[f32],
        [c, h, wd]: [usize; 3],
        m: usize,
        k: [usize; 2],
        win: &Window,
    ) -> Vec<f32> {
        let [oh, ow] = out_size([h, wd], k, win);
        let mut y = vec![0f32; m * oh * ow];
        for o in 0..m {
            for oy in 0..oh {
                for ox in 0..ow {
                    let mut s = 0f64;
                    for ci in 0..c {
                        for ki in 0..k[0] {
                            for kj in 0..k[1] {
                                let iy = (oy * win.strides[0] + ki * win.dilations[0]) as isize
                                    - win.pads[0] as isize;
                                let ix = (ox * win.strides[1] + kj * win.dilations[1]) as isize
                                    - win.pads[1] as isize;
                                if (0..h as isize).contains(&iy) && (0..wd as isize).contains(&ix) {
                                    let v = x[(ci * h + iy as usize) * wd + ix as usize];
                                    s += (v * w[((o * c + ci) * k[0] + ki) * k[1] + kj]) as f64;
                                }
                            }
                        }
                    }
                    y[(o * oh + oy) * ow + ox] = s as f32;
                }
            }
        }
        y
    }

    fn out_size([h, w]: [usize; 2], k: [usize; 2], win: &Window) -> [usize; 2] {
        let o = |ax: usize, n: usize| {
            let extent = win.dilations[ax] * (k[ax] - 1) + 1;
            (n + win.pads[ax] + win.pads[ax + 2] - extent) / win.strides[ax] + 1
        };
        [o(0, h), o(1, w)]
    }

    #[test]
    fn direct_convolution_matches_the_definition() {
        let mut seed = 1u64;
        let mut noise = |n: usize| -> Vec<f32> {
            (0..n)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
                })
                .collect()
        };
        // Channels, input size, output channels, kernel, strides, pads, dilations.
        let cases = [
            (1, [28, 28], 8, [3, 3], [1, 1], [1, 1, 1, 1], [1, 1]),
            (8, [14, 14], 16, [3, 3], [2, 2], [1, 1, 1, 1], [1, 1]),
            (3, [9, 23], 13, [2, 3], [1, 3], [0, 2, 1, 0], [2, 1]),
            (2, [5, 5], 5, [5, 5], [3, 2], [4, 4, 4, 4], [1, 1]),
            (4, [7, 40], 9, [1, 3], [2, 4], [0, 0, 0, 3], [1, 3]),
            (2, [6, 6], 4, [3, 3], [1, 1], [0, 0, 0, 0], [1, 1]),
        ];
        for (c, [h, wd], m, k, strides, pads, dilations) in cases {
            let win = Window {
                strides,
                pads,
                dilations,
            };
            let x = noise(c * h * wd);
            let w = noise(m * c * k[0] * k[1]);
            let [oh, ow] = out_size([h, wd], k, &win);
            let d = Direct::new([c, h, wd], k, [oh, ow], &win);
            let mut staged = vec![f32::NAN; 3];
            d.stage(&x, &mut staged);
            let mut y = vec![f32::NAN; m * oh * ow];
            let affine = vec![(1.5, -0.25); m];
            d.run(
                &staged,
                &arrange(&w, m, c * k[0] * k[1]),
                &affine,
                false,
                &mut y,
            );
            let want = naive(&x, &w, [c, h, wd], m, k, &win);
            for (i, (a, b)) in y.iter().zip(&want).enumerate() {
                let b = b * 1.5 - 0.25;
                assert!((a - b).abs() <= 1e-5, "{win:?} output {i}: {a} vs {b}");
            }
        }
    }
}
