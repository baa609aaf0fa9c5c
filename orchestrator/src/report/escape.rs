//! Escaping text for the markup reports (JUnit XML, HTML with inline SVG) and the terminal.
//!
//! Test names, evidence and console excerpts come from guests and kernels, so they can hold
//! anything: markup characters, terminal escape sequences, NUL bytes. XML 1.0 has no way to
//! write most C0 control characters at all (not even as `&#1;`, see XML 1.0 §2.2 `Char`), so
//! they become U+FFFD; tabs and line breaks survive, written as character references inside
//! attributes so that attribute-value normalisation (§3.3.3) does not turn them into spaces.
//! The same output is valid HTML, which the HTML report relies on.

/// What stands in for a character that a report cannot carry.
const REPLACEMENT: char = '\u{FFFD}';

/// Whether XML 1.0 can carry `c` at all (`Char` production, minus what Rust strings exclude).
fn xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || (c >= ' ' && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escapes `s` for element content of XML or HTML.
pub(super) fn text(s: &str) -> String {
    escape(s, false)
}

/// Escapes `s` for a double- or single-quoted attribute value of XML or HTML.
pub(super) fn attr(s: &str) -> String {
    escape(s, true)
}

fn escape(s: &str, in_attr: bool) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' if in_attr => out.push_str("&#9;"),
            '\n' if in_attr => out.push_str("&#10;"),
            '\r' if in_attr => out.push_str("&#13;"),
            '\r' => out.push_str("&#13;"),
            c if xml_char(c) => out.push(c),
            _ => out.push(REPLACEMENT),
        }
    }
    out
}

/// `s` with every control character (escape sequences included) replaced, and line breaks
/// and tabs turned into spaces: safe to print on a terminal or hand to a plotting library
/// as one line of text.
pub(super) fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => ' ',
            c if c.is_control() => REPLACEMENT,
            c => c,
        })
        .collect()
}

/// `s` with carriage returns dropped and every other control character but tabs and line
/// breaks replaced: multi-line text (console excerpts) that is safe to print on a terminal
/// or to put in plain-text mail.
pub(super) fn printable(s: &str) -> String {
    s.chars()
        .filter(|&c| c != '\r')
        .map(|c| match c {
            '\t' | '\n' => c,
            c if c.is_control() => REPLACEMENT,
            c => c,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_characters_are_escaped() {
        assert_eq!(text(r#"<&>"'"#), "&lt;&amp;&gt;&quot;&#39;");
        assert_eq!(attr(r#"<&>"'"#), "&lt;&amp;&gt;&quot;&#39;");
        assert_eq!(text("a]]>b"), "a]]&gt;b");
    }

    #[test]
    fn control_characters_cannot_break_xml() {
        // NUL, ESC (as in a coloured console line), DEL is allowed by XML 1.0.
        assert_eq!(text("a\0b\x1b[31mc\x7f"), "a\u{FFFD}b\u{FFFD}[31mc\x7f");
        assert_eq!(text("\u{FFFE}\u{FFFF}"), "\u{FFFD}\u{FFFD}");
        // Line breaks stay line breaks in content, and survive attribute normalisation.
        assert_eq!(text("a\n\tb\r\n"), "a\n\tb&#13;\n");
        assert_eq!(attr("a\n\tb\r"), "a&#10;&#9;b&#13;");
    }

    #[test]
    fn plain_text_is_untouched() {
        let s = "futex_wake_race: B/A ×1.07 α=0.05 [1.02, 1.12]";
        assert_eq!(text(s), s);
        assert_eq!(attr(s), s);
    }

    #[test]
    fn terminal_text_loses_escape_sequences() {
        assert_eq!(one_line("a\x1b[2Jb\nc\td"), "a\u{FFFD}[2Jb c d");
        assert_eq!(
            printable("a\x1b]0;x\x07\r\nb\tc"),
            "a\u{FFFD}]0;x\u{FFFD}\nb\tc"
        );
    }
}
