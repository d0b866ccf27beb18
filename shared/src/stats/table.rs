//! The monthly figures as a person reads them: a text table whose columns align by display
//! width (a CJK label takes two columns per character), or CSV with the definitions as `#`
//! comment lines above the header. Head office's `fieldsync stats` and `/api/stats` print
//! through here; no I/O.

use crate::time::Month;

/// One block of a monthly report: whose it is, its heading in a table, and its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricBlock {
    pub branch: String,
    pub month: Month,
    pub heading: String,
    pub rows: Vec<(String, String)>,
}

/// How many terminal columns `s` takes: East Asian wide and fullwidth characters (CJK,
/// Hangul, kana, fullwidth forms, most emoji) take two, combining marks and zero-width
/// characters none, the rest one. A small table of the blocks our labels use, not the whole
/// of Unicode's East Asian Width property.
pub fn display_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

fn char_width(c: char) -> usize {
    let u = u32::from(c);
    let zero = matches!(u,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x0610..=0x061A
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x2064 | 0x20D0..=0x20FF
        | 0xFE00..=0xFE0F | 0xFE20..=0xFE2F | 0xFEFF | 0xE0100..=0xE01EF);
    if zero || c.is_control() {
        return 0;
    }
    let wide = matches!(u,
        0x1100..=0x115F | 0x231A..=0x231B | 0x2329..=0x232A | 0x23E9..=0x23EC
        | 0x2E80..=0x303E | 0x3041..=0x33FF | 0x3400..=0x4DBF | 0x4E00..=0x9FFF
        | 0xA000..=0xA4CF | 0xA960..=0xA97F | 0xAC00..=0xD7A3 | 0xF900..=0xFAFF
        | 0xFE10..=0xFE19 | 0xFE30..=0xFE6F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F | 0x1F900..=0x1F9FF | 0x20000..=0x2FFFD | 0x30000..=0x3FFFD);
    if wide { 2 } else { 1 }
}

/// `s` followed by spaces up to `width` display columns.
fn pad_right(s: &str, width: usize) -> String {
    let mut out = s.to_owned();
    out.extend(std::iter::repeat_n(
        ' ',
        width.saturating_sub(display_width(s)),
    ));
    out
}

/// Spaces up to `width` display columns, then `s`.
fn pad_left(s: &str, width: usize) -> String {
    let mut out: String = " ".repeat(width.saturating_sub(display_width(s)));
    out.push_str(s);
    out
}

/// One CSV field (RFC 4180): quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Why a report could not be rendered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    #[error("unknown format {0:?}: use table, json or csv")]
    UnknownFormat(String),
    #[error("cannot write JSON: {0}")]
    Json(String),
}

/// Blocks as `csv` (`branch,month,metric,value`, the `definitions` as `#` lines above the
/// header) or a text `table` (`empty` when there are no blocks; the definitions under a
/// "Definitions" heading after the figures). Labels of every block share one column width,
/// so blocks line up with each other too.
pub fn render_blocks(
    blocks: &[MetricBlock],
    format: &str,
    empty: &str,
    definitions: &[&str],
) -> Result<String, RenderError> {
    let mut out = String::new();
    match format {
        "csv" => {
            for d in definitions {
                out.push_str("# ");
                out.push_str(d);
                out.push('\n');
            }
            out.push_str("branch,month,metric,value\n");
            for b in blocks {
                for (name, value) in &b.rows {
                    out.push_str(&format!(
                        "{},{},{},{}\n",
                        csv_field(&b.branch),
                        b.month,
                        csv_field(name),
                        csv_field(value)
                    ));
                }
            }
        }
        "table" => {
            if blocks.is_empty() {
                out.push_str(empty);
            }
            let rows = blocks.iter().flat_map(|b| b.rows.iter());
            let label_width = rows
                .clone()
                .map(|(n, _)| display_width(n))
                .max()
                .unwrap_or(0);
            let value_width = rows.map(|(_, v)| display_width(v)).max().unwrap_or(0);
            for b in blocks {
                out.push_str(&b.heading);
                out.push('\n');
                for (name, value) in &b.rows {
                    let line = format!(
                        "  {}  {}",
                        pad_right(name, label_width),
                        pad_left(value, value_width)
                    );
                    out.push_str(line.trim_end());
                    out.push('\n');
                }
            }
            if !blocks.is_empty() && !definitions.is_empty() {
                out.push_str("\nDefinitions\n");
                for d in definitions {
                    out.push_str("  - ");
                    out.push_str(d);
                    out.push('\n');
                }
            }
        }
        other => return Err(RenderError::UnknownFormat(other.to_owned())),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cjk_characters_are_two_columns_wide() {
        assert_eq!(display_width("abc"), 3);
        assert_eq!(display_width("故障原因"), 8);
        assert_eq!(display_width("冷水機 / 壓縮機"), 15);
        assert_eq!(display_width("e\u{301}"), 1);
        assert_eq!(display_width("ＡＢ"), 4);
    }

    fn block(rows: &[(&str, &str)]) -> MetricBlock {
        MetricBlock {
            branch: "north-01".into(),
            month: "2026-11".parse().expect("valid"),
            heading: "branch north-01, 2026-11".into(),
            rows: rows
                .iter()
                .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// R24: every value ends in the same display column, whatever the labels.
    #[test]
    fn r24_table_columns_align_by_display_width_with_long_and_cjk_labels() {
        let long = "fault cause: industrial refrigeration chiller / compressor overheats";
        let b = block(&[
            ("reports", "3"),
            (long, "2"),
            ("fault cause: 冷水機 / 壓縮機", "1"),
            ("service cost", "1234.50"),
        ]);
        let text = render_blocks(&[b], "table", "", &["d1"]).expect("renders");
        let lines: Vec<&str> = text.lines().skip(1).take(4).collect();
        let ends: Vec<usize> = lines.iter().map(|l| display_width(l)).collect();
        assert!(ends.iter().all(|e| *e == ends[0]), "{text}");
        assert_eq!(ends[0], 2 + display_width(long) + 2 + "1234.50".len());
        assert!(text.ends_with("\nDefinitions\n  - d1\n"), "{text}");
    }

    #[test]
    fn r24_csv_has_the_definitions_as_comments_and_quotes_fields() {
        let b = block(&[("fault cause: chiller / fan, belt", "1")]);
        let text = render_blocks(&[b], "csv", "", &["cost includes parts"]).expect("renders");
        assert_eq!(
            text,
            "# cost includes parts\nbranch,month,metric,value\n\
             north-01,2026-11,\"fault cause: chiller / fan, belt\",1\n"
        );
        let err = render_blocks(&[], "xml", "", &[]).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown format \"xml\": use table, json or csv"
        );
    }
}
