//! Text for people: what the untrusted guest sends made safe to print on a
//! terminal, and an error with its causes on one line.

use std::borrow::Cow;

/// Text for a terminal: control characters (C0, DEL, C1 including the
/// 8-bit CSI) and bidirectional overrides are replaced by visible escapes
/// (`\x1b`, `\u{9b}`, `\u{202e}`), so names, link targets and messages
/// from the untrusted guest cannot move the cursor, retitle the window,
/// fake lines or reorder text. Everything else is kept as is.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    let bad =
        |c: char| c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    if !s.chars().any(bad) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !bad(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// An error and its causes on one line, each once: "a: b: c".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let text = c.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::terminal_safe;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(terminal_safe("plain name ü.txt"), "plain name ü.txt");
        assert!(matches!(terminal_safe("ok"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            terminal_safe("a\x1b]0;owned\x07b\nc\rd\te\x7f\u{9b}2J\u{85}\u{202e}fdp.exe"),
            "a\\x1b]0;owned\\x07b\\x0ac\\x0dd\\x09e\\x7f\\u{9b}2J\\u{85}\\u{202e}fdp.exe"
        );
        assert_eq!(terminal_safe("\0"), "\\x00");
    }
}
