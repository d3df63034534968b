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
   whole vectors (ROWCOMB), a few output rows at a time; the elementwise passes (GELU and
   its slope, the softmax's exponentials) are this file's own vector code, a vector at a time. */

#include "vectors.h"

#define D2 (2 * D)

#if ACT == 0
/* The standard normal cdf Phi(z), and phi(z) in *density (GELU is z Phi(z), its slope
   Phi(z) + z phi(z)), from one exponential e = exp(-z^2/2). With x = z / sqrt 2: for |x| < 1,
   erf(x) = x T(x^2) by Cephes erff's polynomial; for |x| >= 1, erfc(|x|) = e g(1/|x|) / |x|, g a
   degree-10 polynomial fitted to x e^(x^2) erfc(x) over 1/x in (0, 1] (within 3e-7 relative). */
static inline vf normal_cdf(vf z, vf *density) {
    const vf x = z * 0.70710678118654752f, x2 = x * x, e = exp_nonpositive(-x2);
    *density = e * 0.39894228040143268f;
    vf small = x2 * 7.853861353153693e-5f - 8.010193625184903e-4f;
    small = small * x2 + 5.188327685732524e-3f;
    small = small * x2 - 2.685381193529856e-2f;
    small = small * x2 + 1.128358514861418e-1f;
    small = small * x2 - 3.761262582423300e-1f;
    small = small * x2 + 1.128379165726710f;
    const vf ax = lanes_select(x < 0.0f, -x, x), one = (vf){0} + 1.0f;
    const vf t = one / lanes_select(ax > 1.0f, ax, one), u = t * 2.0f - 1.0f;
    const vf u2 = u * u, u4 = u2 * u2; /* Estrin's scheme, as above */
    const vf g = (u * -8.360442434e-02f + 5.107913688e-01f) + (u * 1.484864671e-02f - 9.159551362e-03f) * u2 +
                 ((u * 1.449353801e-03f - 6.781814232e-03f) + (u * -1.089016651e-03f + 5.635830007e-04f) * u2) * u4 +
                 ((u * 9.234511789e-05f + 6.283557129e-04f) + u2 * -1.553514361e-04f) * (u4 * u4);
    const vf half_erfc = e * g * t * 0.5f;
    return lanes_select(ax < 1.0f, x * small * 0.5f + 0.5f, lanes_select(x > 0.0f, 1.0f - half_erfc, half_erfc));
}
#endif

#define HP (VEC(H) * VW) /* padded row lengths */
#define D2P (VEC(D2) * VW)

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
            const vf z = ((const vf *)pre[i])[v];
#if ACT == 0 /* gelu(z) = z Phi(z), gelu'(z) = Phi(z) + z phi(z) */
            vf density;
            const vf cdf = normal_cdf(z, &density);
            ((vf *)hidden[i])[v] = z * cdf;
            ((vf *)slope[i])[v] = cdf + z * density;
#elif ACT == 1
            ((vf *)hidden[i])[v] = lanes_select(z > 0.0f, z, (vf){0});
            ((vf *)slope[i])[v] = lanes_select(z > 0.0f, (vf){0} + 1.0f, (vf){0});
#else
            ((vf *)hidden[i])[v] = z * z;
            ((vf *)slope[i])[v] = 2.0f * z;
#endif
        }
    ROWCOMB(logits, M, VEC(P), (const float *)0, &hidden[0][0], HP, 1, H, W2T);

    *loss = softmax_cross_entropy(M, logits, G, y); /* and d loss / d logits */

    /* backward */
    ROWCOMB(gW2p, P, VEC(H), (const float *)0, &G[0][0], 1, PP, M, hidden);
    for (int c = 0; c < P; c++) memcpy(gW2 + c * H, gW2p[c], H * sizeof(float));
    ROWCOMB(gH, M, VEC(H), (const float *)0, &G[0][0], PP, 1, P, W2p);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < HP; j++) gH[i][j] *= slope[i][j]; /* now d loss / d pre */
    column_sums(&gH[0][0], M, HP, H, gbl);
    memcpy(gbr, gbl, H * sizeof(float));
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

/* Returns 0, or begin_call's status (models/vectors.h). */
int mlp_loss_and_grads(const MlpStep *s) {
    const int64_t B = s->chains, M = s->examples;
    const int64_t *x = s->x, *y = s->y;
    int status;
    unsigned int mode;
    float *scratch = begin_call(x, s->x_stride, y, s->y_stride, B, M, FIXED_FLOATS + (size_t)M * FLOATS_PER_EXAMPLE, &status, &mode);
    if (!scratch) return status;
    const float *const *w = s->params;
    float *const *g = s->grads;
    for (int64_t b = 0; b < B; b++)
        chain((int)M, scratch, w[0] + b * P * D, w[1] + b * H * D, w[2] + b * H, w[3] + b * H * D, w[4] + b * H,
              w[5] + b * P * H, x + b * s->x_stride, y + b * s->y_stride, s->loss + b, g[0] + b * P * D,
              g[1] + b * H * D, g[2] + b * H, g[3] + b * H * D, g[4] + b * H, g[5] + b * P * H);
    restore_subnormals(mode);
    free(scratch);
    return 0;
}
