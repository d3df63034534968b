/* Vector building blocks of the compiled model steps (models/mlp_native.c, models/transformer_native.c):
   whole-register vectors, block transposes, e^x for x <= 0, the row-combination matrix product ROWCOMB, and the
   softmax cross-entropy of a minibatch with its gradient. Sources that include it define P, the number of
   classes, at compile time (-DP=...). */

#ifndef GROKSCOPE_VECTORS_H
#define GROKSCOPE_VECTORS_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* floats per vector: whole registers, 16 with AVX-512 (twice the multiply-adds per instruction),
   else 8 (AVX2; the compiler splits them where the CPU has narrower ones); -DVW= chooses */
#if defined(__x86_64__) || defined(__i386__)
#include <xmmintrin.h>
/* Subnormal floats (below 1.2e-38; the softmax gradient of a confident network is full of them)
   cost about a hundred cycles an operation on x86. A kernel flushes them to zero while it runs (in
   its own thread's MXCSR) and gives the caller its mode back: a change below 1.2e-38 in any value. */
static inline unsigned int flush_subnormals(void) {
    const unsigned int saved = _mm_getcsr();
    _mm_setcsr(saved | 0x8040); /* flush-to-zero and denormals-are-zero */
    return saved;
}
static inline void restore_subnormals(unsigned int saved) { _mm_setcsr(saved); }
#else
static inline unsigned int flush_subnormals(void) { return 0; }
static inline void restore_subnormals(unsigned int saved) { (void)saved; }
#endif

#ifndef VW
#ifdef __AVX512F__
#define VW 16
#else
#define VW 8
#endif
#endif
typedef float vf __attribute__((vector_size(4 * VW)));
typedef int32_t vi __attribute__((vector_size(4 * VW)));
typedef uint32_t vu __attribute__((vector_size(4 * VW)));
typedef float v8 __attribute__((vector_size(32))); /* the transposes' 8 x 8 blocks */
typedef int32_t vi8 __attribute__((vector_size(32)));

/* lane by lane: mask (all ones or zeros, a vector comparison's result) ? a : b */
static inline vf lanes_select(vi mask, vf a, vf b) { return (vf)((mask & (vi)a) | (~mask & (vi)b)); }
#define VEC(n) (((n) + VW - 1) / VW) /* vectors in a row of n floats */

/* dst[r][c] = src[c][r] for an 8 x 8 block: rows of src are 8-float vectors (absent rows, beyond
   `rows`, read as 0), and only the first `keep` rows of dst are stored. Three rounds of shuffles
   (unpack, pair, swap halves), as an AVX transpose does. */
static inline void transpose_block(const float *src, int src_stride, int rows, float *dst, int dst_stride, int keep) {
    const vi8 lo = {0, 8, 1, 9, 4, 12, 5, 13}, hi = {2, 10, 3, 11, 6, 14, 7, 15};
    const vi8 pair_lo = {0, 1, 8, 9, 4, 5, 12, 13}, pair_hi = {2, 3, 10, 11, 6, 7, 14, 15};
    const vi8 half_lo = {0, 1, 2, 3, 8, 9, 10, 11}, half_hi = {4, 5, 6, 7, 12, 13, 14, 15};
    v8 r[8], t[8], u[8];
    for (int i = 0; i < 8; i++)
        if (i < rows) memcpy(&r[i], src + i * src_stride, sizeof(v8));
        else r[i] = (v8){0};
    for (int i = 0; i < 4; i++) {
        t[2 * i] = __builtin_shuffle(r[2 * i], r[2 * i + 1], lo);
        t[2 * i + 1] = __builtin_shuffle(r[2 * i], r[2 * i + 1], hi);
    }
    for (int i = 0; i < 2; i++) {
        u[4 * i] = __builtin_shuffle(t[4 * i], t[4 * i + 2], pair_lo);
        u[4 * i + 1] = __builtin_shuffle(t[4 * i], t[4 * i + 2], pair_hi);
        u[4 * i + 2] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], pair_lo);
        u[4 * i + 3] = __builtin_shuffle(t[4 * i + 1], t[4 * i + 3], pair_hi);
    }
    for (int i = 0; i < 8; i++) {
        const v8 out = __builtin_shuffle(u[i % 4], u[i % 4 + 4], i < 4 ? half_lo : half_hi);
        if (i < keep) memcpy(dst + i * dst_stride, &out, sizeof(v8));
    }
}

