//! [`Hypervisor`] on libvirt through the `virt` crate: one connection per host.
//!
//! Before the first connection the process registers libvirt's default event loop and runs it on a
//! thread, so every connection gets keepalive: a host whose link dies makes calls fail within
//! seconds instead of hanging (see docs/decisions/libvirt-event-loop.md). The same loop delivers
//! domain lifecycle events: [`Hypervisor::wait_events`] wakes the guest runner the moment a guest
//! powers off instead of at its next poll.

use std::collections::HashMap;
use std::ffi::{CStr, c_int, c_void};
use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use virt::connect::Connect;
use virt::domain::{Domain, DomainState as VirtState};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::stream::Stream;

use crate::hypervisor::{DomainState, Hypervisor, HypervisorError, LifecycleEvent, LocalProcess};

/// Keepalive: a probe every `INTERVAL` seconds, the connection is dead after `COUNT` unanswered.
const KEEPALIVE_INTERVAL: i32 = 5;
const KEEPALIVE_COUNT: u32 = 3;

/// A connection to one libvirt host.
pub struct Libvirt {
    uri: String,
    conn: Connect,
    /// Lifecycle events of watched domains and the callback's id; `None` when no callback could
    /// be registered.
    events: Option<(Arc<Events>, c_int)>,
}

impl Drop for Libvirt {
    fn drop(&mut self) {
        if let Some((_, id)) = self.events.take() {
            // SAFETY: the connection is still open; `id` was returned by the registration.
            unsafe {
                virt::sys::virConnectDomainEventDeregisterAny(self.conn.as_ptr(), id);
            }
        }
    }
}

/// Lifecycle events per watched domain name, filled by the event-loop thread.
#[derive(Default)]
struct Events {
    seen: Mutex<HashMap<String, Vec<LifecycleEvent>>>,
    arrived: Condvar,
}

impl Events {
    fn push(&self, name: &str, event: LifecycleEvent) {
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(list) = seen.get_mut(name) {
            list.push(event);
            self.arrived.notify_all();
        }
    }
}

/// Called by libvirt on the event-loop thread for every domain lifecycle event of the connection.
unsafe extern "C" fn lifecycle_callback(
    _conn: virt::sys::virConnectPtr,
    dom: virt::sys::virDomainPtr,
    event: c_int,
    _detail: c_int,
    opaque: *mut c_void,
) -> c_int {
    // SAFETY: `opaque` is the `Arc<Events>` leaked in `register_events`, freed only by
    // `free_events` after libvirt stops calling this callback.
    let events = unsafe { &*opaque.cast::<Events>() };
    // SAFETY: libvirt passes a valid domain for the duration of the call; the name it returns
    // belongs to the domain object.
    let name = unsafe { virt::sys::virDomainGetName(dom) };
    if name.is_null() {
        return 0;
    }
    // SAFETY: non-null, NUL-terminated, valid while `dom` is.
    let name = unsafe { CStr::from_ptr(name) }.to_string_lossy();
    let event = match u32::try_from(event).unwrap_or(u32::MAX) {
        virt::sys::VIR_DOMAIN_EVENT_SHUTDOWN => LifecycleEvent::Shutdown,
        virt::sys::VIR_DOMAIN_EVENT_STOPPED => LifecycleEvent::Stopped,
        virt::sys::VIR_DOMAIN_EVENT_SUSPENDED => LifecycleEvent::Suspended,
        virt::sys::VIR_DOMAIN_EVENT_CRASHED => LifecycleEvent::Crashed,
        _ => LifecycleEvent::Other,
    };
    events.push(&name, event);
    0
}

unsafe extern "C" fn free_events(opaque: *mut c_void) {
    // SAFETY: the pointer came from `Arc::into_raw` in `register_events`; libvirt calls this once.
    drop(unsafe { Arc::from_raw(opaque.cast::<Events>().cast_const()) });
}

