//! The parser, decoder and formatter never panic, whatever the bytes: arbitrary text and mutated
//! valid pipelines. Bounded case counts keep this to seconds under `cargo nextest`.

use kiln_syntax::{LoadOptions, MemoryFs, load_text};
use proptest::prelude::*;

const VALID: &str = include_str!("../../../tests/corpus/valid/full-linux.kdl");
const WINDOWS: &str = include_str!("../../../tests/corpus/valid/windows.kdl");

fn check(text: &str) {
    let mut fs = MemoryFs::new();
    fs.insert(
        "fragments/base.kdl",
        "fragment {\n    include \"more.kdl\"\n}\n",
    );
    fs.insert(
        "fragments/more.kdl",
        "fragment {\n    include \"base.kdl\"\n}\n",
    );
    let ws = load_text("fuzz.kdl", text, &LoadOptions::default(), &fs);
    // Rendering walks every span: a span outside its file would panic here.
    let _ = ws.render(false);
    for d in &ws.diagnostics {
        if let Some(span) = d.span {
            assert!(span.end as usize <= ws.sources.get(span.file).text().len());
        }
    }
    if let Ok(once) = kiln_syntax::format::format(text) {
        let twice = kiln_syntax::format::format(&once);
        assert!(twice.is_ok(), "formatted output does not parse:\n{once}");
    }
}

/// Replaces, inserts or deletes a few characters of `base`.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let len = base.len();
    proptest::collection::vec((0..len, 0u8..3, any::<char>()), 1..6).prop_map(move |edits| {
        let mut s: Vec<char> = base.chars().collect();
        for (pos, op, c) in edits {
            let pos = pos.min(s.len().saturating_sub(1));
            match op {
                0 if !s.is_empty() => s[pos] = c,
                1 => s.insert(pos, c),
                _ if !s.is_empty() => {
                    s.remove(pos);
                }
                _ => {}
            }
        }
        s.into_iter().collect()
    })
}

/// Characters that matter to KDL and to kiln's own syntax, so mutations hit interesting paths.
fn kdlish() -> impl Strategy<Value = String> {
    proptest::string::string_regex(r#"[a-z{}"=#;/*\\ \n()0-9GiBm:.-]{0,200}"#).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn kdl_like_text_never_panics(text in kdlish()) {
        check(&text);
    }

    #[test]
    fn mutated_linux_pipeline_never_panics(text in mutated(VALID)) {
        check(&text);
    }

    #[test]
    fn mutated_windows_pipeline_never_panics(text in mutated(WINDOWS)) {
        check(&text);
    }
}

// Thousands of nested blocks overflowed the parser's stack and aborted kiln: now one located error.
#[test]
fn deeply_nested_blocks_are_a_located_error_not_a_stack_overflow() {
    let n = 100_000;
    let text = format!("pipeline \"p\" {}{}", "a {".repeat(n), "}".repeat(n));
    let ws = load_text("deep.kdl", &text, &LoadOptions::default(), &MemoryFs::new());
    assert_eq!(ws.diagnostics.len(), 1, "{:?}", ws.diagnostics);
    let d = &ws.diagnostics[0];
    assert!(
        d.message.contains("nested more than 64 levels"),
        "{}",
        d.message
    );
    let span = d.span.expect("located");
    assert_eq!(&text[span.start as usize..span.end as usize], "{");
    assert!(
        ws.render(false).contains("deep.kdl:1:"),
        "{}",
        ws.render(false)
    );
    // `kiln fmt` reads the same text.
    assert!(kiln_syntax::format::format(&text).is_err());
}

// An overflowing size literal (u128 multiply) panicked in a debug build; now a diagnostic at it.
#[test]
fn overflowing_size_literal_is_a_located_error_not_a_panic() {
    let value = format!("0.{}TiB", "9".repeat(38));
    let text = format!("pipeline \"p\" {{\n    machine memory=\"{value}\"\n}}\n");
    let ws = load_text("big.kdl", &text, &LoadOptions::default(), &MemoryFs::new());
    let d = ws
        .diagnostics
        .iter()
        .find(|d| d.message.contains("too large"))
        .unwrap_or_else(|| panic!("{:?}", ws.diagnostics));
    let span = d.span.expect("located");
    assert!(text[span.start as usize..span.end as usize].contains(&value));
}
