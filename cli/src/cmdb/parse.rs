//! CMDB exports as rows of named cells, each cell with the line and column
//! it came from, so a bad value is reported where a person can find it.
//!
//! CSV: RFC 4180 (a header row; quoted cells may hold commas, quotes as
//! `""` and line breaks). JSON: an array of flat objects whose values are
//! strings, numbers, booleans or null.

use std::collections::BTreeMap;

/// One cell: its text and where it starts (1-based line and column).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cell {
    pub value: String,
    pub line: usize,
    pub column: usize,
}

/// One record of the export, by column name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// Where the row starts.
    pub line: usize,
    pub cells: BTreeMap<String, Cell>,
}

/// Input that is not a CMDB export, naming where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

fn err(file: &str, line: usize, column: usize, message: impl Into<String>) -> ParseError {
    ParseError {
        file: file.into(),
        line,
        column,
        message: message.into(),
    }
}

/// CSV records as cells with positions.
fn csv_records(file: &str, text: &str) -> Result<Vec<Vec<Cell>>, ParseError> {
    let mut records = Vec::new();
    let mut record: Vec<Cell> = Vec::new();
    let (mut line, mut column) = (1usize, 1usize);
    let mut chars = text.trim_start_matches('\u{feff}').chars().peekable();
    let mut cell = String::new();
    let mut start = (1, 1);
    let mut quoted = false;
    let mut in_quotes = false;
    let mut touched = false;
    while let Some(c) = chars.next() {
        let here = (line, column);
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += 1;
        }
        if in_quotes {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    column += 1;
                    cell.push('"');
                } else {
                    in_quotes = false;
                }
            } else {
                cell.push(c);
            }
            continue;
        }
        match c {
            '"' if !touched => {
                quoted = true;
                in_quotes = true;
                touched = true;
                start = here;
            }
            '"' => return Err(err(file, here.0, here.1, "a quote inside an unquoted cell")),
            ',' | '\n' => {
                let value = if quoted {
                    std::mem::take(&mut cell)
                } else {
                    std::mem::take(&mut cell).trim_end_matches('\r').to_string()
                };
                if !touched {
                    start = here;
                }
                record.push(Cell {
                    value,
                    line: start.0,
                    column: start.1,
                });
                (quoted, touched) = (false, false);
                if c == '\n' {
                    let blank = record.len() == 1 && record[0].value.trim().is_empty();
                    if !blank {
                        records.push(std::mem::take(&mut record));
                    }
                    record.clear();
                }
            }
            '\r' if quoted => {}
            c => {
                if quoted {
                    return Err(err(file, here.0, here.1, "text after a closing quote"));
                }
                if !touched {
                    start = here;
                    touched = true;
                }
                cell.push(c);
            }
        }
    }
    if in_quotes {
        return Err(err(file, start.0, start.1, "a quoted cell is never closed"));
    }
    if touched || !record.is_empty() {
        record.push(Cell {
            value: cell.trim_end_matches('\r').to_string(),
            line: start.0,
            column: start.1,
        });
        records.push(record);
    }
    Ok(records)
}

pub fn csv(file: &str, text: &str) -> Result<Vec<Row>, ParseError> {
    let mut records = csv_records(file, text)?.into_iter();
    let Some(header) = records.next() else {
        return Err(err(file, 1, 1, "empty: expected a header row"));
    };
    let names: Vec<String> = header.iter().map(|c| c.value.trim().to_string()).collect();
    for (i, n) in names.iter().enumerate() {
        if n.is_empty() {
            return Err(err(
                file,
                header[i].line,
                header[i].column,
                "an empty column name",
            ));
        }
        if names[..i].contains(n) {
            return Err(err(
                file,
                header[i].line,
                header[i].column,
                format!("column {n:?} appears twice"),
            ));
        }
    }
    let mut rows = Vec::new();
    for record in records {
        let line = record.first().map(|c| c.line).unwrap_or(1);
        if record.len() != names.len() {
            return Err(err(
                file,
                line,
                1,
                format!("{} cells, the header has {}", record.len(), names.len()),
            ));
        }
        let cells = names.iter().cloned().zip(record).collect();
        rows.push(Row { line, cells });
    }
    Ok(rows)
}

