//! The ops that tests/conformance/expectations.tsv claims (its `# claimed:` lines, which decide
//! which of ONNX's backend node tests `scripts/onnx_conformance.py` runs in CI) are exactly the
//! ONNX ops of nnsign's newest op-set, and each has a `# op:` section with at least one case.
//! So an op added to the runtime without its conformance results, or claimed without being
//! implemented, fails here, without Python.

use std::collections::{BTreeMap, BTreeSet};

/// The ops of the newest op-set.
fn newest_ops() -> Vec<&'static str> {
    nnsign::ops::ops_of(nnsign::model::OPSET)
}

/// Ops of the nnsign schema that ONNX does not have (docs/SCHEMA.md).
const NOT_ONNX: &[&str] = &["Dense"];

#[test]
fn claimed_ops_are_the_onnx_ops_of_the_newest_opset_and_each_has_cases() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/conformance/expectations.tsv"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let mut claimed = BTreeSet::new();
    let mut cases: BTreeMap<&str, usize> = BTreeMap::new();
    let mut section = None;
    for line in text.lines() {
        if let Some(ops) = line.strip_prefix("# claimed:") {
            claimed.extend(ops.split_whitespace());
        } else if let Some(op) = line.strip_prefix("# op:") {
            section = op.split_whitespace().next();
        } else if !line.is_empty() && !line.starts_with('#') {
            let op = section.unwrap_or_else(|| panic!("{line:?} comes before any `# op:` line"));
            *cases.entry(op).or_default() += 1;
        }
    }
    let ours: BTreeSet<&str> = (newest_ops().iter().copied())
        .filter(|op| !NOT_ONNX.contains(op))
        .collect();
    let unclaimed: Vec<&&str> = ours.difference(&claimed).collect();
    let not_ours: Vec<&&str> = claimed.difference(&ours).collect();
    assert!(
        unclaimed.is_empty() && not_ours.is_empty(),
        "the `# claimed:` lines of {path} must list the ONNX ops of nnsign's newest op-set: \
         add {unclaimed:?}, remove {not_ours:?}, then run scripts/onnx_conformance.py with --update"
    );
    let without: Vec<&&str> = claimed
        .iter()
        .filter(|op| !cases.contains_key(*op))
        .collect();
    assert!(
        without.is_empty(),
        "claimed ops with no case in {path}: {without:?}; run scripts/onnx_conformance.py with --update"
    );
}
