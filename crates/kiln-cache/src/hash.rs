//! One-pass hashing: md5 (Glance `checksum`), sha1, sha256 and sha512 (Glance `os_hash_value`) computed
//! in a single read of the data.
//!
//! The digests run on a few threads (one per digest, at most one per core). The caller's bytes are gathered
//! into 1 MiB chunks queued once and shared (`Arc`) by every digest; each thread takes the digest furthest
//! behind that no other thread is running, so wall time approaches max(slowest digest, total / cores)
//! rather than the sum, and memory stays bounded (a few chunks in flight, recycled). With a single
//! algorithm no thread is started: the digest runs inline.
//!
//! The digest code is assembly: AWS-LC's (linked already for rustls) for md5, sha1 and sha256 (md5 runs on
//! one AVX-512 lane instead where the CPU has AVX-512VL, see `md5_avx512`), and the
//! system's OpenSSL 3 for sha512 when `libcrypto.so.3` can be loaded (AWS-LC's otherwise). See
//! docs/decisions/cache-hashing.md for the measurements.
//!
//! [`HashingReader`] hashes what passes through a reader (uploads), [`HashingWriter`] what passes through a
//! writer (fetch-and-write), so no artifact has to be read twice.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::thread;

use serde::{Deserialize, Serialize};

#[cfg(target_arch = "x86_64")]
mod md5_avx512;

/// Size of the chunks handed to the digest threads.
pub const CHUNK: usize = 1 << 20;

/// Chunks queued before the producer waits (the fastest digest may run this far ahead of the slowest).
const DEPTH: usize = 4;

/// A digest algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algo {
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl Algo {
    /// Every algorithm, in a fixed order.
    pub const ALL: [Algo; 4] = [Algo::Md5, Algo::Sha1, Algo::Sha256, Algo::Sha512];

    /// The lowercase name (`md5`, `sha1`, `sha256`, `sha512`).
    pub fn name(self) -> &'static str {
        match self {
            Algo::Md5 => "md5",
            Algo::Sha1 => "sha1",
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }

    /// Length of the lowercase hex form of this digest.
    pub fn hex_len(self) -> usize {
        match self {
            Algo::Md5 => 32,
            Algo::Sha1 => 40,
            Algo::Sha256 => 64,
            Algo::Sha512 => 128,
        }
    }
}

impl fmt::Display for Algo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An algorithm name that is not one of `md5`, `sha1`, `sha256`, `sha512`.
#[derive(Debug, thiserror::Error)]
#[error("unknown digest algorithm `{0}` (expected `md5`, `sha1`, `sha256` or `sha512`)")]
pub struct UnknownAlgo(pub String);

impl FromStr for Algo {
    type Err = UnknownAlgo;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "md5" => Ok(Algo::Md5),
            "sha1" => Ok(Algo::Sha1),
            "sha256" => Ok(Algo::Sha256),
            "sha512" => Ok(Algo::Sha512),
            _ => Err(UnknownAlgo(s.to_owned())),
        }
    }
}

/// Lowercase hex digests; a field is `None` when that algorithm was not requested.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Digests {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha512: Option<String>,
}

impl Digests {
    /// The hex digest for `algo`, if it was computed.
    pub fn get(&self, algo: Algo) -> Option<&str> {
        match algo {
            Algo::Md5 => self.md5.as_deref(),
            Algo::Sha1 => self.sha1.as_deref(),
            Algo::Sha256 => self.sha256.as_deref(),
            Algo::Sha512 => self.sha512.as_deref(),
        }
    }

    /// Sets the hex digest for `algo`.
    pub fn set(&mut self, algo: Algo, hex: String) {
        let slot = match algo {
            Algo::Md5 => &mut self.md5,
            Algo::Sha1 => &mut self.sha1,
            Algo::Sha256 => &mut self.sha256,
            Algo::Sha512 => &mut self.sha512,
        };
        *slot = Some(hex);
    }

    /// True when every algorithm in `algos` has a digest.
    pub fn covers(&self, algos: &[Algo]) -> bool {
        algos.iter().all(|a| self.get(*a).is_some())
    }

    /// The computed digests, in [`Algo::ALL`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Algo, &str)> {
        Algo::ALL
            .into_iter()
            .filter_map(|a| self.get(a).map(|h| (a, h)))
    }

    /// Adds the digests of `other` that `self` lacks.
    pub fn merge(&mut self, other: &Digests) {
        for (algo, hex) in other.iter() {
            if self.get(algo).is_none() {
                self.set(algo, hex.to_owned());
            }
        }
    }
}

/// One running digest.
enum Engine {
    Md5(Md5),
    Sha1(lc::Sha1),
    Sha256(lc::Sha256),
    Sha512(Sha512),
}

