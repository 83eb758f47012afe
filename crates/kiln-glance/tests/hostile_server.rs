//! Keystone and Glance answers a real server gives only when it is broken or hostile: redirects
//! to another host, endless or stalled bodies, paging loops, far-future token expiry. Served by
//! a small local fake (tests/fake); the protocol paths a real cloud exercises are in openstack.rs.

mod fake;

use std::io::Read as _;
use std::time::Duration;

use fake::{PASSWORD, Server, TOKEN, openstack, respond, respond_json, within};
use kiln_glance::{Error, Session};
use serde_json::json;

// A 307 from Keystone would make the client POST the password again, to wherever it points.
#[test]
fn keystone_redirect_to_another_port_is_refused_and_the_password_stays_home() {
    let elsewhere = Server::start(|_, s| respond(s, 500, &[], b"caught"));
    let target = format!("{}/v3/auth/tokens", elsewhere.url());
    let keystone = Server::start(move |_, s| respond(s, 307, &[("Location", &target)], b""));
    let session = Session::new(fake::cloud(&keystone.url())).unwrap();
    let err = within(Duration::from_secs(60), move || {
        session.token().unwrap_err()
    });
    assert!(
        elsewhere.received().is_empty(),
        "the redirect was followed: {:?}",
        elsewhere.received()
    );
    assert!(
        matches!(err, Error::RedirectRefused { .. }),
        "{err:?}: {err}"
    );
    let msg = err.to_string();
    assert!(msg.contains("which kiln does not follow"), "{msg}");
    assert!(!msg.contains(PASSWORD), "{msg}");
}

// A Glance redirect to another host must not carry the token there.
#[test]
fn glance_redirect_to_another_host_does_not_carry_the_token() {
    let elsewhere = Server::start(|_, s| respond_json(s, 200, &json!({"id": "x"})));
    let target = format!("{}/v2/images/x", elsewhere.url());
    let (_server, session) = openstack(move |_, s| respond(s, 302, &[("Location", &target)], b""));
    let glance = fake::glance(&session);
    let err = within(Duration::from_secs(60), move || {
        glance.get("x").unwrap_err()
    });
    let leaked: Vec<_> = elsewhere
        .received()
        .into_iter()
        .filter(|r| r.headers.get("x-auth-token").map(String::as_str) == Some(TOKEN))
        .collect();
    assert!(
        leaked.is_empty(),
        "the token reached another host: {leaked:?}"
    );
    assert!(
        matches!(err, Error::RedirectRefused { .. }),
        "{err:?}: {err}"
    );
}

// A redirect within the same host and port (a trailing-slash fix-up) still works.
#[test]
fn redirect_within_the_same_host_is_followed() {
    let (server, session) = openstack(|req, s| {
        if req.path() == "/v2/images/old" {
            respond(s, 301, &[("Location", "/v2/images/new")], b"");
        } else {
            respond_json(s, 200, &json!({"id": "new", "status": "active"}));
        }
    });
    let glance = fake::glance(&session);
    let image = within(Duration::from_secs(60), move || glance.get("old").unwrap());
    assert_eq!(image.id, "new");
    assert!(
        server
            .received()
            .iter()
            .any(|r| r.path() == "/v2/images/new")
    );
}

// A huge JSON answer (here 64 MiB without a length, as an endless one starts) must fail at the
// cap, not be read into memory.
#[test]
fn huge_json_body_fails_at_the_cap() {
    let (_server, session) = openstack(|_, s| {
        use std::io::Write;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"images\": [");
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..64 {
            if s.write_all(&chunk).is_err() {
                break;
            }
        }
    });
    let glance = fake::glance(&session);
    let err = within(Duration::from_secs(120), move || {
        glance.list(&[("name", "x")]).unwrap_err()
    });
    assert!(matches!(err, Error::BodyTooLarge { .. }), "{err:?}: {err}");
    assert!(
        err.to_string().contains("more than 16777216 bytes"),
        "{err}"
    );
}

