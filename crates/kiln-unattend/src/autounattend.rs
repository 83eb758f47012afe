//! `autounattend.xml`: the answer file Windows Setup finds at the root of the answer media.
//!
//! Passes, in the order Setup runs them:
//! - `windowsPE`: Setup's language, the virtio storage and network drivers (`DriverPaths`), the
//!   disk layout (MBR for BIOS, GPT for UEFI), which image of `install.wim`, EULA and product key.
//! - `specialize`: computer name, time zone, Remote Desktop on and allowed through the firewall
//!   (by the group's resource id, so it works on every language edition).
//! - `oobeSystem`: the locale again, the administrator password, OOBE screens hidden, one
//!   auto-logon, and the first-logon commands ([`crate::firstlogon`]) that install the guest
//!   tools and cloudbase-init, then run sysprep with cloudbase-init's answer file.

use crate::error::RenderError;
use crate::firstlogon::first_logon_commands;
use crate::model::{Firmware, ImageSelector, WindowsImage};
use crate::secret::{SecretRef, SecretSource};
use crate::xml::XmlWriter;

pub(crate) const NS_UNATTEND: &str = "urn:schemas-microsoft-com:unattend";
pub(crate) const NS_WCM: &str = "http://schemas.microsoft.com/WMIConfig/2002/State";
pub(crate) const NS_XSI: &str = "http://www.w3.org/2001/XMLSchema-instance";
/// Every Microsoft-Windows-* component is signed with this key.
pub(crate) const PUBLIC_KEY_TOKEN: &str = "31bf3856ad364e35";

/// The `Remote Desktop` firewall group as an indirect string: the group's display name is
/// translated (`Remotedesktop` in German), the resource id is not.
pub const REMOTE_DESKTOP_GROUP: &str = "@FirewallAPI.dll,-28752";

/// GPT type of a Windows RE partition.
const GPT_RECOVERY_TYPE: &str = "DE94BBA4-06D1-4D40-A16A-BFD50179D6AC";
/// MBR type of a Windows RE partition.
const MBR_RECOVERY_TYPE: &str = "0x27";

pub(crate) fn open_component(w: &mut XmlWriter, name: &str, arch: &str) {
    w.open(
        "component",
        &[
            ("name", name),
            ("processorArchitecture", arch),
            ("publicKeyToken", PUBLIC_KEY_TOKEN),
            ("language", "neutral"),
            ("versionScope", "nonSxS"),
            ("xmlns:wcm", NS_WCM),
            ("xmlns:xsi", NS_XSI),
        ],
    );
}

/// International-Core(-WinPE): the same five settings in windowsPE and oobeSystem.
pub(crate) fn international_core(w: &mut XmlWriter, image: &WindowsImage, winpe: bool) {
    let arch = image.arch.unattend_name();
    let locale = &image.locale;
    if winpe {
        open_component(w, "Microsoft-Windows-International-Core-WinPE", arch);
        w.open("SetupUILanguage", &[]);
        w.text("UILanguage", locale.setup_ui.as_str());
        w.close();
    } else {
        open_component(w, "Microsoft-Windows-International-Core", arch);
    }
    w.text("InputLocale", locale.input.as_str());
    w.text("SystemLocale", locale.system.as_str());
    w.text("UILanguage", locale.ui.as_str());
    w.text("UserLocale", locale.user.as_str());
    w.close();
}

/// Shell-Setup `OOBE`: no screen may wait for a human. `protect_your_pc`: 1 = recommended
/// settings (the published image, as cloudbase-init's own Unattend.xml), 3 = none (the build).
pub(crate) fn oobe_settings(w: &mut XmlWriter, protect_your_pc: u8) {
    w.open("OOBE", &[]);
    w.text("HideEULAPage", "true");
    w.text("HideLocalAccountScreen", "true");
    w.text("HideOEMRegistrationScreen", "true");
    w.text("HideOnlineAccountScreens", "true");
    w.text("HideWirelessSetupInOOBE", "true");
    w.text("NetworkLocation", "Work");
    w.text("ProtectYourPC", &protect_your_pc.to_string());
    w.text("SkipMachineOOBE", "true");
    w.text("SkipUserOOBE", "true");
    w.close();
}

/// The secret's value, its placeholder, or an error naming (never showing) it.
fn secret_text(
    source: SecretSource<'_>,
    name: &SecretRef,
    max: usize,
) -> Result<String, RenderError> {
    match source {
        SecretSource::Placeholders => Ok(name.placeholder()),
        SecretSource::Values(secrets) => {
            let value = secrets
                .get(name)
                .ok_or_else(|| RenderError::MissingSecret {
                    name: name.name().to_owned(),
                })?;
            let v = value.expose();
            let invalid = |reason| RenderError::InvalidSecret {
                name: name.name().to_owned(),
                reason,
            };
            if v.is_empty() {
                return Err(invalid("it is empty"));
            }
            if v.chars().count() > max {
                return Err(invalid("it is too long"));
            }
            if v.chars()
                .any(|c| c.is_control() || !crate::xml::is_xml_char(c))
            {
                return Err(invalid("it contains a control character"));
            }
            Ok(v.to_owned())
        }
    }
}

