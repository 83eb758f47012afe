//! `publish`: uploads the converted image to Glance with kiln-glance — the image spec of the
//! pipeline's `publish` node (name, formats, visibility, `min_disk`/`min_ram`, properties, tags,
//! `protected`), the digests the artifact store recorded for the file (so it is read once, by the
//! upload itself), dedup by `os_hash_value` unless forced, and the half-made image deleted on any
//! failure or Ctrl-C.
//!
//! A publish step is never cached by kiln: Glance is the record of what was published. A rerun
//! publishes again and finds the identical image there (`reused`), so an image deleted from the
//! cloud is uploaded again instead of being trusted to exist.
//!
//! Credentials never enter a step: the cloud is the step's `cloud=` when the pipeline names one,
//! else `--os-cloud`, else `OS_CLOUD`, else the `OS_*` variables (kiln-glance's configuration).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kiln_cache::hash::{Algo, Digests};
use kiln_glance::{
    Action, Cancel, ConfigSources, Glance, ImageSpec, NamePolicy, PublishRequest, Session,
    UploadMethod, UploadProgress,
};
use kiln_plan::step::PublishParams;
use kiln_plan::{Step, StepParams};
use serde::Serialize;

use super::{RunError, StepCx, fail};
use crate::runners::fetch::chain;

/// How publish steps (and Glance sources) reach their cloud.
#[derive(Clone, Debug)]
pub struct PublishSettings {
    /// Where `clouds.yaml`, `secure.yaml` and `OS_*` come from.
    pub sources: ConfigSources,
    /// `--os-cloud`: the cloud of publish steps without `cloud=` and of Glance sources; `None`
    /// leaves the choice to `OS_CLOUD` or the `OS_*` variables.
    pub os_cloud: Option<String>,
    /// Upload even when an identical image exists (`--force`).
    pub force: bool,
    /// Which identical image may be reused.
    pub name_policy: NamePolicy,
    /// How the data reaches Glance (`--upload-method`).
    pub upload_method: UploadMethod,
}

impl PublishSettings {
    /// The process's configuration (current directory, `$HOME`, `/etc/openstack`, environment),
    /// no `--os-cloud`, dedup on.
    #[must_use]
    pub fn from_process() -> Self {
        Self {
            sources: ConfigSources::from_process(),
            os_cloud: None,
            force: false,
            name_policy: NamePolicy::SameName,
            upload_method: UploadMethod::Auto,
        }
    }
}

/// Connections to the clouds of a run, one per cloud name, authenticated once and shared by
/// every step (kiln-glance reuses the token and refreshes it on expiry).
#[derive(Debug)]
pub struct Clouds {
    settings: PublishSettings,
    conns: Mutex<BTreeMap<Option<String>, Glance>>,
}

impl Clouds {
    /// No connection yet.
    #[must_use]
    pub fn new(settings: PublishSettings) -> Self {
        Self {
            settings,
            conns: Mutex::new(BTreeMap::new()),
        }
    }

    /// The settings.
    #[must_use]
    pub fn settings(&self) -> &PublishSettings {
        &self.settings
    }

    /// The cloud a publish step goes to: its `cloud=`, else `--os-cloud` (else the environment's).
    #[must_use]
    pub fn cloud_for(&self, params: &PublishParams) -> Option<String> {
        params
            .cloud
            .clone()
            .or_else(|| self.settings.os_cloud.clone())
    }

    /// The cloud Glance sources are read from: `--os-cloud` or the environment's.
    #[must_use]
    pub fn default_cloud(&self) -> Option<String> {
        self.settings.os_cloud.clone()
    }

    /// A connection to `cloud` (`None`: `OS_CLOUD` or `OS_*`), authenticating on first use.
    ///
    /// # Errors
    /// No configuration for it, or Keystone refused, or the catalog has no image endpoint; the
    /// message names the cloud and says how to configure one.
    pub fn connect(&self, cloud: Option<&str>) -> Result<Glance, String> {
        let key = cloud.map(str::to_owned);
        if let Some(g) = self.conns.lock().expect("lock").get(&key) {
            return Ok(g.clone());
        }
        let what = describe(cloud);
        let config = kiln_glance::config::load(&self.settings.sources, cloud)
            .map_err(|e| format!("{what}: {}", chain(&e)))?;
        let session = Session::new(config).map_err(|e| format!("{what}: {}", chain(&e)))?;
        let glance =
            Glance::connect(Arc::new(session)).map_err(|e| format!("{what}: {}", chain(&e)))?;
        self.conns.lock().expect("lock").insert(key, glance.clone());
        Ok(glance)
    }
}

