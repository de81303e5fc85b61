/* The recurrent step kernels of rnn_steps.h, written once. Each rnn_steps_<isa>.c
 * defines RNN_TARGET (a function attribute selecting the instruction set, possibly
 * empty) and RNN_TABLE (the name of its pl_rnn_steps table), then includes this file:
 * every loop below is over contiguous floats so the compiler vectorises it for that
 * instruction set. Rows are independent, so results do not depend on thread count. */
#if defined(__GNUC__) && !defined(__clang__)
/* Lets GCC vectorise the selects (fast_tanh's clamps, relu) as compares and blends (no
 * float traps are used); it makes min/max of them only when told that no NaN occurs,
 * hence rnn_steps_avx2.c's own tanh and sigmoid spans. */
#pragma GCC optimize ("no-trapping-math")
#endif
#include <string.h>
#include "activations.h"
#include "rnn_steps.h"
#include "rnn_tanh.h"

#define INLINE static inline __attribute__((always_inline))
/* See pl_tanh_p in rnn_steps.h. */
INLINE float fast_tanh(float x) {
    x = x < -PL_TANH_CLAMP ? -PL_TANH_CLAMP : x;
    x = x > PL_TANH_CLAMP ? PL_TANH_CLAMP : x;
    float x2 = x * x;
    float p = pl_tanh_p[0];
    for (int i = 1; i < 7; i++) p = p * x2 + pl_tanh_p[i];
    float q = pl_tanh_q[0];
    for (int i = 1; i < 4; i++) q = q * x2 + pl_tanh_q[i];
    return x * p / q;
}

INLINE float fast_sigmoid(float x) {
    return 0.5f + 0.5f * fast_tanh(0.5f * x);
}

#ifndef RNN_VECTOR_SPANS
/* v (n) = fast_tanh(v), fast_sigmoid(v) in place. A file may define RNN_VECTOR_SPANS
 * and its own, with the same value for every element. */
INLINE void tanh_span(long n, float *v) {
    for (long j = 0; j < n; j++) v[j] = fast_tanh(v[j]);
}

INLINE void sigmoid_span(long n, float *v) {
    for (long j = 0; j < n; j++) v[j] = fast_sigmoid(v[j]);
}
#endif

/* v (n) = act(v) in place; the switch is outside the loops so each loop vectorises. */
INLINE void activate_span(int act, long n, float *v) {
    switch (act) {
    case PL_ACT_TANH:
        tanh_span(n, v);
        break;
    case PL_ACT_SIGMOID:
        sigmoid_span(n, v);
        break;
    case PL_ACT_RELU:
        for (long j = 0; j < n; j++) v[j] = v[j] < 0.0f ? 0.0f : v[j];   // NaN stays NaN
        break;
    default:
        break;
    }
}

/* d (n) *= act'(.) written in terms of the activation output y (n). */
INLINE void scale_by_derivative(int act, long n, const float *y, float *d) {
    switch (act) {
    case PL_ACT_TANH:
        for (long j = 0; j < n; j++) d[j] *= 1.0f - y[j] * y[j];
        break;
    case PL_ACT_SIGMOID:
        for (long j = 0; j < n; j++) d[j] *= y[j] * (1.0f - y[j]);
        break;
    case PL_ACT_RELU:
        for (long j = 0; j < n; j++) d[j] *= y[j] > 0.0f ? 1.0f : 0.0f;  // as pl_act_backward
        break;
    default:
        break;
    }
}

INLINE int row_is_masked(const unsigned char *mask, long b) {
    return mask != NULL && mask[b] == 0;
}

/* carry (U) += dy row (U) when there is one: the full gradient of this step's h. */
INLINE void add_output_grad(long U, const float *dy, long ldy, long b, float *carry) {
    if (dy == NULL) return;
    const float *dy_row = dy + b * ldy;
    for (long j = 0; j < U; j++) carry[j] += dy_row[j];
}

/* ---- LSTM ----------------------------------------------------------------------- */

#if defined(__GNUC__) && !defined(__clang__)
/* The gated cells contract a * b + c into one FMA where the target has it (-std=c99
 * turns that off): a third fewer operations in their activations. */
#pragma GCC push_options
#pragma GCC optimize ("fp-contract=fast")
#endif

/* One unmasked row of a forward step (see lstm_forward): z (4U) pre-activations in
 * (bias (4U) added first unless NULL), gate activations out; c_prev, c, act_c, h (U).
 * restrict lets each loop vectorise without alias checks; Keras' default activations
 * run fused in one pass. */
