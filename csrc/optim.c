/* Fused optimizer updates (see optim.h): one pass over each parameter array. */
#include <math.h>
#include <stddef.h>
#include "optim.h"

/* Below this many elements an update stays on one thread (fork cost dominates). */
#define PL_OPTIM_PARALLEL_MIN 32768L

static int threads_for(const pl_ctx *ctx, long n) {
    return (n >= PL_OPTIM_PARALLEL_MIN && ctx->n_threads > 1) ? ctx->n_threads : 1;
}

/* The preprocessed gradient of element i and w after decoupled weight decay. */
static inline float prep_grad(pl_grad_prep prep, float g) {
    g *= prep.grad_scale;
    if (prep.clip_value > 0.0f) g = fminf(fmaxf(g, -prep.clip_value), prep.clip_value);
    return g;
}

static inline float decayed(pl_grad_prep prep, float w) {
    return prep.decay != 0.0f ? w - w * prep.decay : w;
}

double pl_sum_squares(const pl_ctx *ctx, long n, const float *x) {
    double total = 0.0;
    int nt = threads_for(ctx, n);
    #pragma omp parallel for schedule(static) num_threads(nt) reduction(+:total) if(nt > 1)
    for (long i = 0; i < n; i++) total += (double)x[i] * (double)x[i];
    return total;
}

void pl_sgd_update(const pl_ctx *ctx, long n, float *w, const float *g, float *m,
                   double lr, double momentum, int nesterov, pl_grad_prep prep) {
    const float lr_f = (float)lr, mu = (float)momentum;
    int nt = threads_for(ctx, n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < n; i++) {
        float gi = prep_grad(prep, g[i]);
        float wi = decayed(prep, w[i]);
        if (m == NULL) {
            wi -= gi * lr_f;
        } else {
            float mi = m[i] * mu - gi * lr_f;
            m[i] = mi;
            wi += nesterov ? mi * mu - gi * lr_f : mi;
        }
        w[i] = wi;
    }
}

void pl_adam_update(const pl_ctx *ctx, long n, float *w, const float *g, float *m,
                    float *v, float *vhat, double alpha, double beta_1, double beta_2,
                    double epsilon, pl_grad_prep prep) {
    const float alpha_f = (float)alpha, eps = (float)epsilon;
    const float one_minus_b1 = (float)(1.0 - beta_1), one_minus_b2 = (float)(1.0 - beta_2);
    int nt = threads_for(ctx, n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < n; i++) {
        float gi = prep_grad(prep, g[i]);
        float wi = decayed(prep, w[i]);
        float mi = m[i] + (gi - m[i]) * one_minus_b1;
        float vi = v[i] + (gi * gi - v[i]) * one_minus_b2;
        m[i] = mi;
        v[i] = vi;
        if (vhat != NULL) {
            vi = fmaxf(vhat[i], vi);
            vhat[i] = vi;
        }
        w[i] = wi - (mi * alpha_f) / (sqrtf(vi) + eps);
    }
}

void pl_rmsprop_update(const pl_ctx *ctx, long n, float *w, const float *g, float *v,
                       float *mom, float *avg, double lr, double rho, double momentum,
                       double epsilon, pl_grad_prep prep) {
    const float lr_f = (float)lr, rho_f = (float)rho, one_minus_rho = (float)(1.0 - rho);
    const float mu = (float)momentum, eps = (float)epsilon;
    int nt = threads_for(ctx, n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < n; i++) {
        float gi = prep_grad(prep, g[i]);
        float wi = decayed(prep, w[i]);
        float vi = rho_f * v[i] + one_minus_rho * (gi * gi);
        float denominator;
        v[i] = vi;
        if (avg != NULL) {
            float ai = rho_f * avg[i] + one_minus_rho * gi;
            avg[i] = ai;
            denominator = vi - ai * ai + eps;
        } else {
            denominator = vi + eps;
        }
        float increment = (lr_f * gi) / sqrtf(denominator);
        if (mom != NULL) {
            increment = mu * mom[i] + increment;
            mom[i] = increment;
        }
        w[i] = wi - increment;
    }
}

void pl_adagrad_update(const pl_ctx *ctx, long n, float *w, const float *g, float *acc,
                       double lr, double epsilon, pl_grad_prep prep) {
    const float lr_f = (float)lr, eps = (float)epsilon;
    int nt = threads_for(ctx, n);
    #pragma omp parallel for schedule(static) num_threads(nt) if(nt > 1)
    for (long i = 0; i < n; i++) {
        float gi = prep_grad(prep, g[i]);
        float wi = decayed(prep, w[i]);
        float ai = acc[i] + gi * gi;
        acc[i] = ai;
        w[i] = wi - (lr_f * gi) / sqrtf(ai + eps);
    }
}
