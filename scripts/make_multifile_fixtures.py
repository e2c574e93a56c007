#!/usr/bin/env python3
"""Multi-file model inputs for tests/multifile.rs, made by the tools that make them in the wild:

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install gguf==0.19.0 safetensors==0.8.0 \
        huggingface_hub==2.4.0 numpy==2.4.6
    /tmp/venv/bin/python scripts/make_multifile_fixtures.py

Writes into tests/fixtures/multifile/:

- `hf/`: a Hugging Face sharded safetensors model. The state dict is cut into shards by
  huggingface_hub's own splitter (`split_state_dict_into_shards_factory`, the function behind
  `split_torch_state_dict_into_shards`, here given NumPy arrays because torch is not installed),
  each shard written by `safetensors.numpy.save_file` with the `{"format": "pt"}` metadata and
  the index written with `json.dump(index, f, indent=2)`, exactly as
  `huggingface_hub.save_torch_state_dict` writes them when the model is sharded (its index
  metadata is the splitter's `{"total_size": N}` merged with the caller's `metadata=`).
  `hf/expected.npz` holds the same arrays as numpy made them, before any file was written.
- `gguf/`: a GGUF model cut into splits by the `gguf` package's own writer
  (`GGUFWriter(..., split_max_tensors=2)`, which names the files `PREFIX-00001-of-00003.gguf`
  and writes `split.no` (u16), `split.count` (u16) and `split.tensors.count` (i32) into every
  split and all other metadata into the first only, as llama.cpp's gguf-split does).
  `gguf/expected.npz` holds every tensor as `gguf.GGUFReader` reads the splits (the Q8_0 one
  as its raw bytes), and `gguf/metadata.json` each split's metadata as that reader gives it.

Running it again gives the same bytes.
"""
import json
import os
import shutil

import numpy as np
import safetensors.numpy
from huggingface_hub.serialization import split_state_dict_into_shards_factory

import gguf
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures", "multifile")


def fresh(name):
    path = os.path.join(OUT, name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path)
    return path


def hf_model():
    d = fresh("hf")
    rng = np.random.default_rng(7)
    state = {
        "model.embed.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "model.layers.0.attn.q.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "model.layers.0.attn.q.bias": np.array([0.0, -0.0, 1.5, -2.25, 1e-40, 3.0, 4.0, 5.0], np.float32),
        "model.layers.0.mlp.up.weight": rng.standard_normal((8, 16)).astype(np.float16),
        "model.layers.0.norm.weight": np.ones(8, np.float64),
        "model.position_ids": np.arange(12, dtype=np.int64).reshape(1, 12),
        "model.scale": np.array(0.125, np.float32),
        "lm_head.weight": rng.standard_normal((16, 8)).astype(np.float32),
    }
    split = split_state_dict_into_shards_factory(
        state,
        get_storage_size=lambda a: a.nbytes,
        filename_pattern="model{suffix}.safetensors",
        max_shard_size=600,
    )
    assert split.is_sharded
    # What save_torch_state_dict does with a sharded split.
    for filename, names in split.filename_to_tensors.items():
        shard = {n: state[n] for n in names}
        safetensors.numpy.save_file(shard, os.path.join(d, filename), metadata={"format": "pt"})
    index = {
        "metadata": {**split.metadata, **{"note": "tiny sharded fixture"}},
        "weight_map": split.tensor_to_filename,
    }
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
    np.savez(os.path.join(d, "expected.npz"), **state)
    return sorted(split.filename_to_tensors)


def gguf_splits():
    d = fresh("gguf")
    rng = np.random.default_rng(11)
    w = GGUFWriter(os.path.join(d, "tiny.gguf"), "llama", split_max_tensors=2)
    w.add_name("tiny-split")
    w.add_context_length(64)
    w.add_uint32("test.answer", 42)
    w.add_array("test.list", [1, 2, 3])
    w.add_tensor("token_embd.weight", rng.standard_normal((10, 4)).astype(np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.linspace(-1, 1, 4, dtype=np.float32))
    q = rng.standard_normal((4, 64)).astype(np.float32)
    w.add_tensor(
        "blk.0.ffn_down.weight",
        gguf.quants.quantize(q, GGMLQuantizationType.Q8_0),
        raw_dtype=GGMLQuantizationType.Q8_0,
    )
    w.add_tensor("blk.0.ffn_up.weight", rng.standard_normal((6, 4)).astype(np.float16))
    w.add_tensor("output.weight", np.arange(20, dtype=np.int32).reshape(5, 4))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    names = sorted(n for n in os.listdir(d) if n.endswith(".gguf"))
    arrays, meta = {}, {}
    for name in names:
        r = GGUFReader(os.path.join(d, name))
        for t in r.tensors:
            data = np.asarray(t.data)
            if t.tensor_type.name not in ("F32", "F16", "I32"):
                data = np.frombuffer(data.tobytes(), dtype=np.uint8)
            arrays[t.name] = data
        meta[name] = {
            k: f.contents() for k, f in r.fields.items() if not k.startswith("GGUF.")
        }
    np.savez(os.path.join(d, "expected.npz"), **arrays)
    with open(os.path.join(d, "metadata.json"), "w") as fh:
        json.dump(meta, fh, indent=1, sort_keys=True, default=str)
    return names


if __name__ == "__main__":
    print("hf:", hf_model())
    print("gguf:", gguf_splits())
