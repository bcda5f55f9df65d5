//! The `-p` progress reporter shared by every command that has one
//! (convert, commit, rebase, compare, amend), with qemu-img's semantics
//! (util/qemu-progress.c): a percentage kept in single precision, printed
//! as `    (%.2f/100%)\r` whenever it has advanced by more than the command's
//! minimum step since the last line, and always at 0 % and 100 %; `end`
//! writes the closing newline. Scripts parse these bytes, so off a terminal
//! they are qemu-img's exactly; on a terminal the same numbers drive a bar.
//!
//! A reporter created disabled (no `-p`, or `-q`) prints nothing at all. A
//! reporter dropped without [`Progress::end`] ends itself, so an error
//! return still closes the line as qemu-img does.

use std::io::{IsTerminal, Write};

/// Where an enabled reporter draws.
enum Sink {
    /// qemu-img's lines on standard output.
    Plain,
    /// A bar on a terminal (the same percentages).
    Bar(indicatif::ProgressBar),
    /// The lines kept in memory (unit tests).
    #[cfg(test)]
    Record(Vec<String>),
}

/// A progress reporter (qemu-img's `qemu_progress_*` state).
pub struct Progress {
    sink: Option<Sink>,
    current: f32,
    last_print: f32,
    min_skip: f32,
    ended: bool,
}

impl Progress {
    /// A reporter that prints when `enabled`, at most once per `min_skip`
    /// percent (qemu-img uses 1.0 for convert, commit and amend, 2.0 for
    /// compare). Prints nothing yet.
    pub fn new(enabled: bool, min_skip: f32) -> Progress {
        let sink = enabled.then(|| {
            if std::io::stdout().is_terminal() {
                let pb = indicatif::ProgressBar::with_draw_target(
                    Some(10_000),
                    indicatif::ProgressDrawTarget::stdout(),
                );
                pb.set_style(
                    indicatif::ProgressStyle::with_template("    ({msg}/100%) {wide_bar}")
                        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
                );
                Sink::Bar(pb)
            } else {
                Sink::Plain
            }
        });
        Progress {
            sink,
            current: 0.0,
            last_print: 0.0,
            min_skip,
            ended: false,
        }
    }

    /// True when the reporter prints.
    pub fn enabled(&self) -> bool {
        self.sink.is_some()
    }

    /// qemu-img's `qemu_progress_print(delta, max)`: with `max == 0`,
    /// `delta` is the new absolute percentage; otherwise the percentage grows
    /// by `delta` percent of `max`. Capped at 100.
    pub fn print(&mut self, delta: f32, max: i32) {
        let mut current = if max == 0 {
            delta
        } else {
            self.current + delta / 100.0 * max as f32
        };
        if current > 100.0 {
            current = 100.0;
        }
        self.current = current;
        if current > self.last_print + self.min_skip || current == 100.0 || current == 0.0 {
            self.last_print = current;
            self.draw();
        }
    }

    /// Sets the absolute percentage (`print(pct, 0)`).
    pub fn set(&mut self, pct: f32) {
        self.print(pct, 0);
    }

    /// Sets the percentage to `done / total` of the work (100 when `total`
    /// is 0), computed in double precision as qemu-img's callers do.
    pub fn set_fraction(&mut self, done: u64, total: u64) {
        let pct = if total == 0 {
            100.0
        } else {
            100.0 * done as f64 / total as f64
        };
        self.set(pct as f32);
    }

    fn draw(&mut self) {
        let current = self.current;
        match &mut self.sink {
            None => {}
            Some(Sink::Plain) => {
                let mut out = std::io::stdout().lock();
                let _ = write!(out, "    ({current:.2}/100%)\r");
                let _ = out.flush();
            }
            Some(Sink::Bar(pb)) => {
                pb.set_message(format!("{current:.2}"));
                pb.set_position((f64::from(current) * 100.0) as u64);
            }
            #[cfg(test)]
            Some(Sink::Record(v)) => v.push(format!("    ({current:.2}/100%)\r")),
        }
    }

    /// Ends the report: the closing newline (`qemu_progress_end`). Output
    /// printed afterwards starts on its own line.
    pub fn end(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        match &mut self.sink {
            None => {}
            Some(Sink::Plain) => {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(out);
                let _ = out.flush();
            }
            Some(Sink::Bar(pb)) => {
                pb.finish();
                println!();
            }
            #[cfg(test)]
            Some(Sink::Record(v)) => v.push("\n".to_string()),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.end();
    }
}

#[cfg(test)]
mod tests {
    use super::{Progress, Sink};

    /// What a reporter with `min_skip` prints for `steps`, then `end`.
    fn printed(min_skip: f32, steps: &[(f32, i32)]) -> String {
        let mut p = Progress::new(false, min_skip);
        p.sink = Some(Sink::Record(Vec::new()));
        for &(d, m) in steps {
            p.print(d, m);
        }
        p.end();
        match p.sink.take() {
            Some(Sink::Record(v)) => v.concat(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn prints_past_the_minimum_step_and_at_both_ends() {
        // compare's 2 % step: 1.5625 is not shown, 15.625 is (rounded to
        // even as printf does).
        assert_eq!(
            printed(2.0, &[(0.0, 100), (1.5625, 100), (14.0625, 100)]),
            "    (0.00/100%)\r    (15.62/100%)\r\n"
        );
        // Relative steps accumulate and cap at 100, which always prints.
        assert_eq!(
            printed(1.0, &[(0.0, 100), (60.0, 100), (60.0, 100), (100.0, 0)]),
            "    (0.00/100%)\r    (60.00/100%)\r    (100.00/100%)\r    (100.00/100%)\r\n"
        );
    }

    #[test]
    fn a_disabled_reporter_prints_nothing() {
        let mut p = Progress::new(false, 1.0);
        p.print(0.0, 100);
        p.set(100.0);
        p.end();
        assert!(!p.enabled());
    }
}
