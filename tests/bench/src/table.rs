//! Markdown tables and the number formats the bench prints.

use std::time::Duration;

/// Column alignment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// A Markdown table: a header, an alignment per column, and rows of cells.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    align: Vec<Align>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these `(title, alignment)` columns.
    pub(crate) fn new(columns: &[(&str, Align)]) -> Table {
        Table {
            header: columns.iter().map(|(t, _)| t.to_string()).collect(),
            align: columns.iter().map(|(_, a)| *a).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row; it must have one cell per column.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        assert_eq!(cells.len(), self.header.len(), "one cell per column");
        self.rows.push(cells);
    }

    /// The table as GitHub-flavoured Markdown, columns padded so the text reads as a table too.
    /// A `|` inside a cell is escaped.
    pub(crate) fn render(&self) -> String {
        let escape = |s: &str| s.replace('|', "\\|");
        let header: Vec<String> = self.header.iter().map(|h| escape(h)).collect();
        let rows: Vec<Vec<String>> = self
            .rows
            .iter()
            .map(|r| r.iter().map(|c| escape(c)).collect())
            .collect();
        let widths: Vec<usize> = (0..header.len())
            .map(|i| {
                rows.iter()
                    .map(|r| r[i].chars().count())
                    .chain([header[i].chars().count(), 3])
                    .max()
                    .unwrap_or(3)
            })
            .collect();
        let line = |cells: &[String]| {
            let padded: Vec<String> = cells
                .iter()
                .zip(&widths)
                .zip(&self.align)
                .map(|((c, w), a)| match a {
                    Align::Left => format!("{c:<w$}"),
                    Align::Right => format!("{c:>w$}"),
                })
                .collect();
            format!("| {} |\n", padded.join(" | "))
        };
        let rule: Vec<String> = widths
            .iter()
            .zip(&self.align)
            .map(|(w, a)| match a {
                Align::Left => format!(":{}", "-".repeat(w - 1)),
                Align::Right => format!("{}:", "-".repeat(w - 1)),
            })
            .collect();
        let mut out = line(&header);
        out.push_str(&format!("| {} |\n", rule.join(" | ")));
        for r in &rows {
            out.push_str(&line(r));
        }
        out
    }
}

/// Seconds with two decimals: `1.25 s`.
pub(crate) fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Milliseconds with one decimal: `12.5 ms`.
pub(crate) fn millis(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

/// A ratio with two decimals: `0.42×`.
pub(crate) fn ratio(a: Duration, b: Duration) -> String {
    if b.is_zero() {
        return "n/a".into();
    }
    format!("{:.2}×", a.as_secs_f64() / b.as_secs_f64())
}

/// A share in percent with one decimal: `3.4 %`.
pub(crate) fn percent(part: usize, whole: usize) -> String {
    if whole == 0 {
        return "n/a".into();
    }
    format!("{:.1} %", part as f64 * 100.0 / whole as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_renders_as_aligned_markdown() {
        let mut t = Table::new(&[("strategy", Align::Left), ("failed", Align::Right)]);
        t.row(vec!["naive | script".into(), "12".into()]);
        t.row(vec!["rekey".into(), "0".into()]);
        assert_eq!(
            t.render(),
            "\
| strategy        | failed |
| :-------------- | -----: |
| naive \\| script |     12 |
| rekey           |      0 |
"
        );
    }

    #[test]
    fn narrow_columns_keep_a_valid_rule() {
        let mut t = Table::new(&[("a", Align::Left), ("b", Align::Right)]);
        t.row(vec!["x".into(), "1".into()]);
        assert_eq!(t.render(), "| a   |   b |\n| :-- | --: |\n| x   |   1 |\n");
    }

    #[test]
    #[should_panic(expected = "one cell per column")]
    fn a_row_needs_every_cell() {
        Table::new(&[("a", Align::Left)]).row(vec![]);
    }

    #[test]
    fn number_formats() {
        assert_eq!(secs(Duration::from_millis(1250)), "1.25 s");
        assert_eq!(millis(Duration::from_micros(12_440)), "12.4 ms");
        assert_eq!(
            ratio(Duration::from_millis(50), Duration::from_millis(200)),
            "0.25×"
        );
        assert_eq!(ratio(Duration::from_millis(50), Duration::ZERO), "n/a");
        assert_eq!(percent(1, 3), "33.3 %");
        assert_eq!(percent(0, 0), "n/a");
    }
}
