//! nnsign's side of the CPU inference benchmark (scripts/bench.sh runs it beside
//! scripts/bench_runtime.py, which times onnxruntime on the same models and inputs).
//!
//!     bench_runtime MODEL INPUT EXPECTED.npy [ITERS]
//!
//! MODEL is a folder holding `arch.json` and `weights.safetensors`, or a model file that nnsign
//! imports with its graph (ONNX). INPUT is an `.npy` file, fed to the lone graph input, or an
//! `.npz` archive whose arrays are named after the graph inputs they feed. The model is
//! validated and built as `verify-load` builds it (from the weights, without an artifact: this
//! measures the runtime), run 3 times to warm up, then ITERS times (default 20); prints the
//! median wall time of a run and the largest difference from EXPECTED.npy. A model that nnsign
//! cannot import, validate or run is reported on stderr with the reason, and the exit code is 1.

use std::path::Path;
use std::time::Instant;

use nnsign::format::TensorInfo;
use nnsign::model::Graph;
use nnsign::runtime::{self, Model, Value};

fn fail(what: &Path, why: impl std::fmt::Display) -> ! {
    eprintln!("bench_runtime: {}: {why}", what.display());
    std::process::exit(1);
}

/// The tensors of `path` as runtime values, and the graph it carries, if any.
fn load(path: &Path) -> (Vec<(TensorInfo, Value)>, Option<Graph>) {
    let imported = nnsign::import::import(&[path.to_owned()]).unwrap_or_else(|e| {
        // An import error names the file itself.
        eprintln!("bench_runtime: {e}");
        std::process::exit(1);
    });
    let values = (imported.tensors.into_iter())
        .map(|t| {
            let info = TensorInfo {
                name: t.name.clone(),
                dtype: t.dtype,
                shape: t.shape.clone(),
                offset: 0,
                length: t.bytes.len() as u64,
            };
            let v = runtime::to_value(&info, &t.bytes).unwrap_or_else(|e| fail(path, e));
            (info, v)
        })
        .collect();
    (values, imported.arch)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: bench_runtime MODEL INPUT EXPECTED.npy [ITERS]");
        std::process::exit(2);
    }
    let source = Path::new(&args[1]);
    let iters: usize = args
        .get(4)
        .map_or(20, |s| s.parse().expect("ITERS is a number"));
    let (graph, weights) = if source.is_dir() {
        let arch = std::fs::read_to_string(source.join("arch.json")).expect("arch.json");
        let graph = Graph::from_json(&arch).expect("a valid graph");
        (graph, load(&source.join("weights.safetensors")).0)
    } else {
        let (weights, graph) = load(source);
        let graph = graph.unwrap_or_else(|| fail(source, "no graph in the model file"));
        (graph, weights)
    };
    let infos: Vec<TensorInfo> = weights.iter().map(|(i, _)| i.clone()).collect();
    let plan = graph.validate(&infos).unwrap_or_else(|e| fail(source, e));
    if std::env::var_os("NNSIGN_BENCH_DEBUG").is_some() {
        eprintln!(
            "batching: {:?}; steps: {:?}",
            plan.batching,
            plan.steps
                .iter()
                .map(|s| s.op_name.clone())
                .collect::<Vec<_>>()
        );
    }
    let model = Model::new(
        plan,
        |info| {
            let (_, v) = (weights.iter().find(|(i, _)| i.name == info.name)).expect("validated");
            Ok(v.clone())
        },
        u64::MAX,
    )
    .unwrap_or_else(|e| fail(source, e));
    let input_path = Path::new(&args[2]);
    let mut inputs: Vec<(String, Value)> = (load(input_path).0.into_iter())
        .map(|(info, v)| (info.name, v))
        .collect();
    if inputs.len() == 1 && !args[2].ends_with(".npz") {
        inputs[0].0 = model.inputs().next().expect("an input").name.clone();
    }
    let expected = load(Path::new(&args[3])).0.remove(0).1;
    // The inputs are copied before the clock starts: a caller hands its buffers over.
    let run = |x: Vec<(String, Value)>| model.run(x).unwrap_or_else(|e| fail(source, e));
    for _ in 0..3 {
        run(inputs.clone());
    }
    let mut times = Vec::with_capacity(iters);
    let mut out = None;
    for _ in 0..iters {
        let x = inputs.clone();
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
        source
            .file_stem()
            .and_then(|n| n.to_str())
            .unwrap_or("model"),
        inputs[0].1.shape()[0],
        rayon::current_num_threads(),
        times[times.len() / 2]
    );
}
