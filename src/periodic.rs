//! Background threads that do one thing every period until the service stops.

use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How soon a waiting thread notices `stop`.
const STEP: Duration = Duration::from_millis(200);

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
            let mut waited = Duration::ZERO;
            while waited < period && !stop.is_cancelled() {
                std::thread::sleep(STEP);
                waited += STEP;
            }
        }
    })
}
