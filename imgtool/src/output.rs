//! How commands print what they list: docker-style tables, sizes as docker
//! writes them, and indented JSON for `--json` and `inspect`.

use std::io::{self, Write};

use serde::Serialize;

/// Writes a header line of column titles, then `rows`: each cell padded to
/// its column's width and followed by a space, except in the last column,
/// which is neither padded nor followed (its width is not used).
pub fn write_table(
    out: &mut impl Write,
    columns: &[(&str, usize)],
    rows: &[Vec<String>],
) -> io::Result<()> {
    let titles: Vec<String> = columns.iter().map(|(title, _)| title.to_string()).collect();
    for row in std::iter::once(&titles).chain(rows) {
        let Some((last, padded)) = row.split_last() else {
            continue;
        };
        for (cell, (_, width)) in padded.iter().zip(columns) {
            write!(out, "{cell:<width$} ")?;
        }
        writeln!(out, "{last}")?;
    }
    Ok(())
}

/// Writes `value` as indented JSON, then a newline.
pub fn write_json(out: &mut impl Write, value: &impl Serialize) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}

/// A byte count as docker shows sizes: decimal units, `12.3MB`.
pub fn human_size(n: u64) -> String {
    let f = n as f64;
    if f >= 1e9 {
        format!("{:.2}GB", f / 1e9)
    } else if f >= 1e6 {
        format!("{:.1}MB", f / 1e6)
    } else if f >= 1e3 {
        format!("{:.1}kB", f / 1e3)
    } else {
        format!("{n}B")
    }
}

/// `s` when it has at most `max` bytes, else its first `max - 1` bytes and
/// `…` (a long command in a table column).
pub fn ellipsize(mut s: String, max: usize) -> String {
    if s.len() > max {
        s.truncate(max - 1);
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_pad_every_column_but_the_last() {
        let mut out = Vec::new();
        let rows = vec![vec!["a".to_string(), "bb".to_string(), "c".to_string()]];
        write_table(&mut out, &[("ONE", 4), ("TWO", 3), ("THREE", 0)], &rows).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "ONE  TWO THREE\na    bb  c\n"
        );
    }

    #[test]
    fn sizes_in_decimal_units() {
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_500), "1.5kB");
        assert_eq!(human_size(12_340_000), "12.3MB");
        assert_eq!(human_size(2_000_000_000), "2.00GB");
    }

    #[test]
    fn long_text_is_cut_with_an_ellipsis() {
        assert_eq!(ellipsize("short".into(), 28), "short");
        assert_eq!(ellipsize("abcdef".into(), 4), "abc…");
    }
}
