//! Guest text made safe to print: the guest is hostile, and its console output reaches the user's
//! terminal in error messages. Terminal escape sequences (`ESC [ ... m`, `ESC ] 0;title BEL`, ...)
//! could clear the screen, retitle the window, or hide and forge lines; they are removed, and so
//! are every other control character (C0 and C1, except tab and newline) and Unicode's
//! bidirectional overrides, which can make text read differently from what it is.

/// `text` without escape sequences and control characters (tab and newline are kept).
#[must_use]
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte in `@`..`~`.
                Some('[') => {
                    for c in chars.by_ref() {
                        if ('\u{40}'..='\u{7e}').contains(&c) {
                            break;
                        }
                    }
                }
                // OSC, DCS, SOS, PM, APC: a string up to BEL or ST (`ESC \`).
                Some(']' | 'P' | 'X' | '^' | '_') => skip_string(&mut chars),
                // Two- or three-character sequences (`ESC c`, `ESC ( B`, ...).
                Some('(' | ')' | '*' | '+' | '-' | '.' | '/' | '#' | '%' | ' ') => {
                    chars.next();
                }
                _ => {}
            },
            // 8-bit CSI and string introducers.
            '\u{9b}' => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            '\u{90}' | '\u{98}' | '\u{9d}' | '\u{9e}' | '\u{9f}' => skip_string(&mut chars),
            '\t' | '\n' => out.push(c),
            c if c.is_control() => {}
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => {}
            c => out.push(c),
        }
    }
    out
}

/// Skips a control string's body through its terminator: BEL, `ESC \` or 8-bit ST.
fn skip_string(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    while let Some(c) = chars.next() {
        match c {
            '\u{7}' | '\u{9c}' => return,
            '\u{1b}' => {
                if chars.peek() == Some(&'\\') {
                    chars.next();
                }
                return;
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // A hostile console line must not retitle the window, clear the screen or recolour text.
    #[test]
    fn escape_sequences_and_controls_are_removed() {
        let cases = [
            ("\u{1b}]0;pwned\u{7}login:", "login:"),
            ("\u{1b}]8;;http://x\u{1b}\\link\u{1b}]8;;\u{1b}\\", "link"),
            ("\u{1b}[2J\u{1b}[H\u{1b}[31mred\u{1b}[0m", "red"),
            ("\u{1b}[?1049h\u{1b}[1;1Hx", "x"),
            ("a\u{1b}cb\u{1b}(Bc", "abc"),
            ("\u{9b}31mred\u{9b}0m", "red"),
            ("\u{1b}P1$qm\u{1b}\\ok", "ok"),
            ("bell\u{7}back\u{8}\u{8}cr\r\0", "bellbackcr"),
            ("tab\tand\nnewline", "tab\tand\nnewline"),
            ("\u{202e}txt.exe", "txt.exe"),
            ("Übersicht — 日本語", "Übersicht — 日本語"),
            ("trailing\u{1b}", "trailing"),
            ("unterminated\u{1b}]0;title", "unterminated"),
        ];
        for (raw, want) in cases {
            assert_eq!(printable(raw), want, "{raw:?}");
        }
    }
}
