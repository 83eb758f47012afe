//! The first-logon commands: what runs, once, when Setup auto-logs on after install.
//!
//! Each of kiln's own steps runs as `cmd /c (…) && (report ok) || (report failure & power off)`,
//! writing `kiln: step N/T ok: …` or `kiln: step N/T failed: …` to `COM1`. The executor watches the
//! serial console, so a failed step ends the install at once with the evidence on the console
//! instead of hanging until a timeout. Steps, in order:
//!
//! 1. set up `COM1` (115200 8N1);
//! 2. find the answer media by its marker file `\kiln\kiln-media.txt` (first-logon commands, unlike
//!    `DriverPaths`, can search drive letters) and copy its `kiln` folder to `C:\kiln`;
//! 3. allow ICMP echo (v4 and v6) through the firewall;
//! 4. `pnputil /add-driver` each post-install virtio driver folder from the drivers CD;
//! 5. install the qemu guest agent MSI from the drivers CD;
//! 6. install cloudbase-init's MSI silently (`LOGGINGSERIALPORTNAME=COM1`,
//!    `RUN_SERVICE_AS_LOCAL_SYSTEM=1`, `USERNAME=…`), copy kiln's configuration over the MSI's;
//! 7. rewrite `groups=Administrators` to the localized name of SID `S-1-5-32-544`;
//! 8. copy the sysprep answer file where sysprep will be told to find it;
//! 9. the pipeline's own commands, verbatim (not wrapped: their exit codes are their own);
//! 10. clear the auto-logon password from the LSA secret store, where Setup keeps it
//!     (`LsaStorePrivateData(…, "DefaultPassword", NULL)`, see [`CLEAR_AUTOLOGON_PS1`]);
//! 11. turn auto-logon off, delete the cached answer files and `C:\kiln`;
//! 12. disable the built-in Administrator (by SID);
//! 13. `sysprep /generalize /oobe /shutdown /unattend:<cloudbase-init's Unattend.xml>`.

use crate::cloudbase::INSTALL_DIR;
use crate::model::{BuiltinAdmin, WindowsImage};
use crate::virtio::guest_agent_msi;

/// kiln's progress channel; the executor reads the first serial port.
pub const PROGRESS_PORT: &str = "COM1";
/// The marker file that identifies kiln's answer media.
pub const MEDIA_MARKER: &str = r"kiln\kiln-media.txt";
/// Where the answer media's `kiln` folder is copied to.
pub const STAGING_DIR: &str = r"C:\kiln";
/// The file name kiln gives the cloudbase-init MSI on the answer media (`kiln\` folder).
pub const CLOUDBASE_MSI: &str = "CloudbaseInitSetup.msi";
/// The sysprep answer file on the answer media (`kiln\` folder).
pub const SYSPREP_UNATTEND: &str = "sysprep-unattend.xml";
/// The script on the answer media (`kiln\` folder) that clears the auto-logon password.
pub const CLEAR_AUTOLOGON_SCRIPT: &str = "clear-autologon.ps1";
/// Clears the LSA secret `DefaultPassword`, where Winlogon keeps the auto-logon password that
/// Setup stored from `<AutoLogon><Password>`. Microsoft's "Protecting the Automatic Logon
/// Password" (Win32 docs, secauthn) stores that password with `LsaStorePrivateData` and states
/// that passing NULL as the data clears it; `STATUS_OBJECT_NAME_NOT_FOUND` (no secret stored)
/// counts as cleared. Deleting the `DefaultPassword` registry value alone leaves the LSA secret,
/// and kiln does not count on `sysprep /generalize` to remove it. A failure exits non-zero, so the
/// step (and the build) fails instead of shipping an image that holds the password.
pub const CLEAR_AUTOLOGON_PS1: &str = r#"$ErrorActionPreference = 'Stop'
Add-Type -TypeDefinition @'
using System;
using System.Runtime.InteropServices;
public static class KilnLsa {
    [StructLayout(LayoutKind.Sequential)]
    struct LsaString { public ushort Length; public ushort MaximumLength; public IntPtr Buffer; }
    [StructLayout(LayoutKind.Sequential)]
    struct LsaAttributes {
        public int Length; public IntPtr RootDirectory; public IntPtr ObjectName;
        public uint Attributes; public IntPtr SecurityDescriptor; public IntPtr SecurityQualityOfService;
    }
    [DllImport("advapi32.dll")]
    static extern uint LsaOpenPolicy(IntPtr system, ref LsaAttributes attributes, uint access, out IntPtr policy);
    [DllImport("advapi32.dll")]
    static extern uint LsaStorePrivateData(IntPtr policy, ref LsaString key, IntPtr data);
    [DllImport("advapi32.dll")]
    static extern uint LsaClose(IntPtr policy);
    [DllImport("advapi32.dll")]
    static extern int LsaNtStatusToWinError(uint status);
    const uint POLICY_CREATE_SECRET = 0x20;
    const uint STATUS_OBJECT_NAME_NOT_FOUND = 0xC0000034;
    public static int Clear(string name) {
        LsaAttributes attributes = new LsaAttributes();
        attributes.Length = Marshal.SizeOf(typeof(LsaAttributes));
        IntPtr policy;
        uint status = LsaOpenPolicy(IntPtr.Zero, ref attributes, POLICY_CREATE_SECRET, out policy);
        if (status != 0) { return LsaNtStatusToWinError(status); }
        LsaString key = new LsaString();
        key.Buffer = Marshal.StringToHGlobalUni(name);
        key.Length = (ushort)(name.Length * 2);
        key.MaximumLength = (ushort)((name.Length + 1) * 2);
        status = LsaStorePrivateData(policy, ref key, IntPtr.Zero);
        Marshal.FreeHGlobal(key.Buffer);
        LsaClose(policy);
        if (status == 0 || status == STATUS_OBJECT_NAME_NOT_FOUND) { return 0; }
        return LsaNtStatusToWinError(status);
    }
}
'@
$code = [KilnLsa]::Clear('DefaultPassword')
if ($code -ne 0) { Write-Error "clearing the LSA secret DefaultPassword failed: Win32 error $code"; exit $code }
exit 0
"#;
/// Letters searched for the answer media.
const SEARCH_LETTERS: &str = "D E F G H I J K L M N O P Q R S T U V W X Y Z";

