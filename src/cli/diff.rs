//! `nnsign diff`: what changed between two artifacts, from their signed manifests and digests.

use std::path::{Path, PathBuf};

use nnsign::diff::{self, ArchStatus, Content, Diff, FieldChange, TensorRef};
use nnsign::keys::hex;
use nnsign::signature::Checked;
use nnsign::verify::Authenticated;
use serde_json::json;

use nnsign::keys::TrustStore;

use super::exit::DIFFERENT;
use super::{key_failure, progress_bar, report, rfc3339, verify_failure, Common, Failure, Result};

// Exit code `exit::DIFFERENT` (10) when the artifacts differ, or when they cannot be shown
// identical (an encrypted payload's content is unknown). diff(1) says 1, but nnsign's 1 is a
// malformed input file, and a script must be able to tell a difference from a failure.

/// Show what changed between two artifacts: metadata, architecture, recipients, and which
/// tensors were added, removed, changed in dtype or shape, or changed in content.
///
/// Example:
///   nnsign diff model-1.2.0.nns model-1.3.0.nns
///   nnsign diff old.nns new.nns --values --json | jq .tensors.content_changed
///   nnsign diff old.nns new.nns --trust keys/   # both must be signed by one of these keys
///
/// Content is compared through the signed SHA-256 digests of each tensor, without reading or
/// decrypting the payload. An encrypted artifact hides its tensors and architecture: their
/// change is "unknown". --values also reads both payloads, checking every digest as `verify`
/// does, and gives the largest absolute difference of each changed tensor (floats widened to
/// f64, integers exactly).
///
/// Signatures must be cryptographically valid; without --trust, as for `inspect`, who signed is
/// shown but not judged. diff is not a deploy gate: no policy, expiry or rollback state applies.
///
/// Exit code 0 when metadata, architecture, recipients and tensor bytes are all the same
/// (signers may differ), 10 when anything differs or content is unknown.
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The old artifact.
    #[arg(value_name = "A")]
    old: PathBuf,
    /// The new artifact.
    #[arg(value_name = "B")]
    new: PathBuf,
    /// Read both payloads (every digest checked) and compare the values of changed tensors.
    #[arg(long)]
    values: bool,
    /// Require each artifact to carry a valid signature by one of these public keys (.pub
    /// files or directories of them; repeatable). Unsigned artifacts are then refused.
    #[arg(long, value_name = "PATH")]
    trust: Vec<PathBuf>,
    #[command(flatten)]
    pub common: Common,
}

pub fn run(args: Args) -> Result<()> {
    // Only the flag: NNSIGN_TRUST configures a host's deploy gate, and diff, which compares old
    // and new artifacts whoever signed them, is not one.
    let checks_trust = !args.trust.is_empty();
    let trust = TrustStore::load(&args.trust).map_err(key_failure)?;
    let open = |path: &PathBuf| {
        diff::open(path, checks_trust.then_some(&trust)).map_err(|e| verify_failure(path, e))
    };
    let a = open(&args.old)?;
    let b = open(&args.new)?;
    let mut d = diff::compare(&a, &b);
    if args.values {
        let bar = progress_bar(args.common, a.layout.length + b.layout.length, "comparing");
        diff::compare_values(&a, &b, &mut d, &|n| bar.set_position(n))
            .map_err(|e| verify_failure(&e.path, e.source))?;
        bar.finish_and_clear();
    }
    let values_note = (args.values && (a.manifest.is_encrypted() || b.manifest.is_encrypted()))
        .then_some("every digest checked; an encrypted payload's values are not compared (nothing is decrypted)");
    let mut value = serde_json::to_value(&d).expect("a diff is plain data");
    value["ok"] = json!(d.identical);
    value["exit_code"] = json!(if d.identical { 0 } else { DIFFERENT });
    value["old"] = side(&a, checks_trust);
    value["new"] = side(&b, checks_trust);
    value["trust_checked"] = json!(checks_trust);
    value["payload_checked"] = json!(args.values);
    value["values_note"] = json!(values_note);
    report(args.common, value, || {
        text(&args, &a, &b, &d, checks_trust, values_note)
    });
    if d.identical {
        return Ok(());
    }
    let what = if d.content == Content::Unknown {
        "cannot be shown identical (encrypted content)"
    } else {
        "differ"
    };
    Err(Failure::new(
        DIFFERENT,
        "different",
        None,
        format!("{} and {} {what}", args.old.display(), args.new.display()),
    )
    .reported())
}