impl Engine {
    fn new(algo: Algo) -> Self {
        match algo {
            Algo::Md5 => Engine::Md5(Md5::new()),
            Algo::Sha1 => Engine::Sha1(lc::Sha1::new()),
            Algo::Sha256 => Engine::Sha256(lc::Sha256::new()),
            Algo::Sha512 => Engine::Sha512(Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Engine::Md5(h) => h.update(data),
            Engine::Sha1(h) => h.update(data),
            Engine::Sha256(h) => h.update(data),
            Engine::Sha512(h) => h.update(data),
        }
    }

    fn finish_hex(self) -> String {
        match self {
            Engine::Md5(h) => hex::encode(h.finish()),
            Engine::Sha1(h) => hex::encode(h.finish()),
            Engine::Sha256(h) => hex::encode(h.finish()),
            Engine::Sha512(h) => hex::encode(h.finish()),
        }
    }
}

/// md5 on AVX-512 when the CPU has it (~20% faster: a step is 4 cycles deep instead of 5, see
/// `md5_avx512`), else AWS-LC's assembly.
enum Md5 {
    #[cfg(target_arch = "x86_64")]
    Avx512(md5_avx512::Md5),
    Lc(lc::Md5),
}

impl Md5 {
    fn new() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(h) = md5_avx512::Md5::new() {
            return Md5::Avx512(h);
        }
        Md5::Lc(lc::Md5::new())
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Md5::Avx512(h) => h.update(data),
            Md5::Lc(h) => h.update(data),
        }
    }

    fn finish(self) -> [u8; 16] {
        match self {
            #[cfg(target_arch = "x86_64")]
            Md5::Avx512(h) => h.finish(),
            Md5::Lc(h) => h.finish(),
        }
    }
}

/// sha512 from the system's OpenSSL 3 when it can be loaded (its AVX2 code is ~10% faster than AWS-LC's
/// AVX code), else from AWS-LC.
enum Sha512 {
    OpenSsl(ossl::Sha512),
    Lc(lc::Sha512),
}

impl Sha512 {
    fn new() -> Self {
        match ossl::Sha512::new() {
            Some(h) => Sha512::OpenSsl(h),
            None => Sha512::Lc(lc::Sha512::new()),
        }
    }

    fn update(&mut self, data: &[u8]) {
        match self {
            Sha512::OpenSsl(h) => h.update(data),
            Sha512::Lc(h) => h.update(data),
        }
    }

    fn finish(self) -> [u8; 64] {
        match self {
            Sha512::OpenSsl(h) => h.finish(),
            Sha512::Lc(h) => h.finish(),
        }
    }
}

/// The system's `libcrypto.so.3`, opened at run time (so kiln neither needs it to build nor to run): its
/// EVP sha512. `None` when the library or a symbol is missing or the digest cannot be initialised.
mod ossl {
    use std::ffi::{CStr, c_int, c_uint, c_void};
    use std::ptr::NonNull;
    use std::sync::OnceLock;

    type Ctx = *mut c_void;

    /// Entry points of OpenSSL 3's EVP digest API.
    struct Api {
        ctx_new: unsafe extern "C" fn() -> Ctx,
        ctx_free: unsafe extern "C" fn(Ctx),
        sha512: unsafe extern "C" fn() -> *const c_void,
        init: unsafe extern "C" fn(Ctx, *const c_void, *mut c_void) -> c_int,
        update: unsafe extern "C" fn(Ctx, *const c_void, usize) -> c_int,
        finish: unsafe extern "C" fn(Ctx, *mut u8, *mut c_uint) -> c_int,
    }

