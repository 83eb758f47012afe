//! The input types: one [`WindowsImage`] describes one cell of a Windows build matrix (one version,
//! architecture, edition and language). The planner maps the pipeline model onto these; this crate
//! never reads a pipeline file.
//!
//! Every string that ends up in an answer file is validated here ([`WindowsImage::validate`]), so
//! the renderers can assume well-formed input and report nothing but missing secrets.

use std::fmt;
use std::str::FromStr;

use crate::cloudbase::CloudbaseInit;
use crate::error::ModelError;
use crate::secret::SecretRef;
use crate::virtio::VirtioDriver;
use crate::xml::is_xml_char;

/// Windows releases kiln knows the virtio-win folder names for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WindowsVersion {
    Server2016,
    Server2019,
    Server2022,
    Server2025,
    Windows10,
    Windows11,
}

impl WindowsVersion {
    pub const ALL: [WindowsVersion; 6] = [
        Self::Server2016,
        Self::Server2019,
        Self::Server2022,
        Self::Server2025,
        Self::Windows10,
        Self::Windows11,
    ];

    /// The short name virtio-win uses for its folders (`2k22`, `w11`); also kiln's spelling.
    pub fn virtio_name(self) -> &'static str {
        match self {
            Self::Server2016 => "2k16",
            Self::Server2019 => "2k19",
            Self::Server2022 => "2k22",
            Self::Server2025 => "2k25",
            Self::Windows10 => "w10",
            Self::Windows11 => "w11",
        }
    }

    pub fn is_server(self) -> bool {
        matches!(
            self,
            Self::Server2016 | Self::Server2019 | Self::Server2022 | Self::Server2025
        )
    }

    /// Architectures Microsoft ships this release for (and virtio-win builds drivers for).
    pub fn arches(self) -> &'static [Arch] {
        match self {
            Self::Server2016 | Self::Server2019 | Self::Server2022 => &[Arch::Amd64],
            Self::Server2025 | Self::Windows11 => &[Arch::Amd64, Arch::Arm64],
            Self::Windows10 => &[Arch::Amd64, Arch::Arm64, Arch::X86],
        }
    }

    /// Windows 11 Setup refuses to install without UEFI Secure Boot and a TPM 2.0.
    pub fn needs_uefi_tpm(self) -> bool {
        matches!(self, Self::Windows11)
    }
}

impl fmt::Display for WindowsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.virtio_name())
    }
}

impl FromStr for WindowsVersion {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let v = match s.to_ascii_lowercase().as_str() {
            "2k16" | "server-2016" => Self::Server2016,
            "2k19" | "server-2019" => Self::Server2019,
            "2k22" | "server-2022" => Self::Server2022,
            "2k25" | "server-2025" => Self::Server2025,
            "w10" | "10" | "windows-10" => Self::Windows10,
            "w11" | "11" | "windows-11" => Self::Windows11,
            _ => {
                return Err(ModelError::UnknownVersion {
                    value: s.to_owned(),
                    expected:
                        "`server-2016`, `server-2019`, `server-2022`, `server-2025`, `10`, `11`"
                            .to_owned(),
                });
            }
        };
        Ok(v)
    }
}

/// A processor architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Arch {
    Amd64,
    Arm64,
    X86,
}

impl Arch {
    /// The `processorArchitecture` attribute of answer-file components.
    pub fn unattend_name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "arm64",
            Self::X86 => "x86",
        }
    }

    /// The folder name on the virtio-win ISO (`ARM64` is upper case there).
    pub fn virtio_name(self) -> &'static str {
        match self {
            Self::Amd64 => "amd64",
            Self::Arm64 => "ARM64",
            Self::X86 => "x86",
        }
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.unattend_name())
    }
}

impl FromStr for Arch {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "amd64" | "x86_64" | "x64" => Ok(Self::Amd64),
            "arm64" | "aarch64" => Ok(Self::Arm64),
            "x86" | "i386" | "i686" => Ok(Self::X86),
            _ => Err(ModelError::UnknownArch {
                value: s.to_owned(),
            }),
        }
    }
}

/// Which image of `install.wim` / `install.esd` to apply.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ImageSelector {
    /// `/IMAGE/NAME`, e.g. `Windows Server 2022 SERVERDATACENTER`; exact, as `dism /Get-WimInfo` prints it.
    Name(String),
    /// `/IMAGE/INDEX`, 1-based.
    Index(u32),
}

