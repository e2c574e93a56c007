//! The hostile-input suite (tests/fixtures/hostile, made by scripts/make_hostile_fixtures.py
//! with Python's own pickle, pickletools and zipfile): forbidden globals through every opcode
//! that imports or calls, payloads hidden before and after a state dict, memo, stack and clone
//! bombs, lying lengths, tensors reaching past their storage, storage keys used with two dtypes
//! or sizes (in checkpoints, legacy files and storage streams), zip tricks, pickles under other
//! names, raw pickles of state dicts whose storages' `torch.save` streams hide code or lie, a
//! Keras Lambda and ONNX external data that leaves its folder. Each is refused with
//! its message, under a 4 GB address-space limit, and the canary that any of the payloads
//! would create if it ran never appears. `nnsign scan` flags every one that carries code.

mod common;

use common::*;

#[test]
fn every_hostile_file_is_refused_by_name_and_nothing_runs() {
    let dir = fixture("hostile");
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("cases.json")).unwrap()).unwrap();
    let cases = cases["cases"].as_array().unwrap();
    assert!(cases.len() >= 50, "{}", cases.len());
    let work = tempfile::tempdir().unwrap();
    let bin = env!("CARGO_BIN_EXE_nnsign");
    let mut failures = Vec::new();
    for case in cases {
        let file = dir.join(case["file"].as_str().unwrap());
        let Some(want) = case["expect_exit"].as_i64() else {
            failures.push(format!(
                "{}: no expectation: {}",
                case["file"], case["problem"]
            ));
            continue;
        };
        let message = case["expect_message"].as_str().unwrap_or("");
        let out = work.path().join("out.nns");
        // In the scratch folder, with memory capped: a bomb fails here instead of going on.
        let run = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "ulimit -v 4000000; exec {bin} pack \"$1\" -o \"$2\""
            ))
            .arg("pack")
            .arg(&file)
            .arg(&out)
            .current_dir(work.path())
            .output()
            .unwrap();
        let code = run.status.code().unwrap_or(-1) as i64;
        let stderr = String::from_utf8_lossy(&run.stderr);
        if code != want || !stderr.contains(message) {
            failures.push(format!(
                "{}: exit {code} (want {want}): {}",
                case["file"],
                stderr.trim()
            ));
        }
        if want != 0 && out.exists() {
            failures.push(format!(
                "{}: refused, yet an artifact was written",
                case["file"]
            ));
        }
        if case["code_payload"] == true {
            let scan = nnsign(["scan".as_ref(), file.as_os_str()]);
            if scan.code != 8 {
                failures.push(format!(
                    "{}: scan exit {}: {}",
                    case["file"], scan.code, scan.stdout
                ));
            }
        }
        let _ = std::fs::remove_file(&out);
    }
    assert!(
        !work.path().join("hostile_canary_was_created").exists(),
        "a payload ran: the canary exists"
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}
