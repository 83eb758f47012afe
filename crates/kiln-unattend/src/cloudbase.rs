//! cloudbase-init: its settings, and the three files kiln puts in its `conf` folder —
//! `cloudbase-init.conf` (the service, every boot), `cloudbase-init-unattend.conf` (run once from
//! the sysprep specialize pass: MTU, host name, volume extension) and `Unattend.xml` (the answer
//! file `sysprep /generalize /oobe` is given, which runs that once-only pass).
//!
//! Option names follow cloudbase-init's `cloudbaseinit/conf/*.py` (2026): config-drive options in
//! the `[config_drive]` group (`types`, `locations`), the metadata URL in `[openstack]`.

use crate::error::ModelError;
use crate::model::{WindowsImage, check_one_line, check_text, check_user_name};
use crate::xml::XmlWriter;

/// Where cloudbase-init's MSI installs itself.
pub const INSTALL_DIR: &str = r"C:\Program Files\Cloudbase Solutions\Cloudbase-Init";

/// A metadata service, tried in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetadataService {
    /// OpenStack's HTTP metadata service at `169.254.169.254`.
    OpenStackHttp,
    /// An OpenStack config drive (ISO or VFAT, CD or disk).
    ConfigDrive,
    Ec2,
    /// A NoCloud seed (`cidata`).
    NoCloud,
}

impl MetadataService {
    pub fn class_path(self) -> &'static str {
        match self {
            Self::OpenStackHttp => "cloudbaseinit.metadata.services.httpservice.HttpService",
            Self::ConfigDrive => "cloudbaseinit.metadata.services.configdrive.ConfigDriveService",
            Self::Ec2 => "cloudbaseinit.metadata.services.ec2service.EC2Service",
            Self::NoCloud => {
                "cloudbaseinit.metadata.services.nocloudservice.NoCloudConfigDriveService"
            }
        }
    }
}

/// A cloudbase-init plugin of the service run (`plugins=`), executed in the order given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Plugin {
    Mtu,
    NtpClient,
    SetHostName,
    CreateUser,
    NetworkConfig,
    WindowsLicensing,
    SetUserSshPublicKeys,
    ExtendVolumes,
    UserData,
    SetUserPassword,
    WinRmListener,
    WinRmCertificateAuth,
    LocalScripts,
}

impl Plugin {
    /// cloudbase-init's own default list, in its order.
    pub const DEFAULTS: [Plugin; 13] = [
        Self::Mtu,
        Self::NtpClient,
        Self::SetHostName,
        Self::CreateUser,
        Self::NetworkConfig,
        Self::WindowsLicensing,
        Self::SetUserSshPublicKeys,
        Self::ExtendVolumes,
        Self::UserData,
        Self::SetUserPassword,
        Self::WinRmListener,
        Self::WinRmCertificateAuth,
        Self::LocalScripts,
    ];

    pub fn class_path(self) -> &'static str {
        match self {
            Self::Mtu => "cloudbaseinit.plugins.common.mtu.MTUPlugin",
            Self::NtpClient => "cloudbaseinit.plugins.windows.ntpclient.NTPClientPlugin",
            Self::SetHostName => "cloudbaseinit.plugins.common.sethostname.SetHostNamePlugin",
            Self::CreateUser => "cloudbaseinit.plugins.windows.createuser.CreateUserPlugin",
            Self::NetworkConfig => "cloudbaseinit.plugins.common.networkconfig.NetworkConfigPlugin",
            Self::WindowsLicensing => {
                "cloudbaseinit.plugins.windows.licensing.WindowsLicensingPlugin"
            }
            Self::SetUserSshPublicKeys => {
                "cloudbaseinit.plugins.common.sshpublickeys.SetUserSSHPublicKeysPlugin"
            }
            Self::ExtendVolumes => {
                "cloudbaseinit.plugins.windows.extendvolumes.ExtendVolumesPlugin"
            }
            Self::UserData => "cloudbaseinit.plugins.common.userdata.UserDataPlugin",
            Self::SetUserPassword => {
                "cloudbaseinit.plugins.common.setuserpassword.SetUserPasswordPlugin"
            }
            Self::WinRmListener => {
                "cloudbaseinit.plugins.windows.winrmlistener.ConfigWinRMListenerPlugin"
            }
            Self::WinRmCertificateAuth => {
                "cloudbaseinit.plugins.windows.winrmcertificateauth.ConfigWinRMCertificateAuthPlugin"
            }
            Self::LocalScripts => "cloudbaseinit.plugins.common.localscripts.LocalScriptsPlugin",
        }
    }
}