/// A BCP 47 language tag as Windows uses it: `en-US`, `de-DE`, `sr-Latn-RS`. Normalised case.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LanguageTag(String);

impl LanguageTag {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Letters and digits only, upper case: `DEDE` for `de-DE`; used in computer names.
    pub fn compact(&self) -> String {
        self.0
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .map(|c| c.to_ascii_uppercase())
            .collect()
    }
}

impl fmt::Display for LanguageTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for LanguageTag {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelError::LanguageTag {
            value: s.to_owned(),
        };
        let mut parts = s.split('-');
        let primary = parts.next().ok_or_else(err)?;
        if !(2..=3).contains(&primary.len()) || !primary.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(err());
        }
        let mut out = primary.to_ascii_lowercase();
        let mut count = 0;
        for part in parts {
            count += 1;
            if count > 3 || part.is_empty() || part.len() > 8 {
                return Err(err());
            }
            if !part.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(err());
            }
            out.push('-');
            match part.len() {
                // Region: `US`, `DE`.
                2 if part.chars().all(|c| c.is_ascii_alphabetic()) => {
                    out.push_str(&part.to_ascii_uppercase());
                }
                // Script: `Latn`, `Cyrl`, `Hans`.
                4 if part.chars().all(|c| c.is_ascii_alphabetic()) => {
                    let mut chars = part.chars();
                    let first = chars.next().map(|c| c.to_ascii_uppercase());
                    out.extend(first);
                    out.push_str(&chars.as_str().to_ascii_lowercase());
                }
                _ => out.push_str(part),
            }
        }
        Ok(Self(out))
    }
}

/// `InputLocale`: language tags or `LCID:KLID` keyboard ids, `;`-separated, first is the default.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct InputLocale(String);

impl InputLocale {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&LanguageTag> for InputLocale {
    fn from(tag: &LanguageTag) -> Self {
        Self(tag.0.clone())
    }
}

impl FromStr for InputLocale {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ModelError::InputLocale {
            value: s.to_owned(),
        };
        let mut out = Vec::new();
        for item in s.split(';') {
            if let Some((lcid, klid)) = item.split_once(':') {
                let hex =
                    |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
                if !hex(lcid, 4) || !hex(klid, 8) {
                    return Err(err());
                }
                out.push(item.to_ascii_uppercase());
            } else {
                out.push(item.parse::<LanguageTag>().map_err(|_| err())?.0);
            }
        }
        Ok(Self(out.join(";")))
    }
}

/// The locale settings, written identically to the windowsPE and oobeSystem passes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LocaleSettings {
    /// Language of Windows Setup itself (`SetupUILanguage/UILanguage`).
    pub setup_ui: LanguageTag,
    /// Display language of the installed system; must be on the ISO or installed as a language pack.
    pub ui: LanguageTag,
    pub input: InputLocale,
    /// Language for non-Unicode programs.
    pub system: LanguageTag,
    /// Formats: dates, numbers, currency.
    pub user: LanguageTag,
}

impl LocaleSettings {
    /// Every setting set to one language, the common case of a language matrix.
    pub fn uniform(tag: &LanguageTag) -> Self {
        Self {
            setup_ui: tag.clone(),
            ui: tag.clone(),
            input: InputLocale::from(tag),
            system: tag.clone(),
            user: tag.clone(),
        }
    }
}

/// Boot firmware of the install machine, which decides the partition layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Firmware {
    /// SeaBIOS: MBR with a System Reserved partition.
    Bios,
    /// OVMF: GPT with EFI system and MSR partitions.
    Uefi { secure_boot: bool },
}

/// Extra partitions besides the required ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct DiskLayout {
    /// A Windows RE partition of this many MiB, placed *before* the Windows partition so that C:
    /// stays last and cloudbase-init's ExtendVolumesPlugin can grow it to the flavor's disk size.
    pub recovery_mib: Option<u32>,
}

/// `ComputerName` during the build. The final name comes from cloudbase-init at first boot.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ComputerName {
    /// `*`: Windows picks a random name.
    Random,
    /// A pattern with `{lang}` (`DEDE`) and `{version}` (`2K22`) placeholders.
    Pattern(String),
}

