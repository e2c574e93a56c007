//! Throughput of the payload encryption building block (issue 3) in memory: STREAM
//! ChaCha20-Poly1305 encrypt and decrypt of SIZE MiB on every core, and SHA-256 of the same
//! bytes on every core for comparison. Run by scripts/bench.sh beside `openssl speed`.
//!
//! Usage: cargo run --release --example bench_stream -- [SIZE_MIB]

use std::time::Instant;

use nnsign::crypto::{FileKey, PayloadCipher};
use rayon::prelude::*;
use sha2::{Digest, Sha256};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mib: usize = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(1024);
    let plain: Vec<u8> = (0..mib << 20).map(|i| (i * 31 % 251) as u8).collect();
    let cipher = PayloadCipher::new(&FileKey::generate()?, &[0; 16], b"bench");
    let gbps = |secs: f64| (plain.len() as f64) / secs / 1e9;

    // Buffers are allocated once, as a pipeline would reuse them; best of three rounds.
    let mut sealed = vec![0u8; PayloadCipher::ciphertext_len(plain.len() as u64) as usize];
    let mut work = sealed.clone();
    let (mut enc, mut dec) = (f64::MAX, f64::MAX);
    for _ in 0..3 {
        let t = Instant::now();
        cipher.encrypt_into(&plain, &mut sealed)?;
        enc = enc.min(t.elapsed().as_secs_f64());
        work.copy_from_slice(&sealed);
        let t = Instant::now();
        let len = cipher.decrypt_in_place(&mut work)?;
        dec = dec.min(t.elapsed().as_secs_f64());
        assert!(work[..len] == plain[..]);
    }
    let t = Instant::now();
    let digests: Vec<[u8; 32]> = sealed
        .par_chunks(4 << 20)
        .map(|c| Sha256::digest(c).into())
        .collect();
    let sha = t.elapsed().as_secs_f64();
    println!(
        "{mib} MiB, {} threads: encrypt {:.2} GB/s, decrypt {:.2} GB/s, SHA-256 (4 MiB chunks) {:.2} GB/s over {} chunks",
        rayon::current_num_threads(),
        gbps(enc),
        gbps(dec),
        gbps(sha),
        digests.len()
    );
    // What an encrypted verify-load cannot beat with these crates: every ciphertext byte
    // hashed, then decrypted, on every core, with nothing read or copied.
    let bound = (sha + dec) * (1024.0 / mib as f64);
    println!(
        "in-memory bound of an encrypted load (SHA-256 + decryption, {} threads): {:.3} s per GiB; bound_s_per_gib={bound:.4}",
        rayon::current_num_threads(),
        bound
    );
    println!(
        "backends: {}",
        nnsign::crypto::backends()
            .iter()
            .map(|(p, b)| format!("{p} {b}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}
