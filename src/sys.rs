//! The only module with `unsafe` code: memory maps of input files, the SGEMM kernel, the
//! AVX2 kernels of convolution and pooling, and the AVX-512 and AVX2 kernels of the recurrent
//! layers' products and activations. Each function states why its use is sound;
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

/// The process's effective user id, whose folders [`crate::output::private_dir`] accepts.
pub fn effective_uid() -> u32 {
    // SAFETY: geteuid takes nothing, cannot fail and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// Starts writing `len` bytes of `file` from `offset` back to disk, without waiting for them:
/// a large file written this way as it is made has little left to write when it is fsynced, so
/// the disk works while the cores hash. Best effort: an error only means the final fsync
/// writes these bytes itself.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range reads no memory of ours: it only queues the file's dirty
        // pages of the range for writing.
        unsafe {
            libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
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

/// Columns of one panel of [`Panels`]: one AVX-512 vector, two AVX2 ones.
pub const PANEL: usize = 16;

/// Floats from which [`Panels::transposed`] packs on every core (half a MiB: about 20 µs on
/// one here).
const PACK_PAR: usize = 1 << 17;

/// Floats of `a` that [`panel_product`] keeps in a core's L2 cache while every panel of `b`
/// streams past them (256 KiB: a quarter of this machine's L2).
const A_BLOCK: usize = 1 << 16;

/// The transpose of a row-major `[n, k]` matrix, `[k, n]`, packed for [`panel_product`]:
/// panel `p` holds columns `16p .. 16p + 16` as a row-major `[k, 16]` block (columns past `n`
/// are 0), starting on a 64-byte line, so that a product reads each panel from start to end,
/// one whole cache line per row.
///
/// A recurrent layer multiplies its state by the same `Rᵀ` at every step; packed once, each
/// step's product only streams it.
pub struct Panels {
    /// `panels() * k * 16` floats from `start`; before it, the padding that aligns it.
    data: Vec<f32>,
    start: usize,
    k: usize,
    n: usize,
}

impl Panels {
    /// Packs `r`ᵀ for `r` row-major `[n, k]`; on every core if `par` and `r` is large
    /// enough to be worth waking them ([`PACK_PAR`]).
    pub fn transposed(r: &[f32], n: usize, k: usize, par: bool) -> Panels {
        use rayon::prelude::*;
        // Callers size `r` from shapes inference checked.
        assert!(n * k == r.len(), "a packed matrix of inconsistent size");
        let len = n.div_ceil(PANEL) * k * PANEL;
        let mut data = vec![0f32; len + PANEL];
        let start = data.as_ptr().align_offset(64).min(PANEL);
        let pack = |(p, dst): (usize, &mut [f32])| {
            let rows = &r[p * PANEL * k..((p + 1) * PANEL * k).min(r.len())];
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: AVX-512F is present (checked just above); `rows` holds whole rows of
                // `k`, at most 16, read through masks that stop at `k`, and `dst` 16 floats for
                // each of the `k` columns (a panel).
                unsafe { pack_avx512(rows, k, dst) };
                return;
            }
            pack_portable(rows, k, dst);
        };
        // With no columns (`k` 0), no panel has anything to pack.
        let (body, panel) = (&mut data[start..start + len], (k * PANEL).max(1));
        if par && r.len() >= PACK_PAR {
            body.par_chunks_mut(panel).enumerate().for_each(pack);
        } else {
            body.chunks_mut(panel).enumerate().for_each(pack);
        }
        Panels { data, start, k, n }
    }

    pub fn panels(&self) -> usize {
        self.n.div_ceil(PANEL)
    }

    fn body(&self) -> &[f32] {
        &self.data[self.start..self.start + self.panels() * self.k * PANEL]
    }
}

/// One panel of [`Panels::transposed`]: `dst[kk * 16 + j] = rows[j * k + kk]`, for up to 16
/// `rows` of `k`; the rest of `dst` is left as it is (zero).
fn pack_portable(rows: &[f32], k: usize, dst: &mut [f32]) {
    for (j, src) in rows.chunks_exact(k).enumerate() {
        for (d, &v) in dst[j..].iter_mut().step_by(PANEL).zip(src) {
            *d = v;
        }
    }
}

/// [`pack_portable`] with AVX-512, by blocks of 16 rows by 16 columns transposed in registers
/// (a load, 4 shuffles and a store a row): 3 times faster here than placing values one by
/// one.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn pack_avx512(rows: &[f32], k: usize, dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let n = rows.len() / k;
    let (src, out) = (rows.as_ptr(), dst.as_mut_ptr());
    for k0 in (0..k).step_by(PANEL) {
        let w = PANEL.min(k - k0);
        let lanes = ((1u32 << w) - 1) as __mmask16;
        // Rows past `n` stay 0: the padding of a last panel.
        let mut r = [_mm512_setzero_ps(); PANEL];
        for (j, r) in r.iter_mut().enumerate().take(n) {
            *r = _mm512_maskz_loadu_ps(lanes, src.add(j * k + k0));
        }
        // Pairs of rows interleaved by 32-bit, then by 64-bit elements, within 128-bit lanes;
        // then 128-bit lanes gathered twice: row q then holds column q of the block.
        let mut t = [_mm512_setzero_ps(); PANEL];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
        }
        let (lo, hi) = (
            |a: __m512, b: __m512| {
                _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
            },
            |a: __m512, b: __m512| {
                _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
            },
        );
        for i in 0..4 {
            let b = 4 * i;
            r[b] = lo(t[b], t[b + 2]);
            r[b + 1] = hi(t[b], t[b + 2]);
            r[b + 2] = lo(t[b + 1], t[b + 3]);
            r[b + 3] = hi(t[b + 1], t[b + 3]);
        }
        for h in 0..2 {
            let b = 8 * h;
            for i in 0..4 {
                t[b + i] = _mm512_shuffle_f32x4::<0x88>(r[b + i], r[b + 4 + i]);
                t[b + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(r[b + i], r[b + 4 + i]);
            }
        }
        for i in 0..8 {
            r[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
            r[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
        }
        for (q, &v) in r.iter().enumerate().take(w) {
            _mm512_storeu_ps(out.add((k0 + q) * PANEL), v);
        }
    }
}

/// `c = a·b + bias` over the columns of `b`'s panels `panels` (`16 * panels.start` up to
/// `16 * panels.end` or `b`'s last): `a` is row-major `[m, k]`, `c` row-major `[m, width]` for
/// the `width` columns, and `bias`, one value a column of `b`, is added to every row.
///
/// On x86-64 CPUs with AVX-512 or AVX2 and FMA, tiles of up to 8 rows by 32 columns (AVX2: 6
/// by 16) add up in registers, each sum a chain of fused multiply-adds in the order of `k`;
/// elsewhere plain Rust adds products rounded first. The two round differently (by an ulp or
/// so a term), so results depend on the CPU, not on how rows or panels are grouped.
pub fn panel_product(
    a: &[f32],
    b: &Panels,
    panels: std::ops::Range<usize>,
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    let k = b.k;
    let cols = panels.start * PANEL..(panels.end * PANEL).min(b.n);
    // Callers size these from shapes inference checked; a mismatch is a bug in nnsign.
    assert!(
        panels.start <= panels.end && panels.end <= b.panels(),
        "panels out of the packed matrix"
    );
    let width = cols.len();
    if width == 0 {
        assert!(c.is_empty(), "a panel product of inconsistent sizes");
        return;
    }
    let m = c.len() / width;
    assert!(
        m * width == c.len() && m * k == a.len() && bias.is_none_or(|v| v.len() == b.n),
        "a panel product of inconsistent sizes"
    );
    if m == 0 {
        return;
    }
    if k == 0 {
        for row in c.chunks_exact_mut(width) {
            match bias {
                Some(v) => row.copy_from_slice(&v[cols.clone()]),
                None => row.fill(0.0),
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        let tile = Tile {
            a: a.as_ptr(),
            lda: k,
            b: b.body().as_ptr(),
            k,
            bias: bias.map_or(std::ptr::null(), |v| v.as_ptr()),
            c: c.as_mut_ptr(),
            ldc: width,
            width: 0,
        };
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked just above). The assert proves that `a`
            // holds `m` rows of `k`, `c` `m` rows of `width`, `bias` (when given) a value for
            // each of `b`'s `n` columns, and `b` every panel of `panels`, each `k * 16`
            // floats; `tiles` cuts `m` rows and those panels into tiles inside them, and each
            // tile reads and writes only its rows and columns (see `Tile`).
            unsafe { product_avx512(&tile, m, panels) };
            return;
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: AVX2 and FMA are present; the rest as for AVX-512 just above.
            unsafe { product_avx2(&tile, m, panels) };
            return;
        }
    }
    panel_product_portable(a, b, panels, bias, c);
}

/// [`panel_product`] in plain Rust, for CPUs without AVX2 and FMA.
fn panel_product_portable(
    a: &[f32],
    b: &Panels,
    panels: std::ops::Range<usize>,
    bias: Option<&[f32]>,
    c: &mut [f32],
) {
    let k = b.k;
    let first = panels.start * PANEL;
    let width = (panels.end * PANEL).min(b.n) - first;
    for (arow, crow) in a.chunks_exact(k).zip(c.chunks_exact_mut(width)) {
        for (p, panel) in (b.body().chunks_exact(k * PANEL).enumerate())
            .take(panels.end)
            .skip(panels.start)
        {
            let at = p * PANEL - first;
            let lanes = PANEL.min(width - at);
            let mut acc = [0f32; PANEL];
            if let Some(v) = bias {
                acc[..lanes].copy_from_slice(&v[first + at..][..lanes]);
            }
            for (&x, brow) in arow.iter().zip(panel.chunks_exact(PANEL)) {
                for (s, &y) in acc.iter_mut().zip(brow) {
                    *s += x * y;
                }
            }
            crow[at..at + lanes].copy_from_slice(&acc[..lanes]);
        }
    }
}

/// Where a tile of [`panel_product`] reads and writes: rows of `a` from `a` (stride `lda`),
/// panels of `b` from `b` (each `k * 16` floats; a tile's first panel first), the bias of its
/// first column at `bias` (null: none), its first output at `c` (rows `ldc` apart); `width`
/// columns are written a row, the rest of its last panel (zero padding) is not.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct Tile {
    a: *const f32,
    lda: usize,
    b: *const f32,
    k: usize,
    bias: *const f32,
    c: *mut f32,
    ldc: usize,
    width: usize,
}

/// Cuts an `[m rows, panels]` product into tiles: blocks of rows of `a` that stay in L2 (about
/// [`A_BLOCK`] floats), within which each group of panels (they stay in L1) meets every row
/// in turn, `mr` rows at a time with `np(mr)` panels; the rows left over, fewer than `mr`, take
/// `np` of their count. Calls `tile(t, rows, panels)` with `t` pointing at the tile.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn tiles(
    t: &Tile,
    m: usize,
    panels: std::ops::Range<usize>,
    mr: usize,
    np: impl Fn(usize) -> usize,
    mut tile: impl FnMut(&Tile, usize, usize),
) {
    let block = (A_BLOCK / t.k).max(mr) / mr * mr;
    for r0 in (0..m).step_by(block) {
        let rows = block.min(m - r0);
        let full = rows / mr * mr;
        if full > 0 {
            span(t, &panels, r0, full, mr, np(mr), &mut tile);
        }
        if rows > full {
            let rest = rows - full;
            span(t, &panels, r0 + full, rest, rest, np(rest), &mut tile);
        }
    }
}

