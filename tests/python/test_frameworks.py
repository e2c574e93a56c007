"""Keras and PyTorch models through nnsign.save / nnsign.load: the loaded artifact computes
what the framework computes, and holds the framework's weights."""

import warnings

import numpy as np
import pytest

import nnsign
from conftest import key_id


# --- Keras -----------------------------------------------------------------------------------

def test_keras_model_runs_as_keras_predicts(keras_mlp, keras_artifact, signer, digits_batch):
    path, report = keras_artifact
    _, pub = signer
    m = nnsign.load(path, trust=pub)
    assert m.runnable is True
    assert [(d, s) for _, d, s in m.inputs] == [("F32", ["batch", 784])]
    assert [(d, s) for _, d, s in m.outputs] == [("F32", ["batch", 10])]
    x = digits_batch
    assert x.shape == (5, 784)
    expected = keras_mlp.predict(x, verbose=0)
    y = m(x)
    assert y.dtype == np.float32 and y.shape == (5, 10)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5)
    # A softmax that actually depends on the input (the comparison is not of constants).
    assert np.abs(y[0] - y[1]).max() > 1e-3
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)


def test_keras_artifact_names_its_signer(keras_artifact, signer):
    path, report = keras_artifact
    _, pub = signer
    m = nnsign.load(path, trust=pub)
    assert m.info.signers == [key_id(pub)]
    assert report["signer"] == key_id(pub)
    assert m.info.name == "seed_mlp" and m.info.version == "1.0.0"
    assert m.info.architecture is True


def test_keras_weights_are_the_models(keras_mlp, keras_artifact, signer):
    path, _ = keras_artifact
    _, pub = signer
    m = nnsign.load(path, trust=pub)
    assert sorted(m.tensors) == ["dense/bias", "dense/kernel", "dense_1/bias", "dense_1/kernel"]
    assert len(m.tensors) == len(keras_mlp.get_weights()) == 4
    for layer in keras_mlp.layers:
        kernel, bias = layer.get_weights()
        for name, want in ((f"{layer.name}/kernel", kernel), (f"{layer.name}/bias", bias)):
            got = m.tensors[name]
            assert got.dtype == np.float32 and got.shape == want.shape, name
            assert got.tobytes() == np.ascontiguousarray(want).tobytes(), name
    shapes = sorted(w.shape for w in keras_mlp.get_weights())
    assert sorted(a.shape for a in m.tensors.values()) == shapes == [(10,), (32,), (32, 10), (784, 32)]


# --- PyTorch ---------------------------------------------------------------------------------

def _mlp():
    import torch

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(20, 16)
            self.fc2 = torch.nn.Linear(16, 4)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    return MLP(), (20,)


def _cnn():
    import torch

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(2, 4, kernel_size=3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 4 * 4, 5),
    )
    return net, (2, 8, 8)


MODULES = {"mlp": _mlp, "cnn": _cnn}


@pytest.mark.parametrize("kind", sorted(MODULES))
def test_torch_module_runs_as_torch(tmp_path, signer, kind):
    import torch

    key, pub = signer
    module, item_shape = MODULES[kind]()
    gen = torch.Generator().manual_seed(2)
    example = torch.randn(3, *item_shape, generator=gen)
    path = tmp_path / f"{kind}.nns"
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no fallback to weights only
        report = nnsign.save(module, path, sign=key, example_inputs=example)
    assert report["signer"] == key_id(pub)
    assert module.training is True  # the export put it back as it was

    m = nnsign.load(path, trust=pub)
    assert m.runnable is True and m.info.signers == [key_id(pub)]
    assert [s for _, _, s in m.inputs] == [["batch", *item_shape]]
    module.eval()
    for batch in (3, 7):  # the example's batch, and another: the batch axis is dynamic
        x = torch.randn(batch, *item_shape, generator=gen)
        with torch.no_grad():
            expected = module(x).numpy()
        y = m(x.numpy())
        assert y.shape == expected.shape == (batch, 4 if kind == "mlp" else 5)
        np.testing.assert_allclose(y, expected, rtol=0, atol=1e-5)
        assert np.abs(y[0] - y[1]).max() > 1e-4
    # The weights are the module's, under its state dict's names.
    state = module.state_dict()
    assert sorted(m.tensors) == sorted(state)
    for name, t in state.items():
        np.testing.assert_array_equal(m.tensors[name], t.numpy(), err_msg=name)


def test_torch_state_dict_is_weights_only(tmp_path, signer):
    key, pub = signer
    module, item_shape = _cnn()
    state = module.state_dict()
    path = tmp_path / "state.nns"
    nnsign.save(state, path, sign=key)
    m = nnsign.load(path, trust=pub)
    assert m.runnable is False
    assert m.info.architecture is False
    assert sorted(m.tensors) == sorted(state) == ["0.bias", "0.weight", "4.bias", "4.weight"]
    for name, t in state.items():
        got = m.tensors[name]
        assert got.dtype == np.float32 and got.shape == tuple(t.shape), name
        assert got.tobytes() == t.numpy().tobytes(), name
    x = np.zeros((1, *item_shape), np.float32)
    with pytest.raises(nnsign.SchemaError) as ei:
        m.run(x)
    e = ei.value
    assert e.exit_code == 6 and e.kind == "schema"
    assert e.file == str(path)
    assert "holds weights only (no architecture)" in str(e)
    with pytest.raises(nnsign.SchemaError, match="nothing to run"):
        m(x)


def test_torch_module_without_example_inputs_warns_and_saves_weights(tmp_path, signer):
    key, pub = signer
    module, _ = _mlp()
    path = tmp_path / "mlp_weights.nns"
    with pytest.warns(UserWarning, match="no example_inputs") as record:
        nnsign.save(module, path, sign=key)
    # The warning points at the caller, not into nnsign.
    assert record[0].filename == __file__
    m = nnsign.load(path, trust=pub)
    assert m.runnable is False
    state = module.state_dict()
    assert sorted(m.tensors) == ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"] == sorted(state)
    for name, t in state.items():
        np.testing.assert_array_equal(m.tensors[name], t.numpy(), err_msg=name)
    with pytest.raises(nnsign.SchemaError):
        m.run(np.zeros((1, 20), np.float32))
