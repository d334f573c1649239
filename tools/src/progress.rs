//! Progress of a long command, on standard error and only on a terminal: a
//! person watching sees it move, a pipe or a log file gets nothing but the
//! answer.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Redraw at most this often: a terminal that scrolls is slower than the work.
const REDRAW: Duration = Duration::from_millis(100);

pub struct Progress {
    label: String,
    total: Option<u64>,
    done: u64,
    shown: bool,
    last_drawn: Option<Instant>,
    enabled: bool,
}

impl Progress {
    /// `total`: how many steps in all, when known.
    pub fn new(label: impl Into<String>, total: Option<u64>) -> Self {
        Self::with_terminal(label, total, std::io::stderr().is_terminal())
    }

    fn with_terminal(label: impl Into<String>, total: Option<u64>, enabled: bool) -> Self {
        Self {
            label: label.into(),
            total,
            done: 0,
            shown: false,
            last_drawn: None,
            enabled,
        }
    }

    pub fn set(&mut self, done: u64) {
        self.done = done;
        if !self.enabled || self.last_drawn.is_some_and(|t| t.elapsed() < REDRAW) {
            return;
        }
        self.last_drawn = Some(Instant::now());
        self.shown = true;
        let mut err = std::io::stderr().lock();
        // \r and clear-to-end-of-line: the line is drawn over itself.
        let _ = write!(err, "\r\x1b[K{}", self.line());
        let _ = err.flush();
    }

    pub fn add(&mut self, steps: u64) {
        self.set(self.done + steps);
    }

    /// Clears the line, so what follows starts on a clean one.
    pub fn finish(&mut self) {
        if self.shown {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.shown = false;
        }
    }

    fn line(&self) -> String {
        match self.total {
            Some(total) if total > 0 => format!(
                "{}: {} of {} ({} %)",
                self.label,
                self.done,
                total,
                self.done.min(total) * 100 / total
            ),
            _ => format!("{}: {}", self.label, self.done),
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_how_far() {
        let table = [
            (Some(200), 50, "import: 50 of 200 (25 %)"),
            (Some(200), 250, "import: 250 of 200 (100 %)"),
            (None, 7, "import: 7"),
            (Some(0), 3, "import: 3"),
        ];
        for (total, done, expected) in table {
            let mut p = Progress::with_terminal("import", total, false);
            p.set(done);
            assert_eq!(p.line(), expected);
            assert!(!p.shown, "nothing is drawn off a terminal");
        }
    }
}
