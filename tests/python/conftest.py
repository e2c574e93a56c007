"""Shared fixtures of the Python package's tests (tests/python).

Run from the repository root, with the package installed (maturin) into a virtualenv that has
torch and keras:

    KERAS_BACKEND=torch python -m pytest tests/python -q

The interop tests run the command-line tool: ``NNSIGN_BIN``, else ``target/release/nnsign``
under the repository, else ``$CARGO_TARGET_DIR/release/nnsign`` (``cargo build --release --bin
nnsign`` first). Every model and artifact is made at test time under pytest's tmp_path.
"""

import base64
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

# Keras picks its backend when first imported; these tests run it on PyTorch.
os.environ.setdefault("KERAS_BACKEND", "torch")

import nnsign  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
KEYS = REPO / "tests" / "keys"
FIXTURES = REPO / "tests" / "fixtures"
HOSTILE = FIXTURES / "hostile"


def pytest_configure(config):
    # Third-party noise on every run, nothing of nnsign's: Keras's torch backend converting
    # tensors, and torch announcing that its TorchScript ONNX exporter (which nnsign.save uses,
    # dynamo=False) is the legacy one.
    for message in ("__array__ implementation doesn't accept a copy keyword",
                    "You are using the legacy TorchScript-based ONNX export",
                    "The feature will be removed"):
        config.addinivalue_line("filterwarnings", f"ignore:{message}:DeprecationWarning")


def key_id(pub_path) -> str:
    """A public key's id as docs/FORMAT.md section 7 defines it: the first 8 bytes of SHA-256
    over the raw 32-byte key, in hex. Computed here from the PEM file, independently of
    nnsign."""
    text = Path(pub_path).read_text()
    body = "".join(line for line in text.splitlines() if not line.startswith("-----"))
    raw = base64.b64decode(body)[-32:]  # SubjectPublicKeyInfo: a 12-byte prefix, then the key
    return hashlib.sha256(raw).hexdigest()[:16]


def _find_cli() -> Path:
    candidates = []
    if os.environ.get("NNSIGN_BIN"):
        candidates.append(Path(os.environ["NNSIGN_BIN"]))
    candidates.append(REPO / "target" / "release" / "nnsign")
    if os.environ.get("CARGO_TARGET_DIR"):
        candidates.append(Path(os.environ["CARGO_TARGET_DIR"]) / "release" / "nnsign")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    pytest.fail("the nnsign command is needed for the interop tests and was not found at "
                + ", ".join(map(str, candidates))
                + ": run `cargo build --release --bin nnsign` or set NNSIGN_BIN", pytrace=False)


@pytest.fixture(scope="session")
def cli():
    """Runs the nnsign command; returns the CompletedProcess (text, never raising)."""
    binary = _find_cli()

    def run(*args, cwd=None):
        return subprocess.run([str(binary), *map(str, args)], capture_output=True, text=True,
                              cwd=cwd, timeout=120)

    return run


@pytest.fixture(scope="session")
def signer(tmp_path_factory):
    """A fresh Ed25519 signing pair made by nnsign.keygen: (key path, pub path)."""
    d = tmp_path_factory.mktemp("signer")
    key, pub = nnsign.keygen(d / "signer")
    return Path(key), Path(pub)


@pytest.fixture(scope="session")
def small_artifact(tmp_path_factory, signer):
    """A signed artifact of one float32 tensor, and the tensor."""
    key, _ = signer
    w = np.arange(1000, dtype=np.float32) / 7
    path = tmp_path_factory.mktemp("small") / "small.nns"
    nnsign.save({"w": w}, path, sign=key, version="1.2.3")
    return path, w


def copy_to(src: Path, dst_dir: Path, name=None) -> Path:
    dst = dst_dir / (name or src.name)
    shutil.copyfile(src, dst)
    return dst


@pytest.fixture(scope="session")
def keras_mlp():
    """The seed-style Keras model: Input 784 -> Dense 32 relu -> Dense 10 softmax, every weight
    drawn from a seeded generator (biases too, so that they matter)."""
    import keras

    keras.utils.set_random_seed(1234)
    model = keras.Sequential([
        keras.Input((784,)),
        keras.layers.Dense(32, activation="relu", name="dense"),
        keras.layers.Dense(10, activation="softmax", name="dense_1"),
    ])
    rng = np.random.default_rng(1234)
    model.set_weights([rng.normal(0.0, 0.1, w.shape).astype(np.float32)
                       for w in model.get_weights()])
    return model


@pytest.fixture(scope="session")
def keras_artifact(tmp_path_factory, keras_mlp, signer):
    """The Keras model saved by nnsign.save with the session's key."""
    key, _ = signer
    path = tmp_path_factory.mktemp("keras") / "seed_mlp.nns"
    report = nnsign.save(keras_mlp, path, sign=key, version="1.0.0")
    return path, report


@pytest.fixture
def digits_batch():
    """Five inputs for the Keras model, in [0, 1) like its pixels."""
    return np.random.default_rng(5).random((5, 784), dtype=np.float32)
