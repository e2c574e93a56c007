#!/usr/bin/env python3
"""Small Keras 3 models, one per layer setting the Keras importer maps (or refuses), with Keras's
own outputs, for tests/keras_layers.rs:

    python3 -m venv venv && venv/bin/pip install keras==3.15.1 torch==2.15.0 numpy==2.4.6 \\
        h5py==3.16.0
    KERAS_BACKEND=torch venv/bin/python scripts/make_keras_layers_fixture.py [OUT_DIR]

OUT_DIR defaults to tests/fixtures/keras_layers. For each model NAME in MODELS it writes

  NAME.keras   the Functional model as `model.save` writes it
  NAME.npz     `input.<input layer>`: its inputs at batch 3, and `expected.<output layer>`:
               `model.predict` on them (float32), which must equal what the saved file,
               loaded again, computes

and for each NAME in REFUSED only `fail_NAME.keras`: a setting the importer must refuse (the
test asserts its message).

Every weight is drawn again after the model is built, biases included, at a scale of about
1 / sqrt(fan-in): Keras initializes biases to zero (and an LSTM's forget bias to one), which
would hide a bias put in the wrong gate or the wrong half. NumPy and Keras are seeded by the
model's place in MODELS (add new models at the end to keep the others' files) and torch runs
on one thread, so a second run computes the same weights and arrays; the .npz files are
written with a fixed zip timestamp and are byte for byte the same. The .keras files are not:
Keras writes the save date and Python object ids into them.
"""
import io
import os
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "torch")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
BATCH = 3
STEPS, FEATURES = 5, 4


def seq_input(name="x", steps=STEPS, features=FEATURES):
    return keras.Input(shape=(steps, features), name=name)


def image_input(h=4, w=5, c=3):
    return keras.Input(shape=(h, w, c), name="x")


def rnn(layer):
    """A model of one recurrent layer on [batch, STEPS, FEATURES]."""
    def build():
        x = seq_input()
        return keras.Model(x, layer()(x))
    return build


def one(make, inp=image_input):
    def build():
        x = inp()
        return keras.Model(x, make()(x))
    return build


def mha_self():
    x = seq_input(features=6)
    y = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x)
    return keras.Model(x, y)


def mha_key():
    """Query, key and value from three inputs: key and value of another length than the
    query and of other widths, value_dim unlike key_dim, key given by keyword."""
    q = seq_input("query", steps=4, features=6)
    k = seq_input("key", steps=7, features=5)
    v = seq_input("value", steps=7, features=3)
    y = layers.MultiHeadAttention(num_heads=3, key_dim=2, value_dim=4, name="mha")(q, v, key=k)
    return keras.Model([q, k, v], y)


def mha_key_positional():
    """As mha_key, the key passed as the third positional argument, without biases."""
    q = seq_input("query", steps=4, features=6)
    k = seq_input("key", steps=7, features=5)
    v = seq_input("value", steps=7, features=3)
    y = layers.MultiHeadAttention(num_heads=2, key_dim=3, use_bias=False, name="mha")(q, v, k)
    return keras.Model([q, k, v], y)


