//! The report as an A4 PDF: laid out first into pages of drawing operations (pure
//! arithmetic, so page breaks and the "page n of N" footer are known before anything is
//! drawn), then drawn with krilla, which subsets the font and compresses the streams.

use fieldsync_shared::job::SignatureMark;
use krilla::Document;
use krilla::color::rgb;
use krilla::embed::{AssociationKind, EmbeddedFile, MimeType};
use krilla::geom::{PathBuilder, Point, Rect, Size, Transform};
use krilla::image::Image;
use krilla::metadata::Metadata;
use krilla::num::NormalizedF32;
use krilla::page::PageSettings;
use krilla::paint::{Fill, Stroke, StrokeDash};
use krilla::surface::Surface;
use qrcodegen::{QrCode, QrCodeEcc};

use crate::content::{Item, Page};
use crate::font::Face;
use crate::{Language, PrintError, PrintOptions, REPORT_ATTACHMENT};

const PAGE_W: f32 = 595.28;
const PAGE_H: f32 = 841.89;
const MARGIN: f32 = 42.0;
const TOP: f32 = 40.0;
const BOTTOM: f32 = PAGE_H - 48.0;
const WIDTH: f32 = PAGE_W - 2.0 * MARGIN;
const LABEL_W: f32 = 118.0;
const BODY: f32 = 9.0;
const LEADING: f32 = 12.5;
const SMALL: f32 = 8.0;

const BLACK: (u8, u8, u8) = (0, 0, 0);
const GREY: (u8, u8, u8) = (90, 90, 90);
const BAND: (u8, u8, u8) = (232, 236, 241);
const RULE: (u8, u8, u8) = (180, 186, 194);
const ACCENT: (u8, u8, u8) = (150, 30, 30);

/// One thing to draw, at page coordinates (origin top left, y down).
#[derive(Debug, Clone)]
enum Op {
    /// Text whose baseline starts at (x, y).
    Text {
        x: f32,
        y: f32,
        size: f32,
        color: (u8, u8, u8),
        text: String,
    },
    Band {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        color: (u8, u8, u8),
    },
    Line {
        x1: f32,
        y1: f32,
        x2: f32,
        y2: f32,
        dashed: bool,
    },
    Signature {
        x: f32,
        y: f32,
        w: f32,
        h: f32,
        mark: SignatureMark,
    },
    /// A QR code's modules, row by row (`n` × `n`, true is dark).
    Qr {
        x: f32,
        y: f32,
        size: f32,
        n: i32,
        dark: Vec<bool>,
    },
}

/// The layout's cursor over pages.
struct Layout<'a> {
    face: &'a Face,
    pages: Vec<Vec<Op>>,
    y: f32,
}

impl<'a> Layout<'a> {
    fn new(face: &'a Face) -> Self {
        Self {
            face,
            pages: vec![Vec::new()],
            y: TOP,
        }
    }

    fn ops(&mut self) -> &mut Vec<Op> {
        if self.pages.is_empty() {
            self.pages.push(Vec::new());
        }
        let last = self.pages.len() - 1;
        &mut self.pages[last]
    }

