//! Runs blocking disk work (fsync takes milliseconds) off the async
//! runtime in production; in the simulator, where virtual time makes it
//! free and threads are not allowed, it runs inline.

#[cfg(not(madsim))]
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(work).await.expect("blocking disk task panicked")
}

#[cfg(madsim)]
pub async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    work()
}
