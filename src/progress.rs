//! Progress of long jobs (evaluation, labelling): a bar on a terminal, plain periodic lines
//! (at most one every 10 s, and one at the end) when stderr is a file or a pipe, so logs stay
//! readable.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Progress over a known number of items.
pub struct Progress {
    bar: Option<ProgressBar>,
    label: String,
    len: u64,
    done: u64,
    started: Instant,
    last_line: Instant,
}

impl Progress {
    /// Progress of `len` items, named `label` in plain lines.
    pub fn new(label: &str, len: u64) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(label.to_string());
            bar
        });
        let now = Instant::now();
        Self {
            bar,
            label: label.to_string(),
            len,
            done: 0,
            started: now,
            last_line: now,
        }
    }

    /// One more item done.
    pub fn inc(&mut self) {
        self.done += 1;
        match &self.bar {
            Some(bar) => bar.inc(1),
            None if self.last_line.elapsed() >= PLAIN_EVERY => {
                self.last_line = Instant::now();
                eprintln!("{}", self.line());
            }
            None => {}
        }
    }

    /// The plain progress line.
    pub fn line(&self) -> String {
        let pct = if self.len > 0 {
            100.0 * self.done as f64 / self.len as f64
        } else {
            100.0
        };
        format!(
            "{}: {}/{} ({pct:.0} %) after {:.0} s",
            self.label,
            self.done,
            self.len,
            self.started.elapsed().as_secs_f64()
        )
    }

    /// Ends the bar, or writes the final plain line.
    pub fn finish(self) {
        match self.bar {
            Some(bar) => bar.finish_and_clear(),
            None => eprintln!("{}", self.line()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plain_line_counts_what_is_done() {
        let mut p = Progress::new("eval", 4);
        p.inc();
        assert!(p.line().starts_with("eval: 1/4 (25 %)"), "{}", p.line());
    }
}