impl ComputerName {
    /// The name written to the answer file; checked against NetBIOS rules.
    pub fn expand(
        &self,
        version: WindowsVersion,
        lang: &LanguageTag,
    ) -> Result<String, ModelError> {
        let pattern = match self {
            Self::Random => return Ok("*".to_owned()),
            Self::Pattern(p) => p,
        };
        let mut out = String::new();
        let mut rest = pattern.as_str();
        while let Some(start) = rest.find('{') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            let end = after.find('}').ok_or_else(|| ModelError::ComputerName {
                value: pattern.clone(),
                reason: "unclosed `{`",
            })?;
            match &after[..end] {
                "lang" => out.push_str(&lang.compact()),
                "version" => out.push_str(&version.virtio_name().to_ascii_uppercase()),
                other => {
                    return Err(ModelError::ComputerNamePlaceholder {
                        placeholder: other.to_owned(),
                    });
                }
            }
            rest = &after[end + 1..];
        }
        out.push_str(rest);
        let bad = |reason| ModelError::ComputerName {
            value: out.clone(),
            reason,
        };
        if out.is_empty() || out.len() > 15 {
            return Err(bad("must be 1 to 15 characters"));
        }
        if !out.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(bad("only letters, digits and `-` are allowed"));
        }
        if out.chars().all(|c| c.is_ascii_digit()) {
            return Err(bad("must not be only digits"));
        }
        Ok(out)
    }
}

/// A Windows time zone id (`tzutil /l`): `UTC`, `W. Europe Standard Time`, `Tokyo Standard Time`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimeZone(String);

impl TimeZone {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for TimeZone {
    type Err = ModelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| {
                c.is_ascii_alphanumeric() || matches!(c, ' ' | '.' | '-' | '+' | '(' | ')' | '_')
            });
        if ok {
            Ok(Self(s.to_owned()))
        } else {
            Err(ModelError::TimeZone {
                value: s.to_owned(),
            })
        }
    }
}

/// Where the virtio-win CD appears, and which drivers to take from it.
///
/// Answer files cannot search drive letters, so `DriverPaths` name the letter the drivers CD
/// gets in WinPE. With kiln's disk layout (installer CD first, drivers CD second, the target disk
/// without partitions) that is `E:`; `letters` can list more than one when media differ.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DriverMedia {
    pub letters: Vec<char>,
    /// Drivers loaded in WinPE (storage, network). Defaults: `viostor`, `vioscsi`, `NetKVM`.
    pub winpe: Vec<VirtioDriver>,
    /// Drivers added after install with `pnputil`. Default: every other driver virtio-win ships
    /// for the version and architecture.
    pub post_install: Vec<VirtioDriver>,
}

impl DriverMedia {
    /// Drive `E:` and every driver virtio-win ships for `version` on `arch`.
    pub fn defaults(version: WindowsVersion, arch: Arch) -> Self {
        let (winpe, post_install) = VirtioDriver::ALL
            .iter()
            .copied()
            .filter(|d| d.folder(version, arch).is_some())
            .partition(|d| d.needed_in_winpe());
        Self {
            letters: vec!['E'],
            winpe,
            post_install,
        }
    }
}

/// Guest software installed at first logon from the drivers CD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GuestTools {
    /// `pnputil /add-driver` for every post-install driver folder.
    pub drivers: bool,
    /// The qemu guest agent MSI from `guest-agent\` on the drivers CD.
    pub qemu_guest_agent: bool,
}

/// A command run at first logon, after kiln's own steps and before sysprep.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct FirstLogonCommand {
    pub command: String,
    pub description: String,
}

/// What happens to the built-in Administrator right before sysprep.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BuiltinAdmin {
    /// Disable it (found by its well-known SID, so its localized name does not matter): the
    /// build password then opens nothing in the published image. cloudbase-init creates the
    /// cloud user.
    Disable,
    /// Leave it enabled with the build password.
    Keep,
}

/// One Windows image: the input of every renderer in this crate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowsImage {
    pub version: WindowsVersion,
    pub arch: Arch,
    pub edition: ImageSelector,
    pub locale: LocaleSettings,
    pub firmware: Firmware,
    /// A TPM 2.0 is attached (swtpm).
    pub tpm: bool,
    pub disk: DiskLayout,
    pub computer_name: ComputerName,
    pub time_zone: TimeZone,
    /// The account Setup logs on with for the first-logon commands. The built-in account is
    /// `Administrator` on most language editions but localized on some (see docs/windows.md).
    pub autologon_user: String,
    pub admin_password: SecretRef,
    /// `None` for media that need no key (evaluation, volume media with KMS).
    pub product_key: Option<SecretRef>,
    pub drivers: DriverMedia,
    pub guest_tools: GuestTools,
    pub first_logon: Vec<FirstLogonCommand>,
    pub builtin_admin: BuiltinAdmin,
    /// `None`: no cloudbase-init, the image is sysprepped with no unattend of cloudbase's.
    pub cloudbase_init: Option<CloudbaseInit>,
}

