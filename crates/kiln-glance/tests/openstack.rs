//! kiln-glance against a real Keystone + Glance (scripts/openstack/start.sh): publish, verify,
//! dedup, isolation, auth errors, format rejection, cancellation, a killed upload, download.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{coreutils_digest, images_named, make_qcow2, openstack, random_file, unique};
use kiln_cache::hash::{Algo, Digests};
use kiln_glance::config::AuthMethod;
use kiln_glance::{
    Action, Cancel, Error, Glance, ImageSpec, NamePolicy, PublishRequest, Secret, Session,
    UploadMethod, Visibility, download, publish,
};

fn request<'a>(path: &'a std::path::Path, spec: ImageSpec) -> PublishRequest<'a> {
    PublishRequest {
        path,
        spec,
        known: None,
        force: false,
        name_policy: NamePolicy::SameName,
        method: UploadMethod::Auto,
        cancel: Cancel::new(),
        progress: None,
    }
}

fn qcow2_spec(name: &str) -> ImageSpec {
    let mut spec = ImageSpec::new(name, "qcow2");
    spec.visibility = Some(Visibility::Private);
    spec.min_disk = Some(1);
    spec.min_ram = Some(256);
    spec.properties = BTreeMap::from([
        ("hw_disk_bus".to_owned(), "virtio".to_owned()),
        ("os_type".to_owned(), "linux".to_owned()),
        ("kiln_pipeline".to_owned(), "demo".to_owned()),
    ]);
    spec.tags = BTreeSet::from(["kiln".to_owned()]);
    spec
}

fn delete_all(glance: &Glance, name: &str) {
    for image in images_named(glance, name) {
        glance.delete(&image.id).unwrap();
    }
    assert!(
        images_named(glance, name).is_empty(),
        "images named `{name}` leaked"
    );
}

#[test]
fn publish_uploads_a_qcow2_with_properties_and_verified_hashes() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_qcow2(dir.path(), 2);
    let glance = os.glance("kiln-alpha");
    let name = unique("upload");

    let reports = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut req = request(&qcow2, qcow2_spec(&name));
    req.progress = Some(kiln_glance::UploadProgress::new({
        let reports = reports.clone();
        move |sent, total| reports.lock().unwrap().push((sent, total))
    }));
    let out = publish(&glance, &req).unwrap();
    assert_eq!(out.action, Action::Uploaded);
    // Progress rose to the file's size, reported at most once per MiB and at the end (an upload
    // that the test Glance's busy sqlite answered with 500 is retried and reports from 0 again).
    let reports = reports.lock().unwrap().clone();
    let len = std::fs::metadata(&qcow2).unwrap().len();
    assert_eq!(reports.last(), Some(&(len, len)), "{reports:?}");
    assert!(
        reports
            .iter()
            .all(|&(sent, total)| total == len && sent <= len),
        "{reports:?}"
    );
    assert!(
        reports.len() as u64 <= 3 * (len / (1 << 20) + 1),
        "{reports:?}"
    );
    let md5 = coreutils_digest("md5sum", &qcow2);
    let sha512 = coreutils_digest("sha512sum", &qcow2);
    assert_eq!(out.digests.md5.as_deref(), Some(md5.as_str()));
    assert_eq!(out.digests.sha512.as_deref(), Some(sha512.as_str()));

    // What Glance itself reports, read back fresh.
    let image = glance.get(&out.image.id).unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(image.size, Some(std::fs::metadata(&qcow2).unwrap().len()));
    assert_eq!(image.checksum.as_deref(), Some(md5.as_str()));
    assert_eq!(image.os_hash_algo.as_deref(), Some("sha512"));
    assert_eq!(image.os_hash_value.as_deref(), Some(sha512.as_str()));
    assert_eq!(image.disk_format.as_deref(), Some("qcow2"));
    assert_eq!(image.visibility.as_deref(), Some("private"));
    assert_eq!((image.min_disk, image.min_ram), (Some(1), Some(256)));
    assert_eq!(image.tags, vec!["kiln".to_owned()]);
    let props = image.properties();
    assert_eq!(props.get("hw_disk_bus").map(String::as_str), Some("virtio"));
    assert_eq!(props.get("os_type").map(String::as_str), Some("linux"));
    // The half-made marker is gone once the image is verified.
    assert!(!props.contains_key("kiln_uploader"), "{props:?}");

    // Glance as a source: the bytes come back identical, verified while streaming.
    let dest = dir.path().join("back.qcow2");
    let got = download(&glance, &image.id, &dest, &Cancel::new()).unwrap();
    assert_eq!(got.digests.sha512.as_deref(), Some(sha512.as_str()));
    assert_eq!(
        std::fs::read(&dest).unwrap(),
        std::fs::read(&qcow2).unwrap()
    );

    delete_all(&glance, &name);
}

