//! Trust policy (docs/POLICY.md): which keys may release which models, how many of them must
//! sign, how new and how fresh a release must be, and which keys are revoked.
//!
//! A policy is applied in two steps, so that nothing in a manifest is decoded before a trusted
//! key vouched for it. First, [`Policy::trust_store`] gives the keys whose signatures count
//! (revoked keys removed); [`crate::verify::Artifact::authenticate`] needs one of them before
//! it decodes the manifest. Then [`Policy::judge`] looks up the rule for the model's name and
//! checks the signer threshold, the version and the artifact's age and expiry.
//! [`super::Trust::admit`] runs both steps and the rollback state.
//!
//! Every decision is monotone in the signatures: a signature added can only add a signer, a
//! signature removed can only remove one, and a signature made twice by one key makes the
//! artifact invalid (FORMAT.md section 4, rule 6) rather than count twice.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::clock::{parse_duration, span, utc};
use crate::format::{parse_version, ModelInfo};
use crate::keys::{KeyId, PublicKey, TrustStore};
use crate::verify::Authenticated;

/// Largest policy file read, in bytes.
pub const MAX_POLICY_LEN: u64 = 1 << 20;
/// Clock difference allowed between signer and verifier unless a policy says otherwise.
pub const DEFAULT_CLOCK_SKEW: u64 = 300;

/// Why an artifact or a policy was refused.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The policy file cannot be used (exit 2).
    #[error("{0}")]
    Config(String),
    /// Not enough of the right signers (exit 4).
    #[error("{0}")]
    Signers(String),
    /// No rule covers the model's name (exit 4).
    #[error("{0}")]
    NoRule(String),
    /// Too old, expired, from the future, below the minimum version or a rollback (exit 9).
    #[error("{0}")]
    Freshness(String),
    /// The rollback state file could not be read or written (exit 3).
    #[error("{0}")]
    Io(String),
}

/// A trusted key and what the policy calls it.
#[derive(Debug, Clone)]
pub struct PolicyKey {
    pub key: PublicKey,
    pub name: Option<String>,
    pub source: PathBuf,
}

impl PolicyKey {
    /// "ci (1a2b3c4d5e6f7a8b)", or the bare key id.
    pub fn label(&self) -> String {
        match &self.name {
            Some(n) => format!("{n} ({})", self.key.id()),
            None => self.key.id().to_string(),
        }
    }
}

/// What a rule demands of the models whose names match it.
#[derive(Debug, Clone)]
pub struct Rule {
    /// A glob over model names: `*` any run of characters, `?` one character.
    pub models: String,
    /// Indexes into the policy's keys of the keys that count; `None`: all of them.
    pub signers: Option<Vec<usize>>,
    pub threshold: usize,
    pub min_version: Option<semver::Version>,
    /// Seconds.
    pub max_age: Option<u64>,
}

/// A trust policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The policy file, or the first `--trust` path.
    pub source: PathBuf,
    pub keys: Vec<PolicyKey>,
    pub revoked: BTreeSet<KeyId>,
    /// In order; the first whose pattern matches a model's name applies.
    pub rules: Vec<Rule>,
    /// The rollback state file the policy names, if any.
    pub state: Option<PathBuf>,
    /// Seconds.
    pub clock_skew: u64,
}

/// The policy file, as written (docs/POLICY.md).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    key: Vec<KeyEntry>,
    #[serde(default)]
    revoked: Vec<String>,
    #[serde(default)]
    rule: Vec<RuleEntry>,
    state: Option<PathBuf>,
    clock_skew: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyEntry {
    path: PathBuf,
    name: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    models: String,
    signers: Option<Vec<String>>,
    threshold: Option<usize>,
    min_version: Option<String>,
    max_age: Option<String>,
}

impl Policy {
    /// The simple case, `--trust`: any key of `store`, one signature, any model.
    pub fn from_trust(store: &TrustStore, source: &Path) -> Policy {
        let keys = (store.entries())
            .map(|(key, path)| PolicyKey {
                key: key.clone(),
                name: None,
                source: path.to_owned(),
            })
            .collect();
        Policy {
            source: source.to_owned(),
            keys,
            revoked: BTreeSet::new(),
            rules: vec![Rule {
                models: "*".into(),
                signers: None,
                threshold: 1,
                min_version: None,
                max_age: None,
            }],
            state: None,
            clock_skew: DEFAULT_CLOCK_SKEW,
        }
    }

