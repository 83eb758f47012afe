//! `kiln-cache-probe`: runs one kiln-cache operation in its own process, for the crate's multi-process
//! tests (crash, concurrency, lock interop) and for measuring memory with `/usr/bin/time -v`. Not a user
//! interface: `kiln cache` is.
//!
//! ```text
//! kiln-cache-probe fetch <root> <url|path|glance:ID=FILE> [checksum=..] [format=..] [raw] [user=..]
//! kiln-cache-probe build <root> <key> <bytes> [stall=<marker file>]
//! kiln-cache-probe lockf <lock file>          hold a classic lockf() lock, as Nova's oslo takes it
//! kiln-cache-probe hash <file> [algo...]
//! kiln-cache-probe memo <root> <file>
//! ```

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use kiln_cache::{
    Algo, ArtifactSpec, ArtifactStore, BaseCache, CacheRoot, FetchRequest, HashMemo, QemuImg,
    Source,
};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut msg = format!("error: {e}");
            let mut src = e.source();
            while let Some(s) = src {
                msg.push_str(&format!("\n  caused by: {s}"));
                src = s.source();
            }
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

type Error = Box<dyn std::error::Error>;

fn run(args: &[String]) -> Result<(), Error> {
    let arg = |i: usize| -> Result<&str, Error> {
        args.get(i)
            .map(String::as_str)
            .ok_or_else(|| format!("missing argument {i}; see the module docs").into())
    };
    let opt = |key: &str| {
        args.iter()
            .find_map(|a| a.strip_prefix(&format!("{key}=")).map(str::to_owned))
    };
    match arg(0)? {
        "fetch" => {
            let root = CacheRoot::new(arg(1)?);
            let spec = arg(2)?;
            let source = if let Some(rest) = spec.strip_prefix("glance:") {
                let (id, file) = rest.split_once('=').ok_or("glance:ID=FILE")?;
                let file = PathBuf::from(file);
                Source::Glance {
                    image_id: id.to_owned(),
                    open: Box::new(move || {
                        Ok(Box::new(std::fs::File::open(file)?) as Box<dyn std::io::Read + Send>)
                    }),
                }
            } else if spec.contains("://") {
                Source::Url(spec.to_owned())
            } else {
                Source::Path(spec.into())
            };
            let mut req = FetchRequest::new(source);
            if let Some(c) = opt("checksum") {
                req = req.checksum(c.parse()?);
            }
            if let Some(f) = opt("format") {
                req = req.disk_format(f);
            }
            if args.iter().any(|a| a == "raw") {
                req = req.convert_to_raw();
            }
            if let Some(u) = opt("user") {
                req = req.user(u);
            }
            let entry = BaseCache::new(root, QemuImg::from_env()).ensure(req)?;
            println!(
                "{}",
                serde_json::json!({
                    "name": entry.name(),
                    "path": entry.path,
                    "reused": entry.reused,
                    "sha256": entry.record.digests.sha256,
                })
            );
        }
        "build" => {
            let root = CacheRoot::new(arg(1)?);
            let key = arg(2)?.parse()?;
            let bytes: usize = arg(3)?.parse()?;
            let stall = opt("stall");
            let store = ArtifactStore::new(root);
            let a = store.get_or_build(&key, ArtifactSpec::default(), |s| {
                let mut w = s.create("out.bin")?;
                w.write_all(&vec![0x5a; bytes])?;
                if let Some(marker) = &stall {
                    w.flush()?;
                    std::fs::write(marker, b"")?;
                    std::thread::sleep(std::time::Duration::from_secs(600));
                }
                s.commit_writer("out.bin", w)
            })?;
            println!(
                "{}",
                serde_json::json!({ "dir": a.dir, "reused": a.reused })
            );
        }
        "lockf" => {
            let path = arg(1)?;
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            // What Python's fcntl.lockf(f, LOCK_EX) does for oslo_concurrency's external locks.
            // SAFETY: the descriptor stays open while the lock is held.
            let rc =
                unsafe { libc::lockf(std::os::fd::AsRawFd::as_raw_fd(&file), libc::F_LOCK, 0) };
            if rc != 0 {
                return Err(std::io::Error::last_os_error().into());
            }
            println!("locked");
            std::io::stdout().flush()?;
            // Hold the lock until stdin closes (or we are killed).
            let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
            drop(file);
        }
        "hash" => {
            let algos: Vec<Algo> = if args.len() > 2 {
                args[2..]
                    .iter()
                    .map(|a| a.parse())
                    .collect::<Result<_, _>>()?
            } else {
                vec![Algo::Md5, Algo::Sha256, Algo::Sha512]
            };
            let (n, d) = kiln_cache::hash_file(arg(1)?, &algos)?;
            println!("{}", serde_json::json!({ "bytes": n, "digests": d }));
        }
        "memo" => {
            let root = CacheRoot::new(arg(1)?);
            let h = HashMemo::new(root.memo_dir())
                .hash(arg(2)?.as_ref(), &[Algo::Md5, Algo::Sha256, Algo::Sha512])?;
            println!(
                "{}",
                serde_json::json!({ "bytes": h.size, "from_memo": h.from_memo, "digests": h.digests })
            );
        }
        other => return Err(format!("unknown command `{other}`").into()),
    }
    Ok(())
}
