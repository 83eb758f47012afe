//! MD5 computed in lane 0 of 128-bit AVX-512VL registers.
//!
//! MD5 is one long dependency chain: each of its 64 steps needs the word the previous step produced
//! (`b`), runs it through the round function, adds it to `a`, rotates and adds `b` again. In general
//! purpose registers the round functions F, G and I take two dependent operations on `b` (G and I
//! cannot be done in fewer without a bit-select), so a step costs at least 5 cycles; AWS-LC's and
//! OpenSSL's assembly run at that bound. AVX-512's `vpternlogd` computes any three-input bitwise
//! function in one 1-cycle instruction, and `vprold` rotates in one, so on the vector unit every step is
//! 4 cycles deep (round function, add, rotate, add); the message word and round constant are added to
//! `a` off that path. The upper three lanes carry garbage that is never read.
//!
//! The technique is described in animetosho's "MD5 optimisation tricks" (single-buffer AVX-512, ~20%
//! over OpenSSL). Measured here: docs/decisions/cache-hashing.md. Used only when the CPU reports
//! AVX-512F and AVX-512VL at run time; the digest is tested against RustCrypto's `md-5` at every length
//! across the padding boundaries (hash.rs tests).

use std::arch::x86_64::{
    __m128i, _mm_add_epi32, _mm_cvtsi32_si128, _mm_cvtsi128_si32, _mm_rol_epi32,
    _mm_ternarylogic_epi32,
};

/// Whether this CPU can run [`Md5`] (checked once; `is_x86_feature_detected!` caches it).
pub fn available() -> bool {
    std::arch::is_x86_feature_detected!("avx512f")
        && std::arch::is_x86_feature_detected!("avx512vl")
}

/// A running MD5.
pub struct Md5 {
    state: [u32; 4],
    /// Bytes of an incomplete block.
    buf: [u8; 64],
    buf_len: usize,
    /// Bytes hashed so far (MD5 encodes the length modulo 2^64 bits).
    total: u64,
}

impl Md5 {
    /// A new digest, or `None` when the CPU lacks AVX-512F/VL.
    pub fn new() -> Option<Self> {
        available().then_some(Md5 {
            state: [0x6745_2301, 0xefcd_ab89, 0x98ba_dcfe, 0x1032_5476],
            buf: [0; 64],
            buf_len: 0,
            total: 0,
        })
    }

    pub fn update(&mut self, mut data: &[u8]) {
        self.total = self.total.wrapping_add(data.len() as u64);
        if self.buf_len > 0 {
            let take = (64 - self.buf_len).min(data.len());
            self.buf[self.buf_len..self.buf_len + take].copy_from_slice(&data[..take]);
            self.buf_len += take;
            data = &data[take..];
            if self.buf_len < 64 {
                return;
            }
            let block = self.buf;
            self.compress(&block);
            self.buf_len = 0;
        }
        let whole = data.len() - data.len() % 64;
        if whole > 0 {
            self.compress(&data[..whole]);
        }
        let rest = &data[whole..];
        self.buf[..rest.len()].copy_from_slice(rest);
        self.buf_len = rest.len();
    }

    pub fn finish(mut self) -> [u8; 16] {
        let bits = self.total.wrapping_mul(8);
        // 0x80, zeros up to 56 mod 64, then the length in bits, little-endian.
        let mut pad = [0u8; 72];
        pad[0] = 0x80;
        let zeros = (55usize.wrapping_sub(self.buf_len)) % 64;
        pad[1 + zeros..9 + zeros].copy_from_slice(&bits.to_le_bytes());
        let total = self.total;
        self.update(&pad[..9 + zeros]);
        debug_assert_eq!(self.buf_len, 0);
        self.total = total;
        let mut out = [0u8; 16];
        for (o, w) in out.chunks_exact_mut(4).zip(self.state) {
            o.copy_from_slice(&w.to_le_bytes());
        }
        out
    }

    /// Hashes whole 64-byte blocks.
    fn compress(&mut self, blocks: &[u8]) {
        debug_assert_eq!(blocks.len() % 64, 0);
        // SAFETY: a `Md5` exists only when `available()` said the CPU has AVX-512F and AVX-512VL.
        unsafe { compress(&mut self.state, blocks) }
    }
}