fn product_key_text(source: SecretSource<'_>, name: &SecretRef) -> Result<String, RenderError> {
    let key = secret_text(source, name, 29)?;
    if let SecretSource::Values(_) = source {
        let groups: Vec<&str> = key.split('-').collect();
        let ok = groups.len() == 5
            && groups
                .iter()
                .all(|g| g.len() == 5 && g.chars().all(|c| c.is_ascii_alphanumeric()));
        if !ok {
            return Err(RenderError::InvalidSecret {
                name: name.name().to_owned(),
                reason: "a product key has the form `XXXXX-XXXXX-XXXXX-XXXXX-XXXXX`",
            });
        }
    }
    Ok(key)
}

/// The `DriverPaths` entries: every WinPE driver folder under every configured drive letter.
pub fn driver_paths(image: &WindowsImage) -> Vec<String> {
    let mut paths = Vec::new();
    for &letter in &image.drivers.letters {
        for driver in &image.drivers.winpe {
            if let Some(folder) = driver.folder(image.version, image.arch) {
                paths.push(format!("{letter}:\\{}", folder.replace('/', "\\")));
            }
        }
    }
    paths
}

struct Partition {
    kind: &'static str,
    size_mib: Option<u32>,
    format: Option<&'static str>,
    label: Option<&'static str>,
    letter: Option<&'static str>,
    active: bool,
    type_id: Option<&'static str>,
}

/// The partitions, in order; Windows is always last so it can be extended in the cloud.
fn partitions(image: &WindowsImage) -> Vec<Partition> {
    let mut parts = Vec::new();
    let uefi = matches!(image.firmware, Firmware::Uefi { .. });
    if uefi {
        parts.push(Partition {
            kind: "EFI",
            size_mib: Some(260),
            format: Some("FAT32"),
            label: Some("System"),
            letter: None,
            active: false,
            type_id: None,
        });
        parts.push(Partition {
            kind: "MSR",
            size_mib: Some(16),
            format: None,
            label: None,
            letter: None,
            active: false,
            type_id: None,
        });
    } else {
        parts.push(Partition {
            kind: "Primary",
            size_mib: Some(500),
            format: Some("NTFS"),
            label: Some("System Reserved"),
            letter: None,
            active: true,
            type_id: None,
        });
    }
    if let Some(mib) = image.disk.recovery_mib {
        parts.push(Partition {
            kind: "Primary",
            size_mib: Some(mib),
            format: Some("NTFS"),
            label: Some("Recovery"),
            letter: None,
            active: false,
            type_id: Some(if uefi {
                GPT_RECOVERY_TYPE
            } else {
                MBR_RECOVERY_TYPE
            }),
        });
    }
    parts.push(Partition {
        kind: "Primary",
        size_mib: None,
        format: Some("NTFS"),
        label: Some("Windows"),
        letter: Some("C"),
        active: false,
        type_id: None,
    });
    parts
}

fn disk_configuration(w: &mut XmlWriter, image: &WindowsImage) -> usize {
    let parts = partitions(image);
    w.open("DiskConfiguration", &[]);
    w.open("Disk", &[("wcm:action", "add")]);
    w.text("DiskID", "0");
    w.text("WillWipeDisk", "true");
    w.open("CreatePartitions", &[]);
    for (i, p) in parts.iter().enumerate() {
        w.open("CreatePartition", &[("wcm:action", "add")]);
        w.text("Order", &(i + 1).to_string());
        w.text("Type", p.kind);
        match p.size_mib {
            Some(size) => w.text("Size", &size.to_string()),
            None => w.text("Extend", "true"),
        }
        w.close();
    }
    w.close();
    w.open("ModifyPartitions", &[]);
    let mut order = 0;
    for (i, p) in parts.iter().enumerate() {
        // The MSR carries no file system and needs no modification.
        let Some(format) = p.format else { continue };
        order += 1;
        w.open("ModifyPartition", &[("wcm:action", "add")]);
        w.text("Order", &order.to_string());
        w.text("PartitionID", &(i + 1).to_string());
        w.text("Format", format);
        if let Some(label) = p.label {
            w.text("Label", label);
        }
        if let Some(letter) = p.letter {
            w.text("Letter", letter);
        }
        if p.active {
            w.text("Active", "true");
        }
        if let Some(type_id) = p.type_id {
            w.text("TypeID", type_id);
        }
        w.close();
    }
    w.close();
    w.close();
    w.close();
    parts.len()
}