/// The tiles of rows `first .. first + rows`, `mr` at a time, by `step` panels (fewer at the
/// end): see [`tiles`].
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn span(
    t: &Tile,
    panels: &std::ops::Range<usize>,
    first: usize,
    rows: usize,
    mr: usize,
    step: usize,
    tile: &mut impl FnMut(&Tile, usize, usize),
) {
    let mut p = panels.start;
    while p < panels.end {
        let count = step.min(panels.end - p);
        let col = (p - panels.start) * PANEL;
        for i in (first..first + rows).step_by(mr) {
            // Pointer arithmetic only: the tile's rows, panels and columns lie inside the
            // product's, which `panel_product` checked.
            let at = Tile {
                a: t.a.wrapping_add(i * t.lda),
                b: t.b.wrapping_add(p * t.k * PANEL),
                bias: match t.bias.is_null() {
                    true => t.bias,
                    false => t.bias.wrapping_add(p * PANEL),
                },
                c: t.c.wrapping_add(i * t.ldc + col),
                width: (t.ldc - col).min(count * PANEL),
                ..*t
            };
            tile(&at, mr.min(first + rows - i), count);
        }
        p += count;
    }
}

#[cfg(target_arch = "x86_64")]
impl Tile {
    /// Panel `q` of this tile alone.
    fn panel(&self, q: usize) -> Tile {
        Tile {
            b: self.b.wrapping_add(q * self.k * PANEL),
            bias: match self.bias.is_null() {
                true => self.bias,
                false => self.bias.wrapping_add(q * PANEL),
            },
            c: self.c.wrapping_add(q * PANEL),
            width: self.width.saturating_sub(q * PANEL).min(PANEL),
            ..*self
        }
    }
}

