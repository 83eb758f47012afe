//! Half-made images: every path that can leave a `queued` image behind either deletes it or names
//! it, and the stale-image sweep deletes only this user's uploads into this project. A fake Glance
//! (tests/fake) plays the failures a real one gives only by accident (a 5xx after the insert).

mod fake;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fake::{PROJECT_ID, USER_ID, openstack, respond, respond_json, within};
use kiln_glance::{Cancel, Error, ImageSpec, NamePolicy, PublishRequest, UploadMethod};
use serde_json::{Value, json};

/// A Glance that keeps images in memory. `create_status`: what a create answers after it has
/// inserted the image; `delete_status`: what a delete answers (204 deletes).
struct FakeGlance {
    images: Arc<Mutex<Vec<Value>>>,
    creates: Arc<AtomicUsize>,
}

fn fake_glance(
    create_status: u16,
    delete_status: u16,
    preload: Vec<Value>,
) -> (FakeGlance, Arc<kiln_glance::Session>, fake::Server) {
    let images = Arc::new(Mutex::new(preload));
    let creates = Arc::new(AtomicUsize::new(0));
    let (store, count) = (images.clone(), creates.clone());
    let (server, session) = openstack(move |req, s| {
        let mut store = store.lock().unwrap();
        match (req.method.as_str(), req.path()) {
            ("POST", "/v2/images") => {
                let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                let mut image: Value = serde_json::from_slice(&req.body).unwrap();
                image["id"] = json!(format!("img-{n}"));
                image["status"] = json!("queued");
                image["owner"] = json!(PROJECT_ID);
                store.push(image.clone());
                respond_json(s, create_status, &image);
            }
            ("GET", "/v2/images") => {
                let matching: Vec<Value> = store
                    .iter()
                    .filter(|i| {
                        ["name", "status"].iter().all(|k| {
                            req.query(k)
                                .is_none_or(|v| i[*k].as_str() == Some(v.as_str()))
                        })
                    })
                    .cloned()
                    .collect();
                respond_json(s, 200, &json!({ "images": matching }));
            }
            ("DELETE", path) => {
                let id = path.trim_start_matches("/v2/images/");
                if delete_status == 204 {
                    store.retain(|i| i["id"] != id);
                }
                respond(s, delete_status, &[], b"");
            }
            _ => respond(s, 404, &[], b"not here"),
        }
    });
    (FakeGlance { images, creates }, session, server)
}

fn request<'a>(path: &'a Path, name: &str) -> PublishRequest<'a> {
    PublishRequest {
        path,
        spec: ImageSpec::new(name, "raw"),
        known: None,
        force: true,
        name_policy: NamePolicy::SameName,
        method: UploadMethod::Put,
        cancel: Cancel::new(),
        progress: None,
    }
}

// Glance can insert the image and still answer 500 (a database error on the way back): each such
// create left a `queued` image no one would ever delete (the stale sweep only knows dead processes).
#[test]
fn create_answered_5xx_after_insert_leaves_no_queued_image() {
    let (fake, session, _server) = fake_glance(500, 204, Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, b"data").unwrap();
    let glance = fake::glance(&session);
    let err = within(Duration::from_secs(120), move || {
        kiln_glance::publish(&glance, &request(&file, "img")).unwrap_err()
    });
    assert!(
        matches!(err, Error::Http { status: 500, .. }),
        "{err:?}: {err}"
    );
    assert_eq!(fake.creates.load(Ordering::SeqCst), 3, "three attempts");
    assert_eq!(*fake.images.lock().unwrap(), Vec::<Value>::new());
}

// When that image cannot be deleted either, the error names it so the user can.
#[test]
fn create_5xx_whose_image_cannot_be_deleted_names_the_image() {
    let (fake, session, _server) = fake_glance(500, 403, Vec::new());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("disk.raw");
    std::fs::write(&file, b"data").unwrap();
    let glance = fake::glance(&session);
    let err = within(Duration::from_secs(120), move || {
        kiln_glance::publish(&glance, &request(&file, "img")).unwrap_err()
    });
    let msg = err.to_string();
    assert!(matches!(err, Error::CleanupFailed { .. }), "{err:?}");
    assert!(msg.contains("`img-1`"), "{msg}");
    assert!(msg.contains("openstack image delete img-1"), "{msg}");
    assert_eq!(
        fake.creates.load(Ordering::SeqCst),
        1,
        "no retry over a leak"
    );
}

// The sweep of stale half-made images must touch only this user's uploads into this project:
// an admin token may delete any project's image, and shared half-made images are listed too.
#[test]
fn remove_stale_removes_only_this_users_images_in_this_project() {
    let image = |id: &str, owner: &str, marker: &str| {
        json!({ "id": id, "name": "img", "status": "queued", "owner": owner,
                "kiln_uploader": marker, "updated_at": "2000-01-01T00:00:00Z" })
    };
    let dead = "other-boot/1/1";
    let preload = vec![
        image(
            "ours",
            PROJECT_ID,
            &format!("{dead}/{USER_ID}/{PROJECT_ID}"),
        ),
        image(
            "other-user",
            PROJECT_ID,
            &format!("{dead}/u-other/{PROJECT_ID}"),
        ),
        image(
            "other-project",
            "p-other",
            &format!("{dead}/{USER_ID}/p-other"),
        ),
        image("old-marker", PROJECT_ID, dead),
    ];
    let (fake, session, _server) = fake_glance(201, 204, preload);
    let glance = fake::glance(&session);
    let removed = within(Duration::from_secs(60), move || {
        kiln_glance::publish::remove_stale(&glance, "img").unwrap()
    });
    assert_eq!(removed, ["ours"]);
    let left: Vec<String> = fake
        .images
        .lock()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(left, ["other-user", "other-project", "old-marker"]);
}
