//! kiln-plan: typed, spanned pipelines (kiln-syntax) → a validated DAG of content-addressed steps.
//!
//! - [`planner`]: the entry point [`plan`]; runs the checks and lowers every selected cell.
//! - [`cells`](crate::cells): matrix cells, `from` parents, cycles, publish conflicts.
//! - [`lower`](crate::lower): one cell → steps, parameters rendered for the cell.
//! - [`step`]: the step types ([`Step`], [`StepParams`], [`ExecInputs`]).
//! - [`key`]: [`StepKey`], the canonical description and [`KEY_FORMAT_VERSION`].
//! - [`graph`]: the sealed [`Plan`] (petgraph) and the deduplicating builder.
//! - [`select`]: `--only` / `--except` selectors.
//! - [`io`]: the traits to the outside world ([`ContentDigest`], [`CacheQuery`]) and fakes.
//! - [`installer`]: installer profiles (kernel, initrd, command line, answer placement) and their
//!   plan-time ISO check.
//! - [`windows`]: Windows installs: the kiln-unattend image of a cell, the plan-time media check.
//! - [`render`]: text, JSON ([`PlanJson`]), DOT and Mermaid output.
//!
//! No I/O happens here: file digests and cache lookups come in through [`io`]'s traits.

mod cells;
pub mod graph;
pub mod installer;
pub mod io;
pub mod key;
mod lower;
pub mod planner;
pub mod quote;
pub mod render;
pub mod select;
pub mod step;
mod suggest;
pub mod windows;

pub use graph::{Plan, PlannedCell};
pub use io::{CacheQuery, ContentDigest, FakeCache, FakeDigests, NoCache};
pub use key::{KEY_FORMAT_VERSION, StepKey, ToolVersions};
pub use planner::{DEFAULT_MAX_CELLS, PlanOptions, plan};
pub use render::{GraphFormat, PLAN_JSON_FORMAT, PlanJson, to_graph, to_json, to_text};
pub use select::Selector;
pub use step::{ExecInputs, Owner, Step, StepId, StepInput, StepKind, StepParams};
