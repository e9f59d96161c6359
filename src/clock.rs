//! The time seam: every reading of time in the core goes through a node's `Clock`.
//!
//! Production reads the OS clocks. In simulation `tokio::time::Instant` and
//! `SystemTime` are madsim's virtual clocks, and the nemesis adds a per-node
//! offset, a drift rate and step jumps on top, so two nodes disagree about
//! time exactly as much as the seed says.
#![allow(clippy::disallowed_methods)] // The one module allowed to read clocks (clippy.toml).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Drift is expressed in parts per million of elapsed time.
const PPM: i128 = 1_000_000;

/// A node's view of time. Cheap to clone; clones share the skew.
#[derive(Clone, Debug)]
pub struct Clock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    origin: tokio::time::Instant,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    skew: Skew,
    /// The largest monotonic reading handed out, so a backward step of the
    /// offset never makes monotonic time go back.
    last_elapsed: Duration,
}

/// How far this node's clock is from the (real or virtual) true time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Skew {
    /// Added to both the monotonic and the wall reading, in nanoseconds.
    /// Only the wall reading may step backwards; the monotonic one holds
    /// still until true time catches up.
    pub offset_nanos: i64,
    /// Extra nanoseconds gained per second of true time, in ppm.
    pub drift_ppm: i64,
}

impl Clock {
    /// A clock that starts now with no skew.
    pub fn new() -> Clock {
        Clock {
            inner: Arc::new(Inner {
                origin: tokio::time::Instant::now(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Monotonic time since the clock was created.
    pub fn elapsed(&self) -> Duration {
        let true_elapsed = self.inner.origin.elapsed();
        let mut state = self.inner.state.lock().expect("clock lock poisoned");
        let nanos = true_elapsed.as_nanos() as i128;
        let skewed =
            nanos + nanos * state.skew.drift_ppm as i128 / PPM + state.skew.offset_nanos as i128;
        let reading = Duration::from_nanos(skewed.max(0) as u64).max(state.last_elapsed);
        state.last_elapsed = reading;
        reading
    }

    /// Wall-clock time as milliseconds since the Unix epoch.
    pub fn wall_unix_millis(&self) -> i64 {
        let true_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let skew = self.skew();
        let nanos = true_wall.as_nanos() as i128 + skew.offset_nanos as i128;
        (nanos / 1_000_000) as i64
    }

    /// Sleeps for `duration` as this node perceives it: a fast-drifting
    /// clock wakes earlier in true time.
    pub async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(self.true_duration(duration)).await
    }

    /// A ticker firing every `period` of this node's time.
    pub fn interval(&self, period: Duration) -> tokio::time::Interval {
        let mut interval = tokio::time::interval(self.true_duration(period));
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        interval
    }

    /// Replaces the skew; used by the simulator's nemesis only.
    pub fn set_skew(&self, skew: Skew) {
        self.inner.state.lock().expect("clock lock poisoned").skew = skew;
    }

    pub fn skew(&self) -> Skew {
        self.inner.state.lock().expect("clock lock poisoned").skew
    }

    fn true_duration(&self, perceived: Duration) -> Duration {
        let drift_ppm = self.skew().drift_ppm as i128;
        let nanos = perceived.as_nanos() as i128 * PPM / (PPM + drift_ppm).max(1);
        Duration::from_nanos(nanos.max(0) as u64)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