/// [`panel_product`] with AVX-512: tiles of 8 rows by 2 panels, 16 sums of 16 lanes in
/// registers; fewer rows take more panels, so that at least 8 independent chains of fused
/// multiply-adds are in flight (each waits 4 cycles for the one before; 2 start a cycle).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn product_avx512(t: &Tile, m: usize, panels: std::ops::Range<usize>) {
    let np = |rows: usize| match rows {
        1 => 8,
        2 | 3 => 4,
        _ => 2,
    };
    tiles(t, m, panels, 8, np, |t, rows, count| {
        // SAFETY: AVX-512F is present (this function's caller checked it); `tiles` hands out
        // tiles inside the product that `panel_product` checked, `rows` by `count` panels.
        unsafe {
            match (rows, count) {
                (8, 2) => tile_avx512::<8, 2>(t),
                (7, 2) => tile_avx512::<7, 2>(t),
                (6, 2) => tile_avx512::<6, 2>(t),
                (5, 2) => tile_avx512::<5, 2>(t),
                (4, 2) => tile_avx512::<4, 2>(t),
                (3, 4) => tile_avx512::<3, 4>(t),
                (2, 4) => tile_avx512::<2, 4>(t),
                (1, 8) => tile_avx512::<1, 8>(t),
                // The last panels of a row, fewer than a tile takes: one at a time.
                _ => {
                    for q in 0..count {
                        let t = &t.panel(q);
                        match rows {
                            1 => tile_avx512::<1, 1>(t),
                            2 => tile_avx512::<2, 1>(t),
                            3 => tile_avx512::<3, 1>(t),
                            4 => tile_avx512::<4, 1>(t),
                            5 => tile_avx512::<5, 1>(t),
                            6 => tile_avx512::<6, 1>(t),
                            7 => tile_avx512::<7, 1>(t),
                            _ => tile_avx512::<8, 1>(t),
                        }
                    }
                }
            }
        }
    });
}