    /// Starts a new page unless `h` more points fit on this one.
    fn need(&mut self, h: f32) {
        if self.y + h > BOTTOM && self.y > TOP {
            self.pages.push(Vec::new());
            self.y = TOP;
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, color: (u8, u8, u8), text: &str) {
        if !text.is_empty() {
            self.ops().push(Op::Text {
                x,
                y,
                size,
                color,
                text: text.to_owned(),
            });
        }
    }

    fn heading(&mut self, title: &str) {
        self.need(20.0 + LEADING * 2.0);
        self.y += 6.0;
        let y = self.y;
        self.ops().push(Op::Band {
            x: MARGIN,
            y,
            w: WIDTH,
            h: 17.0,
            color: BAND,
        });
        self.text(MARGIN + 5.0, y + 12.5, 10.5, BLACK, title);
        self.y += 21.0;
    }

    /// A label and its value, wrapped into the value column.
    fn field(&mut self, label: &str, value: &str, value_w: f32) {
        let face = self.face;
        let labels = face.wrap(label, SMALL + 0.5, LABEL_W - 8.0);
        let values = face.wrap(value, BODY, value_w);
        let lines = labels.len().max(values.len()).max(1);
        for i in 0..lines {
            self.need(LEADING);
            let base = self.y + BODY;
            if let Some(l) = labels.get(i) {
                self.text(MARGIN + 5.0, base, SMALL + 0.5, GREY, l);
            }
            if let Some(v) = values.get(i) {
                self.text(MARGIN + LABEL_W, base, BODY, BLACK, v);
            }
            self.y += LEADING;
        }
    }

    fn table(&mut self, header: &[String], rows: &[Vec<String>], widths: &[f32]) {
        let face = self.face;
        let xs: Vec<(f32, f32)> = widths
            .iter()
            .scan(MARGIN + 5.0, |x, share| {
                let w = share * (WIDTH - 10.0);
                let at = *x;
                *x += w;
                Some((at, w - 4.0))
            })
            .collect();
        let row = |layout: &mut Layout<'_>, cells: &[String], size: f32, color| {
            let wrapped: Vec<Vec<String>> = cells
                .iter()
                .zip(&xs)
                .map(|(c, (_, w))| face.wrap(c, size, *w))
                .collect();
            let lines = wrapped.iter().map(Vec::len).max().unwrap_or(1).max(1);
            layout.need(lines as f32 * (size + 3.5) + 4.0);
            for (cell, (x, _)) in wrapped.iter().zip(&xs) {
                for (i, line) in cell.iter().enumerate() {
                    let y = layout.y + size + i as f32 * (size + 3.5);
                    layout.text(*x, y, size, color, line);
                }
            }
            layout.y += lines as f32 * (size + 3.5) + 3.0;
            let y = layout.y - 1.5;
            layout.ops().push(Op::Line {
                x1: MARGIN + 5.0,
                y1: y,
                x2: MARGIN + WIDTH - 5.0,
                y2: y,
                dashed: false,
            });
        };
        row(self, header, SMALL + 0.5, GREY);
        for r in rows {
            row(self, r, BODY - 0.5, BLACK);
        }
        self.y += 3.0;
    }
}