INLINE void lstm_forward_row(long U, int act, int rec_act, const float *restrict bias,
                             float *restrict z, const float *restrict c_prev,
                             float *restrict c, float *restrict act_c, float *restrict h) {
    float *zi = z, *zf = z + U, *zg = z + 2 * U, *zo = z + 3 * U;   /* based on z */
    if (bias)
        for (long k = 0; k < 4 * U; k++) z[k] += bias[k];
#ifndef RNN_VECTOR_SPANS   /* else the vector spans below beat these fused loops */
    if (act == PL_ACT_TANH && rec_act == PL_ACT_SIGMOID && U % 8 == 0) {
        /* Whole vectors per gate: everything in one pass. */
        for (long j = 0; j < U; j++) {
            float i = fast_sigmoid(zi[j]), f = fast_sigmoid(zf[j]);
            float g = fast_tanh(zg[j]), o = fast_sigmoid(zo[j]);
            float cell = f * c_prev[j] + i * g, a = fast_tanh(cell);
            zi[j] = i, zf[j] = f, zg[j] = g, zo[j] = o;
            c[j] = cell, act_c[j] = a, h[j] = o * a;
        }
        return;
    }
    if (act == PL_ACT_TANH && rec_act == PL_ACT_SIGMOID) {
        /* All 4U gates in one loop, so a small U leaves no short remainder per gate:
         * a = 1 gives tanh, a = 1/2 gives sigmoid(x) = 1/2 + tanh(x / 2) / 2. */
        const int g_begin = (int)(2 * U), g_end = (int)(3 * U), n = (int)(4 * U);
        for (int k = 0; k < n; k++) {
            float a = k >= g_begin && k < g_end ? 1.0f : 0.5f;
            z[k] = (1.0f - a) + a * fast_tanh(a * z[k]);
        }
        for (long j = 0; j < U; j++) {
            float cell = zf[j] * c_prev[j] + zi[j] * zg[j], a = fast_tanh(cell);
            c[j] = cell, act_c[j] = a, h[j] = zo[j] * a;
        }
        return;
    }
#endif
    activate_span(rec_act, 2 * U, zi);
    activate_span(act, U, zg);
    activate_span(rec_act, U, zo);
    for (long j = 0; j < U; j++) c[j] = act_c[j] = zf[j] * c_prev[j] + zi[j] * zg[j];
    activate_span(act, U, act_c);
    for (long j = 0; j < U; j++) h[j] = zo[j] * act_c[j];
}

RNN_TARGET
static void lstm_forward(long B, long U, int act, int rec_act,
                         const unsigned char *mask, const float *bias, float *z,
                         const float *c_prev, float *c, float *act_c, const float *h_prev,
                         float *h) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        if (row_is_masked(mask, b)) {
            memcpy(c + row, c_prev + row, U * sizeof(float));
            memcpy(h + row, h_prev + row, U * sizeof(float));
            continue;
        }
        lstm_forward_row(U, act, rec_act, bias, z + 4 * row, c_prev + row, c + row,
                         act_c + row, h + row);
    }
}

/* One unmasked row of a backward step (see lstm_backward): z (4U) gate activations,
 * c_prev, act_c (U); dh (U) the full gradient of h in, zeroed out; dc (U) in/out;
 * dz (4U) out. Keras' default activations run fused in one pass. */
INLINE void lstm_backward_row(long U, int act, int rec_act, const float *restrict z,
                              const float *restrict c_prev, const float *restrict act_c,
                              float *restrict dh, float *restrict dc, float *restrict dz) {
    const float *zi = z, *zf = z + U, *zg = z + 2 * U, *zo = z + 3 * U;
    float *di = dz, *df = dz + U, *dg = dz + 2 * U, *d_o = dz + 3 * U;
    if (act == PL_ACT_TANH && rec_act == PL_ACT_SIGMOID) {
        for (long j = 0; j < U; j++) {
            float i = zi[j], f = zf[j], g = zg[j], o = zo[j], a = act_c[j], d = dh[j];
            float dc_total = dc[j] + d * o * (1.0f - a * a);
            d_o[j] = d * a * (o * (1.0f - o));
            di[j] = dc_total * g * (i * (1.0f - i));
            df[j] = dc_total * c_prev[j] * (f * (1.0f - f));
            dg[j] = dc_total * i * (1.0f - g * g);
            dc[j] = dc_total * f;
            dh[j] = 0.0f;
        }
        return;
    }
    for (long j = 0; j < U; j++) {
        d_o[j] = dh[j] * act_c[j];
        dg[j] = dh[j] * zo[j];   /* d c through h, before act'(c) */
    }
    scale_by_derivative(act, U, act_c, dg);
    for (long j = 0; j < U; j++) {
        float dc_total = dc[j] + dg[j];
        di[j] = dc_total * zg[j];
        dg[j] = dc_total * zi[j];
        df[j] = dc_total * c_prev[j];
        dc[j] = dc_total * zf[j];
        dh[j] = 0.0f;
    }
    scale_by_derivative(rec_act, 2 * U, zi, di);
    scale_by_derivative(act, U, zg, dg);
    scale_by_derivative(rec_act, U, zo, d_o);
}

