//! nnsign's side of the CPU inference benchmark (scripts/bench.sh runs it beside
//! scripts/bench_runtime.py, which times onnxruntime on the same models and inputs).
//!
//!     bench_runtime MODEL_DIR INPUT.npy EXPECTED.npy [ITERS]
//!
//! MODEL_DIR holds `arch.json` and `weights.safetensors`. The model is validated and built as
//! `verify-load` builds it (from the weights, without an artifact: this measures the runtime),
//! run 3 times to warm up, then ITERS times (default 20); prints the median wall time of a run
//! and the largest difference from EXPECTED.npy.

use std::time::Instant;

use nnsign::format::TensorInfo;
use nnsign::model::Graph;
use nnsign::runtime::{self, Model, Value};

fn load(path: &std::path::Path) -> Vec<(TensorInfo, Value)> {
    let imported = nnsign::import::import(&[path.to_owned()]).expect("readable input");
    (imported.tensors.into_iter())
        .map(|t| {
            let info = TensorInfo {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                offset: 0,
                length: t.bytes.len() as u64,
            };
            let v = runtime::to_value(&info, &t.bytes).expect("a usable dtype");
            (info, v)
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: bench_runtime MODEL_DIR INPUT.npy EXPECTED.npy [ITERS]");
        std::process::exit(2);
    }
    let dir = std::path::Path::new(&args[1]);
    let iters: usize = args
        .get(4)
        .map_or(20, |s| s.parse().expect("ITERS is a number"));
    let arch = std::fs::read_to_string(dir.join("arch.json")).expect("arch.json");
    let graph = Graph::from_json(&arch).expect("a valid graph");
    let weights = load(&dir.join("weights.safetensors"));
    let infos: Vec<TensorInfo> = weights.iter().map(|(i, _)| i.clone()).collect();
    let plan = graph.validate(&infos).expect("the graph fits its weights");
    let model = Model::new(
        plan,
        |info| {
            let (_, v) = (weights.iter().find(|(i, _)| i.name == info.name)).expect("validated");
            Ok(v.clone())
        },
        u64::MAX,
    )
    .expect("the weights widen");
    let input = load(std::path::Path::new(&args[2])).remove(0).1;
    let expected = load(std::path::Path::new(&args[3])).remove(0).1;
    let name = model.inputs().next().expect("an input").name.clone();
    // The input is copied before the clock starts: a caller hands its buffer over.
    let run = |x: Value| model.run(vec![(name.clone(), x)]).expect("runs");
    for _ in 0..3 {
        run(input.clone());
    }
    let mut times = Vec::with_capacity(iters);
    let mut out = None;
    for _ in 0..iters {
        let x = input.clone();
        let t = Instant::now();
        out = Some(run(x));
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let got = out.expect("ran").remove(0).1;
    let diff = (got.f32().data.iter().zip(&expected.f32().data))
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!(
        "nnsign {} batch={} threads={} median_ms={:.3} max_abs_diff={diff:.2e}",
        dir.file_name().and_then(|n| n.to_str()).unwrap_or("model"),
        input.shape()[0],
        rayon::current_num_threads(),
        times[times.len() / 2]
    );
}
