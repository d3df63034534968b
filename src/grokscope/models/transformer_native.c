/* The one-layer transformer's minibatch cross-entropy and its gradient, chain by chain, in one call.

   The same function as models/transformer.py's forward followed by the closed-form cross-entropy
   gradient (llc/sampling/objective.py). For each example, with T positions (a, b, and "=" when
   EQ), x_t = E[token_t] + pos_t (x_2 = equals + pos_2), t = T - 1 the position read out:

     [q_t | k_t | v_t] = x_t W_QKV,  per head h: s_h = softmax_t(q_T-1,h . k_t,h / sqrt(d_head)),
     pattern_h = alpha s_h + (1 - alpha) / T,  att_h = sum_t pattern_h,t v_t,h,
     r1 = x_T-1 + att W_O,  r2 = r1 + relu(r1 W_in + b_in) W_out + b_out,  logits = r2 U^T,

   then every gradient by the chain rule, written out (the softmax's: g_scores = s (g_s - s . g_s)).
   The shapes are compile-time constants (-DP= -DD= -DHEADS= -DDM= -DEQ=0/1; the minibatch size
   and alpha are arguments), so the compiler unrolls and vectorises; grokscope/native.py builds one
   library per shape. As in models/mlp_native.c, each chain is computed on its own, all its
   intermediates in cache, in a fixed order, and every matrix product is a ROWCOMB over rows padded
   to whole vectors (models/vectors.h). */

#include "vectors.h"

#define T (EQ ? 3 : 2) /* positions */
#define D3 (3 * D)
#define DH (D / HEADS)
#define DP (VEC(D) * VW) /* padded row lengths */
#define D3P (VEC(D3) * VW)
#define DMP (VEC(DM) * VW)

/* dst [rows][cols_padded] = src [rows][cols], the padding 0 */
static void pad_rows(const float *src, int rows, int cols, float *dst, int cols_padded) {
    for (int r = 0; r < rows; r++) {
        memcpy(dst + r * cols_padded, src + r * cols, cols * sizeof(float));
        memset(dst + r * cols_padded + cols, 0, (cols_padded - cols) * sizeof(float));
    }
}

/* dst [rows][cols] = src [rows][cols_padded] without the padding */
static void unpad_rows(const float *src, int rows, int cols_padded, float *dst, int cols) {
    for (int r = 0; r < rows; r++) memcpy(dst + r * cols, src + r * cols_padded, cols * sizeof(float));
}

/* The parameters in the order of the call's arrays (models/transformer.py names them). */
enum { EMBED, POS, EQUALS, QKV, WO, WIN, BIN, WOUT, BOUT, UNEMBED, N_PARAMS };

/* Per-chain scratch: fixed-size buffers, then those with one row per example. */
#define FIXED_FLOATS (D * D3P + D3 * DP + 2 * D * DP + 2 * D * DMP + 3 * DM * DP + DMP + DP + 2 * P * DP + D * PP + \
                      D * D3P + D * DP + D * DMP)
#define FLOATS_PER_EXAMPLE (T * DP + T * D3P + 2 * HEADS * T + DP + DP + 2 * DMP + DP + 2 * PP + DP + DMP + 2 * DP + \
                            T * D3P + T * DP)