/// One tile of `MR` rows by `NP` panels (see [`Tile`]), its sums in `MR * NP` registers.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile_avx512<const MR: usize, const NP: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    // The lanes of panel `p` that hold columns of the product.
    let lanes = |p: usize| -> __mmask16 {
        let n = t.width.saturating_sub(p * PANEL).min(PANEL);
        ((1u32 << n) - 1) as __mmask16
    };
    let mut acc = [[_mm512_setzero_ps(); NP]; MR];
    if !t.bias.is_null() {
        for p in 0..NP {
            let v = _mm512_maskz_loadu_ps(lanes(p), t.bias.wrapping_add(p * PANEL));
            acc.iter_mut().for_each(|row| row[p] = v);
        }
    }
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.k {
        let mut y = [_mm512_setzero_ps(); NP];
        for (p, y) in y.iter_mut().enumerate() {
            *y = _mm512_loadu_ps(b.add(p * t.k * PANEL));
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm512_set1_ps(*a.add(r * t.lda));
            for (s, &y) in row.iter_mut().zip(&y) {
                *s = _mm512_fmadd_ps(x, y, *s);
            }
        }
        a = a.add(1);
        b = b.add(PANEL);
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, &v) in row.iter().enumerate() {
            let m = lanes(p);
            if m != 0 {
                _mm512_mask_storeu_ps(t.c.wrapping_add(r * t.ldc + p * PANEL), m, v);
            }
        }
    }
}

