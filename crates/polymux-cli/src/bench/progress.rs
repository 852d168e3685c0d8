//! Bench progress on stderr: an indicatif bar when stderr is a terminal, plain lines
//! otherwise (logs, CI), one step per (target, scenario).

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress over all (target, scenario) steps.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
}

impl Progress {
    /// Progress over `total` steps.
    pub fn new(total: usize) -> Progress {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(total as u64);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30.cyan/blue} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Progress {
            bar,
            total,
            done: 0,
        }
    }

    /// Starts a step.
    pub fn start(&mut self, label: &str) {
        let step = self.done + 1;
        match &self.bar {
            Some(bar) => bar.set_message(label.to_owned()),
            None => eprintln!("bench: [{step}/{}] {label} ...", self.total),
        }
    }

    /// Ends the current step with a one-line summary.
    pub fn finish(&mut self, summary: &str) {
        self.done += 1;
        match &self.bar {
            Some(bar) => {
                bar.println(format!("  {summary}"));
                bar.inc(1);
            }
            None => eprintln!("bench: [{}/{}] {summary}", self.done, self.total),
        }
    }

    /// Removes the bar.
    pub fn clear(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
