#!/usr/bin/env bash
# Pull + verify of a sharded model from a registry on loopback, against curl fetching the same
# blobs from the same registry in the same run; and the peak RSS of verify-load of the pulled
# sharded model against the model and its largest shard.
#
#   scripts/bench.sh registry [SIZE_MIB] [SHARD]   (default 4096 MiB in 512MiB shards)
#   ROUNDS=3 scripts/bench_registry.sh ...         (the same, called directly)
#
# Needs docker-registry (Debian's package: Docker Distribution 2.8), curl and /usr/bin/time.
# The model is gen_model's runnable MLP (4096 x 4096 float32 layers), packed signed with
# --shard-size SHARD and pushed once to a registry started on 127.0.0.1 with its storage in the
# work folder. Then ROUNDS (default 3) rounds, each timing, in alternating order:
#   curl    one `curl --parallel --parallel-max 4` fetching every layer's blob (the .nns and
#           each shard) to files: transfer only, nothing checked;
#   pull    `nnsign pull REF -o OUT --trust PUB --insecure` (4 files at once, the default
#           --jobs): transfer, then verification of the signature and of every byte of every
#           shard against its signed digest, then the renames into place.
# Each side's files are deleted after its run (outside the clock). The figure is each side's
# best round; goal: pull <= 1.5x curl. Then verify-load of the pulled model: goal peak RSS
# bounded by the model it instantiates plus its largest shard (the reader streams chunk by
# chunk, so it is near the model alone).
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-4096}
shard=${2:-512MiB}
rounds=${ROUNDS:-3}
work=$(mktemp -d "${TMPDIR:-/tmp}/nnsign-regbench-XXXXXX")
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$work"' EXIT
command -v docker-registry >/dev/null || { echo "needs docker-registry (apt-get install docker-registry)"; exit 1; }

cargo build --release --quiet --bin nnsign --example gen_model
bin=$PWD/target/release/nnsign
target/release/examples/gen_model "$work/mlp.safetensors" "$size" "$work/mlp.json" 2>/dev/null
"$bin" keygen -o "$work/ci" --quiet
"$bin" pack "$work/mlp.safetensors" --arch "$work/mlp.json" --sign "$work/ci.key" \
  --shard-size "$shard" -o "$work/mlp.nns" --quiet
rm "$work/mlp.safetensors"
model=$(du -cb "$work"/mlp*.nnshard | tail -1 | cut -f1)
largest=$(stat -c %s "$work"/mlp*.nnshard | sort -n | tail -1)
shards=$(ls "$work"/mlp*.nnshard | wc -l)

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir "$work/storage"
printf 'version: 0.1\nlog: {level: error}\nstorage: {filesystem: {rootdirectory: %s}}\nhttp: {addr: "127.0.0.1:%s"}\n' \
  "$work/storage" "$port" >"$work/registry.yml"
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
pid=$!
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$port/v2/" && break; sleep 0.1; done
ref=127.0.0.1:$port/bench/mlp:1
"$bin" push "$work/mlp.nns" "$ref" --insecure --json >"$work/push.json"
rm "$work"/mlp.nns "$work"/mlp-*.nnshard
blobs=$(python3 -c 'import json, sys; print(" ".join(l["digest"] for l in json.load(open(sys.argv[1]))["layers"]))' "$work/push.json")

timed() { # label, command...: prints "seconds rss_kib"
  /usr/bin/time -f '%e %M' -o "$work/time" "$@" >/dev/null
  cat "$work/time"
}
curl_side() {
  local args=() i=0
  for d in $blobs; do
    args+=(-o "$work/curl/$i" "http://127.0.0.1:$port/v2/bench/mlp/blobs/$d")
    i=$((i + 1))
  done
  mkdir -p "$work/curl"
  timed curl -sf --no-progress-meter --parallel --parallel-max 4 "${args[@]}"
}
pull_side() {
  mkdir -p "$work/pull"
  timed "$bin" pull "$ref" -o "$work/pull/mlp.nns" --trust "$work/ci.pub" --insecure --quiet
}
# Warm the registry's storage in the page cache (both sides read it the same way).
cat "$work"/storage/docker/registry/v2/blobs/sha256/*/*/data >/dev/null

echo "model: $((model >> 20)) MiB in $shards shards of at most $shard, $(nproc) cores, $rounds rounds, registry docker-registry $(dpkg-query -W -f='${Version}' docker-registry 2>/dev/null || echo '?'), $(curl --version | head -1 | cut -d' ' -f1-2)"
best_curl= best_pull=
for r in $(seq "$rounds"); do
  if [ $((r % 2)) = 1 ]; then order="curl pull"; else order="pull curl"; fi
  for side in $order; do
    read -r s m < <("${side}_side")
    rm -rf "$work/curl" "$work/pull"
    sync
    echo "round $r $side: ${s}s, peak RSS $((m / 1024)) MiB"
    if [ "$side" = curl ]; then
      if [ -z "$best_curl" ] || awk "BEGIN{exit !($s < $best_curl)}"; then best_curl=$s; fi
    else
      if [ -z "$best_pull" ] || awk "BEGIN{exit !($s < $best_pull)}"; then best_pull=$s; fi
    fi
  done
done
ratio=$(awk "BEGIN{printf \"%.2f\", $best_pull/$best_curl}")
echo "pull + verify ${best_pull}s vs curl ${best_curl}s: ${ratio}x (goal <= 1.5x) $(awk "BEGIN{print ($ratio <= 1.5) ? \"PASS\" : \"FAIL\"}")"
echo "  pull at $(awk "BEGIN{printf \"%.2f\", $model/$best_pull/1e9}") GB/s, curl at $(awk "BEGIN{printf \"%.2f\", $model/$best_curl/1e9}") GB/s"

mkdir -p "$work/pull"
"$bin" pull "$ref" -o "$work/pull/mlp.nns" --trust "$work/ci.pub" --insecure --quiet
read -r s m < <(timed "$bin" verify-load "$work/pull/mlp.nns" --trust "$work/ci.pub" --max-memory 1099511627776 --quiet)
echo "verify-load of the pulled sharded model: ${s}s, peak RSS $((m / 1024)) MiB = $(awk "BEGIN{printf \"%.3f\", $m*1024/$model}")x the model; model + largest shard = $(( (model + largest) >> 20 )) MiB: $(awk "BEGIN{print ($m*1024 <= $model + $largest) ? \"PASS\" : \"FAIL\"}")"
