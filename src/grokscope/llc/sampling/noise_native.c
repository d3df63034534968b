/* Standard normal noise for SGLD chains: Philox4x32-10 counters through Box-Muller.

   Philox4x32-10 (Salmon, Moraes, Dror & Shaw 2011, "Parallel random numbers: as easy as 1, 2, 3")
   maps a 128-bit counter and a 64-bit key to four uniform 32-bit words. For a chain with key k
   (its 64-bit seed: words k & 0xffffffff, k >> 32) at SGLD step s, counter j is
   (j, s & 0xffffffff, s >> 32, 0), and its words w0..w3 give four normals by Box-Muller:

     r = sqrt(-2 ln u(w0)), a = 2 pi v(w1):  r cos a, r sin a;   likewise from (w2, w3),
     u(w) = ((w >> 8) + 1) / 2^24 in (0, 1],   v(w) = (w >> 8) / 2^24 in [0, 1).

   Element e of step s comes from counter j = 32 c + 8 g + l, output q, where
   e = 128 c + 32 g + 8 q + l (c a chunk of 32 counters, g < 4, q < 4 in the order above, l < 8):
   chunks of four groups of eight counters, each group's outputs stored lane by lane, so every
   store is a whole vector. A chain's numbers at a step depend only on (k, s, e): not on the block
   of steps asked for, nor on the other chains. llc/sampling/noise.py holds the same definition in numpy
   (the reference, and the path without a compiler).

   The rounds run on four groups of eight counters at once (GCC vector extensions; on AVX2 the 32 x
   32 -> 64-bit products are single vpmuludq instructions), and Box-Muller through glibc's vector
   logf/sinf/cosf (libmvec). */

#include <math.h>
#include <stdint.h>
#include <string.h>

/* glibc's vector functions, declared here since math.h declares them only under -ffast-math, whose
   finite-math assumption the build leaves out (a diverging chain's inf and nan must stay visible) */
float logf(float) __attribute__((simd("notinbranch")));
float sinf(float) __attribute__((simd("notinbranch")));
float cosf(float) __attribute__((simd("notinbranch")));

typedef uint32_t u32x8 __attribute__((vector_size(32)));
typedef uint64_t u64x4 __attribute__((vector_size(32)));

#define LANES 8
#define GROUPS 4
#define CHUNK (4 * GROUPS * LANES) /* normals per chunk of GROUPS * LANES counters */

#ifdef __AVX2__
#include <immintrin.h>
static inline u64x4 mul_even(u64x4 a, u64x4 b) { return (u64x4)_mm256_mul_epu32((__m256i)a, (__m256i)b); }
#else
static inline u64x4 mul_even(u64x4 a, u64x4 b) {
    const u64x4 low = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu};
    return (a & low) * (b & low);
}
#endif

/* the high and low 32 bits of a[i] * m for each of the eight lanes */
static inline void mulhilo(u32x8 a, uint32_t m, u32x8 *hi, u32x8 *lo) {
    const u64x4 low = {0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu}, mult = {m, m, m, m};
    const u64x4 even = mul_even((u64x4)a, mult), odd = mul_even((u64x4)a >> 32, mult);
    *lo = (u32x8)((even & low) | (odd << 32));
    *hi = (u32x8)((even >> 32) | (odd & ~low));
}

static inline void philox_rounds(u32x8 c[GROUPS][4], uint32_t k0, uint32_t k1) {
    for (int round = 0; round < 10; round++) {
        _Pragma("GCC unroll 4") for (int g = 0; g < GROUPS; g++) {
            u32x8 hi0, lo0, hi1, lo1;
            mulhilo(c[g][0], 0xD2511F53u, &hi0, &lo0);
            mulhilo(c[g][2], 0xCD9E8D57u, &hi1, &lo1);
            c[g][0] = hi1 ^ c[g][1] ^ k0;
            c[g][1] = lo1;
            c[g][2] = hi0 ^ c[g][3] ^ k1;
            c[g][3] = lo0;
        }
        k0 += 0x9E3779B9u;
        k1 += 0xBB67AE85u;
    }
}

/* the four words of one counter under one key: for the known-answer tests */
void philox4x32_10(const uint32_t counter[4], const uint32_t key[2], uint32_t out[4]) {
    u32x8 c[GROUPS][4];
    for (int g = 0; g < GROUPS; g++)
        for (int w = 0; w < 4; w++) c[g][w] = (u32x8){0} + counter[w];
    philox_rounds(c, key[0], key[1]);
    for (int w = 0; w < 4; w++) out[w] = c[0][w][0];
}

/* Box-Muller on eight (radius word, angle word) pairs; the loops are kept apart (not unrolled) so
   the compiler calls the vector logf, cosf and sinf rather than merging them into scalar sincosf */
static inline void box_muller(u32x8 radius, u32x8 angle, float *restrict out_cos, float *restrict out_sin) {
    float r[LANES], a[LANES];
    _Pragma("GCC unroll 1") for (int l = 0; l < LANES; l++) {
        const float u = ((float)(int32_t)(radius[l] >> 8) + 1.0f) * 0x1p-24f;
        r[l] = sqrtf(-2.0f * logf(u));
        a[l] = 6.28318530717958648f * ((float)(int32_t)(angle[l] >> 8) * 0x1p-24f);
    }
    _Pragma("GCC unroll 1") for (int l = 0; l < LANES; l++) out_cos[l] = r[l] * cosf(a[l]);
    _Pragma("GCC unroll 1") for (int l = 0; l < LANES; l++) out_sin[l] = r[l] * sinf(a[l]);
}

