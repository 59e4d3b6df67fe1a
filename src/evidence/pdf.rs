//! A small page layout for printable reports, written as PDF by `printpdf` with the
//! DejaVu Sans fonts embedded (`fonts/`, their licence beside them): a document is a list
//! of blocks (headings, paragraphs, banners, tables, bar and timeline charts); they are
//! laid out on A4 pages (portrait or landscape) with a running header (the document's
//! line and "page N of M") and an optional footer, tables wrapped per cell and broken
//! across pages with their header row repeated. Characters the fonts lack (CJK, for one)
//! are written as `[U+XXXX]`, never dropped.

use anyhow::{Context, Result};
use printpdf::path::PaintMode;
use printpdf::{Color, IndirectFontRef, Mm, PdfDocument, PdfLayerReference, Rect, Rgb};

static REGULAR: &[u8] = include_bytes!("fonts/DejaVuSans.ttf");
static BOLD: &[u8] = include_bytes!("fonts/DejaVuSans-Bold.ttf");

/// Millimetres per point.
const PT: f32 = 25.4 / 72.0;
const MARGIN: f32 = 14.0;
const TOP: f32 = 18.0;
const BOTTOM: f32 = 14.0;

/// A colour, 0–255 per channel.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tone(pub u8, pub u8, pub u8);

impl Tone {
    pub const TEXT: Tone = Tone(17, 17, 17);
    pub const GREY: Tone = Tone(90, 90, 90);
    pub const GOOD: Tone = Tone(27, 94, 32);
    pub const BAD: Tone = Tone(183, 28, 28);
}

/// A table: a header row (empty: none) and rows of text cells.
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub headers: Vec<String>,
    pub rows: Vec<Vec<String>>,
    /// Relative column widths; empty: from the contents.
    pub weights: Vec<f32>,
    /// Cells drawn in bold and a colour: (row, column, colour).
    pub marks: Vec<(usize, usize, Tone)>,
    /// Font size in points.
    pub size: f32,
}

/// A horizontal bar chart.
#[derive(Debug, Clone)]
pub struct Bars {
    pub title: String,
    /// What the values count, e.g. "requests".
    pub unit: String,
    pub bars: Vec<(String, f64)>,
}

/// Rows of cells over time, each cell shaded by a share (0–1; `None`: no data), with dated
/// labels under the axis.
#[derive(Debug, Clone)]
pub struct Timeline {
    pub title: String,
    pub legend: String,
    pub rows: Vec<(String, Vec<Option<f32>>)>,
    /// (column index, label) for the axis.
    pub ticks: Vec<(usize, String)>,
}

#[derive(Debug, Clone)]
pub enum Block {
    Title(String),
    Heading(String),
    Subheading(String),
    Paragraph(String),
    /// Small grey text.
    Note(String),
    /// A red box with white bold text.
    Banner(String),
    /// A box tinted by `tone`, with bold text.
    Callout(Tone, String),
    Table(Table),
    Bars(Bars),
    Timeline(Timeline),
    /// Monospaced-looking small text (SQL, parameters), wrapped anywhere.
    Code(String),
    /// A new page, landscape or portrait.
    Page {
        landscape: bool,
    },
}

#[derive(Debug, Clone, Default)]
pub struct Document {
    pub title: String,
    /// Left of the running header on every page.
    pub header: String,
    /// Left of the footer on every page (e.g. a demo warning), in red.
    pub footer: Option<String>,
    pub blocks: Vec<Block>,
}

struct Fonts {
    regular: ttf_parser::Face<'static>,
    bold: ttf_parser::Face<'static>,
}

impl Fonts {
    fn load() -> Result<Fonts> {
        Ok(Fonts {
            regular: ttf_parser::Face::parse(REGULAR, 0).context("DejaVuSans.ttf")?,
            bold: ttf_parser::Face::parse(BOLD, 0).context("DejaVuSans-Bold.ttf")?,
        })
    }

