//! The only module with `unsafe` code: memory maps of input files and the SGEMM kernel. Each
//! function states why its use is sound; everything outside this module is safe Rust.
#![allow(unsafe_code)]

use std::fs::File;

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
        // SAFETY: see above; the map is private to this process and read-only.
        let map = unsafe { memmap2::Mmap::map(file)? };
        Ok(Map(map))
    }
}

impl Map {
    /// Drops the pages of `range` from this process's resident set once they have been read, so
    /// that packing a model larger than memory does not hold all of it. Best effort: an error
    /// only means the pages stay resident.
    pub fn release(&self, range: std::ops::Range<usize>) {
        // SAFETY: MADV_DONTNEED on a read-only private file mapping that was never written only
        // unmaps the pages; a later access faults them in again from the file, with the same
        // contents, so no reference into the map can observe a change.
        let _ = unsafe {
            self.0.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                range.start,
                range.end - range.start,
            )
        };
    }
}

impl std::ops::Deref for Map {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
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
