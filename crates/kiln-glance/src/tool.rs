//! The `kiln-glance` plumbing binary: `publish FILE …` and `download ID DEST`, printing one JSON
//! object on stdout. Exit codes: [`EXIT_OK`], [`EXIT_FAILED`], [`EXIT_USAGE`] (clap),
//! [`EXIT_CANCELLED`].

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;

use crate::cancel::Cancel;
use crate::config::{ConfigSources, load};
use crate::error::Error;
use crate::glance::{Glance, ImageSpec, Visibility};
use crate::keystone::Session;
use crate::publish::{Action, NamePolicy, PublishRequest, UploadMethod, publish};
use kiln_cache::hash::{Algo, Digests};

pub const EXIT_OK: u8 = 0;
pub const EXIT_FAILED: u8 = 1;
pub const EXIT_USAGE: u8 = 2;
pub const EXIT_CANCELLED: u8 = 130;

#[derive(Debug, Parser)]
#[command(
    name = "kiln-glance",
    version,
    about = "Publish to / download from Glance, verified"
)]
struct Cli {
    /// Cloud in clouds.yaml (else `OS_CLOUD`, else the `OS_*` variables).
    #[arg(long, global = true, env = "OS_CLOUD")]
    os_cloud: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Upload FILE as an image (or reuse an identical one), verified with md5 + sha512.
    Publish(PublishArgs),
    /// Download image ID to DEST, verified against Glance's checksum and os_hash_value.
    Download { id: String, dest: PathBuf },
}

/// The image attributes of `publish`; `kiln publish` has the same flags.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    pub file: PathBuf,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub disk_format: String,
    #[arg(long, default_value = "bare")]
    pub container_format: String,
    #[arg(long)]
    pub visibility: Option<Visibility>,
    #[arg(long)]
    pub min_disk: Option<u64>,
    #[arg(long)]
    pub min_ram: Option<u64>,
    /// `KEY=VALUE`, repeatable.
    #[arg(long = "property", value_parser = parse_property)]
    pub properties: Vec<(String, String)>,
    /// Repeatable.
    #[arg(long = "tag")]
    pub tags: Vec<String>,
    #[arg(long)]
    pub protected: bool,
    /// Upload even when an image with the same data (and name) exists.
    #[arg(long)]
    pub force: bool,
    /// Reuse an image with the same data whatever its name.
    #[arg(long)]
    pub reuse_any_name: bool,
    /// How the data reaches Glance: `put` (`PUT …/file`), `glance-direct` (the interoperable
    /// import: stage, import, wait), or `auto`: `put`, and the import when Glance forbids `put`.
    #[arg(long, default_value = "auto")]
    pub upload_method: UploadMethod,
    /// The file's expected md5 (hex), e.g. from a vendor's checksum list; needs `--sha512`. The file is
    /// then not hashed here: the dedup lookup uses it, and Glance's `checksum` must equal it.
    #[arg(long, value_parser = hex_digest::<32>, requires = "sha512")]
    pub md5: Option<String>,
    /// The file's expected sha512 (hex); needs `--md5`. Glance's `os_hash_value` must equal it.
    #[arg(long, value_parser = hex_digest::<128>, requires = "md5")]
    pub sha512: Option<String>,
}

fn hex_digest<const LEN: usize>(s: &str) -> Result<String, String> {
    if s.len() == LEN && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!("`{s}` is not {LEN} hex digits"))
    }
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))
}

impl PublishArgs {
    /// The digests given with `--md5` and `--sha512`.
    pub fn known(&self) -> Option<Digests> {
        let (md5, sha512) = (self.md5.clone()?, self.sha512.clone()?);
        let mut d = Digests::default();
        d.set(Algo::Md5, md5);
        d.set(Algo::Sha512, sha512);
        Some(d)
    }

    pub fn spec(&self) -> ImageSpec {
        ImageSpec {
            name: self.name.clone(),
            disk_format: self.disk_format.clone(),
            container_format: self.container_format.clone(),
            visibility: self.visibility,
            min_disk: self.min_disk,
            min_ram: self.min_ram,
            protected: self.protected,
            properties: self.properties.iter().cloned().collect::<BTreeMap<_, _>>(),
            tags: self.tags.iter().cloned().collect::<BTreeSet<_>>(),
        }
    }
}

impl clap::ValueEnum for UploadMethod {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            UploadMethod::Auto,
            UploadMethod::Put,
            UploadMethod::GlanceDirect,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

impl clap::ValueEnum for Visibility {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Visibility::Public,
            Visibility::Private,
            Visibility::Shared,
            Visibility::Community,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Connects to the cloud named by `os_cloud` (or the environment).
pub fn connect(os_cloud: Option<&str>) -> Result<Glance, Error> {
    let cloud = load(&ConfigSources::from_process(), os_cloud)?;
    Glance::connect(Arc::new(Session::new(cloud)?))
}

/// Runs `publish` for `args` with the given cancellation flag; the JSON it prints.
pub fn run_publish(
    glance: &Glance,
    args: &PublishArgs,
    cancel: Cancel,
) -> Result<serde_json::Value, Error> {
    let out = publish(
        glance,
        &PublishRequest {
            path: &args.file,
            spec: args.spec(),
            known: args.known(),
            force: args.force,
            method: args.upload_method,
            name_policy: if args.reuse_any_name {
                NamePolicy::AnyName
            } else {
                NamePolicy::SameName
            },
            cancel,
            progress: None,
        },
    )?;
    Ok(json!({
        "id": out.image.id,
        "name": out.image.name,
        "action": match out.action { Action::Uploaded => "uploaded", Action::Reused => "reused" },
        "size": out.size,
        "checksum": out.image.checksum,
        "os_hash_algo": out.image.os_hash_algo,
        "os_hash_value": out.image.os_hash_value,
        "properties": out.image.properties(),
        "tags": out.image.tags,
        "removed_stale": out.removed_stale,
        "upload_seconds": out.upload_time.map(|d| d.as_secs_f64()),
    }))
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    let result = Cancel::on_signals()
        .map_err(|source| Error::Io {
            path: PathBuf::from("<signal handler>"),
            action: "install",
            source,
        })
        .and_then(|cancel| {
            let glance = connect(cli.os_cloud.as_deref())?;
            match &cli.command {
                Command::Publish(args) => run_publish(&glance, args, cancel),
                Command::Download { id, dest } => {
                    let d = crate::download::download(&glance, id, dest, &cancel)?;
                    Ok(json!({
                        "id": d.image.id, "size": d.size, "path": dest,
                        "md5": d.digests.md5, "sha512": d.digests.sha512,
                    }))
                }
            }
        });
    match result {
        Ok(v) => {
            println!("{v}");
            ExitCode::from(EXIT_OK)
        }
        Err(e) => {
            eprintln!("kiln-glance: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                eprintln!("  caused by: {s}");
                source = s.source();
            }
            ExitCode::from(if e.is_cancelled() {
                EXIT_CANCELLED
            } else {
                EXIT_FAILED
            })
        }
    }
}
