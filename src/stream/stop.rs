//! Stopping a run: one shared signal that every stage, source and sleep looks at.
//!
//! Three states. Running. Stop requested (the first Ctrl-C or SIGTERM, or the end of a
//! bounded run): capture ends and what was already captured drains through every stage.
//! Aborted (a sink failed, or the user asked for an immediate stop): every stage discards
//! what it holds, so the threads finish at once. A second Ctrl-C exits the process
//! immediately, whatever is queued.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const RUNNING: u8 = 0;
const REQUESTED: u8 = 1;
const ABORTED: u8 = 2;

/// The longest a sleeping source waits before looking at the signal again.
const POLL: Duration = Duration::from_millis(20);

/// A cloneable stop signal (clones share the state).
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicU8>);

impl Stop {
    /// A signal in the running state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks for a graceful stop: capture ends, queued frames drain.
    pub fn request(&self) {
        let _ = self
            .0
            .compare_exchange(RUNNING, REQUESTED, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Asks every stage to discard what it holds and finish now.
    pub fn abort(&self) {
        self.0.store(ABORTED, Ordering::SeqCst);
    }

    /// True once a stop (graceful or not) was asked for.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst) != RUNNING
    }

    /// True once the run was aborted.
    pub fn is_aborted(&self) -> bool {
        self.0.load(Ordering::SeqCst) == ABORTED
    }

    /// Sleeps for `d`, waking early when a stop is requested; false if it was.
    pub fn sleep(&self, d: Duration) -> bool {
        let until = Instant::now() + d;
        loop {
            if self.is_requested() {
                return false;
            }
            let now = Instant::now();
            if now >= until {
                return true;
            }
            std::thread::sleep((until - now).min(POLL));
        }
    }

    /// Installs the Ctrl-C / SIGTERM handler: the first signal requests a graceful stop
    /// (announcing `first_message`), a second one exits the process at once with code 130.
    pub fn on_ctrl_c(&self, first_message: &'static str) {
        let stop = self.clone();
        let presses = Arc::new(AtomicU8::new(0));
        // An error here means a handler is already installed (a library user's, or a second
        // run in one process); the earlier handler keeps working, so there is nothing to do.
        let _ = ctrlc::set_handler(move || {
            if presses.fetch_add(1, Ordering::SeqCst) == 0 {
                eprintln!("\n{first_message} (Ctrl-C again to exit at once)");
                stop.request();
            } else {
                eprintln!("\nexiting at once");
                std::process::exit(130);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_only_move_forward() {
        let s = Stop::new();
        assert!(!s.is_requested());
        s.request();
        assert!(s.is_requested() && !s.is_aborted());
        s.abort();
        s.request();
        assert!(s.is_aborted(), "a request never undoes an abort");
    }

    #[test]
    fn sleep_wakes_on_stop() {
        let s = Stop::new();
        let t = s.clone();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            t.request();
        });
        let t0 = Instant::now();
        assert!(!s.sleep(Duration::from_secs(30)));
        assert!(t0.elapsed() < Duration::from_secs(5));
        h.join().unwrap();
        assert!(!s.sleep(Duration::from_secs(30)), "already stopped: returns at once");
    }
}