#[test]
fn second_publish_reuses_the_image_and_updates_its_properties() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_qcow2(dir.path(), 1);
    let glance = os.glance("kiln-alpha");
    let name = unique("dedup");

    let first = publish(&glance, &request(&qcow2, qcow2_spec(&name))).unwrap();
    let mut spec = qcow2_spec(&name);
    spec.properties.insert("os_distro".into(), "debian".into());
    spec.tags.insert("second".into());
    // Digests from the cache skip the pre-upload hashing pass.
    let mut req = request(&qcow2, spec);
    req.known = Some(first.digests.clone());
    let second = publish(&glance, &req).unwrap();
    assert_eq!(second.action, Action::Reused);
    assert_eq!(second.image.id, first.image.id);
    let images = images_named(&glance, &name);
    assert_eq!(images.len(), 1, "a second image was uploaded: {images:?}");
    assert_eq!(
        images[0].properties().get("os_distro").map(String::as_str),
        Some("debian")
    );
    assert_eq!(images[0].tags.len(), 2);

    // --force uploads anyway.
    let mut forced = request(&qcow2, qcow2_spec(&name));
    forced.force = true;
    let third = publish(&glance, &forced).unwrap();
    assert_eq!(third.action, Action::Uploaded);
    assert_ne!(third.image.id, first.image.id);
    assert_eq!(images_named(&glance, &name).len(), 2);

    delete_all(&glance, &name);
}

#[test]
fn private_image_is_invisible_to_another_project() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_qcow2(dir.path(), 1);
    let alpha = os.glance("kiln-alpha");
    let beta = os.glance("kiln-beta");
    let name = unique("isolation");

    let out = publish(&alpha, &request(&qcow2, qcow2_spec(&name))).unwrap();
    assert!(images_named(&beta, &name).is_empty());
    match beta.get(&out.image.id) {
        Err(Error::Http { status: 404, .. }) => {}
        other => panic!("beta saw alpha's private image: {other:?}"),
    }
    // Nor does beta's publish of the same bytes reuse alpha's image.
    let theirs = publish(&beta, &request(&qcow2, qcow2_spec(&name))).unwrap();
    assert_eq!(theirs.action, Action::Uploaded);
    assert_ne!(theirs.image.id, out.image.id);

    delete_all(&alpha, &name);
    delete_all(&beta, &name);
}

#[test]
fn bad_password_is_a_clear_auth_error() {
    let os = openstack();
    let mut cloud = os.cloud("kiln-alpha");
    let AuthMethod::Password { password, .. } = &mut cloud.auth else {
        panic!("kiln-alpha is a password cloud")
    };
    *password = Secret::new("wrong-password-xyzzy");
    let err = Glance::connect(Arc::new(Session::new(cloud).unwrap())).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, Error::AuthFailed { status: 401, .. }),
        "{err:?}"
    );
    assert!(
        msg.starts_with("keystone at `http://127.0.0.1:")
            && msg.contains("refused the credentials of cloud `kiln-alpha` (401)"),
        "{msg}"
    );
    assert!(!msg.contains("xyzzy") && !format!("{err:?}").contains("xyzzy"));
}

#[test]
fn wrong_disk_format_is_a_clear_error_and_leaves_no_image() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    random_file(&raw, 1 << 20);
    let glance = os.glance("kiln-alpha");
    let name = unique("format");

    let err = publish(&glance, &request(&raw, qcow2_spec(&name))).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::FormatRejected { .. }), "{err:?}");
    assert!(
        msg.contains("as disk format `qcow2` (415)") && msg.contains("does not match"),
        "{msg}"
    );
    assert!(
        images_named(&glance, &name).is_empty(),
        "the rejected image was left behind"
    );
}

#[test]
fn recorded_digest_that_does_not_match_the_file_fails_and_leaves_no_image() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_qcow2(dir.path(), 1);
    let glance = os.glance("kiln-alpha");
    let name = unique("stale-digest");
    let mut req = request(&qcow2, qcow2_spec(&name));
    let mut known = Digests::default();
    known.set(Algo::Md5, "0".repeat(32));
    known.set(Algo::Sha512, "0".repeat(128));
    req.known = Some(known);

    let err = publish(&glance, &req).unwrap_err();
    assert!(
        err.to_string().starts_with(
            "md5 (the file differs from its recorded digest; glance `checksum`) mismatch"
        ),
        "{err}"
    );
    assert!(images_named(&glance, &name).is_empty());
}

#[test]
fn application_credential_reaches_the_same_project() {
    let os = openstack();
    let cloud = os.cloud("kiln-alpha-appcred");
    assert!(matches!(
        cloud.auth,
        AuthMethod::ApplicationCredential { .. }
    ));
    let appcred = os.glance("kiln-alpha-appcred");
    let password = os.glance("kiln-alpha");
    let a = appcred.session().token().unwrap().project_id;
    let p = password.session().token().unwrap().project_id;
    assert!(a.is_some());
    assert_eq!(a, p);
    appcred.list(&[("limit", "1")]).unwrap();
}

