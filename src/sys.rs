//! The only module with `unsafe` code: memory maps of input files, the SGEMM kernel and the
//! AVX2 kernels of convolution and pooling. Each function states why its use is sound;
//! everything outside this module is safe Rust.
#![allow(unsafe_code)]

use std::fs::File;

/// Most bytes one page fault may map around the faulting page: Linux maps the cached pages of a
/// `fault_around_bytes` block (64 KiB), and on kernels whose page cache holds large folios, a
/// whole folio, up to a 2 MiB huge page.
const FAULT_AROUND: usize = 2 << 20;

/// A read-only memory map of a whole file.
pub struct Map(memmap2::Mmap);

impl Map {
    /// Maps `file` read-only.
    ///
    /// nnsign maps only safetensors files it imports (`pack` inputs, `verify-load --input`),
    /// never artifacts. A map is only well-defined while nobody rewrites or truncates the file:
    /// a concurrent writer can change the bytes under us (`pack` hashes and writes each byte as
    /// it reads it once, so the artifact then fails verification rather than carrying bytes it
    /// did not hash), and a truncation kills the process with SIGBUS. Do not pack files that
    /// another process is still writing.
    pub fn new(file: &File) -> std::io::Result<Map> {
        // SAFETY: see above; the map is read-only (a shared file mapping nobody here writes).
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(Map(map))
    }
}

impl Map {
    /// Drops the pages of `range` from this process's resident set once they have been read, so
    /// that packing a model larger than memory does not hold all of it. Best effort: an error
    /// only means the pages stay resident.
    ///
    /// The range is widened to whole [`FAULT_AROUND`] blocks: a page fault maps the cached pages
    /// around it, so a core reading the start of one range maps the end of the range before it,
    /// which another core may have released already; widened, the last core to touch a block
    /// releases all of it (a page released too early is faulted in again, unchanged). Without
    /// it, encrypted packs, whose ranges are not aligned, kept 7% of a 4 GiB model resident
    /// (287 MiB; 30 MiB with it, as much as a plain pack).
    pub fn release(&self, range: std::ops::Range<usize>) {
        let start = range.start - range.start % FAULT_AROUND;
        let end = range.end.next_multiple_of(FAULT_AROUND).min(self.0.len());
        if start >= end {
            return;
        }
        // SAFETY: MADV_DONTNEED on a read-only file mapping that this process never writes only
        // unmaps the pages; a later access faults them in again from the file, with the same
        // contents, so no reference into the map can observe a change.
        let _ = unsafe {
            self.0
                .unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
        };
    }
}

impl std::ops::Deref for Map {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

/// Asks the kernel to back `buf` with 2 MiB pages where it can (transparent huge pages, which
/// this kind of machine grants on request: "madvise" mode). A fresh buffer of a GiB then takes
/// 512 page faults as it is first written instead of 262,144: 0.06 s instead of 0.38 s here,
/// most of what reading a model into memory costs beyond hashing it. Best effort: without
/// huge pages the buffer works the same.
pub fn prefer_huge_pages(buf: &mut [u8]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE: usize = 2 << 20;
        let first = buf.as_ptr() as usize;
        let start = first.next_multiple_of(HUGE);
        let end = (first + buf.len()) & !(HUGE - 1);
        if end > start {
            // SAFETY: MADV_HUGEPAGE changes how the kernel backs these pages, never what they
            // hold; the range lies inside `buf`, which is borrowed mutably here, and madvise
            // reads or writes no memory of ours.
            unsafe {
                libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
            }
        }
    }
}

/// A read-only view of a float32 matrix: element `(i, j)` is `data[i * rs + j * cs]`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub rs: usize,
    pub cs: usize,
}

impl<'a> MatRef<'a> {
    /// A row-major `[rows, cols]` matrix.
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// Rows `first..first + count` of this matrix.
    pub fn rows(self, first: usize, count: usize) -> Self {
        assert!(first + count <= self.rows, "row range out of the matrix");
        MatRef {
            data: &self.data[(first * self.rs).min(self.data.len())..],
            rows: count,
            ..self
        }
    }

    /// Whether every element this view addresses lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1)
                .checked_mul(self.rs)
                .and_then(|r| (self.cols - 1).checked_mul(self.cs)?.checked_add(r))
                .is_some_and(|last| last < self.data.len())
    }
}

