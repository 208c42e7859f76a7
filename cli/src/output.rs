//! Printing results: aligned columns for people, one JSON document for scripts (`--output json`).

use std::io::Write;

use serde::Serialize;

use crate::args::Output;
use crate::fail::Result;

/// `text` safe to print on a terminal: control characters (a server's text may carry escape
/// sequences) shown as `\u{…}` escapes, and on one line.
pub fn clean(text: &str) -> String {
    text.chars().map(|c| if c.is_control() { c.escape_unicode().to_string() } else { c.to_string() }).collect()
}

/// Prints `value` as JSON (pretty) on standard output.
pub fn json(value: &impl Serialize) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value).map_err(|e| crate::fail::Fail::internal(e.to_string()))?;
    writeln!(out)?;
    Ok(())
}

/// A listing: `rows` under `headers` as text, or `value` as JSON.
pub fn listing(
    output: Output,
    value: &impl Serialize,
    headers: &[&str],
    rows: Vec<Vec<String>>,
    empty: &str,
) -> Result<()> {
    if output == Output::Json {
        return json(value);
    }
    let mut out = std::io::stdout().lock();
    if rows.is_empty() {
        writeln!(out, "{empty}")?;
        return Ok(());
    }
    let rows: Vec<Vec<String>> = rows.into_iter().map(|row| row.iter().map(|c| clean(c)).collect()).collect();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let last = cells.len() - 1;
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| if i == last { (*c).to_owned() } else { format!("{c:<w$}", w = widths[i]) })
            .collect::<Vec<_>>()
            .join("  ")
    };
    writeln!(out, "{}", line(headers.to_vec()))?;
    for row in &rows {
        writeln!(out, "{}", line(row.iter().map(String::as_str).collect()))?;
    }
    Ok(())
}

/// A result: `text` for people, `value` as JSON.
pub fn result(output: Output, value: &impl Serialize, text: &str) -> Result<()> {
    match output {
        Output::Json => json(value),
        Output::Text => {
            // Lines of our own making stay lines; what is in them is cleaned.
            let lines: Vec<String> = text.lines().map(clean).collect();
            println!("{}", lines.join("\n"));
            Ok(())
        }
    }
}

pub fn opt<T: ToString>(v: &Option<T>) -> String {
    v.as_ref().map(ToString::to_string).unwrap_or_else(|| "-".into())
}
