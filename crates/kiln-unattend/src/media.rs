//! The answer media: every file kiln puts on the medium Windows Setup reads `autounattend.xml`
//! from, and the one file the executor must add itself (the fetched, checksummed cloudbase-init
//! MSI). Also the languages a Windows ISO carries, read from its directory tree.
//!
//! Layout (paths `/`-separated, relative to the medium's root):
//! ```text
//! autounattend.xml                        Setup finds it at the root of any removable drive
//! kiln/kiln-media.txt                     marker the first-logon commands search drives for
//! kiln/sysprep-unattend.xml               answer file for sysprep (cloudbase-init's Unattend.xml)
//! kiln/cloudbase-init/cloudbase-init.conf
//! kiln/cloudbase-init/cloudbase-init-unattend.conf
//! kiln/CloudbaseInitSetup.msi             added by the executor (see `AnswerMedia::msi_path`)
//! ```

use crate::autounattend::render_autounattend;
use crate::cloudbase::{
    render_cloudbase_conf, render_cloudbase_unattend_conf, render_sysprep_unattend,
};
use crate::error::RenderError;
use crate::firstlogon::{
    CLEAR_AUTOLOGON_PS1, CLEAR_AUTOLOGON_SCRIPT, CLOUDBASE_MSI, SYSPREP_UNATTEND,
};
use crate::iso9660::IsoTree;
use crate::model::{LanguageTag, WindowsImage};
use crate::secret::SecretSource;

/// One file of the answer media.
#[derive(Clone, PartialEq, Eq)]
pub struct MediaFile {
    pub path: String,
    pub contents: Vec<u8>,
    /// True when the contents hold secret values: write it `0600`, never cache it, delete it after
    /// the install. False for every file of a placeholder render.
    pub secret: bool,
}

impl std::fmt::Debug for MediaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("MediaFile");
        d.field("path", &self.path).field("secret", &self.secret);
        if self.secret {
            d.field(
                "contents",
                &format_args!("<{} bytes, redacted>", self.contents.len()),
            );
        } else {
            d.field("contents", &String::from_utf8_lossy(&self.contents));
        }
        d.finish()
    }
}

/// Everything for the answer media of one image.
#[derive(Clone, Debug)]
pub struct AnswerMedia {
    pub files: Vec<MediaFile>,
    /// Where the executor must place cloudbase-init's MSI, if the image uses cloudbase-init.
    pub msi_path: Option<String>,
}

/// The contents of the marker file.
const MARKER: &str = "kiln answer media\r\n";

/// Renders every file of the answer media.
pub fn answer_media(
    image: &WindowsImage,
    secrets: SecretSource<'_>,
) -> Result<AnswerMedia, RenderError> {
    let secret = matches!(secrets, SecretSource::Values(_));
    let mut files = vec![
        MediaFile {
            path: "autounattend.xml".to_owned(),
            contents: render_autounattend(image, secrets)?.into_bytes(),
            secret,
        },
        MediaFile {
            path: "kiln/kiln-media.txt".to_owned(),
            contents: MARKER.as_bytes().to_vec(),
            secret: false,
        },
        MediaFile {
            path: format!("kiln/{SYSPREP_UNATTEND}"),
            contents: render_sysprep_unattend(image)?.into_bytes(),
            secret: false,
        },
        MediaFile {
            path: format!("kiln/{CLEAR_AUTOLOGON_SCRIPT}"),
            // CRLF, as Windows PowerShell expects of a script file.
            contents: CLEAR_AUTOLOGON_PS1.replace('\n', "\r\n").into_bytes(),
            secret: false,
        },
    ];
    if let Some(conf) = render_cloudbase_conf(image)? {
        files.push(MediaFile {
            path: "kiln/cloudbase-init/cloudbase-init.conf".to_owned(),
            contents: conf.into_bytes(),
            secret: false,
        });
    }
    if let Some(conf) = render_cloudbase_unattend_conf(image)? {
        files.push(MediaFile {
            path: "kiln/cloudbase-init/cloudbase-init-unattend.conf".to_owned(),
            contents: conf.into_bytes(),
            secret: false,
        });
    }
    Ok(AnswerMedia {
        files,
        msi_path: image
            .cloudbase_init
            .as_ref()
            .map(|_| format!("kiln/{CLOUDBASE_MSI}")),
    })
}

/// The Setup languages a Windows ISO carries: the `sources/<tag>/` folders (`sources/en-us`).
/// A language not listed must come from a language pack.
pub fn installer_languages(tree: &IsoTree) -> Vec<LanguageTag> {
    let mut langs: Vec<LanguageTag> = tree
        .children("sources")
        .filter(|e| e.is_dir && e.name().contains('-'))
        .filter_map(|e| e.name().parse().ok())
        .collect();
    langs.sort();
    langs.dedup();
    langs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn installer_languages_come_from_sources_subfolders() {
        let tree = IsoTree::from_entries([
            ("sources/en-us/setup.exe.mui", false),
            ("sources/de-de", true),
            ("sources/sxs", true),
            ("sources/install.wim", false),
        ]);
        let langs: Vec<String> = installer_languages(&tree)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(langs, ["de-DE", "en-US"]);
    }
}
