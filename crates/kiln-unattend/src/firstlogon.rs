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
//! 10. turn auto-logon off, delete the cached answer files and `C:\kiln`;
//! 11. disable the built-in Administrator (by SID);
//! 12. `sysprep /generalize /oobe /shutdown /unattend:<cloudbase-init's Unattend.xml>`.

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
}
