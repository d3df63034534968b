/* The reference MLP's minibatch cross-entropy and its gradient, chain by chain, in one call.

   The same function as models/mlp.py's batched_logits_and_vjp followed by the closed-form
   cross-entropy gradient (llc/sampling/objective.py), for the untied unembedding:

     pre = [E[a] | E[b]] [Wl | Wr]^T + bl + br,  hidden = act(pre),  logits = hidden W2^T,
     loss = mean_i (logsumexp(logits_i) - logits_i[y_i]),  G = (softmax - onehot) / M,

   then every gradient by the chain rule. The shapes are compile-time constants (-DP= -DD= -DH=,
   and -DACT=0/1/2 for gelu/relu/quad; the minibatch size M is an argument), so the compiler
   unrolls and vectorises the inner loops; grokscope/native.py builds one library per shape
   and caches it. Each chain is computed on its own with all its intermediates in cache, in a fixed
   order, so a chain's numbers do not depend on what else is in the call.

   Every matrix product has the form out[r, :] = sum_s coef[r, s] * rows[s, :] over rows padded to
   whole 8-float vectors (ROWCOMB), a few output rows at a time; the elementwise passes (GELU and
   its slope, the softmax's exponentials) are this file's own vector code, 8 lanes at a time. */

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define D2 (2 * D)

typedef float v8 __attribute__((vector_size(32)));
typedef int32_t vi8 __attribute__((vector_size(32)));
typedef uint32_t vu8 __attribute__((vector_size(32)));

/* lane by lane: mask (all ones or zeros, a vector comparison's result) ? a : b */
static inline v8 lanes_select(vi8 mask, v8 a, v8 b) { return (v8)((mask & (vi8)a) | (~mask & (vi8)b)); }
#define VEC(n) (((n) + 7) / 8) /* vectors in a row of n floats */

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

/* dst [cols][R8] = src [rows][cols8]^T for src rows of cols8 floats (a multiple of 8) and dst rows
   of R8 floats (rows rounded up to 8; the extra columns of dst are 0); dst has `cols` rows. */
static void transpose(const float *src, int rows, int cols8, float *dst, int cols) {
    const int R8 = VEC(rows) * 8;
    for (int r = 0; r < R8; r += 8)
        for (int c = 0; c < cols8; c += 8)
            if (c < cols) transpose_block(src + r * cols8 + c, cols8, rows - r, dst + c * R8 + r, R8, cols - c);
}

/* e^x for x <= 0, eight lanes at once: 2^n e^r with n = round(x / ln 2), |r| <= ln 2 / 2 and e^r by
   Cephes expf's polynomial (Moshier 1989); within 3e-7 relative where r comes from one fused
   multiply-add (any FMA CPU). Without FMA the error grows with |x| (4e-6 at x = -72, where e^x < 1e-31
   adds nothing to the sums it enters; a split ln 2 would not survive -fassociative-math). Below
   -87.3 it gives e^-87.3 (1e-38) instead of underflowing; nan stays nan. */
static inline v8 exp_nonpositive(v8 x) {
    x = lanes_select(x < -87.33654f, (v8){0} - 87.33654f, x);
    const vi8 n = __builtin_convertvector(x * 1.44269504f - 0.5f, vi8); /* round to nearest: x <= 0 */
    const v8 r = x - __builtin_convertvector(n, v8) * 0.693147182f;   /* a fused multiply-add */
    const v8 r2 = r * r; /* the polynomial by Estrin's scheme: a short dependency chain */
    const v8 p = ((r * 1.9875691500e-4f + 1.3981999507e-3f) * r2 + (r * 8.3334519073e-3f + 4.1665795894e-2f)) * r2 +
                 (r * 1.6666665459e-1f + 5.0000001201e-1f);
    return (p * r2 + r + 1.0f) * (v8)(((vu8)n + 127u) << 23);
}

