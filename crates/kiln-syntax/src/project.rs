//! The project a pipeline may read files from: the repository root (the nearest folder holding
//! `.git`) above the first path given, or, outside a repository, that path (a folder) or its
//! folder (a file). Local paths in pipelines (`include`, answer files, copied files, ISO and
//! secret files) that resolve outside it are errors unless the caller allows them
//! (`--allow-outside-project`); an `include` outside it is not even read, so its text never
//! reaches a diagnostic.

use std::path::{Path, PathBuf};

use crate::fs::{FileSystem, normalize};

/// The folder local paths must stay in, absolute and normalized.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Project {
    root: PathBuf,
    cwd: PathBuf,
}

impl Project {
    /// The project of `path` (a pipeline file or folder), found through `fs`. Relative paths
    /// are taken from the current directory.
    pub fn of(path: &Path, fs: &dyn FileSystem) -> Project {
        let cwd = std::env::current_dir().unwrap_or_default();
        let start = normalize(&cwd.join(path));
        let start = if fs.is_dir(&start) {
            start
        } else {
            start.parent().map(Path::to_path_buf).unwrap_or(start)
        };
        let root = start
            .ancestors()
            .find(|d| {
                let git = d.join(".git");
                fs.is_dir(&git) || fs.is_file(&git)
            })
            .map_or_else(|| start.clone(), Path::to_path_buf);
        Project { root, cwd }
    }

    /// A project rooted at `root` (tests).
    pub fn at(root: impl Into<PathBuf>) -> Project {
        let cwd = std::env::current_dir().unwrap_or_default();
        Project {
            root: normalize(&cwd.join(root.into())),
            cwd,
        }
    }

    /// The project folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `path` (relative ones from the current directory), absolute and normalized.
    pub fn absolute(&self, path: &Path) -> PathBuf {
        normalize(&self.cwd.join(path))
    }

    /// Whether `path` lies inside the project (lexically: `..` and absolute paths are resolved,
    /// symbolic links are not followed).
    pub fn contains(&self, path: &Path) -> bool {
        self.absolute(path).starts_with(&self.root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::MemoryFs;

    #[test]
    fn project_is_the_repository_root_else_the_path_given() {
        let mut fs = MemoryFs::new();
        fs.insert("/r/.git", "gitdir: x")
            .insert("/r/pipelines/a.kdl", "");
        fs.insert("/loose/p/b.kdl", "");
        assert_eq!(
            Project::of(Path::new("/r/pipelines"), &fs).root(),
            Path::new("/r")
        );
        assert_eq!(
            Project::of(Path::new("/r/pipelines/a.kdl"), &fs).root(),
            Path::new("/r")
        );
        assert_eq!(
            Project::of(Path::new("/loose/p"), &fs).root(),
            Path::new("/loose/p")
        );
        assert_eq!(
            Project::of(Path::new("/loose/p/b.kdl"), &fs).root(),
            Path::new("/loose/p")
        );
        let p = Project::at("/r");
        assert!(p.contains(Path::new("/r/pipelines/../shared/x.kdl")));
        assert!(!p.contains(Path::new("/r/pipelines/../../etc/passwd")));
        assert!(!p.contains(Path::new("/etc/passwd")));
        assert!(!p.contains(Path::new("/rx/y")));
    }

    const PIPELINE: &str = "pipeline \"t\" {\n    include \"../../outside/frag.kdl\"\n    source \"tiny.iso\"\n    disk size=\"1GiB\"\n    install \"preseed\" file=\"/etc/kiln-answer.cfg\"\n}\n";

    fn files() -> MemoryFs {
        let mut fs = MemoryFs::new();
        fs.insert("/p/pipelines/a.kdl", PIPELINE)
            .insert("/p/pipelines/tiny.iso", "iso")
            .insert("/etc/kiln-answer.cfg", "d-i")
            // Not KDL: a parse error would quote it.
            .insert("/outside/frag.kdl", "TOPSECRET=hunter2 {{{");
        fs
    }

    // `include "../../x"` and absolute paths must not pull files from outside the project into
    // a build, and an outside file's text must never be quoted by a diagnostic.
    #[test]
    fn paths_outside_the_project_are_errors_and_outside_includes_are_not_read() {
        let fs = files();
        let options = crate::LoadOptions {
            project: Some(Project::at("/p")),
            ..Default::default()
        };
        let ws = crate::load(&["/p/pipelines".into()], &options, &fs);
        let outside: Vec<&str> = ws
            .diagnostics
            .iter()
            .filter(|d| d.code == "outside-project")
            .map(|d| d.message.as_str())
            .collect();
        assert_eq!(
            outside,
            [
                "`../../outside/frag.kdl` is outside the project `/p`",
                "`/etc/kiln-answer.cfg` is outside the project `/p`"
            ]
        );
        let shown = ws.render(false);
        assert!(shown.contains("a.kdl:2:13"), "{shown}");
        assert!(shown.contains("--allow-outside-project"), "{shown}");
        assert!(!shown.contains("TOPSECRET"), "{shown}");
        assert!(
            ws.sources.find(Path::new("/outside/frag.kdl")).is_none(),
            "read"
        );
        // Allowed (no project): the include is read, and its parse error is reported.
        let ws = crate::load(
            &["/p/pipelines".into()],
            &crate::LoadOptions::default(),
            &fs,
        );
        assert!(ws.diagnostics.iter().all(|d| d.code != "outside-project"));
        assert!(ws.sources.find(Path::new("/outside/frag.kdl")).is_some());
    }
}
