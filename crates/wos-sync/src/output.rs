//! Printing: aligned tables for people, JSON for scripts, progress bars on a terminal, and the
//! two ways a command can end badly (a failure, exit 1; a usage error, exit 2).

use std::{fmt::Display, io::IsTerminal, time::Duration};

use chrono::{DateTime, Utc};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde::Serialize;

/// A usage error found after parsing (exit status 2), e.g. a purge without `--yes`.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// A failure the command already reported line by line (exit status 1, nothing more to print).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Reported(pub String);

/// Prints `value` as pretty JSON on standard output.
pub fn print_json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A table with a header row, columns padded to their widest cell.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<I: IntoIterator<Item = S>, S: Display>(header: I) -> Self {
        Self {
            rows: vec![header.into_iter().map(|h| h.to_string()).collect()],
        }
    }

    pub fn row<I: IntoIterator<Item = S>, S: Display>(&mut self, cells: I) {
        self.rows
            .push(cells.into_iter().map(|c| c.to_string()).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The table as text, one line per row (trailing spaces trimmed).
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|cell| cell.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (cell, width) in row.iter().zip(&widths) {
                line.push_str(cell);
                line.push_str(&" ".repeat(width - cell.chars().count() + 2));
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    pub fn print(&self) {
        print!("{}", self.render());
    }
}

/// A progress bar on standard error, drawn only when it is a terminal (scripts and logs see
/// nothing of it).
pub fn progress(length: u64, message: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(length), target);
    let style = ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} ({eta} left)")
        .map(|style| style.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
}

/// `3s`, `4m`, `2h5m`, `3d` — how long ago, for people.
pub fn age(since: DateTime<Utc>, now: DateTime<Utc>) -> String {
    duration((now - since).to_std().unwrap_or_default())
}

/// A duration, coarsely: `3s`, `4m12s`, `2h5m`, `3d4h`.
pub fn duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        3600..86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// `text` cut to `max` characters (with an ellipsis), on one line.
pub fn clip(text: &str, max: usize) -> String {
    let flat: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max.saturating_sub(1)).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut table = Table::new(["A", "LONGER"]);
        table.row(["xyz", "1"]);
        assert_eq!(table.render(), "A    LONGER\nxyz  1\n");
    }

    #[test]
    fn durations_and_clips_are_short() {
        assert_eq!(duration(Duration::from_secs(5)), "5s");
        assert_eq!(duration(Duration::from_secs(65)), "1m05s");
        assert_eq!(duration(Duration::from_secs(7_300)), "2h01m");
        assert_eq!(duration(Duration::from_secs(90_000)), "1d1h");
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("abcdef", 4), "abc…");
    }
}