/// A `kiln: step N/T ok|failed: …` line from the serial console, as the first-logon steps print.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Progress {
    pub step: usize,
    pub total: usize,
    pub ok: bool,
    pub description: String,
}

/// Parses one serial-console line; `None` when it is not a kiln progress line. Tolerates the
/// carriage return Windows' `echo` adds and noise before `kiln:`.
pub fn parse_progress(line: &str) -> Option<Progress> {
    let rest = &line[line.find("kiln: step ")? + "kiln: step ".len()..];
    let (counts, rest) = rest.split_once(' ')?;
    let (step, total) = counts.split_once('/')?;
    let (status, description) = rest.split_once(": ")?;
    let ok = match status {
        "ok" => true,
        "failed" => false,
        _ => return None,
    };
    Some(Progress {
        step: step.parse().ok()?,
        total: total.parse().ok()?,
        ok,
        description: description.trim_end().to_owned(),
    })
}

/// One `SynchronousCommand`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub command: String,
    pub description: String,
}

/// Where sysprep finds its answer file: cloudbase-init's `conf` folder when it is installed (as
/// cloudbase-init's own installer does), else a file beside sysprep.
pub fn sysprep_unattend_path(image: &WindowsImage) -> String {
    if image.cloudbase_init.is_some() {
        format!(r"{INSTALL_DIR}\conf\Unattend.xml")
    } else {
        r"C:\Windows\System32\Sysprep\kiln-unattend.xml".to_owned()
    }
}

/// `cmd` sets ERRORLEVEL but `&&` only knows success or failure: map the program's exit code to
/// success when it is one of `allowed` (0 is always allowed) with `(call )` (succeeds) and
/// `(call)` (fails).
fn exit_codes(allowed: &[u32]) -> String {
    let mut codes: Vec<u32> = allowed.iter().copied().filter(|&c| c != 0).collect();
    codes.sort_unstable_by(|a, b| b.cmp(a));
    let mut out = String::new();
    for code in codes {
        out.push_str(&format!(
            "if errorlevel {} (call) else if errorlevel {code} (call ) else ",
            code + 1
        ));
    }
    out.push_str("if errorlevel 1 (call) else (call )");
    out
}

struct Steps {
    steps: Vec<(String, String, bool)>,
}

impl Steps {
    fn kiln(&mut self, description: &str, inner: String) {
        self.steps.push((description.to_owned(), inner, true));
    }

    fn user(&mut self, description: &str, command: &str) {
        self.steps
            .push((description.to_owned(), command.to_owned(), false));
    }

