#!/usr/bin/env python3
"""Runs ONNX's backend node test suite through nnsign and checks the results against a
committed expectations file (issue 13).

Where the cases come from: the generators in the installed `onnx` package
(`onnx.backend.test.case.node.collect_testcases()`). They are what writes the published
`onnx/backend/test/data/node/<case>/` folders (`backend-test-tools generate-data`), so a case
here is the same model, inputs and expected outputs as the folder of that name; the wheel
ships the generators but not the folders. Each case's tolerances are its own `rtol` and `atol`
(the suite's default is rtol 1e-3, atol 1e-7), compared as onnx's backend runner does: every
value within `atol + rtol * |expected|`, NaN where NaN is expected, the same shape and dtype.

Which cases run: those whose op is claimed, i.e. listed in the `# claimed:` header lines of the
expectations file (the one list of the ONNX ops nnsign says it implements; tests/conformance.rs
ties it to the Rust op list). A case's op is the op of its node; an `*_expanded` case (the op's
function body, several nodes) belongs to the op it expands and runs only when every op of its
body is claimed too. Cases of other ops are skipped and counted.

How a case runs: it goes through what `nnsign verify-load` does, with the same binary: one
signing key for the whole run (`nnsign keygen`), then per case `nnsign pack model.onnx --sign`
(the ONNX importer), `nnsign verify-load model.nns --trust --input inputs.npz --output
outputs.npz` (signature, trust, digests, architecture validation, the CPU runtime), and the
outputs are compared with the expected ones. A failure's reason is the step and the first line
of nnsign's error (or the panic message), or which output differs and by how much.

Which inputs are baked in: nnsign takes the values that fix a shape, an axis, a count or a mode
as constants (its importer folds Reshape's shape, Slice's bounds and Squeeze's and Unsqueeze's
axes into attributes), where ONNX makes them graph inputs. So a graph input becomes an
initializer holding the case's value when some node reads it at a parameter position listed in
PARAMS below (Reshape's shape, Slice's starts/ends/axes/steps, Squeeze's and Unsqueeze's axes,
Dropout's ratio and training_mode, Clip's min and max, Pad's pads and constant_value, Resize's
roi, scales and sizes, the Reduce ops' axes, ...). Every other input stays a graph input and is
fed at run time, whatever its dtype: data (Gather's indices included) and weights (Conv's W,
Gemm's B, the normalizations' scales) are computed on, not packed, and an input of a dtype
nnsign does not take fails with nnsign's own refusal. A new op with such parameter inputs needs
its entry in PARAMS; a reason saying a value "is computed at run time; nnsign needs it constant"
points at a missing entry.

Expectations file: `case<TAB>pass`, or `case<TAB>fail<TAB>reason`, one line per case run, under
a `# op: OP` line per op (sections sorted by op, cases sorted within them); other `#` lines are
comments, except `# claimed: OP OP ...` (the claimed ops) and `# onnx: VERSION` (the onnx that
made the file). Check mode (the default) exits 1 when a case listed `pass` fails, a listed
`fail` now passes (so the file stays true), a run case is not listed or listed under another
op, a listed case no longer runs, or the file is not exactly as --update would write it; and,
with --doc, when the per-op table in that Markdown file does not match the expectations file.
A failing case's reason may change without failing the check (a note counts such cases). To
claim an op, add it to a `# claimed:` line and run with --update.

    python3 scripts/onnx_conformance.py --nnsign target/debug/nnsign \\
        --expect tests/conformance/expectations.tsv [--doc docs/SCHEMA.md] [--update]
        [--op OP ...] [-j N] [--markdown]

Exit codes: 0 the run matches the expectations (or they were updated); 1 it does not; 2 usage
or setup error (bad arguments, unreadable expectations file, nnsign cannot make a key), or a
case the runner itself cannot prepare.
Needs numpy and onnx; runs no ONNX runtime.
"""
import argparse
import concurrent.futures
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np
import onnx
from onnx import numpy_helper