// A Glance whose `next` link always gives the same page would make the listing run forever.
#[test]
fn paging_loop_is_detected() {
    let (server, session) = openstack(|_, s| {
        respond_json(
            s,
            200,
            &json!({"images": [{"id": "same", "status": "queued"}],
                    "next": "/v2/images?marker=same"}),
        );
    });
    let glance = fake::glance(&session);
    let err = within(Duration::from_secs(60), move || {
        glance.list(&[("name", "x")]).unwrap_err()
    });
    assert!(
        err.to_string().contains("the listing pages in a loop"),
        "{err}"
    );
    // Two pages, then the loop is seen.
    let pages = server
        .received()
        .iter()
        .filter(|r| r.path() == "/v2/images")
        .count();
    assert_eq!(pages, 2);
}

// A download whose server stops sending mid-body fails after the stall timeout instead of
// waiting forever.
#[test]
fn stalled_download_fails_after_the_stall_timeout() {
    let (_server, session) = fake::openstack_with_stall(
        |req, s| {
            use std::io::Write;
            if req.path() == "/v2/images/img/file" {
                let _ = s.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n0123456789",
                );
                let _ = s.flush();
                std::thread::sleep(Duration::from_secs(600));
            } else {
                respond_json(
                    s,
                    200,
                    &json!({"id": "img", "status": "active", "size": 1000,
                            "checksum": "0", "os_hash_algo": "sha512", "os_hash_value": "0"}),
                );
            }
        },
        Some(Duration::from_secs(2)),
    );
    let glance = fake::glance(&session);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("img");
    let started = std::time::Instant::now();
    let d = dest.clone();
    let err = within(Duration::from_secs(60), move || {
        kiln_glance::download(&glance, "img", &d, &kiln_glance::Cancel::new()).unwrap_err()
    });
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(
        err.to_string()
            .contains("download (glance stopped sending)"),
        "{err}"
    );
    assert!(!dest.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

// Keystone may send a far-future `expires_at` (year 9999, JavaScript's 275760, or absurd): the
// token is used, never a panic.
#[test]
fn far_future_token_expiry_is_valid_for_a_long_time() {
    for expires in [
        "9999-12-31T23:59:59Z",
        "275760-09-13T00:00:00.000000Z",
        "9223372036854775807-01-01T00:00:00Z",
    ] {
        let e = expires.to_owned();
        let keystone = Server::start(move |_, s| fake::token_answer(s, "http://127.0.0.1:1", &e));
        let session = Session::new(fake::cloud(&keystone.url())).unwrap();
        let token = within(Duration::from_secs(60), move || {
            let t = session.token().unwrap();
            // Reused, not fetched again.
            session.token().unwrap();
            assert_eq!(session.auth_count(), 1);
            t
        });
        assert!(token.valid_until > std::time::Instant::now() + Duration::from_secs(24 * 3600));
    }
}

// An upload to a server that stops taking data (its receive window stays at zero) fails after
// the stall timeout instead of holding the publish forever.
#[test]
fn upload_to_a_server_that_stops_reading_fails_after_the_stall_timeout() {
    let sink = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let sink_url = format!("http://127.0.0.1:{}", sink.local_addr().unwrap().port());
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for s in sink.incoming() {
            // Accept and never read: the client's data piles up until the window is zero.
            held.push(s);
        }
    });
    let keystone = Server::start(move |_, s| {
        fake::token_answer(s, &sink_url, "2099-01-01T00:00:00Z");
    });
    let session = Session::new(fake::cloud(&keystone.url()))
        .unwrap()
        .with_stall_timeout(Duration::from_secs(3))
        .unwrap();
    let glance = kiln_glance::Glance::connect(std::sync::Arc::new(session)).unwrap();
    let started = std::time::Instant::now();
    let len: u64 = 256 << 20;
    let err = within(Duration::from_secs(120), move || {
        glance
            .upload("img", std::io::repeat(7).take(len), len)
            .unwrap_err()
    });
    assert!(
        matches!(err, Error::Transport { method: "PUT", .. }),
        "{err:?}: {err}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
}