static void chain(int M, float alpha, float *scratch, const float *const *w, const int64_t *x, const int64_t *y,
                  float *loss, float *const *g) {
    float *next = scratch;
#define TAKE(name, rows, cols) float(*name)[cols] = (float(*)[cols])next; next += (rows) * (cols)
    TAKE(Wqkv, D, D3P); /* the weights, padded, and transposed for the backward products */
    TAKE(WqkvT, D3, DP);
    TAKE(Wo, D, DP);
    TAKE(WoT, D, DP);
    TAKE(Win, D, DMP);
    TAKE(WinT, DM, DP);
    TAKE(Wout, DM, DP);
    TAKE(WoutT, D, DMP);
    float *b_in = next;
    next += DMP;
    float *b_out = next;
    next += DP;
    TAKE(U, P, DP);
    TAKE(gU, P, DP);
    TAKE(UT, D, PP);
    TAKE(gWqkv, D, D3P);
    TAKE(gWo, D, DP);
    TAKE(gWin, D, DMP);
    TAKE(gWout, DM, DP);
    TAKE(X, M * T, DP); /* row i T + t: example i's position t */
    TAKE(qkv, M * T, D3P);
    TAKE(att, M, DP);
    TAKE(r1, M, DP);
    TAKE(pre, M, DMP);
    TAKE(hidden, M, DMP);
    TAKE(r2, M, DP);
    TAKE(logits, M, PP);
    TAKE(G, M, PP);
    TAKE(g_r2, M, DP);
    TAKE(g_pre, M, DMP);
    TAKE(g_r1, M, DP);
    TAKE(g_att, M, DP);
    TAKE(g_qkv, M * T, D3P);
    TAKE(g_x, M * T, DP);
    TAKE(soft, M, HEADS * T); /* softmax s_h,t (last: its rows are not whole vectors) */
    TAKE(pattern, M, HEADS * T);
#undef TAKE
    const float scale = 1.0f / sqrtf((float)DH), uniform = (1.0f - alpha) / T;

    pad_rows(w[QKV], D, D3, &Wqkv[0][0], D3P);
    transpose(&Wqkv[0][0], D, D3P, &WqkvT[0][0], D3);
    pad_rows(w[WO], D, D, &Wo[0][0], DP);
    transpose(&Wo[0][0], D, DP, &WoT[0][0], D);
    pad_rows(w[WIN], D, DM, &Win[0][0], DMP);
    transpose(&Win[0][0], D, DMP, &WinT[0][0], DM);
    pad_rows(w[WOUT], DM, D, &Wout[0][0], DP);
    transpose(&Wout[0][0], DM, DP, &WoutT[0][0], D);
    pad_rows(w[BIN], 1, DM, b_in, DMP);
    pad_rows(w[BOUT], 1, D, b_out, DP);
    pad_rows(w[UNEMBED], P, D, &U[0][0], DP);
    transpose(&U[0][0], P, DP, &UT[0][0], D);

    /* forward: the residual stream at every position, then q, k, v */
    for (int i = 0; i < M; i++)
        for (int t = 0; t < T; t++) {
            const float *token = t < 2 ? w[EMBED] + x[2 * i + t] * D : w[EQUALS];
            for (int c = 0; c < D; c++) X[i * T + t][c] = token[c] + w[POS][t * D + c];
            for (int c = D; c < DP; c++) X[i * T + t][c] = 0.0f;
        }
    ROWCOMB(qkv, M * T, VEC(D3), (const float *)0, &X[0][0], DP, 1, D, Wqkv);

    /* attention, read out at the last position only; the softmax's exponentials a vector at a time */
    for (int i = 0; i < M; i++) {
        const float *q = qkv[i * T + T - 1];
        vf exps[VEC(HEADS * T)] = {{0}};
        float *score = (float *)exps;
        for (int h = 0; h < HEADS; h++) {
            float top = -INFINITY;
            for (int t = 0; t < T; t++) {
                const float *k = qkv[i * T + t] + D + h * DH;
                float dot = 0.0f;
                for (int j = 0; j < DH; j++) dot += q[h * DH + j] * k[j];
                score[h * T + t] = dot * scale;
                top = score[h * T + t] > top ? score[h * T + t] : top;
            }
            for (int t = 0; t < T; t++) score[h * T + t] -= top;
        }
        for (int v = 0; v < VEC(HEADS * T); v++) exps[v] = exp_nonpositive(exps[v]);
        for (int c = 0; c < DP; c++) att[i][c] = 0.0f;
        for (int h = 0; h < HEADS; h++) {
            float sum = 0.0f;
            for (int t = 0; t < T; t++) sum += score[h * T + t];
            for (int t = 0; t < T; t++) {
                const float s = score[h * T + t] / sum, share = alpha * s + uniform;
                const float *v = qkv[i * T + t] + 2 * D + h * DH;
                soft[i][h * T + t] = s;
                pattern[i][h * T + t] = share;
                for (int j = 0; j < DH; j++) att[i][h * DH + j] += share * v[j];
            }
        }
    }
    ROWCOMB(r1, M, VEC(D), (const float *)0, &att[0][0], DP, 1, D, Wo);
    for (int i = 0; i < M; i++)
        for (int c = 0; c < DP; c++) r1[i][c] += X[i * T + T - 1][c];
    ROWCOMB(pre, M, VEC(DM), b_in, &r1[0][0], DP, 1, D, Win);
    for (int i = 0; i < M; i++)
        for (int c = 0; c < DMP; c++) hidden[i][c] = pre[i][c] > 0.0f ? pre[i][c] : 0.0f;
    ROWCOMB(r2, M, VEC(D), b_out, &hidden[0][0], DMP, 1, DM, Wout);
    for (int i = 0; i < M; i++)
        for (int c = 0; c < DP; c++) r2[i][c] += r1[i][c];
    ROWCOMB(logits, M, VEC(P), (const float *)0, &r2[0][0], DP, 1, D, UT);
    *loss = softmax_cross_entropy(M, logits, G, y); /* and d loss / d logits */

    /* backward: the unembedding and the MLP */
    ROWCOMB(gU, P, VEC(D), (const float *)0, &G[0][0], 1, PP, M, r2);
    unpad_rows(&gU[0][0], P, DP, g[UNEMBED], D);
    ROWCOMB(g_r2, M, VEC(D), (const float *)0, &G[0][0], PP, 1, P, U);
    column_sums(&g_r2[0][0], M, DP, D, g[BOUT]);
    ROWCOMB(gWout, DM, VEC(D), (const float *)0, &hidden[0][0], 1, DMP, M, g_r2);
    unpad_rows(&gWout[0][0], DM, DP, g[WOUT], D);
    ROWCOMB(g_pre, M, VEC(DM), (const float *)0, &g_r2[0][0], DP, 1, D, WoutT);
    for (int i = 0; i < M; i++)
        for (int c = 0; c < DMP; c++) g_pre[i][c] = pre[i][c] > 0.0f ? g_pre[i][c] : 0.0f;
    column_sums(&g_pre[0][0], M, DMP, DM, g[BIN]);
    ROWCOMB(gWin, D, VEC(DM), (const float *)0, &r1[0][0], 1, DP, M, g_pre);
    unpad_rows(&gWin[0][0], D, DMP, g[WIN], DM);
    ROWCOMB(g_r1, M, VEC(D), (const float *)0, &g_pre[0][0], DMP, 1, DM, WinT);
    for (int i = 0; i < M; i++)
        for (int c = 0; c < DP; c++) g_r1[i][c] += g_r2[i][c];

    /* the attention */
    ROWCOMB(gWo, D, VEC(D), (const float *)0, &att[0][0], 1, DP, M, g_r1);
    unpad_rows(&gWo[0][0], D, DP, g[WO], D);
    ROWCOMB(g_att, M, VEC(D), (const float *)0, &g_r1[0][0], DP, 1, D, WoT);
    memset(g_qkv, 0, (size_t)M * T * D3P * sizeof(float));
    for (int i = 0; i < M; i++) {
        const float *q = qkv[i * T + T - 1];
        for (int h = 0; h < HEADS; h++) {
            const float *ga = g_att[i] + h * DH;
            float g_soft[T], weighted = 0.0f;
            for (int t = 0; t < T; t++) {
                const float *v = qkv[i * T + t] + 2 * D + h * DH;
                float *gv = g_qkv[i * T + t] + 2 * D + h * DH;
                float dot = 0.0f;
                for (int j = 0; j < DH; j++) {
                    dot += ga[j] * v[j];
                    gv[j] = pattern[i][h * T + t] * ga[j];
                }
                g_soft[t] = alpha * dot;
                weighted += soft[i][h * T + t] * g_soft[t];
            }
            float *gq = g_qkv[i * T + T - 1] + h * DH;
            for (int t = 0; t < T; t++) {
                const float g_score = soft[i][h * T + t] * (g_soft[t] - weighted) * scale;
                const float *k = qkv[i * T + t] + D + h * DH;
                float *gk = g_qkv[i * T + t] + D + h * DH;
                for (int j = 0; j < DH; j++) {
                    gq[j] += g_score * k[j];
                    gk[j] = g_score * q[h * DH + j];
                }
            }
        }
    }
    ROWCOMB(gWqkv, D, VEC(D3), (const float *)0, &X[0][0], 1, DP, M * T, g_qkv);
    unpad_rows(&gWqkv[0][0], D, D3P, g[QKV], D3);
    ROWCOMB(g_x, M * T, VEC(D), (const float *)0, &g_qkv[0][0], D3P, 1, D3, WqkvT);

    /* the embeddings */
    for (int i = 0; i < M; i++)
        for (int c = 0; c < D; c++) g_x[i * T + T - 1][c] += g_r1[i][c];
    memset(g[EMBED], 0, P * D * sizeof(float));
    memset(g[POS], 0, T * D * sizeof(float));
    if (EQ) memset(g[EQUALS], 0, D * sizeof(float));
    for (int i = 0; i < M; i++)
        for (int t = 0; t < T; t++) {
            float *token = t < 2 ? g[EMBED] + x[2 * i + t] * D : g[EQUALS];
            for (int c = 0; c < D; c++) {
                token[c] += g_x[i * T + t][c];
                g[POS][t * D + c] += g_x[i * T + t][c];
            }
        }
}

