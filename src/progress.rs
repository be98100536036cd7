//! Progress of long jobs (evaluation, labelling, calibration, training, replays of a known
//! length): a bar on a terminal, plain periodic lines (at most one every 10 s, and one at the
//! end) when stderr is a file or a pipe, so logs stay readable.

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How often a plain progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(10);

/// Where progress goes.
enum Output {
    /// An indicatif bar (stderr is a terminal).
    Bar(ProgressBar),
    /// Plain lines, the last written at `last`.
    Lines { last: Instant },
    /// Nothing (the caller asked for quiet); the count is still kept.
    Quiet,
}

/// Progress over a known number of items.
pub struct Progress {
    output: Output,
    label: String,
    message: String,
    len: u64,
    done: u64,
    started: Instant,
}

impl Progress {
    /// Progress of `len` items, named `label` in plain lines.
    pub fn new(label: &str, len: u64) -> Self {
        let now = Instant::now();
        let output = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{elapsed_precise}] {bar:30} {pos}/{len} ETA {eta} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.set_prefix(label.to_string());
            Output::Bar(bar)
        } else {
            Output::Lines { last: now }
        };
        Self::with_output(output, label, len, now)
    }

    /// Progress that counts but shows nothing.
    pub fn hidden(label: &str, len: u64) -> Self {
        Self::with_output(Output::Quiet, label, len, Instant::now())
    }

    fn with_output(output: Output, label: &str, len: u64, started: Instant) -> Self {
        Self {
            output,
            label: label.to_string(),
            message: String::new(),
            len,
            done: 0,
            started,
        }
    }

    /// Starts from `done` items (a resumed job).
    pub fn start_at(&mut self, done: u64) {
        self.done = done;
        if let Output::Bar(bar) = &self.output {
            bar.set_position(done);
        }
    }

    /// Status after the count (loss, rate); shown with the next update.
    pub fn set_message(&mut self, message: String) {
        if let Output::Bar(bar) = &self.output {
            bar.set_message(message.clone());
        }
        self.message = message;
    }

    /// Prints a line (a log record, a warning) without breaking the bar.
    pub fn println(&self, line: &str) {
        match &self.output {
            Output::Bar(bar) => bar.println(line),
            Output::Lines { .. } | Output::Quiet => eprintln!("{line}"),
        }
    }

    /// One more item done.
    pub fn inc(&mut self) {
        self.done += 1;
        match &mut self.output {
            Output::Bar(bar) => bar.inc(1),
            Output::Lines { last } if last.elapsed() >= PLAIN_EVERY => {
                *last = Instant::now();
                eprintln!("{}", self.line());
            }
            Output::Lines { .. } | Output::Quiet => {}
        }
    }

    /// The plain progress line.
    pub fn line(&self) -> String {
        let pct = if self.len > 0 {
            100.0 * self.done as f64 / self.len as f64
        } else {
            100.0
        };
        let mut line = format!(
            "{}: {}/{} ({pct:.0} %) after {:.0} s",
            self.label,
            self.done,
            self.len,
            self.started.elapsed().as_secs_f64()
        );
        if !self.message.is_empty() {
            line.push_str(", ");
            line.push_str(&self.message);
        }
        line
    }

    /// Leaves the bar where it is with a last message (an interrupted job).
    pub fn abandon(self, message: String) {
        match &self.output {
            Output::Bar(bar) => bar.abandon_with_message(message),
            Output::Lines { .. } => eprintln!("{}: {message}", self.line()),
            Output::Quiet => {}
        }
    }

    /// Ends the bar, or writes the final plain line.
    pub fn finish(self) {
        match &self.output {
            Output::Bar(bar) => bar.finish_and_clear(),
            Output::Lines { .. } => eprintln!("{}", self.line()),
            Output::Quiet => {}
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

    #[test]
    fn a_resumed_job_counts_from_where_it_was_with_its_message() {
        let mut p = Progress::hidden("train", 10);
        p.start_at(6);
        p.inc();
        p.set_message("loss 0.5".into());
        assert!(p.line().starts_with("train: 7/10 (70 %)"), "{}", p.line());
        assert!(p.line().ends_with(", loss 0.5"), "{}", p.line());
    }
}
