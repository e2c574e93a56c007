"""Hostile files and objects handed to nnsign.save are refused, and nothing in them runs.

tests/fixtures/hostile/ holds real attacks (scripts/make_hostile_fixtures.py): every code
payload would create the file ``hostile_canary_was_created`` in the working directory of
whoever loads it. Each test runs in an empty temporary working directory and checks that the
canary never appears there.
"""

import json
import subprocess
import sys

import pytest

import nnsign
from conftest import HOSTILE

CASES = json.loads((HOSTILE / "cases.json").read_text())
CANARY = CASES["canary"]
CODE_CASES = [c for c in CASES["cases"] if c["code_payload"]]


def test_the_canary_is_live(tmp_path):
    # The control: Python's own pickle does run the payload, so the canary's absence below
    # means something. (It only creates the canary file, here in tmp_path.)
    code = f"import pickle; pickle.load(open({str(HOSTILE / 'raw_pickle.pkl')!r}, 'rb'))"
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, timeout=60)
    assert (tmp_path / CANARY).exists()


def test_code_cases_are_listed():
    assert CANARY == "hostile_canary_was_created"
    assert len(CODE_CASES) >= 30
    assert {"raw_pickle.pkl", "opcode_reduce_posix_system.pt", "keras_lambda.keras",
            "object_array.npy"} <= {c["file"] for c in CODE_CASES}


@pytest.mark.parametrize("case", CODE_CASES, ids=[c["file"] for c in CODE_CASES])
def test_hostile_file_is_refused_and_runs_nothing(tmp_path, monkeypatch, signer, cli, case):
    key, _ = signer
    monkeypatch.chdir(tmp_path)
    src = HOSTILE / case["file"]
    out = tmp_path / "out.nns"
    with pytest.raises(nnsign.InputError) as ei:
        nnsign.save(src, out, sign=key)
    e = ei.value
    assert e.exit_code == 1 and e.kind == "input"
    assert case["expect_message"] in str(e)
    assert str(src) in str(e)
    assert not out.exists()
    assert not (tmp_path / CANARY).exists()
    # The CLI refuses the same file with the same exit code and line.
    r = cli("pack", src, "--sign", key, "-o", tmp_path / "cli.nns", cwd=tmp_path)
    assert r.returncode == e.exit_code == case["expect_exit"], r.stderr
    assert str(e) in r.stderr
    assert not (tmp_path / "cli.nns").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("name,fmt,named", [
    ("raw_pickle.pkl", "pickle", "posix.system"),
    ("model.npy", "pickle", "posix.system"),
    ("opcode_reduce_posix_system.pt", "pytorch", "posix.system"),
    ("opcode_stack_global_exec.pt", "pytorch", "builtins.exec"),
    ("object_array.npy", "npy", "posix.system"),
    ("keras_lambda.keras", "keras", "Lambda"),
])
def test_scan_reports_hostile_files_dangerous(tmp_path, monkeypatch, cli, name, fmt, named):
    monkeypatch.chdir(tmp_path)
    report = nnsign.scan(HOSTILE / name)
    assert report["dangerous"] is True
    assert report["format"] == fmt
    assert report["file"] == str(HOSTILE / name)
    dangers = [f["what"] for f in report["findings"] if f["danger"]]
    assert any(named in what for what in dangers), dangers
    with pytest.raises(nnsign.UnsafeFileError) as ei:
        nnsign.scan(HOSTILE / name, check=True)
    e = ei.value
    assert (e.exit_code, e.kind, e.file) == (8, "danger", str(HOSTILE / name))
    assert str(e).startswith(f"{HOSTILE / name}: would execute or reference code when loaded "
                             f"by its framework: {dangers[0]}")
    assert not (tmp_path / CANARY).exists()
    # `nnsign scan` says the same, and exits 8 for it.
    r = cli("scan", HOSTILE / name, "--json", cwd=tmp_path)
    assert r.returncode == 8
    assert json.loads(r.stdout)["files"] == [report]


def test_scan_of_a_plain_checkpoint_is_not_dangerous():
    report = nnsign.scan(HOSTILE.parent / "torch_real" / "test.pt")
    assert report["format"] == "pytorch"
    assert report["dangerous"] is False
    assert all(not f["danger"] for f in report["findings"])
    assert nnsign.scan(HOSTILE.parent / "torch_real" / "test.pt", check=True) == report


class Recorder:
    """An object whose pickling hooks record that they were called."""

    calls = []

    def __reduce_ex__(self, protocol):
        Recorder.calls.append("__reduce_ex__")
        return (print, ("pickled!",))

    def __reduce__(self):
        Recorder.calls.append("__reduce__")
        return (print, ("pickled!",))

    def __getstate__(self):
        Recorder.calls.append("__getstate__")
        return {}


@pytest.mark.parametrize("obj,shown", [
    (object(), "builtins.object"),
    (Recorder(), "Recorder"),
    ([1, 2, 3], "builtins.list"),
    (lambda x: x, "function"),
], ids=["object", "custom", "list", "lambda"])
def test_arbitrary_objects_are_refused_never_pickled(tmp_path, signer, obj, shown):
    key, _ = signer
    Recorder.calls.clear()
    out = tmp_path / "obj.nns"
    with pytest.raises(nnsign.InputError) as ei:
        nnsign.save(obj, out, sign=key)
    e = ei.value
    assert e.exit_code == 1 and e.kind == "input" and e.file is None
    assert f"cannot save a {type(obj).__module__}." in str(e) and shown in str(e)
    assert "never pickles" in str(e)
    assert Recorder.calls == []
    assert not out.exists()


def test_a_dict_holding_an_object_is_refused_never_pickled(tmp_path, signer):
    key, _ = signer
    Recorder.calls.clear()
    with pytest.raises(nnsign.InputError) as ei:
        nnsign.save({"w": Recorder()}, tmp_path / "obj.nns", sign=key)
    assert "array 'w' has dtype object" in str(ei.value)
    assert Recorder.calls == []
    assert not (tmp_path / "obj.nns").exists()