/* dst [cols][RP] = src [rows][cols_padded]^T for src rows of cols_padded floats (a multiple of 8)
   and dst rows of RP floats (rows padded to whole vectors; the extra columns of dst are 0). */
static void transpose(const float *src, int rows, int cols_padded, float *dst, int cols) {
    const int RP = VEC(rows) * VW, R8 = (rows + 7) / 8 * 8;
    for (int r = 0; r < R8; r += 8)
        for (int c = 0; c < cols; c += 8)
            transpose_block(src + r * cols_padded + c, cols_padded, rows - r, dst + c * RP + r, RP, cols - c);
    if (RP > R8)
        for (int c = 0; c < cols; c++) memset(dst + c * RP + R8, 0, (RP - R8) * sizeof(float));
}

/* e^x for x <= 0, a vector at once: 2^n e^r with n = round(x / ln 2), |r| <= ln 2 / 2 and e^r by
   Cephes expf's polynomial (Moshier 1989); within 3e-7 relative where r comes from one fused
   multiply-add (any FMA CPU). Without FMA the error grows with |x| (4e-6 at x = -72, where e^x < 1e-31
   adds nothing to the sums it enters; a split ln 2 would not survive -fassociative-math). Below
   -87.3 it gives e^-87.3 (1e-38) instead of underflowing; nan stays nan. */
static inline vf exp_nonpositive(vf x) {
    x = lanes_select(x < -87.33654f, (vf){0} - 87.33654f, x);
    const vi n = __builtin_convertvector(x * 1.44269504f - 0.5f, vi); /* round to nearest: x <= 0 */
    const vf r = x - __builtin_convertvector(n, vf) * 0.693147182f;   /* a fused multiply-add */
    const vf r2 = r * r; /* the polynomial by Estrin's scheme: a short dependency chain */
    const vf p = ((r * 1.9875691500e-4f + 1.3981999507e-3f) * r2 + (r * 8.3334519073e-3f + 4.1665795894e-2f)) * r2 +
                 (r * 1.6666665459e-1f + 5.0000001201e-1f);
    return (p * r2 + r + 1.0f) * (vf)(((vu)n + 127u) << 23);
}

#define ACCUMULATORS (VW == 16 ? 24 : 12) /* of the 16 (AVX2) or 32 (AVX-512) vector registers */
#define BLOCK_ROWS(nv) ((nv) >= ACCUMULATORS ? 1 : ACCUMULATORS / (nv)) /* output rows whose accumulators fit in registers */

/* out[r, :] = init (or 0) + sum_{s < S} coef[r * cr + s * cs] * rows[s, :] for r < R, where out and
   rows are padded rows of NV vectors (row strides in vectors). BLOCK_ROWS(NV) output rows go
   together: their accumulators stay in registers and hide the multiply-add latency. */
#define ROWCOMB(out, R, NV, init, coef, cr, cs, S, rows)                                        \
    do {                                                                                      \
        enum { RB_ = BLOCK_ROWS(NV) };                                                        \
        int r0_ = 0;                                                                          \
        for (; r0_ + RB_ <= (R); r0_ += RB_) ROWCOMB_BLOCK(RB_, r0_, out, NV, init, coef, cr, cs, S, rows); \
        if ((R) % RB_)                                                                        \
            for (; r0_ < (R); r0_++) ROWCOMB_BLOCK(1, r0_, out, NV, init, coef, cr, cs, S, rows);  \
    } while (0)

