#!/usr/bin/env python3
"""A small Keras 3 CNN, saved as .keras, with Keras's own outputs, for the importer's tests:

    pip install keras jax numpy
    KERAS_BACKEND=jax python3 scripts/make_keras_cnn_fixture.py

Writes tests/fixtures/keras_cnn/: model.keras (Functional: Input [8, 8, 2] channels-last ->
Conv2D(4, 3x3, padding same, relu) -> MaxPooling2D(2) -> Conv2D(6, 3x3, strides 2, padding
same) -> BatchNormalization -> Activation(relu) -> Conv2D(6, 2x2, padding valid, tanh) ->
GlobalAveragePooling2D -> Dense(3, softmax); random weights, seed 7, untrained; BatchNormalization's moving statistics
set to non-trivial values), inputs.npy float32 [5, 8, 8, 2], expected.npy (model.predict).
"""
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras  # noqa: E402
import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "keras_cnn")
os.makedirs(OUT, exist_ok=True)
keras.utils.set_random_seed(7)
x = keras.Input(shape=(8, 8, 2), name="image")
h = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv1")(x)
h = keras.layers.MaxPooling2D(2, name="pool")(h)
h = keras.layers.Conv2D(6, 3, strides=2, padding="same", name="conv2")(h)
h = keras.layers.BatchNormalization(name="bn")(h)
h = keras.layers.Activation("relu", name="act")(h)
h = keras.layers.Conv2D(6, 2, padding="valid", activation="tanh", name="conv3")(h)
h = keras.layers.GlobalAveragePooling2D(name="gap")(h)
y = keras.layers.Dense(3, activation="softmax", name="probs")(h)
model = keras.Model(x, y, name="cnn")
bn = model.get_layer("bn")
rng = np.random.default_rng(7)
gamma, beta, mean, var = [w.numpy() if hasattr(w, "numpy") else np.asarray(w) for w in bn.weights]
bn.set_weights([rng.uniform(0.5, 1.5, 6).astype("float32"), rng.normal(0, 0.1, 6).astype("float32"),
                rng.normal(0, 0.2, 6).astype("float32"), rng.uniform(0.5, 2.0, 6).astype("float32")])
inputs = rng.uniform(0, 1, (5, 8, 8, 2)).astype("float32")
model.save(os.path.join(OUT, "model.keras"))
np.save(os.path.join(OUT, "inputs.npy"), inputs)
np.save(os.path.join(OUT, "expected.npy"), np.asarray(model.predict(inputs, verbose=0), dtype="float32"))
print("wrote", sorted(os.listdir(OUT)))