/// `cloud `x`` or what the environment selects.
fn describe(cloud: Option<&str>) -> String {
    match cloud {
        Some(c) => format!("cloud `{c}`"),
        None => "the cloud of `OS_CLOUD` / `OS_*`".to_owned(),
    }
}

/// The help line of every "no cloud" error.
pub const CLOUD_HELP: &str = "check the cloud's settings (`--os-cloud NAME` or `OS_CLOUD` with \
     clouds.yaml + secure.yaml, or `OS_AUTH_URL` and friends), or build without publishing: \
     `--no-publish`";

/// What a publish step did: the image as Glance holds it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Published {
    /// The step id.
    pub step: String,
    /// The image (cell) it publishes.
    pub image: String,
    /// The cloud name (`None`: from the environment).
    pub cloud: Option<String>,
    /// Glance image name.
    pub name: String,
    /// Glance image id.
    pub id: String,
    /// `created` (uploaded now) or `reused` (an identical image was there).
    pub action: &'static str,
    /// Bytes.
    pub size: u64,
    /// Glance's md5 `checksum` (equal to kiln's).
    pub checksum: Option<String>,
    /// Glance's `os_hash_algo`.
    pub os_hash_algo: Option<String>,
    /// Glance's `os_hash_value` (equal to kiln's sha512).
    pub os_hash_value: Option<String>,
    /// Disk format.
    pub disk_format: Option<String>,
    /// Visibility.
    pub visibility: Option<String>,
    /// Custom properties as Glance returned them.
    pub properties: BTreeMap<String, String>,
    /// Tags.
    pub tags: Vec<String>,
    /// Stale half-made images of dead kiln runs deleted first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub removed_stale: Vec<String>,
}

/// The Glance image spec of a publish step.
///
/// # Errors
/// A visibility kiln-glance does not know (the planner only produces known ones).
pub fn image_spec(p: &PublishParams) -> Result<ImageSpec, String> {
    let mut spec = ImageSpec::new(p.name.clone(), p.disk_format);
    spec.container_format = p.container_format.to_owned();
    spec.visibility = Some(p.visibility.parse()?);
    spec.min_disk = p.min_disk_gib;
    spec.min_ram = p.min_ram_mib;
    spec.protected = p.protected;
    spec.properties = p.properties.clone();
    spec.tags = p.tags.iter().cloned().collect();
    Ok(spec)
}

/// The publish params of `step`, or a failure.
pub(crate) fn params(step: &Step) -> Result<&PublishParams, RunError> {
    match &step.params {
        StepParams::Publish(p) => Ok(p),
        _ => fail(format!("step `{}` is not publish", step.id)),
    }
}

/// Publishes the step's `image` input. `known` are the digests the artifact store recorded for
/// it (md5 + sha512): with them nothing reads the file before the upload, and the upload checks
/// the bytes it sends against them.
pub(crate) fn run(
    cx: &StepCx<'_>,
    clouds: &Clouds,
    known: Option<Digests>,
) -> Result<Published, RunError> {
    let step = cx.step;
    let p = params(step)?;
    let path = cx.input("image")?;
    let spec = image_spec(p).or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    let cloud = clouds.cloud_for(p);
    let glance = clouds
        .connect(cloud.as_deref())
        .or_else(|e| fail(format!("step `{}`: {e}", step.id)))?;
    let known = known.filter(|d| d.get(Algo::Md5).is_some() && d.get(Algo::Sha512).is_some());
    cx.log.line(format_args!(
        "publishing `{}` as `{}` to {} ({}, {}; digests {})",
        path.display(),
        p.name,
        describe(cloud.as_deref()),
        p.disk_format,
        p.visibility,
        if known.is_some() {
            "from the cache"
        } else {
            "computed while uploading"
        }
    ));
    let req = PublishRequest {
        path,
        spec,
        known,
        force: clouds.settings.force,
        name_policy: clouds.settings.name_policy,
        method: clouds.settings.upload_method,
        cancel: Cancel::from_flag(cx.env.cancel.flag()),
        progress: Some({
            let progress = cx.progress();
            UploadProgress::new(move |sent, total| progress.update(sent, Some(total)))
        }),
    };
    let out = match kiln_glance::publish(&glance, &req) {
        Ok(out) => out,
        Err(e) if e.is_cancelled() => {
            cx.log
                .line("cancelled; the half-made image (if any) was deleted");
            return Err(RunError::Cancelled);
        }
        Err(e) => {
            return fail(format!(
                "step `{}`: publishing `{}` to {}: {}",
                step.id,
                p.name,
                describe(cloud.as_deref()),
                chain(&e)
            ));
        }
    };
    for id in &out.removed_stale {
        cx.log.line(format_args!(
            "deleted stale half-made image {id} of a dead kiln run"
        ));
    }
    let action = match out.action {
        Action::Uploaded => "created",
        Action::Reused => "reused",
    };
    cx.log.line(format_args!(
        "{action} glance image {} (`{}`), md5 {}, sha512 {}",
        out.image.id,
        p.name,
        out.image.checksum.as_deref().unwrap_or("-"),
        out.image.os_hash_value.as_deref().unwrap_or("-"),
    ));
    Ok(Published {
        step: step.id.to_string(),
        image: step
            .owners
            .first()
            .map_or_else(String::new, |o| o.image.clone()),
        cloud,
        name: p.name.clone(),
        id: out.image.id.clone(),
        action,
        size: out.size,
        checksum: out.image.checksum.clone(),
        os_hash_algo: out.image.os_hash_algo.clone(),
        os_hash_value: out.image.os_hash_value.clone(),
        disk_format: out.image.disk_format.clone(),
        visibility: out.image.visibility.clone(),
        properties: out.image.properties(),
        tags: out.image.tags.clone(),
        removed_stale: out.removed_stale,
    })
}

