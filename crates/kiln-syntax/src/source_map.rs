//! The source registry: file id → path and text, attached once where a file is read.
//!
//! Every later stage (planner, executor) renders its diagnostics against this map, so a
//! located error in any stage can point into the pipeline files without re-reading them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::span::{FileId, Span};

/// One loaded file.
#[derive(Debug, Clone)]
pub struct SourceFile {
    id: FileId,
    path: PathBuf,
    text: Arc<str>,
    line_starts: Vec<u32>,
}

impl SourceFile {
    /// This file's id.
    pub fn id(&self) -> FileId {
        self.id
    }

    /// The path as the file was given or reached (relative paths stay relative).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The path for display in diagnostics.
    pub fn name(&self) -> String {
        self.path.display().to_string()
    }

    /// The whole text.
    pub fn text(&self) -> &Arc<str> {
        &self.text
    }

    /// The directory relative paths in this file are resolved against.
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new(""))
    }

    /// 1-based line and column (in characters) of a byte offset.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let offset32 = u32::try_from(offset).unwrap_or(u32::MAX);
        let line = match self.line_starts.binary_search(&offset32) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.line_starts[line] as usize;
        let mut start_char = start;
        while !self.text.is_char_boundary(start_char) {
            start_char -= 1;
        }
        let mut end_char = offset;
        while !self.text.is_char_boundary(end_char) {
            end_char -= 1;
        }
        let col = self.text[start_char..end_char].chars().count() + 1;
        (line + 1, col)
    }
}

/// A location for machine-readable output: file, 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The file's path as given.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

/// All files read while loading pipelines, indexed by [`FileId`].
#[derive(Debug, Clone, Default)]
pub struct SourceMap {
    files: Vec<SourceFile>,
}

impl SourceMap {
    /// An empty map.
    pub fn new() -> Self {
        SourceMap::default()
    }

    /// Registers a file and returns its id.
    pub fn add(&mut self, path: impl Into<PathBuf>, text: impl Into<Arc<str>>) -> FileId {
        let text: Arc<str> = text.into();
        let id = FileId(u32::try_from(self.files.len()).expect("fewer than 4 billion files"));
        let mut line_starts = vec![0u32];
        for (i, b) in text.bytes().enumerate() {
            if b == b'\n' {
                line_starts.push(u32::try_from(i + 1).unwrap_or(u32::MAX));
            }
        }
        self.files.push(SourceFile {
            id,
            path: path.into(),
            text,
            line_starts,
        });
        id
    }

    /// The file with this id.
    ///
    /// # Panics
    /// When the id comes from another map.
    pub fn get(&self, id: FileId) -> &SourceFile {
        &self.files[id.index()]
    }

    /// The file registered under `path`, if any.
    pub fn find(&self, path: &Path) -> Option<&SourceFile> {
        self.files.iter().find(|f| f.path == path)
    }

    /// Every file, in load order.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The text a span covers.
    pub fn slice(&self, span: Span) -> &str {
        let text = &self.get(span.file).text;
        let range = span.range();
        text.get(range).unwrap_or("")
    }

    /// File, line and column of a span's start.
    pub fn location(&self, span: Span) -> Location {
        let file = self.get(span.file);
        let (line, column) = file.line_col(span.start as usize);
        Location {
            file: file.name(),
            line,
            column,
        }
    }
}
