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

/// A table for people, sized to the terminal when there is one.
pub fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    let mut table = comfy_table::Table::new();
    table
        .load_preset(comfy_table::presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(comfy_table::ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    if !std::io::stdout().is_terminal() {
        table.set_width(160);
    }
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}
