#!/usr/bin/env bash
# Speed and memory of pack and verify on a generated ~1 GiB safetensors model, against
# single-core `openssl dgst -sha256` on the same artifact, measured in the same run.
#
#   scripts/bench.sh [SIZE_MIB]        (default 1024; needs openssl and /usr/bin/time)
#   scripts/bench.sh memory [SIZE_MIB] (default 8192: peak RSS at scale)
#   scripts/bench.sh runtime           (inference against onnxruntime)
#   scripts/bench.sh python [SIZE_MIB] (the Python package: nnsign.load and nnsign.save)
#   scripts/bench.sh registry [SIZE_MIB] [SHARD] (pull + verify from a registry against curl)
#
# Goals: verify >= 2.5x single-core openssl SHA-256 throughput on 2 cores, with peak RSS under
# 64 MiB whatever the model size (issues 2, 12); verify-load of a runnable model of the same
# size (an MLP of 4096 x 4096 float32 layers) <= 1.15x verify's time on the same artifact, peak
# RSS <= 1.1x the model, beside numpy's safetensors load_file of the same weights (which
# verifies nothing); encrypted verify-load <= 1.15x the in-memory bound of SHA-256 plus
# ChaCha20-Poly1305 decryption on every core (examples/bench_stream, same run) (issue 12).
# Files are written under a temporary directory in $TMPDIR (or /tmp) and removed at the end.
#
# CPU inference (issues 4, 13): `scripts/bench.sh runtime` (or the last part of a full run) times
# the 4-layer width-1024 MLP and tests/fixtures/onnx_cnn at batch 256, and the U-Net, BiLSTM
# and transformer encoder of tests/fixtures/models3 (batches in bench_runtime.py) in nnsign
# (examples/bench_runtime.rs) and in onnxruntime (scripts/bench_runtime.py, which pip-installs
# onnx and onnxruntime if they are missing) with the same number of threads, in ROUNDS (default
# 5) alternating rounds; the ratio is of each side's best median. Goal: nnsign within 1.5x of
# onnxruntime. It exits 1, after every other result, when nnsign cannot run one of the models.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