    fn face(&self, bold: bool) -> &ttf_parser::Face<'static> {
        if bold { &self.bold } else { &self.regular }
    }

    /// `text` as the font can draw it: a character it lacks becomes `[U+XXXX]`, control
    /// characters but line breaks spaces.
    fn printable(&self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        for c in text.chars() {
            if c == '\n' {
                out.push(c);
            } else if c.is_control() {
                out.push(' ');
            } else if self.regular.glyph_index(c).is_some() && self.bold.glyph_index(c).is_some() {
                out.push(c);
            } else {
                out.push_str(&format!("[U+{:04X}]", c as u32));
            }
        }
        out
    }

    /// Width of `text` in millimetres.
    fn width(&self, text: &str, size: f32, bold: bool) -> f32 {
        let face = self.face(bold);
        let units: u32 = text
            .chars()
            .map(|c| face.glyph_index(c).and_then(|g| face.glyph_hor_advance(g)).unwrap_or(600) as u32)
            .sum();
        units as f32 / face.units_per_em() as f32 * size * PT
    }

    /// `text` wrapped to `width` mm: at spaces, and inside a word only when the word alone
    /// is wider than the line.
    fn wrap(&self, text: &str, size: f32, bold: bool, width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        for paragraph in text.split('\n') {
            let mut line = String::new();
            for word in paragraph.split(' ') {
                let candidate = if line.is_empty() { word.to_string() } else { format!("{line} {word}") };
                if self.width(&candidate, size, bold) <= width + 0.01 {
                    line = candidate;
                    continue;
                }
                if !line.is_empty() {
                    lines.push(std::mem::take(&mut line));
                }
                // The word alone: break it where it must, after a `_`, `-`, `/`, `.` or `=`
                // when the line has one.
                for c in word.chars() {
                    line.push(c);
                    if self.width(&line, size, bold) > width + 0.01 && line.chars().count() > 1 {
                        let last = line.pop().expect("a character");
                        let cut =
                            line.rfind(['_', '-', '/', '.', '=', ':', '@']).map(|p| p + 1).filter(|p| *p < line.len());
                        let rest = cut.map(|p| line.split_off(p)).unwrap_or_default();
                        lines.push(std::mem::take(&mut line));
                        line = rest;
                        line.push(last);
                    }
                }
            }
            lines.push(line);
        }
        lines
    }

    /// How narrow a cell of `text` may be: its widest word, up to 16 mm for ids and other
    /// words with digits or punctuation (they may break), 30 mm for words of letters.
    fn least_width(&self, text: &str, size: f32) -> f32 {
        text.split([' ', '\n'])
            .map(|w| {
                let cap = if w.chars().all(char::is_alphabetic) { 30.0 } else { 16.0 };
                self.width(w, size, false).min(cap)
            })
            .fold(0.0, f32::max)
    }

    /// The widest word of `text`, in mm.
    fn widest_word(&self, text: &str, size: f32, bold: bool) -> f32 {
        text.split([' ', '\n']).map(|w| self.width(w, size, bold)).fold(0.0, f32::max)
    }
}

enum Op {
    Text { x: f32, y: f32, size: f32, bold: bool, tone: Tone, text: String },
    Rect { x: f32, y: f32, w: f32, h: f32, tone: Tone },
}

struct Page {
    landscape: bool,
    ops: Vec<Op>,
}

impl Page {
    fn size(&self) -> (f32, f32) {
        if self.landscape { (297.0, 210.0) } else { (210.0, 297.0) }
    }
}

struct Layout<'f> {
    fonts: &'f Fonts,
    pages: Vec<Page>,
    /// Distance of the next block from the top of the page, mm.
    y: f32,
}