/* the CHUNK normals of chunk e0 / CHUNK of step (step_lo, step_hi) under key (k0, k1), into z */
static inline void chunk_normals(uint32_t k0, uint32_t k1, uint32_t step_lo, uint32_t step_hi, int64_t e0, float *restrict z) {
    const u32x8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    u32x8 c[GROUPS][4];
    for (int g = 0; g < GROUPS; g++) {
        c[g][0] = lane + (uint32_t)(e0 / 4 + g * LANES);
        c[g][1] = (u32x8){0} + step_lo;
        c[g][2] = (u32x8){0} + step_hi;
        c[g][3] = (u32x8){0};
    }
    philox_rounds(c, k0, k1);
    for (int g = 0; g < GROUPS; g++) {
        float *zg = z + 4 * LANES * g;
        box_muller(c[g][0], c[g][1], zg, zg + LANES);
        box_muller(c[g][2], c[g][3], zg + 2 * LANES, zg + 3 * LANES);
    }
}

/* out[b, e] = normal e of step `step` of the chain with key keys[b], for b < chains, e < n */
void chain_normals(const uint64_t *keys, int64_t chains, int64_t step, int64_t n, float *out) {
    const uint32_t step_lo = (uint32_t)step, step_hi = (uint32_t)((uint64_t)step >> 32);
    for (int64_t b = 0; b < chains; b++) {
        const uint32_t k0 = (uint32_t)keys[b], k1 = (uint32_t)(keys[b] >> 32);
        float *row = out + b * n;
        for (int64_t e0 = 0; e0 < n; e0 += CHUNK) {
            float tail[CHUNK];
            float *z = n - e0 >= CHUNK ? row + e0 : tail;
            chunk_normals(k0, k1, step_lo, step_hi, e0, z);
            if (z == tail) memcpy(row + e0, tail, (size_t)(n - e0) * sizeof(float));
        }
    }
}

/* One SGLD element's move, rounded as torch's addcmul rounds the kernel's three passes
   (llc/sampling/kernels/sgld.py): on a CPU with fused multiply-add each pass is one, else a
   product and a sum; the flags' reassociation is off (here and in its caller, whose options must
   match for it to be inlined), so the compiler keeps this order. */
#define IN_ORDER __attribute__((optimize("no-associative-math", "fp-contract=off")))
IN_ORDER static inline float update(float w, float pull, float grad, float z, float shrink, float gradient_scale, float noise_scale) {
#ifdef __FMA__
    return fmaf(z, noise_scale, fmaf(-grad, gradient_scale, fmaf(w, shrink, pull)));
#else
    return ((pull + w * shrink) + (-grad) * gradient_scale) + z * noise_scale;
#endif
}

/* One SGLD step of every chain, its noise drawn as chain_normals draws it and used at once:

     w[t][b, i] <- pull + w * shrink - grad * gradient_scale + z * noise_scale

   for each of the n_tensors parameters t (sizes[t] elements a chain, chain b's at b * sizes[t]),
   z the normals of step `step` of chain b, element e running over the parameters in order, the
   coefficients per chain; the same numbers as the kernel's passes, bit for bit (update). */
IN_ORDER void sgld_step(const uint64_t *keys, int64_t chains, int64_t step, int64_t n_tensors, const int64_t *sizes,
               float *const *w, const float *const *pull, const float *const *grad,
               const float *shrink, const float *gradient_scale, const float *noise_scale) {
    const uint32_t step_lo = (uint32_t)step, step_hi = (uint32_t)((uint64_t)step >> 32);
    int64_t n = 0;
    for (int64_t t = 0; t < n_tensors; t++) n += sizes[t];
    for (int64_t b = 0; b < chains; b++) {
        const uint32_t k0 = (uint32_t)keys[b], k1 = (uint32_t)(keys[b] >> 32);
        const float s = shrink[b], gs = gradient_scale[b], ns = noise_scale[b];
        int64_t t = 0, i = 0; /* the tensor and the element within it that element e0 falls on */
        for (int64_t e0 = 0; e0 < n; e0 += CHUNK) {
            float z[CHUNK];
            chunk_normals(k0, k1, step_lo, step_hi, e0, z);
            const int64_t in_chunk = n - e0 < CHUNK ? n - e0 : CHUNK;
            for (int64_t j = 0; j < in_chunk;) {
                while (i == sizes[t]) t++, i = 0; /* past the tensor's end (or an empty one) */
                const int64_t left = sizes[t] - i, run = in_chunk - j < left ? in_chunk - j : left;
                float *restrict wt = w[t] + b * sizes[t] + i;
                const float *restrict pt = pull[t] + b * sizes[t] + i, *restrict gt = grad[t] + b * sizes[t] + i;
                const float *restrict zj = z + j;
                for (int64_t r = 0; r < run; r++) wt[r] = update(wt[r], pt[r], gt[r], zj[r], s, gs, ns);
                j += run;
                i += run;
            }
        }
    }
}
