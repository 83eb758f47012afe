//! [`Hypervisor`] on libvirt through the `virt` crate: one connection per host.
//!
//! Before the first connection the process registers libvirt's default event loop and runs it on a
//! thread, so every connection gets keepalive: a host whose link dies makes calls fail within
//! seconds instead of hanging (see docs/decisions/libvirt-event-loop.md).

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use virt::connect::Connect;
use virt::domain::{Domain, DomainState as VirtState};
use virt::enumutil::Enum;
use virt::error::{Error as VirtError, ErrorNumber};
use virt::stream::Stream;

use crate::hypervisor::{DomainState, Hypervisor, HypervisorError};

/// Keepalive: a probe every `INTERVAL` seconds, the connection is dead after `COUNT` unanswered.
const KEEPALIVE_INTERVAL: i32 = 5;
const KEEPALIVE_COUNT: u32 = 3;

/// A connection to one libvirt host.
pub struct Libvirt {
    uri: String,
    conn: Connect,
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
        if event_loop {
            // Local unix-socket connections refuse keepalive on some versions; that's harmless.
            let _ = conn.set_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
        }
        Ok(Self {
            uri: uri.to_owned(),
            conn,
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
