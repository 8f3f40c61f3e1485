//! An ASCII table drawn the way patronictl draws its tables (Python `prettytable` with
//! patronictl's title overlay), so the output of `pghactl list` is byte-for-byte what operators
//! and their scripts know:
//!
//! ```text
//! + Cluster: pgha-bench (7710809278050705596) ----+----+-------------+-----+------------+-----+
//! | Member | Host           | Role    | State     | TL | Receive LSN | Lag | Replay LSN | Lag |
//! +--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
//! | node1  | 127.0.0.1:5451 | Replica | streaming |  1 |   0/4000000 |   0 |  0/4000000 |   0 |
//! +--------+----------------+---------+-----------+----+-------------+-----+------------+-----+
//! ```
//!
//! - Every column is as wide as its widest line (header included), with one space of padding on
//!   each side; headers are aligned like their column.
//! - A cell may hold several lines; the row is then as tall as its tallest cell, shorter cells
//!   are padded with blank lines below, and a rule is drawn between all rows (not only around
//!   the header).
//! - The title is written over the top border, right after the first `+`. A title longer than
//!   the table is cut so that the border's last `+` survives.

/// Horizontal alignment of a column (header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

#[derive(Debug, Clone, Default)]
pub struct Table {
    pub title: Option<String>,
    pub columns: Vec<(String, Align)>,
    pub rows: Vec<Vec<String>>,
}

/// Display width of a string: one per character, two for East Asian wide characters.
pub fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60
        | 0xFFE0..=0xFFE6 | 0x1F300..=0x1F64F | 0x1F900..=0x1F9FF | 0x20000..=0x3FFFD);
    if wide {
        2
    } else if c.is_control() {
        0
    } else {
        1
    }
}

fn pad(s: &str, w: usize, align: Align) -> String {
    let fill = " ".repeat(w.saturating_sub(width(s)));
    match align {
        Align::Left => format!("{s}{fill}"),
        Align::Right => format!("{fill}{s}"),
    }
}

impl Table {
    pub fn new(title: Option<String>, columns: Vec<(String, Align)>) -> Table {
        Table {
            title,
            columns,
            rows: Vec::new(),
        }
    }

    pub fn add_row(&mut self, row: Vec<String>) {
        self.rows.push(row);
    }

    fn widths(&self) -> Vec<usize> {
        self.columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .flat_map(|cell| cell.split('\n'))
                    .map(width)
                    .chain(std::iter::once(width(name)))
                    .max()
                    .unwrap_or(0)
            })
            .collect()
    }

    /// The table without a trailing newline.
    pub fn render(&self) -> String {
        let widths = self.widths();
        let rule: String = std::iter::once("+".to_string())
            .chain(widths.iter().map(|w| format!("{}+", "-".repeat(w + 2))))
            .collect();
        let multiline = self.rows.iter().flatten().any(|c| c.contains('\n'));

        let mut lines = vec![self.top_border(&rule)];
        let header: Vec<String> = self.columns.iter().map(|(n, _)| n.clone()).collect();
        lines.extend(self.row_lines(&header, &widths));
        lines.push(rule.clone());
        for (i, row) in self.rows.iter().enumerate() {
            lines.extend(self.row_lines(row, &widths));
            if multiline && i + 1 < self.rows.len() {
                lines.push(rule.clone());
            }
        }
        lines.push(rule);
        lines.join("\n")
    }

    fn top_border(&self, rule: &str) -> String {
        let Some(title) = self.title.as_deref().filter(|t| !t.is_empty()) else {
            return rule.to_string();
        };
        let chars: Vec<char> = rule.chars().collect();
        let room = chars.len().saturating_sub(2);
        let title: String = title.chars().take(room).collect();
        let used = title.chars().count();
        let mut out = String::new();
        out.push(chars[0]);
        out.push_str(&title);
        out.extend(&chars[1 + used..]);
        out
    }

    fn row_lines(&self, row: &[String], widths: &[usize]) -> Vec<String> {
        let cells: Vec<Vec<&str>> = (0..self.columns.len())
            .map(|i| row.get(i).map_or(vec![""], |c| c.split('\n').collect()))
            .collect();
        let height = cells.iter().map(Vec::len).max().unwrap_or(1);
        (0..height)
            .map(|line| {
                let mut s = String::from("|");
                for (i, cell) in cells.iter().enumerate() {
                    let text = cell.get(line).copied().unwrap_or("");
                    s.push(' ');
                    s.push_str(&pad(text, widths[i], self.columns[i].1));
                    s.push_str(" |");
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols(names: &[(&str, Align)]) -> Vec<(String, Align)> {
        names.iter().map(|(n, a)| (n.to_string(), *a)).collect()
    }

    #[test]
    fn empty_table_draws_header_and_both_rules() {
        let t = Table::new(
            None,
            cols(&[
                ("TL", Align::Right),
                ("LSN", Align::Right),
                ("Reason", Align::Left),
            ]),
        );
        assert_eq!(
            t.render(),
            "+----+-----+--------+\n| TL | LSN | Reason |\n+----+-----+--------+\n+----+-----+--------+"
        );
    }

    #[test]
    fn title_overlays_top_border_and_is_cut_to_fit() {
        let mut t = Table::new(Some(" Cluster: x (1) ".into()), cols(&[("A", Align::Left)]));
        t.add_row(vec!["abc".into()]);
        // rule is "+-----+" (7 chars): room for 5 title characters.
        assert_eq!(t.render().lines().next().unwrap(), "+ Clus+");

        let mut t = Table::new(
            Some(" T ".into()),
            cols(&[("Member", Align::Left), ("TL", Align::Right)]),
        );
        t.add_row(vec!["n1".into(), "10".into()]);
        assert_eq!(
            t.render(),
            "+ T -----+----+\n| Member | TL |\n+--------+----+\n| n1     | 10 |\n+--------+----+"
        );
    }

    #[test]
    fn multiline_cells_add_rules_between_rows() {
        let mut t = Table::new(None, cols(&[("Name", Align::Left), ("Tags", Align::Left)]));
        t.add_row(vec!["a".into(), "x: 1\nyy: 2".into()]);
        t.add_row(vec!["b".into(), "".into()]);
        assert_eq!(
            t.render(),
            "+------+-------+\n\
             | Name | Tags  |\n\
             +------+-------+\n\
             | a    | x: 1  |\n\
             |      | yy: 2 |\n\
             +------+-------+\n\
             | b    |       |\n\
             +------+-------+"
        );
    }

    #[test]
    fn right_aligned_header_and_cells() {
        let mut t = Table::new(None, cols(&[("Lag", Align::Right)]));
        t.add_row(vec!["unknown".into()]);
        assert_eq!(
            t.render(),
            "+---------+\n|     Lag |\n+---------+\n| unknown |\n+---------+"
        );
    }
}