/// The once-only plugins of the specialize pass (cloudbase-init-installer's choice).
const UNATTEND_PLUGINS: [Plugin; 3] = [Plugin::Mtu, Plugin::SetHostName, Plugin::ExtendVolumes];

/// `first_logon_behaviour`: must the user change the password at first logon?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FirstLogonBehaviour {
    Always,
    ClearTextInjectedOnly,
    No,
}

impl FirstLogonBehaviour {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::ClearTextInjectedOnly => "clear_text_injected_only",
            Self::No => "no",
        }
    }
}

/// A local group for the cloudbase-init user.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// `BUILTIN\Administrators` (SID `S-1-5-32-544`). Its name is localized (`Administratoren` on
    /// German Windows) and cloudbase-init adds users to groups *by name*, logging and ignoring a
    /// miss; so kiln writes `Administrators` and a first-logon step rewrites it to the localized name
    /// found from the SID on the installed system.
    Administrators,
    /// A group by its literal name.
    Named(String),
}

/// The serial port cloudbase-init logs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SerialPort {
    /// `COM1`…`COM9`.
    pub name: String,
    pub baud: u32,
}

/// cloudbase-init settings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CloudbaseInit {
    /// The user cloudbase-init creates (or updates) and injects the metadata password into.
    pub username: String,
    pub groups: Vec<Group>,
    pub inject_user_password: bool,
    pub first_logon_behaviour: FirstLogonBehaviour,
    pub metadata_services: Vec<MetadataService>,
    pub plugins: Vec<Plugin>,
    /// `None`: no serial logging.
    pub serial_port: Option<SerialPort>,
    pub metadata_base_url: String,
    pub mtu_use_dhcp_config: bool,
    pub ntp_use_dhcp_config: bool,
    /// Passed to the MSI: the service runs as LocalSystem rather than a `cloudbase-init` user.
    pub run_service_as_local_system: bool,
}

impl Default for CloudbaseInit {
    fn default() -> Self {
        Self {
            username: "Admin".to_owned(),
            groups: vec![Group::Administrators],
            inject_user_password: true,
            first_logon_behaviour: FirstLogonBehaviour::No,
            metadata_services: vec![MetadataService::OpenStackHttp, MetadataService::ConfigDrive],
            plugins: Plugin::DEFAULTS.to_vec(),
            serial_port: Some(SerialPort {
                name: "COM1".to_owned(),
                baud: 115_200,
            }),
            metadata_base_url: "http://169.254.169.254/".to_owned(),
            mtu_use_dhcp_config: true,
            ntp_use_dhcp_config: true,
            run_service_as_local_system: true,
        }
    }
}

impl CloudbaseInit {
    pub(crate) fn validate(&self) -> Vec<ModelError> {
        let mut errors = Vec::new();
        if let Err(e) = check_user_name(&self.username) {
            errors.push(e);
        }
        for group in &self.groups {
            if let Group::Named(name) = group {
                let bad = name.is_empty()
                    || name.chars().count() > 256
                    || name.chars().any(|c| c.is_control() || c == ',' || c == '"');
                if bad {
                    errors.push(ModelError::GroupName {
                        value: name.clone(),
                    });
                }
            }
        }
        if self.metadata_services.is_empty() {
            errors.push(ModelError::Empty {
                field: "cloudbase-init metadata services",
            });
        }
        if let Some(port) = &self.serial_port {
            let ok = port.name.len() == 4
                && port.name.starts_with("COM")
                && port.name.as_bytes()[3].is_ascii_digit()
                && port.name != "COM0"
                && [9600, 19_200, 38_400, 57_600, 115_200].contains(&port.baud);
            if !ok {
                errors.push(ModelError::SerialPort {
                    value: format!("{},{}", port.name, port.baud),
                });
            }
        }
        let url = &self.metadata_base_url;
        let url_ok = check_text("cloudbase-init metadata url", url, 1024).is_ok()
            && check_one_line("cloudbase-init metadata url", url).is_ok()
            && (url.starts_with("http://") || url.starts_with("https://"))
            && !url.contains([' ', '\t']);
        if !url_ok {
            errors.push(ModelError::MetadataUrl { value: url.clone() });
        }
        errors
    }