/// What publishing a built image would do, asked without uploading anything.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "would", rename_all = "kebab-case")]
pub enum Preview {
    /// An identical image exists and would be reused.
    Reuse {
        /// Its id.
        id: String,
    },
    /// A new image would be created.
    Create,
    /// The image is not built yet: it would be created after the build unless an identical one
    /// appears.
    CreateAfterBuild,
}

/// Looks for the image a publish of a file with `digests` would reuse (same rule as the
/// publish itself: active, same project, same sha512, md5 and disk format, same name unless
/// any name may be reused). `None` when forced.
///
/// # Errors
/// Glance could not be asked.
pub fn preview(
    glance: &Glance,
    settings: &PublishSettings,
    p: &PublishParams,
    digests: Option<&Digests>,
) -> Result<Preview, String> {
    let Some(digests) = digests else {
        return Ok(Preview::CreateAfterBuild);
    };
    let (Some(md5), Some(sha512)) = (digests.get(Algo::Md5), digests.get(Algo::Sha512)) else {
        return Ok(Preview::Create);
    };
    if settings.force {
        return Ok(Preview::Create);
    }
    let project = glance.session().token().map_err(|e| chain(&e))?.project_id;
    let mut filters = vec![("os_hash_value", sha512), ("status", "active")];
    if settings.name_policy == NamePolicy::SameName {
        filters.push(("name", p.name.as_str()));
    }
    let found = glance.list(&filters).map_err(|e| chain(&e))?;
    Ok(found
        .into_iter()
        .find(|i| {
            i.owner.is_some()
                && i.owner == project
                && i.checksum.as_deref() == Some(md5)
                && i.disk_format.as_deref() == Some(p.disk_format)
        })
        .map_or(Preview::Create, |i| Preview::Reuse { id: i.id }))
}

/// The published images as text: id, action, checksum, sha512 and properties of each.
#[must_use]
pub fn render_published(published: &[Published]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    if published.is_empty() {
        return out;
    }
    out.push_str("\nPublished to Glance:\n");
    for p in published {
        let _ = writeln!(
            out,
            "  {} → `{}` {} ({}{})",
            p.image,
            p.name,
            p.action,
            p.cloud.as_deref().map_or_else(
                || "cloud from OS_CLOUD / OS_*".to_owned(),
                |c| format!("cloud `{c}`")
            ),
            p.visibility
                .as_deref()
                .map_or_else(String::new, |v| format!(", {v}"))
        );
        let _ = writeln!(out, "    id             {}", p.id);
        let _ = writeln!(
            out,
            "    checksum       {}",
            p.checksum.as_deref().unwrap_or("-")
        );
        let _ = writeln!(
            out,
            "    os_hash_value  {}",
            p.os_hash_value.as_deref().unwrap_or("-")
        );
        if !p.properties.is_empty() {
            let props: Vec<String> = p
                .properties
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(out, "    properties     {}", props.join(" "));
        }
        if !p.tags.is_empty() {
            let _ = writeln!(out, "    tags           {}", p.tags.join(" "));
        }
    }
    out
}

/// A publish step as `kiln plan` shows it with a cloud configured.
#[derive(Clone, Debug, Serialize)]
pub struct PublishPlan {
    /// Step id.
    pub step: String,
    /// Glance image name.
    pub name: String,
    /// Cloud name (`None`: the environment's).
    pub cloud: Option<String>,
    /// What a publish would do, or why Glance could not be asked.
    #[serde(flatten)]
    pub outcome: PreviewOutcome,
}

