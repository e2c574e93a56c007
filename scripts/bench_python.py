#!/usr/bin/env python3
"""Speed and memory of the Python package: nnsign.load and nnsign.save of a generated model,
against baselines measured in the same run.

    python3 scripts/bench_python.py [--size-mib 1024] [--arrays 16] [--nnsign PATH] [--dir DIR]
    ROUNDS=3 REPS=5 scripts/bench.sh python      (builds and installs everything first)

Needs numpy, safetensors and the nnsign package in this interpreter, and the nnsign CLI
(--nnsign, else $NNSIGN, else $CARGO_TARGET_DIR/release/nnsign, else target/release/nnsign).

The model is a dict of ARRAYS float32 arrays of shape (rows, 4096), SIZE_MIB in all, made from
fixed seeds in a temporary folder (--dir, else $TMPDIR or /tmp, the disk every side reads and
writes) and removed at the end. It is written once as an nnsign artifact (signed), a
safetensors file and a pickle (protocol 5) of the dict.

Sides (each measurement is a fresh subprocess; its peak RSS comes from wait4):

  verify_cli        `nnsign verify ART --trust PUB --quiet`: the process's wall time, timed by
                    this script around the child (process start and exit included).
  verify_load_cli   `nnsign verify-load` of the same artifact: the CLI's load, for reference.
  load_nnsign       nnsign.load(ART, trust=PUB), then every tensor taken from .tensors with
                    its shape and dtype checked: the load a user does before using the arrays.
  load_safetensors  safetensors.numpy.load_file(ST) (verifies nothing), shapes checked.
  load_pickle       pickle.load of the pickled dict (verifies nothing), shapes checked.
  save_nnsign       nnsign.save(arrays, OUT, sign=KEY): copies each array once, hashes, signs,
                    writes, fsyncs the file, renames it into place and fsyncs the folder.
  save_safetensors  safetensors.numpy.save_file(arrays, OUT): writes, no fsync.
  save_st_fsync     the same followed by os.fsync of the file: the fair baseline for save.
  hash_floor        hashlib.sha256 (OpenSSL, SHA-NI here) of every 4 MiB chunk of the arrays'
                    bytes, on as many threads as there are cores, and nothing else: the digests
                    FORMAT.md asks of any writer.
  sign_floor        the same hashing, each chunk then written with os.pwrite to its place in
                    a new file, no fsync: the least work any writer of a signed artifact does
                    (hash every byte, write every byte), in the same parallel shape as
                    nnsign's, with nothing else (no header, no signature, no rename). If it
                    takes over 1.3x save_safetensors, the no-fsync goal is out of reach of any
                    writer of the format on this machine.

Python sides are timed inside the child with perf_counter around exactly the calls above, so
interpreter start, imports and (for save) making the arrays are not counted. Each loader copies
every byte into the process's memory before it returns (none maps the file lazily: each side's
peak RSS is at least the model), so the clock includes getting the bytes there and no NumPy
computation. Dropping the
loaded arrays (nnsign zeroizes its buffers on drop) is timed apart, after the load's clock
stopped, and reported as drop_s; it is counted in no ratio. After the clock stops, every load
side checks fingerprints of each array's first, middle and last rows against the generator's,
so every byte compared is the real one; nnsign's arrays must also be read-only views that own
no data (no copy was made).

Memory: primed for every side (--memory primed, the default). On this kind of machine (a VM
whose balloon device has free page reporting) the kernel hands free 2 MiB blocks back to the
host a few seconds after they are freed, and the first touch of such a block costs host page
faults: loading 1 GiB into fresh huge pages (as nnsign does, MADV_HUGEPAGE) then takes 2-3 s
of system time instead of 0.1 s, while 4 KiB pages (pickle, safetensors) mostly come from
smaller free blocks that were never handed back. Whether a side pays this depended on what ran
before it: nnsign.load ran in 0.35 s right after a process that freed huge pages and in 1-3 s
from memory at rest. So right before each measurement this script touches and frees twice the
model's size plus 256 MiB of huge pages (2.2 s at most here, outside every clock): each child
then finds host-backed memory, as on a host without ballooning. --memory asis skips that.

Page cache: warm for every side. Right before each load measurement the file that side reads
is read whole by this script, so it is in the page cache; every save writes a new file into the
same folder, after which the file is removed and os.sync() run outside the clock, so that no
side's writeback overlaps the next measurement.

Rounds: ROUNDS (default 3) rounds; in each, REPS (default 5) repetitions of every load side
and then of every save side, in an order rotated at each repetition so that sides alternate.
A side's figure is its best (lowest) per-round median; ratios are of those figures, taken in
this run. Peak RSS is the largest seen over all of a side's runs (with the interpreter and
NumPy, reported as python_only; a child's peak as wait4 reports it starts from its parent's,
so this script keeps its own small and primes memory in a child). The first line and the table
say how many cores were free (SHA-256 in two processes at once against one): nnsign hashes on
both cores, pickle and safetensors copy on one, so a busy second core costs nnsign more. The
script exits 0 when a goal fails, printing FAIL.
"""

