"""nnsign.save of a dict of NumPy arrays, nnsign.load back: every dtype nnsign stores, in
every memory layout NumPy hands it, comes back equal, read-only, and alive as long as it is
referenced."""

import gc

import numpy as np
import pytest

import nnsign

DTYPES = ["bool", "uint8", "int8", "uint16", "int16", "float16",
          "uint32", "int32", "float32", "uint64", "int64", "float64"]


def sample(dtype: str, shape=(3, 4, 5)) -> np.ndarray:
    """Values that exercise the dtype: its extremes, and for floats -0.0, inf, nan and a
    subnormal."""
    n = int(np.prod(shape))
    dt = np.dtype(dtype)
    if dt == np.bool_:
        return (np.arange(n) % 3 == 0).reshape(shape)
    if dt.kind in "iu":
        info = np.iinfo(dt)
        a = (np.arange(n, dtype=np.int64) * 7919 % 251).astype(dt)
        a[0], a[1] = info.min, info.max
        return a.reshape(shape)
    info = np.finfo(dt)
    a = (np.arange(n, dtype=np.float64) - n / 2).astype(dt) / dt.type(3)
    a[:6] = [-0.0, np.inf, -np.inf, np.nan, info.smallest_subnormal, info.max]
    return a.reshape(shape)


def layouts(dtype: str):
    """name -> (input array, the C-order little-endian array expected back)."""
    base = sample(dtype)
    out = {
        "plain": base,
        "scalar": base.reshape(-1)[7].copy().reshape(()),
        "empty": np.zeros((0, 3), dtype),
        "strided": base[:, ::2, 1:],
        "fortran": np.asfortranarray(base),
        "transposed": base.T,
    }
    if np.dtype(dtype).itemsize > 1:
        be = base.astype(np.dtype(dtype).newbyteorder(">"))
        assert be.dtype.byteorder == ">"
        out["bigendian"] = be
    return {k: (v, np.ascontiguousarray(v.astype(v.dtype.newbyteorder("<"))).reshape(v.shape))
            for k, v in out.items()}


def test_inputs_cover_the_layouts():
    # The layouts really are what their names say (else the round trip proves less).
    arrays = {k: a for k, (a, _) in layouts("float32").items()}
    assert arrays["scalar"].ndim == 0
    assert arrays["empty"].size == 0
    assert not arrays["strided"].flags.c_contiguous and not arrays["strided"].flags.f_contiguous
    assert arrays["fortran"].flags.f_contiguous and not arrays["fortran"].flags.c_contiguous
    assert arrays["bigendian"].dtype.byteorder == ">"


@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype_and_layout(tmp_path, signer, dtype):
    key, pub = signer
    cases = layouts(dtype)
    before = {k: a.copy() for k, (a, _) in cases.items()}
    path = tmp_path / "arrays.nns"
    report = nnsign.save({k: a for k, (a, _) in cases.items()}, path, sign=key)
    assert report["tensors"] == len(cases)
    # The caller's arrays are not touched (the big-endian one is not swapped in place).
    for k, (a, _) in cases.items():
        assert a.dtype == before[k].dtype and a.tobytes() == before[k].tobytes()

    m = nnsign.load(path, trust=pub)
    assert sorted(m.tensors) == sorted(cases)
    stored = {t["name"]: t for t in nnsign.inspect(path)["tensors"]}
    for name, (given, expected) in cases.items():
        got = m.tensors[name]
        assert got.dtype == np.dtype(dtype).newbyteorder("<"), name
        assert got.dtype.byteorder in "=|<", name
        assert got.shape == given.shape, name
        assert stored[name]["shape"] == list(given.shape), name
        np.testing.assert_array_equal(got, given, err_msg=name)
        # Bit for bit: -0.0, NaN and subnormals survive.
        assert got.tobytes() == expected.tobytes(), name
        assert got.flags.writeable is False, name


def test_scalar_stays_zero_dimensional(tmp_path, signer):
    key, pub = signer
    nnsign.save({"s": np.float32(2.5), "t": np.array(-3, ">i8")}, tmp_path / "s.nns", sign=key)
    m = nnsign.load(tmp_path / "s.nns", trust=pub)
    assert m.tensors["s"].shape == () and m.tensors["s"][()] == np.float32(2.5)
    assert m.tensors["t"].shape == () and m.tensors["t"][()] == -3
    assert [t["shape"] for t in nnsign.inspect(tmp_path / "s.nns")["tensors"]] == [[], []]


