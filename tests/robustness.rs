//! Thousands of mutated artifacts through the whole verifier (open, authenticate, check every
//! chunk): each must be refused with an error, never accepted, never a panic. A cheap relative
//! of the cargo-fuzz targets in fuzz/, run on every build.

mod common;

use common::*;
use nnsign::keys::{PublicKey, TrustStore};
use nnsign::verify::Artifact;

/// xorshift64*: deterministic, so a failure reproduces.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn verdict(path: &std::path::Path, trust: &TrustStore) -> Result<(), String> {
    let auth = Artifact::open(path)
        .and_then(|a| a.authenticate(trust, true))
        .map_err(|e| e.to_string())?;
    auth.check_payload(&|_| {}).map_err(|e| e.to_string())
}

#[test]
fn mutated_artifacts_are_refused_without_panicking() {
    let mut trust = TrustStore::default();
    trust.insert(
        PublicKey::read(&test_key("test-a.pub")).unwrap(),
        "test-a.pub",
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.nns");
    let mut rng = Rng(0x5eed_f1e5);
    let mut refused = 0;
    // Not pass_unsigned: without a signature nothing protects the manifest, and an edit to its
    // description is, correctly, accepted with --allow-unsigned (docs/SECURITY.md).
    for seed in [
        "pass_signed.nns",
        "pass_signed_arch.nns",
        "pass_two_signers.nns",
        "pass_zero_length_and_scalar.nns",
    ] {
        let good = std::fs::read(root().join("tests/vectors").join(seed)).unwrap();
        std::fs::write(&path, &good).unwrap();
        assert_eq!(
            verdict(&path, &trust),
            Ok(()),
            "{seed} must verify unmutated"
        );
        for _ in 0..600 {
            let mut bad = good.clone();
            match rng.below(5) {
                // Flip a few random bits.
                0 => {
                    for _ in 0..1 + rng.below(4) {
                        let i = rng.below(bad.len());
                        bad[i] ^= 1 << rng.below(8);
                    }
                }
                // Overwrite a byte with a CBOR-significant value.
                1 => {
                    let i = rng.below(bad.len());
                    bad[i] =
                        [0x00, 0x17, 0x18, 0x1b, 0x5b, 0x7b, 0x9b, 0xbb, 0xff, 0xf7][rng.below(10)];
                }
                // Cut the file short.
                2 => bad.truncate(rng.below(bad.len())),
                // Insert random bytes.
                3 => {
                    let i = rng.below(bad.len());
                    let n = 1 + rng.below(16);
                    let junk: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                    bad.splice(i..i, junk);
                }
                // Remove a range.
                _ => {
                    let i = rng.below(bad.len());
                    let j = (i + 1 + rng.below(32)).min(bad.len());
                    bad.drain(i..j);
                }
            }
            if bad == good {
                continue;
            }
            std::fs::write(&path, &bad).unwrap();
            let outcome = std::panic::catch_unwind(|| verdict(&path, &trust));
            match outcome {
                Ok(Err(_)) => refused += 1,
                Ok(Ok(())) => panic!("a mutated {seed} was accepted: {bad:02x?}"),
                Err(_) => panic!("the verifier panicked on a mutated {seed}: {bad:02x?}"),
            }
        }
    }
    assert!(refused > 2000, "only {refused} mutations were tried");
}

#[test]
fn random_bytes_never_panic_the_decoders() {
    let mut rng = Rng(0xdec0_de00);
    let npy = std::fs::read(root().join("tests/fixtures/tiny.npy")).unwrap();
    for _ in 0..20_000 {
        let len = rng.below(96);
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        let _ = nnsign::cbor::decode(&bytes);
        let _ = nnsign::format::Manifest::decode(&bytes);
        let _ = nnsign::signature::parse_header(&bytes);
        let _ = nnsign::format::Envelope::parse(&bytes);
        // A valid .npy with random damage.
        let mut n = npy.clone();
        let i = rng.below(n.len());
        n[i] = rng.next() as u8;
        if rng.below(4) == 0 {
            n.truncate(rng.below(n.len()));
        }
        let _ = nnsign::import::parse_npy(std::path::Path::new("x.npy"), "x", n);
    }
}