/// Lays the report out into pages.
fn layout(page: &Page, face: &Face) -> Vec<Vec<Op>> {
    let mut l = Layout::new(face);
    l.text(MARGIN, l.y + 18.0, 18.0, BLACK, &page.title);
    l.y += 26.0;
    let color = if page.seal.is_some() { GREY } else { ACCENT };
    for line in face.wrap(&page.status, BODY, WIDTH) {
        l.text(MARGIN, l.y + BODY, BODY, color, &line);
        l.y += LEADING;
    }
    l.y += 2.0;

    let value_w = WIDTH - LABEL_W - 5.0;
    for section in &page.sections {
        l.heading(&section.title);
        for item in &section.items {
            match item {
                Item::Field { label, value } => l.field(label, value, value_w),
                Item::Table {
                    header,
                    rows,
                    widths,
                } => l.table(header, rows, widths),
            }
        }
    }

    // The customer's signature (R8): the mark in a box, who signed and when beside it.
    let sig = &page.signature;
    let box_w = 220.0;
    let box_h = 80.0;
    // The heading stays with its box.
    l.need(box_h + 34.0);
    l.heading(&sig.title);
    let top = l.y;
    let x = MARGIN + 5.0;
    let frame = |l: &mut Layout<'_>, dashed: bool| {
        for (x1, y1, x2, y2) in [
            (x, top, x + box_w, top),
            (x + box_w, top, x + box_w, top + box_h),
            (x + box_w, top + box_h, x, top + box_h),
            (x, top + box_h, x, top),
        ] {
            l.ops().push(Op::Line {
                x1,
                y1,
                x2,
                y2,
                dashed,
            });
        }
    };
    match &sig.mark {
        Some(mark) => {
            frame(&mut l, false);
            l.ops().push(Op::Signature {
                x: x + 6.0,
                y: top + 6.0,
                w: box_w - 12.0,
                h: box_h - 12.0,
                mark: mark.clone(),
            });
        }
        None => {
            frame(&mut l, true);
            for (i, line) in face
                .wrap(&sig.placeholder, SMALL, box_w - 16.0)
                .iter()
                .enumerate()
            {
                l.text(
                    x + 8.0,
                    top + box_h - 10.0 - 11.0 * i as f32,
                    SMALL,
                    GREY,
                    line,
                );
            }
        }
    }
    let fx = x + box_w + 14.0;
    let mut fy = top;
    for (label, value) in &sig.fields {
        l.text(fx, fy + BODY, SMALL + 0.5, GREY, label);
        if value.is_empty() {
            l.ops().push(Op::Line {
                x1: fx + 70.0,
                y1: fy + BODY + 2.0,
                x2: MARGIN + WIDTH - 5.0,
                y2: fy + BODY + 2.0,
                dashed: false,
            });
        } else {
            let w = MARGIN + WIDTH - fx - 75.0;
            for (i, v) in face.wrap(value, BODY, w).iter().enumerate() {
                l.text(fx + 70.0, fy + BODY + LEADING * i as f32, BODY, BLACK, v);
            }
        }
        fy += LEADING * 1.6;
    }
    l.y = top + box_h + 6.0;

    // The branch's signature: report id, branch, time, digest, and the QR code.
    if let Some(seal) = &page.seal {
        let qr_size = 92.0;
        l.need(qr_size + 34.0);
        l.heading(&seal.title);
        let code = QrCode::encode_text(&seal.qr, QrCodeEcc::Medium).ok();
        let fields_h = seal
            .fields
            .iter()
            .map(|(_, v)| face.wrap(v, BODY, WIDTH - LABEL_W - qr_size - 20.0).len() as f32)
            .sum::<f32>()
            * LEADING;
        l.need(fields_h.max(qr_size) + 6.0);
        let top = l.y;
        if let Some(code) = code {
            let n = code.size();
            let dark = (0..n)
                .flat_map(|row| (0..n).map(move |col| (col, row)))
                .map(|(col, row)| code.get_module(col, row))
                .collect();
            l.ops().push(Op::Qr {
                x: MARGIN + WIDTH - qr_size - 5.0,
                y: top,
                size: qr_size,
                n,
                dark,
            });
        }
        for (label, value) in &seal.fields {
            l.field(label, value, WIDTH - LABEL_W - qr_size - 20.0);
        }
        l.y = l.y.max(top + qr_size + 4.0);
    }

    // The footer of every page, now that the number of pages is known.
    let total = l.pages.len();
    for (i, ops) in l.pages.iter_mut().enumerate() {
        let y = PAGE_H - 28.0;
        ops.push(Op::Line {
            x1: MARGIN,
            y1: y - 10.0,
            x2: MARGIN + WIDTH,
            y2: y - 10.0,
            dashed: false,
        });
        let number = match page.language {
            Language::Zh => format!("第 {} 页，共 {} 页", i + 1, total),
            Language::En => format!("page {} of {}", i + 1, total),
        };
        let footer = format!("{} · {number}", page.footer);
        for (j, line) in face.wrap(&footer, SMALL - 0.5, WIDTH).iter().enumerate() {
            ops.push(Op::Text {
                x: MARGIN,
                y: y + 9.0 * j as f32,
                size: SMALL - 0.5,
                color: GREY,
                text: line.clone(),
            });
        }
    }
    l.pages
}

