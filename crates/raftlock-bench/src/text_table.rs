//! Plain-text tables in Markdown's pipe form: a header, a rule, and the
//! body, the first column left-aligned and the rest right-aligned unless
//! marked, every column as wide as its widest cell.

use std::fmt::Write as _;

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// `header` and `body` as a table; `align` gives each column's alignment
/// (a column beyond it is right-aligned). Rows shorter than the header
/// are padded with empty cells.
pub fn render(header: &[String], body: &[Vec<String>], align: &[Align]) -> String {
    let columns = header.len();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for line in body {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &[String]| {
        out.push('|');
        for (i, width) in widths.iter().enumerate() {
            let cell = cells.get(i).map_or("", String::as_str);
            let _ = match align.get(i).copied().unwrap_or(Align::Right) {
                Align::Left => write!(out, " {cell:<width$} |"),
                Align::Right => write!(out, " {cell:>width$} |"),
            };
        }
        out.push('\n');
    };
    line(header);
    line(&widths.iter().map(|w| "-".repeat(*w)).collect::<Vec<_>>());
    for cells in body {
        line(&cells[..cells.len().min(columns)]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_line_up_and_short_rows_are_padded() {
        let header = vec!["metric".to_string(), "value".into()];
        let body = vec![
            vec!["a".to_string(), "1".into()],
            vec!["longer name".to_string()],
        ];
        let text = render(&header, &body, &[Align::Left]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines
            .iter()
            .all(|l| l.chars().count() == lines[0].chars().count()));
        assert_eq!(lines[2], "| a           |     1 |");
        assert_eq!(lines[3], "| longer name |       |");
    }
}