impl WindowsImage {
    /// A complete description with kiln's defaults; callers override fields as needed.
    pub fn new(
        version: WindowsVersion,
        arch: Arch,
        edition: ImageSelector,
        language: &LanguageTag,
        firmware: Firmware,
        admin_password: SecretRef,
    ) -> Self {
        Self {
            version,
            arch,
            edition,
            locale: LocaleSettings::uniform(language),
            firmware,
            tpm: matches!(firmware, Firmware::Uefi { .. }),
            disk: DiskLayout::default(),
            computer_name: ComputerName::Random,
            time_zone: TimeZone("UTC".to_owned()),
            autologon_user: "Administrator".to_owned(),
            admin_password,
            product_key: None,
            drivers: DriverMedia::defaults(version, arch),
            guest_tools: GuestTools {
                drivers: true,
                qemu_guest_agent: arch != Arch::Arm64,
            },
            first_logon: Vec::new(),
            builtin_admin: BuiltinAdmin::Disable,
            cloudbase_init: Some(CloudbaseInit::default()),
        }
    }

    /// The same image in another language, every locale setting set to `tag`: one cell of a
    /// language matrix.
    pub fn with_language(&self, tag: &LanguageTag) -> Self {
        Self {
            locale: LocaleSettings::uniform(tag),
            ..self.clone()
        }
    }

    /// Every check that does not need a secret value. Returns all problems, not just the first.
    pub fn validate(&self) -> Vec<ModelError> {
        let mut errors = Vec::new();
        if !self.version.arches().contains(&self.arch) {
            errors.push(ModelError::UnsupportedArch {
                version: self.version.to_string(),
                arch: self.arch.to_string(),
            });
        }
        if self.version.needs_uefi_tpm()
            && !(matches!(self.firmware, Firmware::Uefi { secure_boot: true }) && self.tpm)
        {
            errors.push(ModelError::NeedsUefiTpm {
                version: self.version.to_string(),
            });
        }
        match &self.edition {
            ImageSelector::Index(0) => errors.push(ModelError::ImageIndexZero),
            ImageSelector::Index(_) => {}
            ImageSelector::Name(name) if name.trim().is_empty() => {
                errors.push(ModelError::ImageNameEmpty);
            }
            ImageSelector::Name(name) => push_err(&mut errors, check_text("edition", name, 256)),
        }
        if let Err(e) = self.computer_name.expand(self.version, &self.locale.ui) {
            errors.push(e);
        }
        if let Err(e) = check_user_name(&self.autologon_user) {
            errors.push(e);
        }
        for &letter in &self.drivers.letters {
            if !('C'..='Z').contains(&letter) {
                errors.push(ModelError::DriveLetter { value: letter });
            }
        }
        if self.drivers.letters.is_empty() {
            errors.push(ModelError::Empty {
                field: "drivers.letters",
            });
        }
        for driver in self.drivers.winpe.iter().chain(&self.drivers.post_install) {
            if driver.folder(self.version, self.arch).is_none() {
                errors.push(ModelError::DriverNotShipped {
                    driver: driver.to_string(),
                    version: self.version.to_string(),
                    arch: self.arch.to_string(),
                });
            }
        }
        if self.guest_tools.qemu_guest_agent && crate::virtio::guest_agent_msi(self.arch).is_none()
        {
            errors.push(ModelError::GuestAgentArch {
                arch: self.arch.to_string(),
            });
        }
        for cmd in &self.first_logon {
            push_err(
                &mut errors,
                check_text("first-logon command", &cmd.command, 1024),
            );
            push_err(
                &mut errors,
                check_one_line("first-logon command", &cmd.command),
            );
            push_err(
                &mut errors,
                check_text("first-logon description", &cmd.description, 256),
            );
            push_err(
                &mut errors,
                check_one_line("first-logon description", &cmd.description),
            );
            if cmd.command.trim().is_empty() {
                errors.push(ModelError::Empty {
                    field: "first-logon command",
                });
            }
        }
        if let Some(cb) = &self.cloudbase_init {
            errors.extend(cb.validate());
        }
        errors
    }