    fn api() -> Option<&'static Api> {
        static API: OnceLock<Option<Api>> = OnceLock::new();
        API.get_or_init(|| {
            // SAFETY: dlopen/dlsym with NUL-terminated names. The handle is never closed, so the function
            // pointers stay valid for the life of the process; each symbol is transmuted to the signature
            // OpenSSL 3 declares for it (openssl/evp.h), and the soname pins the major version.
            unsafe {
                let lib = libc::dlopen(
                    c"libcrypto.so.3".as_ptr(),
                    libc::RTLD_NOW | libc::RTLD_LOCAL,
                );
                if lib.is_null() {
                    return None;
                }
                let sym = |name: &CStr| NonNull::new(libc::dlsym(lib, name.as_ptr()));
                Some(Api {
                    ctx_new: std::mem::transmute::<NonNull<c_void>, unsafe extern "C" fn() -> Ctx>(
                        sym(c"EVP_MD_CTX_new")?,
                    ),
                    ctx_free: std::mem::transmute::<NonNull<c_void>, unsafe extern "C" fn(Ctx)>(
                        sym(c"EVP_MD_CTX_free")?,
                    ),
                    sha512: std::mem::transmute::<
                        NonNull<c_void>,
                        unsafe extern "C" fn() -> *const c_void,
                    >(sym(c"EVP_sha512")?),
                    init: std::mem::transmute::<
                        NonNull<c_void>,
                        unsafe extern "C" fn(Ctx, *const c_void, *mut c_void) -> c_int,
                    >(sym(c"EVP_DigestInit_ex")?),
                    update: std::mem::transmute::<
                        NonNull<c_void>,
                        unsafe extern "C" fn(Ctx, *const c_void, usize) -> c_int,
                    >(sym(c"EVP_DigestUpdate")?),
                    finish: std::mem::transmute::<
                        NonNull<c_void>,
                        unsafe extern "C" fn(Ctx, *mut u8, *mut c_uint) -> c_int,
                    >(sym(c"EVP_DigestFinal_ex")?),
                })
            }
        })
        .as_ref()
    }

    /// A running EVP sha512; the context is owned and freed on drop.
    pub struct Sha512 {
        api: &'static Api,
        ctx: NonNull<c_void>,
    }

    // SAFETY: the EVP context is owned by this value alone and only used through `&mut self`; OpenSSL
    // contexts may move between threads as long as they are not used from two at once.
    unsafe impl Send for Sha512 {}

    impl Sha512 {
        pub fn new() -> Option<Self> {
            let api = api()?;
            // SAFETY: plain calls into the loaded library; a null context is handled.
            let ctx = NonNull::new(unsafe { (api.ctx_new)() })?;
            let h = Sha512 { api, ctx };
            // SAFETY: `ctx` is a fresh context; EVP_sha512 returns a static method; no engine.
            let ok = unsafe { (api.init)(ctx.as_ptr(), (api.sha512)(), std::ptr::null_mut()) };
            // On failure (a provider setup without sha512) `h` is dropped, freeing the context.
            (ok == 1).then_some(h)
        }

        pub fn update(&mut self, data: &[u8]) {
            // SAFETY: initialised context; `data` is valid for `data.len()` bytes. EVP_DigestUpdate only
            // fails on a context without a digest, which `new` rules out.
            let ok =
                unsafe { (self.api.update)(self.ctx.as_ptr(), data.as_ptr().cast(), data.len()) };
            assert_eq!(ok, 1, "OpenSSL EVP_DigestUpdate failed");
        }

        pub fn finish(self) -> [u8; 64] {
            let mut out = [0u8; 64];
            let mut len: c_uint = 0;
            // SAFETY: `out` has room for a sha512 digest (64 bytes, EVP_MAX_MD_SIZE is 64).
            let ok = unsafe { (self.api.finish)(self.ctx.as_ptr(), out.as_mut_ptr(), &mut len) };
            assert!(ok == 1 && len == 64, "OpenSSL EVP_DigestFinal_ex failed");
            out
        }
    }

    impl Drop for Sha512 {
        fn drop(&mut self) {
            // SAFETY: the context came from EVP_MD_CTX_new and is freed once.
            unsafe { (self.api.ctx_free)(self.ctx.as_ptr()) };
        }
    }
}

/// Digests from AWS-LC, which rustls already links into kiln: its assembly md5 is ~1.2x RustCrypto's
/// portable one, its sha1 ~1.6x, its sha256 (SHA-NI) on a par (see docs/decisions/cache-hashing.md).
mod lc {
    use std::ffi::c_void;

    use aws_lc_sys as sys;

    macro_rules! digest {
        ($name:ident, $ctx:ty, $init:path, $update:path, $final:path, $len:expr) => {
            pub struct $name($ctx);

            impl $name {
                pub fn new() -> Self {
                    // SAFETY: the context is plain integers and bytes, so all-zero is a valid value; the
                    // init function then sets the initial state (it cannot fail: it always returns 1).
                    let mut ctx: $ctx = unsafe { std::mem::zeroed() };
                    // SAFETY: `ctx` is a valid, exclusively borrowed context.
                    unsafe { $init(&mut ctx) };
                    $name(ctx)
                }

                pub fn update(&mut self, data: &[u8]) {
                    // SAFETY: the context was initialised by `new`; `data` is valid for `data.len()`
                    // bytes. The context holds no pointers, so moving it between calls is fine.
                    unsafe { $update(&mut self.0, data.as_ptr().cast::<c_void>(), data.len()) };
                }

                pub fn finish(mut self) -> [u8; $len] {
                    let mut out = [0u8; $len];
                    // SAFETY: `out` has room for the whole digest.
                    unsafe { $final(out.as_mut_ptr(), &mut self.0) };
                    out
                }
            }
        };
    }

    digest!(
        Md5,
        sys::MD5_CTX,
        sys::MD5_Init,
        sys::MD5_Update,
        sys::MD5_Final,
        16
    );
    digest!(
        Sha1,
        sys::SHA_CTX,
        sys::SHA1_Init,
        sys::SHA1_Update,
        sys::SHA1_Final,
        20
    );
    digest!(
        Sha256,
        sys::SHA256_CTX,
        sys::SHA256_Init,
        sys::SHA256_Update,
        sys::SHA256_Final,
        32
    );
    digest!(
        Sha512,
        sys::SHA512_CTX,
        sys::SHA512_Init,
        sys::SHA512_Update,
        sys::SHA512_Final,
        64
    );
}

