//! Progress of long work (`rekey run` over many credentials): a bar on a terminal, plain lines
//! when stderr is a file or a pipe (logs, CI), nothing with `--json`. Always on stderr, so stdout
//! stays the report; a progress line that cannot be drawn is dropped like any other output.

use crate::monitor::run::RunEvent;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal as _;

/// How a run's progress is shown.
pub enum RunProgress {
    /// A terminal: one bar, redrawn, cleared at the end.
    Bar(ProgressBar),
    /// Not a terminal: a line when work starts and for each rotation.
    Lines,
    /// `--json`: nothing.
    Silent,
}

impl RunProgress {
    /// The display for stderr as it is now.
    pub fn new(json: bool) -> RunProgress {
        if json {
            return RunProgress::Silent;
        }
        if !std::io::stderr().is_terminal() {
            return RunProgress::Lines;
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {pos}/{len}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message("observing");
        RunProgress::Bar(bar)
    }

    /// One event; called from rotations running side by side (the bar is thread-safe).
    pub fn event(&self, event: RunEvent<'_>) {
        match (self, event) {
            (RunProgress::Silent, _) => {}
            (RunProgress::Bar(bar), RunEvent::Observed { done, total }) => {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
            }
            (RunProgress::Bar(bar), RunEvent::Rotating { credential }) => {
                bar.set_message(format!("rotating {credential}"));
            }
            (RunProgress::Bar(bar), RunEvent::Rotated { credential, ok }) => {
                bar.println(format!("{credential}: {}", ended(ok)));
            }
            (RunProgress::Lines, RunEvent::Observed { done, total }) if done == total => {
                err!("run: observed {total} credential(s)");
            }
            (RunProgress::Lines, RunEvent::Observed { .. }) => {}
            (RunProgress::Lines, RunEvent::Rotating { credential }) => {
                err!("run: rotating {credential}");
            }
            (RunProgress::Lines, RunEvent::Rotated { credential, ok }) => {
                err!("run: {credential}: {}", ended(ok));
            }
        }
    }

    /// The work is done: the bar goes, the summary follows.
    pub fn finish(&self) {
        if let RunProgress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

fn ended(ok: bool) -> &'static str {
    if ok {
        "rotated"
    } else {
        "not rotated (see the summary)"
    }
}