MODELS = {
    "lstm_last": rnn(lambda: layers.LSTM(6, name="lstm")),
    "lstm_sequences": rnn(lambda: layers.LSTM(6, return_sequences=True, name="lstm")),
    "gru_reset_after": rnn(lambda: layers.GRU(6, return_sequences=True, name="gru")),
    "gru_reset_before": rnn(lambda: layers.GRU(6, reset_after=False, name="gru")),
    "bigru_sum": rnn(lambda: layers.Bidirectional(
        layers.GRU(5, return_sequences=True), merge_mode="sum", name="bi")),
    "bilstm_ave": rnn(lambda: layers.Bidirectional(layers.LSTM(5), merge_mode="ave",
                                                   name="bi")),
    "bigru_before_concat": rnn(lambda: layers.Bidirectional(
        layers.GRU(4, reset_after=False), name="bi")),
    "lstm_relu": rnn(lambda: layers.LSTM(6, activation="relu", return_sequences=True,
                                         name="lstm")),
    "gru_relu": rnn(lambda: layers.GRU(6, activation="relu", name="gru")),
    "lstm_no_bias": rnn(lambda: layers.LSTM(6, use_bias=False, return_sequences=True,
                                            name="lstm")),
    "gru_no_bias": rnn(lambda: layers.GRU(6, use_bias=False, name="gru")),
    "gru_before_no_bias": rnn(lambda: layers.GRU(6, use_bias=False, reset_after=False,
                                                 return_sequences=True, name="gru")),
    "upsample_nearest_2": one(lambda: layers.UpSampling2D(2, name="up")),
    "upsample_nearest_2x3": one(lambda: layers.UpSampling2D((2, 3), name="up")),
    "upsample_bilinear_2x3": one(lambda: layers.UpSampling2D((2, 3), interpolation="bilinear",
                                                             name="up")),
    "deconv_same_k2s2": one(lambda: layers.Conv2DTranspose(4, 2, strides=2, padding="same",
                                                           name="deconv")),
    "deconv_same_k3s3x1": one(lambda: layers.Conv2DTranspose(
        2, (3, 1), strides=(3, 1), padding="same", activation="tanh", name="deconv")),
    "deconv_valid_k3s2": one(lambda: layers.Conv2DTranspose(3, 3, strides=2, padding="valid",
                                                            activation="relu", name="deconv")),
    "deconv_valid_no_bias": one(lambda: layers.Conv2DTranspose(
        2, (2, 3), strides=(1, 2), use_bias=False, name="deconv")),
    # A kernel shorter than its stride: "valid" still gives (n - 1) s + max(k, s) outputs,
    # the last s - k of each stride the bias alone.
    "deconv_valid_k1x2s2x3": one(lambda: layers.Conv2DTranspose(
        2, (1, 2), strides=(2, 3), padding="valid", name="deconv")),
    # "same" with kernel and stride apart: asymmetric cropping.
    "deconv_same_k3s2": one(lambda: layers.Conv2DTranspose(3, 3, strides=2, padding="same",
                                                           name="deconv")),
    "deconv_same_k4x1s2x3": one(lambda: layers.Conv2DTranspose(
        2, (4, 1), strides=(2, 3), padding="same", name="deconv")),
    "deconv_same_k3s1": one(lambda: layers.Conv2DTranspose(2, 3, padding="same", name="deconv")),
    "deconv_same_output_padding": one(lambda: layers.Conv2DTranspose(
        2, 3, strides=2, padding="same", output_padding=1, name="deconv")),
    "deconv_valid_output_padding": one(lambda: layers.Conv2DTranspose(
        2, (2, 3), strides=(3, 2), padding="valid", output_padding=(2, 1), name="deconv")),
    "leaky_relu": one(lambda: layers.ReLU(negative_slope=0.3, name="relu")),
    "mha_self": mha_self,
    "mha_key": mha_key,
    "mha_key_positional": mha_key_positional,
}


def stateful():
    x = keras.Input(batch_shape=(BATCH, STEPS, FEATURES), name="x")
    return keras.Model(x, layers.LSTM(4, stateful=True, name="lstm")(x))


def causal():
    x = seq_input(features=6)
    y = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(x, x, use_causal_mask=True)
    return keras.Model(x, y)


def scores():
    x = seq_input(features=6)
    y, _ = layers.MultiHeadAttention(num_heads=2, key_dim=4, name="mha")(
        x, x, return_attention_scores=True)
    return keras.Model(x, y)


def merge_none():
    """Bidirectional without a merge: two outputs, forward and backward."""
    x = seq_input()
    return keras.Model(x, layers.Bidirectional(layers.GRU(4), merge_mode=None, name="bi")(x))