/// Registers the lifecycle callback on `conn` (needs the event loop).
fn register_events(conn: &Connect) -> Option<(Arc<Events>, c_int)> {
    let events = Arc::new(Events::default());
    let opaque = Arc::into_raw(Arc::clone(&events))
        .cast_mut()
        .cast::<c_void>();
    type Lifecycle = unsafe extern "C" fn(
        virt::sys::virConnectPtr,
        virt::sys::virDomainPtr,
        c_int,
        c_int,
        *mut c_void,
    ) -> c_int;
    type Generic =
        unsafe extern "C" fn(virt::sys::virConnectPtr, virt::sys::virDomainPtr, *mut c_void);
    // SAFETY: libvirt calls a generic callback with the signature of the event id it was
    // registered for (`VIR_DOMAIN_EVENT_CALLBACK` in C does the same cast).
    let generic = unsafe { std::mem::transmute::<Lifecycle, Generic>(lifecycle_callback) };
    // SAFETY: `conn` is open; `opaque` stays valid until libvirt calls `free_events`.
    let id = unsafe {
        virt::sys::virConnectDomainEventRegisterAny(
            conn.as_ptr(),
            std::ptr::null_mut(),
            c_int::try_from(virt::sys::VIR_DOMAIN_EVENT_ID_LIFECYCLE).unwrap_or(0),
            Some(generic),
            opaque,
            Some(free_events),
        )
    };
    if id < 0 {
        // SAFETY: not registered, so libvirt will not free it.
        unsafe { free_events(opaque) };
        return None;
    }
    Some((events, id))
}

impl std::fmt::Debug for Libvirt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Libvirt")
            .field("uri", &self.uri)
            .finish_non_exhaustive()
    }
}

/// Sets up libvirt for this process once: no error printing to stderr, the default event loop on
/// a background thread. Returns whether the event loop is running.
fn init_process() -> bool {
    static EVENT_LOOP: OnceLock<bool> = OnceLock::new();
    *EVENT_LOOP.get_or_init(|| {
        virt::error::clear_error_callback();
        if virt::event::event_register_default_impl().is_err() {
            return false;
        }
        std::thread::Builder::new()
            .name("libvirt-events".into())
            .spawn(|| {
                loop {
                    if virt::event::event_run_default_impl().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                }
            })
            .is_ok()
    })
}

impl Libvirt {
    /// Opens a connection to `uri` (e.g. `qemu:///system`) with keepalive.
    ///
    /// # Errors
    /// The daemon does not answer or refuses the connection.
    pub fn connect(uri: &str) -> Result<Self, HypervisorError> {
        let event_loop = init_process();
        let conn = Connect::open(Some(uri)).map_err(|e| err(uri, "connect", &e))?;
        let mut events = None;
        if event_loop {
            // Local unix-socket connections refuse keepalive on some versions; that's harmless.
            let _ = conn.set_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
            events = register_events(&conn);
        }
        Ok(Self {
            uri: uri.to_owned(),
            conn,
            events,
        })
    }

    /// `(host cpus, host memory in MiB)` from libvirt's node info.
    ///
    /// # Errors
    /// The call failed.
    pub fn node_resources(&self) -> Result<(u32, u64), HypervisorError> {
        let info = self
            .conn
            .node_info()
            .map_err(|e| err(&self.uri, "node info", &e))?;
        Ok((info.cpus, info.memory / 1024))
    }

    fn lookup(&self, name: &str, op: &str) -> Result<Option<Domain>, HypervisorError> {
        match self.conn.lookup_domain_by_name(name) {
            Ok(d) => Ok(Some(d)),
            Err(e) if is_no_domain(&e) => Ok(None),
            Err(e) => Err(err(&self.uri, &format!("{op} `{name}`"), &e)),
        }
    }
}

impl Hypervisor for Libvirt {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn define(&self, xml: &str) -> Result<(), HypervisorError> {
        self.conn
            .define_domain_xml(xml)
            .map(drop)
            .map_err(|e| err(&self.uri, "define", &e))
    }