type Chunk = Arc<Vec<u8>>;

/// The digest threads: `workers` threads share `lanes` digests. Every chunk is queued once; a worker picks
/// the lane that is furthest behind among those not being run by another worker, feeds it the next chunk
/// and puts it back. With fewer cores than digests (three digests on two cores) the work is balanced chunk
/// by chunk: with one thread per digest, the kernel's load balancer leaves two threads sharing one core
/// and one alone on the other, and the pair sets the pace.
struct Pool {
    shared: Arc<(Mutex<Queue>, Condvar)>,
    threads: Vec<thread::JoinHandle<()>>,
}

/// One digest's progress.
struct Lane {
    algo: Algo,
    /// `None` while a worker is running it.
    engine: Option<Engine>,
    /// Index of the next chunk this digest needs.
    next: u64,
}

struct Queue {
    lanes: Vec<Lane>,
    /// Chunks some lane still needs; `chunks[0]` has index `first`.
    chunks: VecDeque<Chunk>,
    first: u64,
    /// No more chunks will come.
    closed: bool,
    /// Stop now: the hasher was dropped unfinished, or a worker panicked.
    abandoned: bool,
}

impl Queue {
    /// The idle lane furthest behind that has a chunk waiting.
    fn runnable(&self) -> Option<usize> {
        let end = self.first + self.chunks.len() as u64;
        (0..self.lanes.len())
            .filter(|&i| self.lanes[i].engine.is_some() && self.lanes[i].next < end)
            .min_by_key(|&i| self.lanes[i].next)
    }

    fn done(&self) -> bool {
        let end = self.first + self.chunks.len() as u64;
        self.closed
            && self
                .lanes
                .iter()
                .all(|l| l.engine.is_some() && l.next == end)
    }

    /// Drops the chunks every lane is past.
    fn trim(&mut self) {
        let low = self
            .lanes
            .iter()
            .map(|l| l.next)
            .min()
            .unwrap_or(self.first);
        while self.first < low && self.chunks.pop_front().is_some() {
            self.first += 1;
        }
    }
}

/// Marks the queue abandoned if a worker unwinds, so the reader and the other workers stop waiting.
struct PanicGuard<'a>(&'a (Mutex<Queue>, Condvar));

impl Drop for PanicGuard<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            lock(&self.0.0).abandoned = true;
            self.0.1.notify_all();
        }
    }
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Cores this process may use (cached: it reads cgroup files).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| thread::available_parallelism().map_or(1, |n| n.get()))
}

impl Pool {
    fn new(algos: Vec<Algo>, max_threads: usize) -> Self {
        let workers = algos.len().min(cores()).min(max_threads).max(1);
        let lanes = algos
            .into_iter()
            .map(|algo| Lane {
                algo,
                engine: Some(Engine::new(algo)),
                next: 0,
            })
            .collect();
        let shared = Arc::new((
            Mutex::new(Queue {
                lanes,
                chunks: VecDeque::new(),
                first: 0,
                closed: false,
                abandoned: false,
            }),
            Condvar::new(),
        ));
        let threads = (0..workers)
            .map(|i| {
                let shared = Arc::clone(&shared);
                thread::Builder::new()
                    .name(format!("kiln-digest-{i}"))
                    .spawn(move || Pool::work(&shared))
                    .expect("spawning a digest thread")
            })
            .collect();
        Pool { shared, threads }
    }

    fn work(shared: &(Mutex<Queue>, Condvar)) {
        let _guard = PanicGuard(shared);
        let (m, cv) = shared;
        let mut q = lock(m);
        loop {
            if q.abandoned || q.done() {
                cv.notify_all();
                return;
            }
            let Some(i) = q.runnable() else {
                q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
                continue;
            };
            let mut engine = q.lanes[i].engine.take().expect("runnable lanes are idle");
            let chunk = Arc::clone(&q.chunks[(q.lanes[i].next - q.first) as usize]);
            drop(q);
            engine.update(&chunk);
            drop(chunk);
            q = lock(m);
            let lane = &mut q.lanes[i];
            lane.engine = Some(engine);
            lane.next += 1;
            q.trim();
            cv.notify_all();
        }
    }

    /// Queues a chunk for every lane; waits while `DEPTH` chunks are queued.
    fn push(&self, chunk: Chunk) {
        let (m, cv) = &*self.shared;
        let mut q = lock(m);
        while q.chunks.len() >= DEPTH && !q.abandoned {
            q = cv.wait(q).unwrap_or_else(|e| e.into_inner());
        }
        if !q.abandoned {
            q.chunks.push_back(chunk);
            cv.notify_all();
        }
    }

