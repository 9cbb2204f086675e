//! Progress for long work: a bar (transfers) or a spinner (searches) on stderr (bytes, rate, elapsed) when
//! stderr is a terminal, nothing otherwise, so scripts and pipes see no noise.

use std::io::{self, IsTerminal};
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

const WITH_TOTAL: &str =
    "{msg} [{wide_bar}] {bytes}/{total_bytes} {binary_bytes_per_sec} {elapsed_precise}";
const WITHOUT_TOTAL: &str = "{spinner} {msg} {bytes} {binary_bytes_per_sec} {elapsed_precise}";

/// Set by [`hide_all`].
static HIDDEN: AtomicBool = AtomicBool::new(false);

/// From now on every bar is hidden (`file-restore --quiet`).
pub fn hide_all() {
    HIDDEN.store(true, Ordering::Relaxed);
}

/// A byte progress bar on stderr when it is a terminal (and [`hide_all`]
/// was not called), else a hidden one (which still counts, but never
/// draws). `total` is the expected size when known.
pub fn progress_bar(total: Option<u64>, message: &str) -> ProgressBar {
    if HIDDEN.load(Ordering::Relaxed) || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let (bar, template) = match total {
        Some(t) => (ProgressBar::new(t), WITH_TOTAL),
        None => (ProgressBar::no_length(), WITHOUT_TOTAL),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar
}

/// A spinner on stderr counting items (matches of a search), with a
/// message that can change; hidden as [`progress_bar`] is.
pub fn spinner(message: &str) -> ProgressBar {
    if HIDDEN.load(Ordering::Relaxed) || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_draw_target(ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template("{spinner} {msg}, {pos} found {elapsed_precise}")
        .unwrap_or_else(|_| ProgressStyle::default_spinner());
    bar.set_style(style);
    bar.set_message(message.to_string());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_when_stderr_is_not_a_terminal() {
        if io::stderr().is_terminal() {
            eprintln!("stderr is a terminal: hidden-bar check skipped");
            return;
        }
        assert!(progress_bar(Some(1), "x").is_hidden());
    }
}