    fn create_transient(&self, xml: &str) -> Result<(), HypervisorError> {
        self.conn
            .create_domain_xml(xml, 0)
            .map(drop)
            .map_err(|e| err(&self.uri, "create", &e))
    }

    fn start(&self, name: &str) -> Result<(), HypervisorError> {
        let op = format!("start `{name}`");
        let dom = self
            .lookup(name, "start")?
            .ok_or_else(|| missing(&self.uri, &op))?;
        dom.create().map(drop).map_err(|e| err(&self.uri, &op, &e))
    }

    fn state(&self, name: &str) -> Result<(DomainState, bool), HypervisorError> {
        let Some(dom) = self.lookup(name, "state of")? else {
            return Ok((DomainState::ShutOff, false));
        };
        // virt's state() swallows the error and reports an unknown state; report that as such.
        let (state, _reason) = dom
            .state()
            .map_err(|e| err(&self.uri, &format!("state of `{name}`"), &e))?;
        let state = match state {
            Enum::Known(VirtState::Running | VirtState::Blocked) => DomainState::Running,
            Enum::Known(VirtState::Paused) => DomainState::Paused,
            Enum::Known(VirtState::Shutdown) => DomainState::ShuttingDown,
            Enum::Known(VirtState::Shutoff) => DomainState::ShutOff,
            Enum::Known(VirtState::Crashed) => DomainState::Crashed,
            Enum::Known(VirtState::PMSuspended) => DomainState::PmSuspended,
            Enum::Known(VirtState::NoState) | Enum::Unknown(_) => DomainState::Unknown,
        };
        Ok((state, true))
    }

    fn destroy(&self, name: &str) -> Result<(), HypervisorError> {
        let Some(dom) = self.lookup(name, "destroy")? else {
            return Ok(());
        };
        match dom.destroy() {
            Ok(()) => Ok(()),
            Err(e) if is_no_domain(&e) || is_not_running(&e) => Ok(()),
            Err(e) => Err(err(&self.uri, &format!("destroy `{name}`"), &e)),
        }
    }

    fn undefine(&self, name: &str) -> Result<(), HypervisorError> {
        let Some(dom) = self.lookup(name, "undefine")? else {
            return Ok(());
        };
        let flags = virt::sys::VIR_DOMAIN_UNDEFINE_NVRAM | virt::sys::VIR_DOMAIN_UNDEFINE_TPM;
        match dom.undefine_flags(flags) {
            Ok(()) => Ok(()),
            // A transient domain cannot be undefined; it vanishes when destroyed.
            Err(e) if is_no_domain(&e) || is_not_running(&e) => Ok(()),
            Err(e) => Err(err(&self.uri, &format!("undefine `{name}`"), &e)),
        }
    }

    fn send_key(&self, name: &str, keycodes: &[u32]) -> Result<(), HypervisorError> {
        let op = format!("key press on `{name}`");
        let dom = self
            .lookup(name, "key press on")?
            .ok_or_else(|| missing(&self.uri, &op))?;
        let mut keys = keycodes.to_vec();
        let n = i32::try_from(keys.len()).unwrap_or(i32::MAX);
        // VIR_KEYCODE_SET_LINUX; a 50 ms hold, as `virsh send-key` uses by default.
        dom.send_key(
            virt::sys::VIR_KEYCODE_SET_LINUX,
            50,
            keys.as_mut_ptr(),
            n,
            0,
        )
        .map_err(|e| err(&self.uri, &op, &e))
    }