    /// The first error of [`WindowsImage::validate`], for renderers.
    pub(crate) fn check(&self) -> Result<(), ModelError> {
        match self.validate().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn push_err(errors: &mut Vec<ModelError>, result: Result<(), ModelError>) {
    if let Err(e) = result {
        errors.push(e);
    }
}

/// Rejects characters XML cannot carry and over-long values.
pub(crate) fn check_text(field: &'static str, value: &str, max: usize) -> Result<(), ModelError> {
    if value.chars().count() > max {
        return Err(ModelError::TooLong { field, max });
    }
    if !value.chars().all(is_xml_char)
        || value
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(ModelError::ControlCharacter { field });
    }
    Ok(())
}

/// Values of INI files and command lines must stay on one line.
pub(crate) fn check_one_line(field: &'static str, value: &str) -> Result<(), ModelError> {
    if value.contains(['\n', '\r']) {
        Err(ModelError::LineBreak { field })
    } else {
        Ok(())
    }
}

/// Windows local user names: at most 20 characters, no `"/\[]:;|=,+*?<>@`.
pub(crate) fn check_user_name(value: &str) -> Result<(), ModelError> {
    let ok = !value.is_empty()
        && value.chars().count() <= 20
        && !value
            .chars()
            .any(|c| c.is_control() || "\"/\\[]:;|=,+*?<>@%".contains(c))
        && value.trim() == value;
    if ok {
        Ok(())
    } else {
        Err(ModelError::UserName {
            value: value.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(s: &str) -> LanguageTag {
        s.parse().unwrap()
    }

    #[test]
    fn language_tags_are_normalised_and_checked() {
        assert_eq!(tag("EN-us").as_str(), "en-US");
        assert_eq!(tag("sr-latn-rs").as_str(), "sr-Latn-RS");
        assert_eq!(tag("ja-JP").compact(), "JAJP");
        for bad in ["", "e", "english", "en_US", "en-", "en-US-x-y-z", "en-Ü"] {
            assert!(bad.parse::<LanguageTag>().is_err(), "{bad}");
        }
    }

    #[test]
    fn input_locales_accept_tags_and_keyboard_ids() {
        let il: InputLocale = "de-DE;0409:00000409".parse().unwrap();
        assert_eq!(il.as_str(), "de-DE;0409:00000409");
        assert!("0409:0409".parse::<InputLocale>().is_err());
        assert!("de DE".parse::<InputLocale>().is_err());
    }

    #[test]
    fn computer_name_patterns_expand_and_obey_netbios_rules() {
        let p = ComputerName::Pattern("KILN-{version}-{lang}".into());
        assert_eq!(
            p.expand(WindowsVersion::Server2022, &tag("de-DE")).unwrap(),
            "KILN-2K22-DEDE"
        );
        let long = ComputerName::Pattern("WINDOWS-BUILD-{lang}".into());
        assert!(matches!(
            long.expand(WindowsVersion::Server2022, &tag("de-DE")),
            Err(ModelError::ComputerName { .. })
        ));
        let unknown = ComputerName::Pattern("K-{edition}".into());
        assert!(matches!(
            unknown.expand(WindowsVersion::Server2022, &tag("de-DE")),
            Err(ModelError::ComputerNamePlaceholder { .. })
        ));
        assert_eq!(
            ComputerName::Random
                .expand(WindowsVersion::Windows11, &tag("en-US"))
                .unwrap(),
            "*"
        );
    }

    #[test]
    fn validate_reports_every_problem_at_once() {
        let mut image = WindowsImage::new(
            WindowsVersion::Windows11,
            Arch::X86,
            ImageSelector::Index(0),
            &tag("en-US"),
            Firmware::Bios,
            SecretRef::new("pw").unwrap(),
        );
        image.autologon_user = "bad/name".into();
        let errors = image.validate();
        assert!(errors.contains(&ModelError::UnsupportedArch {
            version: "w11".into(),
            arch: "x86".into()
        }));
        assert!(errors.contains(&ModelError::NeedsUefiTpm {
            version: "w11".into()
        }));
        assert!(errors.contains(&ModelError::ImageIndexZero));
        assert!(
            errors
                .iter()
                .any(|e| matches!(e, ModelError::UserName { .. }))
        );
    }

    #[test]
    fn versions_parse_from_short_and_long_names() {
        assert_eq!(
            "2k22".parse::<WindowsVersion>().unwrap(),
            WindowsVersion::Server2022
        );
        assert_eq!(
            "windows-11".parse::<WindowsVersion>().unwrap(),
            WindowsVersion::Windows11
        );
        let err = "2012r2".parse::<WindowsVersion>().unwrap_err();
        assert!(err.to_string().contains("`2012r2`"), "{err}");
    }
}
