#!/usr/bin/env python3
"""Three real exported models for the runtime's reference fixtures (issue 13): a small U-Net
segmenter, a bidirectional-LSTM text classifier and a 2-layer transformer encoder with a key
padding mask, each built in PyTorch and exported by `torch.onnx.export`, and again in Keras 3,
saved as `.keras` and exported by Keras's own `model.export(format="onnx")`.

    python3 -m venv venv && venv/bin/pip install torch==2.15.0 keras==3.15.1 onnx==1.23.2 \\
        onnxruntime==1.32.0 onnxscript==0.7.2 numpy==2.4.6 jax==0.10.2 jax2onnx==0.17.1
    venv/bin/python scripts/make_runtime_models.py [OUT_DIR]

OUT_DIR defaults to tests/fixtures/models3. For each model NAME it writes

  NAME.onnx          torch.onnx.export, the TorchScript exporter (dynamo=False), opset 17, batch
                     dimension "batch" (dynamic_axes), constants folded, eval mode
  NAME.dynamo.onnx   torch.onnx.export's default exporter in torch 2.9 on (dynamo=True), with a
                     dynamic batch, at its default opset (20 in torch 2.15; asked for 17, its
                     version converter fails on the LSTM graph and leaves it at 18)
  keras_NAME.keras   the Keras counterpart (channels-last where it matters), as model.save writes it
  keras_NAME.onnx    the same Keras model through model.export(format="onnx"): on the torch
                     backend (the TorchScript exporter, dynamic batch, opset 17) for unet and
                     bilstm; on the JAX backend (jax2onnx, opset 18) for transformer, which
                     the torch backend cannot export with a dynamic batch (keras_transformer)
  NAME.npz, NAME_b3.npz, keras_NAME.npz, keras_NAME_b3.npz
                     inputs at batch 2 and 3 (`input.<graph input>`), onnxruntime's outputs
                     (`output.<graph output>`, CPUExecutionProvider, for NAME.onnx or
                     keras_NAME.onnx) and the framework's own (`framework.<graph output>`: the
                     torch module under no_grad, or the Keras model called with training=False).
                     NAME.dynamo.onnx is checked against the same arrays.

and fails unless onnxruntime and the framework agree within 1e-5 (absolute; every output here
is a probability or of order 1) for every file and both batch sizes, and unless each encoder
graph really applies its padding mask (check_mask). It prints the largest differences, the
versions used and each ONNX graph's op types with their counts.

Seeds are fixed (torch, NumPy, Keras) and torch runs on one thread, so a second run computes the
same weights and arrays; the .npz files are written with a fixed zip timestamp, and so are byte
for byte the same, as are the .onnx files with the versions above (the dynamo ones carry source
paths of the torch install in their node metadata, so only from the same install path). The
.keras files are not: Keras writes the save date and Python object ids (shared_object_id) into
them.
"""
import collections
import io
import os
import subprocess
import sys
import warnings
import zipfile

# Keras's ONNX export keeps the batch dynamic on the torch backend (through the TorchScript
# exporter) for the U-Net and the LSTM; for the encoder it fails there (see keras_transformer),
# so this script runs itself again on the JAX backend (jax2onnx) for that one model.
JAX_PART = "--keras-jax-transformer" in sys.argv
os.environ["KERAS_BACKEND"] = "jax" if JAX_PART else "torch"
import keras  # noqa: E402
import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from keras import layers  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
TOL = 1e-5
BATCHES = (2, 3)
SEQ, VOCAB, CLASSES = 16, 1000, 4
TOKENS, D_MODEL, HEADS, FF, LABELS = 12, 32, 4, 64, 8


def conv_block(cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU())


class UNet(nn.Module):
    """[n, 3, 64, 64] -> per-pixel probability [n, 1, 64, 64]: two encoder stages with max
    pooling, a bottleneck, one ConvTranspose and one bilinear upsampling, each followed by a
    concatenated skip, a 1x1 head and a sigmoid."""

    def __init__(self):
        super().__init__()
        self.enc1, self.enc2, self.mid = conv_block(3, 8), conv_block(8, 16), conv_block(16, 32)
        self.up1 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec1 = conv_block(32, 16)
        self.up2 = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
        self.dec2 = conv_block(24, 8)
        self.head = nn.Conv2d(8, 1, 1)

    def forward(self, x):
        e1 = self.enc1(x)                                         # 8 x 64 x 64
        e2 = self.enc2(F.max_pool2d(e1, 2))                       # 16 x 32 x 32
        m = self.mid(F.max_pool2d(e2, 2))                         # 32 x 16 x 16
        d1 = self.dec1(torch.cat([self.up1(m), e2], 1))           # 16 x 32 x 32
        d2 = self.dec2(torch.cat([self.up2(d1), e1], 1))          # 8 x 64 x 64
        return torch.sigmoid(self.head(d2))