/// `c = alpha * a · b + beta * c` for `c` row-major `[a.rows, b.cols]`; with `beta` 0, `c` is
/// only written.
pub fn sgemm_view(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: &mut [f32]) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    // Callers size these from shapes inference checked; a mismatch is a bug in nnsign, not bad
    // input.
    assert!(
        b.rows == k && c.len() == m * n && a.in_bounds() && b.in_bounds(),
        "sgemm called with inconsistent sizes"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        c.iter_mut().for_each(|v| *v *= beta);
        return;
    }
    // SAFETY: the assert above proves that every element matrixmultiply reads, at
    // `i * rs + j * cs` for `i < rows` and `j < cols`, lies inside `a.data` and `b.data`, and
    // that `c` holds exactly `m * n` elements at row stride `n`; `c` is the only mutable borrow.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.rs as isize,
            a.cs as isize,
            b.data.as_ptr(),
            b.rs as isize,
            b.cs as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// Output columns and output channels of one block of the direct convolution.
pub const BLOCK: usize = 8;

/// Where each kernel cell of a direct convolution reads, relative to a block's start, with
/// the farthest of them known so that a block's reads are bounds-checked once.
pub struct Taps {
    offsets: Vec<usize>,
    /// One past the last float any block starting at 0 reads.
    reach: usize,
}

impl Taps {
    pub fn new(offsets: Vec<usize>) -> Taps {
        let reach = offsets.iter().max().map_or(0, |&m| m + BLOCK);
        Taps { offsets, reach }
    }

    pub fn len(&self) -> usize {
        self.offsets.len()
    }
}

/// One output row of the direct convolution for up to 8 output channels, 8 columns at a time:
/// for channel `ch < affine.len()` and column `x < width`, `dst[ch * stride + x] = (sum over
/// kernel cells t of weights[t][ch] * staged[base + x + taps[t]]) * mul + add` with `(mul,
/// add) = affine[ch]`, summed in cell order, then `max(0)` if `relu`. On x86-64 CPUs with AVX2 a block's 64 sums stay
/// in registers; elsewhere the same arithmetic runs in plain Rust. Both round identically (a
/// multiply, then an add: no fused multiply-add), so results do not depend on the CPU.
#[allow(clippy::too_many_arguments)]
pub fn conv_row(
    staged: &[f32],
    taps: &Taps,
    weights: &[[f32; BLOCK]],
    base: usize,
    affine: &[(f32, f32)],
    dst: &mut [f32],
    stride: usize,
    width: usize,
    relu: bool,
) {
    let blocks = width.div_ceil(BLOCK);
    assert!(
        weights.len() == taps.len()
            && affine.len() <= BLOCK
            && (blocks == 0 || base + (blocks - 1) * BLOCK + taps.reach <= staged.len())
            && (affine.is_empty() || (affine.len() - 1) * stride + width <= dst.len()),
        "a convolution row reads or writes outside its buffers"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above). The assert proves that every read,
        // `staged[base + x + t .. base + x + t + 8]` for a block start `x <= (blocks - 1) * 8`
        // and a tap `t <= reach - 8`, is inside `staged`; `weights` has one entry per tap; and
        // every write, `dst[ch * stride + x]` for `ch < affine.len()` and `x < width`, is inside
        // `dst` (a last, partial block is written through a mask of its first lanes).
        unsafe {
            let offsets = &taps.offsets;
            conv_row_avx2(
                staged, offsets, weights, base, affine, dst, stride, width, relu,
            )
        };
        return;
    }
    conv_row_portable(
        staged,
        &taps.offsets,
        weights,
        base,
        affine,
        dst,
        stride,
        width,
        relu,
    );
}