/// Who signed: each valid signature's key id with the trust-store file that holds it (none when
/// trust is not checked), and the signatures that do not count, described.
fn signatures(
    auth: &Authenticated,
    checks_trust: bool,
) -> (Vec<(String, Option<&Path>)>, Vec<String>) {
    let mut valid: Vec<(String, Option<&Path>)> = (auth.signers.iter())
        .map(|s| (s.key.id().to_string(), Some(s.trusted_by.as_path())))
        .collect();
    let mut others = Vec::new();
    for c in &auth.others {
        match c {
            Checked::Valid(key) if !checks_trust => valid.push((key.id().to_string(), None)),
            _ => others.push(nnsign::verify::describe_untrusted(c)),
        }
    }
    (valid, others)
}

/// One artifact's identity and signers, as reported beside the diff.
fn side(auth: &Authenticated, checks_trust: bool) -> serde_json::Value {
    let (valid, others) = signatures(auth, checks_trust);
    let signers: Vec<serde_json::Value> = (valid.iter())
        .map(|(id, by)| json!({"key_id": id, "trusted_by": by}))
        .collect();
    json!({
        "artifact": auth.path(),
        "digest": format!("sha256:{}", hex(&auth.digest)),
        "signers": signers,
        "other_signatures": others,
        "encrypted_to": diff::recipients(&auth.manifest),
    })
}

fn signed_by(auth: &Authenticated, checks_trust: bool) -> String {
    let (valid, others) = signatures(auth, checks_trust);
    if valid.is_empty() && others.is_empty() {
        return "unsigned".into();
    }
    let mut who: Vec<String> = (valid.iter())
        .map(|(id, by)| match by {
            Some(by) => format!("key {id} (trusted: {})", by.display()),
            None => format!("key {id} (valid, trust not checked)"),
        })
        .collect();
    who.extend(others);
    format!("signed by {}", who.join(", "))
}

fn text(
    args: &Args,
    a: &Authenticated,
    b: &Authenticated,
    d: &Diff,
    checks_trust: bool,
    values_note: Option<&str>,
) -> String {
    let mut s = format!(
        "--- {}  sha256:{}  {}\n+++ {}  sha256:{}  {}\n",
        args.old.display(),
        hex(&a.digest),
        signed_by(a, checks_trust),
        args.new.display(),
        hex(&b.digest),
        signed_by(b, checks_trust),
    );
    if d.metadata.is_empty() {
        s += "metadata: unchanged\n";
    } else {
        s += "metadata:\n";
        for c in &d.metadata {
            s += &field_line(c);
        }
    }
    let arch = &d.architecture;
    let summary = |g: &Option<diff::ArchSummary>| match g {
        Some(g) => format!("op-set {}, {} nodes", g.opset, g.nodes),
        None => "none".into(),
    };
    s += &match arch.status {
        ArchStatus::None => "architecture: none (weights only)\n".into(),
        ArchStatus::Unchanged if arch.new.is_none() => {
            "architecture: unchanged (inside the same encrypted payload)\n".into()
        }
        ArchStatus::Unchanged => format!("architecture: unchanged ({})\n", summary(&arch.new)),
        ArchStatus::Added => format!("architecture: added ({})\n", summary(&arch.new)),
        ArchStatus::Removed => format!("architecture: removed (was {})\n", summary(&arch.old)),
        ArchStatus::Unknown => "architecture: unknown (inside the encrypted payload)\n".into(),
        ArchStatus::Changed => {
            let mut t = format!(
                "architecture: changed ({} -> {})\n",
                summary(&arch.old),
                summary(&arch.new)
            );
            for (mark, names) in [
                ("+", &arch.nodes_added),
                ("-", &arch.nodes_removed),
                ("~", &arch.nodes_changed),
            ] {
                for n in names {
                    t += &format!("  {mark} node {n}\n");
                }
            }
            if arch.inputs_changed {
                t += "  ~ graph inputs\n";
            }
            if arch.outputs_changed {
                t += "  ~ graph outputs\n";
            }
            t
        }
    };
    let enc = &d.encryption;
    let to = |r: &Option<Vec<String>>| match r {
        Some(r) => format!("to {}", r.join(", ")),
        None => "not encrypted".into(),
    };
    s += &if !enc.changed() {
        format!("encryption: unchanged ({})\n", to(&enc.new))
    } else {
        format!("encryption: {} -> {}\n", to(&enc.old), to(&enc.new))
    };
    s += &tensor_lines(d);
    s += &match d.content {
        Content::Same => "content: same\n".to_owned(),
        Content::Different => "content: different\n".to_owned(),
        Content::Unknown => "content: unknown\n".to_owned(),
    };
    if let Some(note) = &d.content_note {
        s += &format!("  {note}\n");
    }
    if let Some(note) = values_note {
        s += &format!("values: {note}\n");
    }
    s += if d.identical {
        "identical\n"
    } else {
        "not identical\n"
    };
    s
}

