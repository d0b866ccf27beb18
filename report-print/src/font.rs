//! The one face every report is set in, and the glyph layout krilla draws.
//!
//! WenQuanYi Micro Hei covers Latin and CJK in one face (fonts/README.md), so there is no
//! fallback to choose: each character maps to its glyph, advanced by its width. Chinese needs
//! no shaping and the Latin of a report reads fine without kerning, so no shaper is compiled
//! in. A character the face lacks is drawn as its missing-glyph box and kept in the text layer
//! (a reader copying or searching the PDF still gets it).

use krilla::text::{Font, GlyphId, KrillaGlyph};
use skrifa::instance::{LocationRef, Size};
use skrifa::metrics::GlyphMetrics;
use skrifa::{FontRef, MetadataProvider, charmap::Charmap};

use crate::PrintError;

/// The committed font file (a collection; face 0 is the proportional face).
static FONT_FILE: &[u8] = include_bytes!("../fonts/wqy-microhei.ttc");
const FACE: u32 = 0;

/// The face with what layout needs of it.
pub(crate) struct Face {
    pub font: Font,
    charmap: Charmap<'static>,
    metrics: GlyphMetrics<'static>,
    units_per_em: f32,
}

impl std::fmt::Debug for Face {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Face(WenQuanYi Micro Hei)")
    }
}

impl Face {
    pub fn load() -> Result<Self, PrintError> {
        let bad = |e: String| PrintError::Pdf(format!("the built-in font cannot be read: {e}"));
        let font_ref = FontRef::from_index(FONT_FILE, FACE).map_err(|e| bad(e.to_string()))?;
        let units_per_em = f32::from(
            font_ref
                .metrics(Size::unscaled(), LocationRef::default())
                .units_per_em,
        );
        if units_per_em <= 0.0 {
            return Err(bad("no units per em".into()));
        }
        let font = Font::new(krilla::Data::from(FONT_FILE), FACE)
            .ok_or_else(|| bad("krilla refused it".into()))?;
        Ok(Self {
            font,
            charmap: font_ref.charmap(),
            metrics: font_ref.glyph_metrics(Size::unscaled(), LocationRef::default()),
            units_per_em,
        })
    }

    /// The glyph of `ch` and its advance in em.
    fn glyph(&self, ch: char) -> (GlyphId, f32) {
        let gid = self.charmap.map(ch).unwrap_or_default();
        let advance = self.metrics.advance_width(gid).unwrap_or(0.0) / self.units_per_em;
        (GlyphId::new(gid.to_u32()), advance)
    }

    /// The width of `text` at `size` points.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        text.chars().map(|c| self.glyph(c).1).sum::<f32>() * size
    }

    /// One glyph per character, each covering its bytes of `text`.
    pub fn glyphs(&self, text: &str) -> Vec<KrillaGlyph> {
        text.char_indices()
            .map(|(i, c)| {
                let (glyph_id, advance) = self.glyph(c);
                KrillaGlyph {
                    glyph_id,
                    text_range: i..i + c.len_utf8(),
                    x_advance: advance,
                    x_offset: 0.0,
                    y_offset: 0.0,
                    y_advance: 0.0,
                    location: None,
                }
            })
            .collect()
    }

    /// Breaks `text` into lines no wider than `width` at `size`: at spaces between Latin
    /// words, between any two CJK characters, inside a word only when it alone is too wide,
    /// and at every newline.
    pub fn wrap(&self, text: &str, size: f32, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            let mut line_w = 0.0;
            for token in tokens(paragraph) {
                let token_w = self.width(token, size);
                if line_w + token_w <= width || line.is_empty() && token_w <= width {
                    line.push_str(token);
                    line_w += token_w;
                    continue;
                }
                if !line.trim().is_empty() {
                    lines.push(line.trim_end().to_owned());
                }
                line = String::new();
                line_w = 0.0;
                if token.trim().is_empty() {
                    continue;
                }
                // A token wider than a line is cut where it must be.
                for c in token.chars() {
                    let w = self.glyph(c).1 * size;
                    if line_w + w > width && !line.is_empty() {
                        lines.push(std::mem::take(&mut line));
                        line_w = 0.0;
                    }
                    line.push(c);
                    line_w += w;
                }
            }
            lines.push(line.trim_end().to_owned());
        }
        lines
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x2E80..=0x9FFF | 0xAC00..=0xD7AF | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFFEF | 0x20000..=0x3FFFF)
}

/// Runs of spaces, runs of other non-CJK characters (words), and single CJK characters.
fn tokens(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut prev: Option<u8> = None; // 0 space, 1 word, 2 CJK
    for (i, c) in text.char_indices() {
        let class = if c == ' ' {
            0
        } else if is_cjk(c) {
            2
        } else {
            1
        };
        if let Some(p) = prev
            && (p != class || class == 2)
        {
            out.push(&text[start..i]);
            start = i;
        }
        prev = Some(class);
    }
    if start < text.len() {
        out.push(&text[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_face_has_latin_and_chinese_glyphs() {
        let face = Face::load().expect("the committed font loads");
        for c in ['A', 'z', '0', '¥', '售', '後', '后', '签'] {
            assert_ne!(face.glyph(c).0.to_u32(), 0, "{c} has no glyph");
            assert!(face.glyph(c).1 > 0.0, "{c} has no width");
        }
    }

    #[test]
    fn lines_break_at_spaces_and_between_chinese_characters() {
        let face = Face::load().expect("loads");
        let size = 10.0;
        let w = face.width("Replaced the", size) + 0.1;
        assert_eq!(
            face.wrap("Replaced the capacitor", size, w),
            ["Replaced the", "capacitor"]
        );
        let w = face.width("更换启动", size) + 0.1;
        assert_eq!(face.wrap("更换启动电容器", size, w), ["更换启动", "电容器"]);
        assert_eq!(face.wrap("a\nb", size, 100.0), ["a", "b"]);
        // A word wider than the line is cut rather than overflowing.
        let lines = face.wrap("SN-8881288812888128881288812", size, 40.0);
        assert!(lines.len() > 1, "{lines:?}");
        assert!(lines.iter().all(|l| face.width(l, size) <= 40.0));
        assert_eq!(lines.concat(), "SN-8881288812888128881288812");
    }
}
