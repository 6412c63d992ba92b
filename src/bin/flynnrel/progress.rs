//! Progress display: a bar per phase on a terminal, sparse `key=value` lines otherwise, nothing
//! with `--quiet` or `--json`. The core reports `(phase, done, total)`; this only draws it.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::output::{Out, kv_value};

enum Mode {
    Bars,
    Lines,
    Silent,
}

/// Draws progress for one command.
pub struct Reporter {
    mode: Mode,
    phase: String,
    bar: Option<ProgressBar>,
    last_line: Instant,
    finished_shown: bool,
}

impl Reporter {
    /// A reporter suited to `out` and to whether stderr is a terminal.
    pub fn new(out: Out) -> Reporter {
        let mode = if out.quiet || out.json {
            Mode::Silent
        } else if std::io::stderr().is_terminal() {
            Mode::Bars
        } else {
            Mode::Lines
        };
        Reporter {
            mode,
            phase: String::new(),
            bar: None,
            last_line: Instant::now(),
            finished_shown: false,
        }
    }

    /// Reports one step; always returns true (the CLI never cancels; Ctrl-C kills the process,
    /// and the core's staging/temp files make that safe).
    pub fn report(&mut self, phase: &str, done: u64, total: u64) -> bool {
        let new_phase = phase != self.phase;
        match self.mode {
            Mode::Silent => {}
            Mode::Bars => {
                if new_phase {
                    if let Some(b) = self.bar.take() {
                        b.finish();
                    }
                    let b = ProgressBar::new(total);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{msg:32} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                        )
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                    );
                    b.set_message(flynnrel::error::escape(phase));
                    self.bar = Some(b);
                }
                if let Some(b) = &self.bar {
                    b.set_length(total);
                    b.set_position(done);
                }
            }
            Mode::Lines => {
                if new_phase {
                    self.finished_shown = false;
                }
                let finished = total > 0 && done >= total;
                let show_finish = finished && !self.finished_shown;
                if new_phase || show_finish || (!finished && self.last_line.elapsed() >= Duration::from_secs(5)) {
                    eprintln!("progress phase={} done={done} total={total}", kv_value(phase));
                    self.last_line = Instant::now();
                    self.finished_shown |= finished;
                }
            }
        }
        if new_phase {
            self.phase = phase.to_string();
        }
        true
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish();
        }
    }
}
