//! Secrets reach the answer media and nothing else: not placeholder renders (plans, keys), not
//! `Debug` output, not error messages.

mod common;

use kiln_unattend::{
    RenderError, SecretRef, SecretSource, SecretValue, Secrets, answer_media, render_autounattend,
};

fn escaped(value: &str) -> String {
    value
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

#[test]
fn placeholder_renders_and_debug_output_never_hold_a_secret_value() {
    let secrets = common::secrets();
    for (name, image) in common::all() {
        let placeholder = answer_media(&image, SecretSource::Placeholders).unwrap();
        let real = answer_media(&image, SecretSource::Values(&secrets)).unwrap();
        let mut haystacks = vec![
            format!("{image:?}"),
            format!("{secrets:?}"),
            format!("{placeholder:?}"),
            format!("{real:?}"),
        ];
        for f in &placeholder.files {
            assert!(!f.secret, "{name}: {}", f.path);
            haystacks.push(String::from_utf8_lossy(&f.contents).into_owned());
        }
        for hay in &haystacks {
            for secret in [common::PASSWORD, common::PRODUCT_KEY, "Pa55-w0rd", "VDYBN"] {
                assert!(!hay.contains(secret), "{name}: `{secret}` leaked");
                assert!(
                    !hay.contains(&escaped(secret)),
                    "{name}: escaped `{secret}` leaked"
                );
            }
        }
        // The real answer file holds the values, escaped, and is flagged secret.
        let auto = real
            .files
            .iter()
            .find(|f| f.path == "autounattend.xml")
            .unwrap();
        assert!(auto.secret);
        let xml = String::from_utf8(auto.contents.clone()).unwrap();
        let doc = roxmltree::Document::parse(&xml).unwrap();
        let values: Vec<_> = doc
            .descendants()
            .filter(|n| {
                n.tag_name().name() == "Value"
                    && n.parent().unwrap().tag_name().name() != "MetaData"
            })
            .map(|n| n.text().unwrap())
            .collect();
        assert_eq!(values, [common::PASSWORD, common::PASSWORD], "{name}");
        // Only the answer file carries secrets; the rest of the media is the same either way.
        for (p, r) in placeholder.files.iter().zip(&real.files).skip(1) {
            assert_eq!(p.contents, r.contents, "{}", p.path);
            assert!(!r.secret);
        }
    }
}

#[test]
fn render_errors_name_the_secret_but_never_show_its_value() {
    let image = common::server_2022_bios_en_us();
    let mut secrets = Secrets::new();
    secrets.insert(
        &SecretRef::new("admin-password").unwrap(),
        SecretValue::new("ok-Password-1"),
    );
    let err = render_autounattend(&image, SecretSource::Values(&secrets)).unwrap_err();
    assert_eq!(
        err,
        RenderError::MissingSecret {
            name: "product-key".into()
        }
    );

    let bad_key = "NOT-A-KEY-hunter2";
    secrets.insert(
        &SecretRef::new("product-key").unwrap(),
        SecretValue::new(bad_key),
    );
    let err = render_autounattend(&image, SecretSource::Values(&secrets)).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(shown.contains("product-key"), "{shown}");
    assert!(!shown.contains("hunter2"), "{shown}");

    secrets.insert(
        &SecretRef::new("product-key").unwrap(),
        SecretValue::new(common::PRODUCT_KEY),
    );
    secrets.insert(
        &SecretRef::new("admin-password").unwrap(),
        SecretValue::new("bell\u{7}hunter2"),
    );
    let err = render_autounattend(&image, SecretSource::Values(&secrets)).unwrap_err();
    let shown = format!("{err} {err:?}");
    assert!(
        shown.contains("control character") && !shown.contains("hunter2"),
        "{shown}"
    );
}