impl Layout<'_> {
    fn page(&mut self) -> &mut Page {
        self.pages.last_mut().expect("a page")
    }

    fn width(&self) -> f32 {
        self.pages.last().expect("a page").size().0 - 2.0 * MARGIN
    }

    fn bottom(&self) -> f32 {
        self.pages.last().expect("a page").size().1 - BOTTOM
    }

    fn new_page(&mut self, landscape: bool) {
        self.pages.push(Page { landscape, ops: Vec::new() });
        self.y = TOP;
    }

    /// Moves to a new page unless `height` mm still fit on this one.
    fn keep(&mut self, height: f32) {
        if self.y + height > self.bottom() && self.y > TOP {
            let landscape = self.pages.last().expect("a page").landscape;
            self.new_page(landscape);
        }
    }

    fn text(&mut self, x: f32, y: f32, size: f32, bold: bool, tone: Tone, text: &str) {
        self.page().ops.push(Op::Text { x, y, size, bold, tone, text: text.to_string() });
    }

    fn rect(&mut self, x: f32, y: f32, w: f32, h: f32, tone: Tone) {
        self.page().ops.push(Op::Rect { x, y, w, h, tone });
    }

    /// Wrapped text across the page width; returns nothing, moves the cursor.
    fn lines(&mut self, text: &str, size: f32, bold: bool, tone: Tone, after: f32) {
        let line_h = size * PT * 1.35;
        let width = self.width();
        for line in self.fonts.wrap(text, size, bold, width) {
            self.keep(line_h);
            self.y += line_h;
            let y = self.y - line_h * 0.25;
            self.text(MARGIN, y, size, bold, tone, &line);
        }
        self.y += after;
    }

    fn boxed(&mut self, text: &str, fill: Tone, tone: Tone) {
        let size = 10.0;
        let line_h = size * PT * 1.4;
        let lines = self.fonts.wrap(text, size, true, self.width() - 8.0);
        let height = lines.len() as f32 * line_h + 6.0;
        self.keep(height);
        let (y0, width) = (self.y, self.width());
        self.rect(MARGIN, y0, width, height, fill);
        for (i, line) in lines.iter().enumerate() {
            self.text(MARGIN + 4.0, y0 + 3.0 + (i as f32 + 0.8) * line_h, size, true, tone, line);
        }
        self.y += height + 4.0;
    }

    fn table(&mut self, table: &Table) {
        let fonts = self.fonts;
        let pad = 1.2;
        let n = table.headers.len().max(table.rows.iter().map(Vec::len).max().unwrap_or(0));
        if n == 0 {
            return;
        }
        let width = self.width();
        let (size, widths) = if table.weights.len() == n {
            let sum: f32 = table.weights.iter().sum();
            (if table.size > 0.0 { table.size } else { 7.5 }, table.weights.iter().map(|w| width * w / sum).collect())
        } else {
            column_widths(fonts, table, n, width, pad)
        };
        let line_h = size * PT * 1.3;
        let wrap = |cells: &[String], bold: bool| -> Vec<Vec<String>> {
            (0..n)
                .map(|i| {
                    let text = cells.get(i).map(String::as_str).unwrap_or("");
                    fonts.wrap(text, size, bold, widths[i] - 2.0 * pad)
                })
                .collect()
        };
        let header = wrap(&table.headers, true);
        let header_h = header.iter().map(Vec::len).max().unwrap_or(1) as f32 * line_h + 2.0 * pad;
        let draw_header = |layout: &mut Layout<'_>| {
            if table.headers.is_empty() {
                return;
            }
            let y0 = layout.y;
            layout.rect(MARGIN, y0, width, header_h, Tone(225, 228, 233));
            let mut x = MARGIN;
            for (i, lines) in header.iter().enumerate() {
                for (l, line) in lines.iter().enumerate() {
                    layout.text(x + pad, y0 + pad + (l as f32 + 0.78) * line_h, size, true, Tone::TEXT, line);
                }
                x += widths[i];
            }
            layout.y += header_h;
        };
        self.keep(header_h + line_h * 2.0 + 2.0 * pad);
        draw_header(self);
        for (r, row) in table.rows.iter().enumerate() {
            let marked = |c: usize| table.marks.iter().find(|(mr, mc, _)| *mr == r && *mc == c).map(|m| m.2);
            let cells: Vec<Vec<String>> = (0..n)
                .map(|i| {
                    let text = row.get(i).map(String::as_str).unwrap_or("");
                    fonts.wrap(text, size, marked(i).is_some(), widths[i] - 2.0 * pad)
                })
                .collect();
            let h = cells.iter().map(Vec::len).max().unwrap_or(1) as f32 * line_h + 2.0 * pad;
            if self.y + h > self.bottom() {
                let landscape = self.pages.last().expect("a page").landscape;
                self.new_page(landscape);
                draw_header(self);
            }
            let y0 = self.y;
            if r % 2 == 1 {
                self.rect(MARGIN, y0, width, h, Tone(244, 245, 247));
            }
            let mut x = MARGIN;
            for (i, lines) in cells.iter().enumerate() {
                let (bold, tone) = match marked(i) {
                    Some(tone) => (true, tone),
                    None => (false, Tone::TEXT),
                };
                for (l, line) in lines.iter().enumerate() {
                    self.text(x + pad, y0 + pad + (l as f32 + 0.78) * line_h, size, bold, tone, line);
                }
                x += widths[i];
            }
            self.rect(MARGIN, y0 + h - 0.15, width, 0.15, Tone(200, 203, 208));
            self.y += h;
        }
        self.y += 4.0;
    }

    fn bars(&mut self, chart: &Bars) {
        if chart.bars.is_empty() {
            return;
        }
        let row = 5.0;
        let height = 8.0 + chart.bars.len() as f32 * row + 3.0;
        self.keep(height);
        let y0 = self.y;
        self.text(MARGIN, y0 + 4.0, 9.0, true, Tone::TEXT, &format!("{} ({})", chart.title, chart.unit));
        let label_w = 60.0;
        let bar_w = (self.width() - label_w - 40.0).min(120.0);
        let max = chart.bars.iter().map(|(_, v)| *v).fold(0.0, f64::max).max(1.0);
        for (i, (label, value)) in chart.bars.iter().enumerate() {
            let y = y0 + 8.0 + i as f32 * row;
            let mut label = label.clone();
            while self.fonts.width(&label, 7.5, false) > label_w - 3.0 && label.chars().count() > 2 {
                label.pop();
                label.pop();
                label.push('…');
            }
            let lw = self.fonts.width(&label, 7.5, false);
            self.text(MARGIN + label_w - 2.0 - lw, y + 3.2, 7.5, false, Tone::TEXT, &label);
            let w = ((value / max) as f32 * bar_w).max(0.4);
            self.rect(MARGIN + label_w, y + 0.6, w, row - 1.4, Tone(58, 110, 165));
            let unit =
                if number(*value) == "1" { chart.unit.strip_suffix('s').unwrap_or(&chart.unit) } else { &chart.unit };
            let text = format!("{} {unit}", number(*value));
            self.text(MARGIN + label_w + w + 1.5, y + 3.2, 7.5, false, Tone::TEXT, &text);
        }
        self.y += height + 2.0;
    }

    fn timeline(&mut self, chart: &Timeline) {
        if chart.rows.is_empty() {
            return;
        }
        let label_w = 48.0;
        let columns = chart.rows.iter().map(|(_, c)| c.len()).max().unwrap_or(1).max(1);
        let cell_w = ((self.width() - label_w - 4.0) / columns as f32).min(8.0);
        let row = 4.2;
        let height = 8.0 + chart.rows.len() as f32 * row + 14.0;
        self.keep(height);
        let y0 = self.y;
        self.text(MARGIN, y0 + 4.0, 9.0, true, Tone::TEXT, &chart.title);
        for (r, (label, cells)) in chart.rows.iter().enumerate() {
            let y = y0 + 7.0 + r as f32 * row;
            let mut label = label.clone();
            while self.fonts.width(&label, 6.5, false) > label_w - 3.0 && label.chars().count() > 2 {
                label.pop();
                label.pop();
                label.push('…');
            }
            let lw = self.fonts.width(&label, 6.5, false);
            self.text(MARGIN + label_w - 2.0 - lw, y + 3.0, 6.5, false, Tone::TEXT, &label);
            for (c, share) in cells.iter().enumerate() {
                let tone = match share {
                    None => Tone(235, 235, 235),
                    Some(s) if *s <= 0.0 => Tone(198, 40, 40),
                    Some(s) => Tone((220.0 - 180.0 * s) as u8, (230.0 - 150.0 * s) as u8, (240.0 - 100.0 * s) as u8),
                };
                let w = (cell_w - 0.3).max(0.2);
                self.rect(MARGIN + label_w + c as f32 * cell_w, y, w, row - 0.8, tone);
            }
        }
        let axis = y0 + 7.0 + chart.rows.len() as f32 * row + 0.5;
        for (c, label) in &chart.ticks {
            let x = MARGIN + label_w + *c as f32 * cell_w;
            self.rect(x, axis - 0.5, 0.2, 1.8, Tone::GREY);
            self.text(x, axis + 3.5, 6.0, false, Tone::GREY, label);
        }
        self.text(MARGIN + label_w, axis + 8.0, 6.5, false, Tone::GREY, &chart.legend);
        self.y += height + 2.0;
    }

    fn code(&mut self, text: &str) {
        let size = 6.2;
        let line_h = size * PT * 1.22;
        let width = self.width() - 4.0;
        for source in text.lines() {
            let indent: String = source.chars().take_while(|c| *c == ' ').collect();
            for (i, line) in self
                .fonts
                .wrap(source.trim_start(), size, false, width - self.fonts.width(&indent, size, false))
                .into_iter()
                .enumerate()
            {
                self.keep(line_h);
                let y0 = self.y;
                self.rect(MARGIN, y0, self.width(), line_h, Tone(246, 246, 246));
                let text = if i == 0 { format!("{indent}{line}") } else { format!("{indent}  {line}") };
                self.text(MARGIN + 2.0, y0 + line_h * 0.78, size, false, Tone(40, 40, 40), &text);
                self.y += line_h;
            }
        }
        self.y += 3.0;
    }
}

