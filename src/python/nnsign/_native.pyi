"""Type hints of nnsign's Rust bindings (src/python/lib.rs). Call the API of ``nnsign``."""

from os import PathLike
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import numpy.typing as npt

__version__: str

_Path = Union[str, PathLike[str]]
_Key = Union[_Path, bytes]
_Dim = Union[int, str]

class Error(Exception):
    """Every nnsign failure. ``str(e)`` is the line the CLI prints."""

    exit_code: int
    kind: str
    file: Optional[str]
    hint: Optional[str]

class InputError(Error): ...
class UsageError(Error): ...
class FileError(Error): ...
class SignatureError(Error): ...
class IntegrityError(Error): ...
class SchemaError(Error): ...
class DecryptionError(Error): ...
class UnsafeFileError(Error): ...
class FreshnessError(Error): ...

def verify(
    path: _Path,
    trust: Optional[Sequence[_Key]] = None,
    policy: Optional[_Path] = None,
    state: Optional[_Path] = None,
    allow_unsigned: bool = False,
) -> str: ...
def inspect(path: _Path) -> str: ...
def scan(path: _Path) -> str: ...
def keygen(
    prefix: _Path, encryption: bool = False, passphrase: Optional[str] = None
) -> Tuple[str, str]: ...
def pack_arrays(
    out: _Path,
    arrays: List[Tuple[str, str, List[int], npt.NDArray[np.uint8]]],
    options: Dict[str, Any],
) -> str: ...
def pack_files(
    out: _Path, paths: List[_Path], options: Dict[str, Any], weights_only: bool = False
) -> str: ...
def load(
    path: _Path,
    trust: Optional[Sequence[_Key]] = None,
    policy: Optional[_Path] = None,
    state: Optional[_Path] = None,
    allow_unsigned: bool = False,
    decrypt_with: Optional[_Key] = None,
    key_passphrase: Optional[str] = None,
    passphrase: Optional[str] = None,
    max_memory: Optional[int] = None,
) -> Loaded: ...

class Loaded:
    """A verified artifact: its tensors, and the model built from them on first run."""

    @property
    def info(self) -> str: ...
    @property
    def table(self) -> List[Tuple[str, str, List[int]]]: ...
    @property
    def runnable(self) -> bool: ...
    def raw(self, index: int) -> npt.NDArray[np.uint8]: ...
    def signature(
        self,
    ) -> Tuple[List[Tuple[str, str, List[_Dim]]], List[Tuple[str, str, List[_Dim]]]]: ...
    def run(self, inputs: List[Tuple[str, np.ndarray]]) -> List[Tuple[str, np.ndarray]]: ...
