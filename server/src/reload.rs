//! Files re-read while the process runs (the per-tenant overrides, the auth
//! file): every period and on SIGHUP, until the process stops.

use std::time::Duration;

/// Calls `reload` every `period` and on SIGHUP until `stop` turns true; a
/// refused file is logged (`what` names it) and what is in force stays.
pub async fn periodically<E: std::fmt::Display>(
    what: &'static str,
    period: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
    reload: impl Fn() -> Result<(), E>,
) {
    let mut every = tokio::time::interval(period);
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let sighup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let sighup = std::future::pending::<()>();
        tokio::select! {
            _ = every.tick() => {}
            _ = sighup => tracing::info!("SIGHUP: reloading the {what}"),
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    return;
                }
                continue;
            }
        }
        if let Err(e) = reload() {
            tracing::error!(error = %e, "{what} refused; what is in force stays");
        }
    }
}