def initial_state(cls, states):
    """A recurrent layer started from states given as further inputs."""
    def build():
        x = seq_input()
        given = [keras.Input(shape=(4,), name=f"state{k}") for k in range(states)]
        return keras.Model([x] + given, cls(4, name="rnn")(x, initial_state=given))
    return build


def mask_zero():
    ids = keras.Input(shape=(STEPS,), dtype="int32", name="ids")
    e = layers.Embedding(10, 4, mask_zero=True, name="embed")(ids)
    return keras.Model(ids, layers.LSTM(4, name="lstm")(e))


# Settings Keras computes in ways nnsign's graph does not: a product merge (not mapped), two
# outputs from one layer, state kept from one call to the next, a causal mask or attention
# scores asked for in the call, a padding mask that the layers after an Embedding obey, and
# recurrent layers started from given states.
REFUSED = {
    "bilstm_mul": rnn(lambda: layers.Bidirectional(layers.LSTM(4), merge_mode="mul",
                                                   name="bi")),
    "bigru_merge_none": merge_none,
    "lstm_stateful": stateful,
    "mha_causal": causal,
    "mha_scores": scores,
    "embedding_mask_zero": mask_zero,
    "gru_initial_state": initial_state(layers.GRU, 1),
    "lstm_initial_state": initial_state(layers.LSTM, 2),
}


def randomize(model, rng):
    """Every weight of a layer, biases included, drawn again uniform in +-1/sqrt(n): n the first
    axis of its first kernel (the input width of a Dense-like or recurrent kernel), or for a
    Conv2DTranspose kernel [kh, kw, out, in] kh * kw * in."""
    for layer in model.layers:
        ws = layer.get_weights()
        if not ws:
            continue
        scale = 1.0 / np.sqrt(max(ws[0].shape[0], 1)) if ws[0].ndim > 1 else 0.5
        if isinstance(layer, layers.Conv2DTranspose):
            scale = 1.0 / np.sqrt(ws[0].shape[0] * ws[0].shape[1] * ws[0].shape[3])
        layer.set_weights([rng.uniform(-scale, scale, w.shape).astype("float32") for w in ws])


def save_npz(path, arrays):
    """np.savez's layout (stored, not compressed), with a fixed timestamp."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                       buf.getvalue())


def main():
    import torch
    torch.set_num_threads(1)
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "..", "tests", "fixtures",
                                                             "keras_layers")
    os.makedirs(out, exist_ok=True)
    for k, (name, build) in enumerate(MODELS.items()):
        keras.utils.set_random_seed(100 + k)
        model = build()
        rng = np.random.default_rng(100 + k)
        randomize(model, rng)
        feeds = {i.name: rng.uniform(-1, 1, (BATCH,) + tuple(i.shape[1:])).astype("float32")
                 for i in model.inputs}
        got = model.predict(feeds, verbose=0)
        got = got if isinstance(got, list) else [got]
        path = os.path.join(out, f"{name}.keras")
        model.save(path)
        # What nnsign reads is the saved file: Keras must compute the same from it.
        again = keras.saving.load_model(path).predict(feeds, verbose=0)
        again = again if isinstance(again, list) else [again]
        assert all(np.array_equal(a, b) for a, b in zip(got, again)), name
        arrays = {f"input.{n}": v for n, v in feeds.items()}
        for o, v in zip(model.outputs, got):
            arrays[f"expected.{o._keras_history[0].name}"] = np.asarray(v, dtype="float32")
        save_npz(os.path.join(out, f"{name}.npz"), arrays)
        n = sum(int(np.prod(w.shape)) for w in model.weights)
        print(f"{name}: {n} weights, outputs {[a.shape for a in got]}")
    for k, (name, build) in enumerate(REFUSED.items()):
        keras.utils.set_random_seed(200 + k)
        build().save(os.path.join(out, f"fail_{name}.keras"))
        print(f"fail_{name}")
    print("keras", keras.__version__, "backend", keras.backend.backend(), "numpy",
          np.__version__, "torch", torch.__version__)


if __name__ == "__main__":
    main()