class BiLSTM(nn.Module):
    """int64 token ids [n, 16] -> class probabilities [n, 4]: the mean over time of the
    bidirectional LSTM's outputs beside its last forward and backward hidden states."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(VOCAB, 32)
        self.lstm = nn.LSTM(32, 32, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(4 * 32, CLASSES)

    def forward(self, ids):
        y, (h, _) = self.lstm(self.emb(ids))
        return F.softmax(self.fc(torch.cat([y.mean(1), h[0], h[1]], 1)), -1)


class Encoder(nn.Module):
    """x [n, 12, 32] and a key padding mask [n, 12] (bool, True = padding) -> [n, 12, 8]:
    a learned positional add, 2 post-norm encoder layers (4 heads, ReLU feed-forward of 64,
    no dropout) and a linear head per token."""

    def __init__(self):
        super().__init__()
        self.pos = nn.Parameter(torch.randn(1, TOKENS, D_MODEL) * 0.1)
        layer = nn.TransformerEncoderLayer(D_MODEL, HEADS, FF, dropout=0.0, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(D_MODEL, LABELS)

    def forward(self, x, mask):
        return self.head(self.enc(x + self.pos, src_key_padding_mask=mask))


def randomize(model):
    """Non-trivial values everywhere: batch-norm statistics and layer-norm affines too, and the
    two encoder layers (deep copies of one) made different."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm1.weight") or name.endswith("norm2.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif p.dim() > 1:
                p.copy_(torch.randn_like(p) / np.sqrt(p[0].numel()))
            else:
                p.copy_(0.1 * torch.randn_like(p))
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.2 * torch.randn_like(m.running_mean))
                m.running_var.copy_(0.5 + torch.rand_like(m.running_var))
                m.weight.copy_(0.5 + torch.rand_like(m.weight))
    return model.eval()


def padding_mask(n):
    """True marks padding: the first row has none, the others 3, 7, ... padded tokens at the
    end, so every row keeps real tokens (a row of padding only would make softmax NaN)."""
    mask = np.zeros((n, TOKENS), dtype=bool)
    for i in range(1, n):
        mask[i, TOKENS - (4 * i - 1):] = True
    return mask


def torch_inputs(name, n, rng):
    if name == "unet":
        return {"x": rng.uniform(0, 1, (n, 3, 64, 64)).astype(np.float32)}
    if name == "bilstm":
        return {"ids": rng.integers(0, VOCAB, (n, SEQ), dtype=np.int64)}
    return {"x": rng.standard_normal((n, TOKENS, D_MODEL)).astype(np.float32),
            "mask": padding_mask(n)}


TORCH_OUTPUTS = {"unet": ["y"], "bilstm": ["probs"], "transformer": ["y"]}


def export_torch(name, model, example, out):
    names, outs = list(example), TORCH_OUTPUTS[name]
    args = tuple(torch.from_numpy(v) for v in example.values())
    path = os.path.join(out, f"{name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, path, dynamo=False, opset_version=17,
                          input_names=names, output_names=outs,
                          dynamic_axes={v: {0: "batch"} for v in names + outs})
        batch = torch.export.Dim("batch", min=1, max=1024)
        program = torch.onnx.export(model, args, dynamo=True, input_names=names,
                                    output_names=outs,
                                    dynamic_shapes={v: {0: batch} for v in names})
    dynamo = os.path.join(out, f"{name}.dynamo.onnx")
    program.save(dynamo, external_data=False)
    return [path, dynamo]


def keras_unet():
    def block(h, filters, name):
        h = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv")(h)
        h = layers.BatchNormalization(name=f"{name}_bn")(h)
        return layers.ReLU(name=f"{name}_relu")(h)

    x = keras.Input((64, 64, 3), name="x")
    e1 = block(x, 8, "enc1")
    e2 = block(layers.MaxPooling2D(2, name="pool1")(e1), 16, "enc2")
    m = block(layers.MaxPooling2D(2, name="pool2")(e2), 32, "mid")
    u1 = layers.Conv2DTranspose(16, 2, strides=2, name="up1")(m)
    d1 = block(layers.Concatenate(name="skip1")([u1, e2]), 16, "dec1")
    u2 = layers.UpSampling2D(2, interpolation="bilinear", name="up2")(d1)
    d2 = block(layers.Concatenate(name="skip2")([u2, e1]), 8, "dec2")
    y = layers.Conv2D(1, 1, activation="sigmoid", name="head")(d2)
    return keras.Model(x, y, name="unet")


