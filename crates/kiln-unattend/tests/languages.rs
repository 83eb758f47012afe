//! The language matrix: each language lands in every locale setting of its own files and in no
//! file of another language.

mod common;

use kiln_unattend::{
    Arch, Firmware, ImageSelector, SecretRef, SecretSource, WindowsImage, WindowsVersion,
    answer_media,
};

const LANGUAGES: [&str; 5] = ["en-US", "de-DE", "fr-FR", "ja-JP", "pt-BR"];
const NS: &str = "urn:schemas-microsoft-com:unattend";
const LOCALE_TAGS: [&str; 4] = ["InputLocale", "SystemLocale", "UILanguage", "UserLocale"];

fn image(lang: &str) -> WindowsImage {
    WindowsImage::new(
        WindowsVersion::Server2022,
        Arch::Amd64,
        ImageSelector::Name("Windows Server 2022 SERVERSTANDARD".into()),
        &common::lang(lang),
        Firmware::Bios,
        SecretRef::new("admin-password").unwrap(),
    )
}

#[test]
fn five_languages_each_in_all_locale_settings_of_its_own_files_and_no_other() {
    let media: Vec<_> = LANGUAGES
        .iter()
        .map(|l| {
            (
                *l,
                answer_media(&image(l), SecretSource::Placeholders).unwrap(),
            )
        })
        .collect();
    for (lang, m) in &media {
        let auto = m
            .files
            .iter()
            .find(|f| f.path == "autounattend.xml")
            .unwrap();
        let xml = std::str::from_utf8(&auto.contents).unwrap();
        let doc = roxmltree::Document::parse(xml).unwrap();
        // windowsPE: SetupUILanguage/UILanguage + 4; oobeSystem: 4.
        let mut count = 0;
        for node in doc
            .descendants()
            .filter(|n| LOCALE_TAGS.iter().any(|t| n.has_tag_name((NS, *t))))
        {
            assert_eq!(node.text(), Some(*lang), "{lang}: {:?}", node.tag_name());
            count += 1;
        }
        assert_eq!(count, 9, "{lang}: locale settings in autounattend.xml");
        let sysprep = m
            .files
            .iter()
            .find(|f| f.path == "kiln/sysprep-unattend.xml")
            .unwrap();
        let doc =
            roxmltree::Document::parse(std::str::from_utf8(&sysprep.contents).unwrap()).unwrap();
        let locales: Vec<_> = doc
            .descendants()
            .filter(|n| LOCALE_TAGS.iter().any(|t| n.has_tag_name((NS, *t))))
            .map(|n| n.text().unwrap())
            .collect();
        assert_eq!(locales, [*lang; 4], "sysprep answer file keeps the locale");
    }
    for (lang, _) in &media {
        for (other, m) in &media {
            if lang == other {
                continue;
            }
            for file in &m.files {
                let text = String::from_utf8_lossy(&file.contents).to_lowercase();
                assert!(
                    !text.contains(&lang.to_lowercase()),
                    "{lang} appears in {other}'s {}",
                    file.path
                );
            }
        }
    }
}