    /// The `logging_serial_port_settings` value: `COM1,115200,N,8`.
    pub fn serial_settings(&self) -> Option<String> {
        self.serial_port
            .as_ref()
            .map(|p| format!("{},{},N,8", p.name, p.baud))
    }

    /// True when a first-logon step must resolve a well-known group's localized name.
    pub fn needs_group_fixup(&self) -> bool {
        self.groups.contains(&Group::Administrators)
    }

    fn groups_value(&self) -> String {
        self.groups
            .iter()
            .map(|g| match g {
                Group::Administrators => "Administrators",
                Group::Named(n) => n.as_str(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// Which of the two configuration files.
#[derive(Clone, Copy, PartialEq, Eq)]
enum ConfKind {
    Service,
    Unattend,
}

fn render_conf(cb: &CloudbaseInit, kind: ConfKind) -> String {
    let bin = format!(r"{INSTALL_DIR}\bin\");
    let mut lines: Vec<(&str, String)> = vec![
        ("username", cb.username.clone()),
        ("groups", cb.groups_value()),
        ("inject_user_password", cb.inject_user_password.to_string()),
        (
            "first_logon_behaviour",
            cb.first_logon_behaviour.as_str().to_owned(),
        ),
        ("bsdtar_path", format!("{bin}bsdtar.exe")),
        ("mtools_path", bin.clone()),
        ("verbose", "true".to_owned()),
        ("debug", "true".to_owned()),
        ("log_dir", format!(r"{INSTALL_DIR}\log\")),
        (
            "log_file",
            match kind {
                ConfKind::Service => "cloudbase-init.log",
                ConfKind::Unattend => "cloudbase-init-unattend.log",
            }
            .to_owned(),
        ),
        (
            "default_log_levels",
            "comtypes=INFO,suds=INFO,iso8601=WARN,requests=WARN".to_owned(),
        ),
        (
            "logging_serial_port_settings",
            cb.serial_settings().unwrap_or_default(),
        ),
        ("mtu_use_dhcp_config", cb.mtu_use_dhcp_config.to_string()),
        ("ntp_use_dhcp_config", cb.ntp_use_dhcp_config.to_string()),
        (
            "local_scripts_path",
            format!(r"{INSTALL_DIR}\LocalScripts\"),
        ),
        ("check_latest_version", "false".to_owned()),
        (
            "metadata_services",
            cb.metadata_services
                .iter()
                .map(|m| m.class_path())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ];
    let plugins: &[Plugin] = match kind {
        ConfKind::Service => &cb.plugins,
        ConfKind::Unattend => &UNATTEND_PLUGINS,
    };
    lines.push((
        "plugins",
        plugins
            .iter()
            .map(|p| p.class_path())
            .collect::<Vec<_>>()
            .join(","),
    ));
    if kind == ConfKind::Unattend {
        // The specialize pass must neither reboot nor stop a service that is not running.
        lines.push(("allow_reboot", "false".to_owned()));
        lines.push(("stop_service_on_exit", "false".to_owned()));
    }
    let mut out =
        String::from("# Generated by kiln. Do not edit: change the pipeline instead.\n[DEFAULT]\n");
    for (key, value) in lines {
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
        out.push('\n');
    }
    out.push_str("\n[config_drive]\ntypes=vfat,iso\nlocations=cdrom,hdd,partition\n");
    out.push_str("\n[openstack]\n");
    out.push_str("metadata_base_url=");
    out.push_str(&cb.metadata_base_url);
    out.push('\n');
    // Windows tools read these files; CRLF keeps Notepad on older servers happy.
    out.replace('\n', "\r\n")
}

/// `cloudbase-init.conf`, or `None` when the image has no cloudbase-init.
pub fn render_cloudbase_conf(image: &WindowsImage) -> Result<Option<String>, ModelError> {
    image.check()?;
    Ok(image
        .cloudbase_init
        .as_ref()
        .map(|cb| render_conf(cb, ConfKind::Service)))
}

/// `cloudbase-init-unattend.conf`, or `None` when the image has no cloudbase-init.
pub fn render_cloudbase_unattend_conf(image: &WindowsImage) -> Result<Option<String>, ModelError> {
    image.check()?;
    Ok(image
        .cloudbase_init
        .as_ref()
        .map(|cb| render_conf(cb, ConfKind::Unattend)))
}

/// The `Unattend.xml` given to `sysprep /generalize /oobe /shutdown /unattend:`. Present with or
/// without cloudbase-init: without it, only driver persistence, locale and OOBE skipping remain.
///
/// It holds no secret: the cloud user's password comes from the metadata service at first boot.
pub fn render_sysprep_unattend(image: &WindowsImage) -> Result<String, ModelError> {
    image.check()?;
    let arch = image.arch.unattend_name();
    let mut w = XmlWriter::new();
    w.open("unattend", &[("xmlns", crate::autounattend::NS_UNATTEND)]);

    w.open("settings", &[("pass", "generalize")]);
    crate::autounattend::open_component(&mut w, "Microsoft-Windows-PnpSysprep", arch);
    // Keep the virtio drivers installed during the build across generalize.
    w.text("PersistAllDeviceInstalls", "true");
    w.close();
    w.close();

    if image.cloudbase_init.is_some() {
        w.open("settings", &[("pass", "specialize")]);
        crate::autounattend::open_component(&mut w, "Microsoft-Windows-Deployment", arch);
        w.open("RunSynchronous", &[]);
        w.open("RunSynchronousCommand", &[("wcm:action", "add")]);
        w.text("Order", "1");
        w.text(
            "Path",
            &format!(
                r#""{INSTALL_DIR}\Python\Scripts\cloudbase-init.exe" --config-file "{INSTALL_DIR}\conf\cloudbase-init-unattend.conf""#
            ),
        );
        w.text(
            "Description",
            "Run cloudbase-init once: MTU, host name, extend volumes",
        );
        w.close();
        w.close();
        w.close();
        w.close();
    }

    w.open("settings", &[("pass", "oobeSystem")]);
    crate::autounattend::international_core(&mut w, image, false);
    crate::autounattend::open_component(&mut w, "Microsoft-Windows-Shell-Setup", arch);
    crate::autounattend::oobe_settings(&mut w, 1);
    w.close();
    w.close();

    w.close();
    Ok(w.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_cloudbase_settings_are_named_precisely() {
        let cb = CloudbaseInit {
            username: "bad:name".into(),
            groups: vec![Group::Named("a,b".into())],
            metadata_services: Vec::new(),
            serial_port: Some(SerialPort {
                name: "COM1".into(),
                baud: 1234,
            }),
            metadata_base_url: "ftp://x".into(),
            ..CloudbaseInit::default()
        };
        let errors = cb.validate();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "user name `bad:name` is invalid: at most 20 characters, none of `\"/\\[]:;|=,+*?<>@`",
                "group name `a,b` is invalid: 1 to 256 characters, no `,` or `\"`",
                "`cloudbase-init metadata services` must not be empty",
                "serial port `COM1,1234` is invalid: expected `COM1`…`COM9` at 9600, 19200, 38400, 57600 or 115200 baud",
                "metadata url `ftp://x` is invalid: expected `http://…` or `https://…` without spaces",
            ]
        );
        assert!(
            errors[1..]
                .iter()
                .all(|e| e.field() == "cloudbase-init" || e.field().starts_with("cloudbase-init"))
        );
    }

    #[test]
    fn unattend_conf_runs_only_the_once_only_plugins_and_never_reboots() {
        let conf = render_conf(&CloudbaseInit::default(), ConfKind::Unattend);
        let plugins = conf.lines().find(|l| l.starts_with("plugins=")).unwrap();
        assert_eq!(
            plugins,
            "plugins=cloudbaseinit.plugins.common.mtu.MTUPlugin,cloudbaseinit.plugins.common.sethostname.SetHostNamePlugin,cloudbaseinit.plugins.windows.extendvolumes.ExtendVolumesPlugin"
        );
        assert!(conf.contains("allow_reboot=false\r\n"));
        assert!(conf.contains("logging_serial_port_settings=COM1,115200,N,8\r\n"));
        assert!(!conf.contains("\n\n\n") && conf.lines().all(|l| !l.ends_with(' ')));
    }
}
