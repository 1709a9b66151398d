//! A background thread that wakes up periodically until it is told to stop:
//! the shape both the checkpointer and the retention task share.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use super::StoreError;

/// Lets the thread wait for its next round, or learn it should stop.
#[derive(Clone, Default)]
pub struct Stop(Arc<(Mutex<bool>, Condvar)>);

impl Stop {
    /// Sleeps up to `interval`; returns true when the thread should stop.
    pub fn wait(&self, interval: Duration) -> bool {
        let (stopped, wake) = &*self.0;
        let Ok(guard) = stopped.lock() else {
            return true;
        };
        match wake.wait_timeout_while(guard, interval, |stopped| !*stopped) {
            Ok((guard, _)) => *guard,
            Err(_) => true,
        }
    }

    fn signal(&self) {
        let (stopped, wake) = &*self.0;
        if let Ok(mut stopped) = stopped.lock() {
            *stopped = true;
            wake.notify_all();
        }
    }
}

/// A running background thread. Dropping it tells the thread to stop
/// without waiting; `close` also waits for it to finish.
pub struct Background {
    name: &'static str,
    stop: Stop,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Background {
    pub fn spawn(
        name: &'static str,
        body: impl FnOnce(&Stop) + Send + 'static,
    ) -> Result<Background, StoreError> {
        let stop = Stop::default();
        let thread_stop = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("sperform-{name}"))
            .spawn(move || body(&thread_stop))
            .map_err(|source| StoreError::thread(format!("the {name} thread"), source))?;
        Ok(Background {
            name,
            stop,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Stops the thread and waits for it.
    pub fn close(&self) {
        self.stop.signal();
        let thread = self.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            log::error!("the {} thread panicked", self.name);
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.signal();
    }
}