def keras_bilstm():
    ids = keras.Input((SEQ,), dtype="int64", name="ids")
    h = layers.Embedding(VOCAB, 32, name="emb")(ids)
    h = layers.Bidirectional(layers.LSTM(32, return_sequences=True), name="bilstm")(h)
    h = layers.GlobalAveragePooling1D(name="mean")(h)
    y = layers.Dense(CLASSES, activation="softmax", name="probs")(h)
    return keras.Model(ids, y, name="bilstm")


def keras_transformer():
    """The Keras form of the encoder, without the positional add (Keras has no built-in layer
    for a learned one; a custom layer would make the .keras file loadable by Keras alone).
    Keras cannot export it to ONNX on the torch backend with a dynamic batch: its torch
    layer_norm passes the traced `x.shape[-1]` to F.layer_norm as normalized_shape, and the
    TorchScript exporter refuses a computed shape there ("Failed to export a node ... because it
    is not constant").
    `valid` [n, 12] (1.0 = a real token, 0.0 = padding: Keras masks by what is kept) reshaped
    to [n, 1, 12] is MultiHeadAttention's attention_mask, broadcast over the query rows."""
    x = keras.Input((TOKENS, D_MODEL), name="x")
    valid = keras.Input((TOKENS,), name="valid")
    mask = layers.Reshape((1, TOKENS), name="mask_keys")(valid)
    h = x
    for i in range(2):
        a = layers.MultiHeadAttention(HEADS, D_MODEL // HEADS, name=f"mha{i}")(
            h, h, attention_mask=mask)
        h = layers.LayerNormalization(epsilon=1e-5, name=f"norm{i}a")(layers.Add(name=f"res{i}a")([h, a]))
        f = layers.Dense(FF, activation="relu", name=f"ff{i}a")(h)
        f = layers.Dense(D_MODEL, name=f"ff{i}b")(f)
        h = layers.LayerNormalization(epsilon=1e-5, name=f"norm{i}b")(layers.Add(name=f"res{i}b")([h, f]))
    y = layers.Dense(LABELS, name="head")(h)
    return keras.Model([x, valid], y, name="transformer")


def keras_inputs(name, n, rng):
    if name == "unet":
        return {"x": rng.uniform(0, 1, (n, 64, 64, 3)).astype(np.float32)}
    if name == "bilstm":
        return {"ids": rng.integers(0, VOCAB, (n, SEQ), dtype=np.int64)}
    return {"x": rng.standard_normal((n, TOKENS, D_MODEL)).astype(np.float32),
            "valid": (~padding_mask(n)).astype(np.float32)}


def randomize_keras(model, rng):
    """Random weights at the scale of their fan-in, and non-trivial batch-norm statistics."""
    for layer in model.layers:
        weights = []
        for w in layer.weights:
            v = np.asarray(keras.ops.convert_to_numpy(w))
            path = w.path
            if path.endswith("moving_variance"):
                v = rng.uniform(0.5, 1.5, v.shape)
            elif path.endswith("gamma"):
                v = rng.uniform(0.5, 1.5, v.shape)
            elif v.ndim > 1:
                v = rng.standard_normal(v.shape) / np.sqrt(np.prod(v.shape[:-1]))
            else:
                v = 0.1 * rng.standard_normal(v.shape)
            weights.append(v.astype(np.float32))
        if weights:
            layer.set_weights(weights)
    return model


