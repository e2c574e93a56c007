"""Every failure raises the exception class of the CLI's exit code, with the CLI's line and
exit_code, kind, file and hint set: one bad input per class."""

import json
import pickle

import numpy as np
import pytest

import nnsign
from conftest import FIXTURES, copy_to, key_id

CLASSES = {
    nnsign.InputError: (1, "InputError"),
    nnsign.UsageError: (2, "UsageError"),
    nnsign.FileError: (3, "FileError"),
    nnsign.SignatureError: (4, "SignatureError"),
    nnsign.IntegrityError: (5, "IntegrityError"),
    nnsign.SchemaError: (6, "SchemaError"),
    nnsign.DecryptionError: (7, "DecryptionError"),
    nnsign.UnsafeFileError: (8, "UnsafeFileError"),
    nnsign.FreshnessError: (9, "FreshnessError"),
}


@pytest.mark.parametrize("cls", list(CLASSES), ids=lambda c: c.__name__)
def test_every_class_is_an_nnsign_error(cls):
    assert issubclass(cls, nnsign.Error)
    assert issubclass(nnsign.Error, Exception)
    assert cls is not nnsign.Error
    assert cls.__name__ == CLASSES[cls][1]
    assert cls.__module__ == "nnsign"  # the package's name, which pickle can import
    assert getattr(nnsign, cls.__name__) is cls
    assert f"exit code {CLASSES[cls][0]})" in cls.__doc__


def check(e, cls, code, kind, file, *phrases):
    """The exception's class, attributes and message: the CLI's line starts with the file."""
    assert type(e) is cls
    assert isinstance(e, nnsign.Error)
    assert e.exit_code == code
    assert e.kind == kind
    assert e.file == (None if file is None else str(file))
    if file is not None:
        assert str(e).startswith(f"{file}: ")
    for p in phrases:
        assert p in str(e), (p, str(e))


def cli_agrees(cli, e, *args):
    """The CLI gives the same exit code and prints the same line for the same input."""
    r = cli(*args)
    assert r.returncode == e.exit_code, r.stderr
    assert str(e) in r.stderr, (str(e), r.stderr)


def test_one_tampered_payload_byte_is_an_integrity_error(tmp_path, small_artifact, signer, cli):
    src, _ = small_artifact
    _, pub = signer
    path = copy_to(src, tmp_path)
    facts = nnsign.inspect(path)
    data = bytearray(path.read_bytes())
    assert len(data) == facts["file_bytes"] == facts["header_bytes"] + facts["payload_bytes"]
    data[facts["header_bytes"] + 123] ^= 0x01
    path.write_bytes(data)
    for call in (nnsign.load, nnsign.verify):
        with pytest.raises(nnsign.IntegrityError) as ei:
            call(path, trust=pub)
        e = ei.value
        check(e, nnsign.IntegrityError, 5, "integrity", path,
              'of tensor "w") does not match its signed digest')
        assert "modified or corrupted after signing" in e.hint
    cli_agrees(cli, e, "verify", path, "--trust", pub)


def test_truncated_file_is_an_integrity_error(tmp_path, small_artifact, signer, cli):
    src, _ = small_artifact
    _, pub = signer
    path = tmp_path / "cut.nns"
    data = src.read_bytes()
    payload = nnsign.inspect(src)["payload_bytes"]
    path.write_bytes(data[:-500])
    with pytest.raises(nnsign.IntegrityError) as ei:
        nnsign.load(path, trust=pub)
    check(ei.value, nnsign.IntegrityError, 5, "integrity", path, "file is truncated",
          f"declares {payload} payload bytes, the file has {payload - 500}")
    assert "cut short" in ei.value.hint
    cli_agrees(cli, ei.value, "verify", path, "--trust", pub)


def test_untrusted_key_is_a_signature_error(tmp_path, small_artifact, signer, cli):
    path, _ = small_artifact
    key, pub = signer
    _, other_pub = nnsign.keygen(tmp_path / "someone-else")
    with pytest.raises(nnsign.SignatureError) as ei:
        nnsign.load(path, trust=other_pub)
    check(ei.value, nnsign.SignatureError, 4, "trust", path, "not signed by a trusted key",
          f"key {key_id(pub)} is not in the trust store")
    assert ei.value.hint
    cli_agrees(cli, ei.value, "verify", path, "--trust", other_pub)


