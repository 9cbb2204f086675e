//! The idle watchdog: powers the VM off when nobody has used it for a while.
//!
//! Authenticated calls reset it (unless they ask not to), and a running
//! download holds it off entirely: a 20-minute extraction must not be cut
//! by a 10-minute idle timeout.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Idle tracking shared by the API handlers and the watchdog task.
#[derive(Debug)]
pub struct Watchdog {
    start: Instant,
    last_ms: AtomicU64,
    timeout: Duration,
    active: AtomicUsize,
}

/// Held while a download runs; the watchdog waits for all of them.
#[derive(Debug)]
pub struct ActivityGuard {
    dog: Arc<Watchdog>,
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.dog.active.fetch_sub(1, Ordering::SeqCst);
        self.dog.touch();
    }
}

impl Watchdog {
    /// A watchdog with the given idle timeout, counting from now.
    pub fn new(timeout: Duration) -> Arc<Self> {
        Arc::new(Watchdog {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            timeout,
            active: AtomicUsize::new(0),
        })
    }

    fn now_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// Records activity now.
    pub fn touch(&self) {
        self.last_ms.store(self.now_ms(), Ordering::SeqCst);
    }

    /// Marks a download as running until the guard is dropped.
    pub fn hold(self: &Arc<Self>) -> ActivityGuard {
        self.active.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ActivityGuard { dog: self.clone() }
    }

    /// Downloads running now.
    pub fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    /// Seconds since the daemon started.
    pub fn uptime(&self) -> u64 {
        self.start.elapsed().as_secs()
    }

    /// Configured timeout in seconds.
    pub fn timeout_secs(&self) -> u64 {
        self.timeout.as_secs()
    }

    /// Time left before the watchdog fires (the full timeout while a download runs).
    pub fn left(&self) -> Duration {
        if self.active() > 0 {
            return self.timeout;
        }
        let idle = Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.last_ms.load(Ordering::SeqCst)),
        );
        self.timeout.saturating_sub(idle)
    }

    /// Waits until the idle timeout expires.
    pub async fn expired(self: Arc<Self>) {
        loop {
            let left = self.left();
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(
                left.min(Duration::from_secs(1))
                    .max(Duration::from_millis(50)),
            )
            .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fires_after_timeout_and_holds_during_downloads() {
        let dog = Watchdog::new(Duration::from_millis(300));
        let guard = dog.hold();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(dog.left(), Duration::from_millis(300));
        drop(guard);
        let t = Instant::now();
        dog.clone().expired().await;
        assert!(t.elapsed() >= Duration::from_millis(250));
    }
}