fn fill(color: (u8, u8, u8)) -> Fill {
    Fill {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        opacity: NormalizedF32::ONE,
        rule: Default::default(),
    }
}

fn stroke(width: f32, color: (u8, u8, u8), dashed: bool) -> Stroke {
    Stroke {
        paint: rgb::Color::new(color.0, color.1, color.2).into(),
        width,
        dash: dashed.then(|| StrokeDash {
            array: vec![3.0, 2.0],
            offset: 0.0,
        }),
        ..Stroke::default()
    }
}

fn draw(surface: &mut Surface<'_>, face: &Face, op: &Op) {
    match op {
        Op::Text {
            x,
            y,
            size,
            color,
            text,
        } => {
            surface.set_fill(Some(fill(*color)));
            surface.set_stroke(None);
            let glyphs = face.glyphs(text);
            surface.draw_glyphs(
                Point::from_xy(*x, *y),
                &glyphs,
                face.font.clone(),
                text,
                *size,
                false,
            );
        }
        Op::Band { x, y, w, h, color } => {
            if let Some(rect) = Rect::from_xywh(*x, *y, *w, *h) {
                let mut pb = PathBuilder::new();
                pb.push_rect(rect);
                if let Some(path) = pb.finish() {
                    surface.set_stroke(None);
                    surface.set_fill(Some(fill(*color)));
                    surface.draw_path(&path);
                }
            }
        }
        Op::Line {
            x1,
            y1,
            x2,
            y2,
            dashed,
        } => {
            let mut pb = PathBuilder::new();
            pb.move_to(*x1, *y1);
            pb.line_to(*x2, *y2);
            if let Some(path) = pb.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(stroke(0.6, RULE, *dashed)));
                surface.draw_path(&path);
            }
        }
        Op::Signature { x, y, w, h, mark } => draw_mark(surface, face, *x, *y, *w, *h, mark),
        Op::Qr {
            x,
            y,
            size,
            n,
            dark,
        } => {
            if *n <= 0 {
                return;
            }
            let module = size / *n as f32;
            let mut pb = PathBuilder::new();
            for row in 0..*n {
                for col in 0..*n {
                    if dark.get((row * n + col) as usize).copied().unwrap_or(false)
                        && let Some(r) = Rect::from_xywh(
                            x + col as f32 * module,
                            y + row as f32 * module,
                            module,
                            module,
                        )
                    {
                        pb.push_rect(r);
                    }
                }
            }
            if let Some(path) = pb.finish() {
                surface.set_stroke(None);
                surface.set_fill(Some(fill(BLACK)));
                surface.draw_path(&path);
            }
        }
    }
}