#define ROWCOMB_BLOCK(RB, r0, out, NV, init, coef, cr, cs, S, rows)                             \
    do {                                                                                      \
        vf acc_[RB][NV];                                                                      \
        _Pragma("GCC unroll 16") for (int b_ = 0; b_ < (RB); b_++)                            \
            _Pragma("GCC unroll 16") for (int n_ = 0; n_ < (NV); n_++)                         \
                acc_[b_][n_] = (init) ? ((const vf *)(init))[n_] : (vf){0};                    \
        for (int s_ = 0; s_ < (S); s_++) {                                                    \
            const vf *row_ = (const vf *)(rows) + s_ * (NV);                                  \
            _Pragma("GCC unroll 16") for (int b_ = 0; b_ < (RB); b_++) {                       \
                const float c_ = (coef)[((r0) + b_) * (cr) + s_ * (cs)];                      \
                _Pragma("GCC unroll 16") for (int n_ = 0; n_ < (NV); n_++)                     \
                    acc_[b_][n_] += c_ * row_[n_];                                            \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 16") for (int b_ = 0; b_ < (RB); b_++)                            \
            _Pragma("GCC unroll 16") for (int n_ = 0; n_ < (NV); n_++)                         \
                ((vf *)(out))[((r0) + b_) * (NV) + n_] = acc_[b_][n_];                         \
    } while (0)

/* The largest of P logits, vectorised (finite-math lets the compiler use vector max); a non-finite
   logit makes the loss non-finite whatever this returns, so the chain is still flagged. */
__attribute__((optimize("finite-math-only"))) static float row_max(const float *row) {
    float top = row[0];
    for (int c = 1; c < P; c++) top = row[c] > top ? row[c] : top;
    return top;
}

/* Whether every token of x [chains, ., examples, 2] and every target of y [chains, ., examples]
   (chain strides x_stride, y_stride) lies in [0, P): the kernels check before they read. */
static int tokens_in_range(const int64_t *x, int64_t x_stride, const int64_t *y, int64_t y_stride, int64_t chains,
                           int64_t examples) {
    for (int64_t b = 0; b < chains; b++)
        for (int64_t i = 0; i < examples; i++) {
            const int64_t a = x[b * x_stride + 2 * i], c = x[b * x_stride + 2 * i + 1], t = y[b * y_stride + i];
            if (a < 0 || a >= P || c < 0 || c >= P || t < 0 || t >= P) return 0;
        }
    return 1;
}

/* What a kernel's entry point does first: check the minibatch's tokens (status -2 when one is out
   of range: nothing is read out of bounds), take `floats` floats of scratch aligned for whole
   vectors (status -1 when there is no memory; free() releases them) and flush subnormals (the
   caller's mode in *mode). Returns the scratch, or NULL with *status set. */
static float *begin_call(const int64_t *x, int64_t x_stride, const int64_t *y, int64_t y_stride, int64_t chains,
                         int64_t examples, size_t floats, int *status, unsigned int *mode) {
    *status = tokens_in_range(x, x_stride, y, y_stride, chains, examples) ? 0 : -2;
    if (*status) return 0;
    float *scratch = aligned_alloc(sizeof(vf), (floats * sizeof(float) + sizeof(vf) - 1) / sizeof(vf) * sizeof(vf));
    if (!scratch) *status = -1;
    else *mode = flush_subnormals();
    return scratch;
}

/* out[c] = sum_r rows[r * stride + c] for c < cols, r < R (a bias's gradient) */
static void column_sums(const float *rows, int R, int stride, int cols, float *out) {
    for (int c = 0; c < cols; c++) {
        float sum = 0.0f;
        for (int r = 0; r < R; r++) sum += rows[r * stride + c];
        out[c] = sum;
    }
}

#define PP (VEC(P) * VW) /* a row of P logits, padded */

/* The minibatch's mean cross-entropy, mean_i (logsumexp(logits_i) - logits_i[y_i]), over M rows of
   padded logits, and d loss / d logits = (softmax - onehot) / M into G (its padding set to 0). */
static float softmax_cross_entropy(int M, float (*logits)[PP], float (*G)[PP], const int64_t *y) {
    vf last_lanes; /* 1 for the columns c < P of the last vector of a row, 0 for its padding */
    for (int l = 0; l < VW; l++) last_lanes[l] = (P / VW) * VW + l < P ? 1.0f : 0.0f;
    float total = 0.0f;
    for (int i = 0; i < M; i++) {
        const float top = row_max(logits[i]);
        vf sums = {0};
        for (int v = 0; v < VEC(P); v++) { /* padding lanes (c >= P) are set to 0 */
            const vf g = exp_nonpositive(((const vf *)logits[i])[v] - top);
            ((vf *)G[i])[v] = v < P / VW ? g : g * last_lanes;
            sums += ((vf *)G[i])[v];
        }
        float sum = 0.0f;
        for (int l = 0; l < VW; l++) sum += sums[l];
        /* top - logit_y first (0 for a confident right answer), so that a loss near 0 keeps its digits
           instead of vanishing in top + log(sum); volatile, since -fassociative-math may reorder */
        const volatile float margin = top - logits[i][y[i]];
        total += margin + logf(sum);
        const float scale = 1.0f / (sum * M);
        for (int c = 0; c < P; c++) G[i][c] *= scale;
        G[i][y[i]] -= 1.0f / M;
    }
    return total / M;
}

#endif
