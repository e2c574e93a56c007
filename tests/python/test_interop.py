"""The CLI and the Python package read each other's artifacts, and keys work as files or as
PEM bytes."""

import json

import numpy as np
import pytest

import nnsign
from conftest import KEYS, key_id


def test_cli_artifact_loads_in_python(tmp_path, cli):
    arrays = {
        "a": np.arange(12, dtype=np.float32).reshape(3, 4) / 3,
        "b": np.array([-1, 0, 2**40], dtype=np.int64),
        "c": np.asfortranarray(np.arange(6, dtype=np.uint16).reshape(2, 3)),
    }
    np.savez(tmp_path / "x.npz", **arrays)
    r = cli("pack", tmp_path / "x.npz", "--sign", KEYS / "test-a.key", "-o", tmp_path / "a.nns")
    assert r.returncode == 0, r.stderr
    m = nnsign.load(tmp_path / "a.nns", trust=KEYS / "test-a.pub")
    assert m.info.signers == [key_id(KEYS / "test-a.pub")]
    assert sorted(m.tensors) == sorted(arrays)
    for name, want in arrays.items():
        got = m.tensors[name]
        assert got.dtype == want.dtype and got.shape == want.shape, name
        np.testing.assert_array_equal(got, want, err_msg=name)
        assert got.flags.writeable is False
    assert m.runnable is False


def test_python_artifact_verifies_with_the_cli(keras_artifact, signer, cli):
    path, report = keras_artifact
    _, pub = signer
    r = cli("verify", path, "--trust", pub, "--json")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is True
    assert out["digest"] == report["digest"] == nnsign.verify(path, trust=pub).digest
    assert [s["key_id"] for s in out["signers"]] == [key_id(pub)]
    # Text output too, and a key the CLI does not trust is refused (exit 4).
    r = cli("verify", path, "--trust", pub)
    assert r.returncode == 0 and "verified" in r.stdout
    r = cli("verify", path, "--trust", KEYS / "test-b.pub")
    assert r.returncode == 4


def test_cli_runs_a_python_artifact_as_python_does(tmp_path, keras_artifact, keras_mlp, signer,
                                                   cli, digits_batch):
    path, _ = keras_artifact
    _, pub = signer
    x = digits_batch
    np.save(tmp_path / "x.npy", x)
    r = cli("verify-load", path, "--trust", pub, "--input", tmp_path / "x.npy",
            "--output", tmp_path / "y.npy")
    assert r.returncode == 0, r.stderr
    y_cli = np.load(tmp_path / "y.npy")
    y_py = nnsign.load(path, trust=pub)(x)
    assert y_cli.dtype == y_py.dtype == np.float32
    assert y_cli.shape == y_py.shape == (5, 10)
    np.testing.assert_allclose(y_cli, y_py, rtol=0, atol=1e-6)
    np.testing.assert_allclose(y_cli, keras_mlp.predict(x, verbose=0), rtol=0, atol=1e-5)


def pem(name):
    return (KEYS / name).read_bytes()


def test_keys_as_pem_bytes(tmp_path, cli):
    w = np.arange(30, dtype=np.float32).reshape(5, 6)
    path = tmp_path / "pem.nns"
    report = nnsign.save({"w": w}, path, sign=pem("test-a.key"), encrypt_to=[pem("test-enc1.pub")])
    assert report["signer"] == key_id(KEYS / "test-a.pub")
    m = nnsign.load(path, trust=pem("test-a.pub"), decrypt_with=pem("test-enc1.key"))
    np.testing.assert_array_equal(m.tensors["w"], w)
    assert m.info.signers == [key_id(KEYS / "test-a.pub")]
    # Several trusted keys as bytes, or bytes and paths mixed.
    m = nnsign.load(path, trust=[pem("test-b.pub"), KEYS / "test-a.pub"],
                    decrypt_with=pem("test-enc1.key"))
    np.testing.assert_array_equal(m.tensors["w"], w)
    # The bytes mean what the files mean: another signer's key is not trusted, another
    # recipient's key does not decrypt.
    with pytest.raises(nnsign.SignatureError) as ei:
        nnsign.load(path, trust=pem("test-b.pub"), decrypt_with=pem("test-enc1.key"))
    assert ei.value.exit_code == 4
    with pytest.raises(nnsign.DecryptionError) as ei:
        nnsign.load(path, trust=pem("test-a.pub"), decrypt_with=pem("test-enc2.key"))
    assert ei.value.exit_code == 7
    assert f"not encrypted to key {key_id(KEYS / 'test-enc2.pub')}" in str(ei.value)
    # Bytes that are not a key.
    with pytest.raises(nnsign.InputError) as ei:
        nnsign.load(path, trust=b"not a key", decrypt_with=pem("test-enc1.key"))
    assert ei.value.exit_code == 1 and "not an Ed25519 public key in PEM" in str(ei.value)
    # The CLI, given the same keys as files, decrypts it to the same tensor.
    r = cli("unpack", path, "--trust", KEYS / "test-a.pub", "--decrypt-with",
            KEYS / "test-enc1.key", "--format", "npz", "-o", tmp_path / "out.npz")
    assert r.returncode == 0, r.stderr
    with np.load(tmp_path / "out.npz") as out:
        assert list(out.keys()) == ["w"]
        np.testing.assert_array_equal(out["w"], w)


def test_a_model_in_several_files_is_saved_sharded_as_the_cli_packs_it(tmp_path, cli, signer):
    """nnsign.save of a Hugging Face index writes shard files as `nnsign pack` does (one 4 MiB
    shard for this tiny model), and loads back numpy's own values."""
    from conftest import FIXTURES

    hf = FIXTURES / "multifile" / "hf"
    key, pub = signer
    report = nnsign.save(str(hf / "model.safetensors.index.json"), tmp_path / "py.nns", sign=key)
    assert [s["file"] for s in report["shards"]] == [str(tmp_path / "py-00001-of-00001.nnshard")]
    r = cli("pack", hf / "model.safetensors.index.json", "-o", tmp_path / "cli.nns", "--json")
    assert r.returncode == 0, r.stderr
    assert [s["bytes"] for s in json.loads(r.stdout)["shards"]] == \
        [s["bytes"] for s in report["shards"]]
    m = nnsign.load(tmp_path / "py.nns", trust=pub)
    want = np.load(hf / "expected.npz")
    assert sorted(m.tensors) == sorted(want.files)
    for name in want.files:
        assert m.tensors[name].tobytes() == want[name].tobytes(), name
        assert m.tensors[name].shape == want[name].shape, name
