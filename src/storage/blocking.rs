//! Runs blocking disk work (fsync takes milliseconds) off the async
//! runtime in production; in the simulator, where threads are not allowed,
//! it runs inline, and an fsync takes virtual time instead.

/// How long an fsync takes in simulation: the window in which a crash
/// finds bytes written but not yet durable (and tears them).
#[cfg(madsim)]
pub const SIM_FSYNC_LATENCY: std::time::Duration = std::time::Duration::from_millis(2);

/// Waits as long as an fsync takes: the real one takes its time inside
/// the blocking work, the simulated one here.
#[cfg(not(madsim))]
pub async fn fsync_latency() {}

#[cfg(madsim)]
pub async fn fsync_latency() {
    tokio::time::sleep(SIM_FSYNC_LATENCY).await;
}

#[cfg(not(madsim))]
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work)
        .await
        .expect("blocking disk task panicked")
}

/// Starts `work` on a blocking thread now and returns its result to
/// await later, so the caller can do other work meanwhile (the raft loop
/// applies while the WAL's fsync runs). Production only: the simulator
/// runs disk work inline, in an order of its own choosing.
#[cfg(not(madsim))]
pub fn start<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> impl std::future::Future<Output = T> {
    let task = tokio::task::spawn_blocking(work);
    async move { task.await.expect("blocking disk task panicked") }
}

#[cfg(madsim)]
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    work()
}