/// Renders `autounattend.xml`. With [`SecretSource::Placeholders`] the result holds no secret and
/// is what plans, step keys and snapshots see; with [`SecretSource::Values`] it is the file for the
/// answer media of one install.
pub fn render_autounattend(
    image: &WindowsImage,
    secrets: SecretSource<'_>,
) -> Result<String, RenderError> {
    image.check()?;
    let arch = image.arch.unattend_name();
    let password = secret_text(secrets, &image.admin_password, 127)?;
    let product_key = match &image.product_key {
        Some(name) => Some(product_key_text(secrets, name)?),
        None => None,
    };
    let computer_name = image
        .computer_name
        .expand(image.version, &image.locale.ui)?;

    let mut w = XmlWriter::new();
    w.open("unattend", &[("xmlns", NS_UNATTEND)]);

    // windowsPE
    w.open("settings", &[("pass", "windowsPE")]);
    international_core(&mut w, image, true);
    open_component(&mut w, "Microsoft-Windows-PnpCustomizationsWinPE", arch);
    w.open("DriverPaths", &[]);
    for (i, path) in driver_paths(image).iter().enumerate() {
        let key = (i + 1).to_string();
        w.open(
            "PathAndCredentials",
            &[("wcm:action", "add"), ("wcm:keyValue", key.as_str())],
        );
        w.text("Path", path);
        w.close();
    }
    w.close();
    w.close();
    open_component(&mut w, "Microsoft-Windows-Setup", arch);
    let windows_partition = disk_configuration(&mut w, image);
    w.open("ImageInstall", &[]);
    w.open("OSImage", &[]);
    w.open("InstallFrom", &[]);
    w.open("MetaData", &[("wcm:action", "add")]);
    match &image.edition {
        ImageSelector::Name(name) => {
            w.text("Key", "/IMAGE/NAME");
            w.text("Value", name);
        }
        ImageSelector::Index(index) => {
            w.text("Key", "/IMAGE/INDEX");
            w.text("Value", &index.to_string());
        }
    }
    w.close();
    w.close();
    w.open("InstallTo", &[]);
    w.text("DiskID", "0");
    w.text("PartitionID", &windows_partition.to_string());
    w.close();
    w.text("WillShowUI", "OnError");
    w.close();
    w.close();
    w.open("UserData", &[]);
    w.text("AcceptEula", "true");
    if let Some(key) = &product_key {
        w.open("ProductKey", &[]);
        w.text("Key", key);
        w.text("WillShowUI", "OnError");
        w.close();
    }
    w.close();
    w.close();
    w.close();

    // specialize
    w.open("settings", &[("pass", "specialize")]);
    open_component(&mut w, "Microsoft-Windows-Shell-Setup", arch);
    w.text("ComputerName", &computer_name);
    w.text("TimeZone", image.time_zone.as_str());
    w.close();
    open_component(
        &mut w,
        "Microsoft-Windows-TerminalServices-LocalSessionManager",
        arch,
    );
    w.text("fDenyTSConnections", "false");
    w.close();
    open_component(&mut w, "Networking-MPSSVC-Svc", arch);
    w.open("FirewallGroups", &[]);
    w.open(
        "FirewallGroup",
        &[("wcm:action", "add"), ("wcm:keyValue", "RemoteDesktop")],
    );
    w.text("Active", "true");
    w.text("Group", REMOTE_DESKTOP_GROUP);
    w.text("Profile", "all");
    w.close();
    w.close();
    w.close();
    w.close();

    // oobeSystem
    w.open("settings", &[("pass", "oobeSystem")]);
    international_core(&mut w, image, false);
    open_component(&mut w, "Microsoft-Windows-Shell-Setup", arch);
    w.open("AutoLogon", &[]);
    w.open("Password", &[]);
    w.text("Value", &password);
    w.text("PlainText", "true");
    w.close();
    w.text("Enabled", "true");
    w.text("LogonCount", "1");
    w.text("Username", &image.autologon_user);
    w.close();
    w.open("FirstLogonCommands", &[]);
    for (i, cmd) in first_logon_commands(image).iter().enumerate() {
        w.open("SynchronousCommand", &[("wcm:action", "add")]);
        w.text("Order", &(i + 1).to_string());
        w.text("CommandLine", &cmd.command);
        w.text("Description", &cmd.description);
        w.text("RequiresUserInput", "false");
        w.close();
    }
    w.close();
    oobe_settings(&mut w, 3);
    w.open("UserAccounts", &[]);
    w.open("AdministratorPassword", &[]);
    w.text("Value", &password);
    w.text("PlainText", "true");
    w.close();
    w.close();
    w.close();
    w.close();

    w.close();
    Ok(w.finish())
}