import argparse
import json
import os
import pickle
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

COLS = 4096
SEED = 20261207

LOAD_SIDES = ["verify_cli", "verify_load_cli", "load_nnsign", "load_safetensors", "load_pickle"]
SAVE_SIDES = ["save_nnsign", "save_safetensors", "save_st_fsync", "hash_floor", "sign_floor"]


def shapes_of(size_mib, arrays):
    total = size_mib << 20
    if total % (arrays * COLS * 4):
        sys.exit(f"{size_mib} MiB does not split into {arrays} float32 arrays of {COLS} columns")
    rows = total // (arrays * COLS * 4)
    return {f"layer{i:02d}.weight": (rows, COLS) for i in range(arrays)}


def make_arrays(shapes):
    import numpy as np

    out = {}
    for i, (name, shape) in enumerate(shapes.items()):
        rng = np.random.default_rng(SEED + i)
        out[name] = rng.random(shape, dtype=np.float32)
    return out


def fingerprint(a):
    """Sums of the first, middle and last rows, in float64: a cheap check of real bytes."""
    import numpy as np

    rows = a.shape[0]
    return [float(a[r].sum(dtype=np.float64)) for r in (0, rows // 2, rows - 1)]


# ---------------------------------------------------------------- what runs in a child


def every_array(loaded, shapes):
    """What a user does with what a loader returned: every array taken by name, its shape and
    dtype checked (inside the timing; the bytes are checked after it)."""
    import numpy as np

    got = {}
    for name in loaded:
        a = loaded[name]
        assert a.shape == shapes[name] and a.dtype == np.float32, name
        got[name] = a
    return got


def child(side, work):
    with open(os.path.join(work, "meta.json")) as f:
        meta = json.load(f)
    shapes = {k: tuple(v) for k, v in meta["shapes"].items()}
    import numpy as np

    if side == "python_only":
        import nnsign
        import safetensors.numpy

        versions = [nnsign.__version__, np.__version__, safetensors.__version__]
        return {"seconds": 0.0, "versions": versions}
    if side.startswith("load_"):
        if side == "load_nnsign":
            import nnsign

            art, pub = os.path.join(work, "model.nns"), os.path.join(work, "ci.pub")
            t0 = time.perf_counter()
            m = nnsign.load(art, trust=pub)
            got = every_array(m.tensors, shapes)
            t1 = time.perf_counter()
            for a in got.values():
                assert not a.flags.owndata and not a.flags.writeable, "nnsign copied an array"
        elif side == "load_safetensors":
            import safetensors.numpy

            path = os.path.join(work, "model.safetensors")
            t0 = time.perf_counter()
            m = safetensors.numpy.load_file(path)
            got = every_array(m, shapes)
            t1 = time.perf_counter()
        elif side == "load_pickle":
            path = os.path.join(work, "model.pkl")
            t0 = time.perf_counter()
            with open(path, "rb") as f:
                m = pickle.load(f)
            got = every_array(m, shapes)
            t1 = time.perf_counter()
        else:
            raise SystemExit(f"unknown side {side}")
        assert sorted(got) == sorted(shapes), "not every array was loaded"
        for name, a in got.items():
            assert fingerprint(a) == meta["fingerprints"][name], f"{name}: wrong bytes"
        t2 = time.perf_counter()
        del m, got, a
        import gc

        gc.collect()
        return {"seconds": t1 - t0, "drop_s": time.perf_counter() - t2}
    if side in ("hash_floor", "sign_floor"):
        import hashlib
        from concurrent.futures import ThreadPoolExecutor

        arrays = make_arrays(shapes)
        chunk = 4 << 20
        out = os.path.join(work, "out." + side)
        t0 = time.perf_counter()
        # hashlib and os.pwrite let go of the GIL while they work on a large buffer: the
        # threads hash and write in parallel, as nnsign's workers do.
        pieces, at = [], 0
        for a in arrays.values():
            view = memoryview(a).cast("B")
            for start in range(0, a.nbytes, chunk):
                pieces.append((view[start:start + chunk], at + start))
            at += a.nbytes
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC) if side == "sign_floor" else None

        def one(piece):
            digest = hashlib.sha256(piece[0]).digest()
            if fd is not None:
                os.pwrite(fd, piece[0], piece[1])
            return digest

        with ThreadPoolExecutor(os.cpu_count()) as pool:
            digests = list(pool.map(one, pieces))
        if fd is not None:
            os.close(fd)
        t1 = time.perf_counter()
        assert len(digests) == len(pieces)
        return {"seconds": t1 - t0}
    if side.startswith("save_"):
        arrays = make_arrays(shapes)
        out = os.path.join(work, "out." + side)
        if side == "save_nnsign":
            import nnsign

            key = os.path.join(work, "ci.key")
            t0 = time.perf_counter()
            nnsign.save(arrays, out, sign=key)
            t1 = time.perf_counter()
        else:
            import safetensors.numpy

            t0 = time.perf_counter()
            safetensors.numpy.save_file(arrays, out)
            if side == "save_st_fsync":
                fd = os.open(out, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
            t1 = time.perf_counter()
        return {"seconds": t1 - t0}
    raise SystemExit(f"unknown side {side}")


def setup(work, size_mib, arrays):
    """Writes the model in every form (run in a child, so the parent stays small)."""
    import nnsign
    import safetensors.numpy

    shapes = shapes_of(size_mib, arrays)
    data = make_arrays(shapes)
    meta = {
        "shapes": {k: list(v) for k, v in shapes.items()},
        "fingerprints": {k: fingerprint(a) for k, a in data.items()},
        "model_bytes": sum(a.nbytes for a in data.values()),
    }
    nnsign.keygen(os.path.join(work, "ci"))
    nnsign.save(data, os.path.join(work, "model.nns"), sign=os.path.join(work, "ci.key"))
    safetensors.numpy.save_file(data, os.path.join(work, "model.safetensors"))
    with open(os.path.join(work, "model.pkl"), "wb") as f:
        pickle.dump(data, f, protocol=5)
    with open(os.path.join(work, "meta.json"), "w") as f:
        json.dump(meta, f)


# ---------------------------------------------------------------- the parent


def run_child(argv):
    """Runs argv; returns (wall seconds, peak RSS KiB, stdout)."""
    t0 = time.perf_counter()
    # stderr goes straight to ours; stdout is read to its end, then wait4 reaps the child and
    # gives its own resource usage (Popen.wait would reap it without).
    p = subprocess.Popen(argv, stdout=subprocess.PIPE)
    out = p.stdout.read()
    _, status, usage = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    p.returncode = os.waitstatus_to_exitcode(status)
    p.stdout.close()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed with exit code {p.returncode}")
    return wall, usage.ru_maxrss, out.decode()


def warm(path):
    buf = bytearray(8 << 20)
    with open(path, "rb", buffering=0) as f:
        while f.readinto(buf):
            pass


def hash_rate(seconds):
    """SHA-256 throughput of this process, in MB/s, over `seconds`."""
    import hashlib

    block, n = bytes(1 << 20), 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        hashlib.sha256(block).digest()
        n += len(block)
    return n / (time.perf_counter() - t0) / 1e6


def cores_free():
    """How many cores' worth of SHA-256 two processes get at once against one alone: near 2.0
    when the second core is free, near 1.0 when something else holds it."""
    me = [sys.executable, os.path.abspath(__file__), "--hash", "0.5"]
    one = float(run_child(me)[2])
    two = [subprocess.Popen(me, stdout=subprocess.PIPE) for _ in range(2)]
    both = sum(float(p.communicate()[0]) for p in two)
    return both / one


def prime(nbytes):
    """Touches and frees `nbytes` of huge pages, so that the next process finds host-backed
    memory (see Memory in the module's doc). Run in a child of its own: a child's peak RSS, as
    wait4 reports it, starts from its parent's."""
    import mmap

    m = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    if hasattr(mmap, "MADV_HUGEPAGE"):
        m.madvise(mmap.MADV_HUGEPAGE)
    for at in range(0, nbytes, 4096):
        m[at] = 1
    m.close()


def measure(side, work, cli, prime_bytes):
    if side in ("verify_cli", "verify_load_cli"):
        art, pub = os.path.join(work, "model.nns"), os.path.join(work, "ci.pub")
        warm(art)
        if prime_bytes:
            run_child([sys.executable, os.path.abspath(__file__), "--prime", str(prime_bytes)])
        cmd = [cli, "verify", art, "--trust", pub, "--quiet"]
        if side == "verify_load_cli":
            cmd = [cli, "verify-load", art, "--trust", pub, "--quiet",
                   "--max-memory", str(1 << 40)]
        wall, rss, _ = run_child(cmd)
        return {"seconds": wall, "rss_kib": rss}
    if side.startswith("load_"):
        warm(os.path.join(work, {"load_nnsign": "model.nns",
                                 "load_safetensors": "model.safetensors",
                                 "load_pickle": "model.pkl"}[side]))
    if prime_bytes:
        run_child([sys.executable, os.path.abspath(__file__), "--prime", str(prime_bytes)])
    _, rss, out = run_child([sys.executable, os.path.abspath(__file__), "--child", side, work])
    result = json.loads(out.strip().splitlines()[-1])
    result["rss_kib"] = rss
    if side in SAVE_SIDES:
        for name in os.listdir(work):
            if name.startswith("out."):
                os.remove(os.path.join(work, name))
        os.sync()
    return result


def default_cli():
    if os.environ.get("NNSIGN"):
        return os.environ["NNSIGN"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(root, "target")
    return os.path.join(target, "release", "nnsign")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--arrays", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 3)))
    ap.add_argument("--reps", type=int, default=int(os.environ.get("REPS", 5)))
    ap.add_argument("--nnsign", default=default_cli(), help="the nnsign CLI")
    ap.add_argument("--memory", choices=["primed", "asis"],
                    default=os.environ.get("MEMORY", "primed"),
                    help="prime host-backed huge pages before each measurement, or not")
    ap.add_argument("--dir", default=None, help="where to make the temporary folder")
    ap.add_argument("--child", nargs=2, metavar=("SIDE", "WORK"), help=argparse.SUPPRESS)
    ap.add_argument("--setup", nargs=1, metavar="WORK", help=argparse.SUPPRESS)
    ap.add_argument("--prime", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--hash", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.hash:
        print(hash_rate(args.hash))
        return
    if args.prime:
        prime(args.prime)
        return
    if args.child:
        print(json.dumps(child(*args.child)))
        return
    if args.setup:
        setup(args.setup[0], args.size_mib, args.arrays)
        return
    if not os.access(args.nnsign, os.X_OK):
        sys.exit(f"no nnsign CLI at {args.nnsign}: build it (cargo build --release) or give --nnsign")

    # Nothing large is imported here: a child's peak RSS, as wait4 reports it, starts from this
    # process's own.
    work = tempfile.mkdtemp(prefix="nnsign-pybench-", dir=args.dir)
    try:
        run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(args, work):
    t = time.perf_counter()
    run_child([sys.executable, os.path.abspath(__file__), "--setup", work,
               "--size-mib", str(args.size_mib), "--arrays", str(args.arrays)])
    with open(os.path.join(work, "meta.json")) as f:
        model = json.load(f)["model_bytes"]
    _, py_rss, out = run_child([sys.executable, os.path.abspath(__file__), "--child",
                                "python_only", work])
    versions = json.loads(out.strip().splitlines()[-1])["versions"]
    print(f"model: {args.arrays} float32 arrays, {model / 2**20:.0f} MiB in all, made and written "
          f"in {time.perf_counter() - t:.1f}s in {work}")
    print(f"nnsign {versions[0]} (CLI {args.nnsign}), numpy {versions[1]}, safetensors "
          f"{versions[2]}, Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.2f}, {cores_free():.2f} cores free (SHA-256 of "
          f"two processes at once against one); {args.rounds} rounds of {args.reps} "
          f"repetitions, sides alternating, warm page cache, memory {args.memory}")
    prime_bytes = 2 * model + (256 << 20) if args.memory == "primed" else 0

    medians = {s: [] for s in LOAD_SIDES + SAVE_SIDES}
    drops = {s: [] for s in LOAD_SIDES}
    rss = {s: 0 for s in LOAD_SIDES + SAVE_SIDES}
    for r in range(1, args.rounds + 1):
        for block in (LOAD_SIDES, SAVE_SIDES):
            times = {s: [] for s in block}
            for rep in range(args.reps):
                k = rep % len(block)
                for side in block[k:] + block[:k]:
                    res = measure(side, work, args.nnsign, prime_bytes)
                    times[side].append(res["seconds"])
                    rss[side] = max(rss[side], res["rss_kib"])
                    if "drop_s" in res:
                        drops[side].append(res["drop_s"])
                    extra = f"  drop {res['drop_s']:.3f}s" if "drop_s" in res else ""
                    print(f"round {r} rep {rep + 1} {side:17s} {res['seconds']:.3f}s  "
                          f"peak RSS {res['rss_kib'] / 1024:.0f} MiB{extra}", flush=True)
            for side in block:
                medians[side].append(statistics.median(times[side]))
            print(f"round {r} medians: " + ", ".join(
                f"{s} {statistics.median(times[s]):.3f}s" for s in block), flush=True)
    best = {s: min(v) for s, v in medians.items()}
    report(args, model, best, medians, rss, drops, py_rss)


def report(args, model, best, medians, rss, drops, py_rss):
    mib = lambda kib: kib / 1024  # noqa: E731
    of_model = lambda kib: kib * 1024 / model  # noqa: E731
    print()
    print(f"Best per-round median of {args.reps} runs, over {args.rounds} alternating rounds, "
          f"memory {args.memory}; {cores_free():.2f} cores free at the end; "
          f"peak RSS is the largest over all runs; model = {model / 2**20:.0f} MiB of float32; "
          f"load average now {os.getloadavg()[0]:.2f}")
    print(f"{'side':18s} {'time':>8s} {'per-round medians':>26s} {'peak RSS':>10s} {'x model':>8s}")
    for s in LOAD_SIDES + SAVE_SIDES:
        rounds = " ".join(f"{v:.3f}" for v in medians[s])
        print(f"{s:18s} {best[s]:7.3f}s {rounds:>26s} {mib(rss[s]):7.0f} MiB {of_model(rss[s]):7.3f}x")
    print(f"{'python_only':18s} {'':8s} {'':26s} {mib(py_rss):7.0f} MiB   (interpreter + numpy + "
          "nnsign + safetensors imported, nothing loaded)")
    for s in ("load_nnsign", "load_safetensors", "load_pickle"):
        if drops[s]:
            print(f"dropping the loaded arrays after {s} (not in its time): median "
                  f"{statistics.median(drops[s]):.3f}s")

    goals = []

    def ratio(name, a, b, limit, strict=False, what="time"):
        r = best[a] / best[b]
        ok = r < limit if strict else r <= limit
        goals.append((name, f"{r:.3f}x", f"{'<' if strict else '<='} {limit}x",
                      f"{best[a]:.3f}s vs {best[b]:.3f}s", ok))

    ratio("load_nnsign / verify_cli", "load_nnsign", "verify_cli", 1.2)
    ratio("load_nnsign / load_safetensors", "load_nnsign", "load_safetensors", 1.0, strict=True)
    ratio("load_nnsign / load_pickle", "load_nnsign", "load_pickle", 1.0, strict=True)
    r = of_model(rss["load_nnsign"])
    goals.append(("load_nnsign peak RSS / model", f"{r:.3f}x", "<= 1.1x",
                  f"{mib(rss['load_nnsign']):.0f} MiB vs {model / 2**20:.0f} MiB", r <= 1.1))
    ratio("save_nnsign / save_safetensors (no fsync)", "save_nnsign", "save_safetensors", 1.3)
    ratio("save_nnsign / save_st_fsync", "save_nnsign", "save_st_fsync", 1.3)
    # A signed save hashes and writes every byte (FORMAT.md section 6): if doing just that, on
    # every core, takes longer than 1.3x save_file without fsync, that goal is out of reach of
    # any writer of the format on this machine, nnsign or another.
    for side in ("hash_floor", "sign_floor"):
        floor = best[side] / best["save_safetensors"]
        goals.append((f"{side} / save_safetensors (no fsync)", f"{floor:.3f}x", "info",
                      f"{best[side]:.3f}s vs {best['save_safetensors']:.3f}s", None))
    print()
    print(f"{'goal':42s} {'ratio':>7s} {'goal':>8s}  {'figures':28s} result")
    for name, got, limit, figures, ok in goals:
        verdict = "info" if ok is None else "PASS" if ok else "FAIL"
        print(f"{name:42s} {got:>7s} {limit:>8s}  {figures:28s} {verdict}")
    print("reference: verify_load_cli / verify_cli "
          f"{best['verify_load_cli'] / best['verify_cli']:.2f}x, load_nnsign / verify_load_cli "
          f"{best['load_nnsign'] / best['verify_load_cli']:.2f}x")
    checked = [g for g in goals if g[4] is not None]
    failed = [g[0] for g in checked if not g[4]]
    print(f"goals: {len(checked) - len(failed)} of {len(checked)} PASS" +
          (f"; FAIL: {', '.join(failed)}" if failed else ""))


if __name__ == "__main__":
    main()