    fn finish(self) -> Vec<Command> {
        let total = self.steps.len();
        self.steps
            .into_iter()
            .enumerate()
            .map(|(i, (description, inner, wrap))| {
                let n = i + 1;
                let command = if wrap {
                    // Redirection first, so a description ending in a digit is not read as a handle.
                    format!(
                        "cmd /c ({inner}) && (>{PROGRESS_PORT} echo kiln: step {n}/{total} ok: {description}) || (>{PROGRESS_PORT} echo kiln: step {n}/{total} failed: {description} & shutdown /s /t 10 /f)"
                    )
                } else {
                    inner
                };
                Command { command, description }
            })
            .collect()
    }
}

/// The commands, in order. Validated input only (see [`WindowsImage::validate`]).
pub(crate) fn first_logon_commands(image: &WindowsImage) -> Vec<Command> {
    let mut s = Steps { steps: Vec::new() };
    let cd = image.drivers.letters.first().copied().unwrap_or('E');

    s.kiln(
        "serial port for progress",
        format!("mode {PROGRESS_PORT} BAUD=115200 PARITY=N DATA=8 STOP=1 >NUL"),
    );
    s.kiln(
        "copy the answer media to C:\\kiln",
        format!(
            // `for` and `if` swallow everything after them on the line, `&` included: hence the parentheses.
            r"(for %d in ({SEARCH_LETTERS}) do @if exist %d:\{MEDIA_MARKER} xcopy %d:\kiln {STAGING_DIR}\ /e /i /y /q >NUL) & (mkdir {STAGING_DIR}\logs 2>NUL) & if exist {STAGING_DIR}\kiln-media.txt (call ) else (call)"
        ),
    );
    s.kiln(
        "allow ICMP echo through the firewall",
        r#"netsh advfirewall firewall add rule name="kiln ICMPv4 echo request" dir=in action=allow protocol=icmpv4:8,any >NUL && netsh advfirewall firewall add rule name="kiln ICMPv6 echo request" dir=in action=allow protocol=icmpv6:128,any >NUL"#
            .to_owned(),
    );
    if image.guest_tools.drivers {
        for driver in &image.drivers.post_install {
            if let Some(folder) = driver.folder(image.version, image.arch) {
                let folder = folder.replace('/', "\\");
                s.kiln(
                    &format!("virtio driver {driver}"),
                    format!(
                        r"pnputil /add-driver {cd}:\{folder}\*.inf /install & {}",
                        // 259: nothing to update; 3010: reboot required (sysprep reboots anyway).
                        exit_codes(&[259, 3010])
                    ),
                );
            }
        }
    }
    if image.guest_tools.qemu_guest_agent
        && let Some(msi) = guest_agent_msi(image.arch)
    {
        let msi = msi.replace('/', "\\");
        s.kiln(
            "qemu guest agent",
            format!(
                r"msiexec /i {cd}:\{msi} /qn /norestart /l*v {STAGING_DIR}\logs\qemu-ga.log & {}",
                exit_codes(&[3010])
            ),
        );
    }
    if let Some(cb) = &image.cloudbase_init {
        let mut props = vec![format!("USERNAME=\"{}\"", cb.username)];
        if let Some(port) = &cb.serial_port {
            props.push(format!("LOGGINGSERIALPORTNAME={}", port.name));
        }
        if cb.run_service_as_local_system {
            props.push("RUN_SERVICE_AS_LOCAL_SYSTEM=1".to_owned());
        }
        s.kiln(
            "install cloudbase-init",
            format!(
                r"msiexec /i {STAGING_DIR}\{CLOUDBASE_MSI} /qn /norestart /l*v {STAGING_DIR}\logs\cloudbase-init-msi.log {} & {}",
                props.join(" "),
                exit_codes(&[3010])
            ),
        );
        s.kiln(
            "cloudbase-init configuration",
            format!(r#"copy /y {STAGING_DIR}\cloudbase-init\*.conf "{INSTALL_DIR}\conf" >NUL"#),
        );
        if cb.needs_group_fixup() {
            s.kiln(
                "localized Administrators group name",
                format!(
                    r#"powershell -NoProfile -ExecutionPolicy Bypass -Command "$n=(New-Object Security.Principal.SecurityIdentifier('S-1-5-32-544')).Translate([Security.Principal.NTAccount]).Value.Split('\')[-1]; foreach($f in 'cloudbase-init.conf','cloudbase-init-unattend.conf'){{$p='{INSTALL_DIR}\conf\'+$f; $t=[IO.File]::ReadAllText($p) -replace '(?m)^(groups=(?:.*,)?)Administrators(?=,|\r?$)',('${{1}}'+$n); [IO.File]::WriteAllText($p,$t)}}""#
                ),
            );
        }
    }
    s.kiln(
        "sysprep answer file",
        format!(
            r#"copy /y {STAGING_DIR}\{SYSPREP_UNATTEND} "{}" >NUL"#,
            sysprep_unattend_path(image)
        ),
    );
    for (i, cmd) in image.first_logon.iter().enumerate() {
        let description = if cmd.description.is_empty() {
            format!("pipeline command {}", i + 1)
        } else {
            cmd.description.clone()
        };
        s.user(&description, &cmd.command);
    }
    s.kiln(
        "auto-logon password cleared from the LSA secret store",
        format!(
            r"powershell -NoProfile -ExecutionPolicy Bypass -File {STAGING_DIR}\{CLEAR_AUTOLOGON_SCRIPT}"
        ),
    );
    let winlogon = r#""HKLM\SOFTWARE\Microsoft\Windows NT\CurrentVersion\Winlogon""#;
    s.kiln(
        "auto-logon off, build files removed",
        format!(
            r"reg add {winlogon} /v AutoAdminLogon /t REG_SZ /d 0 /f >NUL && (reg delete {winlogon} /v DefaultPassword /f >NUL 2>&1 & del /f /q C:\Windows\Panther\unattend.xml C:\Windows\Panther\Unattend\unattend.xml >NUL 2>&1 & rmdir /s /q {STAGING_DIR} & (call ))"
        ),
    );
    if image.builtin_admin == BuiltinAdmin::Disable {
        s.kiln(
            "disable the built-in Administrator",
            r#"powershell -NoProfile -ExecutionPolicy Bypass -Command "Get-LocalUser | Where-Object { $_.SID.Value -like 'S-1-5-21-*-500' } | Disable-LocalUser""#
                .to_owned(),
        );
    }
    s.kiln(
        "sysprep",
        format!(
            r#"C:\Windows\System32\Sysprep\sysprep.exe /generalize /oobe /shutdown /unattend:"{}""#,
            sysprep_unattend_path(image)
        ),
    );
    s.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_parse_and_other_lines_do_not() {
        assert_eq!(
            parse_progress("\u{0}kiln: step 11/18 failed: install cloudbase-init \r"),
            Some(Progress {
                step: 11,
                total: 18,
                ok: false,
                description: "install cloudbase-init".into()
            })
        );
        assert_eq!(
            parse_progress("kiln: step 1/18 ok: serial port for progress").map(|p| p.ok),
            Some(true)
        );
        assert_eq!(
            parse_progress("2026-11-23 cloudbase-init INFO something"),
            None
        );
        assert_eq!(parse_progress("kiln: step x/18 ok: y"), None);
    }

    #[test]
    fn exit_code_mapping_accepts_listed_codes_in_descending_order() {
        assert_eq!(
            exit_codes(&[259, 3010]),
            "if errorlevel 3011 (call) else if errorlevel 3010 (call ) else if errorlevel 260 (call) else if errorlevel 259 (call ) else if errorlevel 1 (call) else (call )"
        );
    }

    #[test]
    fn autologon_password_is_cleared_from_the_lsa_before_the_staging_folder_goes() {
        use crate::model::{Arch, Firmware, ImageSelector, WindowsVersion};
        use crate::secret::SecretRef;
        let image = WindowsImage::new(
            WindowsVersion::Server2022,
            Arch::Amd64,
            ImageSelector::Index(1),
            &"en-US".parse().unwrap(),
            Firmware::Bios,
            SecretRef::new("pw").unwrap(),
        );
        let commands = first_logon_commands(&image);
        let position = |needle: &str| {
            commands
                .iter()
                .position(|c| c.command.contains(needle))
                .unwrap_or_else(|| panic!("no command contains {needle}"))
        };
        let clear = position(CLEAR_AUTOLOGON_SCRIPT);
        assert!(clear < position(&format!("rmdir /s /q {STAGING_DIR}")));
        assert!(clear < position("sysprep.exe"));
        // The script stores NULL under the secret's name: the documented way to clear it.
        assert!(CLEAR_AUTOLOGON_PS1.contains("LsaStorePrivateData(policy, ref key, IntPtr.Zero)"));
        assert!(CLEAR_AUTOLOGON_PS1.contains("Clear('DefaultPassword')"));
        assert!(CLEAR_AUTOLOGON_PS1.contains("exit $code"));
    }
}
