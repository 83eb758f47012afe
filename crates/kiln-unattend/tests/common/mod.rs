//! Images shared by the integration tests: the three of the issue's acceptance list.

// `expect` would fail in the test binaries that do use every item.
#![allow(
    dead_code,
    reason = "each test binary uses a different part of this module"
)]

use kiln_unattend::{
    Arch, ComputerName, Firmware, FirstLogonCommand, ImageSelector, LanguageTag, SecretRef,
    SecretValue, Secrets, WindowsImage, WindowsVersion,
};

pub const PASSWORD: &str = "Pa55-w0rd<&>\"secret'Z";
pub const PRODUCT_KEY: &str = "VDYBN-27WPP-V4HQT-9VMD4-VMK7H";

pub fn lang(tag: &str) -> LanguageTag {
    tag.parse().unwrap()
}

pub fn server_2022_bios_en_us() -> WindowsImage {
    let mut image = WindowsImage::new(
        WindowsVersion::Server2022,
        Arch::Amd64,
        ImageSelector::Name("Windows Server 2022 SERVERDATACENTER".into()),
        &lang("en-US"),
        Firmware::Bios,
        SecretRef::new("admin-password").unwrap(),
    );
    image.tpm = false;
    image.product_key = Some(SecretRef::new("product-key").unwrap());
    image.computer_name = ComputerName::Pattern("KILN-{version}".into());
    image.first_logon.push(FirstLogonCommand {
        command: r#"cmd /c echo built by kiln > C:\kiln-build.txt"#.into(),
        description: "mark the build".into(),
    });
    image
}

pub fn server_2025_uefi_tpm_de_de() -> WindowsImage {
    let mut image = WindowsImage::new(
        WindowsVersion::Server2025,
        Arch::Amd64,
        ImageSelector::Index(4),
        &lang("de-DE"),
        Firmware::Uefi { secure_boot: true },
        SecretRef::new("admin-password").unwrap(),
    );
    image.tpm = true;
    image.disk.recovery_mib = Some(1024);
    image.time_zone = "W. Europe Standard Time".parse().unwrap();
    image.computer_name = ComputerName::Pattern("K{version}-{lang}".into());
    image
}

pub fn windows_11_uefi_ja_jp() -> WindowsImage {
    let mut image = WindowsImage::new(
        WindowsVersion::Windows11,
        Arch::Amd64,
        ImageSelector::Name("Windows 11 Pro".into()),
        &lang("ja-JP"),
        Firmware::Uefi { secure_boot: true },
        SecretRef::new("admin-password").unwrap(),
    );
    image.time_zone = "Tokyo Standard Time".parse().unwrap();
    image.product_key = Some(SecretRef::new("product-key").unwrap());
    image
}

pub fn all() -> Vec<(&'static str, WindowsImage)> {
    vec![
        ("server-2022-bios-en-us", server_2022_bios_en_us()),
        ("server-2025-uefi-tpm-de-de", server_2025_uefi_tpm_de_de()),
        ("windows-11-uefi-ja-jp", windows_11_uefi_ja_jp()),
    ]
}

pub fn secrets() -> Secrets {
    let mut s = Secrets::new();
    s.insert(
        &SecretRef::new("admin-password").unwrap(),
        SecretValue::new(PASSWORD),
    );
    s.insert(
        &SecretRef::new("product-key").unwrap(),
        SecretValue::new(PRODUCT_KEY),
    );
    s
}
