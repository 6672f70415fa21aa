//! A progress bar on the terminal while many droplets compile at start-up.

use droplet_host::droplets::LoadProgress;
use indicatif::{ProgressBar, ProgressStyle};

/// Draws a bar when stderr is a terminal and more than one droplet
/// compiles; otherwise shows nothing (the host logs a summary line either
/// way).
pub struct CompileProgress {
    bar: std::sync::OnceLock<ProgressBar>,
}

impl CompileProgress {
    /// No bar until compilation starts.
    pub fn new() -> Self {
        Self {
            bar: std::sync::OnceLock::new(),
        }
    }
}

impl LoadProgress for CompileProgress {
    fn started(&self, total: usize) {
        use std::io::IsTerminal;
        if total < 2 || !std::io::stderr().is_terminal() {
            return;
        }
        let bar = ProgressBar::new(total as u64);
        if let Ok(style) =
            ProgressStyle::with_template("compiling droplets {bar:40} {pos}/{len} {elapsed}")
        {
            bar.set_style(style);
        }
        let _ = self.bar.set(bar);
    }

    fn loaded(&self) {
        if let Some(bar) = self.bar.get() {
            bar.inc(1);
        }
    }

    fn finished(&self) {
        if let Some(bar) = self.bar.get() {
            bar.finish_and_clear();
        }
    }
}
