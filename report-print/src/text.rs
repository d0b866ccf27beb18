//! The report as plain text: one field a line, tables as one line a row.

use std::fmt::Write;

use crate::content::{Item, Page};

pub(crate) fn write(page: &Page) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", page.title);
    let _ = writeln!(out, "{}", page.status);
    for section in &page.sections {
        let _ = writeln!(out, "\n== {} ==", section.title);
        for item in &section.items {
            match item {
                Item::Field { label, value } => {
                    let _ = writeln!(out, "{label}: {value}");
                }
                Item::Table { header, rows, .. } => {
                    let _ = writeln!(out, "{}", header.join(" | "));
                    for row in rows {
                        let _ = writeln!(out, "{}", row.join(" | "));
                    }
                }
            }
        }
    }
    let _ = writeln!(out, "\n== {} ==", page.signature.title);
    if page.signature.mark.is_none() {
        let _ = writeln!(out, "{}", page.signature.placeholder);
    }
    for (label, value) in &page.signature.fields {
        let _ = writeln!(out, "{label}: {value}");
    }
    if let Some(seal) = &page.seal {
        let _ = writeln!(out, "\n== {} ==", seal.title);
        for (label, value) in &seal.fields {
            let _ = writeln!(out, "{label}: {value}");
        }
        let _ = writeln!(out, "QR: {}", seal.qr);
    }
    let _ = writeln!(out, "\n{}", page.footer);
    out
}
