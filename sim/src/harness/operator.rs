//! The operator's calls: run on the operator's own node, each bounded in
//! time, for the nemesis's maintenance, leader moves and membership churn.

use std::time::Duration;

/// Runs an operator's call on the operator's node, for at most `timeout`:
/// what it reports, or why it failed.
pub async fn on_operator<T: Send + 'static>(
    operator: &madsim::runtime::NodeHandle,
    timeout: Duration,
    call: impl std::future::Future<Output = Result<T, String>> + Send + 'static,
) -> Result<T, String> {
    operator
        .spawn(async move {
            tokio::time::timeout(timeout, call)
                .await
                .unwrap_or_else(|_| Err("timed out".into()))
        })
        .await
        .unwrap_or_else(|_| Err("operator task failed".into()))
}
