//! A small XML writer: element names are `'static` (chosen by this crate), every attribute value and
//! every text node goes through [`escape`]. Two-space indentation, one element per line, so snapshots
//! diff line by line.
//!
//! Values are checked for characters XML 1.0 cannot carry *before* they reach the writer (see
//! [`crate::model::check_text`]); the writer itself never drops or rewrites a character silently.

use std::fmt::Write as _;

/// Escapes `&`, `<` and `>` for text nodes, and `"` as well for (double-quoted) attribute values.
/// Apostrophes stay as they are: they need no escaping in either place and keep commands readable.
pub(crate) fn escape(value: &str, attribute: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

/// True when `c` may appear in an XML 1.0 document.
pub(crate) fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

pub(crate) struct XmlWriter {
    out: String,
    stack: Vec<&'static str>,
}

impl XmlWriter {
    pub(crate) fn new() -> Self {
        Self {
            out: String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n"),
            stack: Vec::new(),
        }
    }

    fn indent(&mut self) {
        for _ in 0..self.stack.len() {
            self.out.push_str("  ");
        }
    }

    fn start_tag(&mut self, name: &'static str, attrs: &[(&str, &str)]) {
        self.indent();
        self.out.push('<');
        self.out.push_str(name);
        for (key, value) in attrs {
            let _ = write!(self.out, " {key}=\"{}\"", escape(value, true));
        }
    }

    /// Opens `<name attrs…>` and keeps it open until [`XmlWriter::close`].
    pub(crate) fn open(&mut self, name: &'static str, attrs: &[(&str, &str)]) {
        self.start_tag(name, attrs);
        self.out.push_str(">\n");
        self.stack.push(name);
    }

    /// Closes the innermost open element.
    pub(crate) fn close(&mut self) {
        let name = self.stack.pop().expect("close without open");
        self.indent();
        let _ = writeln!(self.out, "</{name}>");
    }

    /// Writes `<name attrs…>text</name>` on one line.
    pub(crate) fn leaf(&mut self, name: &'static str, attrs: &[(&str, &str)], text: &str) {
        self.start_tag(name, attrs);
        let _ = writeln!(self.out, ">{}</{name}>", escape(text, false));
    }

    /// Writes a text-only element without attributes.
    pub(crate) fn text(&mut self, name: &'static str, text: &str) {
        self.leaf(name, &[], text);
    }

    pub(crate) fn finish(self) -> String {
        assert!(self.stack.is_empty(), "unclosed elements: {:?}", self.stack);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_every_special_character_in_text_and_attributes() {
        let mut w = XmlWriter::new();
        w.open("a", &[("k", "\"<&>'")]);
        w.text("b", "x < y & \"z\" > 'w'");
        w.close();
        let xml = w.finish();
        assert!(xml.contains(r#"<a k="&quot;&lt;&amp;&gt;'">"#), "{xml}");
        assert!(
            xml.contains(r#"<b>x &lt; y &amp; "z" &gt; 'w'</b>"#),
            "{xml}"
        );
    }

    #[test]
    fn rejects_control_characters_as_xml_chars() {
        assert!(!is_xml_char('\u{1}'));
        assert!(!is_xml_char('\u{FFFE}'));
        assert!(is_xml_char('日'));
        assert!(is_xml_char('\n'));
    }
}
