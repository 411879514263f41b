//! Progress for people: an `indicatif` bar when stderr is a terminal, plain lines otherwise
//! (CI logs), nothing in tests.
//!
//! Progress is only drawn *between* measurements, on the main thread, with no ticker thread,
//! so the bar's own allocations never fall inside a measured window.

use std::io::IsTerminal as _;

use indicatif::{ProgressBar, ProgressStyle};

/// Where progress goes.
#[derive(Debug)]
pub struct Progress {
    mode: Mode,
    done: u64,
    total: u64,
    /// Net heap bytes the bar's own calls have kept (its message and draw state), so a
    /// live-heap comparison spanning progress calls can leave them out.
    kept: i64,
}

#[derive(Debug)]
enum Mode {
    Hidden,
    Lines,
    Bar(ProgressBar),
}

impl Progress {
    /// Shows nothing.
    pub fn hidden() -> Self {
        Self {
            mode: Mode::Hidden,
            done: 0,
            total: 0,
            kept: 0,
        }
    }

    /// A bar of `total` steps on a terminal's stderr, plain lines on stderr otherwise.
    pub fn auto(total: u64) -> Self {
        let mode = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total);
            let style = ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            Mode::Bar(bar)
        } else {
            Mode::Lines
        };
        Self {
            mode,
            done: 0,
            total,
            kept: 0,
        }
    }

    /// Announces the next step: moves the bar (the previous step is done) and shows `what`.
    pub fn step(&mut self, what: &str) {
        match &self.mode {
            Mode::Hidden => {}
            Mode::Lines => eprintln!("[{}/{}] {what}", self.done + 1, self.total),
            Mode::Bar(bar) => {
                let ((), used) = mm_track::count(|| {
                    bar.set_position(self.done);
                    bar.set_message(what.to_owned());
                });
                self.kept += used.net_bytes();
            }
        }
        self.done += 1;
    }

    /// A line of news inside a step (soak snapshots): the bar's message, or a plain line.
    pub fn note(&mut self, line: &str) {
        match &self.mode {
            Mode::Hidden => {}
            Mode::Lines => eprintln!("    {line}"),
            Mode::Bar(bar) => {
                let ((), used) = mm_track::count(|| bar.set_message(line.to_owned()));
                self.kept += used.net_bytes();
            }
        }
    }

    /// Net heap bytes the progress display holds because of calls made so far (0 without a
    /// bar). The difference across a measured window is the display's share of the change
    /// in live bytes; the bar draws on the calling thread only, so `mm_track::count` sees it.
    pub fn kept_bytes(&self) -> i64 {
        self.kept
    }

    /// Ends the bar (clears it, so the report that follows stands alone).
    pub fn finish(&mut self) {
        if let Mode::Bar(bar) = &self.mode {
            bar.finish_and_clear();
        }
    }
}