/// The customer's mark, scaled to fit the box with its proportions kept: pen strokes as
/// lines, an image (PNG or JPEG) as an image. An image that cannot be decoded is named, not a
/// failure of the whole report (the signed report still carries its bytes).
fn draw_mark(
    surface: &mut Surface<'_>,
    face: &Face,
    x: f32,
    y: f32,
    w: f32,
    h: f32,
    mark: &SignatureMark,
) {
    match mark {
        SignatureMark::Strokes { strokes } => {
            let points = strokes.iter().flatten();
            let (mut min_x, mut min_y, mut max_x, mut max_y) =
                (i32::MAX, i32::MAX, i32::MIN, i32::MIN);
            for [px, py] in points {
                min_x = min_x.min(*px);
                min_y = min_y.min(*py);
                max_x = max_x.max(*px);
                max_y = max_y.max(*py);
            }
            if min_x > max_x {
                return;
            }
            let span_x = (max_x as f32 - min_x as f32).max(1.0);
            let span_y = (max_y as f32 - min_y as f32).max(1.0);
            let scale = (w / span_x).min(h / span_y);
            let ox = x + (w - span_x * scale) / 2.0;
            let oy = y + (h - span_y * scale) / 2.0;
            let mut pb = PathBuilder::new();
            for stroke_points in strokes {
                for (i, [px, py]) in stroke_points.iter().enumerate() {
                    let sx = ox + (*px as f32 - min_x as f32) * scale;
                    let sy = oy + (*py as f32 - min_y as f32) * scale;
                    if i == 0 {
                        pb.move_to(sx, sy);
                        // A single point is a dot.
                        if stroke_points.len() == 1 {
                            pb.line_to(sx + 0.5, sy);
                        }
                    } else {
                        pb.line_to(sx, sy);
                    }
                }
            }
            if let Some(path) = pb.finish() {
                surface.set_fill(None);
                surface.set_stroke(Some(Stroke {
                    line_cap: krilla::paint::LineCap::Round,
                    line_join: krilla::paint::LineJoin::Round,
                    ..stroke(1.4, (20, 30, 90), false)
                }));
                surface.draw_path(&path);
            }
        }
        SignatureMark::Image { mime, data } => {
            let bytes = krilla::Data::from(data.clone());
            let image = if mime.eq_ignore_ascii_case("image/jpeg") {
                Image::from_jpeg(bytes, true)
            } else {
                Image::from_png(bytes, true)
            };
            let sized = image.ok().and_then(|image| {
                let (iw, ih) = image.size();
                let (iw, ih) = (iw.max(1) as f32, ih.max(1) as f32);
                let scale = (w / iw).min(h / ih);
                Size::from_wh(iw * scale, ih * scale).map(|s| (image, s))
            });
            match sized {
                Some((image, size)) => {
                    let dx = x + (w - size.width()) / 2.0;
                    let dy = y + (h - size.height()) / 2.0;
                    surface.push_transform(&Transform::from_translate(dx, dy));
                    surface.draw_image(image, size);
                    surface.pop();
                }
                None => {
                    let text = "(signature image cannot be shown / 签名图像无法显示)";
                    surface.set_fill(Some(fill(GREY)));
                    surface.draw_glyphs(
                        Point::from_xy(x, y + h / 2.0),
                        &face.glyphs(text),
                        face.font.clone(),
                        text,
                        SMALL,
                        false,
                    );
                }
            }
        }
    }
}

/// Writes the PDF; `embedded` (a signed report's JSON) becomes the attachment
/// [`REPORT_ATTACHMENT`].
pub(crate) fn write(
    page: &Page,
    embedded: Option<&[u8]>,
    options: &PrintOptions,
) -> Result<Vec<u8>, PrintError> {
    let face = Face::load()?;
    let pages = layout(page, &face);
    let mut document = Document::new();
    document.set_metadata(
        Metadata::new()
            .title(page.doc_title.clone())
            .language(options.language.tag().to_owned())
            .creator("fieldsync".to_owned()),
    );
    let settings = PageSettings::from_wh(PAGE_W, PAGE_H)
        .ok_or_else(|| PrintError::Pdf("the page size is invalid".into()))?;
    for ops in &pages {
        let mut pdf_page = document.start_page_with(settings.clone());
        let mut surface = pdf_page.surface();
        for op in ops {
            draw(&mut surface, &face, op);
        }
        surface.finish();
        pdf_page.finish();
    }
    if let Some(json) = embedded {
        let file = EmbeddedFile {
            path: REPORT_ATTACHMENT.to_owned(),
            mime_type: MimeType::new("application/json"),
            description: Some(
                "The signed service report (RFC 8785 JSON): fieldsync verify checks it".to_owned(),
            ),
            association_kind: AssociationKind::Source,
            data: krilla::Data::from(json.to_vec()),
            modification_date: None,
            compress: Some(true),
            location: None,
        };
        document
            .embed_file(file)
            .ok_or_else(|| PrintError::Pdf("the report could not be embedded".into()))?;
    }
    document
        .finish()
        .map_err(|e| PrintError::Pdf(format!("{e:?}")))
}
