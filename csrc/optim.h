/* Optimizer updates: each one fused flat loop over a parameter array, in place.
 *
 * Every update follows Keras 3 (the files in keras/src/optimizers/) for one variable:
 *   1. the gradient is preprocessed: g = clip(g * grad_scale, -clip_value, clip_value)
 *      (grad_scale carries clipnorm / global_clipnorm; clip_value <= 0 means no clip);
 *   2. decoupled weight decay: w -= w * decay, where decay = weight_decay * lr (0: none);
 *   3. the optimizer's own update of its slots and of w.
 * All arrays hold n floats; slots that an option does not use may be NULL.
 * Hyperparameters arrive as double and are rounded to float32 once, as Keras casts
 * its Python floats (so 1 - beta_1 is rounded after the subtraction).
 * Large arrays are split in static OpenMP chunks over ctx->n_threads; each element
 * is touched by one thread, so results do not depend on the thread count. */
#ifndef PL_OPTIM_H
#define PL_OPTIM_H
#include "pl_ctx.h"

typedef struct {
    float grad_scale;   /* multiplies g first (1: none) */
    float clip_value;   /* g clipped to [-clip_value, clip_value] when > 0 */
    float decay;        /* weight_decay * learning_rate, applied before the step */
} pl_grad_prep;

/* Sum of squares of x (n floats), accumulated in double: for clipnorm. */
double pl_sum_squares(const pl_ctx *ctx, long n, const float *x);

/* SGD. m == NULL: w -= lr*g.  Else m = momentum*m - lr*g; w += m, or with nesterov
 * w += momentum*m - lr*g. */
void pl_sgd_update(const pl_ctx *ctx, long n, float *w, const float *g, float *m,
                   double lr, double momentum, int nesterov, pl_grad_prep prep);

/* Adam (and AdamW through prep.decay), one parameter: n floats each.
 * m += (g - m)(1 - b1); v += (g^2 - v)(1 - b2);
 * vhat != NULL (amsgrad): vhat = max(vhat, v) and used in place of v;
 * w -= alpha * m / (sqrt(v) + eps), alpha = lr*sqrt(1 - b2^t)/(1 - b1^t). */
typedef struct {
    long n;
    float *w;
    const float *g;
    float *m, *v, *vhat;
    pl_grad_prep prep;
} pl_adam_param;

/* The Adam step of each of the count parameters, in one parallel region whose threads
 * share the blocks of all of them (each element computed the same whatever the split).
 * alongside (or NULL), called with alongside_arg on the calling thread before it takes
 * any block: work that reads none of the parameters' arrays, done while the other
 * threads step them; they take over its blocks until it is back. */
void pl_adam_update_all(const pl_ctx *ctx, long count, const pl_adam_param *params,
                        double alpha, double beta_1, double beta_2, double epsilon,
                        void (*alongside)(void *), void *alongside_arg);

/* RMSprop.  v = rho*v + (1-rho)*g^2; centered (avg != NULL): avg = rho*avg + (1-rho)*g,
 * denominator v - avg^2 + eps, else v + eps; inc = lr*g/sqrt(denominator);
 * mom != NULL: mom = momentum*mom + inc; w -= mom, else w -= inc. */
void pl_rmsprop_update(const pl_ctx *ctx, long n, float *w, const float *g, float *v,
                       float *mom, float *avg, double lr, double rho, double momentum,
                       double epsilon, pl_grad_prep prep);

/* Adagrad.  acc += g^2; w -= lr*g/sqrt(acc + eps). */
void pl_adagrad_update(const pl_ctx *ctx, long n, float *w, const float *g, float *acc,
                       double lr, double epsilon, pl_grad_prep prep);

#endif