    fn algos(&self) -> Vec<Algo> {
        lock(&self.shared.0).lanes.iter().map(|l| l.algo).collect()
    }

    /// Waits for the workers and returns the digests.
    fn finish(mut self) -> Digests {
        {
            let (m, cv) = &*self.shared;
            lock(m).closed = true;
            cv.notify_all();
        }
        for t in std::mem::take(&mut self.threads) {
            if let Err(panic) = t.join() {
                std::panic::resume_unwind(panic);
            }
        }
        let mut out = Digests::default();
        for lane in std::mem::take(&mut lock(&self.shared.0).lanes) {
            let engine = lane
                .engine
                .expect("every lane is idle once the workers are done");
            out.set(lane.algo, engine.finish_hex());
        }
        out
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if self.threads.is_empty() {
            return;
        }
        let (m, cv) = &*self.shared;
        lock(m).abandoned = true;
        cv.notify_all();
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

enum Mode {
    /// Zero or one algorithm: hashed on the caller's thread, no copy.
    Inline(Vec<(Algo, Engine)>),
    /// Two or more: digest threads fed shared chunks.
    Threads(Pool),
}

/// Computes several digests of one stream of bytes, each on its own thread.
pub struct MultiHasher {
    mode: Mode,
    /// The chunk being filled; its length is always [`CHUNK`], `fill` bytes of it are data.
    stage: Vec<u8>,
    fill: usize,
    /// Chunks handed to the workers; reclaimed once every worker has dropped its reference.
    in_flight: Vec<Chunk>,
    bytes: u64,
}

impl fmt::Debug for MultiHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MultiHasher")
            .field("algos", &self.algos())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl MultiHasher {
    /// Starts hashing with `algos` (duplicates are ignored), on up to one thread per digest and core.
    pub fn new(algos: &[Algo]) -> Self {
        Self::with_threads(algos, usize::MAX)
    }

    /// Like [`MultiHasher::new`] on at most `max_threads` digest threads (at least one), for data
    /// that arrives slower than one core hashes it (an upload bound by its server): more threads
    /// would only take CPU from the others on the machine in bursts.
    pub fn with_threads(algos: &[Algo], max_threads: usize) -> Self {
        let mut algos = algos.to_vec();
        algos.sort();
        algos.dedup();
        let mode = if algos.len() <= 1 {
            Mode::Inline(algos.into_iter().map(|a| (a, Engine::new(a))).collect())
        } else {
            Mode::Threads(Pool::new(algos, max_threads))
        };
        MultiHasher {
            mode,
            stage: Vec::new(),
            fill: 0,
            in_flight: Vec::new(),
            bytes: 0,
        }
    }

    /// The algorithms being computed.
    pub fn algos(&self) -> Vec<Algo> {
        match &self.mode {
            Mode::Inline(engines) => engines.iter().map(|(a, _)| *a).collect(),
            Mode::Threads(pool) => pool.algos(),
        }
    }

    /// Bytes hashed so far.
    pub fn byte_count(&self) -> u64 {
        self.bytes
    }

    /// Hashes `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Mode::Inline(engines) = &mut self.mode {
            for (_, engine) in engines {
                engine.update(data);
            }
            return;
        }
        while !data.is_empty() {
            self.ensure_stage();
            let n = (CHUNK - self.fill).min(data.len());
            self.stage[self.fill..self.fill + n].copy_from_slice(&data[..n]);
            self.fill += n;
            data = &data[n..];
            if self.fill == CHUNK {
                self.dispatch();
            }
        }
    }

    /// Reads `reader` to its end, hashing everything; returns the number of bytes read. Reads straight into
    /// the shared chunks, so the data is not copied on its way to the digest threads.
    pub fn update_from_reader<R: Read + ?Sized>(&mut self, reader: &mut R) -> io::Result<u64> {
        let mut total = 0u64;
        loop {
            self.ensure_stage();
            let n = match reader.read(&mut self.stage[self.fill..]) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            total += n as u64;
            self.bytes += n as u64;
            self.fill += n;
            if self.fill == CHUNK {
                self.flush_stage();
            }
        }
        self.flush_stage();
        Ok(total)
    }

    /// Waits for every digest and returns them.
    pub fn finish(mut self) -> Digests {
        self.flush_stage();
        let mut out = Digests::default();
        match std::mem::replace(&mut self.mode, Mode::Inline(Vec::new())) {
            Mode::Inline(engines) => {
                for (algo, engine) in engines {
                    out.set(algo, engine.finish_hex());
                }
            }
            Mode::Threads(pool) => out = pool.finish(),
        }
        out
    }