# Inputs, by position, that fix a shape, an axis, a count or a mode rather than carry data:
# baked into initializers (see the module docstring). Positions follow the ONNX op's inputs.
PARAMS = {
    "CenterCropPad": {1},
    "Clip": {1, 2},
    "Col2Im": {1, 2},
    "ConstantOfShape": {0},
    "CumSum": {1},
    "Dropout": {1, 2},
    "Expand": {1},
    "OneHot": {1, 2},
    "Pad": {1, 2, 3},
    "Range": {0, 1, 2},
    "ReduceL1": {1},
    "ReduceL2": {1},
    "ReduceLogSum": {1},
    "ReduceLogSumExp": {1},
    "ReduceMax": {1},
    "ReduceMean": {1},
    "ReduceMin": {1},
    "ReduceProd": {1},
    "ReduceSum": {1},
    "ReduceSumSquare": {1},
    "Reshape": {1},
    "Resize": {1, 2, 3},
    "Slice": {1, 2, 3, 4},
    "Split": {1},
    "Squeeze": {1},
    "Tile": {1},
    "TopK": {1},
    "Trilu": {1},
    "Unsqueeze": {1},
    "Upsample": {1},
}

EXPANDED = re.compile(r"_expanded(_ver\d+)?$")
DOC_BEGIN = "<!-- onnx-conformance:begin"
DOC_END = "<!-- onnx-conformance:end -->"
STEP_TIMEOUT = 300  # seconds for one nnsign command; each takes well under one here


class Fatal(Exception):
    """A usage or setup error, or a case the runner cannot prepare: exit code 2."""


def op_name(node):
    """The op of a node, qualified by its domain outside the default one."""
    if node.domain in ("", "ai.onnx"):
        return node.op_type
    return f"{node.domain}::{node.op_type}"


def collect():
    """The suite's node cases by name, with the op each belongs to."""
    import onnx.backend.test.case.node as node_cases

    # The generators compute expected outputs with overflowing casts and logs of zero on
    # purpose; their numpy warnings say nothing about nnsign.
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        cases = [c for c in node_cases.collect_testcases() if c.kind == "node"]
    by_name = {c.name: c for c in cases}
    ops = {}
    for c in cases:
        base = by_name.get(EXPANDED.sub("", c.name), c)
        ops[c.name] = op_name(base.model.graph.node[0])
    return by_name, ops


class Expectations:
    """The expectations file: the claimed ops, the onnx version it was made with, and each
    listed case's op (its section), status and reason."""

    def __init__(self, claimed, onnx_version, entries, text=None):
        self.claimed = claimed
        self.onnx_version = onnx_version
        self.entries = entries  # case -> (op, status, reason)
        self.text = text  # as read

    @classmethod
    def read(cls, path):
        claimed, version, entries, op = [], None, {}, None
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as e:
            raise Fatal(f"{path}: {e.strerror}") from e
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{path}:{number}"
            if m := re.match(r"#\s*claimed:(.*)$", line):
                claimed += m.group(1).split()
            elif m := re.match(r"#\s*onnx:\s*(\S+)", line):
                version = m.group(1)
            elif m := re.match(r"#\s*op:\s*(\S+)", line):
                op = m.group(1)
            elif line.strip() and not line.startswith("#"):
                fields = line.split("\t")
                if not (
                    (len(fields) == 2 and fields[1] == "pass")
                    or (len(fields) == 3 and fields[1] == "fail" and fields[2].strip())
                ):
                    raise Fatal(f"{where}: expected 'case<TAB>pass' or 'case<TAB>fail<TAB>reason', got {line!r}")
                if op is None:
                    raise Fatal(f"{where}: {fields[0]} comes before any '# op: OP' line")
                if fields[0] in entries:
                    raise Fatal(f"{where}: {fields[0]} is listed twice")
                entries[fields[0]] = (op, fields[1], fields[2] if len(fields) == 3 else "")
        if not claimed:
            raise Fatal(f"{path}: no '# claimed: OP OP ...' line names the ops nnsign claims")
        if len(set(claimed)) != len(claimed):
            raise Fatal(f"{path}: an op is claimed twice")
        return cls(claimed, version, entries, text)

    def render(self):
        """The file's text: sections by op, cases sorted within them."""
        lines = [
            "# ONNX backend node-test conformance of nnsign's runtime: every case of a claimed op,",
            "# `case<TAB>pass` or `case<TAB>fail<TAB>reason`, under its op's `# op:` line. The cases",
            "# come from the installed onnx package's generators (onnx.backend.test.case.node), which",
            "# write the published onnx/backend/test/data/node folders. CI (.ci/run) fails when a run",
            "# differs from this file. To claim an op, add it to a `# claimed:` line; then regenerate",
            "# this file and the table in docs/SCHEMA.md with:",
            "#   python3 scripts/onnx_conformance.py --nnsign target/debug/nnsign \\",
            "#       --expect tests/conformance/expectations.tsv --doc docs/SCHEMA.md --update",
            f"# onnx: {self.onnx_version}",
            "# The claimed ONNX ops (tests/conformance.rs checks them against nnsign's newest op-set):",
        ]
        line = "# claimed:"
        for op in sorted(self.claimed):
            if len(line) + 1 + len(op) > 100:
                lines.append(line)
                line = "# claimed:"
            line += " " + op
        lines.append(line)
        by_op = {}
        for name, (op, status, reason) in self.entries.items():
            by_op.setdefault(op, []).append((name, status, reason))
        for op, cases in sorted(by_op.items()):
            passed = sum(1 for _, status, _ in cases if status == "pass")
            lines += ["", f"# op: {op} ({passed} of {len(cases)} pass)"]
            lines += [
                f"{name}\tpass" if status == "pass" else f"{name}\tfail\t{reason}"
                for name, status, reason in sorted(cases)
            ]
        return "\n".join(lines) + "\n"

    def write(self, path):
        tmp = path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(self.render())
        os.replace(tmp, path)

    def table(self):
        """The per-op Markdown table for docs/SCHEMA.md."""
        rows = ["| ONNX op | cases passed | cases run |", "|---|---:|---:|"]
        total_pass = total = 0
        for op in sorted(self.claimed):
            mine = [status for o, status, _ in self.entries.values() if o == op]
            passed = mine.count("pass")
            rows.append(f"| `{op}` | {passed} | {len(mine)} |")
            total_pass, total = total_pass + passed, total + len(mine)
        rows.append(f"| all | {total_pass} | {total} |")
        return "\n".join(rows) + "\n"


