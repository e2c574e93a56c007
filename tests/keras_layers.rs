//! Each Keras layer setting the importer maps, in a small model of its own
//! (tests/fixtures/keras_layers, made by scripts/make_keras_layers_fixture.py with Keras 3.15 on
//! the torch backend): packed, signed, run by `verify-load` and compared with what Keras's
//! `model.predict` computed, to 1e-5. And the settings it refuses, with their messages.

mod common;

use common::*;

/// The models, by file stem: `<name>.keras` and `<name>.npz` (`input.*`, `expected.*`).
const MODELS: &[&str] = &[
    "lstm_last",
    "lstm_sequences",
    "gru_reset_after",
    "gru_reset_before",
    "bigru_sum",
    "bilstm_ave",
    "bigru_before_concat",
    "lstm_relu",
    "gru_relu",
    "lstm_no_bias",
    "gru_no_bias",
    "gru_before_no_bias",
    "upsample_nearest_2",
    "upsample_nearest_2x3",
    "upsample_bilinear_2x3",
    "deconv_same_k2s2",
    "deconv_same_k3s3x1",
    "deconv_valid_k3s2",
    "deconv_valid_no_bias",
    "deconv_valid_k1x2s2x3",
    "deconv_same_k3s2",
    "deconv_same_k4x1s2x3",
    "deconv_same_k3s1",
    "deconv_same_output_padding",
    "deconv_valid_output_padding",
    "leaky_relu",
    "mha_self",
    "mha_key",
    "mha_key_positional",
];

const TOLERANCE: f64 = 1e-5;

#[test]
fn each_mapped_layer_computes_what_keras_computes() {
    let dir = tempfile::tempdir().unwrap();
    let mut failed = Vec::new();
    for name in MODELS {
        let art = dir.path().join(format!("{name}.nns"));
        let packed = pack_signed(&fixture(&format!("keras_layers/{name}.keras")), &art);
        assert_eq!(packed.code, 0, "{name}: {packed:?}");
        let all = arrays(&fixture(&format!("keras_layers/{name}.npz")));
        let (run, got) = verify_load_npz(dir.path(), &art, &all);
        assert_eq!(run.code, 0, "{name}: {run:?}");
        let want = with_prefix(&all, "expected.");
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "{name}: outputs"
        );
        for (output, (_, want)) in &want {
            let diff = max_diff(&got[output].1, want);
            eprintln!("{name} {output}: max diff {diff:.2e}");
            if diff > TOLERANCE {
                failed.push(format!("{name} {output}: {diff}"));
            }
        }
    }
    assert!(failed.is_empty(), "over {TOLERANCE}: {failed:#?}");
}

/// Settings nnsign cannot run as Keras does: `pack` exits 1, names the layer and writes nothing.
#[test]
fn fail_settings_keras_computes_otherwise_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "fail_bilstm_mul",
            "layer \"bi\" (Bidirectional): merge_mode \"mul\" is not mapped (concat, sum, ave)",
        ),
        (
            "fail_bigru_merge_none",
            "layer \"bi\" (Bidirectional): merge_mode None (two outputs) is not mapped (concat, sum, ave)",
        ),
        (
            "fail_lstm_stateful",
            "layer \"lstm\" (LSTM): stateful=True is not mapped",
        ),
        (
            "fail_mha_causal",
            "layer \"mha\" (MultiHeadAttention): is called with use_causal_mask=true, which is not mapped",
        ),
        (
            "fail_mha_scores",
            "layer \"mha\" (MultiHeadAttention): is called with return_attention_scores=true, which is not mapped",
        ),
        (
            "fail_embedding_mask_zero",
            "layer \"embed\" (Embedding): mask_zero=True is not mapped (Keras would mask the padded steps in the layers after it)",
        ),
        (
            "fail_gru_initial_state",
            "layer \"rnn\" (GRU): is called with initial_state (a tensor), which is not mapped",
        ),
        (
            "fail_lstm_initial_state",
            "layer \"rnn\" (LSTM): is called with initial_state (tensors), which is not mapped",
        ),
    ];
    for (name, message) in cases {
        let model = fixture(&format!("keras_layers/{name}.keras"));
        let art = dir.path().join(format!("{name}.nns"));
        let run = pack_signed(&model, &art);
        assert_eq!(run.code, 1, "{name}: {run:?}");
        // The error line (a warning about the test key's file mode may come before it).
        let want = format!("nnsign: error: {}: {message}", model.display());
        assert!(
            run.stderr.lines().any(|l| l == want),
            "{name}: no line {want:?} in\n{}",
            run.stderr
        );
        assert!(!art.exists(), "{name}");
    }
}
