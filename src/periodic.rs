//! Background threads that do one thing every period until the service stops.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How soon a waiting thread notices `stop`.
const STEP: Duration = Duration::from_millis(50);

/// Sleeps `duration`, or until `stop` is cancelled (noticed within [`STEP`]); false if it was.
pub fn sleep_unless_stopped(stop: &CancellationToken, duration: Duration) -> bool {
    let until = std::time::Instant::now() + duration;
    while let Some(left) = until.checked_duration_since(std::time::Instant::now()).filter(|d| !d.is_zero()) {
        if stop.is_cancelled() {
            return false;
        }
        std::thread::sleep(left.min(STEP));
    }
    !stop.is_cancelled()
}

/// Starts thread `name`, which calls `tick` at once and then every `period`, and ends within
/// [`STEP`] of `stop` being cancelled.
pub fn spawn_every(
    name: &str,
    period: Duration,
    stop: CancellationToken,
    mut tick: impl FnMut() + Send + 'static,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new().name(name.into()).spawn(move || {
        while !stop.is_cancelled() {
            tick();
            sleep_unless_stopped(&stop, period);
        }
    })
}
