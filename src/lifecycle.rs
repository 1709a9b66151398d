//! The daemon's life under a service manager: it says it is ready once the
//! database is open and the socket listens, and on `SIGTERM` or `SIGINT` it
//! finishes the requests in flight, commits what is queued and folds the WAL
//! into the database before it exits.

use std::sync::Arc;
use std::time::Duration;

use rocket::fairing::AdHoc;
use rocket::tokio;
use rocket::tokio::sync::OnceCell;
use sd_notify::NotifyState;

use crate::api::HttpStats;
use crate::store::Store;

/// How often the stop looks whether the requests in flight are done.
const IN_FLIGHT_POLL: Duration = Duration::from_millis(10);

/// Sends `READY=1` to systemd (`Type=notify`) at lift-off, when Rocket
/// listens; the store was opened before Rocket was built. Does nothing
/// outside systemd (no `NOTIFY_SOCKET`).
pub fn readiness() -> AdHoc {
    AdHoc::on_liftoff("Readiness notice", |rocket| {
        Box::pin(async move {
            let config = rocket.config();
            let status = format!("listening on {}:{}", config.address, config.port);
            notify(&[NotifyState::Ready, NotifyState::Status(&status)]);
        })
    })
}

/// The orderly stop: wait for the requests in flight (at most
/// `shutdown.grace`), so that a request whose body is still arriving gets
/// its sample committed rather than a `503`; then close the store, which
/// commits everything queued and truncates the WAL. It runs once, however
/// often it is asked to.
#[derive(Clone)]
pub struct Drain {
    store: Store,
    http: HttpStats,
    grace: Duration,
    done: Arc<OnceCell<()>>,
}

impl Drain {
    pub fn new(store: Store, http: HttpStats, grace: Duration) -> Drain {
        Drain {
            store,
            http,
            grace,
            done: Arc::new(OnceCell::new()),
        }
    }

    /// Rocket stops accepting connections when a stop is requested and runs
    /// this fairing at once, while the requests in flight go on. (Rocket
    /// 0.5 skips its shutdown fairings when its server task happens to see
    /// the stop first; `sperform`'s `main` therefore runs the drain again
    /// once `launch` has returned, which does nothing if it already ran.)
    pub fn fairing() -> AdHoc {
        AdHoc::on_shutdown("Finish requests and commit queued samples", |rocket| {
            Box::pin(async move {
                if let Some(drain) = rocket.state::<Drain>() {
                    drain.run().await;
                }
            })
        })
    }

    /// Runs the stop, or waits for the one already under way.
    pub async fn run(&self) {
        self.done.get_or_init(|| self.stop()).await;
    }

    async fn stop(&self) {
        notify(&[
            NotifyState::Stopping,
            NotifyState::Status("finishing requests in flight"),
        ]);
        let unfinished = wait_for_requests(&self.http, self.grace).await;
        if unfinished > 0 {
            log::warn!(
                "{unfinished} request(s) still unanswered after the grace period of {}s",
                self.grace.as_secs()
            );
        }
        notify(&[NotifyState::Status("committing queued samples")]);
        let store = self.store.clone();
        // Joining the writer blocks; keep it off the executor.
        match tokio::task::spawn_blocking(move || store.close()).await {
            Ok(()) => {
                log::info!("database closed: every acknowledged sample is in the database file")
            }
            Err(err) => log::error!("closing the database failed: {err}"),
        }
    }
}

/// Waits until no request is in flight or `limit` has passed; returns how
/// many are still in flight.
async fn wait_for_requests(http: &HttpStats, limit: Duration) -> u64 {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let in_flight = http.in_flight();
        if in_flight == 0 || tokio::time::Instant::now() >= deadline {
            return in_flight;
        }
        tokio::time::sleep(IN_FLIGHT_POLL).await;
    }
}

fn notify(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(states) {
        log::warn!("could not notify the service manager: {err}");
    }
}
