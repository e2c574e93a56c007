"""What nnsign.verify and nnsign.inspect report, and rollback protection with a state file."""

import json

import numpy as np
import pytest

import nnsign
from conftest import key_id


def test_verify_returns_info(tmp_path, signer):
    key, pub = signer
    path = tmp_path / "clf.nns"
    report = nnsign.save({"w": np.ones((2, 2), np.float32), "b": np.zeros(2, np.float32)},
                         path, sign=key, name="digits-clf", version="2.1.0")
    info = nnsign.verify(path, trust=pub)
    assert isinstance(info, nnsign.Info)
    assert info.name == "digits-clf"
    assert info.version == "2.1.0"
    assert info.digest == report["digest"]
    assert info.digest.startswith("sha256:") and len(info.digest) == len("sha256:") + 64
    assert info.signers == [key_id(pub)]
    assert info.encrypted_to == [] and info.architecture is False
    assert info.raw["tensors"] == 2 and info.raw["signed"] is True
    assert "digits-clf" in repr(info) and "2.1.0" in repr(info)
    # load reports the same.
    m = nnsign.load(path, trust=pub)
    assert (m.info.name, m.info.version, m.info.digest, m.info.signers) == \
        (info.name, info.version, info.digest, info.signers)


def test_name_defaults_to_the_file_stem(small_artifact, signer):
    path, _ = small_artifact
    _, pub = signer
    info = nnsign.verify(path, trust=pub)
    assert (info.name, info.version) == ("small", "1.2.3")


def test_inspect_returns_what_the_artifact_says(tmp_path, signer, cli):
    key, pub = signer
    path = tmp_path / "m.nns"
    labels = {"team": "vision", "task": "digits", "dataset": "sklearn-digits"}
    report = nnsign.save({"w": np.arange(6, dtype=np.int16).reshape(2, 3)}, path, sign=key,
                         name="digits-clf", version="1.0.0", description="a test model",
                         labels=labels)
    found = nnsign.inspect(path)
    assert found["model"]["name"] == "digits-clf"
    assert found["model"]["version"] == "1.0.0"
    assert found["model"]["description"] == "a test model"
    assert found["model"]["labels"] == labels
    assert found["model"]["producer"].startswith("nnsign ") and "(Python)" in found["model"]["producer"]
    assert found["digest"] == report["digest"]
    assert found["verified"] is False  # inspect trusts nothing and checks no digest
    assert [(t["name"], t["dtype"], t["shape"]) for t in found["tensors"]] == [("w", "I16", [2, 3])]
    assert [s["key_id"] for s in found["signers"]] == [key_id(pub)]
    # As `nnsign inspect --json` reports it.
    r = cli("inspect", path, "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["model"] == found["model"]


def test_rollback_is_refused_with_a_state_file(tmp_path, signer):
    key, pub = signer
    v1, v09, v11 = tmp_path / "v1.nns", tmp_path / "v09.nns", tmp_path / "v11.nns"
    nnsign.save({"w": np.ones(3, np.float32)}, v1, sign=key, name="clf", version="1.0.0")
    nnsign.save({"w": np.zeros(3, np.float32)}, v09, sign=key, name="clf", version="0.9.0")
    nnsign.save({"w": np.full(3, 2, np.float32)}, v11, sign=key, name="clf", version="1.1.0")
    state = tmp_path / "state.json"

    m = nnsign.load(v1, trust=pub, state=state)
    assert m.info.raw["state"] == {"file": str(state), "update": "first"}
    recorded = json.loads(state.read_text())["models"]["clf"]
    assert recorded["version"] == "1.0.0" and recorded["digest"] == m.info.digest

    for call in (nnsign.load, nnsign.verify):
        with pytest.raises(nnsign.FreshnessError) as ei:
            call(v09, trust=pub, state=state)
        e = ei.value
        assert e.exit_code == 9 and e.kind == "freshness" and e.file == str(v09)
        assert 'rollback refused: model "clf" version 0.9.0 is older than version 1.0.0' in str(e)
        assert str(state) in str(e)
    assert json.loads(state.read_text())["models"]["clf"]["version"] == "1.0.0"

    # The same version again is fine; a newer one raises the recorded version.
    assert nnsign.load(v1, trust=pub, state=state).info.raw["state"]["update"] == "same"
    assert nnsign.load(v11, trust=pub, state=state).info.raw["state"]["update"] == "raised"
    assert json.loads(state.read_text())["models"]["clf"]["version"] == "1.1.0"
    with pytest.raises(nnsign.FreshnessError, match="older than version 1.1.0"):
        nnsign.load(v1, trust=pub, state=state)
    # Without the state file nothing is remembered: the older version loads.
    assert nnsign.load(v09, trust=pub).tensors["w"].tolist() == [0.0, 0.0, 0.0]


def test_an_unsupported_co_signature_is_a_warning_and_counts_for_nothing():
    """The published vector whose second signature had its alg flipped from -19 to -20: it
    verifies by test-a's signature alone, and both verify and load say the other counted for
    nothing, as the CLI does."""
    from conftest import REPO, KEYS

    art = REPO / "tests" / "vectors" / "pass_cosignature_unsupported_alg.nns"
    with pytest.warns(UserWarning, match="uses COSE algorithm -20") as seen:
        info = nnsign.verify(art, trust=KEYS / "test-a.pub")
    assert seen[0].filename == __file__
    assert info.signers == [key_id(KEYS / "test-a.pub")]
    assert len(info.warnings) == 1 and "-20" in info.warnings[0]
    with pytest.warns(UserWarning, match="uses COSE algorithm -20") as seen:
        m = nnsign.load(art, trust=KEYS / "test-a.pub")
    assert seen[0].filename == __file__
    assert m.info.warnings == info.warnings
    # Trusting only the key whose signature was altered: nothing trusted verified.
    with pytest.raises(nnsign.SignatureError):
        nnsign.load(art, trust=KEYS / "test-b.pub")