def test_unsigned_artifact_needs_allow_unsigned(tmp_path, signer):
    _, pub = signer
    w = np.linspace(0, 1, 9, dtype=np.float32).reshape(3, 3)
    path = tmp_path / "unsigned.nns"
    report = nnsign.save({"w": w}, path)
    assert report["signer"] is None
    with pytest.raises(nnsign.SignatureError) as ei:
        nnsign.load(path, trust=pub)
    check(ei.value, nnsign.SignatureError, 4, "signature", path, "the artifact is unsigned")
    # The hint says what a Python caller passes, not the CLI's option.
    assert ei.value.hint == ("sign it with `nnsign.save(..., sign=KEY)`, or pass "
                             "allow_unsigned=True to accept unsigned artifacts")
    with pytest.raises(nnsign.UsageError) as ei:
        nnsign.load(path)  # neither trust= nor allow_unsigned=
    check(ei.value, nnsign.UsageError, 2, "usage", None, "no trusted keys")
    m = nnsign.load(path, allow_unsigned=True)
    assert m.info.signers == []
    np.testing.assert_array_equal(m.tensors["w"], w)
    assert nnsign.verify(path, allow_unsigned=True).signers == []


def test_encrypted_to_a_key(tmp_path, signer, cli):
    key, pub = signer
    k1, p1 = nnsign.keygen(tmp_path / "alice", encryption=True)
    k2, p2 = nnsign.keygen(tmp_path / "bob", encryption=True)
    w = np.arange(50, dtype=np.int32)
    path = tmp_path / "secret.nns"
    nnsign.save({"w": w}, path, sign=key, encrypt_to=[p1])
    # Anyone can verify it; only the recipient can read it.
    assert nnsign.verify(path, trust=pub).encrypted_to == [f"key {key_id(p1)}"]
    with pytest.raises(nnsign.DecryptionError) as ei:
        nnsign.load(path, trust=pub, decrypt_with=k2)
    check(ei.value, nnsign.DecryptionError, 7, "decryption", path,
          f"not encrypted to key {key_id(p2)}")
    cli_agrees(cli, ei.value, "verify-load", path, "--trust", pub, "--decrypt-with", k2)
    with pytest.raises(nnsign.DecryptionError) as ei:
        nnsign.load(path, trust=pub)
    check(ei.value, nnsign.DecryptionError, 7, "decryption", path,
          f"encrypted to key {key_id(p1)}; give the matching key with decrypt_with=")
    m = nnsign.load(path, trust=pub, decrypt_with=k1)
    np.testing.assert_array_equal(m.tensors["w"], w)
    assert m.tensors["w"].dtype == np.int32


def test_encrypted_with_a_passphrase(tmp_path, signer):
    key, pub = signer
    w = np.arange(20, dtype=np.float64) ** 2
    path = tmp_path / "pass.nns"
    nnsign.save({"w": w}, path, sign=key, passphrase="correct horse battery")
    m = nnsign.load(path, trust=pub, passphrase="correct horse battery")
    np.testing.assert_array_equal(m.tensors["w"], w)
    with pytest.raises(nnsign.DecryptionError) as ei:
        nnsign.load(path, trust=pub, passphrase="wrong horse")
    check(ei.value, nnsign.DecryptionError, 7, "decryption", path,
          "the passphrase does not open the artifact's file key")
    with pytest.raises(nnsign.DecryptionError) as ei:
        nnsign.load(path, trust=pub)
    check(ei.value, nnsign.DecryptionError, 7, "decryption", path,
          "encrypted with a passphrase; give it with passphrase=")


def test_expires_in_the_past_is_refused_at_save(tmp_path, signer):
    key, _ = signer
    out = tmp_path / "x.nns"
    with pytest.raises(nnsign.UsageError) as ei:
        nnsign.save({"w": np.ones(2, np.float32)}, out, sign=key, expires="2000-01-01")
    check(ei.value, nnsign.UsageError, 2, "usage", None,
          "expires 2000-01-01: 2000-01-01T00:00:00Z is not in the future")
    assert not out.exists()


def test_expired_artifact_is_a_freshness_error(tmp_path, signer, monkeypatch, cli):
    # An artifact made "in 2000" (SOURCE_DATE_EPOCH, which nnsign honours for reproducible
    # builds) that expired a day later. (expires="1s" and a short sleep would not do: loading
    # allows 5 minutes of clock skew.)
    key, pub = signer
    path = tmp_path / "old.nns"
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "946684800")  # 2000-01-01T00:00:00Z
    nnsign.save({"w": np.ones(2, np.float32)}, path, sign=key, expires="1d")
    monkeypatch.delenv("SOURCE_DATE_EPOCH")
    assert nnsign.inspect(path)["model"]["expires"] == "2000-01-02T00:00:00Z"
    for call in (nnsign.load, nnsign.verify):
        with pytest.raises(nnsign.FreshnessError) as ei:
            call(path, trust=pub)
        check(ei.value, nnsign.FreshnessError, 9, "freshness", path,
              'model "old" expired', "at 2000-01-02T00:00:00Z")
    cli_agrees(cli, ei.value, "verify", path, "--trust", pub)


