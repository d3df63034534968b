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

/* out[b, e] = normal e of step `step` of the chain with key keys[b], for b < chains, e < n */
void chain_normals(const uint64_t *keys, int64_t chains, int64_t step, int64_t n, float *out) {
    const u32x8 lane = {0, 1, 2, 3, 4, 5, 6, 7};
    const uint32_t step_lo = (uint32_t)step, step_hi = (uint32_t)((uint64_t)step >> 32);
    for (int64_t b = 0; b < chains; b++) {
        const uint32_t k0 = (uint32_t)keys[b], k1 = (uint32_t)(keys[b] >> 32);
        float *row = out + b * n;
        for (int64_t e0 = 0; e0 < n; e0 += CHUNK) {
            u32x8 c[GROUPS][4];
            for (int g = 0; g < GROUPS; g++) {
                c[g][0] = lane + (uint32_t)(e0 / 4 + g * LANES);
                c[g][1] = (u32x8){0} + step_lo;
                c[g][2] = (u32x8){0} + step_hi;
                c[g][3] = (u32x8){0};
            }
            philox_rounds(c, k0, k1);
            float tail[CHUNK];
            float *z = n - e0 >= CHUNK ? row + e0 : tail;
            for (int g = 0; g < GROUPS; g++) {
                float *zg = z + 4 * LANES * g;
                box_muller(c[g][0], c[g][1], zg, zg + LANES);
                box_muller(c[g][2], c[g][3], zg + 2 * LANES, zg + 3 * LANES);
            }
            if (z == tail) memcpy(row + e0, tail, (size_t)(n - e0) * sizeof(float));
        }
    }
}
