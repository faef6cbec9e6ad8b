//! Diagnostics about registry files: what is wrong, where (file, line, column), and what was
//! expected, rendered like cargo's errors with the offending line and a caret under the value.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use annotate_snippets::{AnnotationKind, Group, Level, Renderer, Snippet};
use serde_saphyr::{Location, Spanned};

/// One problem in one registry file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Diagnostic {
    /// Path relative to the registry root, with `/` separators.
    pub file: String,
    /// 1-based; 0 when the problem concerns the whole file.
    pub line: usize,
    /// 1-based; 0 when unknown.
    pub column: usize,
    /// Byte range of the offending value in the file, when known.
    pub span: Option<(usize, usize)>,
    pub message: String,
    /// Said under the caret: usually what was expected.
    pub label: Option<String>,
    /// A last line: "did you mean", or how to fix it.
    pub help: Option<String>,
}

impl Diagnostic {
    /// A problem with a file as a whole (unreadable, misnamed…).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            file: file.into(),
            line: 0,
            column: 0,
            span: None,
            message: message.into(),
            label: None,
            help: None,
        }
    }

    /// A problem at a position the YAML parser reported.
    pub fn at(file: impl Into<String>, loc: Location, message: impl Into<String>) -> Self {
        let span = loc.span();
        let range = match (span.byte_offset(), span.byte_len()) {
            (Some(o), Some(l)) => Some((o as usize, (o + l.max(1)) as usize)),
            _ => None,
        };
        Diagnostic {
            file: file.into(),
            line: loc.line() as usize,
            column: loc.column() as usize,
            span: range,
            message: message.into(),
            label: None,
            help: None,
        }
    }

    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    /// Renders the diagnostic with a snippet of `source` (the file's text), cargo-style.
    pub fn render(&self, source: Option<&str>) -> String {
        let title = Level::ERROR.primary_title(&self.message);
        let mut group: Group<'_> = match (source, self.line) {
            (Some(src), line) if line > 0 => {
                let range = self
                    .span
                    .map(|(a, b)| a..b)
                    .unwrap_or_else(|| line_col_range(src, line, self.column));
                let range = clamp(range, src.len());
                let ann = AnnotationKind::Primary.span(range);
                let ann = match &self.label {
                    Some(l) => ann.label(l.as_str()),
                    None => ann,
                };
                title.element(Snippet::source(src).path(&self.file).annotation(ann))
            }
            _ => {
                let title = title.element(annotate_snippets::Origin::path(&self.file));
                match &self.label {
                    Some(l) => title.element(Level::NOTE.message(l.as_str())),
                    None => title,
                }
            }
        };
        if let Some(h) = &self.help {
            group = group.element(Level::HELP.message(h.as_str()));
        }
        Renderer::plain().render(&[group]).to_string()
    }
}

impl fmt::Display for Diagnostic {
    /// One line: `file:line:column: message (label)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.column)?;
        }
        write!(f, ": {}", self.message)?;
        if let Some(l) = &self.label {
            write!(f, " ({l})")?;
        }
        Ok(())
    }
}

fn clamp(r: Range<usize>, len: usize) -> Range<usize> {
    let start = r.start.min(len);
    start..r.end.clamp(start, len)
}

/// Byte range of the token starting at 1-based `line`/`column`.
fn line_col_range(src: &str, line: usize, column: usize) -> Range<usize> {
    let start_of_line: usize = src.split_inclusive('\n').take(line - 1).map(str::len).sum();
    let line_text = src[start_of_line.min(src.len())..]
        .split('\n')
        .next()
        .unwrap_or("");
    let col = column.saturating_sub(1).min(line_text.len());
    let rest = &line_text[col..];
    let len = rest.find(char::is_whitespace).unwrap_or(rest.len()).max(1);
    start_of_line + col..start_of_line + col + len
}

/// All diagnostics of a load, with the sources needed to render them.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub diagnostics: Vec<Diagnostic>,
    /// File text by registry-relative path.
    pub sources: BTreeMap<String, String>,
}

impl Report {
    pub fn is_empty(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// Every diagnostic rendered with its snippet, sorted by file and position, then a count.
    pub fn render(&self) -> String {
        let mut diags = self.diagnostics.clone();
        diags.sort();
        diags.dedup();
        let mut out = String::new();
        for d in &diags {
            out.push_str(&d.render(self.sources.get(&d.file).map(String::as_str)));
            out.push_str("\n\n");
        }
        let files: std::collections::BTreeSet<&str> =
            diags.iter().map(|d| d.file.as_str()).collect();
        out.push_str(&format!(
            "error: the registry has {} error{} in {} file{}\n",
            diags.len(),
            if diags.len() == 1 { "" } else { "s" },
            files.len(),
            if files.len() == 1 { "" } else { "s" },
        ));
        out
    }
}

/// A diagnostic at a spanned value.
pub fn at<T>(path: &str, v: &Spanned<T>, message: impl Into<String>) -> Diagnostic {
    located(path, v.referenced, message)
}

pub fn located(path: &str, loc: Location, message: impl Into<String>) -> Diagnostic {
    if loc.line() == 0 {
        Diagnostic::file(path, message)
    } else {
        Diagnostic::at(path, loc, message)
    }
}
