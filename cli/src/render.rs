//! Small pieces of text shared by the commands' outputs.

use bulkhead_api::identity::reserved_name;
use bulkhead_api::policy::EnforcementMode;
use bulkhead_api::Labels;
use bulkhead_policy::{Output, Verdict};

/// `app=web,env=prod`, or `<none>`.
pub fn labels(labels: &Labels) -> String {
    if labels.is_empty() {
        return "<none>".to_string();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `256 (app=web,env=prod)`, or `2 (reserved:world)`.
pub fn identity(out: &Output, id: u32) -> String {
    match (reserved_name(id), out.identities.get(&id)) {
        (Some(name), _) => format!("{id} ({name})"),
        (None, Some(l)) => format!("{id} ({})", labels(l)),
        (None, None) => id.to_string(),
    }
}

/// `visibility`, `selective` or `full`.
pub fn mode(mode: EnforcementMode) -> &'static str {
    match mode {
        EnforcementMode::Visibility => "visibility",
        EnforcementMode::Selective => "selective",
        EnforcementMode::Full => "full",
    }
}

/// `allow` or `deny`.
pub fn verdict(verdict: Verdict) -> &'static str {
    match verdict {
        Verdict::Allow => "allow",
        Verdict::Deny => "deny",
    }
}

/// Rows of cells printed as aligned columns, two spaces apart.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table whose first row is `header`.
    pub fn new(header: &[&str]) -> Self {
        Self {
            rows: vec![header.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|c| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(c))
                    .map(|s| s.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut text = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (c, cell) in row.iter().enumerate() {
                line.push_str(cell);
                if c + 1 < row.len() {
                    let pad = widths[c] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align() {
        let mut t = Table::new(&["NAME", "ID"]);
        t.row(vec!["shop/web".into(), "256".into()]);
        t.row(vec!["a".into(), "3".into()]);
        assert_eq!(t.render(), "NAME      ID\nshop/web  256\na         3\n");
    }

    #[test]
    fn identities_and_labels() {
        let mut out = Output::default();
        out.identities.insert(
            256,
            [("app".to_string(), "web".to_string())]
                .into_iter()
                .collect(),
        );
        assert_eq!(identity(&out, 256), "256 (app=web)");
        assert_eq!(identity(&out, 2), "2 (reserved:world)");
        assert_eq!(labels(&Labels::new()), "<none>");
    }
}