def export_keras(name, model, example, out):
    keras_path = os.path.join(out, f"keras_{name}.keras")
    model.save(keras_path)
    # Keras exports only a model that has been called ("The model provided has never called").
    model(list(example.values()) if len(example) > 1 else next(iter(example.values())))
    path = os.path.join(out, f"keras_{name}.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # jax2onnx writes ReduceMean's opset-18 form (axes as an input) even when asked for
        # opset 17, which onnxruntime then refuses: 18 on JAX.
        model.export(path, format="onnx", opset_version=18 if JAX_PART else 17, verbose=False)
    return [path]


def framework_run(model, feed):
    if isinstance(model, nn.Module):
        with torch.no_grad():
            y = model(*(torch.from_numpy(v) for v in feed.values()))
        return [y.numpy()]
    args = list(feed.values()) if len(feed) > 1 else next(iter(feed.values()))
    y = model(args, training=False)
    return [np.asarray(keras.ops.convert_to_numpy(y))]


def ort_run(path, feed):
    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    if sorted(names) != sorted(feed):
        sys.exit(f"make_runtime_models: {path} takes {names}, not {list(feed)}")
    return [o.name for o in sess.get_outputs()], sess.run(None, feed)


def check_mask(path, feed, pad):
    """That the exported graph applies the padding mask: new values of x at padded tokens must
    leave onnxruntime's outputs at the real tokens as they were, and change the padded ones."""
    _, (before,) = ort_run(path, feed)
    moved = dict(feed, x=np.where(pad[..., None], feed["x"] + 3.0, feed["x"]).astype(np.float32))
    _, (after,) = ort_run(path, moved)
    kept = float(np.abs(after - before)[~pad].max())
    changed = float(np.abs(after - before)[pad].max())
    print(f"{os.path.basename(path)}: padded tokens changed: real tokens' outputs moved by "
          f"{kept:.3g}, padded ones' by {changed:.3g}")
    if not (kept <= TOL and changed > 0.1):
        sys.exit(f"make_runtime_models: {path} does not apply its padding mask")


def save_npz(path, arrays):
    """np.savez's layout (stored, not compressed), with a fixed timestamp so that a second run
    writes the same bytes."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for key, value in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.ascontiguousarray(value), allow_pickle=False)
            z.writestr(zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0)),
                       buf.getvalue())


def op_counts(path):
    m = onnx.load(path)
    counts = collections.Counter(n.op_type for n in m.graph.node)
    opset = {o.domain or "ai.onnx": o.version for o in m.opset_import}
    return opset, sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def check(stem, paths, model, feeds, out):
    """Runs every ONNX file of one model at every batch size, writes the .npz files of the
    first, and fails on any difference over TOL."""
    for n, feed in feeds.items():
        framework = framework_run(model, feed)
        arrays = {f"input.{k}": v for k, v in feed.items()}
        for path in paths:
            onnx.checker.check_model(path, full_check=True)
            names, outputs = ort_run(path, feed)
            diff = max(float(np.abs(o - f).max()) for o, f in zip(outputs, framework))
            print(f"{os.path.basename(path)} batch {n}: max |onnxruntime - framework| = "
                  f"{diff:.3g}")
            if not diff <= TOL:
                sys.exit(f"make_runtime_models: {path} at batch {n} differs from the framework "
                         f"by {diff:.3g} > {TOL}")
            if path is paths[0]:
                arrays.update({f"output.{k}": v for k, v in zip(names, outputs)})
                arrays.update({f"framework.{k}": v for k, v in zip(names, framework)})
            if "transformer" in stem:
                pad = feed["mask"] if "mask" in feed else feed["valid"] == 0
                check_mask(path, feed, pad)
        suffix = "" if n == BATCHES[0] else f"_b{n}"
        save_npz(os.path.join(out, f"{stem}{suffix}.npz"), arrays)


def keras_part(i, name, keras_fn, out):
    keras.utils.set_random_seed(100 + i)
    rng = np.random.default_rng(100 + i)
    model = randomize_keras(keras_fn(), rng)
    feeds = {n: keras_inputs(name, n, rng) for n in BATCHES}
    paths = export_keras(name, model, feeds[BATCHES[0]], out)
    check(f"keras_{name}", paths, model, feeds, out)
    return paths


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    out = args[0] if args else os.path.join(HERE, "..", "tests", "fixtures", "models3")
    os.makedirs(out, exist_ok=True)
    print(f"torch {torch.__version__}, keras {keras.__version__} (backend "
          f"{keras.backend.backend()}), onnx {onnx.__version__}, onnxruntime {ort.__version__}, "
          f"numpy {np.__version__}, python {sys.version.split()[0]}", flush=True)
    torch.set_num_threads(1)  # same sums in the same order on any machine
    if JAX_PART:
        keras_part(2, "transformer", keras_transformer, out)
        return
    written = []
    builders = {"unet": (UNet, keras_unet), "bilstm": (BiLSTM, keras_bilstm),
                "transformer": (Encoder, keras_transformer)}
    for i, (name, (torch_cls, keras_fn)) in enumerate(builders.items()):
        torch.manual_seed(i)
        rng = np.random.default_rng(i)
        model = randomize(torch_cls())
        feeds = {n: torch_inputs(name, n, rng) for n in BATCHES}
        paths = export_torch(name, model, feeds[BATCHES[0]], out)
        check(name, paths, model, feeds, out)
        written += paths
        if name != "transformer":
            written += keras_part(i, name, keras_fn, out)
    sys.stdout.flush()
    subprocess.run([sys.executable, __file__, out, "--keras-jax-transformer"], check=True)
    written.append(os.path.join(out, "keras_transformer.onnx"))

    for path in written:
        opset, counts = op_counts(path)
        print(f"{os.path.basename(path)}: opset {opset}, {sum(c for _, c in counts)} nodes: "
              + ", ".join(f"{op} {c}" for op, c in counts))
    for f in sorted(os.listdir(out)):
        print(f"{f}: {os.path.getsize(os.path.join(out, f))} bytes")


if __name__ == "__main__":
    main()
