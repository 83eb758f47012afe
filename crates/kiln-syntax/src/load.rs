//! Loading pipeline files: walking directories, reading files and their includes, parsing,
//! decoding, and the checks across files (unique names, `from` parents, unused `--var`s).
//!
//! All file access goes through [`FileSystem`], so tests and fuzzers run on memory.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kdl::KdlDocument;

use crate::decode::body::{Body, decode_body};
use crate::decode::reader::{Cx, NodeView, nonempty_template};
use crate::decode::{kdl_errors, pipeline as decode_pipeline};
use crate::diagnostic::{self, Diagnostic};
pub use crate::fs::{FileSystem, MemoryFs, RealFs, normalize};
use crate::model::{Answer, FileContent, Include, LocalPath, Pipeline, StepKind};
use crate::overrides::Overrides;
use crate::project::Project;
use crate::source_map::SourceMap;
use crate::span::{FileId, Span};
use crate::suggest::closest;

/// What loading produced: the files, the pipelines and every diagnostic.
#[derive(Debug, Default)]
pub struct Workspace {
    /// Every file read (given files, then includes), by id.
    pub sources: SourceMap,
    /// The files named by the caller (directories expanded), in order.
    pub checked: Vec<FileId>,
    /// Pipelines that decoded, in file order. Pipelines with errors are still here when their
    /// name decoded, so later checks see them; use [`Workspace::is_ok`] before acting on them.
    pub pipelines: Vec<Pipeline>,
    /// Every problem found, sorted by file and position.
    pub diagnostics: Vec<Diagnostic>,
}

impl Workspace {
    /// True when no diagnostic was found.
    pub fn is_ok(&self) -> bool {
        self.diagnostics.is_empty()
    }

    /// Renders all diagnostics as text (see [`diagnostic::render_text`]).
    pub fn render(&self, color: bool) -> String {
        diagnostic::render_text(&self.diagnostics, &self.sources, color)
    }
}