/// Column widths for `table` across `width` mm, and the font size that lets them fit: no
/// column narrower than the widest word of its header (headers never break inside a word)
/// or of its cells (up to 16 mm: ids may break), none wider than its longest cell, and the
/// rest shared by how much text each column holds on average.
fn column_widths(fonts: &Fonts, table: &Table, n: usize, width: f32, pad: f32) -> (f32, Vec<f32>) {
    let mut size = if table.size > 0.0 { table.size } else { 7.5 };
    loop {
        let mut least = vec![4.0f32; n];
        let mut most = vec![4.0f32; n];
        let mut average = vec![0.0f32; n];
        for (i, header) in table.headers.iter().enumerate() {
            least[i] = least[i].max(fonts.widest_word(header, size, true) + 2.0 * pad);
        }
        for row in &table.rows {
            for (i, cell) in row.iter().enumerate().take(n) {
                let w = fonts.width(cell, size, false) + 2.0 * pad;
                least[i] = least[i].max(fonts.least_width(cell, size) + 2.0 * pad);
                most[i] = most[i].max(w);
                average[i] += w.min(150.0) / table.rows.len() as f32;
            }
        }
        let least_sum: f32 = least.iter().sum();
        if least_sum > width && size > 5.0 {
            size -= 0.5;
            continue;
        }
        let most: Vec<f32> = most.iter().zip(&least).map(|(m, l)| m.max(*l)).collect();
        let most_sum: f32 = most.iter().sum();
        if most_sum <= width {
            return (size, most.iter().map(|w| w * width / most_sum).collect());
        }
        // Share by average text; a column whose share is under its least is fixed there.
        let mut fixed: Vec<Option<f32>> = vec![None; n];
        let mut widths = vec![0.0f32; n];
        loop {
            let left = width - fixed.iter().flatten().sum::<f32>();
            let weight: f32 = (0..n).filter(|i| fixed[*i].is_none()).map(|i| average[i].max(1.0)).sum();
            let mut changed = false;
            for i in 0..n {
                widths[i] = match fixed[i] {
                    Some(w) => w,
                    None => left * average[i].max(1.0) / weight.max(1.0),
                };
                if fixed[i].is_none() && widths[i] < least[i] {
                    fixed[i] = Some(least[i]);
                    changed = true;
                }
            }
            if !changed {
                break;
            }
        }
        // A column wider than its longest cell gives the rest to those still wrapping.
        let surplus: f32 = (0..n).map(|i| (widths[i] - most[i]).max(0.0)).sum();
        let takers: f32 = (0..n).filter(|i| widths[*i] < most[*i]).map(|i| average[i].max(1.0)).sum();
        if surplus > 0.0 && takers > 0.0 {
            for i in 0..n {
                if widths[i] > most[i] {
                    widths[i] = most[i];
                } else if widths[i] < most[i] {
                    widths[i] += surplus * average[i].max(1.0) / takers;
                }
            }
        }
        return (size, widths);
    }
}