    fn ensure_stage(&mut self) {
        if self.stage.len() == CHUNK {
            return;
        }
        let reclaimed = self
            .in_flight
            .iter()
            .position(|c| Arc::strong_count(c) == 1)
            .map(|i| self.in_flight.swap_remove(i))
            .and_then(|c| Arc::try_unwrap(c).ok());
        let mut buf = reclaimed.unwrap_or_default();
        buf.resize(CHUNK, 0);
        self.stage = buf;
        self.fill = 0;
    }

    /// Hands the staged bytes to the digests (inline: hashes them now).
    fn flush_stage(&mut self) {
        if self.fill == 0 {
            return;
        }
        match &mut self.mode {
            Mode::Inline(engines) => {
                for (_, engine) in engines {
                    engine.update(&self.stage[..self.fill]);
                }
                self.fill = 0;
            }
            Mode::Threads(_) => self.dispatch(),
        }
    }

    fn dispatch(&mut self) {
        let Mode::Threads(pool) = &self.mode else {
            return;
        };
        let mut buf = std::mem::take(&mut self.stage);
        buf.truncate(self.fill);
        self.fill = 0;
        let chunk = Arc::new(buf);
        pool.push(Arc::clone(&chunk));
        self.in_flight.push(chunk);
    }
}

/// Hashes the file at `path` in one read; returns its size and digests.
pub fn hash_file(path: impl AsRef<Path>, algos: &[Algo]) -> io::Result<(u64, Digests)> {
    let mut file = File::open(path)?;
    let mut hasher = MultiHasher::new(algos);
    let n = hasher.update_from_reader(&mut file)?;
    Ok((n, hasher.finish()))
}

/// Where a [`HashingReader`] leaves its result when it reaches the end of its input or is dropped: for
/// readers handed to something that consumes them (an HTTP request body).
#[derive(Clone, Debug, Default)]
pub struct DigestsHandle(Arc<Mutex<Option<(u64, Digests)>>>);

impl DigestsHandle {
    /// The byte count and digests, once the reader has hit end of input or been dropped.
    pub fn get(&self) -> Option<(u64, Digests)> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// Holds the hasher of a reader/writer and publishes to a handle when dropped unfinished.
struct Pending {
    hasher: Option<MultiHasher>,
    bytes: u64,
    sink: Option<DigestsHandle>,
}

impl Pending {
    fn new(hasher: MultiHasher) -> Self {
        Pending {
            hasher: Some(hasher),
            bytes: 0,
            sink: None,
        }
    }

    fn update(&mut self, data: &[u8]) {
        self.bytes += data.len() as u64;
        if let Some(h) = &mut self.hasher {
            h.update(data);
        }
    }

    fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Finishes the hasher (once) and publishes the result to the handle, if any.
    fn finish(&mut self) -> Option<(u64, Digests)> {
        let hasher = self.hasher.take()?;
        let result = (hasher.byte_count(), hasher.finish());
        if let Some(sink) = &self.sink {
            *sink.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(result.clone());
        }
        Some(result)
    }

    fn result(&mut self) -> (u64, Digests) {
        if let Some(r) = self.finish() {
            return r;
        }
        self.sink
            .as_ref()
            .and_then(DigestsHandle::get)
            .unwrap_or_default()
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.sink.is_some() {
            self.finish();
        }
    }
}

/// A reader that hashes the bytes read through it.
pub struct HashingReader<R> {
    inner: R,
    pending: Pending,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algos: &[Algo]) -> Self {
        Self::with_hasher(inner, MultiHasher::new(algos))
    }

    /// Hashes through `hasher` (e.g. one from [`MultiHasher::with_threads`]).
    pub fn with_hasher(inner: R, hasher: MultiHasher) -> Self {
        HashingReader {
            inner,
            pending: Pending::new(hasher),
        }
    }

    /// Bytes read through so far.
    pub fn byte_count(&self) -> u64 {
        self.pending.bytes()
    }

    /// A handle that receives the byte count and digests when this reader reaches end of input or is
    /// dropped, for readers moved into something else (e.g. an HTTP request body).
    pub fn handle(&mut self) -> DigestsHandle {
        self.pending
            .sink
            .get_or_insert_with(DigestsHandle::default)
            .clone()
    }

    /// The digests of everything read through.
    pub fn finish(self) -> Digests {
        self.into_parts().2
    }

    /// The inner reader, the byte count and the digests.
    pub fn into_parts(mut self) -> (R, u64, Digests) {
        let (n, d) = self.pending.result();
        (self.inner, n, d)
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if self.pending.sink.is_some() {
                self.pending.finish();
            }
        } else {
            self.pending.update(&buf[..n]);
        }
        Ok(n)
    }
}

impl<R> fmt::Debug for HashingReader<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashingReader")
            .field("bytes", &self.pending.bytes())
            .finish_non_exhaustive()
    }
}