RNN_TARGET
static void lstm_backward(long B, long U, int act, int rec_act,
                          const unsigned char *mask, const float *z, const float *c_prev,
                          const float *act_c, const float *dy, long ldy, float *carry,
                          float *dc, float *dz) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        add_output_grad(U, dy, ldy, b, carry + row);
        if (row_is_masked(mask, b)) {
            memset(dz + 4 * row, 0, 4 * U * sizeof(float));
            continue;
        }
        lstm_backward_row(U, act, rec_act, z + 4 * row, c_prev + row, act_c + row,
                          carry + row, dc + row, dz + 4 * row);
    }
}

/* ---- GRU, reset after ---------------------------------------------------------- */

RNN_TARGET
static void gru_forward(long B, long U, int act, int rec_act,
                        const unsigned char *mask, float *x, const float *hu,
                        const float *rec_bias, const float *h_prev, float *rec_h, float *h) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        if (row_is_masked(mask, b)) {
            memcpy(h + row, h_prev + row, U * sizeof(float));
            continue;
        }
        float *xz = x + 3 * row, *xr = xz + U, *xh = xr + U;
        const float *hu_row = hu + 3 * row;
        float *rh = rec_h + row;
        for (long j = 0; j < 2 * U; j++)
            xz[j] += hu_row[j] + (rec_bias ? rec_bias[j] : 0.0f);
        activate_span(rec_act, 2 * U, xz);
        for (long j = 0; j < U; j++) {
            rh[j] = hu_row[2 * U + j] + (rec_bias ? rec_bias[2 * U + j] : 0.0f);
            xh[j] += xr[j] * rh[j];
        }
        activate_span(act, U, xh);
        for (long j = 0; j < U; j++)
            h[row + j] = xz[j] * h_prev[row + j] + (1.0f - xz[j]) * xh[j];
    }
}

/* One unmasked row of gru_backward: x (3U) activations z, r, hh; rec_h, h_prev (U);
 * dh (U) in, dh * z out; dx, drec (3U) out. restrict lets the loops vectorise. */
INLINE void gru_backward_row(long U, int act, int rec_act, const float *restrict x,
                             const float *restrict rec_h, const float *restrict h_prev,
                             float *restrict dh, float *restrict dx, float *restrict drec) {
    const float *xz = x, *xr = x + U, *xh = x + 2 * U;
    float *dxz = dx, *dxr = dx + U, *dxh = dx + 2 * U, *drh = drec + 2 * U;
    for (long j = 0; j < U; j++) {
        dxh[j] = dh[j] * (1.0f - xz[j]);
        dxz[j] = dh[j] * (h_prev[j] - xh[j]);
        dh[j] *= xz[j];
    }
    scale_by_derivative(act, U, xh, dxh);
    scale_by_derivative(rec_act, U, xz, dxz);
    for (long j = 0; j < U; j++) {
        dxr[j] = dxh[j] * rec_h[j];
        drh[j] = dxh[j] * xr[j];
    }
    scale_by_derivative(rec_act, U, xr, dxr);
    memcpy(drec, dxz, 2 * U * sizeof(float));
}

RNN_TARGET
static void gru_backward(long B, long U, int act, int rec_act,
                         const unsigned char *mask, const float *x, const float *rec_h,
                         const float *h_prev, const float *dy, long ldy, float *carry,
                         float *dx, float *drec) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        float *dh = carry + row, *dx_row = dx + 3 * row, *drec_row = drec + 3 * row;
        add_output_grad(U, dy, ldy, b, dh);
        if (row_is_masked(mask, b)) {
            memset(dx_row, 0, 3 * U * sizeof(float));
            memset(drec_row, 0, 3 * U * sizeof(float));
            continue;
        }
        gru_backward_row(U, act, rec_act, x + 3 * row, rec_h + row, h_prev + row, dh, dx_row,
                         drec_row);
    }
}