/// The sine-derived round constants, step by step.
const K: [u32; 64] = [
    0xd76a_a478,
    0xe8c7_b756,
    0x2420_70db,
    0xc1bd_ceee,
    0xf57c_0faf,
    0x4787_c62a,
    0xa830_4613,
    0xfd46_9501,
    0x6980_98d8,
    0x8b44_f7af,
    0xffff_5bb1,
    0x895c_d7be,
    0x6b90_1122,
    0xfd98_7193,
    0xa679_438e,
    0x49b4_0821,
    0xf61e_2562,
    0xc040_b340,
    0x265e_5a51,
    0xe9b6_c7aa,
    0xd62f_105d,
    0x0244_1453,
    0xd8a1_e681,
    0xe7d3_fbc8,
    0x21e1_cde6,
    0xc337_07d6,
    0xf4d5_0d87,
    0x455a_14ed,
    0xa9e3_e905,
    0xfcef_a3f8,
    0x676f_02d9,
    0x8d2a_4c8a,
    0xfffa_3942,
    0x8771_f681,
    0x6d9d_6122,
    0xfde5_380c,
    0xa4be_ea44,
    0x4bde_cfa9,
    0xf6bb_4b60,
    0xbebf_bc70,
    0x289b_7ec6,
    0xeaa1_27fa,
    0xd4ef_3085,
    0x0488_1d05,
    0xd9d4_d039,
    0xe6db_99e5,
    0x1fa2_7cf8,
    0xc4ac_5665,
    0xf429_2244,
    0x432a_ff97,
    0xab94_23a7,
    0xfc93_a039,
    0x655b_59c3,
    0x8f0c_cc92,
    0xffef_f47d,
    0x8584_5dd1,
    0x6fa8_7e4f,
    0xfe2c_e6e0,
    0xa301_4314,
    0x4e08_11a1,
    0xf753_7e82,
    0xbd3a_f235,
    0x2ad7_d2bb,
    0xeb86_d391,
];

/// `vpternlogd` truth tables with operands (b, c, d): bit `4b + 2c + d` of the immediate is the result.
const F: i32 = 0xca; // (b & c) | (!b & d)
const G: i32 = 0xe4; // (b & d) | (c & !d)
const H: i32 = 0x96; // b ^ c ^ d
const I: i32 = 0x39; // c ^ (b | !d)

/// # Safety
/// The CPU must support AVX-512F and AVX-512VL; `blocks.len()` must be a multiple of 64.
#[target_feature(enable = "avx512f,avx512vl")]
unsafe fn compress(state: &mut [u32; 4], blocks: &[u8]) {
    let lane = |w: u32| _mm_cvtsi32_si128(w as i32);
    let (mut a, mut b, mut c, mut d) = (
        lane(state[0]),
        lane(state[1]),
        lane(state[2]),
        lane(state[3]),
    );
    for block in blocks.chunks_exact(64) {
        let mut m = [0u32; 16];
        for (w, bytes) in m.iter_mut().zip(block.chunks_exact(4)) {
            *w = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        }
        let (a0, b0, c0, d0) = (a, b, c, d);
        // One step: a = b + rotl(a + m[g] + K[i] + fn(b, c, d), s). The off-path sum `a + m + K` comes
        // first, so the chain from `b` is ternlog -> add -> rotate -> add.
        macro_rules! step {
            ($f:ident, $a:ident, $b:ident, $c:ident, $d:ident, $i:expr, $g:expr, $s:expr) => {
                let t: __m128i = _mm_add_epi32($a, lane(m[$g].wrapping_add(K[$i])));
                let t = _mm_add_epi32(t, _mm_ternarylogic_epi32::<$f>($b, $c, $d));
                $a = _mm_add_epi32(_mm_rol_epi32::<$s>(t), $b);
            };
        }
        macro_rules! four {
            ($f:ident, $i:expr, [$g0:expr, $g1:expr, $g2:expr, $g3:expr], [$s0:expr, $s1:expr, $s2:expr, $s3:expr]) => {
                step!($f, a, b, c, d, $i, $g0, $s0);
                step!($f, d, a, b, c, $i + 1, $g1, $s1);
                step!($f, c, d, a, b, $i + 2, $g2, $s2);
                step!($f, b, c, d, a, $i + 3, $g3, $s3);
            };
        }
        four!(F, 0, [0, 1, 2, 3], [7, 12, 17, 22]);
        four!(F, 4, [4, 5, 6, 7], [7, 12, 17, 22]);
        four!(F, 8, [8, 9, 10, 11], [7, 12, 17, 22]);
        four!(F, 12, [12, 13, 14, 15], [7, 12, 17, 22]);
        four!(G, 16, [1, 6, 11, 0], [5, 9, 14, 20]);
        four!(G, 20, [5, 10, 15, 4], [5, 9, 14, 20]);
        four!(G, 24, [9, 14, 3, 8], [5, 9, 14, 20]);
        four!(G, 28, [13, 2, 7, 12], [5, 9, 14, 20]);
        four!(H, 32, [5, 8, 11, 14], [4, 11, 16, 23]);
        four!(H, 36, [1, 4, 7, 10], [4, 11, 16, 23]);
        four!(H, 40, [13, 0, 3, 6], [4, 11, 16, 23]);
        four!(H, 44, [9, 12, 15, 2], [4, 11, 16, 23]);
        four!(I, 48, [0, 7, 14, 5], [6, 10, 15, 21]);
        four!(I, 52, [12, 3, 10, 1], [6, 10, 15, 21]);
        four!(I, 56, [8, 15, 6, 13], [6, 10, 15, 21]);
        four!(I, 60, [4, 11, 2, 9], [6, 10, 15, 21]);
        a = _mm_add_epi32(a, a0);
        b = _mm_add_epi32(b, b0);
        c = _mm_add_epi32(c, c0);
        d = _mm_add_epi32(d, d0);
    }
    *state = [a, b, c, d].map(|v| _mm_cvtsi128_si32(v) as u32);
}