/// [`panel_product`] with AVX2 and FMA: tiles of 6 rows by 1 panel, 12 sums of 8 lanes in
/// registers (of 16); fewer rows take more panels, for at least 8 chains in flight.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn product_avx2(t: &Tile, m: usize, panels: std::ops::Range<usize>) {
    let np = |rows: usize| match rows {
        1 => 4,
        2 | 3 => 2,
        _ => 1,
    };
    tiles(t, m, panels, 6, np, |t, rows, count| {
        // SAFETY: AVX2 and FMA are present (this function's caller checked them); `tiles`
        // hands out tiles inside the product that `panel_product` checked.
        unsafe {
            match (rows, count) {
                (3, 2) => tile_avx2::<3, 2>(t),
                (2, 2) => tile_avx2::<2, 2>(t),
                (1, 4) => tile_avx2::<1, 4>(t),
                _ => {
                    for q in 0..count {
                        let t = &t.panel(q);
                        match rows {
                            1 => tile_avx2::<1, 1>(t),
                            2 => tile_avx2::<2, 1>(t),
                            3 => tile_avx2::<3, 1>(t),
                            4 => tile_avx2::<4, 1>(t),
                            5 => tile_avx2::<5, 1>(t),
                            _ => tile_avx2::<6, 1>(t),
                        }
                    }
                }
            }
        }
    });
}

/// One tile of `MR` rows by `NP` panels (see [`Tile`]), each panel two vectors of 8 lanes.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_avx2<const MR: usize, const NP: usize>(t: &Tile) {
    use std::arch::x86_64::*;
    // Columns of the product in half `h` of panel `p`, and a mask of their lanes.
    let lanes = |p: usize, h: usize| {
        let n = t.width.saturating_sub(p * PANEL + h * 8).min(8);
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        (n, mask)
    };
    let mut acc = [[[_mm256_setzero_ps(); 2]; NP]; MR];
    if !t.bias.is_null() {
        for p in 0..NP {
            for h in 0..2 {
                let (_, mask) = lanes(p, h);
                let v = _mm256_maskload_ps(t.bias.wrapping_add(p * PANEL + h * 8), mask);
                acc.iter_mut().for_each(|row| row[p][h] = v);
            }
        }
    }
    let (mut a, mut b) = (t.a, t.b);
    for _ in 0..t.k {
        let mut y = [[_mm256_setzero_ps(); 2]; NP];
        for (p, y) in y.iter_mut().enumerate() {
            let at = b.add(p * t.k * PANEL);
            *y = [_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(8))];
        }
        for (r, row) in acc.iter_mut().enumerate() {
            let x = _mm256_set1_ps(*a.add(r * t.lda));
            for (s, y) in row.iter_mut().zip(&y) {
                s[0] = _mm256_fmadd_ps(x, y[0], s[0]);
                s[1] = _mm256_fmadd_ps(x, y[1], s[1]);
            }
        }
        a = a.add(1);
        b = b.add(PANEL);
    }
    for (r, row) in acc.iter().enumerate() {
        for (p, s) in row.iter().enumerate() {
            for (h, &v) in s.iter().enumerate() {
                let (n, mask) = lanes(p, h);
                let at = t.c.wrapping_add(r * t.ldc + p * PANEL + h * 8);
                match n {
                    8 => _mm256_storeu_ps(at, v),
                    0 => {}
                    _ => _mm256_maskstore_ps(at, mask, v),
                }
            }
        }
    }
}

