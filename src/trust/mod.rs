//! May this artifact be used here? The one place that decides it: signatures by trusted keys,
//! revoked keys, the policy's rule for the model (k-of-n signers, minimum version, maximum age),
//! expiry and creation time against a clock, and the host's rollback state.
//!
//! [`Trust::admit`] takes an opened [`Artifact`] and returns one verdict: an [`Admitted`]
//! artifact, whose payload can then be verified, loaded or unpacked, or a [`Refused`] one with
//! every reason that applies. Each signature is verified once ([`Artifact::authenticate`]);
//! nothing in the manifest is decoded before a trusted, non-revoked key vouched for it (or,
//! when unsigned artifacts are allowed, before it proved to carry no signature at all).
//!
//! ```no_run
//! use nnsign::trust::{Clock, Policy, Trust};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let trust = Trust::new(Policy::load("/etc/nnsign/policy.toml".as_ref())?)
//!     .with_state(Some("/var/lib/nnsign/state.json".into()));
//! let artifact = nnsign::verify::Artifact::open("model.nns".as_ref())?;
//! match trust.admit(artifact, Clock::System) {
//!     Ok(admitted) => println!("signed by {} key(s)", admitted.counted.len()),
//!     Err(refused) => eprintln!("refused: {refused}"),
//! }
//! # Ok(())
//! # }
//! ```

pub mod policy;
pub mod state;

use std::path::{Path, PathBuf};

pub use crate::clock::Clock;
use crate::keys::{hex, KeyId, TrustStore};
use crate::verify::{Artifact, Authenticated, VerifyError};
pub use policy::{Policy, PolicyError, PolicyKey};
pub use state::{Recorded, State};

/// What a host trusts: a policy (trusted keys alone make the policy "any of these keys, one
/// signature, any model"), whether an artifact with no signature at all may pass, and the
/// rollback state.
pub struct Trust {
    pub policy: Policy,
    pub allow_unsigned: bool,
    pub state: Option<State>,
}

/// Why an artifact may not be used here.
#[derive(Debug, thiserror::Error)]
pub enum Reason {
    /// The artifact is malformed, a signature does not verify, it is unsigned, or no signature
    /// is by a trusted key.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The only valid signatures are by keys the policy revokes.
    #[error("signed only by revoked key(s) {} (revoked in {})", .keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", "), .policy.display())]
    RevokedOnly { keys: Vec<KeyId>, policy: PathBuf },
    /// A rule of the policy, the expiry, or the rollback state refuses it.
    #[error(transparent)]
    Policy(#[from] PolicyError),
}

/// The verdict against an artifact: every reason that applies, in the order the checks run
/// (signatures and trust, then the policy's rule, the version, the age, the times, then the
/// rollback state). The first is the one a one-line report gives. Once the signatures fail,
/// nothing after them can be judged: the manifest is never decoded.
#[derive(Debug)]
pub struct Refused {
    pub path: PathBuf,
    pub reasons: Vec<Reason>,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let reasons: Vec<String> = self.reasons.iter().map(ToString::to_string).collect();
        write!(f, "{}: {}", self.path.display(), reasons.join("; "))
    }
}

impl std::error::Error for Refused {}

impl Refused {
    fn one(path: &Path, reason: impl Into<Reason>) -> Refused {
        Refused {
            path: path.to_owned(),
            reasons: vec![reason.into()],
        }
    }

    /// The reason that decides a one-line report (and the CLI's exit code).
    pub fn first(self) -> Reason {
        self.reasons
            .into_iter()
            .next()
            .expect("a refusal has a reason")
    }
}

/// An artifact that may be used here. Its payload has not been read yet: every byte is still
/// checked against its digest as it is read ([`Authenticated`]).
pub struct Admitted {
    pub artifact: Authenticated,
    /// The policy keys that counted towards the rule's threshold (none for an unsigned
    /// artifact that was allowed).
    pub counted: Vec<PolicyKey>,
    state: Option<State>,
}

impl Admitted {
    /// What was admitted, as `nnsign verify --json` reports it (docs: README, "JSON output"):
    /// the artifact, who signed it and which signatures counted, the model's name and version,
    /// its digest, tensors and recipients.
    pub fn describe(&self) -> serde_json::Value {
        use serde_json::json;
        let auth = &self.artifact;
        let m = &auth.manifest.model;
        let digest = format!("sha256:{}", hex(&auth.digest));
        let signers: Vec<serde_json::Value> = auth
            .signers
            .iter()
            .map(|s| {
                let policy = self.counted.iter().find(|k| k.key == s.key);
                json!({
                    "key_id": s.key.id().to_string(),
                    "name": policy.and_then(|k| k.name.clone()),
                    "trusted_by": s.trusted_by,
                    "counted": policy.is_some(),
                })
            })
            .collect();
        let others: Vec<String> = auth
            .others
            .iter()
            .map(crate::verify::describe_untrusted)
            .collect();
        let recipients = crate::diff::recipients(&auth.manifest).unwrap_or_default();
        let unsupported: Vec<serde_json::Value> = (auth.unsupported().into_iter())
            .map(|(kid, alg)| json!({"key_id": hex(kid), "algorithm": alg}))
            .collect();
        let warnings: Vec<String> = (auth.unsupported().into_iter())
            .map(|(kid, alg)| crate::verify::unsupported_warning(kid, alg))
            .collect();
        json!({
            "artifact": auth.path(),
            "encrypted_to": recipients,
            "signed": !auth.signers.is_empty(),
            "signers": signers,
            "other_signatures": others,
            "unsupported_signatures": unsupported,
            "warnings": warnings,
            "model": {"name": m.name, "version": m.version, "created": m.created, "expires": m.expires},
            "parent": m.parent.as_ref().map(|p| json!({
                "digest": format!("sha256:{}", hex(&p.digest)),
                "name": p.name,
                "version": p.version,
            })),
            "digest": digest,
            "tensors": auth.layout.tensors.len(),
            "payload_bytes": auth.layout.length,
            "architecture": auth.manifest.arch.is_some(),
        })
    }
}

