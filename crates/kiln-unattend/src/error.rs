//! Error types of this crate: invalid image descriptions, failed renders, unreadable ISOs.
//!
//! Messages are lowercase with values in backticks. No message ever contains a secret value: secret
//! errors name the [`crate::SecretRef`] only.

use thiserror::Error;

/// An image description that cannot become a valid answer file.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum ModelError {
    #[error("unknown windows version `{value}`; expected one of {expected}")]
    UnknownVersion { value: String, expected: String },
    #[error("unknown architecture `{value}`; expected `amd64`, `arm64` or `x86`")]
    UnknownArch { value: String },
    #[error("windows `{version}` does not exist for `{arch}`")]
    UnsupportedArch { version: String, arch: String },
    #[error("`{value}` is not a language tag like `en-US`, `de-DE` or `sr-Latn-RS`")]
    LanguageTag { value: String },
    #[error(
        "`{value}` is not an input locale: use a language tag (`de-DE`) or `0407:00000407`, several separated by `;`"
    )]
    InputLocale { value: String },
    #[error("`{value}` is not a windows time zone id like `UTC` or `W. Europe Standard Time`")]
    TimeZone { value: String },
    #[error("computer name `{value}` is invalid: {reason}")]
    ComputerName { value: String, reason: &'static str },
    #[error(
        "unknown placeholder `{{{placeholder}}}` in computer name pattern; known: `{{lang}}`, `{{version}}`"
    )]
    ComputerNamePlaceholder { placeholder: String },
    #[error("image index must be 1 or more, got `0`")]
    ImageIndexZero,
    #[error("image name must not be empty")]
    ImageNameEmpty,
    #[error(
        "`{field}` contains a character that cannot be written to an answer file (control character)"
    )]
    ControlCharacter { field: &'static str },
    #[error("`{field}` is longer than {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("`{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("user name `{value}` is invalid: at most 20 characters, none of `\"/\\[]:;|=,+*?<>@`")]
    UserName { value: String },
    #[error("`{value}` is not a drive letter between `C` and `Z`")]
    DriveLetter { value: char },
    #[error("virtio-win ships no `{driver}` driver for `{version}` on `{arch}`")]
    DriverNotShipped {
        driver: String,
        version: String,
        arch: String,
    },
    #[error("virtio-win ships no qemu guest agent installer for `{arch}`")]
    GuestAgentArch { arch: String },
    #[error(
        "`{version}` needs UEFI firmware with Secure Boot and a TPM 2.0; set firmware to uefi with secure boot and enable the tpm"
    )]
    NeedsUefiTpm { version: String },
    #[error(
        "secret name `{name}` is invalid: use letters, digits, `-`, `_` and `.`, at most 64 characters"
    )]
    SecretName { name: String },
    #[error("`{field}` may not contain a line break")]
    LineBreak { field: &'static str },
    #[error("group name `{value}` is invalid: 1 to 256 characters, no `,` or `\"`")]
    GroupName { value: String },
    #[error(
        "serial port `{value}` is invalid: expected `COM1`…`COM9` at 9600, 19200, 38400, 57600 or 115200 baud"
    )]
    SerialPort { value: String },
    #[error("metadata url `{value}` is invalid: expected `http://…` or `https://…` without spaces")]
    MetadataUrl { value: String },
}

impl ModelError {
    /// The setting the error is about, in the pipeline's spelling, so the planner can put the
    /// diagnostic on the right node.
    pub fn field(&self) -> &'static str {
        match self {
            Self::UnknownVersion { .. } => "version",
            Self::UnknownArch { .. } | Self::UnsupportedArch { .. } => "arch",
            Self::LanguageTag { .. } => "language",
            Self::InputLocale { .. } => "input-locale",
            Self::TimeZone { .. } => "timezone",
            Self::ComputerName { .. } | Self::ComputerNamePlaceholder { .. } => "computer-name",
            Self::ImageIndexZero | Self::ImageNameEmpty => "image",
            Self::ControlCharacter { field }
            | Self::TooLong { field, .. }
            | Self::Empty { field }
            | Self::LineBreak { field } => field,
            Self::UserName { .. } => "user",
            Self::DriveLetter { .. } | Self::DriverNotShipped { .. } => "drivers",
            Self::GuestAgentArch { .. } => "guest-agent",
            Self::NeedsUefiTpm { .. } => "firmware",
            Self::SecretName { .. } => "secret",
            Self::GroupName { .. } | Self::SerialPort { .. } | Self::MetadataUrl { .. } => {
                "cloudbase-init"
            }
        }
    }
}

/// A render that cannot complete. Never carries a secret value.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum RenderError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(
        "secret `{name}` has no value; the executor must resolve it before writing the answer media"
    )]
    MissingSecret { name: String },
    #[error("the value of secret `{name}` is invalid: {reason}")]
    InvalidSecret { name: String, reason: &'static str },
}

/// An ISO 9660 image whose directory tree cannot be read.
#[derive(Debug, Error)]
pub enum IsoError {
    #[error("reading the iso failed")]
    Io(#[source] std::io::Error),
    #[error("not an iso 9660 image: no primary volume descriptor at sector 16")]
    NotIso,
    #[error("malformed iso 9660 image: {reason}")]
    Malformed { reason: String },
}