/// Work that [`wide`] runs compiled for the widest vectors the CPU has.
pub trait Wide {
    type Output;

    /// The work. To be compiled for those vectors, it must be `#[inline(always)]`, and so must
    /// every function it calls that has loops to widen: the compiler copies only those into
    /// [`wide`]'s compiled versions (a closure, which cannot be marked so, stays a call).
    fn run(self) -> Self::Output;
}

/// Runs `work` compiled for the widest vectors the CPU has (AVX-512, else AVX2): loops of plain
/// arithmetic (the recurrent layers' rational tanh and cell updates) then do 16 elements a
/// step where the baseline x86-64 build does 4. The compiler runs the same operations either
/// way (it never fuses a multiply and an add on its own), so the results are the same bits.
pub fn wide<W: Wide>(work: W) -> W::Output {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: AVX-512F is present (checked just above); `wide_avx512` runs safe code
            // compiled to use it.
            return unsafe { wide_avx512(work) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: AVX2 is present; as above.
            return unsafe { wide_avx2(work) };
        }
    }
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn wide_avx512<W: Wide>(work: W) -> W::Output {
    work.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn wide_avx2<W: Wide>(work: W) -> W::Output {
    work.run()
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

    /// Runs one kernel of [`panel_product`] by name, if this CPU has it.
    fn product_by(
        kernel: &str,
        a: &[f32],
        b: &Panels,
        panels: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        c: &mut [f32],
    ) -> bool {
        if kernel == "portable" {
            panel_product_portable(a, b, panels, bias, c);
            return true;
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            let width = c.len() / (a.len() / b.k);
            let m = c.len() / width;
            let tile = Tile {
                a: a.as_ptr(),
                lda: b.k,
                b: b.body().as_ptr(),
                k: b.k,
                bias: bias.map_or(std::ptr::null(), |v| v.as_ptr()),
                c: c.as_mut_ptr(),
                ldc: width,
                width: 0,
            };
            // SAFETY: as in `panel_product`, whose checks the callers below satisfy.
            match kernel {
                "avx512" if has!("avx512f") => unsafe { product_avx512(&tile, m, panels) },
                "avx2" if has!("avx2") && has!("fma") => unsafe { product_avx2(&tile, m, panels) },
                _ => return false,
            }
            return true;
        }
        #[allow(unreachable_code)]
        false
    }

    #[test]
    fn every_panel_product_kernel_matches_the_definition() {
        let mut seed = 11;
        let mut ran = std::collections::BTreeSet::new();
        // (rows of a, k, columns): one item by a gate matrix, batches, partial panels, a
        // single row of k, and more rows than one L2 block of a.
        for (m, k, n) in [
            (1, 256, 1024),
            (16, 64, 48),
            (7, 3, 5),
            (13, 17, 33),
            (9, 1, 16),
            (2, 40, 130),
            (1100, 70, 40),
        ] {
            let a = noise(m * k, &mut seed);
            let r = noise(n * k, &mut seed);
            let bias = noise(n, &mut seed);
            let b = Panels::transposed(&r, n, k, false);
            assert_eq!(b.body(), Panels::transposed(&r, n, k, true).body());
            assert_eq!(b.body().as_ptr() as usize % 64, 0, "panels start on a line");
            let all = 0..b.panels();
            for panels in [all.clone(), 1.min(all.end)..all.end, 0..all.end.div_ceil(2)] {
                if panels.is_empty() {
                    let mut none = [];
                    panel_product(&a, &b, panels, Some(&bias), &mut none);
                    continue;
                }
                let first = panels.start * PANEL;
                let width = (panels.end * PANEL).min(n).saturating_sub(first);
                for bias in [None, Some(&bias[..])] {
                    let mut out = Vec::new();
                    for kernel in ["portable", "avx2", "avx512"] {
                        let mut c = vec![f32::NAN; m * width];
                        if !product_by(kernel, &a, &b, panels.clone(), bias, &mut c) {
                            continue;
                        }
                        ran.insert(kernel);
                        for i in 0..m {
                            for j in 0..width {
                                let col = first + j;
                                let terms =
                                    (0..k).map(|t| a[i * k + t] as f64 * r[col * k + t] as f64);
                                let size: f64 = terms.clone().map(f64::abs).sum();
                                let want = terms.sum::<f64>() + bias.map_or(0.0, |v| v[col] as f64);
                                let got = c[i * width + j] as f64;
                                assert!(
                                    (got - want).abs() <= 1e-6 * (1.0 + size),
                                    "{kernel} {m}x{k}x{n} {panels:?} bias {}: [{i}, {j}] {got} != {want}",
                                    bias.is_some()
                                );
                            }
                        }
                        out.push(c);
                    }
                    // Through the dispatch, row by row: the same bits as all rows at once.
                    let mut c = vec![0f32; m * width];
                    panel_product(&a, &b, panels.clone(), bias, &mut c);
                    for (i, row) in c.chunks(width.max(1)).enumerate() {
                        let mut one = vec![0f32; width];
                        panel_product(&a[i * k..(i + 1) * k], &b, panels.clone(), bias, &mut one);
                        assert_eq!(bits(row), bits(&one), "{m}x{k}x{n} row {i}");
                    }
                    assert!(out.iter().any(|o| bits(o) == bits(&c)));
                }
            }
        }
        // No input columns: the bias alone.
        let b = Panels::transposed(&[], 3, 0, true);
        assert_eq!(b.panels(), 1);
        let mut c = vec![f32::NAN; 6];
        panel_product(&[], &b, 0..1, Some(&[1.0, 2.0, 3.0]), &mut c);
        assert_eq!(c, [1.0, 2.0, 3.0, 1.0, 2.0, 3.0]);
        panel_product(&[], &b, 0..1, None, &mut c);
        assert_eq!(c, [0.0; 6]);
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            assert!(ran.contains("avx512") && ran.contains("avx2"), "{ran:?}");
        }
    }

    fn bits(v: &[f32]) -> Vec<u32> {
        v.iter().map(|x| x.to_bits()).collect()
    }

    #[test]
    fn wide_gives_the_bits_of_the_plain_loop() {
        let mut seed = 5;
        let mut v = noise(1001, &mut seed);
        v.extend([f32::NAN, f32::INFINITY, -0.0, 1e30]);
        let f = |x: f32| {
            let x = x.clamp(-7.9, 7.9) * 3.0;
            (x * x + 1.5) / (x - 0.25) + x * 0.1
        };
        let want: Vec<f32> = v.iter().map(|&x| f(x)).collect();
        struct Map<'a, F>(&'a mut [f32], F);
        impl<F: Fn(f32) -> f32> Wide for Map<'_, F> {
            type Output = usize;
            #[inline(always)]
            fn run(self) -> usize {
                self.0.iter_mut().for_each(|x| *x = (self.1)(*x));
                self.0.len()
            }
        }
        assert_eq!(wide(Map(&mut v, f)), 1005);
        assert_eq!(bits(&v), bits(&want));
    }
}
