#!/usr/bin/env python3
"""A second revision of the seed MLP, for `nnsign diff`'s tests:

    pip install keras jax numpy scikit-learn h5py
    KERAS_BACKEND=jax python3 scripts/make_revision_fixture.py

Loads tests/fixtures/keras_seed_mlp/model.keras with Keras 3 and fine-tunes its output layer
for one epoch on the data the original was trained on (scikit-learn's bundled 8x8 digits, each
pixel repeated 3x3 and padded by 2 to 28x28, divided by 16; the first 1,500 samples; this
reproduces the fixture's inputs.npy, samples 1500-1531, exactly). The hidden layer `dense` is
frozen while training and marked trainable again before saving, so that the config is the
original's and exactly two tensors change: `dense_1/kernel` and `dense_1/bias`.

Writes tests/fixtures/keras_seed_mlp/model_v2.keras and revision_diff.json: for every tensor
(named as nnsign names them, `layer/kernel`, `layer/bias`), whether its bytes changed and the
max absolute difference, computed by numpy from the two files' HDF5 weights (h5py), not from
Keras.
"""
import json
import os
import tempfile
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")
import h5py  # noqa: E402
import keras  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
DIR = os.path.join(HERE, "..", "tests", "fixtures", "keras_seed_mlp")
SRC = os.path.join(DIR, "model.keras")
DST = os.path.join(DIR, "model_v2.keras")
FACTS = os.path.join(DIR, "revision_diff.json")


def digits():
    d = load_digits()
    images = d.data.reshape(-1, 8, 8) / 16.0
    up = np.pad(np.kron(images, np.ones((3, 3))), ((0, 0), (2, 2), (2, 2)))
    x = up.reshape(-1, 784).astype("float32")
    y = keras.utils.to_categorical(d.target, 10).astype("float32")
    return x, y


def weights(path):
    """Each Dense layer's kernel and bias from the HDF5 file inside a .keras zip."""
    out = {}
    with zipfile.ZipFile(path) as z, tempfile.TemporaryDirectory() as tmp:
        z.extract("model.weights.h5", tmp)
        with h5py.File(os.path.join(tmp, "model.weights.h5"), "r") as h5:
            for layer in ("dense", "dense_1"):
                vars_ = h5["layers"][layer]["vars"]
                out[f"{layer}/kernel"] = np.array(vars_["0"])
                out[f"{layer}/bias"] = np.array(vars_["1"])
    return out


def main():
    keras.utils.set_random_seed(1)
    x, y = digits()
    inputs = np.load(os.path.join(DIR, "inputs.npy"))
    assert np.array_equal(x[1500:1532], inputs), "the digits are not prepared as the original's"
    model = keras.saving.load_model(SRC)
    model.get_layer("dense").trainable = False
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-3),
        loss="categorical_crossentropy",
        metrics=["accuracy"],
    )
    model.fit(x[:1500], y[:1500], epochs=1, batch_size=32, shuffle=False, verbose=0)
    model.get_layer("dense").trainable = True
    model.save(DST)

    before, after = weights(SRC), weights(DST)
    facts = {"tensors": {}}
    for name in sorted(before):
        a, b = before[name], after[name]
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape, name
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        facts["tensors"][name] = {
            "dtype": "F32",
            "shape": list(a.shape),
            "changed": a.tobytes() != b.tobytes(),
            "max_abs_diff": float(diff.max()),
        }
    with open(FACTS, "w") as f:
        json.dump(facts, f, indent=2, sort_keys=True)
        f.write("\n")
    print(json.dumps(facts, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