/// [`conv_row`] in plain Rust, for CPUs without AVX2.
#[allow(clippy::too_many_arguments)]
fn conv_row_portable(
    staged: &[f32],
    taps: &[usize],
    weights: &[[f32; BLOCK]],
    base: usize,
    affine: &[(f32, f32)],
    dst: &mut [f32],
    stride: usize,
    width: usize,
    relu: bool,
) {
    for x0 in (0..width).step_by(BLOCK) {
        let mut acc = [[0f32; BLOCK]; BLOCK];
        for (&t, wk) in taps.iter().zip(weights) {
            let v = &staged[base + x0 + t..][..BLOCK];
            for (a, &w) in acc.iter_mut().zip(wk) {
                for (a, &x) in a.iter_mut().zip(v) {
                    *a += w * x;
                }
            }
        }
        let n = BLOCK.min(width - x0);
        for (ch, (a, &(mul, add))) in acc.iter().zip(affine).enumerate() {
            let d = &mut dst[ch * stride + x0..][..n];
            for (d, &v) in d.iter_mut().zip(a) {
                let v = v * mul + add;
                // As _mm256_max_ps(v, 0): 0 for NaN, like f32::max.
                *d = if relu { v.max(0.0) } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn conv_row_avx2(
    staged: &[f32],
    taps: &[usize],
    weights: &[[f32; BLOCK]],
    base: usize,
    affine: &[(f32, f32)],
    dst: &mut [f32],
    stride: usize,
    width: usize,
    relu: bool,
) {
    use std::arch::x86_64::*;
    let out = dst.as_mut_ptr();
    for x0 in (0..width).step_by(BLOCK) {
        let mut acc = [_mm256_setzero_ps(); BLOCK];
        let src = staged.as_ptr().add(base + x0);
        for (&t, wk) in taps.iter().zip(weights) {
            let v = _mm256_loadu_ps(src.add(t));
            for (a, &w) in acc.iter_mut().zip(wk) {
                *a = _mm256_add_ps(*a, _mm256_mul_ps(_mm256_set1_ps(w), v));
            }
        }
        let n = BLOCK.min(width - x0);
        // The first `n` lanes, for the last block of a row.
        let lanes = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        for (ch, (&a, &(mul, add))) in acc.iter().zip(affine).enumerate() {
            let mut r = _mm256_add_ps(_mm256_mul_ps(a, _mm256_set1_ps(mul)), _mm256_set1_ps(add));
            if relu {
                r = _mm256_max_ps(r, _mm256_setzero_ps());
            }
            let d = out.add(ch * stride + x0);
            if n == BLOCK {
                _mm256_storeu_ps(d, r);
            } else {
                _mm256_maskstore_ps(d, lanes, r);
            }
        }
    }
}

/// Max pooling of two input rows by 2x2 windows at stride 2: `out[i]` is the largest of
/// `r0[2i], r0[2i + 1], r1[2i], r1[2i + 1]`, NaN if any of them is (as onnxruntime's MaxPool).
/// With AVX2, 8 outputs per step; the same values either way (a maximum is exact).
pub fn max_pairs(r0: &[f32], r1: &[f32], out: &mut [f32]) {
    let n = out.len();
    assert!(
        r0.len() >= 2 * n && r1.len() >= 2 * n,
        "pooling rows shorter than their output"
    );
    let mut done = 0;
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present; the assert proves that `r0` and `r1` hold `2 n` floats and
        // `out` holds `n`; the AVX2 loop reads and writes only blocks of 8 outputs starting at
        // most at `n - 8`, and returns how many outputs it did (all, or none when `n < 8`).
        done = unsafe { max_pairs_avx2(r0, r1, out) };
    }
    for ((o, a), b) in (out[done..].iter_mut())
        .zip(r0[2 * done..].chunks_exact(2))
        .zip(r1[2 * done..].chunks_exact(2))
    {
        *o = nan_max(nan_max(a[0], a[1]), nan_max(b[0], b[1]));
    }
}

/// The larger of `a` and `b`, NaN if either is.
#[inline(always)]
fn nan_max(a: f32, b: f32) -> f32 {
    if a > b || a.is_nan() {
        a
    } else {
        b
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn max_pairs_avx2(r0: &[f32], r1: &[f32], out: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    // `nan_max` on 8 lanes: x where x > y or x is NaN, else y.
    let nan_max = |x: __m256, y: __m256| {
        let keep = _mm256_or_ps(
            _mm256_cmp_ps(x, y, _CMP_GT_OQ),
            _mm256_cmp_ps(x, x, _CMP_UNORD_Q),
        );
        _mm256_blendv_ps(y, x, keep)
    };
    let n = out.len();
    if n < 8 {
        return 0;
    }
    // Whole blocks of 8 outputs, the last one moved back to end at `n`: it overlaps the block
    // before, which is harmless (the same maxima are written again).
    for b in 0..n.div_ceil(8) {
        let at = (8 * b).min(n - 8);
        let (p, q) = (r0.as_ptr().add(2 * at), r1.as_ptr().add(2 * at));
        let lo = nan_max(_mm256_loadu_ps(p), _mm256_loadu_ps(q));
        let hi = nan_max(_mm256_loadu_ps(p.add(8)), _mm256_loadu_ps(q.add(8)));
        // Even and odd columns; within each 128-bit lane, so outputs come out as 0 1 4 5 2 3
        // 6 7, put in order by moving 64-bit pairs.
        let even = _mm256_shuffle_ps(lo, hi, 0b10_00_10_00);
        let odd = _mm256_shuffle_ps(lo, hi, 0b11_01_11_01);
        let m = _mm256_castpd_ps(_mm256_permute4x64_pd(
            _mm256_castps_pd(nan_max(even, odd)),
            0b11_01_10_00,
        ));
        _mm256_storeu_ps(out.as_mut_ptr().add(at), m);
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pseudo-random floats in [-1, 1), from a fixed seed.
    fn noise(n: usize, seed: &mut u64) -> Vec<f32> {
        (0..n)
            .map(|_| {
                *seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (*seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_avx2_convolution_rounds_exactly_as_the_portable_one() {
        let mut seed = 7;
        for (cells, chans, width) in [(9, 8, 28usize), (72, 3, 7), (1, 1, 1), (25, 8, 17)] {
            let offsets: Vec<usize> = (0..cells).map(|t| (t * 37) % 101).collect();
            let taps = Taps::new(offsets.clone());
            let staged = noise(width.div_ceil(BLOCK) * BLOCK + taps.reach + 3, &mut seed);
            let weights: Vec<[f32; BLOCK]> = (0..cells)
                .map(|_| noise(BLOCK, &mut seed).try_into().expect("8 floats"))
                .collect();
            let affine: Vec<(f32, f32)> = (0..chans)
                .map(|_| (noise(1, &mut seed)[0], noise(1, &mut seed)[0]))
                .collect();
            let stride = width + 5;
            let mut fast = vec![f32::NAN; chans * stride];
            let mut plain = fast.clone();
            // With and without the fused Relu.
            let relu = chans % 2 == 0;
            let (w, a) = (&weights, &affine);
            conv_row(&staged, &taps, w, 3, a, &mut fast, stride, width, relu);
            conv_row_portable(&staged, &offsets, w, 3, a, &mut plain, stride, width, relu);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&fast), bits(&plain), "{cells} cells, {chans} channels");
            // Every column of every channel written, nothing past the row.
            for ch in 0..chans {
                let row = &fast[ch * stride..(ch + 1) * stride];
                assert!(row[..width].iter().all(|v| !v.is_nan()));
                assert!(row[width..].iter().all(|v| v.is_nan()));
            }
        }
    }
}

/// Lets the C allocator keep up to `bytes` (a run's peak of live values) of freed memory for
/// the next steps and runs of a model instead of handing it back to the kernel. Each op's
/// output is a fresh allocation, and glibc's defaults (buffers from 128 KiB up mapped on their
/// own, the heap trimmed once 128 KiB lie free at its top, both raised only by what it has
/// seen freed) return most of them, so that the next step or run takes a page fault for every
/// 4 KiB it writes again: on the transformer benchmark (batch 256), 1,100 faults a run and a
/// fifth of its CPU time.
///
/// Buffers under 32 MiB (the most glibc takes for this setting on 64-bit) then come from the
/// heap, and freed memory stays with the process while it is under the largest run's peak (at
/// least 64 MiB, at most [`MAX_RETAINED`]): what stays resident between runs is what a run
/// needed anyway. Larger buffers (most weights) are still mapped and returned whole. The
/// settings are process-wide and only ever raised; elsewhere than Linux with glibc nothing
/// changes.
pub fn retain_freed_memory(bytes: u64) {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        use std::sync::atomic::{AtomicU64, Ordering};
        const MMAP_THRESHOLD: u64 = 32 << 20;
        static RETAINED: AtomicU64 = AtomicU64::new(0);
        let want = bytes.clamp(2 * MMAP_THRESHOLD, MAX_RETAINED);
        if RETAINED.fetch_max(want, Ordering::Relaxed) >= want {
            return;
        }
        // SAFETY: mallopt only sets allocator parameters, under the allocator's own lock; it
        // reads and writes no memory of ours, and both values fit in a C int (at most 1 GiB).
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
            libc::mallopt(libc::M_TRIM_THRESHOLD, want as libc::c_int);
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    let _ = bytes;
}

/// The most freed memory [`retain_freed_memory`] lets the allocator keep.
pub const MAX_RETAINED: u64 = 1 << 30;

/// Replaces every element `x` of `xs` by `f(x)`, in code compiled for AVX2 where the CPU has
/// it: a loop over a branch-free `f` that the compiler inlines (such as the vector `exp` of
/// `ops::elementwise`) then runs 8 lanes at a time instead of SSE2's 4. The results are the
/// same bits either way: Rust never fuses a multiply and an add on its own, and nothing here
/// asks for it.
pub fn map_f32(xs: &mut [f32], f: impl Fn(f32) -> f32) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        #[target_feature(enable = "avx2")]
        unsafe fn map_avx2(xs: &mut [f32], f: impl Fn(f32) -> f32) {
            xs.iter_mut().for_each(|x| *x = f(*x));
        }
        // SAFETY: AVX2 is present (checked just above); the function is safe Rust otherwise.
        unsafe { map_avx2(xs, f) };
        return;
    }
    xs.iter_mut().for_each(|x| *x = f(*x));
}