/// Options for [`load`].
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--var` and `KILN_VAR_*` values.
    pub overrides: Overrides,
    /// When given, local paths outside this project are errors and includes outside it are not
    /// read (`None`: `--allow-outside-project`, and library callers that trust their input).
    pub project: Option<Project>,
}

/// Loads and checks the given files and directories (directories: every `*.kdl` below them,
/// sorted; hidden entries skipped).
pub fn load(paths: &[PathBuf], options: &LoadOptions, fs: &dyn FileSystem) -> Workspace {
    let mut loader = Loader::new(options, fs);
    let (files, mut diags) = collect_files(paths, fs);
    loader.diags.append(&mut diags);
    // Read the given files in order, parse them on every core (parsing is most of the work of
    // loading), then decode them one after another in the same order as before.
    let mut seen = std::collections::HashSet::new();
    let texts: Vec<Option<io::Result<String>>> = files
        .iter()
        .map(|f| seen.insert(normalize(f)).then(|| fs.read_to_string(f)))
        .collect();
    let mut parsed = parse_all(
        texts
            .iter()
            .map(|t| t.as_ref().and_then(|r| r.as_ref().ok()).map(String::as_str))
            .collect(),
    );
    for ((file, text), doc) in files.iter().zip(texts).zip(parsed.iter_mut()) {
        loader.top_level(file, text.map(|t| t.map(|t| (t, doc.take()))));
    }
    loader.finish()
}

/// A file's parse: the document, or kdl's error.
type Parsed = Result<KdlDocument, kdl::KdlError>;

/// Parses `texts` (`None` entries are skipped) on up to [`std::thread::available_parallelism`]
/// threads; results in input order.
fn parse_all(texts: Vec<Option<&str>>) -> Vec<Option<Parsed>> {
    let work = texts.iter().filter(|t| t.is_some()).count();
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(work / PARSES_PER_THREAD)
        .max(1);
    if threads == 1 {
        return texts
            .iter()
            .map(|t| t.map(crate::nesting::parse_kdl))
            .collect();
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let texts = &texts;
    let next = &next;
    let mut out: Vec<Option<Parsed>> = (0..texts.len()).map(|_| None).collect();
    let chunks: Vec<Vec<(usize, Parsed)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(move || {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(slot) = texts.get(i) else { break };
                        if let Some(text) = slot {
                            done.push((i, crate::nesting::parse_kdl(text)));
                        }
                    }
                    done
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    });
    for (i, parsed) in chunks.into_iter().flatten() {
        out[i] = Some(parsed);
    }
    out
}

/// Below this many files per thread, threads cost more than they save.
const PARSES_PER_THREAD: usize = 8;

/// Expands directories into the `*.kdl` files below them (sorted, hidden entries skipped); files
/// are kept as given. Problems (unreadable or empty directories) come back as diagnostics.
pub fn collect_files(paths: &[PathBuf], fs: &dyn FileSystem) -> (Vec<PathBuf>, Vec<Diagnostic>) {
    let mut files = Vec::new();
    let mut diags = Vec::new();
    for path in paths {
        if fs.is_dir(path) {
            match walk(fs, path) {
                Ok(mut found) => {
                    if found.is_empty() {
                        diags.push(
                            Diagnostic::global(
                                "no-files",
                                format!("no `.kdl` files in `{}`", path.display()),
                            )
                            .help("pipeline files end in `.kdl`"),
                        );
                    }
                    files.append(&mut found);
                }
                Err(e) => diags.push(Diagnostic::global(
                    "io",
                    format!("cannot read directory `{}`: {e}", path.display()),
                )),
            }
        } else {
            files.push(path.clone());
        }
    }
    (files, diags)
}

/// Loads one file given as text (includes are looked up in `fs`).
pub fn load_text(
    path: impl Into<PathBuf>,
    text: &str,
    options: &LoadOptions,
    fs: &dyn FileSystem,
) -> Workspace {
    let mut loader = Loader::new(options, fs);
    let path = path.into();
    let id = loader.add(&path, text.to_string(), None);
    loader.checked.push(id);
    loader.decode_top(id);
    loader.finish()
}

fn walk(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    let mut entries = fs.read_dir(dir)?;
    entries.sort();
    for entry in entries {
        let hidden = entry
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if fs.is_dir(&entry) {
            out.extend(walk(fs, &entry)?);
        } else if entry.extension().is_some_and(|e| e == "kdl") {
            out.push(entry);
        }
    }
    Ok(out)
}

struct Loader<'a> {
    options: &'a LoadOptions,
    fs: &'a dyn FileSystem,
    sources: SourceMap,
    by_path: HashMap<PathBuf, FileId>,
    /// Parsed files by id (shared, so decoding borrows them without copying).
    docs: Vec<Option<Arc<KdlDocument>>>,
    /// A fragment file's own body (decoded once), `None` when the file is not a usable fragment.
    fragments: HashMap<FileId, Option<Body>>,
    checked: Vec<FileId>,
    pipelines: Vec<Pipeline>,
    diags: Vec<Diagnostic>,
}

impl<'a> Loader<'a> {
    fn new(options: &'a LoadOptions, fs: &'a dyn FileSystem) -> Self {
        Loader {
            options,
            fs,
            sources: SourceMap::new(),
            by_path: HashMap::new(),
            docs: Vec::new(),
            fragments: HashMap::new(),
            checked: Vec::new(),
            pipelines: Vec::new(),
            diags: Vec::new(),
        }
    }

    /// Registers a file; `parsed` is its parse when already done, else it is parsed here.
    fn add(&mut self, path: &Path, text: String, parsed: Option<Parsed>) -> FileId {
        let id = self.sources.add(path.to_path_buf(), text);
        self.by_path.insert(normalize(path), id);
        let text = self.sources.get(id).text().clone();
        let parsed = parsed.unwrap_or_else(|| crate::nesting::parse_kdl(&text));
        let doc = match parsed {
            Ok(doc) => Some(Arc::new(doc)),
            Err(err) => {
                self.diags.extend(kdl_errors::map(id, &text, &err));
                None
            }
        };
        self.docs.push(doc);
        id
    }

    /// Loads a given file; `read` is its text (and parse) when read ahead, `None` when it was
    /// seen already.
    fn top_level(&mut self, path: &Path, read: Option<io::Result<(String, Option<Parsed>)>>) {
        if let Some(&id) = self.by_path.get(&normalize(path)) {
            if !self.checked.contains(&id) {
                self.checked.push(id);
            }
            return;
        }
        let read = read.unwrap_or_else(|| self.fs.read_to_string(path).map(|t| (t, None)));
        match read {
            Ok((text, parsed)) => {
                let id = self.add(path, text, parsed);
                self.checked.push(id);
                self.decode_top(id);
            }
            Err(e) => self.diags.push(Diagnostic::global(
                "io",
                format!("cannot read `{}`: {e}", path.display()),
            )),
        }
    }

    fn decode_top(&mut self, id: FileId) {
        let Some(doc) = self.docs[id.index()].clone() else {
            return;
        };
        let file = self.sources.get(id).clone();
        let mut pipelines = Vec::new();
        let mut fragment = None;
        {
            let mut cx = Cx {
                file: id,
                dir: file.dir(),
                diags: &mut self.diags,
                project: self.options.project.as_ref(),
            };
            if doc.nodes().is_empty() {
                cx.emit(
                    Diagnostic::new(
                        "empty-file",
                        Span::new(id, 0, 0),
                        "file has no `pipeline` or `fragment`",
                    )
                    .label("empty file")
                    .help("start with `pipeline \"name\" { ... }`"),
                );
            }
            let kinds: Vec<&str> = doc.nodes().iter().map(|n| n.name().value()).collect();
            let has_pipeline = kinds.contains(&"pipeline");
            for node in doc.nodes() {
                let name = node.name().value();
                match name {
                    "pipeline" => pipelines.push(node),
                    "fragment" if has_pipeline => {
                        cx.emit(
                            Diagnostic::new(
                                "mixed-file",
                                cx.span(node.name().span()),
                                "a file holds pipelines or one fragment, not both",
                            )
                            .label("fragment in a pipeline file")
                            .help("move the fragment to its own file and `include` it"),
                        );
                    }
                    "fragment" if fragment.is_some() => {
                        cx.emit(
                            Diagnostic::new(
                                "duplicate-node",
                                cx.span(node.name().span()),
                                "a fragment file holds one `fragment`",
                            )
                            .label("second fragment")
                            .help("put each fragment in its own file"),
                        );
                    }
                    "fragment" => fragment = Some(node),
                    other => {
                        let help = match closest(other, ["pipeline", "fragment"]) {
                            Some(c) => format!("did you mean `{c}`? top-level nodes are `pipeline` and `fragment`"),
                            None => "top-level nodes are `pipeline \"name\" { ... }` and `fragment { ... }`".to_string(),
                        };
                        cx.emit(
                            Diagnostic::new(
                                "unknown-node",
                                cx.span(node.name().span()),
                                format!("unknown top-level node `{other}`"),
                            )
                            .label("unknown node")
                            .help(help),
                        );
                    }
                }
            }
        }
        if fragment.is_some() && !has_pipeline_nodes(&pipelines) {
            self.fragment_own(id);
        }
        for node in pipelines {
            self.pipeline(id, node);
        }
    }

    /// Decodes the body of a fragment file once.
    fn fragment_own(&mut self, id: FileId) -> Option<Body> {
        if let Some(cached) = self.fragments.get(&id) {
            return cached.clone();
        }
        let doc = self.docs[id.index()].clone();
        let file = self.sources.get(id).clone();
        let mut cx = Cx {
            file: id,
            dir: file.dir(),
            diags: &mut self.diags,
            project: self.options.project.as_ref(),
        };
        let body = doc.and_then(|doc| {
            let node = doc
                .nodes()
                .iter()
                .find(|n| n.name().value() == "fragment")?;
            if doc.nodes().iter().any(|n| n.name().value() == "pipeline") {
                return None;
            }
            let view = NodeView::new(&mut cx, node);
            view.check_props(&mut cx, &[]);
            view.check_args(&mut cx, 0, 0, "a block of pipeline nodes");
            Some(decode_body(&mut cx, &view))
        });
        self.fragments.insert(id, body.clone());
        body
    }

    /// Resolves the includes of `body` (from file `from`) into one merged base body.
    fn expand(
        &mut self,
        from: FileId,
        body: &Body,
        stack: &mut Vec<FileId>,
        includes: &mut Vec<Include>,
    ) -> Body {
        let mut base = Body::default();
        for (span, path) in &body.includes {
            // Reported where the path was decoded; the file is not read, so none of its text
            // can reach a diagnostic.
            if self
                .options
                .project
                .as_ref()
                .is_some_and(|p| !p.contains(&path.resolved))
            {
                continue;
            }
            let target = normalize(&path.resolved);
            let id = match self.by_path.get(&target) {
                Some(&id) => Some(id),
                None => match self.fs.read_to_string(&path.resolved) {
                    Ok(text) => Some(self.add(&target, text, None)),
                    Err(e) => {
                        self.diags.push(
                            Diagnostic::new(
                                "missing-include",
                                path.span,
                                format!("cannot read fragment `{}`: {e}", path.written),
                            )
                            .label("included here")
                            .help(format!(
                                "paths are relative to the including file's directory (`{}`)",
                                self.dir_of(from)
                            )),
                        );
                        None
                    }
                },
            };
            includes.push(Include {
                span: *span,
                path: path.clone(),
                file: id,
            });
            let Some(id) = id else { continue };
            if let Some(pos) = stack.iter().position(|f| *f == id) {
                let mut chain: Vec<String> = stack[pos..]
                    .iter()
                    .map(|f| self.sources.get(*f).name())
                    .collect();
                chain.push(self.sources.get(id).name());
                self.diags.push(
                    Diagnostic::new(
                        "include-cycle",
                        path.span,
                        format!("include cycle: {}", chain.join(" → ")),
                    )
                    .label("this include closes the cycle")
                    .help(
                        "remove this include; fragments may include each other only without loops",
                    ),
                );
                continue;
            }
            let is_fragment = self.docs[id.index()].as_ref().map(|d| {
                let kinds: Vec<&str> = d.nodes().iter().map(|n| n.name().value()).collect();
                (kinds.contains(&"fragment"), kinds.contains(&"pipeline"))
            });
            match is_fragment {
                Some((true, false)) => {}
                Some(_) => {
                    self.diags.push(
                        Diagnostic::new("not-a-fragment", path.span, format!("`{}` is not a fragment file", path.written))
                            .label("included here")
                            .help("a fragment file holds exactly one `fragment { ... }` node with pipeline nodes inside"),
                    );
                    continue;
                }
                None => continue, // parse errors already reported for that file
            }
            let Some(own) = self.fragment_own(id) else {
                continue;
            };
            stack.push(id);
            let nested = self.expand(id, &own, stack, includes);
            stack.pop();
            let flat = decode_pipeline::merge(nested, own);
            base = decode_pipeline::merge(base, flat);
        }
        base
    }

    fn dir_of(&self, id: FileId) -> String {
        let d = self.sources.get(id).dir().display().to_string();
        if d.is_empty() { ".".into() } else { d }
    }

    fn pipeline(&mut self, id: FileId, node: &kdl::KdlNode) {
        let file = self.sources.get(id).clone();
        let (name, span, own) = {
            let mut cx = Cx {
                file: id,
                dir: file.dir(),
                diags: &mut self.diags,
                project: self.options.project.as_ref(),
            };
            let view = NodeView::new(&mut cx, node);
            view.check_props(&mut cx, &[]);
            let name = if view.check_args(
                &mut cx,
                1,
                1,
                "a name, e.g. `pipeline \"debian-12\" { ... }`",
            ) {
                nonempty_template(&mut cx, &view.args[0])
            } else {
                None
            };
            if let Some(n) = &name {
                check_name_chars(&mut cx, n);
            }
            if node.children().is_none() {
                cx.emit(
                    Diagnostic::new(
                        "missing-block",
                        view.span,
                        "`pipeline` needs a block of nodes",
                    )
                    .label("no `{ ... }`")
                    .help("write `pipeline \"name\" { source ...; disk ...; install ... }`"),
                );
            }
            let own = decode_body(&mut cx, &view);
            (name, view.span, own)
        };
        let mut includes = Vec::new();
        let mut stack = vec![id];
        let base = self.expand(id, &own, &mut stack, &mut includes);
        let merged = decode_pipeline::merge(base, own);
        let Some(name) = name else { return };
        let pipeline = decode_pipeline::build(
            id,
            span,
            name,
            merged,
            includes,
            &self.options.overrides,
            &mut self.diags,
        );
        self.check_files(&pipeline);
        self.pipelines.push(pipeline);
    }

    /// Files the pipeline reads at build time must exist now.
    fn check_files(&mut self, p: &Pipeline) {
        let mut paths: Vec<(&LocalPath, &str)> = Vec::new();
        if let Some(Answer::File(f)) = p.install.as_ref().and_then(|i| i.answer.as_ref()) {
            paths.push((f, "answer file"));
        }
        if let Some(c) = &p.customize {
            for s in &c.steps {
                if let StepKind::File(f) = &s.kind
                    && let FileContent::Source(src) = &f.content
                {
                    paths.push((src, "file"));
                }
            }
        }
        for (path, what) in paths {
            if !self.fs.is_file(&path.resolved) {
                self.diags.push(
                    Diagnostic::new(
                        "missing-file",
                        path.span,
                        format!("{what} `{}` does not exist", path.written),
                    )
                    .label(format!("looked for `{}`", path.resolved.display()))
                    .help(format!(
                        "paths are relative to the file that names them (`{}`)",
                        self.dir_of(path.span.file)
                    )),
                );
            }
        }
    }

    fn finish(mut self) -> Workspace {
        self.workspace_checks();
        let mut diags = std::mem::take(&mut self.diags);
        diagnostic::sort(&mut diags);
        diags.dedup();
        Workspace {
            sources: self.sources,
            checked: self.checked,
            pipelines: self.pipelines,
            diagnostics: diags,
        }
    }

    fn workspace_checks(&mut self) {
        // Names per cell must be unique; `from` must name one of them.
        let mut names: BTreeMap<String, Span> = BTreeMap::new();
        for p in &self.pipelines {
            if p.matrix
                .as_ref()
                .is_some_and(|m| m.len() > crate::limits::MAX_CHECKED_CELLS)
            {
                continue;
            }
            for cell in p.cells() {
                let Ok(vars) = p.vars_for(&cell) else {
                    continue;
                };
                let Some(name) = vars.get("pipeline") else {
                    continue;
                };
                if let Some(first) = names.get(name) {
                    if *first != p.name.span {
                        self.diags.push(
                            Diagnostic::new("duplicate-pipeline", p.name.span, format!("pipeline name `{name}` is used twice"))
                                .label("second pipeline")
                                .with(*first, "first pipeline")
                                .help("pipeline names (per matrix cell) identify images and `from` parents; rename one"),
                        );
                    }
                } else {
                    names.insert(name.clone(), p.name.span);
                }
            }
        }
        for p in &self.pipelines {
            let Some(from) = &p.from else { continue };
            if p.matrix
                .as_ref()
                .is_some_and(|m| m.len() > crate::limits::MAX_CHECKED_CELLS)
            {
                continue;
            }
            let mut missing: Vec<String> = Vec::new();
            for cell in p.cells() {
                let Ok(vars) = p.vars_for(&cell) else {
                    continue;
                };
                let Ok(parent) = from.name.render(&vars) else {
                    continue;
                };
                if vars.get("pipeline") == Some(&parent) {
                    self.diags.push(
                        Diagnostic::new(
                            "self-parent",
                            from.name.span,
                            format!("pipeline `{parent}` is built from itself"),
                        )
                        .label("names this pipeline")
                        .help("`from` names another pipeline"),
                    );
                    break;
                }
                if !names.contains_key(&parent) && !missing.contains(&parent) {
                    missing.push(parent);
                }
            }
            for parent in missing {
                let help = match closest(&parent, names.keys().map(String::as_str)) {
                    Some(c) => format!("did you mean `{c}`? the parent must be among the checked files"),
                    None => "the parent pipeline must be among the checked files (check the whole folder)".to_string(),
                };
                self.diags.push(
                    Diagnostic::new(
                        "unknown-parent",
                        from.name.span,
                        format!("no pipeline named `{parent}`"),
                    )
                    .label("parent not found")
                    .help(help),
                );
            }
        }
        let declared: Vec<&str> = self
            .pipelines
            .iter()
            .flat_map(|p| p.variables.vars.iter().map(|v| v.name.value.as_str()))
            .collect();
        for name in self.options.overrides.cli_names() {
            if !declared.contains(&name) {
                let help = match closest(name, declared.iter().copied()) {
                    Some(c) => format!("did you mean `{c}`?"),
                    None => "declare it in a pipeline's `variables` block".to_string(),
                };
                self.diags.push(
                    Diagnostic::global(
                        "unknown-variable",
                        format!("`--var {name}` sets a variable no pipeline declares"),
                    )
                    .help(help),
                );
            }
        }
    }
}

fn has_pipeline_nodes(pipelines: &[&kdl::KdlNode]) -> bool {
    !pipelines.is_empty()
}

fn check_name_chars(cx: &mut Cx<'_>, name: &crate::template::Template) {
    for part in &name.parts {
        if let crate::template::TemplatePart::Literal(text) = part
            && let Some(bad) = text
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || "._-".contains(*c)))
        {
            cx.emit(
                Diagnostic::new("bad-name", name.span, format!("pipeline name `{}` contains `{bad}`", name.raw))
                    .label("invalid character")
                    .help("pipeline names use letters, digits, `.`, `_` and `-` (the Glance image name may be anything)"),
            );
            return;
        }
    }
}