#if ACT == 0
/* The standard normal cdf Phi(z), and phi(z) in *density (GELU is z Phi(z), its slope
   Phi(z) + z phi(z)), from one exponential e = exp(-z^2/2). With x = z / sqrt 2: for |x| < 1,
   erf(x) = x T(x^2) by Cephes erff's polynomial; for |x| >= 1, erfc(|x|) = e g(1/|x|) / |x|, g a
   degree-10 polynomial fitted to x e^(x^2) erfc(x) over 1/x in (0, 1] (within 3e-7 relative). */
static inline v8 normal_cdf(v8 z, v8 *density) {
    const v8 x = z * 0.70710678118654752f, x2 = x * x, e = exp_nonpositive(-x2);
    *density = e * 0.39894228040143268f;
    v8 small = x2 * 7.853861353153693e-5f - 8.010193625184903e-4f;
    small = small * x2 + 5.188327685732524e-3f;
    small = small * x2 - 2.685381193529856e-2f;
    small = small * x2 + 1.128358514861418e-1f;
    small = small * x2 - 3.761262582423300e-1f;
    small = small * x2 + 1.128379165726710f;
    const v8 ax = lanes_select(x < 0.0f, -x, x), one = (v8){0} + 1.0f;
    const v8 t = one / lanes_select(ax > 1.0f, ax, one), u = t * 2.0f - 1.0f;
    const v8 u2 = u * u, u4 = u2 * u2; /* Estrin's scheme, as above */
    const v8 g = (u * -8.360442434e-02f + 5.107913688e-01f) + (u * 1.484864671e-02f - 9.159551362e-03f) * u2 +
                 ((u * 1.449353801e-03f - 6.781814232e-03f) + (u * -1.089016651e-03f + 5.635830007e-04f) * u2) * u4 +
                 ((u * 9.234511789e-05f + 6.283557129e-04f) + u2 * -1.553514361e-04f) * (u4 * u4);
    const v8 half_erfc = e * g * t * 0.5f;
    return lanes_select(ax < 1.0f, x * small * 0.5f + 0.5f, lanes_select(x > 0.0f, 1.0f - half_erfc, half_erfc));
}
#endif
#define BLOCK_ROWS(nv) ((nv) >= 12 ? 1 : 12 / (nv)) /* output rows whose accumulators fit in registers */

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
        v8 acc_[RB][NV];                                                                      \
        _Pragma("GCC unroll 16") for (int b_ = 0; b_ < (RB); b_++)                            \
            _Pragma("GCC unroll 16") for (int n_ = 0; n_ < (NV); n_++)                         \
                acc_[b_][n_] = (init) ? ((const v8 *)(init))[n_] : (v8){0};                    \
        for (int s_ = 0; s_ < (S); s_++) {                                                    \
            const v8 *row_ = (const v8 *)(rows) + s_ * (NV);                                  \
            _Pragma("GCC unroll 16") for (int b_ = 0; b_ < (RB); b_++) {                       \
                const float c_ = (coef)[((r0) + b_) * (cr) + s_ * (cs)];                      \
                _Pragma("GCC unroll 16") for (int n_ = 0; n_ < (NV); n_++)                     \
                    acc_[b_][n_] += c_ * row_[n_];                                            \
            }                                                                                 \
        }                                                                                     \
        _Pragma("GCC unroll 16") for (int b_ = 0; b_ < (RB); b_++)                            \
            _Pragma("GCC unroll 16") for (int n_ = 0; n_ < (NV); n_++)                         \
                ((v8 *)(out))[((r0) + b_) * (NV) + n_] = acc_[b_][n_];                         \
    } while (0)

#define HP (VEC(H) * 8) /* padded row lengths */
#define PP (VEC(P) * 8)
#define D2P (VEC(D2) * 8)

/* The largest of P logits, vectorised (finite-math lets the compiler use vector max); a non-finite
   logit makes the loss non-finite whatever this returns, so the chain is still flagged. */
__attribute__((optimize("finite-math-only"))) static float row_max(const float *row) {
    float top = row[0];
    for (int c = 1; c < P; c++) top = row[c] > top ? row[c] : top;
    return top;
}

/* Per-chain scratch: fixed-size buffers, then those with one row per example. */
#define FIXED_FLOATS (H * D2P + D2 * HP + HP + 2 * P * HP + H * PP + H * D2P)
#define FLOATS_PER_EXAMPLE (D2P + 4 * HP + 2 * PP + D2P)