    /// Reads a TOML policy file; key paths are relative to its folder.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let bad = |why: String| PolicyError::Config(format!("{}: {why}", path.display()));
        let text = read_capped(path).map_err(|e| bad(e.to_string()))?;
        let file: File = toml::from_str(&text).map_err(|e| bad(one_line(&e.to_string())))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut keys: Vec<PolicyKey> = Vec::new();
        for entry in &file.key {
            let at = dir.join(&entry.path);
            let store = TrustStore::load(std::slice::from_ref(&at))
                .map_err(|e| bad(format!("key {}: {e}", entry.path.display())))?;
            let found: Vec<(&PublicKey, &Path)> = store.entries().collect();
            if let Some(id) = &entry.id {
                let want = parse_key_id(id).map_err(&bad)?;
                if found.len() != 1 || found[0].0.id() != want {
                    let ids: Vec<String> = found.iter().map(|(k, _)| k.id().to_string()).collect();
                    return Err(bad(format!(
                        "key {} is pinned to id {id}, but the file holds {}",
                        entry.path.display(),
                        ids.join(", ")
                    )));
                }
            }
            if entry.name.is_some() && found.len() != 1 {
                return Err(bad(format!(
                    "key {} is a folder of {} keys; a name applies to one key file",
                    entry.path.display(),
                    found.len()
                )));
            }
            for (key, source) in found {
                if keys.iter().any(|k| k.key == *key) {
                    return Err(bad(format!("key {} is listed twice", key.id())));
                }
                keys.push(PolicyKey {
                    key: key.clone(),
                    name: entry.name.clone(),
                    source: source.to_owned(),
                });
            }
        }
        let names: Vec<&String> = keys.iter().filter_map(|k| k.name.as_ref()).collect();
        if let Some(n) = names
            .iter()
            .find(|n| names.iter().filter(|m| m == n).count() > 1)
        {
            return Err(bad(format!("two keys are named {n:?}")));
        }
        let revoked = (file.revoked.iter())
            .map(|id| parse_key_id(id))
            .collect::<Result<BTreeSet<_>, _>>()
            .map_err(&bad)?;
        let mut rules = Vec::new();
        for (n, r) in file.rule.iter().enumerate() {
            let at = |why: String| bad(format!("rule {} (models = {:?}): {why}", n + 1, r.models));
            let signers = match &r.signers {
                None => None,
                Some(list) => Some(
                    (list.iter())
                        .map(|s| resolve(&keys, s))
                        .collect::<Result<Vec<usize>, String>>()
                        .map_err(at)?,
                ),
            };
            if let Some(list) = &signers {
                // One key listed twice (by name and by id, say) must not count twice.
                if let Some(k) = (1..list.len()).find(|&i| list[..i].contains(&list[i])) {
                    let twice = &keys[list[k]];
                    return Err(at(format!(
                        "key {} is listed twice in signers",
                        twice.label()
                    )));
                }
            }
            let eligible = signers.as_ref().map_or(keys.len(), Vec::len);
            let threshold = r.threshold.unwrap_or(1);
            if threshold == 0 || threshold > eligible {
                return Err(at(format!(
                    "threshold {threshold} must be between 1 and the {eligible} keys that may sign"
                )));
            }
            let min_version = (r.min_version.as_deref())
                .map(|v| parse_version("min_version", v).map_err(|e| at(e.to_string())))
                .transpose()?;
            let max_age = (r.max_age.as_deref())
                .map(|a| parse_duration(a).map_err(&at))
                .transpose()?;
            rules.push(Rule {
                models: r.models.clone(),
                signers,
                threshold,
                min_version,
                max_age,
            });
        }
        if keys.is_empty() {
            return Err(bad("no [[key]]: the policy trusts nothing".into()));
        }
        if rules.is_empty() {
            return Err(bad(
                "no [[rule]]: no model could pass (add a rule with models = \"*\" for all)".into(),
            ));
        }
        let clock_skew = (file.clock_skew.as_deref())
            .map(|s| parse_duration(s).map_err(&bad))
            .transpose()?
            .unwrap_or(DEFAULT_CLOCK_SKEW);
        Ok(Policy {
            source: path.to_owned(),
            keys,
            revoked,
            rules,
            state: file.state.map(|s| dir.join(s)),
            clock_skew,
        })
    }

    /// The keys whose signatures count at all: the policy's keys, less the revoked ones.
    pub fn trust_store(&self) -> TrustStore {
        let mut store = TrustStore::default();
        for k in self
            .keys
            .iter()
            .filter(|k| !self.revoked.contains(&k.key.id()))
        {
            store.insert(k.key.clone(), k.source.clone());
        }
        store
    }

    /// Whether a rule asks more of an artifact than one signature by any listed key: a
    /// threshold above one, chosen signers, a minimum version or a maximum age.
    pub fn asks_more_than_a_signature(&self) -> bool {
        (self.rules.iter()).any(|r| {
            r.threshold > 1 || r.signers.is_some() || r.min_version.is_some() || r.max_age.is_some()
        })
    }

    /// The first rule whose pattern matches `name`.
    pub fn rule_for(&self, name: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| glob(&r.models, name))
    }

    /// Judges an authenticated artifact by the rule for its model's name, at time `now`
    /// (seconds since the epoch): signers, minimum version, maximum age, expiry and a creation
    /// time not in the future. Returns the keys that counted and every refusal, in a fixed
    /// order (no rule or too few signers first, then the version, the age and the times):
    /// the artifact passes when there is none.
    pub fn judge(&self, auth: &Authenticated, now: u64) -> (Vec<PolicyKey>, Vec<PolicyError>) {
        let model = &auth.manifest.model;
        let mut refusals = Vec::new();
        let Some(rule) = self.rule_for(&model.name) else {
            refusals.push(PolicyError::NoRule(format!(
                "no rule of {} covers model {:?}",
                self.source.display(),
                model.name
            )));
            refusals.extend(check_times(model, now, self.clock_skew).err());
            return (Vec::new(), refusals);
        };
        let eligible: Vec<&PolicyKey> = match &rule.signers {
            Some(list) => list.iter().map(|&i| &self.keys[i]).collect(),
            None => self.keys.iter().collect(),
        };
        let eligible: Vec<&PolicyKey> = (eligible.into_iter())
            .filter(|k| !self.revoked.contains(&k.key.id()))
            .collect();
        let counted: Vec<PolicyKey> = (eligible.iter())
            .filter(|k| auth.signers.iter().any(|s| s.key == k.key))
            .map(|k| (*k).clone())
            .collect();
        if counted.len() < rule.threshold {
            let names = |ks: &mut dyn Iterator<Item = String>| ks.collect::<Vec<_>>().join(", ");
            let mut had = names(&mut counted.iter().map(PolicyKey::label));
            if had.is_empty() {
                had = "none".into();
            }
            let mut why = format!(
                "model {:?} needs {} signature(s) from [{}] (rule models = {:?} of {}); it has {}: {had}",
                model.name,
                rule.threshold,
                names(&mut eligible.iter().map(|k| k.label())),
                rule.models,
                self.source.display(),
                counted.len(),
            );
            let revoked: Vec<String> = (auth.signers.iter())
                .map(|s| s.key.id())
                .chain(auth.others.iter().filter_map(|c| match c {
                    crate::signature::Checked::Valid(k) => Some(k.id()),
                    _ => None,
                }))
                .filter(|id| self.revoked.contains(id))
                .map(|id| id.to_string())
                .collect();
            if !revoked.is_empty() {
                why.push_str(&format!(
                    "; revoked signer(s) ignored: {}",
                    revoked.join(", ")
                ));
            }
            // A co-signature whose alg was altered no longer counts: say so, or the missing
            // signer looks as if it never signed.
            for (kid, alg) in auth.unsupported() {
                why.push_str(&format!(
                    "; not counted: {}",
                    crate::verify::unsupported_warning(kid, alg)
                ));
            }
            refusals.push(PolicyError::Signers(why));
        }
        refusals.extend(self.check_version(rule, model).err());
        if let Some(max) = rule.max_age {
            let age = now.saturating_sub(model.created);
            if age > max.saturating_add(self.clock_skew) {
                refusals.push(PolicyError::Freshness(format!(
                    "model {:?} was packed {} ago, {}; rule models = {:?} of {} allows at most {}",
                    model.name,
                    span(age),
                    utc(model.created),
                    rule.models,
                    self.source.display(),
                    span(max)
                )));
            }
        }
        refusals.extend(check_times(model, now, self.clock_skew).err());
        (counted, refusals)
    }

    fn check_version(&self, rule: &Rule, model: &ModelInfo) -> Result<(), PolicyError> {
        let Some(min) = &rule.min_version else {
            return Ok(());
        };
        let have = model.version.as_deref().ok_or_else(|| {
            PolicyError::Freshness(format!(
                "model {:?} has no version; rule models = {:?} of {} needs at least {min}",
                model.name,
                rule.models,
                self.source.display()
            ))
        })?;
        let v = parse_version("model version", have)
            .map_err(|e| PolicyError::Freshness(e.to_string()))?;
        if v < *min {
            return Err(PolicyError::Freshness(format!(
                "model {:?} version {have} is below the minimum {min} of rule models = {:?} of {}",
                model.name,
                rule.models,
                self.source.display()
            )));
        }
        Ok(())
    }
}