fn field_line(c: &FieldChange) -> String {
    let name = c.path.join(".");
    let show = |v: &serde_json::Value| {
        // Times are seconds in the manifest; a date reads better.
        match (c.path.as_slice(), v.as_u64()) {
            ([f], Some(secs)) if f == "created" || f == "expires" => rfc3339(secs),
            _ => v.to_string(),
        }
    };
    match (&c.old, &c.new) {
        (None, Some(v)) => format!("  + {name}: {}\n", show(v)),
        (Some(v), None) => format!("  - {name}: {}\n", show(v)),
        (Some(o), Some(n)) => format!("  ~ {name}: {} -> {}\n", show(o), show(n)),
        (None, None) => String::new(),
    }
}

fn tensor_lines(d: &Diff) -> String {
    let t = &d.tensors;
    if !t.known {
        return "tensors: unknown (inside the encrypted payload)\n".into();
    }
    let shape = |r: &TensorRef| format!("{} {:?}", r.dtype, r.shape);
    let mut counts = Vec::new();
    for (n, what) in [
        (t.content_changed.len(), "changed in content"),
        (t.shape_or_dtype_changed.len(), "changed in shape or dtype"),
        (t.added.len(), "added"),
        (t.removed.len(), "removed"),
        (t.unchanged, "unchanged"),
    ] {
        if n > 0 {
            counts.push(format!("{n} {what}"));
        }
    }
    if counts.is_empty() {
        counts.push("none".into());
    }
    let mut s = format!("tensors: {}\n", counts.join(", "));
    for c in &t.content_changed {
        s += &format!("  ~ {}  {} {:?}", c.name, c.dtype, c.shape);
        s += &match &c.values {
            None => "  content changed\n".into(),
            Some(v) => {
                // Four significant digits for reading; --json has every digit.
                let max = match v.max_abs_diff {
                    Some(diff::MaxAbsDiff::Float(f)) => format!("max |b - a| {f:.3e}, "),
                    Some(m) => format!("max |b - a| {m}, "),
                    None => String::new(),
                };
                let nan = match v.nan_mismatches {
                    0 => String::new(),
                    n => format!(", {n} NaN in one only"),
                };
                let note = v.note.map(|n| format!(" ({n})")).unwrap_or_default();
                format!(
                    "  {max}{} of {} elements differ{nan}{note}\n",
                    v.elements_differ, v.elements
                )
            }
        };
    }
    for r in &t.shape_or_dtype_changed {
        s += &format!("  ! {}  {} -> {}\n", r.name, shape(&r.old), shape(&r.new));
    }
    for r in &t.added {
        s += &format!("  + {}  {}\n", r.name, shape(r));
    }
    for r in &t.removed {
        s += &format!("  - {}  {}\n", r.name, shape(r));
    }
    s
}