/// A writer that hashes the bytes written through it.
pub struct HashingWriter<W> {
    inner: W,
    pending: Pending,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W, algos: &[Algo]) -> Self {
        HashingWriter {
            inner,
            pending: Pending::new(MultiHasher::new(algos)),
        }
    }

    /// Bytes written through so far.
    pub fn byte_count(&self) -> u64 {
        self.pending.bytes()
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The digests of everything written through.
    pub fn finish(self) -> Digests {
        self.into_parts().2
    }

    /// The inner writer (not flushed), the byte count and the digests.
    pub fn into_parts(mut self) -> (W, u64, Digests) {
        let (n, d) = self.pending.result();
        (self.inner, n, d)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.pending.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W> fmt::Debug for HashingWriter<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HashingWriter")
            .field("bytes", &self.pending.bytes())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use sha2::Digest;

    use super::*;

    const ABC: [(Algo, &str); 4] = [
        (Algo::Md5, "900150983cd24fb0d6963f7d28e17f72"),
        (Algo::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (
            Algo::Sha256,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        ),
        (
            Algo::Sha512,
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
        ),
    ];

    /// Deterministic pseudo-random bytes (xorshift), so chunk boundaries see varied data.
    fn noise(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    type HexDigest = fn(&[u8]) -> String;

    fn single(algo: Algo, data: &[u8]) -> String {
        let mut e = Engine::new(algo);
        e.update(data);
        e.finish_hex()
    }

    #[test]
    fn known_vectors_for_every_algorithm_alone_and_together() {
        // The threaded and the inline path must both produce the published test vectors.
        let mut all = MultiHasher::new(&Algo::ALL);
        all.update(b"a");
        all.update(b"bc");
        let all = all.finish();
        for (algo, want) in ABC {
            assert_eq!(all.get(algo), Some(want), "{algo} in one pass");
            let mut one = MultiHasher::new(&[algo]);
            one.update(b"abc");
            assert_eq!(one.finish().get(algo), Some(want), "{algo} alone");
        }
    }

    #[test]
    fn aws_lc_engines_match_rustcrypto_at_every_padding_boundary() {
        // The digests come from AWS-LC through FFI: an independent implementation checks every length up to
        // past the points where padding spills into an extra block (55/56/64 bytes for md5, sha1 and
        // sha256; 111/112/128 for sha512), with the input split across two updates.
        let rust: [(Algo, HexDigest); 4] = [
            (Algo::Md5, |d| hex::encode(md5::Md5::digest(d))),
            (Algo::Sha1, |d| hex::encode(sha1::Sha1::digest(d))),
            (Algo::Sha256, |d| hex::encode(sha2::Sha256::digest(d))),
            (Algo::Sha512, |d| hex::encode(sha2::Sha512::digest(d))),
        ];
        let data = noise(2 * 128 + 3, 5);
        for len in 0..data.len() {
            let part = &data[..len];
            let (a, b) = part.split_at(len / 3);
            for (algo, reference) in rust {
                let mut engine = Engine::new(algo);
                engine.update(a);
                engine.update(b);
                assert_eq!(
                    engine.finish_hex(),
                    reference(part),
                    "{algo} of {len} bytes"
                );
            }
            // md5 is the AVX-512 one on CPUs that have it, sha512 OpenSSL's when libcrypto.so.3
            // loads; their AWS-LC fallbacks must agree too.
            type TwoPartDigest = fn(&[u8], &[u8]) -> String;
            let fallbacks: [(usize, TwoPartDigest); 2] = [
                (0, |a, b| {
                    let mut h = lc::Md5::new();
                    h.update(a);
                    h.update(b);
                    hex::encode(h.finish())
                }),
                (3, |a, b| {
                    let mut h = lc::Sha512::new();
                    h.update(a);
                    h.update(b);
                    hex::encode(h.finish())
                }),
            ];
            for (i, fallback) in fallbacks {
                let (algo, reference) = rust[i];
                assert_eq!(
                    fallback(a, b),
                    reference(part),
                    "AWS-LC {algo} of {len} bytes"
                );
            }
        }
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn md5_runs_on_avx512_exactly_where_the_cpu_has_it() {
        let picked = matches!(Md5::new(), Md5::Avx512(_));
        assert_eq!(picked, md5_avx512::available());
        assert_eq!(
            md5_avx512::available(),
            std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512f")
        );
    }

    #[test]
    fn more_digests_than_threads_and_a_dropped_hasher() {
        // However many threads the pool has, every digest sees every chunk in order; dropping a hasher
        // mid-stream stops its threads instead of leaving them waiting.
        let data = noise(9 * CHUNK + 5, 13);
        let mut h = MultiHasher::new(&Algo::ALL);
        h.update(&data);
        let d = h.finish();
        for algo in Algo::ALL {
            assert_eq!(d.get(algo), Some(single(algo, &data).as_str()), "{algo}");
        }
        let mut h = MultiHasher::new(&Algo::ALL);
        h.update(&data[..6 * CHUNK]);
        drop(h);
    }

    #[test]
    fn unrequested_digests_stay_empty() {
        let mut h = MultiHasher::new(&[Algo::Md5, Algo::Sha512, Algo::Md5]);
        h.update(b"abc");
        let d = h.finish();
        assert_eq!(d.sha1, None);
        assert_eq!(d.sha256, None);
        assert!(d.covers(&[Algo::Md5, Algo::Sha512]));
        assert!(!d.covers(&[Algo::Sha256]));
    }

    #[test]
    fn empty_input_hashes_to_the_empty_digests() {
        let d = MultiHasher::new(&[Algo::Md5, Algo::Sha256]).finish();
        assert_eq!(d.md5.as_deref(), Some("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(
            d.sha256.as_deref(),
            Some("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }

    #[test]
    fn odd_sized_updates_across_chunk_boundaries_match_one_shot_digests() {
        // Guards the staging logic: bytes split or reordered at chunk edges would change the digests.
        let data = noise(3 * CHUNK + 12_345, 7);
        let mut h = MultiHasher::new(&Algo::ALL);
        let mut rest = &data[..];
        let mut step = 1;
        while !rest.is_empty() {
            let n = step.min(rest.len());
            h.update(&rest[..n]);
            rest = &rest[n..];
            step = step * 3 + 1;
        }
        assert_eq!(h.byte_count(), data.len() as u64);
        let d = h.finish();
        for algo in Algo::ALL {
            assert_eq!(d.get(algo), Some(single(algo, &data).as_str()), "{algo}");
        }
    }

    #[test]
    fn hash_file_matches_coreutils() {
        // The real tools are the reference an operator would check a cache entry with.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blob");
        std::fs::write(&path, noise(2 * CHUNK + 777, 3)).unwrap();
        let (n, d) = hash_file(&path, &Algo::ALL).unwrap();
        assert_eq!(n, (2 * CHUNK + 777) as u64);
        for (algo, tool) in [
            (Algo::Md5, "md5sum"),
            (Algo::Sha1, "sha1sum"),
            (Algo::Sha256, "sha256sum"),
            (Algo::Sha512, "sha512sum"),
        ] {
            let out = std::process::Command::new(tool)
                .arg(&path)
                .output()
                .unwrap();
            assert!(out.status.success(), "{tool} failed");
            let out = String::from_utf8(out.stdout).unwrap();
            assert_eq!(d.get(algo), out.split_whitespace().next(), "{algo}");
        }
    }

    #[test]
    fn reader_and_writer_hash_what_passes_through() {
        let data = noise(CHUNK + 99, 11);
        let mut reader = HashingReader::new(&data[..], &[Algo::Md5, Algo::Sha512]);
        let mut sink = Vec::new();
        let mut writer = HashingWriter::new(&mut sink, &[Algo::Sha256, Algo::Sha512]);
        io::copy(&mut reader, &mut writer).unwrap();
        assert_eq!(reader.byte_count(), data.len() as u64);
        assert_eq!(writer.byte_count(), data.len() as u64);
        let r = reader.finish();
        let (_, n, w) = writer.into_parts();
        assert_eq!(n, data.len() as u64);
        assert_eq!(sink, data);
        assert_eq!(r.md5, Some(single(Algo::Md5, &data)));
        assert_eq!(r.sha512, w.sha512);
        assert_eq!(w.sha256, Some(single(Algo::Sha256, &data)));
    }

    #[test]
    fn handle_receives_digests_when_a_consumed_reader_is_dropped() {
        // Upload bodies take the reader by value; the handle is how the caller learns what was sent.
        let mut reader = HashingReader::new(&b"abc"[..], &[Algo::Md5]);
        let handle = reader.handle();
        assert_eq!(handle.get(), None);
        let mut two = [0u8; 2];
        reader.read_exact(&mut two).unwrap();
        drop(reader);
        let (n, d) = handle.get().unwrap();
        assert_eq!(n, 2);
        assert_eq!(d.md5, Some(single(Algo::Md5, b"ab")));
    }

    #[test]
    fn handle_receives_digests_at_end_of_input() {
        let mut reader = HashingReader::new(&b"abc"[..], &Algo::ALL);
        let handle = reader.handle();
        io::copy(&mut reader, &mut io::sink()).unwrap();
        let (n, d) = handle.get().unwrap();
        assert_eq!(n, 3);
        assert_eq!(d.get(Algo::Sha1), Some(ABC[1].1));
        // finish after end of input still returns the same result.
        assert_eq!(reader.finish(), d);
    }

    #[test]
    fn algo_names_round_trip() {
        for algo in Algo::ALL {
            assert_eq!(algo.name().parse::<Algo>().unwrap(), algo);
            assert_eq!(single(algo, b"").len(), algo.hex_len());
        }
        let err = "crc32".parse::<Algo>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown digest algorithm `crc32` (expected `md5`, `sha1`, `sha256` or `sha512`)"
        );
    }
}
