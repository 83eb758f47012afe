//! The settings block of a Linux install whose answer file the user writes (`preseed`,
//! `kickstart`): secrets kiln puts into that file at build time, so they are never written in it.
//!
//! ```kdl
//! install preseed file="preseed.cfg" {
//!     root-password env="ROOT_PASSWORD"
//! }
//! ```

use super::reader::{Cx, NodeView, secret};
use crate::diagnostic::Diagnostic;
use crate::secret::SecretRef;

const LINUX_NODES: &[&str] = &["root-password"];

/// The `root-password` of the block of install node `n` (which has a block).
pub(crate) fn root_password(cx: &mut Cx<'_>, n: &NodeView<'_>) -> Option<SecretRef> {
    let mut found: Option<(SecretRef, crate::span::Span)> = None;
    let mut ok = true;
    for child in n.children() {
        let name = child.name().value();
        if !LINUX_NODES.contains(&name) {
            n.unknown_child(cx, child, LINUX_NODES);
            ok = false;
            continue;
        }
        let c = NodeView::new(cx, child);
        if let Some((_, first)) = &found {
            cx.emit(
                Diagnostic::new(
                    "duplicate-node",
                    c.name_span,
                    "`root-password` is given twice in `install`",
                )
                .label("second one")
                .with(*first, "first one")
                .help("keep one of them"),
            );
            ok = false;
            continue;
        }
        match secret(cx, &c) {
            Some(s) => found = Some((s, c.name_span)),
            None => ok = false,
        }
    }
    if !ok {
        return None;
    }
    match found {
        Some((s, _)) => Some(s),
        None => {
            cx.emit(
                Diagnostic::new("missing-node", n.name_span, "the install block is empty")
                    .label("nothing in this block")
                    .help("add `root-password env=\"VAR\"` inside the braces, or drop the braces"),
            );
            None
        }
    }
}
