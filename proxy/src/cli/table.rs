//! Plain-text tables for the list commands: columns padded to the widest cell, so that a
//! terminal shows them aligned and `grep`/`awk` still work on a line.

/// A table with a header row.
#[derive(Debug, Default)]
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Self {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Renders the table; the last column is not padded.
    pub fn render(&self) -> String {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                let w = cell.chars().count();
                match widths.get_mut(i) {
                    Some(slot) => *slot = (*slot).max(w),
                    None => widths.push(w),
                }
            }
        }
        let mut out = String::new();
        for row in std::iter::once(&self.header).chain(self.rows.iter()) {
            let last = row.len().saturating_sub(1);
            for (i, cell) in row.iter().enumerate() {
                out.push_str(cell);
                if i < last {
                    let pad = widths.get(i).copied().unwrap_or(0)
                        - cell
                            .chars()
                            .count()
                            .min(widths.get(i).copied().unwrap_or(0));
                    out.extend(std::iter::repeat_n(' ', pad + 2));
                }
            }
            out.push('\n');
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_columns_to_the_widest_cell() {
        let mut t = Table::new(&["ID", "USER"]);
        t.row(vec!["1".into(), "tanaka".into()]);
        t.row(vec!["1234".into(), "sato".into()]);
        assert_eq!(t.render(), "ID    USER\n1     tanaka\n1234  sato\n");
    }
}