runtime_bench() {
  cargo build --release --quiet --example bench_runtime
  python3 -c 'import onnx, onnxruntime, safetensors' 2>/dev/null ||
    python3 -m pip install -q onnx onnxruntime safetensors numpy
  local threads rounds models="mlp cnn unet bilstm transformer"
  threads=$(nproc)
  rounds=${ROUNDS:-5}
  mkdir -p "$work/rt"
  # Rounds alternate the two runtimes, so that a shared machine's slow spells hit both; the
  # ratio is of each side's best median over the rounds. A model that nnsign cannot run yet
  # (it says why on stderr) is left out of later rounds and reported at the end.
  declare -A best=() cannot=()
  for ((r = 1; r <= rounds; r++)); do
    python3 scripts/bench_runtime.py "$work/rt" --threads "$threads" >"$work/ort.txt"
    for m in $models; do
      [ -n "${cannot[$m]:-}" ] && continue
      local ours theirs model input
      theirs=$(sed -n "s/^onnxruntime $m .*median_ms=\([0-9.]*\).*/\1/p" "$work/ort.txt")
      # mlp and cnn run from onnx_to_arch's nnsign form, the models3 graphs from their ONNX.
      model=$work/rt/$m input=$work/rt/${m}_input.npy
      [ -d "$model" ] || model=$work/rt/$m.onnx input=$work/rt/${m}_input.npz
      if ! ours=$(RAYON_NUM_THREADS=$threads target/release/examples/bench_runtime "$model" \
        "$input" "$work/rt/${m}_expected.npy" 20 2>"$work/err.txt"); then
        cannot[$m]=$(cat "$work/err.txt")
        echo "round $r $m: onnxruntime $theirs ms, nnsign cannot run it"
        continue
      fi
      [ "$r" = 1 ] && echo "$ours"
      ours=$(sed -n 's/.*median_ms=\([0-9.]*\).*/\1/p' <<<"$ours")
      echo "round $r $m: onnxruntime $theirs ms, nnsign $ours ms"
      for side in ours theirs; do
        local key="$m-$side" v=${!side}
        if [ -z "${best[$key]:-}" ] || awk "BEGIN{exit !($v < ${best[$key]})}"; then best[$key]=$v; fi
      done
    done
  done
  for m in $models; do
    if [ -n "${cannot[$m]:-}" ]; then
      echo "$m: nnsign cannot run it yet: ${cannot[$m]}"
      continue
    fi
    echo "$m: nnsign takes $(awk "BEGIN{printf \"%.2f\", ${best[$m-ours]}/${best[$m-theirs]}}")x onnxruntime's time (best of $rounds alternating rounds: ${best[$m-ours]} vs ${best[$m-theirs]} ms; goal <= 1.5x)"
  done
  [ ${#cannot[@]} = 0 ]
}

# Memory at scale (issue 12): `scripts/bench.sh memory [SIZE_MIB]` (default 8192) packs a
# generated MLP of that size, plain and encrypted, and reports the peak RSS of pack and unpack
# (bounded), verify (bounded, goal <= 64 MiB) and verify-load (goal <= 1.1x the model), one run
# each.
memory_bench() {
  local size=${1:-8192} bin=target/release/nnsign
  cargo build --release --quiet --bin nnsign --example gen_model
  target/release/examples/gen_model "$work/mlp.safetensors" "$size" "$work/mlp.json" 2>/dev/null
  "$bin" keygen -o "$work/ci" --quiet
  "$bin" keygen --encryption -o "$work/edge" --quiet
  local model; model=$(stat -c %s "$work/mlp.safetensors")
  run() { # label, command...: seconds and peak RSS, against the model's size
    local label=$1; shift
    /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
    read -r s m <"$work/time"
    echo "$label: ${s}s, peak RSS $((m / 1024)) MiB = $(awk "BEGIN{printf \"%.3f\", $m*1024/$model}")x the model"
  }
  echo "MLP of $((model >> 20)) MiB of float32 weights, $(nproc) cores, one run each"
  run "pack --sign" "$bin" pack "$work/mlp.safetensors" --arch "$work/mlp.json" --sign "$work/ci.key" -o "$work/mlp.nns" --quiet
  run "encrypted pack --sign" "$bin" pack "$work/mlp.safetensors" --arch "$work/mlp.json" --sign "$work/ci.key" --encrypt-to "$work/edge.pub" -o "$work/enc.nns" --quiet
  rm "$work/mlp.safetensors"
  run "unpack (streams safetensors)" "$bin" unpack "$work/mlp.nns" --trust "$work/ci.pub" -o "$work/out.safetensors" --quiet
  rm "$work/out.safetensors"
  run "verify" "$bin" verify "$work/mlp.nns" --trust "$work/ci.pub" --quiet
  run "verify-load (ready to run)" "$bin" verify-load "$work/mlp.nns" --trust "$work/ci.pub" --max-memory 1099511627776 --quiet
  run "encrypted verify (no key)" "$bin" verify "$work/enc.nns" --trust "$work/ci.pub" --quiet
  run "encrypted verify-load" "$bin" verify-load "$work/enc.nns" --trust "$work/ci.pub" --decrypt-with "$work/edge.key" --max-memory 1099511627776 --quiet
}

# The Python package (scripts/bench_python.py says what each side times): `scripts/bench.sh
# python [SIZE_MIB]` (default 1024) builds the CLI and the wheel, installs the wheel, numpy and
# safetensors into a venv under the cargo target folder (made on first use; needs python3 with
# venv), and runs ROUNDS (default 3) alternating rounds of REPS (default 5) runs of each side.
# Goals: nnsign.load <= 1.2x `nnsign verify` of the same artifact, faster than safetensors'
# load_file and pickle.load of the same arrays, peak RSS <= 1.1x the model; nnsign.save <= 1.3x
# safetensors' save_file (reported without and with an fsync on the safetensors side).
python_bench() {
  local target=${CARGO_TARGET_DIR:-$PWD/target}
  local venv=$target/bench-venv
  cargo build --release --quiet --bin nnsign
  if ! "$venv/bin/python" -c 'import numpy, safetensors, maturin' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install -q numpy safetensors maturin
  fi
  (cd src/python && "$venv/bin/maturin" build --release --quiet -o "$work/wheels")
  "$venv/bin/python" -m pip install -q --force-reinstall --no-deps "$work"/wheels/nnsign-*.whl
  "$venv/bin/python" scripts/bench_python.py --nnsign "$target/release/nnsign" \
    --size-mib "${1:-1024}" --dir "${TMPDIR:-/tmp}"
}

if [ "${1:-}" = registry ]; then
  # Pull + verify of a sharded model from a loopback registry against curl (scripts/bench_registry.sh).
  shift
  exec scripts/bench_registry.sh "$@"
fi
if [ "${1:-}" = python ]; then
  python_bench "${2:-1024}"
  exit 0
fi
if [ "${1:-}" = runtime ]; then
  runtime_bench
  exit 0
fi
if [ "${1:-}" = memory ]; then
  memory_bench "${2:-8192}"
  exit 0
fi
size=${1:-1024}
cargo build --release --quiet --bin nnsign --example gen_model --example bench_stream
bin=target/release/nnsign

target/release/examples/gen_model "$work/model.safetensors" "$size" 2>/dev/null
"$bin" keygen -o "$work/ci" --quiet

# Seconds and peak RSS (KiB) of a command, from GNU time.
measure() {
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
  cat "$work/time"
}
best() { # best of 3 runs of a command: prints "seconds rss_kib"
  local best_s="" best_m=""
  for _ in 1 2 3; do
    read -r s m < <(measure "$@")
    if [ -z "$best_s" ] || awk "BEGIN{exit !($s < $best_s)}"; then best_s=$s; best_m=$m; fi
  done
  echo "$best_s $best_m"
}
mib() { awk "BEGIN{printf \"%.0f\", $1/1048576}"; }

cat "$work/model.safetensors" >/dev/null  # warm the page cache
bytes=$(stat -c %s "$work/model.safetensors")
read -r pack_s pack_m < <(best "$bin" pack "$work/model.safetensors" --sign "$work/ci.key" -o "$work/model.nns" --quiet)
art=$(stat -c %s "$work/model.nns")
cat "$work/model.nns" >/dev/null
read -r ver_s ver_m < <(best "$bin" verify "$work/model.nns" --trust "$work/ci.pub" --quiet)
read -r ossl_s _ < <(best openssl dgst -sha256 "$work/model.nns")
# A runnable model (issue 12): verify and verify-load of the same MLP artifact, and numpy's
# safetensors reader on its weights (timed inside Python, without the interpreter's start).
target/release/examples/gen_model "$work/mlp.safetensors" "$size" "$work/mlp.json" 2>/dev/null
"$bin" pack "$work/mlp.safetensors" --arch "$work/mlp.json" --sign "$work/ci.key" -o "$work/mlp.nns" --quiet
mlp_bytes=$(stat -c %s "$work/mlp.safetensors")
cat "$work/mlp.nns" >/dev/null
read -r mver_s mver_m < <(best "$bin" verify "$work/mlp.nns" --trust "$work/ci.pub" --quiet)
read -r mload_s mload_m < <(best "$bin" verify-load "$work/mlp.nns" --trust "$work/ci.pub" --max-memory 68719476736 --quiet)
python3 -c 'import safetensors, numpy' 2>/dev/null || python3 -m pip install -q safetensors numpy
st_s=$(python3 - "$work/mlp.safetensors" <<'PY'
import sys, time
import safetensors.numpy as st
best = min(
    (lambda t: (st.load_file(sys.argv[1]), time.perf_counter() - t)[1])(time.perf_counter())
    for _ in range(3)
)
print(f"{best:.3f}")
PY
)
read -r _ st_m < <(measure python3 -c 'import sys, safetensors.numpy as s; s.load_file(sys.argv[1])' "$work/mlp.safetensors")
# Encrypted (issue 3): pack to one recipient, verify without a key, verify-load with it (a
# weights-only model: verify, decrypt and check, nothing to run).
"$bin" keygen --encryption -o "$work/edge" --quiet
read -r epack_s epack_m < <(best "$bin" pack "$work/model.safetensors" --sign "$work/ci.key" --encrypt-to "$work/edge.pub" -o "$work/enc.nns" --quiet)
cat "$work/enc.nns" >/dev/null
read -r ever_s ever_m < <(best "$bin" verify "$work/enc.nns" --trust "$work/ci.pub" --quiet)
read -r eload_s eload_m < <(best "$bin" verify-load "$work/enc.nns" --trust "$work/ci.pub" --decrypt-with "$work/edge.key" --max-memory 68719476736 --quiet)
# The runnable MLP encrypted: every tensor decrypted straight into its place (issue 12).
"$bin" pack "$work/mlp.safetensors" --arch "$work/mlp.json" --sign "$work/ci.key" --encrypt-to "$work/edge.pub" -o "$work/mlp-enc.nns" --quiet
cat "$work/mlp-enc.nns" >/dev/null
read -r mel_s mel_m < <(best "$bin" verify-load "$work/mlp-enc.nns" --trust "$work/ci.pub" --decrypt-with "$work/edge.key" --max-memory 68719476736 --quiet)
read -r eunp_s eunp_m < <(best "$bin" unpack "$work/enc.nns" --trust "$work/ci.pub" --decrypt-with "$work/edge.key" -o "$work/out.safetensors" --quiet)
read -r unp_s unp_m < <(best "$bin" unpack "$work/model.nns" --trust "$work/ci.pub" -o "$work/out.safetensors" --quiet)

gbps() { awk "BEGIN{printf \"%.2f\", $1/$2/1e9}"; }
echo "model: $(mib "$bytes") MiB safetensors, 200 tensors; artifact $(mib "$art") MiB; $(nproc) cores"
echo "openssl dgst -sha256 (1 core):  ${ossl_s}s  $(gbps "$art" "$ossl_s") GB/s  (baseline)"
echo "nnsign pack --sign:             ${pack_s}s  $(gbps "$bytes" "$pack_s") GB/s  $(awk "BEGIN{printf \"%.2f\", $ossl_s/$pack_s}")x baseline  peak RSS $((pack_m / 1024)) MiB"
echo "nnsign verify:                  ${ver_s}s  $(gbps "$art" "$ver_s") GB/s  $(awk "BEGIN{printf \"%.2f\", $ossl_s/$ver_s}")x baseline  peak RSS $((ver_m / 1024)) MiB"
echo "encrypted pack --sign:          ${epack_s}s  $(gbps "$bytes" "$epack_s") GB/s  $(awk "BEGIN{printf \"%.2f\", $ossl_s/$epack_s}")x baseline  peak RSS $((epack_m / 1024)) MiB"
echo "encrypted verify (no key):      ${ever_s}s  $(gbps "$art" "$ever_s") GB/s  $(awk "BEGIN{printf \"%.2f\", $ossl_s/$ever_s}")x baseline  peak RSS $((ever_m / 1024)) MiB"
echo "encrypted verify-load (decrypt): ${eload_s}s  $(gbps "$art" "$eload_s") GB/s  $(awk "BEGIN{printf \"%.2f\", $ossl_s/$eload_s}")x baseline  peak RSS $((eload_m / 1024)) MiB (holds the model)"
echo "runnable MLP, $(mib "$mlp_bytes") MiB of float32 weights:"
echo "  nnsign verify:                 ${mver_s}s  peak RSS $((mver_m / 1024)) MiB"
echo "  nnsign verify-load (ready to run): ${mload_s}s  $(awk "BEGIN{printf \"%.2f\", $mload_s/$mver_s}")x verify's time (goal <= 1.15x)  peak RSS $((mload_m / 1024)) MiB = $(awk "BEGIN{printf \"%.2f\", $mload_m*1024/$mlp_bytes}")x the model (goal <= 1.1x)"
echo "  numpy safetensors load_file (verifies nothing): ${st_s}s  peak RSS $((st_m / 1024)) MiB (with the interpreter)"
echo "unpack (writes safetensors):    ${unp_s}s  $(gbps "$art" "$unp_s") GB/s  $(awk "BEGIN{printf \"%.2f\", $ossl_s/$unp_s}")x baseline  peak RSS $((unp_m / 1024)) MiB"
echo "encrypted unpack (streams):     ${eunp_s}s  $(gbps "$art" "$eunp_s") GB/s  $(awk "BEGIN{printf \"%.2f\", $ossl_s/$eunp_s}")x baseline  peak RSS $((eunp_m / 1024)) MiB"

# The encryption primitive alone: in-memory STREAM ChaCha20-Poly1305 on every core, against
# single-core openssl on 64 KiB blocks.
ossl_chacha=$(openssl speed -seconds 2 -bytes 65536 -evp chacha20-poly1305 2>/dev/null | awk '/^ChaCha20-Poly1305/{print $NF}')
echo "openssl speed chacha20-poly1305 64 KiB blocks (1 core): ${ossl_chacha}"
target/release/examples/bench_stream "$(( size < 1024 ? size : 1024 ))" | tee "$work/stream.txt"
bound=$(sed -n 's/.*bound_s_per_gib=\([0-9.]*\).*/\1/p' "$work/stream.txt")
eart=$(stat -c %s "$work/enc.nns")
echo "encrypted verify-load (weights only): $(awk "BEGIN{printf \"%.2f\", $eload_s/($bound*$eart/1073741824)}")x the in-memory bound of SHA-256 + decryption on every core ($(awk "BEGIN{printf \"%.3f\", $bound*$eart/1073741824}")s for this artifact)"
meart=$(stat -c %s "$work/mlp-enc.nns")
echo "encrypted verify-load of the runnable MLP: ${mel_s}s = $(awk "BEGIN{printf \"%.2f\", $mel_s/($bound*$meart/1073741824)}")x the in-memory bound (goal <= 1.15x), peak RSS $((mel_m / 1024)) MiB = $(awk "BEGIN{printf \"%.2f\", $mel_m*1024/$mlp_bytes}")x the model (goal <= 1.1x)"

# Is the second core free? Compare openssl speed with one and two processes.
one=$(openssl speed -seconds 2 -bytes 16384 -evp sha256 2>/dev/null | awk '/^sha256/{print $NF}')
two=$(openssl speed -seconds 2 -bytes 16384 -multi 2 -evp sha256 2>/dev/null | awk '/^sha256/{print $NF}')
echo "openssl speed sha256 16 KiB blocks: 1 process ${one}, 2 processes ${two}"
if awk "BEGIN{exit !(${two%k} < 1.5 * ${one%k})}"; then
  echo "note: two openssl processes are not 1.5x one: the second core was busy during this run"
fi

runtime_bench