/// Refuses an expired artifact, or one created after `now` (beyond the clock skew): what
/// every verification checks, with or without a policy.
pub fn check_times(model: &ModelInfo, now: u64, skew: u64) -> Result<(), PolicyError> {
    if let Some(expires) = model.expires {
        if now > expires.saturating_add(skew) {
            return Err(PolicyError::Freshness(format!(
                "model {:?} expired {} ago, at {}; ask its producer for a fresh release",
                model.name,
                span(now - expires),
                utc(expires)
            )));
        }
    }
    if model.created > now.saturating_add(skew) {
        return Err(PolicyError::Freshness(format!(
            "model {:?} claims to be created at {}, {} in the future; check this host's clock",
            model.name,
            utc(model.created),
            span(model.created - now)
        )));
    }
    Ok(())
}

/// `*` matches any run of characters (none included), `?` exactly one; everything else itself.
pub fn glob(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with one backtrack point: linear in practice, never exponential.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        match p.get(i) {
            Some('*') => {
                star = Some((i, j));
                i += 1;
            }
            Some(&c) if c == '?' || c == n[j] => {
                i += 1;
                j += 1;
            }
            _ => match star {
                Some((si, sj)) => {
                    i = si + 1;
                    j = sj + 1;
                    star = Some((si, sj + 1));
                }
                None => return false,
            },
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

fn parse_key_id(s: &str) -> Result<KeyId, String> {
    let hex = s.len() == 16
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let bytes = hex.then(|| {
        let byte = |i: usize| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).expect("hex digits");
        KeyId(std::array::from_fn(byte))
    });
    bytes.ok_or_else(|| format!("{s:?} is not a key id (16 lower-case hex digits)"))
}

/// A rule's signer, by the key's name or its key id.
fn resolve(keys: &[PolicyKey], s: &str) -> Result<usize, String> {
    if let Some(i) = keys.iter().position(|k| k.name.as_deref() == Some(s)) {
        return Ok(i);
    }
    let id =
        parse_key_id(s).map_err(|_| format!("signer {s:?} is neither a key name nor a key id"))?;
    keys.iter()
        .position(|k| k.key.id() == id)
        .ok_or_else(|| format!("signer {s} is not one of the policy's [[key]] entries"))
}

fn read_capped(path: &Path) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_POLICY_LEN + 1).read_to_string(&mut text)?;
    if text.len() as u64 > MAX_POLICY_LEN {
        return Err(std::io::Error::other(format!(
            "larger than {MAX_POLICY_LEN} bytes; not a policy file"
        )));
    }
    Ok(text)
}

