//! Password hashing and checking with bcrypt (the `bcrypt` crate, as etcd
//! uses Go's `x/crypto/bcrypt`), off the raft loop and bounded: at most
//! `BCRYPT_CONCURRENT_MAX` hashes run at once and at most
//! `BCRYPT_WAITING_MAX` callers wait, so a flood of failed logins costs a
//! bounded amount of CPU and the rest of the server keeps its share.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::Error;

/// etcd's `--bcrypt-cost` default (Go's `bcrypt.DefaultCost`).
pub const BCRYPT_COST_DEFAULT: u32 = 10;
/// The bounds `--bcrypt-cost` must stay within (Go's `bcrypt`).
pub const BCRYPT_COST_MIN: u32 = 4;
pub const BCRYPT_COST_MAX: u32 = 31;
/// bcrypt computations running at once, at most.
pub const BCRYPT_CONCURRENT_MAX: usize = 2;
/// Callers waiting for a bcrypt computation, at most; more are refused
/// with "too many requests".
pub const BCRYPT_WAITING_MAX: usize = 64;

/// The member's bcrypt budget, shared by every request.
#[derive(Clone, Debug)]
pub struct Hasher {
    cost: u32,
    running: Arc<Semaphore>,
    waiting: Arc<AtomicUsize>,
}

impl Hasher {
    pub fn new(cost: u32) -> Hasher {
        Hasher {
            cost,
            running: Arc::new(Semaphore::new(BCRYPT_CONCURRENT_MAX)),
            waiting: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The bcrypt hash of `password` with the given 16-byte salt (from the
    /// member's seeded randomness, so the simulator stays deterministic).
    pub async fn hash(&self, password: String, salt: [u8; 16]) -> Result<Vec<u8>, Error> {
        let cost = self.cost;
        self.run(move || {
            bcrypt::hash_with_salt(password.as_bytes(), cost, salt)
                .map(|hashed| hashed.to_string().into_bytes())
                .map_err(|_| Error::AuthFailed)
        })
        .await
    }

    /// Does `password` match `hash`?
    pub async fn verify(&self, password: String, hash: Vec<u8>) -> Result<bool, Error> {
        self.run(move || {
            let hash = String::from_utf8(hash).map_err(|_| Error::AuthFailed)?;
            Ok(bcrypt::verify(password.as_bytes(), &hash).unwrap_or(false))
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        if self.waiting.fetch_add(1, Ordering::SeqCst) >= BCRYPT_WAITING_MAX {
            self.waiting.fetch_sub(1, Ordering::SeqCst);
            return Err(Error::TooManyRequests);
        }
        let permit = self.running.acquire().await;
        self.waiting.fetch_sub(1, Ordering::SeqCst);
        let _permit = permit.map_err(|_| Error::Stopped)?;
        // A thread of its own in production, inline in the simulator.
        crate::storage::blocking::run(work).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_flood_of_logins_is_refused_past_the_waiting_bound() {
        let hasher = Hasher::new(BCRYPT_COST_MIN);
        let hash = hasher.hash("secret".into(), [7; 16]).await.unwrap();
        assert!(hasher.verify("secret".into(), hash.clone()).await.unwrap());
        assert!(!hasher.verify("wrong".into(), hash.clone()).await.unwrap());
        let flood =
            (0..BCRYPT_WAITING_MAX * 2).map(|_| hasher.verify("wrong".into(), hash.clone()));
        let answers = futures::future::join_all(flood).await;
        let refused = answers
            .iter()
            .filter(|answer| matches!(answer, Err(Error::TooManyRequests)))
            .count();
        assert!(refused > 0, "no login was turned away");
        assert!(
            answers.iter().any(|answer| matches!(answer, Ok(false))),
            "the bound let none through"
        );
    }
}
