//! Printing: human text on stdout (notes on stderr), or one JSON document
//! on stdout with everything else on stderr.

use std::io::{IsTerminal, Write};

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A timestamp as plans and output show it: `2026-11-28T17:00:00Z`.
pub fn time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn opt_time(t: Option<DateTime<Utc>>) -> String {
    t.map(time).unwrap_or_else(|| "-".into())
}

/// Prints one JSON document on stdout. Buffered: stdout flushes at every
/// newline, and a pretty document over thousands of plans has a lot of them.
pub fn json<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    out.flush()?;
    Ok(())
}

/// A line for people: stdout in text mode.
pub fn line(text: impl AsRef<str>) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", text.as_ref());
}

/// A side note (progress, hints): always stderr.
pub fn note(text: impl AsRef<str>) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", text.as_ref());
}

/// Whether stderr is a terminal (for progress bars and colour).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Set once, from `--output table`: box-drawn tables even off a terminal.
static BOXES_FORCED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

/// `--output table`: tables keep their boxes wherever stdout goes.
pub fn force_boxes() {
    let _ = BOXES_FORCED.set(true);
}

/// The width of the terminal stdout is, when it is one of a usable width.
/// A terminal of width 0 (`script`, `docker exec -t`, some CI runners)
/// counts as none.
fn terminal_width() -> Option<u16> {
    if !std::io::stdout().is_terminal() {
        return None;
    }
    terminal_size::terminal_size()
        .map(|(terminal_size::Width(w), _)| w)
        .filter(|w| *w > 0)
}

/// A table for people: boxes sized to the terminal when stdout is one (or
/// with `--output table`); otherwise plain columns aligned with spaces,
/// which survive pipes, `grep` and `cut`.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let width = terminal_width();
    let boxes = width.is_some() || BOXES_FORCED.get().copied().unwrap_or(false);
    let mut table = comfy_table::Table::new();
    if boxes {
        table
            .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
            .set_width(width.unwrap_or(160));
    } else {
        table
            .load_preset(comfy_table::presets::NOTHING)
            .set_content_arrangement(comfy_table::ContentArrangement::Disabled);
    }
    table.set_header(header.iter().copied());
    for row in rows {
        table.add_row(row);
    }
    if boxes {
        return table.to_string();
    }
    // Plain columns: no padding before the first column, none after the
    // last.
    table
        .lines()
        .map(|line| {
            line.strip_prefix(' ')
                .unwrap_or(&line)
                .trim_end()
                .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}
