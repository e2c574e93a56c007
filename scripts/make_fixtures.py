#!/usr/bin/env python3
"""Writes the small NumPy fixtures under tests/fixtures/ that nnsign's own tests use.

numpy, not nnsign, writes them, so they are an independent check of the .npy/.npz readers:
Fortran order and big-endian data must come out of nnsign as the C-order little-endian bytes
numpy gives for the same values. Run from the repository root:

    pip install numpy && python3 scripts/make_fixtures.py
"""
import numpy as np

out = "tests/fixtures/"
# A 2x3 float32 array: the smallest useful model input and weights-only artifact.
np.save(out + "tiny.npy", np.array([[0.5, -1.0, 2.0], [3.25, 0.0, 1e-3]], dtype=np.float32))
# The same values in Fortran order and big-endian: nnsign must store them C-order little-endian.
np.save(out + "fortran_f64.npy", np.asfortranarray(np.arange(24, dtype=np.float64).reshape(2, 3, 4)))
np.save(out + "bigendian_i32.npy", np.arange(6, dtype=">i4").reshape(2, 3))
# An .npz with two named arrays, compressed.
np.savez_compressed(out + "two.npz", alpha=np.arange(5, dtype=np.int16), beta=np.eye(3, dtype=np.float32))