/// [`Preview`] or an error.
#[derive(Clone, Debug, Serialize)]
#[serde(untagged)]
pub enum PreviewOutcome {
    /// Glance answered.
    Known(Preview),
    /// It could not be asked.
    Error {
        /// Why.
        error: String,
    },
}

/// What each publish step of `plan` would do, asking Glance (read-only) with the artifact
/// store's digests of the images that are built.
#[must_use]
pub fn preview_plan(
    plan: &kiln_plan::Plan,
    store: &kiln_cache::ArtifactStore,
    settings: &PublishSettings,
) -> Vec<PublishPlan> {
    let clouds = Clouds::new(settings.clone());
    let mut out = Vec::new();
    for step in plan.steps() {
        let StepParams::Publish(p) = &step.params else {
            continue;
        };
        let digests = step
            .inputs
            .iter()
            .find(|i| i.role == "image")
            .and_then(|i| plan.step(i.step.as_str()))
            .and_then(|dep| {
                let a = store
                    .peek(&kiln_cache::ArtifactKey::from_bytes(*dep.key.as_bytes()))
                    .ok()??;
                let name = super::output_file(a.record.outputs.keys(), "image")?;
                Some(a.record.outputs[name].digests.clone())
            });
        let cloud = clouds.cloud_for(p);
        let outcome = clouds
            .connect(cloud.as_deref())
            .and_then(|g| preview(&g, settings, p, digests.as_ref()))
            .map_or_else(
                |error| PreviewOutcome::Error { error },
                PreviewOutcome::Known,
            );
        out.push(PublishPlan {
            step: step.id.to_string(),
            name: p.name.clone(),
            cloud,
            outcome,
        });
    }
    out
}

/// [`preview_plan`]'s result as text lines.
#[must_use]
pub fn render_preview(plans: &[PublishPlan]) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    for p in plans {
        let cloud = describe(p.cloud.as_deref());
        let what = match &p.outcome {
            PreviewOutcome::Known(Preview::Reuse { id }) => format!("would reuse image {id}"),
            PreviewOutcome::Known(Preview::Create) => "would create a new image".to_owned(),
            PreviewOutcome::Known(Preview::CreateAfterBuild) => {
                "would create a new image once built (not built yet)".to_owned()
            }
            PreviewOutcome::Error { error } => format!("cannot tell: {error}"),
        };
        let _ = writeln!(out, "publish {} → `{}` on {cloud}: {what}", p.step, p.name);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> PublishParams {
        PublishParams {
            target: "glance",
            cloud: None,
            name: "debian-12".into(),
            disk_format: "qcow2",
            container_format: "bare",
            visibility: "private",
            min_disk_gib: Some(2),
            min_ram_mib: Some(512),
            protected: true,
            properties: BTreeMap::from([("os_distro".into(), "debian".into())]),
            tags: vec!["kiln".into(), "nightly".into()],
        }
    }

    #[test]
    fn image_spec_carries_every_publish_attribute() {
        let spec = image_spec(&params()).unwrap();
        assert_eq!(spec.name, "debian-12");
        assert_eq!(spec.disk_format, "qcow2");
        assert_eq!(spec.container_format, "bare");
        assert_eq!(spec.visibility.map(|v| v.as_str()), Some("private"));
        assert_eq!((spec.min_disk, spec.min_ram), (Some(2), Some(512)));
        assert!(spec.protected);
        assert_eq!(spec.properties["os_distro"], "debian");
        assert_eq!(spec.tags.len(), 2);
    }

    #[test]
    fn the_pipeline_cloud_wins_over_os_cloud() {
        let mut settings = PublishSettings::from_process();
        settings.os_cloud = Some("cli".into());
        let clouds = Clouds::new(settings);
        let mut p = params();
        assert_eq!(clouds.cloud_for(&p).as_deref(), Some("cli"));
        p.cloud = Some("prod".into());
        assert_eq!(clouds.cloud_for(&p).as_deref(), Some("prod"));
    }

    #[test]
    fn no_cloud_configured_is_a_clear_error() {
        let clouds = Clouds::new(PublishSettings {
            sources: ConfigSources {
                cwd: "/nonexistent-kiln-cwd".into(),
                home: None,
                site_dir: "/nonexistent-kiln-etc".into(),
                env: BTreeMap::new(),
            },
            os_cloud: None,
            force: false,
            name_policy: NamePolicy::SameName,
            upload_method: UploadMethod::Auto,
        });
        let err = clouds.connect(None).unwrap_err();
        assert!(err.contains("no cloud selected"), "{err}");
        let err = clouds.connect(Some("prod")).unwrap_err();
        assert!(err.contains("cloud `prod`"), "{err}");
    }
}
