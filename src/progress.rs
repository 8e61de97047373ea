//! Progress on a terminal: a spinner for one bounded wait, and a batch's
//! overall bar with one line per plan in flight. The only user of
//! indicatif; off a terminal nothing is drawn.

use std::collections::HashMap;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output;

/// A spinner on stderr when it is a terminal; otherwise nothing, or one
/// plain line when `announce`.
pub struct Spinner(ProgressBar);

impl Spinner {
    pub fn start(message: &str, announce: bool) -> Spinner {
        if !output::stderr_is_terminal() {
            if announce {
                output::note(format!("{message}…"));
            }
            return Spinner(ProgressBar::hidden());
        }
        let bar = ProgressBar::new_spinner();
        if let Ok(style) = ProgressStyle::with_template("{spinner} {msg}") {
            bar.set_style(style);
        }
        bar.set_message(message.to_string());
        bar.enable_steady_tick(Duration::from_millis(120));
        Spinner(bar)
    }

    pub fn update(&self, message: &str) {
        self.0.set_message(message.to_string());
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A batch's progress: an overall bar and a spinner per plan in flight.
pub struct BatchBars {
    multi: MultiProgress,
    overall: ProgressBar,
    in_flight: HashMap<String, ProgressBar>,
}

impl BatchBars {
    /// `None` when stderr is not a terminal.
    pub fn new(total: usize) -> Option<BatchBars> {
        if !output::stderr_is_terminal() {
            return None;
        }
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(total as u64));
        overall.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {pos}/{len} plans  {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        Some(BatchBars {
            multi,
            overall,
            in_flight: HashMap::new(),
        })
    }

    pub fn started(&mut self, name: &str) {
        let spinner = self.multi.add(ProgressBar::new_spinner());
        spinner.set_style(
            ProgressStyle::with_template("  {spinner} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        spinner.set_message(name.to_string());
        spinner.enable_steady_tick(Duration::from_millis(120));
        self.in_flight.insert(name.to_string(), spinner);
    }

    /// One plan finished: its spinner goes, the bar moves on, and `line`
    /// is printed above the bars.
    pub fn finished(&mut self, name: &str, counts: String, line: Option<String>) {
        if let Some(spinner) = self.in_flight.remove(name) {
            spinner.finish_and_clear();
            self.multi.remove(&spinner);
        }
        self.overall.inc(1);
        self.overall.set_message(counts);
        if let Some(line) = line {
            self.multi.suspend(|| output::line(line));
        }
    }

    /// Removes the bars, before a summary is printed.
    pub fn clear(self) {
        self.overall.finish_and_clear();
        let _ = self.multi.clear();
    }
}