/* ---- GRU, reset before ---------------------------------------------------------- */

RNN_TARGET
static void gru1_gates(long B, long U, int rec_act, const unsigned char *mask,
                       float *x, const float *hu, const float *h_prev, float *rh) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        if (row_is_masked(mask, b)) {
            memset(rh + row, 0, U * sizeof(float));   /* read by the dR_h GEMM */
            continue;
        }
        float *xz = x + 3 * row, *xr = xz + U;
        const float *hu_row = hu + 2 * row;
        for (long j = 0; j < 2 * U; j++) xz[j] += hu_row[j];
        activate_span(rec_act, 2 * U, xz);
        for (long j = 0; j < U; j++) rh[row + j] = xr[j] * h_prev[row + j];
    }
}

RNN_TARGET
static void gru1_candidate(long B, long U, int act, const unsigned char *mask,
                           float *x, const float *hu_h, const float *h_prev, float *h) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        if (row_is_masked(mask, b)) {
            memcpy(h + row, h_prev + row, U * sizeof(float));
            continue;
        }
        float *xz = x + 3 * row, *xh = xz + 2 * U;
        for (long j = 0; j < U; j++) xh[j] += hu_h[row + j];
        activate_span(act, U, xh);
        for (long j = 0; j < U; j++)
            h[row + j] = xz[j] * h_prev[row + j] + (1.0f - xz[j]) * xh[j];
    }
}

RNN_TARGET
static void gru1_candidate_backward(long B, long U, int act, int rec_act,
                                    const unsigned char *mask, const float *x,
                                    const float *h_prev, const float *dy, long ldy,
                                    float *carry, float *dx) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        float *dh = carry + row;
        float *dxz = dx + 3 * row, *dxh = dxz + 2 * U;
        add_output_grad(U, dy, ldy, b, dh);
        if (row_is_masked(mask, b)) {
            memset(dxz, 0, 3 * U * sizeof(float));
            continue;
        }
        const float *xz = x + 3 * row, *xh = xz + 2 * U;
        for (long j = 0; j < U; j++) {
            dxh[j] = dh[j] * (1.0f - xz[j]);
            dxz[j] = dh[j] * (h_prev[row + j] - xh[j]);
            dh[j] *= xz[j];
        }
        scale_by_derivative(act, U, xh, dxh);
        scale_by_derivative(rec_act, U, xz, dxz);
    }
}

RNN_TARGET
static void gru1_gates_backward(long B, long U, int rec_act,
                                const unsigned char *mask, const float *x,
                                const float *h_prev, const float *drh, float *carry,
                                float *dx) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        if (row_is_masked(mask, b)) continue;
        const float *xr = x + 3 * row + U;
        float *dxr = dx + 3 * row + U;
        for (long j = 0; j < U; j++) {
            dxr[j] = drh[row + j] * h_prev[row + j];
            carry[row + j] += drh[row + j] * xr[j];
        }
        scale_by_derivative(rec_act, U, xr, dxr);
    }
}

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC pop_options
#endif

/* ---- SimpleRNN ------------------------------------------------------------------ */

RNN_TARGET
static void simple_forward(long B, long U, int act, const unsigned char *mask,
                           const float *proj, const float *h_prev, float *h) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        if (row_is_masked(mask, b)) {
            memcpy(h + row, h_prev + row, U * sizeof(float));
            continue;
        }
        for (long j = 0; j < U; j++) h[row + j] += proj[row + j];
        activate_span(act, U, h + row);
    }
}

RNN_TARGET
static void simple_backward(long B, long U, int act, const unsigned char *mask,
                            const float *h, const float *dy, long ldy, float *carry,
                            float *dpre) {
    for (long b = 0; b < B; b++) {
        const long row = b * U;
        float *dh = carry + row;
        add_output_grad(U, dy, ldy, b, dh);
        if (row_is_masked(mask, b)) {
            memset(dpre + row, 0, U * sizeof(float));
            continue;
        }
        for (long j = 0; j < U; j++) {
            dpre[row + j] = dh[j];
            dh[j] = 0.0f;
        }
        scale_by_derivative(act, U, h + row, dpre + row);
    }
}

const pl_rnn_steps RNN_TABLE = {
    lstm_forward, lstm_backward, gru_forward, gru_backward, gru1_gates, gru1_candidate,
    gru1_candidate_backward, gru1_gates_backward, simple_forward, simple_backward,
};