#[test]
fn region_and_interface_pick_the_catalog_endpoint() {
    let os = openstack();
    let one = os.glance("kiln-alpha");
    assert_eq!(
        one.base_url(),
        format!("{}/v2", os.env["GLANCE_URL"]),
        "RegionOne/public is the local Glance"
    );
    // RegionTwo's image endpoint is a closed port (see provision.py).
    let two = os.glance("kiln-alpha-region-two");
    assert_eq!(two.base_url(), "http://127.0.0.1:9/v2");
    assert!(matches!(two.list(&[]), Err(Error::Transport { .. })));
}

#[test]
fn token_is_reused_within_a_run_and_refreshed_near_expiry() {
    let os = openstack();
    let session = Arc::new(Session::new(os.cloud("kiln-alpha")).unwrap());
    let glance = Glance::connect(Arc::clone(&session)).unwrap();
    glance.list(&[("limit", "1")]).unwrap();
    glance.list(&[("limit", "1")]).unwrap();
    assert_eq!(session.auth_count(), 1, "the token was not reused");

    // Keystone's tokens here live one hour: a two-hour margin makes every token "about to expire".
    let eager = Arc::new(
        Session::new(os.cloud("kiln-alpha"))
            .unwrap()
            .with_refresh_margin(Duration::from_secs(7200)),
    );
    let glance = Glance::connect(Arc::clone(&eager)).unwrap();
    glance.list(&[("limit", "1")]).unwrap();
    glance.list(&[("limit", "1")]).unwrap();
    assert_eq!(
        eager.auth_count(),
        3,
        "tokens near expiry were not replaced"
    );
}

#[test]
fn corrupted_download_leaves_nothing_behind() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_qcow2(dir.path(), 1);
    let glance = os.glance("kiln-alpha");
    let name = unique("corrupt");
    let out = publish(&glance, &request(&qcow2, qcow2_spec(&name))).unwrap();

    // Flip a byte of the copy in Glance's file store, behind Glance's back.
    let stored = os.state.join("glance/images").join(&out.image.id);
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[4096] ^= 0xff;
    std::fs::write(&stored, bytes).unwrap();

    let dest_dir = tempfile::tempdir().unwrap();
    let dest = dest_dir.path().join("image");
    let err = download(&glance, &out.image.id, &dest, &Cancel::new()).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("md5 (glance `checksum`) mismatch for the download of glance image"),
        "{err}"
    );
    assert_eq!(std::fs::read_dir(dest_dir.path()).unwrap().count(), 0);

    delete_all(&glance, &name);
}

/// Starts `kiln-glance publish FILE` for cloud kiln-alpha in a child process.
fn spawn_publish(os: &common::OpenStack, file: &std::path::Path, name: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_kiln-glance"))
        .args(["publish", "--disk-format", "raw", "--name", name])
        .arg(file)
        .envs(os.child_env("kiln-alpha"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits until an image named `name` is `saving` (its data is on the way).
fn wait_for_saving(glance: &Glance, name: &str, child: &mut Child) -> String {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        if let Some(i) = images_named(glance, name)
            .into_iter()
            .find(|i| i.status == "saving")
        {
            return i.id;
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "the upload ended before it was interrupted"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("no `saving` image named `{name}` appeared");
}

#[test]
fn killed_upload_then_rerun_leaves_exactly_one_active_image() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.raw");
    random_file(&big, 256 << 20);
    let glance = os.glance("kiln-alpha");
    let name = unique("sigkill");

    let mut child = spawn_publish(&os, &big, &name);
    let killed = wait_for_saving(&glance, &name, &mut child);
    child.kill().unwrap(); // SIGKILL: no handler runs, the image stays half-made
    child.wait().unwrap();
    let left: Vec<_> = images_named(&glance, &name);
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].status, "active");

    let out = publish(&glance, &request(&big, ImageSpec::new(&name, "raw"))).unwrap();
    assert_eq!(out.action, Action::Uploaded);
    assert_eq!(out.removed_stale, vec![killed]);
    let images = images_named(&glance, &name);
    assert_eq!(images.len(), 1, "{images:?}");
    assert_eq!(images[0].status, "active");
    assert_eq!(images[0].id, out.image.id);

    delete_all(&glance, &name);
}

#[test]
fn ctrl_c_during_upload_deletes_the_image() {
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.raw");
    random_file(&big, 256 << 20);
    let glance = os.glance("kiln-alpha");
    let name = unique("sigint");

    let mut child = spawn_publish(&os, &big, &name);
    wait_for_saving(&glance, &name, &mut child);
    let st = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("kiln-glance: error: cancelled"), "{stderr}");
    assert!(
        images_named(&glance, &name).is_empty(),
        "the cancelled image was left behind"
    );
}

