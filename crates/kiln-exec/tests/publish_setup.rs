//! `build()` with publish steps, up to the point where it would start work: no cloud configured
//! fails before any step runs (nothing in the run folder, no guest), `publish_only` refuses images
//! that are not built and selections without a `publish` node, and `publish = None` leaves publish
//! steps out. No libvirt or Glance is needed: each case stops before either would be used.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use kiln_exec::build::{BuildError, BuildOptions, MemoDigests, PlainSink, build};
use kiln_exec::runners::publish::PublishSettings;
use kiln_glance::{ConfigSources, NamePolicy};
use kiln_plan::{Plan, PlanOptions, StepKind, ToolVersions};

fn plan(dir: &Path, publish: bool) -> Plan {
    std::fs::write(dir.join("tiny.iso"), b"not really an ISO").unwrap();
    let publish = if publish {
        r#"    publish glance name="tiny-{version}" {
        property os_type="linux"
    }
"#
    } else {
        ""
    };
    let file = dir.join("tiny.kdl");
    std::fs::write(
        &file,
        format!(
            r#"pipeline "tiny" {{
    variables {{ version "1" }}
    source "tiny.iso"
    disk size="1GiB"
    install "none" timeout="60s"
    output format="qcow2"
{publish}}}
"#
        ),
    )
    .unwrap();
    let ws = kiln_syntax::load(
        &[file],
        &kiln_syntax::LoadOptions::default(),
        &kiln_syntax::RealFs,
    );
    assert!(ws.is_ok(), "{}", ws.render(false));
    let digests = MemoDigests::new(&kiln_cache::CacheRoot::new(dir.join("cache")));
    let options = PlanOptions {
        tools: ToolVersions::fixed("test"),
        ..PlanOptions::default()
    };
    kiln_plan::plan(&ws.pipelines, &options, &digests).expect("plan")
}

/// Settings that see no clouds.yaml and no `OS_*` variables.
fn no_cloud(dir: &Path) -> PublishSettings {
    PublishSettings {
        sources: ConfigSources {
            cwd: dir.join("no-cwd"),
            home: None,
            site_dir: dir.join("no-etc"),
            env: BTreeMap::new(),
        },
        os_cloud: None,
        force: false,
        name_policy: NamePolicy::SameName,
        upload_method: kiln_glance::UploadMethod::Auto,
    }
}

fn options(dir: &Path) -> BuildOptions {
    let mut o = BuildOptions::new(dir.join("cache"));
    o.sink = Arc::new(PlainSink);
    o.publish = Some(no_cloud(dir));
    o
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn publish_without_a_cloud_fails_before_any_step() {
    let dir = tempfile::tempdir().unwrap();
    let plan = plan(dir.path(), true);
    let publish = plan
        .steps()
        .find(|s| s.kind() == StepKind::Publish)
        .expect("a publish step");
    assert_eq!(publish.id.as_str(), "tiny/publish");
    let kiln_plan::StepParams::Publish(p) = &publish.params else {
        panic!("not publish params");
    };
    assert_eq!(p.name, "tiny-1", "the name is rendered with the variable");

    let err = build(&plan, &options(dir.path())).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BuildError::Publish { .. }), "{msg}");
    assert!(msg.contains("publish step `tiny/publish`"), "{msg}");
    assert!(msg.contains("no cloud selected"), "{msg}");
    assert!(msg.contains("--no-publish"), "{msg}");
    // Nothing ran: no step log, no artifact.
    let files = files_under(&dir.path().join("cache"));
    assert!(
        !files
            .iter()
            .any(|f| f.extension().is_some_and(|e| e == "log")),
        "{files:?}"
    );
    assert!(files_under(&dir.path().join("cache/artifacts-v1")).is_empty());

    // A named cloud that no clouds.yaml defines: the error names it.
    let mut opts = options(dir.path());
    opts.publish.as_mut().unwrap().os_cloud = Some("prod".into());
    let msg = build(&plan, &opts).unwrap_err().to_string();
    assert!(msg.contains("cloud `prod`"), "{msg}");
}

#[test]
fn publish_only_refuses_what_is_not_built_or_not_published() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = options(dir.path());
    opts.publish_only = true;

    let err = build(&plan(dir.path(), true), &opts).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, BuildError::NotBuilt(_)), "{msg}");
    assert!(
        msg.contains("`tiny` has no cached `convert` step (tiny/convert)"),
        "{msg}"
    );
    assert!(msg.contains("help: build first"), "{msg}");

    let err = build(&plan(dir.path(), false), &opts).unwrap_err();
    assert!(matches!(err, BuildError::NothingToPublish(_)), "{err}");

    opts.publish = None;
    let err = build(&plan(dir.path(), true), &opts).unwrap_err();
    assert!(
        err.to_string().contains("publishing is turned off"),
        "{err}"
    );
}