    fn screenshot(&self, name: &str, stem: &Path) -> Result<PathBuf, HypervisorError> {
        let op = format!("screenshot of `{name}`");
        let dom = self
            .lookup(name, "screenshot of")?
            .ok_or_else(|| missing(&self.uri, &op))?;
        let stream = Stream::new(&self.conn, 0).map_err(|e| err(&self.uri, &op, &e))?;
        let mime = match dom.screenshot(&stream, 0, 0) {
            Ok(m) => m,
            Err(e) => {
                let _ = stream.abort();
                return Err(err(&self.uri, &op, &e));
            }
        };
        let ext = match mime.as_str() {
            "image/png" => "png",
            "image/x-portable-pixmap" => "ppm",
            _ => "img",
        };
        let path = stem.with_extension(ext);
        let io = |e: std::io::Error| HypervisorError {
            uri: self.uri.clone(),
            op: op.clone(),
            message: format!("writing `{}`: {e}", path.display()),
            no_domain: false,
        };
        let mut file = File::create(&path).map_err(io)?;
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            match stream.recv(&mut buf) {
                Ok(0) => break,
                Ok(n) => file.write_all(&buf[..n.unsigned_abs()]).map_err(io)?,
                Err(e) => {
                    let _ = stream.abort();
                    return Err(err(&self.uri, &op, &e));
                }
            }
        }
        stream.finish().map_err(|e| err(&self.uri, &op, &e))?;
        Ok(path)
    }

    fn watch(&self, name: &str) -> bool {
        let Some((events, _)) = &self.events else {
            return false;
        };
        events
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_owned(), Vec::new());
        true
    }

    fn wait_events(&self, name: &str, timeout: Duration) -> Vec<LifecycleEvent> {
        let Some((events, _)) = &self.events else {
            std::thread::sleep(timeout);
            return Vec::new();
        };
        let deadline = Instant::now() + timeout;
        let mut seen = events
            .seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        loop {
            match seen.get_mut(name) {
                Some(list) if !list.is_empty() => return std::mem::take(list),
                Some(_) => {}
                None => {
                    drop(seen);
                    std::thread::sleep(timeout);
                    return Vec::new();
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Vec::new();
            }
            seen = events
                .arrived
                .wait_timeout(seen, deadline - now)
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0;
        }
    }

    fn unwatch(&self, name: &str) {
        if let Some((events, _)) = &self.events {
            events
                .seen
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(name);
        }
    }

    fn local_process(&self, name: &str) -> Option<LocalProcess> {
        if self.uri != crate::host::LOCAL_URI {
            return None;
        }
        let pid = std::fs::read_to_string(format!("/run/libvirt/qemu/{name}.pid")).ok()?;
        LocalProcess::of_pid(pid.trim().parse().ok()?)
    }

    fn destroy_detached(&self, name: &str) {
        let lv = Libvirt {
            uri: self.uri.clone(),
            conn: self.conn.clone(),
            events: None,
        };
        let owned = name.to_owned();
        let spawned = std::thread::Builder::new()
            .name("libvirt-destroy".into())
            .spawn(move || {
                let _ = lv.destroy(&owned);
            });
        if spawned.is_err() {
            let _ = self.destroy(name);
        }
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, HypervisorError> {
        let doms = self
            .conn
            .list_all_domains(0)
            .map_err(|e| err(&self.uri, "list domains", &e))?;
        let mut names: Vec<String> = doms
            .iter()
            .filter_map(|d| d.name().ok())
            .filter(|n| n.starts_with(prefix))
            .collect();
        names.sort();
        Ok(names)
    }
}

fn is_no_domain(e: &VirtError) -> bool {
    matches!(e.code(), Enum::Known(ErrorNumber::NoDomain))
}

fn is_not_running(e: &VirtError) -> bool {
    matches!(e.code(), Enum::Known(ErrorNumber::OperationInvalid))
}

fn err(uri: &str, op: &str, e: &VirtError) -> HypervisorError {
    HypervisorError {
        uri: uri.to_owned(),
        op: op.to_owned(),
        message: e.message().to_owned(),
        no_domain: is_no_domain(e),
    }
}

fn missing(uri: &str, op: &str) -> HypervisorError {
    HypervisorError {
        uri: uri.to_owned(),
        op: op.to_owned(),
        message: "no such domain".into(),
        no_domain: true,
    }
}