#[test]
fn glance_direct_import_publishes_a_verified_image() {
    // The interoperable import: stage, import with `glance-direct`, wait for `active`; the digests
    // come from the cache (known), so nothing is hashed while sending and Glance's record is
    // checked against them.
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_qcow2(dir.path(), 2);
    let glance = os.glance("kiln-alpha");
    let name = unique("import");
    let md5 = coreutils_digest("md5sum", &qcow2);
    let sha512 = coreutils_digest("sha512sum", &qcow2);
    let mut known = Digests::default();
    known.set(Algo::Md5, md5.clone());
    known.set(Algo::Sha512, sha512.clone());

    let reports = Arc::new(std::sync::Mutex::new(Vec::new()));
    let mut req = request(&qcow2, qcow2_spec(&name));
    req.method = UploadMethod::GlanceDirect;
    req.known = Some(known);
    req.force = true;
    req.progress = Some(kiln_glance::UploadProgress::new({
        let reports = reports.clone();
        move |sent, total| reports.lock().unwrap().push((sent, total))
    }));
    let out = publish(&glance, &req).unwrap();
    assert_eq!(out.action, Action::Uploaded);
    let len = std::fs::metadata(&qcow2).unwrap().len();
    assert_eq!(reports.lock().unwrap().last(), Some(&(len, len)));

    let image = glance.get(&out.image.id).unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(image.size, Some(len));
    assert_eq!(image.checksum.as_deref(), Some(md5.as_str()));
    assert_eq!(image.os_hash_value.as_deref(), Some(sha512.as_str()));
    assert_eq!(
        image.properties().get("os_type").map(String::as_str),
        Some("linux")
    );
    // It went through the import: Glance recorded the task (which may still be wrapping up when
    // the image is already `active`).
    let tasks = glance.image_tasks(&image.id).unwrap();
    assert!(
        !tasks.is_empty() && tasks.iter().all(|t| t.status != "failure"),
        "no import task, or a failed one: {tasks:?}"
    );
    assert_eq!(images_named(&glance, &name).len(), 1);
    delete_all(&glance, &name);
}

#[test]
fn a_cloud_that_forbids_put_gets_the_import_in_auto_mode_and_a_clear_error_in_put_mode() {
    // Project gamma's user may not `PUT …/file` (Glance's policy.yaml from start.sh), like clouds
    // that take data only through the interoperable import.
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let qcow2 = make_qcow2(dir.path(), 1);
    let glance = os.glance("kiln-gamma");
    let name = unique("import-only");

    let mut req = request(&qcow2, qcow2_spec(&name));
    req.method = UploadMethod::Put;
    let err = publish(&glance, &req).unwrap_err();
    assert!(
        matches!(err, Error::Http { status: 403, .. }),
        "expected a 403 on PUT: {err:?}"
    );
    assert!(err.to_string().contains("/file` answered 403"), "{err}");
    assert!(
        images_named(&glance, &name).is_empty(),
        "the refused image was left behind"
    );

    req.method = UploadMethod::Auto;
    let out = publish(&glance, &req).unwrap();
    assert_eq!(out.action, Action::Uploaded);
    let image = glance.get(&out.image.id).unwrap();
    assert_eq!(image.status, "active");
    assert_eq!(
        image.os_hash_value.as_deref(),
        Some(coreutils_digest("sha512sum", &qcow2).as_str())
    );
    // Exactly one image: the one refused on PUT was deleted before the import started.
    assert_eq!(images_named(&glance, &name).len(), 1);
    delete_all(&glance, &name);
}

#[test]
fn failed_import_is_a_clear_error_and_leaves_no_image() {
    // Glance inspects imported data like uploaded data: a raw file declared qcow2 fails the import
    // task; kiln reports Glance's reason and deletes the image.
    let os = openstack();
    let dir = tempfile::tempdir().unwrap();
    let raw = dir.path().join("disk.raw");
    random_file(&raw, 1 << 20);
    let glance = os.glance("kiln-alpha");
    let name = unique("import-bad");

    let mut req = request(&raw, qcow2_spec(&name));
    req.method = UploadMethod::GlanceDirect;
    let err = publish(&glance, &req).unwrap_err();
    let msg = err.to_string();
    eprintln!("the failed import: {msg}");
    assert!(
        matches!(
            err,
            Error::ImportFailed { .. } | Error::FormatRejected { .. }
        ),
        "{err:?}"
    );
    assert!(!msg.contains("glance gave no reason"), "{msg}");
    assert!(
        images_named(&glance, &name).is_empty(),
        "the failed import left its image behind"
    );
}