/* One call's arguments (models/transformer.py mirrors it as a ctypes Structure): chains
   0..chains-1 on minibatches of `examples` pairs; parameters and gradients [chains, ...] contiguous
   in the order of the enum above (equals is null without EQ); x [chains, ., examples, 2] and y
   [chains, ., examples] with chain strides x_stride and y_stride (in elements). */
typedef struct {
    int64_t chains, examples;
    const float *params[N_PARAMS];
    const int64_t *x;
    int64_t x_stride;
    const int64_t *y;
    int64_t y_stride;
    float *loss;
    float *grads[N_PARAMS];
    float attention_rate;
} TransformerStep;

static const int64_t SIZES[N_PARAMS] = {P * D, T * D, EQ ? D : 0, D * D3, D * D, D * DM, DM, DM * D, D, P * D};

/* Returns 0, or begin_call's status (models/vectors.h). */
int transformer_loss_and_grads(const TransformerStep *s) {
    const int64_t B = s->chains, M = s->examples;
    const int64_t *x = s->x, *y = s->y;
    int status;
    unsigned int mode;
    float *scratch = begin_call(x, s->x_stride, y, s->y_stride, B, M, FIXED_FLOATS + (size_t)M * FLOATS_PER_EXAMPLE, &status, &mode);
    if (!scratch) return status;
    for (int64_t b = 0; b < B; b++) {
        const float *w[N_PARAMS];
        float *g[N_PARAMS];
        for (int n = 0; n < N_PARAMS; n++) {
            w[n] = SIZES[n] ? s->params[n] + b * SIZES[n] : 0;
            g[n] = SIZES[n] ? s->grads[n] + b * SIZES[n] : 0;
        }
        chain((int)M, s->attention_rate, scratch, w, x + b * s->x_stride, y + b * s->y_stride, s->loss + b, g);
    }
    restore_subnormals(mode);
    free(scratch);
    return 0;
}