/// 1234567 → "1,234,567".
pub fn number(v: f64) -> String {
    let n = v.round() as i64;
    let digits = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// `document` as PDF bytes.
pub fn write(document: &Document) -> Result<Vec<u8>> {
    let fonts = Fonts::load()?;
    let clean = |t: &str| fonts.printable(t);
    let mut layout = Layout { fonts: &fonts, pages: Vec::new(), y: TOP };
    layout.new_page(false);
    for block in &document.blocks {
        match block {
            Block::Title(t) => layout.lines(&clean(t), 20.0, true, Tone::TEXT, 3.0),
            Block::Heading(t) => {
                layout.keep(40.0);
                layout.y += 2.0;
                layout.lines(&clean(t), 13.0, true, Tone::TEXT, 0.5);
                let (y, w) = (layout.y, layout.width());
                layout.rect(MARGIN, y, w, 0.5, Tone(50, 50, 50));
                layout.y += 3.0;
            }
            Block::Subheading(t) => {
                layout.keep(30.0);
                layout.y += 1.5;
                layout.lines(&clean(t), 10.5, true, Tone::TEXT, 1.0);
            }
            Block::Paragraph(t) => layout.lines(&clean(t), 9.0, false, Tone::TEXT, 2.0),
            Block::Note(t) => layout.lines(&clean(t), 7.5, false, Tone::GREY, 2.0),
            Block::Banner(t) => layout.boxed(&clean(t), Tone(183, 28, 28), Tone(255, 255, 255)),
            Block::Callout(tone, t) => {
                let fill = Tone(255 - (255 - tone.0) / 8, 255 - (255 - tone.1) / 8, 255 - (255 - tone.2) / 8);
                layout.boxed(&clean(t), fill, *tone);
            }
            Block::Table(t) => {
                let mut t = t.clone();
                t.headers = t.headers.iter().map(|h| clean(h)).collect();
                t.rows = t.rows.iter().map(|r| r.iter().map(|c| clean(c)).collect()).collect();
                layout.table(&t);
            }
            Block::Bars(b) => {
                let mut b = b.clone();
                b.title = clean(&b.title);
                b.bars.iter_mut().for_each(|(l, _)| *l = clean(l));
                layout.bars(&b);
            }
            Block::Timeline(t) => {
                let mut t = t.clone();
                t.title = clean(&t.title);
                t.rows.iter_mut().for_each(|(l, _)| *l = clean(l));
                layout.timeline(&t);
            }
            Block::Code(t) => layout.code(&clean(t)),
            Block::Page { landscape } => layout.new_page(*landscape),
        }
    }

    let pages = layout.pages;
    let total = pages.len();
    let (first_w, first_h) = pages[0].size();
    let (doc, first_page, first_layer) = PdfDocument::new(&document.title, Mm(first_w), Mm(first_h), "report");
    let regular = doc.add_external_font(REGULAR).context("embedding DejaVuSans.ttf")?;
    let bold = doc.add_external_font(BOLD).context("embedding DejaVuSans-Bold.ttf")?;
    let header = clean(&document.header);
    let footer = document.footer.as_deref().map(clean);
    for (i, page) in pages.iter().enumerate() {
        let (w, h) = page.size();
        let layer: PdfLayerReference = if i == 0 {
            doc.get_page(first_page).get_layer(first_layer)
        } else {
            let (p, l) = doc.add_page(Mm(w), Mm(h), "report");
            doc.get_page(p).get_layer(l)
        };
        let font = |b: bool| -> &IndirectFontRef { if b { &bold } else { &regular } };
        let fill = |tone: Tone| {
            Color::Rgb(Rgb::new(tone.0 as f32 / 255.0, tone.1 as f32 / 255.0, tone.2 as f32 / 255.0, None))
        };
        // Running header and footer.
        let number = format!("page {} of {total}", i + 1);
        layer.set_fill_color(fill(Tone::GREY));
        layer.use_text(header.as_str(), 7.0, Mm(MARGIN), Mm(h - 9.0), font(false));
        let nw = fonts.width(&number, 7.0, false);
        layer.use_text(number.as_str(), 7.0, Mm(w - MARGIN - nw), Mm(h - 9.0), font(false));
        layer.add_rect(Rect::new(Mm(MARGIN), Mm(h - 10.5), Mm(w - MARGIN), Mm(h - 10.35)).with_mode(PaintMode::Fill));
        if let Some(footer) = &footer {
            layer.set_fill_color(fill(Tone::BAD));
            layer.use_text(footer.as_str(), 7.5, Mm(MARGIN), Mm(7.0), font(true));
        }
        for op in &page.ops {
            match op {
                Op::Rect { x, y, w: rw, h: rh, tone } => {
                    layer.set_fill_color(fill(*tone));
                    layer.add_rect(Rect::new(Mm(*x), Mm(h - y - rh), Mm(x + rw), Mm(h - y)).with_mode(PaintMode::Fill));
                }
                Op::Text { x, y, size, bold: b, tone, text } => {
                    if text.is_empty() {
                        continue;
                    }
                    layer.set_fill_color(fill(*tone));
                    layer.use_text(text.as_str(), *size, Mm(*x), Mm(h - y), font(*b));
                }
            }
        }
    }
    let bytes = doc.save_to_bytes().context("writing the PDF")?;
    // printpdf leaves the embedded fonts uncompressed (1.4 MB); Flate is as valid for them.
    let mut pdf = printpdf::lopdf::Document::load_mem(&bytes).context("reading the PDF back")?;
    pdf.compress();
    let mut out = Vec::with_capacity(bytes.len() / 2);
    pdf.save_to(&mut out).context("writing the compressed PDF")?;
    Ok(out)
}

/// The text of each page of a PDF this module wrote, one line per text run, read back
/// through each font's ToUnicode map (what a PDF reader extracts): how the tests read a
/// report.pdf. Panics on a PDF it cannot read: it is for tests, never for input.
#[doc(hidden)]
pub fn page_texts(bytes: &[u8]) -> Vec<String> {
    use printpdf::lopdf::{Document as Pdf, content::Content};
    use std::collections::HashMap;
    let pdf = Pdf::load_mem(bytes).expect("a PDF");
    let mut pages = Vec::new();
    for (_, page) in pdf.get_pages() {
        let mut maps: HashMap<Vec<u8>, HashMap<u16, char>> = HashMap::new();
        let resolve = |o: &'_ printpdf::lopdf::Object| match o {
            printpdf::lopdf::Object::Reference(id) => pdf.get_object(*id).expect("a referenced object").clone(),
            other => other.clone(),
        };
        let page_dict = pdf.get_object(page).and_then(|o| o.as_dict()).expect("a page").clone();
        let resources = resolve(page_dict.get(b"Resources").expect("page resources"));
        let fonts = resolve(resources.as_dict().unwrap().get(b"Font").expect("page fonts"));
        for (name, font) in fonts.as_dict().unwrap().iter() {
            let (name, font) = (name.clone(), resolve(font).as_dict().expect("a font").clone());
            let reference = font.get(b"ToUnicode").and_then(|o| o.as_reference()).expect("ToUnicode");
            let stream = pdf.get_object(reference).and_then(|o| o.as_stream()).expect("a stream");
            let data = stream.decompressed_content().unwrap_or_else(|_| stream.content.clone());
            let mut map = HashMap::new();
            for line in String::from_utf8_lossy(&data).lines() {
                let parts: Vec<&str> = line.split_whitespace().collect();
                if let [g, u] = parts[..]
                    && let (Some(g), Some(u)) = (
                        g.strip_prefix('<').and_then(|g| g.strip_suffix('>')),
                        u.strip_prefix('<').and_then(|u| u.strip_suffix('>')),
                    )
                    && let (Ok(g), Ok(u)) = (u16::from_str_radix(g, 16), u32::from_str_radix(u, 16))
                    && let Some(c) = char::from_u32(u)
                {
                    map.insert(g, c);
                }
            }
            maps.insert(name, map);
        }
        let content = Content::decode(&pdf.get_page_content(page).expect("content")).expect("operations");
        let mut font = Vec::new();
        let mut text = String::new();
        for op in content.operations {
            match op.operator.as_str() {
                "Tf" => font = op.operands[0].as_name().expect("a font name").to_vec(),
                "Tj" => {
                    if let Ok(bytes) = op.operands[0].as_str() {
                        let map = &maps[&font];
                        for pair in bytes.chunks(2) {
                            let gid = u16::from_be_bytes([pair[0], *pair.get(1).unwrap_or(&0)]);
                            text.push(map.get(&gid).copied().unwrap_or(' '));
                        }
                        text.push('\n');
                    }
                }
                _ => {}
            }
        }
        pages.push(text);
    }
    pages
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wraps_at_spaces_and_breaks_only_long_words() {
        let fonts = Fonts::load().unwrap();
        let lines = fonts.wrap("Minutes to respond", 7.5, true, 20.0);
        assert!(
            lines.iter().all(|l| ["Minutes", "to", "respond", "Minutes to", "to respond"].contains(&l.as_str())),
            "{lines:?}"
        );
        let guid = "0f8fad5b-d9cb-469f-a165-70867728950e";
        let lines = fonts.wrap(guid, 7.5, false, 15.0);
        assert!(lines.len() > 1);
        assert_eq!(lines.concat(), guid);
    }

    #[test]
    fn missing_glyphs_are_named_not_dropped() {
        let fonts = Fonts::load().unwrap();
        assert_eq!(fonts.printable("José Müller"), "José Müller");
        assert_eq!(fonts.printable("李雷"), "[U+674E][U+96F7]");
    }

    #[test]
    fn writes_a_pdf_with_page_numbers() {
        let rows = (0..200).map(|i| vec![format!("row {i}"), "José Müller".into()]).collect();
        let document = Document {
            title: "t".into(),
            header: "header".into(),
            footer: None,
            blocks: vec![
                Block::Title("Title".into()),
                Block::Table(Table { headers: vec!["A".into(), "B".into()], rows, ..Table::default() }),
            ],
        };
        let bytes = write(&document).unwrap();
        assert!(bytes.starts_with(b"%PDF"));
    }
}
