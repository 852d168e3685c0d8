//! Bench progress on stderr: an indicatif bar when stderr is a terminal, plain lines
//! otherwise (logs, CI). Within a step, a counter (bytes or operations) feeds the bar.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Progress over all (target, scenario) steps.
pub struct Progress {
    bar: Option<ProgressBar>,
    total: usize,
    done: usize,
    /// The current step's counter (bytes or operations).
    counter: Arc<AtomicU64>,
    ticker: Option<tokio::task::JoinHandle<()>>,
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
            counter: Arc::new(AtomicU64::new(0)),
            ticker: None,
        }
    }

    /// Starts a step; the returned counter reports progress within it, against `units` of
    /// `unit` (bytes are shown in MiB).
    pub fn start(&mut self, label: &str, units: u64, unit: &'static str) -> Arc<AtomicU64> {
        self.counter = Arc::new(AtomicU64::new(0));
        let step = self.done + 1;
        match &self.bar {
            Some(bar) => {
                bar.set_message(label.to_owned());
                let bar = bar.clone();
                let counter = self.counter.clone();
                let label = label.to_owned();
                if let Some(ticker) = self.ticker.take() {
                    ticker.abort();
                }
                self.ticker = Some(tokio::spawn(async move {
                    loop {
                        tokio::time::sleep(Duration::from_millis(200)).await;
                        let now = counter.load(Ordering::Relaxed);
                        bar.set_message(format!("{label} {}", amount(now, units, unit)));
                    }
                }));
            }
            None => eprintln!("bench: [{step}/{}] {label} ...", self.total),
        }
        self.counter.clone()
    }

    /// Ends the current step with a one-line summary.
    pub fn finish(&mut self, summary: &str) {
        self.done += 1;
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
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
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

fn amount(now: u64, total: u64, unit: &str) -> String {
    if unit == "bytes" {
        format!(
            "{:.0}/{:.0} MiB",
            now as f64 / 1048576.0,
            total as f64 / 1048576.0
        )
    } else {
        format!("{now}/{total} {unit}")
    }
}
