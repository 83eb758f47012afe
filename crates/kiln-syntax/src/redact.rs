//! Redaction of credentials in text that kiln prints or writes: the userinfo of URLs
//! (`https://user:token@host/…` → `https://***@host/…`), wherever it appears in a line.
//!
//! [`CredentialUrl`] is the one type that carries a URL which may hold credentials: it prints
//! redacted (`Display`, `Debug`) and hands the full text out only through
//! [`CredentialUrl::expose`], for the one place that needs it (the HTTP request). The
//! [`redact_userinfo`] scrubber is applied where text leaves kiln (step logs, build events, error
//! messages) as a second line of defence for text kiln did not write itself (a library's error).

use std::borrow::Cow;
use std::fmt;

/// What replaces a URL's userinfo.
pub const REDACTED_USERINFO: &str = "***";

/// `text` with the userinfo of every `scheme://userinfo@host` in it replaced by `***`.
#[must_use]
pub fn redact_userinfo(text: &str) -> Cow<'_, str> {
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = text[search..].find("://") {
        let start = search + found + 3;
        // A scheme is at least one letter right before `://`.
        let scheme_ok = text[..search + found]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
        let end = text[start..]
            .find(|c: char| {
                c.is_whitespace()
                    || matches!(
                        c,
                        '/' | '?' | '#' | '"' | '\'' | '<' | '>' | '`' | '(' | ')'
                    )
            })
            .map_or(text.len(), |i| start + i);
        if scheme_ok && let Some(at) = text[start..end].rfind('@') {
            let buf = out.get_or_insert_with(|| String::with_capacity(text.len()));
            buf.push_str(&text[copied..start]);
            buf.push_str(REDACTED_USERINFO);
            copied = start + at;
        }
        search = end.max(start);
    }
    match out {
        Some(mut buf) => {
            buf.push_str(&text[copied..]);
            Cow::Owned(buf)
        }
        None => Cow::Borrowed(text),
    }
}

/// True when `url` carries userinfo (`user@` or `user:password@`).
#[must_use]
pub fn has_userinfo(url: &str) -> bool {
    matches!(redact_userinfo(url), Cow::Owned(_))
}

/// A URL that may hold credentials. Prints with its userinfo redacted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct CredentialUrl(String);

impl CredentialUrl {
    /// Wraps `url`.
    #[must_use]
    pub fn new(url: impl Into<String>) -> Self {
        Self(url.into())
    }

    /// The full URL, credentials included: for the request, nowhere else.
    #[must_use]
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The URL without its userinfo's value (`https://***@host/…`), as printed.
    #[must_use]
    pub fn redacted(&self) -> String {
        redact_userinfo(&self.0).into_owned()
    }
}

impl fmt::Display for CredentialUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_userinfo(&self.0))
    }
}

impl fmt::Debug for CredentialUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CredentialUrl({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tokens in source URLs must never reach a log, an event or an error message.
    #[test]
    fn userinfo_is_redacted_wherever_a_url_sits_in_a_line() {
        assert_eq!(
            redact_userinfo("https://user:tok3n@mirror.example.org/iso/x.iso"),
            "https://***@mirror.example.org/iso/x.iso"
        );
        assert_eq!(
            redact_userinfo(
                "error sending request for url (http://a:b@127.0.0.1:8080/x) and `https://t@h`"
            ),
            "error sending request for url (http://***@127.0.0.1:8080/x) and `https://***@h`"
        );
        assert_eq!(
            redact_userinfo(r#"{"url":"https://u:p%40ss@h/x?q=a@b"}"#),
            r#"{"url":"https://***@h/x?q=a@b"}"#
        );
        assert_eq!(
            redact_userinfo("two: http://x:1@a/ http://y:2@b/"),
            "two: http://***@a/ http://***@b/"
        );
    }

    #[test]
    fn text_without_userinfo_is_borrowed_unchanged() {
        for text in [
            "https://mirror.example.org/a@b",
            "mail ops@example.org",
            "://@",
            "",
            "ssh-ed25519 AAAA ops@example",
        ] {
            assert!(matches!(redact_userinfo(text), Cow::Borrowed(_)), "{text}");
        }
    }

    #[test]
    fn credential_urls_print_redacted() {
        let u = CredentialUrl::new("https://user:hunter2@h/x");
        assert_eq!(
            format!("{u} {u:?}"),
            "https://***@h/x CredentialUrl(https://***@h/x)"
        );
        assert_eq!(u.expose(), "https://user:hunter2@h/x");
        assert!(has_userinfo(u.expose()));
        assert!(!has_userinfo("https://h/x"));
    }
}