/// Line and column (1-based, in characters) of a byte offset.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// The byte offsets where each top-level array element and each of its
/// keys start: JSON parsers do not keep positions, and a CMDB user needs
/// them.
fn json_offsets(text: &str) -> Vec<(usize, Vec<(String, usize)>)> {
    let bytes = text.as_bytes();
    let mut out: Vec<(usize, Vec<(String, usize)>)> = Vec::new();
    let (mut depth, mut i) = (0usize, 0usize);
    let mut expect_key = false;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                let start = i;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                if depth == 2 && expect_key {
                    if let (Some(last), Some(key)) = (out.last_mut(), text.get(start + 1..i)) {
                        last.1.push((key.to_string(), start));
                    }
                    expect_key = false;
                }
            }
            b'{' | b'[' => {
                depth += 1;
                if depth == 2 && bytes[i] == b'{' {
                    out.push((i, Vec::new()));
                    expect_key = true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            b',' if depth == 2 => expect_key = true,
            _ => {}
        }
        i += 1;
    }
    out
}

pub fn json(file: &str, text: &str) -> Result<Vec<Row>, ParseError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| err(file, e.line(), e.column(), format!("not JSON: {e}")))?;
    let Some(items) = value.as_array() else {
        return Err(err(file, 1, 1, "expected an array of objects"));
    };
    let offsets = json_offsets(text);
    let mut rows = Vec::new();
    for (n, item) in items.iter().enumerate() {
        let (start, keys) = offsets.get(n).cloned().unwrap_or_default();
        let (line, column) = position(text, start);
        let Some(object) = item.as_object() else {
            return Err(err(
                file,
                line,
                column,
                format!("element {n} is not an object"),
            ));
        };
        let mut cells = BTreeMap::new();
        for (k, v) in object {
            let at = keys
                .iter()
                .find(|(key, _)| key == k)
                .map_or(start, |(_, o)| *o);
            let (l, c) = position(text, at);
            let value = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Null => String::new(),
                serde_json::Value::Number(x) => x.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => {
                    return Err(err(
                        file,
                        l,
                        c,
                        format!("{k:?}: nested values are not cells"),
                    ))
                }
            };
            cells.insert(
                k.clone(),
                Cell {
                    value,
                    line: l,
                    column: c,
                },
            );
        }
        rows.push(Row { line, cells });
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_cells_keep_their_positions_and_quotes() {
        let rows = csv(
            "f.csv",
            "ip,name,app\r\n10.0.0.1,\"a, \"\"b\"\"\",pay\r\n\r\n10.0.0.2,\"x\ny\",web\n",
        )
        .expect("csv");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].cells["name"].value, "a, \"b\"");
        assert_eq!(rows[0].cells["app"].value, "pay");
        assert_eq!(
            (rows[0].cells["app"].line, rows[0].cells["app"].column),
            (2, 21)
        );
        assert_eq!(rows[1].line, 4);
        assert_eq!(rows[1].cells["name"].value, "x\ny");
        assert_eq!(rows[1].cells["app"].line, 5);
        let e = csv("f.csv", "ip,app\n10.0.0.1\n").expect_err("short row");
        assert_eq!((e.line, e.column), (2, 1), "{e}");
        let e = csv("f.csv", "ip,app\n1,\"open\n").expect_err("unclosed");
        assert!(e.to_string().starts_with("f.csv:2:3: "), "{e}");
    }

    #[test]
    fn json_cells_point_at_their_keys() {
        let text = "[\n  {\"ip\": \"10.0.0.1\", \"app\": \"pay\"},\n  {\"ip\": \"10.0.0.2\",\n   \"app\": 7}\n]";
        let rows = json("f.json", text).expect("json");
        assert_eq!(rows[1].line, 3);
        assert_eq!(rows[1].cells["app"].value, "7");
        assert_eq!(
            (rows[1].cells["app"].line, rows[1].cells["app"].column),
            (4, 4)
        );
        let e = json("f.json", "[{\"a\": {\"b\": 1}}]").expect_err("nested");
        assert!(e.to_string().contains("nested"), "{e}");
    }
}
