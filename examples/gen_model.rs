//! Writes a synthetic safetensors model of about SIZE MiB for benchmarks: 200 float32 tensors of
//! mixed sizes (a few large matrices, many small vectors), filled with deterministic noise. With
//! ARCH.json, an MLP instead: SIZE/64 float32 layers of 4096 x 4096, and its architecture (each
//! layer a MatMul then a Relu) written to ARCH.json, so that `verify-load` builds a runnable
//! model of the whole size.
//!
//! Usage: cargo run --release --example gen_model -- OUT.safetensors [SIZE_MIB] [ARCH.json]

use std::io::{BufWriter, Write};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = args
        .next()
        .ok_or("usage: gen_model OUT.safetensors [SIZE_MIB]")?;
    let mib: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1024);
    if let Some(arch) = args.next() {
        return mlp(&out, mib, &arch);
    }
    let total_elems = mib * (1 << 20) / 4;
    // Sizes follow a transformer-like mix: every 10th tensor is a big matrix, the rest are
    // layer norms and biases; the big ones share what the small ones leave.
    let count = 200u64;
    let small = 4096u64;
    let big_count = count / 10;
    let big = (total_elems - (count - big_count) * small) / big_count;
    let mut infos = Vec::new();
    let mut offset = 0usize;
    for i in 0..count {
        let elems = if i % 10 == 0 { big } else { small };
        let shape = if i % 10 == 0 {
            vec![(elems / 1024) as usize, 1024]
        } else {
            vec![elems as usize]
        };
        let n = shape.iter().product::<usize>() * 4;
        infos.push((
            format!("layers.{:03}.weight", i),
            safetensors::tensor::TensorInfo {
                dtype: safetensors::Dtype::F32,
                shape,
                data_offsets: (offset, offset + n),
            },
        ));
        offset += n;
    }
    write(&out, infos, offset)?;
    eprintln!("wrote {out}: {count} tensors, {offset} data bytes");
    Ok(())
}

/// SIZE/64 layers of 4096 x 4096 float32 (64 MiB each) and a graph that chains them.
fn mlp(out: &str, mib: u64, arch: &str) -> Result<(), Box<dyn std::error::Error>> {
    const WIDTH: usize = 4096;
    let layers = (mib / 64).max(1) as usize;
    let n = WIDTH * WIDTH * 4;
    let infos = (0..layers)
        .map(|i| {
            (
                format!("layer.{i:03}.weight"),
                safetensors::tensor::TensorInfo {
                    dtype: safetensors::Dtype::F32,
                    shape: vec![WIDTH, WIDTH],
                    data_offsets: (i * n, (i + 1) * n),
                },
            )
        })
        .collect();
    write(out, infos, layers * n)?;
    let mut nodes = Vec::new();
    for i in 0..layers {
        let input = if i == 0 {
            "x".to_owned()
        } else {
            format!("h{i}")
        };
        let last = if i + 1 == layers {
            "y".to_owned()
        } else {
            format!("h{}", i + 1)
        };
        nodes.push(serde_json::json!({"op": "MatMul", "name": format!("mm{i}"),
            "inputs": [input, format!("layer.{i:03}.weight")], "outputs": [format!("a{i}")]}));
        nodes.push(serde_json::json!({"op": "Relu", "name": format!("relu{i}"),
            "inputs": [format!("a{i}")], "outputs": [last]}));
    }
    let graph = serde_json::json!({"opset": 2,
        "inputs": [{"name": "x", "dtype": "F32", "shape": ["batch", WIDTH]}],
        "outputs": [{"name": "y", "dtype": "F32", "shape": ["batch", WIDTH]}],
        "nodes": nodes});
    std::fs::write(arch, serde_json::to_string_pretty(&graph)?)?;
    eprintln!("wrote {out}: an MLP of {layers} layers of {WIDTH} x {WIDTH}, and {arch}");
    Ok(())
}

/// A safetensors file of `infos` over `len` bytes of deterministic noise.
fn write(
    out: &str,
    infos: Vec<(String, safetensors::tensor::TensorInfo)>,
    len: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let meta = safetensors::tensor::Metadata::new(None, infos)?;
    let mut header = serde_json::to_vec(&meta)?;
    header.resize(header.len().next_multiple_of(8), b' ');
    let mut w = BufWriter::with_capacity(8 << 20, std::fs::File::create(out)?);
    w.write_all(&(header.len() as u64).to_le_bytes())?;
    w.write_all(&header)?;
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = len;
    while left > 0 {
        let n = left.min(buf.len());
        for word in buf[..n].chunks_exact_mut(8) {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word.copy_from_slice(&state.to_le_bytes());
        }
        w.write_all(&buf[..n])?;
        left -= n;
    }
    w.flush()?;
    Ok(())
}
