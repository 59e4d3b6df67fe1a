//! Progress bars on stderr, and log lines that do not break them.
//!
//! A bar redraws its line in place; a log line written to stderr meanwhile would land in
//! the middle of it (at the start of `tokentrail ingest` into a new database, the
//! migrations log while the first file is read). [`bar`] registers the bar it makes, and
//! the log writer ([`LogWriter`]) prints each line with that bar cleared, then redraws
//! the bar below it (indicatif's `suspend`).

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, WeakProgressBar};
use std::io::Write;
use std::sync::Mutex;

/// The bar log lines make way for: the last one [`bar`] made, while it lives.
static SHOWN: Mutex<Option<WeakProgressBar>> = Mutex::new(None);

/// A bar on stderr with the given indicatif template, that log lines make way for.
pub fn bar(template: &str) -> Result<ProgressBar> {
    let progress = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
    progress.set_style(ProgressStyle::with_template(template).context("progress bar template")?);
    show(&progress);
    Ok(progress)
}

fn show(progress: &ProgressBar) {
    *SHOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(progress.downgrade());
}

fn shown() -> Option<ProgressBar> {
    SHOWN.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref().and_then(WeakProgressBar::upgrade)
}

/// Writes to `out` (stderr for the logs: [`LogWriter::stderr`]) with the shown bar, if
/// any, cleared while it writes. tracing's formatter writes each event whole, in one
/// `write_all`, so a line is never split around the bar.
pub struct LogWriter<W> {
    out: W,
}

impl LogWriter<std::io::Stderr> {
    /// For `tracing_subscriber::fmt().with_writer(LogWriter::stderr)`.
    pub fn stderr() -> Self {
        LogWriter { out: std::io::stderr() }
    }
}

impl<W: Write> Write for LogWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match shown().filter(|bar| !bar.is_finished()) {
            Some(bar) => bar.suspend(|| self.out.write(buf)),
            None => self.out.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match shown().filter(|bar| !bar.is_finished()) {
            Some(bar) => bar.suspend(|| self.out.write_all(buf).and_then(|()| self.out.flush())),
            None => self.out.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use indicatif::TermLike;
    use std::sync::Arc;

    /// A terminal that records what is drawn on it, in order, into the same transcript
    /// the log lines go to.
    #[derive(Debug, Clone, Default)]
    struct Transcript(Arc<Mutex<String>>);

    impl Transcript {
        fn push(&self, text: &str) {
            self.0.lock().unwrap().push_str(text);
        }
    }

    impl TermLike for Transcript {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, n: usize) -> std::io::Result<()> {
            self.push(&format!("<up {n}>"));
            Ok(())
        }
        fn move_cursor_down(&self, n: usize) -> std::io::Result<()> {
            self.push(&format!("<down {n}>"));
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.push(&format!("{s}\n"));
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.push(s);
            Ok(())
        }
        fn clear_line(&self) -> std::io::Result<()> {
            self.push("<clear>");
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Write for Transcript {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.push(std::str::from_utf8(buf).unwrap());
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_log_line_goes_above_the_bar_not_into_it() {
        let transcript = Transcript::default();
        let progress =
            ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::term_like(Box::new(transcript.clone())));
        progress.set_style(ProgressStyle::with_template("[{pos}/{len}]").unwrap());
        show(&progress);
        progress.set_position(40);
        progress.tick();
        let mut log = LogWriter { out: transcript.clone() };
        log.write_all(b"INFO applied migration version=1\n").unwrap();
        let text = transcript.0.lock().unwrap().clone();
        let (before, after) = text.split_once("INFO applied migration version=1\n").expect("the line is written whole");
        let (drawn, cleared) = (before.rfind("[40/100]"), before.rfind("<clear>"));
        assert!(drawn.is_some() && cleared > drawn, "the bar is drawn, then cleared before the line: {text:?}");
        assert!(after.contains("[40/100]"), "the bar is drawn again below the line: {text:?}");
        // Once the bar is gone, lines are written as they come.
        progress.finish_and_clear();
        drop(progress);
        let mut log = LogWriter { out: transcript.clone() };
        let written = transcript.0.lock().unwrap().len();
        log.write_all(b"INFO done\n").unwrap();
        assert_eq!(&transcript.0.lock().unwrap()[written..], "INFO done\n");
    }
}