def test_loaded_arrays_are_read_only(tmp_path, signer):
    key, pub = signer
    nnsign.save({"w": np.arange(12, dtype=np.float32).reshape(3, 4)}, tmp_path / "w.nns", sign=key)
    m = nnsign.load(tmp_path / "w.nns", trust=pub)
    w = m.tensors["w"]
    assert w.flags.writeable is False
    with pytest.raises(ValueError, match="read-only"):
        w[0, 0] = 42.0
    with pytest.raises(ValueError, match="read-only"):
        w += 1
    with pytest.raises(ValueError, match="WRITEABLE"):
        w.flags.writeable = True
    # Nor can the array under it be made writeable: its base is nnsign's buffer owner.
    root = w
    while isinstance(root.base, np.ndarray):
        root = root.base
        assert root.flags.writeable is False
        with pytest.raises(ValueError, match="WRITEABLE"):
            root.flags.writeable = True
    assert not isinstance(root.base, np.ndarray) and root.base is not None
    np.testing.assert_array_equal(w, np.arange(12, dtype=np.float32).reshape(3, 4))


def test_native_buffers_are_read_only_from_the_start(tmp_path, signer):
    # The binding itself hands out the verified bytes read-only (not only the Python wrapper).
    key, pub = signer
    nnsign.save({"w": np.arange(8, dtype=np.uint8)}, tmp_path / "w.nns", sign=key)
    m = nnsign.load(tmp_path / "w.nns", trust=pub)
    raw = m._native.raw(0)
    assert raw.dtype == np.uint8 and raw.flags.writeable is False
    with pytest.raises(ValueError, match="read-only"):
        raw[0] = 1
    with pytest.raises(ValueError, match="WRITEABLE"):
        raw.flags.writeable = True
    assert m.tensors["w"].tolist() == list(range(8))


def test_arrays_outlive_the_model(tmp_path, signer):
    key, pub = signer
    data = {f"t{i}": np.full((64, 64), i, dtype=np.float64) + np.arange(64) for i in range(4)}
    nnsign.save(data, tmp_path / "m.nns", sign=key)
    m = nnsign.load(tmp_path / "m.nns", trust=pub)
    kept = {k: m.tensors[k] for k in ("t1", "t3")}
    del m
    gc.collect()
    # Churn the allocator: freed buffers would be reused and overwritten here.
    for _ in range(3):
        other = nnsign.load(tmp_path / "m.nns", trust=pub)
        junk = [np.full((64, 64), -1.0) for _ in range(50)]
        del other, junk
        gc.collect()
    for k, a in kept.items():
        np.testing.assert_array_equal(a, data[k])
        assert a.flags.writeable is False


@pytest.mark.parametrize("bad", [
    np.zeros(3, np.complex64),
    np.zeros((2, 2), np.complex128),
    np.array([object(), 1], dtype=object),
    np.array(["a", "bc"]),
    np.array([b"ab"]),
], ids=["complex64", "complex128", "object", "str", "bytes"])
def test_unsupported_dtypes_are_refused(tmp_path, signer, bad):
    key, _ = signer
    out = tmp_path / "bad.nns"
    with pytest.raises(nnsign.InputError) as ei:
        nnsign.save({"ok": np.ones(2, np.float32), "x": bad}, out, sign=key)
    e = ei.value
    assert e.exit_code == 1 and e.kind == "input"
    assert f"array 'x' has dtype {bad.dtype}" in str(e)
    assert "which nnsign does not store" in str(e)
    assert not out.exists()


def test_scalar_model_input_stays_zero_dimensional(tmp_path, signer):
    # Model.run hands a 0-d input over as 0-d: a graph input of shape [] takes it.
    key, pub = signer
    arch = {"opset": 2,
            "inputs": [{"name": "x", "dtype": "F32", "shape": []}],
            "outputs": [{"name": "y", "dtype": "F32", "shape": []}],
            "nodes": [{"op": "Add", "name": "add", "inputs": ["x", "w"], "outputs": ["y"]}]}
    nnsign.save({"w": np.array(1.5, np.float32)}, tmp_path / "add.nns", sign=key, arch=arch)
    m = nnsign.load(tmp_path / "add.nns", trust=pub)
    assert m.inputs == [("x", "F32", [])]
    for x in (np.float32(2.0), np.array(2.0), 2.0):
        y = m(x)
        assert y.shape == () and y.dtype == np.float32 and y[()] == np.float32(3.5)