def one_line(text):
    """`text` with its line breaks and runs of spaces made single spaces."""
    return " ".join(text.split())


def failure(step, proc):
    """The reason a failed nnsign command gives: its error line, or its panic message."""
    lines = proc.stderr.splitlines()
    for i, line in enumerate(lines):
        if re.match(r"thread '.*' panicked at", line):
            message = lines[i + 1] if i + 1 < len(lines) else line
            return f"{step}: PANIC: {one_line(message)}"
    for line in lines:
        if line.startswith("nnsign: error: "):
            return f"{step} (exit {proc.returncode}): {one_line(line[len('nnsign: error: '):])}"
    first = next((line for line in lines if line.strip()), "no message")
    return f"{step} (exit {proc.returncode}): {one_line(first)}"


def baked(model):
    """The names of graph inputs some node reads at a parameter position."""
    names = set()
    for node in model.graph.node:
        for k in PARAMS.get(op_name(node), ()):
            if k < len(node.input) and node.input[k]:
                names.add(node.input[k])
    return names


def tensor(value):
    """A data set's value as an array (the generators give some as NumPy scalars), or None for
    sequences, maps and optionals."""
    return np.asarray(value) if isinstance(value, (np.ndarray, np.generic)) else None


def bake(model, inputs):
    """The model with its parameter inputs made initializers holding `inputs`' values, and the
    inputs left to feed, by name."""
    keep = baked(model)
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph_inputs = list(model.graph.input)
    feed = {}
    del model.graph.input[:]
    for info, value in zip(graph_inputs, inputs):
        if info.name in keep and tensor(value) is not None:
            model.graph.initializer.append(numpy_helper.from_array(tensor(value), info.name))
        else:
            model.graph.input.append(info)
            feed[info.name] = value
    return model, feed


def compare(name, got, want, rtol, atol):
    """Why `got` is not `want` within the tolerances, or None."""
    if got.shape != want.shape:
        return f"output {name!r}: shape {list(got.shape)}, expected {list(want.shape)}"
    if got.dtype != want.dtype:
        return f"output {name!r}: dtype {got.dtype}, expected {want.dtype}"
    if got.dtype.kind in "biufc":
        # What onnx's runner asks of every number, integers included: assert_allclose.
        bad = ~np.isclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    else:
        bad = got != want
    if not bad.any():
        return None
    with np.errstate(all="ignore"):
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    at = np.unravel_index(np.argmax(np.where(bad, diff, -1.0)), got.shape)
    return (
        f"output {name!r}: {int(bad.sum())} of {got.size} values off, max abs diff "
        f"{diff[at]:.3g} at {list(map(int, at))} (got {str(got[at])}, expected {str(want[at])}); "
        f"tolerance {atol:g} + {rtol:g} * |expected|"
    )