static void chain(int M, float *scratch, const float *E, const float *Wl, const float *bl,
                  const float *Wr, const float *br, const float *W2, const int64_t *x,
                  const int64_t *y, float *loss, float *gE, float *gWl, float *gbl, float *gWr,
                  float *gbr, float *gW2) {
    float *next = scratch;
#define TAKE(name, rows, cols) float(*name)[cols] = (float(*)[cols])next; next += (rows) * (cols)
    TAKE(first, H, D2P);
    TAKE(firstT, D2, HP);
    float *bias = next;
    next += HP;
    TAKE(W2p, P, HP);
    TAKE(gW2p, P, HP);
    TAKE(W2T, H, PP);
    TAKE(gFirst, H, D2P);
    TAKE(pair, M, D2P);
    TAKE(pre, M, HP);
    TAKE(hidden, M, HP);
    TAKE(slope, M, HP);
    TAKE(gH, M, HP);
    TAKE(logits, M, PP);
    TAKE(G, M, PP);
    TAKE(gPair, M, D2P);
#undef TAKE
    /* padding that is read must be 0; the rest is written before it is read (the transposes write
       their padding) */
    if (D2 != D2P) {
        memset(first, 0, H * D2P * sizeof(float));
        memset(pair, 0, M * D2P * sizeof(float));
    }
    if (H != HP) {
        memset(bias, 0, HP * sizeof(float));
        memset(W2p, 0, P * HP * sizeof(float));
    }

    for (int i = 0; i < M; i++) {
        memcpy(pair[i], E + x[2 * i] * D, D * sizeof(float));
        memcpy(pair[i] + D, E + x[2 * i + 1] * D, D * sizeof(float));
    }
    for (int j = 0; j < H; j++) {
        memcpy(first[j], Wl + j * D, D * sizeof(float));
        memcpy(first[j] + D, Wr + j * D, D * sizeof(float));
        bias[j] = bl[j] + br[j];
    }
    transpose(&first[0][0], H, D2P, &firstT[0][0], D2);
    for (int c = 0; c < P; c++) memcpy(W2p[c], W2 + c * H, H * sizeof(float));
    transpose(&W2p[0][0], P, HP, &W2T[0][0], H);

    /* forward */
    ROWCOMB(pre, M, VEC(H), bias, &pair[0][0], D2P, 1, D2, firstT);
    for (int i = 0; i < M; i++)
        for (int v = 0; v < VEC(H); v++) { /* the padding stays 0: act(0) = 0 */
            const v8 z = ((const v8 *)pre[i])[v];
#if ACT == 0 /* gelu(z) = z Phi(z), gelu'(z) = Phi(z) + z phi(z) */
            v8 density;
            const v8 cdf = normal_cdf(z, &density);
            ((v8 *)hidden[i])[v] = z * cdf;
            ((v8 *)slope[i])[v] = cdf + z * density;
#elif ACT == 1
            ((v8 *)hidden[i])[v] = lanes_select(z > 0.0f, z, (v8){0});
            ((v8 *)slope[i])[v] = lanes_select(z > 0.0f, (v8){0} + 1.0f, (v8){0});
#else
            ((v8 *)hidden[i])[v] = z * z;
            ((v8 *)slope[i])[v] = 2.0f * z;
#endif
        }
    ROWCOMB(logits, M, VEC(P), (const float *)0, &hidden[0][0], HP, 1, H, W2T);

    /* cross-entropy and d loss / d logits */
    v8 last_lanes; /* 1 for the columns c < P of the last vector of a row, 0 for its padding */
    for (int l = 0; l < 8; l++) last_lanes[l] = (P / 8) * 8 + l < P ? 1.0f : 0.0f;
    float total = 0.0f;
    for (int i = 0; i < M; i++) {
        const float top = row_max(logits[i]);
        v8 sums = {0};
        for (int v = 0; v < VEC(P); v++) { /* padding lanes (c >= P) are set to 0 */
            const v8 g = exp_nonpositive(((const v8 *)logits[i])[v] - top);
            ((v8 *)G[i])[v] = v < P / 8 ? g : g * last_lanes;
            sums += ((v8 *)G[i])[v];
        }
        float sum = 0.0f;
        for (int l = 0; l < 8; l++) sum += sums[l];
        total += top + logf(sum) - logits[i][y[i]];
        const float scale = 1.0f / (sum * M);
        for (int c = 0; c < P; c++) G[i][c] *= scale;
        G[i][y[i]] -= 1.0f / M;
    }
    *loss = total / M;

    /* backward */
    ROWCOMB(gW2p, P, VEC(H), (const float *)0, &G[0][0], 1, PP, M, hidden);
    for (int c = 0; c < P; c++) memcpy(gW2 + c * H, gW2p[c], H * sizeof(float));
    ROWCOMB(gH, M, VEC(H), (const float *)0, &G[0][0], PP, 1, P, W2p);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < HP; j++) gH[i][j] *= slope[i][j]; /* now d loss / d pre */
    for (int j = 0; j < H; j++) {
        float s = 0.0f;
        for (int i = 0; i < M; i++) s += gH[i][j];
        gbl[j] = s;
        gbr[j] = s;
    }
    ROWCOMB(gFirst, H, VEC(D2), (const float *)0, &gH[0][0], 1, HP, M, pair);
    for (int j = 0; j < H; j++) {
        memcpy(gWl + j * D, gFirst[j], D * sizeof(float));
        memcpy(gWr + j * D, gFirst[j] + D, D * sizeof(float));
    }
    ROWCOMB(gPair, M, VEC(D2), (const float *)0, &gH[0][0], HP, 1, H, first);
    memset(gE, 0, P * D * sizeof(float));
    for (int i = 0; i < M; i++) {
        float *ea = gE + x[2 * i] * D, *eb = gE + x[2 * i + 1] * D;
        for (int k = 0; k < D; k++) ea[k] += gPair[i][k];
        for (int k = 0; k < D; k++) eb[k] += gPair[i][D + k];
    }
}