impl Trust {
    /// Trust as `policy` says, with its own state file if it names one.
    pub fn new(policy: Policy) -> Trust {
        let state = policy.state.as_deref().map(State::new);
        Trust {
            policy,
            allow_unsigned: false,
            state,
        }
    }

    /// Trust any key of `store` (read from `source`, for messages): one signature, any model.
    pub fn keys(store: &TrustStore, source: &Path) -> Trust {
        Trust::new(Policy::from_trust(store, source))
    }

    /// Uses `state` as the rollback state file instead of the policy's (none: the policy's).
    pub fn with_state(mut self, state: Option<PathBuf>) -> Trust {
        if let Some(path) = state {
            self.state = Some(State::new(&path));
        }
        self
    }

    /// Lets an artifact with no signature at all pass (its digests are still checked). A
    /// signed artifact still needs a trusted signer. Anyone can make an unsigned artifact, so
    /// [`Trust::admit`] still refuses one when a rule asks more than one signature by any
    /// listed key (a threshold, chosen signers, a minimum version or a maximum age) or when
    /// there is a rollback state, whose recorded versions it could otherwise raise.
    pub fn allowing_unsigned(mut self, allow: bool) -> Trust {
        self.allow_unsigned = allow;
        self
    }

    /// Whether no key at all is trusted (every signed artifact would be refused).
    pub fn trusts_no_key(&self) -> bool {
        self.policy.trust_store().is_empty()
    }

    /// Decides whether `artifact` may be used here, at the time `clock` gives.
    pub fn admit(&self, artifact: Artifact, clock: Clock) -> Result<Admitted, Refused> {
        let path = artifact.path().to_owned();
        let auth = match artifact.authenticate(&self.policy.trust_store(), self.allow_unsigned) {
            Ok(auth) => auth,
            Err(VerifyError::Untrusted { why, valid }) => {
                let revoked: Vec<KeyId> = (valid.iter())
                    .map(|k| k.id())
                    .filter(|id| self.policy.revoked.contains(id))
                    .collect();
                let mut reasons = Vec::new();
                if !revoked.is_empty() {
                    // Said first: the trust check alone would call the key unknown.
                    reasons.push(Reason::RevokedOnly {
                        keys: revoked,
                        policy: self.policy.source.clone(),
                    });
                }
                reasons.push(VerifyError::Untrusted { why, valid }.into());
                return Err(Refused { path, reasons });
            }
            Err(e) => return Err(Refused::one(&path, e)),
        };
        let now = clock.now();
        let model = &auth.manifest.model;
        let (counted, mut refusals) = if auth.signers.is_empty() {
            // Unsigned, and allowed: no rule can apply, but an expiry still does.
            let mut refusals = Vec::new();
            if self.policy.asks_more_than_a_signature() || self.state.is_some() {
                refusals.push(PolicyError::Signers(format!(
                    "the artifact is unsigned: unsigned artifacts are allowed, but {} asks for signatures by chosen keys or keeps a rollback state, which an unsigned artifact cannot satisfy or raise",
                    self.policy.source.display()
                )));
            }
            let times = policy::check_times(model, now, self.policy.clock_skew);
            refusals.extend(times.err());
            (Vec::new(), refusals)
        } else {
            self.policy.judge(&auth, now)
        };
        if let Some(state) = &self.state {
            let digest = digest_name(&auth);
            let seen = state.check(&model.name, model.version.as_deref(), &digest);
            refusals.extend(seen.err());
        }
        if !refusals.is_empty() {
            let reasons = refusals.into_iter().map(Reason::Policy).collect();
            return Err(Refused { path, reasons });
        }
        Ok(Admitted {
            artifact: auth,
            counted,
            state: self.state.clone(),
        })
    }
}

impl Admitted {
    /// Records the artifact's version in the rollback state, once it has been used (its payload
    /// verified, loaded or unpacked): checked again under the state's lock, since another
    /// process may have accepted a newer version meanwhile. `None` without a state file.
    pub fn record(&self, clock: Clock) -> Result<Option<(&Path, Recorded)>, PolicyError> {
        let Some(state) = &self.state else {
            return Ok(None);
        };
        let m = &self.artifact.manifest.model;
        let digest = digest_name(&self.artifact);
        let done = state.record(&m.name, m.version.as_deref(), &digest, clock.now())?;
        Ok(Some((state.path(), done)))
    }
}

/// The artifact digest as the state file writes it.
fn digest_name(auth: &Authenticated) -> String {
    format!("sha256:{}", hex(&auth.digest))
}