def run_case(case, nnsign, key, work):
    """(status, reason) of one case: pack and run each of its data sets (the suite has one per
    case), since the baked inputs are a data set's values."""
    folder = os.path.join(work, case.name)
    os.mkdir(folder)

    def step(*args):
        return subprocess.run(
            [nnsign, *args, "--quiet"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=STEP_TIMEOUT,
        )

    try:
        for number, (inputs, outputs) in enumerate(case.data_sets):
            which = f" (data set {number})" if len(case.data_sets) > 1 else ""
            model, feed = bake(case.model, inputs)
            onnx.save(model, os.path.join(folder, "model.onnx"))
            proc = step("pack", "model.onnx", "--sign", key + ".key", "-o", "model.nns")
            if proc.returncode != 0:
                return "fail", failure("pack", proc) + which
            for name, value in feed.items():
                if tensor(value) is None:
                    return "fail", f"input {name!r} is a {type(value).__name__}, not a tensor{which}"
            np.savez(os.path.join(folder, "inputs.npz"), **{n: tensor(v) for n, v in feed.items()})
            proc = step(
                "verify-load", "model.nns", "--trust", key + ".pub",
                "--input", "inputs.npz", "--output", "outputs.npz",
            )
            if proc.returncode != 0:
                return "fail", failure("verify-load", proc) + which
            with np.load(os.path.join(folder, "outputs.npz")) as got:
                for info, want in zip(case.model.graph.output, outputs):
                    if tensor(want) is None:
                        return "fail", f"output {info.name!r} is a {type(want).__name__}, not a tensor{which}"
                    if info.name not in got.files:
                        return "fail", f"output {info.name!r} is missing from nnsign's outputs{which}"
                    why = compare(info.name, got[info.name], tensor(want), case.rtol, case.atol)
                    if why:
                        return "fail", why + which
            os.remove(os.path.join(folder, "outputs.npz"))
        return "pass", ""
    except subprocess.TimeoutExpired as e:
        return "fail", f"{e.cmd[1]}: no answer within {STEP_TIMEOUT} s"
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def doc_block(path):
    """The text of `path`, and the span of the generated table between its markers."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise Fatal(f"{path}: {e.strerror}") from e
    begin = text.find(DOC_BEGIN)
    end = text.find(DOC_END)
    if begin < 0 or end < begin:
        raise Fatal(f"{path}: no '{DOC_BEGIN} ... -->' and '{DOC_END}' markers around the table")
    start = text.index("\n", begin) + 1
    return text, start, end


def main():
    ap = argparse.ArgumentParser(
        description="Check nnsign against ONNX's backend node test suite (see the module docstring).",
    )
    ap.add_argument("--nnsign", required=True, help="the nnsign binary")
    ap.add_argument("--expect", required=True, help="the expectations file (tests/conformance/expectations.tsv)")
    ap.add_argument("--update", action="store_true", help="rewrite the expectations (and --doc's table) from this run")
    ap.add_argument("--op", action="append", default=[], metavar="OP", help="run only the cases of this claimed op (repeatable)")
    ap.add_argument("-j", type=int, default=2, metavar="N", help="nnsign commands at once (default 2)")
    ap.add_argument("--markdown", action="store_true", help="print the per-op table of this run on stdout (the report goes to stderr)")
    ap.add_argument("--doc", metavar="FILE.md", help="check (with --update: rewrite) the table between this file's markers")
    args = ap.parse_args()
    report = sys.stderr if args.markdown else sys.stdout

    def say(*parts):
        print(*parts, file=report, flush=True)

    started = time.monotonic()
    nnsign = os.path.abspath(args.nnsign)
    if not (os.path.isfile(nnsign) and os.access(nnsign, os.X_OK)):
        raise Fatal(f"--nnsign {args.nnsign}: not an executable file (build it: cargo build --bin nnsign)")
    if args.j < 1:
        raise Fatal("-j must be at least 1")
    expect = Expectations.read(args.expect)
    claimed = set(expect.claimed)
    unknown = [op for op in args.op if op not in claimed]
    if unknown:
        raise Fatal(f"--op {unknown[0]}: not claimed in {args.expect} (add it to a '# claimed:' line first)")
    if args.doc:
        doc_block(args.doc)  # its markers are there, before the run rather than after
    cases, ops = collect()
    selected = set(args.op) or claimed
    for op in sorted(selected):
        if op not in ops.values():
            raise Fatal(f"claimed op {op!r} has no case in onnx {onnx.__version__}'s node suite; is it an ONNX op's name?")

    runs, skipped_unclaimed, skipped_body, other = [], 0, 0, 0
    for name, case in sorted(cases.items()):
        if ops[name] not in claimed:
            skipped_unclaimed += 1
        elif ops[name] not in selected:
            other += 1
        elif all(op_name(n) in claimed for n in case.model.graph.node):
            runs.append(case)
        else:
            skipped_body += 1

    results = {}
    with tempfile.TemporaryDirectory(prefix="nnsign-conformance-") as work:
        key = os.path.join(work, "key")
        proc = subprocess.run([nnsign, "keygen", "-o", key, "--quiet"], capture_output=True, text=True)
        if proc.returncode != 0:
            raise Fatal(failure("keygen", proc))
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=args.j)
        try:
            futures = {pool.submit(run_case, c, nnsign, key, work): c.name for c in runs}
            for done in concurrent.futures.as_completed(futures):
                name = futures[done]
                try:
                    status, reason = done.result()
                except (OSError, ValueError, TypeError) as e:
                    raise Fatal(f"{name}: the runner cannot prepare this case: {e}") from e
                results[name] = (ops[name], status, reason)
        finally:
            # On an error or ^C, start no further case; those running end within seconds.
            pool.shutdown(cancel_futures=True)

    say(f"{'op':<20} passed/run")
    for op in sorted(selected):
        mine = [status for o, status, _ in results.values() if o == op]
        say(f"{op:<20} {mine.count('pass'):>4}/{len(mine)}")
    passed = sum(1 for _, status, _ in results.values() if status == "pass")
    say(
        f"{len(results)} cases run: {passed} passed, {len(results) - passed} failed; not run: "
        f"{skipped_unclaimed} cases of unclaimed ops, {skipped_body} expanded cases of claimed ops "
        f"whose bodies use unclaimed ops{f', {other} cases of claimed ops left out by --op' if other else ''}; "
        f"{time.monotonic() - started:.0f} s with -j {args.j}"
    )
    if args.markdown:
        print(Expectations(sorted(selected), onnx.__version__, results).table(), end="")

    # The listed cases this run covers, against what it found.
    scope = {n: e for n, e in expect.entries.items() if not args.op or e[0] in selected}
    if args.update:
        entries = {n: e for n, e in expect.entries.items() if n not in scope}
        entries.update(results)
        updated = Expectations(expect.claimed, onnx.__version__, entries)
        updated.write(args.expect)
        say(f"wrote {args.expect}: {len(entries)} cases")
        if args.doc:
            text, start, end = doc_block(args.doc)
            with open(args.doc, "w", encoding="utf-8") as f:
                f.write(text[:start] + updated.table() + text[end:])
            say(f"wrote the table in {args.doc}")
        return 0

    problems = []
    for name, (op, status, reason) in sorted(results.items()):
        listed = scope.get(name) or expect.entries.get(name)
        if listed is None:
            problems.append(f"not listed: {name} ({status}{': ' + reason if reason else ''}); run --update")
        elif listed[0] != op:
            problems.append(f"misfiled: {name} is listed under op {listed[0]}, and is a case of {op}; run --update")
        elif listed[1] == "pass" and status == "fail":
            problems.append(f"REGRESSION: {name} is listed pass and fails: {reason}")
        elif listed[1] == "fail" and status == "pass":
            problems.append(f"now passes: {name} (listed fail: {listed[2]}); run --update")
    for name in sorted(set(scope) - set(results)):
        if name not in cases:
            why = f"is not in onnx {onnx.__version__}'s suite"
        elif ops[name] not in claimed:
            why = f"is a case of {ops[name]}, which is not claimed"
        else:
            why = "is an expanded case whose body uses ops that are not claimed"
        problems.append(f"stale: {name} is listed but {why}; run --update")
    changed = sum(1 for n, (_, s, r) in results.items() if n in scope and s == scope[n][1] == "fail" and r != scope[n][2])
    if changed:
        say(f"note: {changed} failing cases now fail for another reason than the listed one (--update records it)")
    if not args.op and expect.text != expect.render():
        problems.append(f"{args.expect} is not as --update writes it (sorted cases, counts on the '# op:' lines); run --update")
    if args.doc:
        text, start, end = doc_block(args.doc)
        if text[start:end] != expect.table():
            problems.append(f"{args.doc}: its conformance table does not match {args.expect}; run with --update --doc {args.doc}")
    if problems and expect.onnx_version != onnx.__version__:
        say(f"note: {args.expect} was made with onnx {expect.onnx_version}, this is onnx {onnx.__version__}, whose suite may differ")
    for p in problems:
        say(p)
    if problems:
        say(f"FAILED: {len(problems)} difference{'s' if len(problems) > 1 else ''} from {args.expect}")
        return 1
    say(f"ok: the run matches {args.expect}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Fatal as e:
        print(f"onnx_conformance: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