/* One call's arguments, declared once (models/mlp.py mirrors it as a ctypes Structure): chains
   0..chains-1 on minibatches of `examples` examples; parameters and gradients are [chains, ...]
   contiguous, in the order E, Wl, bl, Wr, br, W2; x [chains, ., examples, 2] and y [chains, ., examples]
   with chain strides x_stride and y_stride (in elements). */
typedef struct {
    int64_t chains, examples;
    const float *params[6];
    const int64_t *x;
    int64_t x_stride;
    const int64_t *y;
    int64_t y_stride;
    float *loss;
    float *grads[6];
} MlpStep;

/* Returns 0; -1 when the scratch memory cannot be allocated; -2 when a token or target is not in
   [0, P) (nothing is read out of bounds). */
int mlp_loss_and_grads(const MlpStep *s) {
    const int64_t B = s->chains, M = s->examples;
    const int64_t *x = s->x, *y = s->y;
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < M; i++) {
            const int64_t a = x[b * s->x_stride + 2 * i], c = x[b * s->x_stride + 2 * i + 1], t = y[b * s->y_stride + i];
            if (a < 0 || a >= P || c < 0 || c >= P || t < 0 || t >= P) return -2;
        }
    const size_t bytes = (FIXED_FLOATS + (size_t)M * FLOATS_PER_EXAMPLE) * sizeof(float);
    float *scratch = aligned_alloc(32, (bytes + 31) / 32 * 32);
    if (!scratch) return -1;
    const float *const *w = s->params;
    float *const *g = s->grads;
    for (int64_t b = 0; b < B; b++)
        chain((int)M, scratch, w[0] + b * P * D, w[1] + b * H * D, w[2] + b * H, w[3] + b * H * D, w[4] + b * H,
              w[5] + b * P * H, x + b * s->x_stride, y + b * s->y_stride, s->loss + b, g[0] + b * P * D,
              g[1] + b * H * D, g[2] + b * H, g[3] + b * H * D, g[4] + b * H, g[5] + b * P * H);
    free(scratch);
    return 0;
}
