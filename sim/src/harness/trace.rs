//! The run's trace: every scheduled event with its virtual time, and the
//! trace hash over them that `--check-determinism` compares.

use std::sync::{Arc, Mutex};

use detcd::rng::stable_hash;

/// Every scheduled event of a run, stamped with virtual time; its hash is
/// the run's trace hash.
#[derive(Clone)]
pub struct Trace {
    started: tokio::time::Instant,
    events: Arc<Mutex<Vec<String>>>,
    echo: bool,
}

impl Trace {
    pub fn new(echo: bool) -> Trace {
        Trace {
            started: tokio::time::Instant::now(),
            events: Arc::default(),
            echo,
        }
    }

    pub fn record(&self, event: String) {
        let line = format!("{:>12.6}s {event}", self.started.elapsed().as_secs_f64());
        if self.echo {
            println!("{line}");
        }
        self.events.lock().unwrap().push(line);
    }

    /// The hash of every recorded event and of `extra` (the digest of
    /// every raft message and of the schedule).
    pub fn hash(&self, extra: u64) -> u64 {
        let events = self.events.lock().unwrap();
        let mut words: Vec<u64> = events
            .iter()
            .map(|event| stable_hash(&event.bytes().map(u64::from).collect::<Vec<_>>()))
            .collect();
        words.push(extra);
        stable_hash(&words)
    }
}