def _seed_arch():
    return json.loads((FIXTURES / "keras_seed_mlp" / "arch.json").read_text())


def _seed_weights(hidden=32):
    rng = np.random.default_rng(3)
    return {
        "dense/kernel": rng.normal(0, 0.1, (784, hidden)).astype(np.float32),
        "dense/bias": rng.normal(0, 0.1, 32).astype(np.float32),
        "dense_1/kernel": rng.normal(0, 0.1, (32, 10)).astype(np.float32),
        "dense_1/bias": rng.normal(0, 0.1, 10).astype(np.float32),
    }


def test_architecture_that_fits_runs(tmp_path, signer, digits_batch):
    # The control for the next test: this arch= and these weights do fit.
    key, pub = signer
    w = _seed_weights()
    nnsign.save(w, tmp_path / "fits.nns", sign=key, arch=_seed_arch())
    m = nnsign.load(tmp_path / "fits.nns", trust=pub)
    assert m.runnable and [n for n, _, _ in m.inputs] == ["pixels"]
    x = digits_batch
    h = np.maximum(x @ w["dense/kernel"] + w["dense/bias"], 0)
    z = h @ w["dense_1/kernel"] + w["dense_1/bias"]
    expected = np.exp(z - z.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(m.run({"pixels": x})["probabilities"], expected, rtol=0, atol=1e-5)


def test_architecture_that_does_not_fit_is_a_schema_error_at_save(tmp_path, signer):
    key, _ = signer
    out = tmp_path / "broken.nns"
    with pytest.raises(nnsign.SchemaError) as ei:
        nnsign.save(_seed_weights(hidden=31), out, sign=key, arch=_seed_arch())
    check(ei.value, nnsign.SchemaError, 6, "schema", None,
          "arch: the architecture does not fit the weights",
          'node "dense" (Dense): bias [32] does not match 31 units')
    assert "arch=" in ei.value.hint
    assert not out.exists()
    # A weight the graph names and the arrays lack.
    weights = _seed_weights()
    del weights["dense_1/bias"]
    with pytest.raises(nnsign.SchemaError, match='input "dense_1/bias" is not defined'):
        nnsign.save(weights, out, sign=key, arch=_seed_arch())
    # Not JSON at all.
    with pytest.raises(nnsign.SchemaError) as ei:
        nnsign.save(_seed_weights(), out, sign=key, arch="{not json")
    check(ei.value, nnsign.SchemaError, 6, "schema", None, "arch: ")
    assert not out.exists()


def test_missing_file_is_a_file_error(tmp_path, signer, cli):
    key, pub = signer
    missing = tmp_path / "nowhere.nns"
    for call in (nnsign.load, nnsign.verify):
        with pytest.raises(nnsign.FileError) as ei:
            call(missing, trust=pub)
        check(ei.value, nnsign.FileError, 3, "io", missing, "No such file or directory")
        assert ei.value.hint == "check the path"
    with pytest.raises(nnsign.FileError) as ei:
        nnsign.inspect(missing)
    check(ei.value, nnsign.FileError, 3, "io", missing, "No such file or directory")
    with pytest.raises(nnsign.FileError) as ei:
        nnsign.save(tmp_path / "nowhere.npy", tmp_path / "out.nns", sign=key)
    check(ei.value, nnsign.FileError, 3, "io", tmp_path / "nowhere.npy", "No such file")
    cli_agrees(cli, ei.value, "pack", tmp_path / "nowhere.npy", "-o", tmp_path / "o.nns",
               "--sign", key)


def test_errors_pickle_with_their_attributes(tmp_path, signer):
    # As they must to cross a multiprocessing or DataLoader worker boundary.
    _, pub = signer
    with pytest.raises(nnsign.FileError) as ei:
        nnsign.load(tmp_path / "nowhere.nns", trust=pub)
    back = pickle.loads(pickle.dumps(ei.value))
    assert type(back) is nnsign.FileError
    assert str(back) == str(ei.value)
    assert (back.exit_code, back.kind, back.file, back.hint) == \
        (3, "io", str(tmp_path / "nowhere.nns"), "check the path")


def test_memory_cap_hint_names_the_python_argument(tmp_path, signer):
    key, pub = signer
    path = tmp_path / "big.nns"
    nnsign.save({"w": np.zeros((256, 256), dtype=np.float32)}, path, sign=key)
    with pytest.raises(nnsign.SchemaError) as ei:
        nnsign.load(path, trust=pub, max_memory=4096)
    assert ei.value.hint == "if this host can afford it, raise the limit with max_memory=BYTES"