/// A multi-line parser message on one line.
fn one_line(s: &str) -> String {
    s.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.chars().all(|c| c == '|' || c == '^' || c == ' '))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_whole_names() {
        assert!(glob("*", ""));
        assert!(glob("digits-*", "digits-v2"));
        assert!(!glob("digits-*", "xdigits-v2"));
        assert!(glob("*-prod", "resnet-prod"));
        assert!(!glob("*-prod", "resnet-prod2"));
        assert!(glob("a?c", "abc"));
        assert!(!glob("a?c", "ac"));
        assert!(glob("a*b*c", "aXbYbZc"));
        assert!(!glob("a*b*c", "aXbYbZ"));
        assert!(glob(&"*a".repeat(20), &"a".repeat(40)));
        assert!(!glob(&"*a".repeat(20), &"b".repeat(5000)));
    }

    #[test]
    fn key_ids_are_16_lower_case_hex_digits() {
        assert_eq!(
            parse_key_id("21fe31dfa154a261").map(|k| k.to_string()),
            Ok("21fe31dfa154a261".into())
        );
        for bad in [
            "21FE31DFA154A261",
            "21fe31dfa154a26",
            "+1fe31dfa154a261",
            "é1fe31dfa154a26",
        ] {
            assert!(parse_key_id(bad).is_err(), "{bad}");
        }
    }
}
