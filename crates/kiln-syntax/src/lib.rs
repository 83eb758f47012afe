//! kiln-syntax: pipeline files in KDL 2.0 → a typed, spanned [`Pipeline`] model, with every
//! problem reported at once as located [`Diagnostic`]s.
//!
//! Entry points: [`load`] (files and directories, with includes) and [`load_text`] (one file
//! given as text); [`format`] for `kiln fmt`. The language is documented in
//! `docs/pipeline-language.md`.

mod decode;
pub mod diagnostic;
pub mod format;
mod fs;
pub mod limits;
mod load;
pub mod model;
pub mod nesting;
pub mod overrides;
pub mod project;
pub mod redact;
pub mod secret;
pub mod source_map;
pub mod span;
pub mod suggest;
pub mod template;
pub mod units;

pub use decode::reader::kind_of as value_kind;
pub use diagnostic::{Diagnostic, render_text};
pub use load::{
    FileSystem, LoadOptions, MemoryFs, RealFs, Workspace, collect_files, load, load_text, normalize,
};
pub use model::*;
pub use nesting::{check_nesting, parse_kdl};
pub use overrides::Overrides;
pub use project::Project;
pub use redact::{CredentialUrl, redact_userinfo};
pub use secret::{SecretRef, SecretValue};
pub use source_map::{Location, SourceFile, SourceMap};
pub use span::{FileId, Span, Spanned};
pub use template::{RenderError, Template, TemplatePart, VarRef};
pub use units::ByteSize;
