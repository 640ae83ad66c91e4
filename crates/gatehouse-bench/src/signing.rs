//! The physical limit the server is compared with: how fast this machine signs JWTs with the
//! same algorithm and the same cached key pair the server uses, in this process, on one core.

use gatehouse_core::SigningAlgorithm;
use gatehouse_core::keys::{KeyEncryptionKey, KeyState, SigningKey, generate_signing_key};
use std::time::{Duration, Instant};

/// Signatures per second over `duration`, for a header.payload the size of a real token's.
pub fn raw_signing_rate(algorithm: SigningAlgorithm, duration: Duration) -> anyhow::Result<f64> {
    let (kek, _) = KeyEncryptionKey::generate()?;
    let record = generate_signing_key("bench", algorithm, KeyState::Active, &kek, 0)?;
    let key = SigningKey::open("bench", &record, &kek)?;
    let message = format!(
        "eyJhbGciOiJFUzI1NiIsInR5cCI6ImF0K2p3dCIsImtpZCI6IiJ9.{}",
        "eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjgwODAvZXMyNTYiLCJzdWIiOiJjYy1lczI1NiIsImF1ZCI6ImNjLWVzMjU2In0".repeat(3)
    );
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < duration {
        for _ in 0..64 {
            std::hint::black_box(key.sign(std::hint::black_box(message.as_bytes()))?);
        }
        n += 64;
    }
    Ok(n as f64 / started.elapsed().as_secs_f64())
}
