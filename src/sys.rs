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

/// `c = a · b` for row-major `a` `[m, k]`, `b` `[k, n]` and `c` `[m, n]`.
pub fn sgemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    // Callers size these from a validated plan; a mismatch is a bug in nnsign, not bad input.
    assert!(
        a.len() == m * k && b.len() == k * n && c.len() == m * n,
        "sgemm called with inconsistent sizes"
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the assert above proves every pointer offset matrixmultiply computes from these
    // dimensions and row-major strides stays inside its slice; `c` is the only mutable borrow.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}
