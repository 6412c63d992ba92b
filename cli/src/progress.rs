//! Progress display: one bar for the whole run on a terminal (bytes and assets; a bar per asset
//! too with `-v`), a few `key=value` lines otherwise, nothing with `--quiet` or `--json`. The core
//! reports `(phase, done, total)` from its download threads, interleaved; this only draws it.

use std::io::IsTerminal;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::output::{Out, kv_value};

enum Mode {
    Bars,
    Lines,
    Silent,
}

/// One phase the core reported (an asset's download, layer extraction, a packaging step). A
/// phase whose `done` goes back down started a new item (the next layer): what the previous one
/// reached is kept in `carried`.
struct Phase {
    name: String,
    done: u64,
    total: u64,
    carried: u64,
    bar: Option<ProgressBar>,
}

impl Phase {
    fn done(&self) -> u64 {
        self.carried + self.done
    }
    fn total(&self) -> u64 {
        self.carried + self.total.max(self.done)
    }
    fn finished(&self) -> bool {
        self.total > 0 && self.done >= self.total
    }
}

/// Draws progress for one command.
pub struct Reporter {
    mode: Mode,
    verbose: bool,
    phases: Vec<Phase>,
    multi: Option<&'static MultiProgress>,
    overall: Option<ProgressBar>,
    last_line: Option<Instant>,
}

/// The one set of bars of this process: diagnostics printed while bars are drawn go through it,
/// above the bars, so no bar is drawn twice.
fn bars() -> &'static MultiProgress {
    static BARS: OnceLock<MultiProgress> = OnceLock::new();
    BARS.get_or_init(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()))
}

/// Prints a diagnostic line on stderr (above the bars on a terminal).
pub fn log_line(line: &str) {
    if std::io::stderr().is_terminal() {
        let _ = bars().println(line);
    } else {
        eprintln!("{line}");
    }
}

fn style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
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
            verbose: out.verbose,
            phases: Vec::new(),
            multi: None,
            overall: None,
            last_line: None,
        }
    }

    fn totals(&self) -> (u64, u64, usize, usize) {
        let done = self.phases.iter().map(Phase::done).sum();
        let total = self.phases.iter().map(Phase::total).sum();
        let finished = self.phases.iter().filter(|p| p.finished()).count();
        (done, total, finished, self.phases.len())
    }

    /// Reports one step; always returns true (the CLI never cancels; Ctrl-C kills the process,
    /// and the core's staging/temp files make that safe).
    pub fn report(&mut self, phase: &str, done: u64, total: u64) -> bool {
        if matches!(self.mode, Mode::Silent) {
            return true;
        }
        let idx = match self.phases.iter().position(|p| p.name == phase) {
            Some(i) => i,
            None => {
                self.phases.push(Phase {
                    name: phase.to_string(),
                    done: 0,
                    total,
                    carried: 0,
                    bar: None,
                });
                self.started(self.phases.len() - 1);
                self.phases.len() - 1
            }
        };
        let was_finished = self.phases[idx].finished();
        {
            let p = &mut self.phases[idx];
            if done < p.done {
                p.carried += p.total.max(p.done);
            }
            p.done = done;
            p.total = total;
            if let Some(b) = &p.bar {
                b.set_length(p.total());
                b.set_position(p.done());
            }
        }
        let now_finished = self.phases[idx].finished();
        let (all_done, all_total, finished, n) = self.totals();
        match self.mode {
            Mode::Bars => {
                if let Some(b) = &self.overall {
                    b.set_length(all_total);
                    b.set_position(all_done);
                    b.set_message(format!("{finished}/{n} assets"));
                }
            }
            Mode::Lines => {
                if self.verbose && now_finished && !was_finished {
                    eprintln!(
                        "progress phase={} finished bytes={}",
                        kv_value(&self.phases[idx].name),
                        self.phases[idx].done()
                    );
                }
                if self.last_line.is_none_or(|t| t.elapsed() >= Duration::from_secs(5)) {
                    eprintln!("progress done={all_done} total={all_total} assets={finished}/{n}");
                    self.last_line = Some(Instant::now());
                }
            }
            Mode::Silent => {}
        }
        true
    }

    /// A phase seen for the first time: the overall bar appears with the first one; with `-v`,
    /// each phase gets its own bar (or line) once.
    fn started(&mut self, idx: usize) {
        match self.mode {
            Mode::Bars => {
                let multi = *self.multi.get_or_insert_with(bars);
                if self.overall.is_none() {
                    let b = multi.add(ProgressBar::new(0));
                    b.set_style(style(
                        "{msg:>12} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
                    ));
                    self.overall = Some(b);
                }
                if self.verbose {
                    let b = multi.add(ProgressBar::new(self.phases[idx].total));
                    b.set_style(style("  {msg:38} [{bar:30}] {bytes}/{total_bytes}"));
                    b.set_message(flynnrel::error::escape(&self.phases[idx].name));
                    self.phases[idx].bar = Some(b);
                }
            }
            Mode::Lines => {
                if self.verbose {
                    eprintln!(
                        "progress phase={} started total={}",
                        kv_value(&self.phases[idx].name),
                        self.phases[idx].total
                    );
                }
            }
            Mode::Silent => {}
        }
    }
}

impl Drop for Reporter {
    fn drop(&mut self) {
        for p in &self.phases {
            if let Some(b) = &p.bar {
                b.finish();
            }
        }
        if let Some(b) = self.overall.take() {
            b.finish();
        }
        if matches!(self.mode, Mode::Lines) && !self.phases.is_empty() {
            let (done, total, finished, n) = self.totals();
            eprintln!("progress done={done} total={total} assets={finished}/{n} finished=true");
        }
    }
}
