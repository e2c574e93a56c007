"""Sign, verify and safely load ML models: ``nnsign.save`` / ``nnsign.load`` in place of pickle.

``pickle.load`` and ``torch.load`` run whatever the file names. An nnsign artifact holds only
data: tensors, an architecture in a fixed schema, metadata, all covered by SHA-256 digests and
an Ed25519 signature. ``nnsign.load`` checks the signature against the keys you trust and every
byte against the signed digests before it hands anything out; nothing in a file ever runs.

    >>> import numpy as np, nnsign
    >>> key, pub = nnsign.keygen("/tmp/doc-ci")                          # doctest: +SKIP
    >>> nnsign.save({"w": np.ones((2, 3), np.float32)}, "m.nns", sign=key)  # doctest: +SKIP
    >>> m = nnsign.load("m.nns", trust=pub)                               # doctest: +SKIP
    >>> m.tensors["w"].shape                                               # doctest: +SKIP
    (2, 3)

Every failure raises a subclass of :class:`nnsign.Error`, one class per exit code of the
``nnsign`` command line, with the same one-line message (``exit_code``, ``kind``, ``file`` and
``hint`` as attributes). The work is done in Rust with the GIL released.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from . import _native
from ._native import (
    DecryptionError,
    Error,
    FileError,
    FreshnessError,
    InputError,
    IntegrityError,
    SchemaError,
    SignatureError,
    UnsafeFileError,
    UsageError,
    __version__,
)

__all__ = [
    "keygen",
    "save",
    "load",
    "verify",
    "inspect",
    "scan",
    "Model",
    "Info",
    "Error",
    "InputError",
    "UsageError",
    "FileError",
    "SignatureError",
    "IntegrityError",
    "SchemaError",
    "DecryptionError",
    "UnsafeFileError",
    "FreshnessError",
    "__version__",
]

PathLike = Union[str, "os.PathLike[str]"]
#: A key: the path of a key file, or its PEM text as bytes.
Key = Union[PathLike, bytes]

# nnsign's stored dtypes and NumPy's. bfloat16 and float8 have no NumPy dtype of their own:
# they come from ml_dtypes when it is installed, else as their raw bits (uint16 / uint8).
_NUMPY_OF = {
    "BOOL": np.dtype(np.bool_),
    "U8": np.dtype("<u1"),
    "I8": np.dtype("<i1"),
    "U16": np.dtype("<u2"),
    "I16": np.dtype("<i2"),
    "F16": np.dtype("<f2"),
    "U32": np.dtype("<u4"),
    "I32": np.dtype("<i4"),
    "F32": np.dtype("<f4"),
    "U64": np.dtype("<u8"),
    "I64": np.dtype("<i8"),
    "F64": np.dtype("<f8"),
}
_RAW_BITS = {"BF16": np.dtype("<u2"), "F8_E4M3": np.dtype("<u1"), "F8_E5M2": np.dtype("<u1")}
_ML_DTYPES = {"BF16": "bfloat16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def _numpy_dtype(name: str) -> np.dtype:
    if name in _NUMPY_OF:
        return _NUMPY_OF[name]
    try:
        import ml_dtypes  # optional

        return np.dtype(getattr(ml_dtypes, _ML_DTYPES[name]))
    except (ImportError, AttributeError, KeyError):
        return _RAW_BITS[name]


def _stored_dtype(dtype: np.dtype) -> Optional[str]:
    base = dtype.newbyteorder("<") if dtype.byteorder == ">" else dtype
    for name, d in _NUMPY_OF.items():
        if base == d:
            return name
    for name, ml in _ML_DTYPES.items():
        if dtype.name == ml:
            return name
    return None


def _fail(cls: type, code: int, kind: str, message: str, file: Optional[str] = None,
          hint: Optional[str] = None) -> Error:
    err = cls(f"{file}: {message}" if file else message)
    err.exit_code, err.kind, err.file, err.hint = code, kind, file, hint
    return err


def _path(p: Any) -> str:
    return os.fspath(p)


def _key(k: Any) -> Any:
    return k if isinstance(k, bytes) else _path(k)


def keygen(prefix: PathLike, *, encryption: bool = False,
           passphrase: Optional[str] = None) -> Tuple[str, str]:
    """Write a new key pair: ``PREFIX.key`` (private, mode 0600) and ``PREFIX.pub``.

    An Ed25519 signing pair, or with ``encryption=True`` an X25519 pair for receiving encrypted
    models. ``passphrase`` protects the private key (encrypted PKCS#8). Existing files are never
    overwritten. Returns ``(private_path, public_path)``.

        >>> key, pub = nnsign.keygen("keys/ci")   # doctest: +SKIP
    """
    k, p = _native.keygen(_path(prefix), encryption, passphrase)
    return str(k), str(p)


class Info:
    """What was verified: the model's name and version, who signed it, its digest.

    ``raw`` holds everything ``nnsign verify --json`` reports. ``warnings`` lists signatures
    that counted for nothing (an algorithm this nnsign does not implement, such as a
    co-signature whose ``alg`` was changed); ``load`` and ``verify`` also issue each as a
    Python ``UserWarning``, as the CLI prints them.
    """

    def __init__(self, raw: Dict[str, Any]):
        self.raw = raw
        model = raw.get("model") or {}
        self.name: str = model.get("name")
        self.version: Optional[str] = model.get("version")
        self.digest: str = raw.get("digest")
        #: Key ids of the trusted signers whose signatures verified.
        self.signers: List[str] = [s["key_id"] for s in raw.get("signers", [])]
        self.encrypted_to: List[str] = raw.get("encrypted_to", [])
        self.architecture: bool = bool(raw.get("architecture"))
        #: Signatures of an algorithm this nnsign does not implement: they counted for nothing.
        self.warnings: List[str] = list(raw.get("warnings", []))

    def __repr__(self) -> str:
        return (f"Info(name={self.name!r}, version={self.version!r}, "
                f"signers={self.signers!r}, digest={self.digest!r})")


def _warned(info: Info, stacklevel: int = 4) -> Info:
    """Issues the verification's warnings (as the CLI prints them) to the caller."""
    for w in info.warnings:
        warnings.warn(f"nnsign: {w}", UserWarning, stacklevel=stacklevel)
    return info


class _Tensors(Mapping):
    """The verified tensors by name, as read-only NumPy arrays over nnsign's buffers."""

    def __init__(self, native: Any):
        self._native = native
        self._index = {name: (i, dtype, tuple(shape))
                       for i, (name, dtype, shape) in enumerate(native.table)}
        self._arrays: Dict[str, np.ndarray] = {}

    def __getitem__(self, name: str) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None:
            i, dtype, shape = self._index[name]
            raw = self._native.raw(i)
            raw.flags.writeable = False
            a = raw.view(_numpy_dtype(dtype)).reshape(shape)
            self._arrays[name] = a
        return a

    def __iter__(self) -> Iterator[str]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __repr__(self) -> str:
        return "{" + ", ".join(f"{n!r}: {d} {list(s)}" for n, (_, d, s) in self._index.items()) + "}"


class Model:
    """A verified artifact.

    ``tensors`` maps names to read-only NumPy arrays (no copy: they share nnsign's verified
    buffers); ``info`` says what was verified. An artifact with an architecture runs:
    ``model.run({"x": x})`` returns the outputs by name, ``model(x)`` the output of a
    one-input, one-output model. The first run builds the runtime's own copy of the weights.
    """

    def __init__(self, native: Any):
        self._native = native
        self.info = _warned(Info(json.loads(native.info)))
        self.tensors: Mapping[str, np.ndarray] = _Tensors(native)

    @property
    def runnable(self) -> bool:
        """Whether the artifact has an architecture to run."""
        return self._native.runnable

    @property
    def inputs(self) -> List[Tuple[str, str, list]]:
        """The graph's inputs: ``(name, dtype, shape)``, symbolic sizes as strings."""
        return self._native.signature()[0]

    @property
    def outputs(self) -> List[Tuple[str, str, list]]:
        """The graph's outputs: ``(name, dtype, shape)``."""
        return self._native.signature()[1]

    def run(self, inputs: Union[Mapping[str, Any], np.ndarray]) -> Dict[str, np.ndarray]:
        """Run the model on inputs by name (or one array for a one-input model).

        Arrays are converted to the input's dtype (float32, int64 or bool) as NumPy would
        cast them. Returns ``{output name: array}`` in the graph's order.
        """
        wanted = self.inputs
        if not isinstance(inputs, Mapping):
            if len(wanted) != 1:
                raise _fail(UsageError, 2, "usage",
                            f"the model has {len(wanted)} inputs "
                            f"({', '.join(n for n, _, _ in wanted)}); give them by name")
            inputs = {wanted[0][0]: inputs}
        kinds = {"F32": np.float32, "I64": np.int64, "BOOL": np.bool_}
        dtypes = {n: kinds.get(d, np.float32) for n, d, _ in wanted}
        # np.asarray(order="C") keeps a 0-d input 0-d (np.ascontiguousarray makes it 1-d).
        given = [(name, np.asarray(x, dtype=dtypes.get(name, np.float32), order="C"))
                 for name, x in inputs.items()]
        return dict(self._native.run(given))

    def __call__(self, x: Union[Mapping[str, Any], np.ndarray]) -> Any:
        """``run``, returning the output itself when the model has one."""
        out = self.run(x)
        return next(iter(out.values())) if len(out) == 1 else out

    def __repr__(self) -> str:
        return f"<nnsign.Model {self.info.name!r} {self.info.version or ''} {len(self.tensors)} tensors>"


def _trust_kwargs(trust: Any, policy: Any, state: Any, allow_unsigned: bool) -> Dict[str, Any]:
    if trust is not None and not isinstance(trust, (list, tuple)):
        trust = [trust]
    return dict(
        trust=None if trust is None else [_key(t) for t in trust],
        policy=None if policy is None else _path(policy),
        state=None if state is None else _path(state),
        allow_unsigned=allow_unsigned,
    )


def load(path: PathLike, *, trust: Union[Key, Sequence[Key], None] = None,
         policy: Optional[PathLike] = None, state: Optional[PathLike] = None,
         allow_unsigned: bool = False, decrypt_with: Optional[Key] = None,
         key_passphrase: Optional[str] = None, passphrase: Optional[str] = None,
         max_memory: Optional[int] = None) -> Model:
    """Verify and load an artifact; nothing in it runs.

    ``trust``: public keys (``.pub`` paths, folders of them, or PEM bytes); or ``policy``, a
    trust policy file (docs/POLICY.md). ``state``: a rollback-state file. Every byte is checked
    against the signed digests and the architecture against the weights before anything is
    returned. ``decrypt_with`` (an X25519 key) or ``passphrase`` opens an encrypted artifact.
    ``max_memory`` caps what loading may take, in bytes.

        >>> m = nnsign.load("model.nns", trust="keys/")   # doctest: +SKIP
        >>> y = m(x)                                       # doctest: +SKIP

    Raises :class:`SignatureError`, :class:`IntegrityError`, :class:`SchemaError`,
    :class:`DecryptionError`, :class:`FreshnessError`, ... (all :class:`Error`).
    """
    native = _native.load(
        _path(path),
        **_trust_kwargs(trust, policy, state, allow_unsigned),
        decrypt_with=None if decrypt_with is None else _key(decrypt_with),
        key_passphrase=key_passphrase,
        passphrase=passphrase,
        max_memory=max_memory,
    )
    return Model(native)


def verify(path: PathLike, *, trust: Union[Key, Sequence[Key], None] = None,
           policy: Optional[PathLike] = None, state: Optional[PathLike] = None,
           allow_unsigned: bool = False) -> Info:
    """Check provenance and every byte, as ``nnsign verify`` does; no decryption key needed.

    Returns the :class:`Info` of what was verified, or raises.
    """
    raw = _native.verify(_path(path), **_trust_kwargs(trust, policy, state, allow_unsigned))
    return _warned(Info(json.loads(raw)), stacklevel=3)


def inspect(path: PathLike) -> Dict[str, Any]:
    """What an artifact says about itself, trusting nothing (``nnsign inspect --json``)."""
    return json.loads(_native.inspect(_path(path)))


def scan(path: PathLike, *, check: bool = False) -> Dict[str, Any]:
    """What a model file (pickle, PyTorch, Keras, ONNX, NumPy) would execute or reference if
    its framework loaded it, without loading it: ``{"file", "format", "dangerous", "findings"}``.

    With ``check=True``, a dangerous file raises :class:`UnsafeFileError` (exit code 8 of
    ``nnsign scan``) naming the file and the first thing it would run, instead of returning::

        nnsign.scan("downloaded.pt", check=True)   # raises before anyone torch.loads it
    """
    report = json.loads(_native.scan(_path(path)))
    if check and report["dangerous"]:
        dangers = [f["what"] for f in report["findings"] if f["danger"]]
        more = f" (and {len(dangers) - 1} more)" if len(dangers) > 1 else ""
        raise _fail(UnsafeFileError, 8, "danger",
                    f"would execute or reference code when loaded by its framework: "
                    f"{dangers[0]}{more}", report["file"],
                    "do not load it with its framework; nnsign.save imports PyTorch and ONNX "
                    "files without running them")
    return report


def _is_instance_of(obj: Any, module_prefix: str, names: Sequence[str]) -> bool:
    """Whether ``obj`` is of a class named ``names`` from ``module_prefix``, without importing
    that framework."""
    return any(c.__module__.startswith(module_prefix) and c.__name__ in names
               for c in type(obj).__mro__)


def _is_keras_model(obj: Any) -> bool:
    return _is_instance_of(obj, "keras", ("Model", "Functional", "Sequential"))


def _is_torch_module(obj: Any) -> bool:
    return _is_instance_of(obj, "torch.nn", ("Module",))


def _is_torch_tensor(obj: Any) -> bool:
    return _is_instance_of(obj, "torch", ("Tensor",))


def _arrays(named: Mapping[str, Any]) -> List[Tuple[str, str, List[int], np.ndarray]]:
    out = []
    for name, a in named.items():
        if not isinstance(name, str):
            raise _fail(InputError, 1, "input", f"array name {name!r} is not a string")
        a = np.asarray(a)
        dtype = _stored_dtype(a.dtype)
        if dtype is None:
            raise _fail(InputError, 1, "input",
                        f"array {name!r} has dtype {a.dtype}, which nnsign does not store "
                        "(bool, integers, float16/32/64, bfloat16 and float8 from ml_dtypes)")
        shape = [int(d) for d in a.shape]
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        # np.asarray(order="C"), not np.ascontiguousarray: that one turns a 0-d array into
        # shape (1,), which stored a scalar as a 1-element vector.
        a = np.asarray(a, order="C")
        out.append((name, dtype, shape, a.reshape(-1).view(np.uint8)))
    return out


def save(obj: Any, path: PathLike, *, sign: Optional[Key] = None,
         key_passphrase: Optional[str] = None, name: Optional[str] = None,
         version: Optional[str] = None, description: Optional[str] = None,
         labels: Optional[Mapping[str, str]] = None,
         encrypt_to: Optional[Sequence[Key]] = None, passphrase: Optional[str] = None,
         parent: Optional[PathLike] = None, expires: Optional[str] = None,
         arch: Optional[Union[str, Mapping[str, Any]]] = None, weights_only: bool = False,
         example_inputs: Any = None) -> Dict[str, Any]:
    """Write ``obj`` as a signed artifact at ``path`` (atomically: all or nothing).

    ``obj`` is one of:

    * a dict of NumPy arrays (any of bool, integers, float16/32/64; ``arch`` may give an
      architecture in nnsign's JSON schema, docs/SCHEMA.md);
    * a Keras 3 model: its architecture where nnsign's runtime runs it, else its weights with
      a warning;
    * a PyTorch ``nn.Module`` (exported to ONNX when ``example_inputs`` is given, else its
      state dict) or a state dict;
    * the path of any file ``nnsign pack`` reads (ONNX, ``.keras``, PyTorch, GGUF,
      safetensors, ``.npy``/``.npz``). Pickles are read by nnsign's own pickle machine, which
      executes nothing. A model in several files (a ``model.safetensors.index.json``, the first
      of GGUF splits) is written as ``nnsign pack`` writes it: its payload in shard files
      beside ``path``, listed under ``"shards"`` in what is returned.

    Anything else is refused: nnsign never pickles. ``sign`` is the signing key (path or PEM
    bytes); ``encrypt_to`` X25519 public keys, or ``passphrase``, encrypt the tensors and the
    architecture; ``expires`` is a duration (``90d``) or a UTC date. Returns what
    ``nnsign pack --json`` reports.

        >>> nnsign.save(model, "model.nns", sign="keys/ci.key", version="1.0.0")  # doctest: +SKIP
    """
    out = _path(path)
    if name is None:
        name = os.path.splitext(os.path.basename(out))[0] or "model"
    if isinstance(arch, Mapping):
        arch = json.dumps(arch)
    options = dict(
        sign=None if sign is None else _key(sign),
        key_passphrase=key_passphrase, name=name, version=version, description=description,
        labels=dict(labels or {}),
        encrypt_to=None if encrypt_to is None else [_key(k) for k in encrypt_to],
        passphrase=passphrase, parent=None if parent is None else _path(parent),
        expires=expires, arch=arch,
    )
    if isinstance(obj, (str, os.PathLike)):
        return json.loads(_native.pack_files(out, [_path(obj)], options, weights_only))
    if isinstance(obj, Mapping) and any(_is_torch_tensor(v) for v in obj.values()):
        return _save_torch_state(obj, out, options)
    if isinstance(obj, Mapping):
        return json.loads(_native.pack_arrays(out, _arrays(obj), options))
    if _is_keras_model(obj):
        return _save_keras(obj, out, options, weights_only)
    if _is_torch_module(obj):
        if example_inputs is None or weights_only:
            if not weights_only:
                warnings.warn("nnsign.save: no example_inputs, so the module's state dict is "
                              "saved without an architecture; give example_inputs= to export "
                              "it to ONNX and make the artifact runnable", stacklevel=2)
            return _save_torch_state(obj.state_dict(), out, options)
        return _save_torch_module(obj, example_inputs, out, options)
    raise _fail(InputError, 1, "input",
                f"cannot save a {type(obj).__module__}.{type(obj).__qualname__}: nnsign saves "
                "dicts of NumPy arrays, Keras and PyTorch models, state dicts and model files, "
                "never pickles")


def _save_torch_state(state: Mapping[str, Any], out: str, options: Dict[str, Any]) -> Dict[str, Any]:
    import torch  # only here: PyTorch is optional

    tensors = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise _fail(InputError, 1, "input", f"state dict entry {k!r} is a "
                        f"{type(v).__name__}, not a tensor; nnsign stores tensors only")
        tensors[k] = v.detach().cpu().contiguous()
    with tempfile.TemporaryDirectory(prefix="nnsign-") as tmp:
        # Read back by nnsign's PyTorch importer, as `nnsign pack` would read the file.
        f = os.path.join(tmp, "state_dict.pt")
        torch.save(tensors, f)
        return json.loads(_native.pack_files(out, [f], options, False))


def _save_torch_module(module: Any, example_inputs: Any, out: str,
                       options: Dict[str, Any]) -> Dict[str, Any]:
    import torch  # only here: PyTorch is optional

    try:
        import onnx  # noqa: F401  (torch.onnx.export writes through it)
    except ImportError:
        raise _fail(UsageError, 2, "usage",
                    "saving a PyTorch module with example_inputs= exports it to ONNX, which "
                    "needs the onnx package", hint="pip install onnx, or save "
                    "module.state_dict() for the weights alone") from None
    args = example_inputs if isinstance(example_inputs, tuple) else (example_inputs,)
    with tempfile.TemporaryDirectory(prefix="nnsign-") as tmp:
        f = os.path.join(tmp, "model.onnx")
        names = [f"input{i}" if len(args) > 1 else "input" for i in range(len(args))]
        was_training = module.training
        module.eval()
        try:
            # The TorchScript exporter: it needs nothing beyond torch (the dynamo exporter
            # needs onnxscript) and writes what nnsign's importer is tested on. Its
            # deprecation notice is torch's business, not the caller's.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(module, args, f, input_names=names, output_names=["output"],
                                  dynamic_axes={n: {0: "batch"} for n in names + ["output"]},
                                  dynamo=False)
        finally:
            module.train(was_training)
        try:
            return json.loads(_native.pack_files(out, [f], options, False))
        except SchemaError as e:
            warnings.warn(f"nnsign.save: the module's ONNX graph is not one nnsign runs ({e}); "
                          "saving its weights without an architecture", stacklevel=3)
            return json.loads(_native.pack_files(out, [f], options, True))


def _save_keras(model: Any, out: str, options: Dict[str, Any], weights_only: bool) -> Dict[str, Any]:
    if not weights_only:
        with tempfile.TemporaryDirectory(prefix="nnsign-") as tmp:
            # Keras writes its own file; nnsign's importer reads the config as data.
            f = os.path.join(tmp, "model.keras")
            model.save(f)
            try:
                return json.loads(_native.pack_files(out, [f], options, False))
            except (InputError, SchemaError) as e:
                warnings.warn(f"nnsign.save: nnsign's runtime does not run this Keras model "
                              f"({e}); saving its weights without an architecture",
                              stacklevel=3)
    weights = {}
    for v in model.weights:
        key = getattr(v, "path", None) or v.name
        if key in weights:
            raise _fail(InputError, 1, "input", f"two Keras variables are named {key!r}")
        weights[key] = np.asarray(v.numpy())
    return json.loads(_native.pack_arrays(out, _arrays(weights), options))
