/* N-dimensional (1, 2 or 3 spatial axes) grouped convolution, channels last, as a GEMM
 * over the input windows: read in place by direct, Winograd or implicit-GEMM tiles where
 * they apply, else unfolded into rows (im2col) and multiplied with pl_sgemm, the data
 * gradient gathering rows back (col2im); conv.c says which path takes what.
 *
 * Shapes (1-D and 2-D convolutions pass size 1 for the unused leading spatial axes):
 *   x is (n, in_size[0], in_size[1], in_size[2], in_channels)
 *   y is (n, out_size[0], out_size[1], out_size[2], out_channels)
 *   w is (kernel[0], kernel[1], kernel[2], in_channels / groups, out_channels)
 * Output position o along axis a reads input o * stride[a] - pad[a] + t * dilation[a]
 * for kernel tap t; positions outside [0, in_size[a]) read zero.
 * Every output element is written by one thread in a fixed summation order, so
 * results do not depend on the thread count. */
#ifndef PL_CONV_H
#define PL_CONV_H
#include "pl_ctx.h"
#include "pool.h"

typedef struct {
    long batch;
    long in_size[3], out_size[3], kernel[3], stride[3], dilation[3], pad[3];
    long in_channels, out_channels, groups;
} pl_conv_geom;

/* 1 when every size is positive, pads are non-negative and channels divide into groups. */
int pl_conv_geom_valid(const pl_conv_geom *g);

/* y = act(conv(x, w) + bias), overwritten; bias (out_channels) may be NULL; act is an
 * enum pl_act code (activations.h).  Returns 0, or -1 when scratch memory is unavailable. */
int pl_conv_forward(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                    const float *w, const float *bias, int act, float alpha, float *y);

/* dx = conv^T(dy, w), the data gradient, overwritten (also the forward of a transposed
 * convolution).  Returns 0 or -1 (no memory). */
int pl_conv_backward_data(const pl_ctx *ctx, const pl_conv_geom *g, const float *dy,
                          const float *w, float *dx);

/* dw += the kernel gradient of conv given its input x and output gradient dy.
 * Returns 0 or -1 (no memory). */
int pl_conv_backward_weight(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                            const float *dy, float *dw);

/* When the direct path takes this geometry (few taps times channels, see
 * conv_direct.h) and act is relu or linear: dw += the kernel gradient and dbias
 * (cout, may be NULL) += the bias gradient for output gradient dy through the fused
 * activation, dy * act'(y), in one pass without writing dz. Returns 0, 1 when the
 * direct path does not apply (nothing written), -1 when memory is unavailable.
 * pl_conv_weight_fusable says beforehand whether it applies. */
int pl_conv_weight_fusable(const pl_conv_geom *g, int act);
int pl_conv_backward_weight_fused(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                                  const float *y, const float *dy, int act, float *dw,
                                  float *dbias);

/* Convolution, relu or linear, then max pooling, without the convolution's output ever
 * written whole: each pooled line's window rows are convolved into a thread's scratch
 * and pooled there.  pl_conv_max_pool_fusable says whether a pair is taken: the direct
 * path's geometries (see pl_conv_weight_fusable) and pooling (geometry pg, pool.h, over
 * the convolution's output) by windows meeting edge to edge without padding, of one
 * output line along axis 0, a window's rows of at most 16384 floats.  Outputs and argmax
 * have the bits of pl_conv_forward then pl_max_pool_forward.  The forward returns 0, or
 * 1 when the pair is not taken (nothing written). */
int pl_conv_max_pool_fusable(const pl_conv_geom *g, const pl_pool_geom *pg, int act);
int pl_conv_max_pool_forward(const pl_ctx *ctx, const pl_conv_geom *g, const pl_pool_geom *pg,
                             const float *x, const float *w, const float *bias, int act,
                             float *y, int *argmax);

/* dw += the kernel gradient and dbias (may be NULL) += the bias gradient of such a pair
 * for the pooled gradient dy, given the pooled output y and argmax as the forward wrote
 * them: dy * act'(y) goes to the output position each argmax entry names, if it is one
 * of its window's (an entry naming another goes nowhere).  Images are summed in fixed
 * blocks, so the bits are the same on any thread count.  Returns 0, 1 when the pair is
 * not taken, -1 when memory is unavailable (nothing written either way). */
int pl_conv_max_pool_backward_weight(const pl_ctx *ctx, const pl_conv_geom *g,
                                     const pl_pool_geom *pg, const float *x, const float *y,
                                     const float *dy, const int *argmax, int act, float *dw,
                                     float *dbias);

/* Tests: 0 sends every geometry through im2col + GEMM, 1 (the default) lets small
 * ones take the direct path. */
void pl_conv_set_direct(int enabled);

/* Tests: 0 keeps 3x3 geometries off the Winograd forward (conv_winograd.h), 1 (the
 * default) lets them take it when the inputs are finite. */
void pl_conv_set_winograd(int enabled);

/* dz (rows, cout) = dy * act'(y) from the output y (dz may be dy); dbias (cout) += the
 * column sums of dz when not NULL.  The backward of the fused bias and activation. */
void pl_conv_bias_act_backward(const pl_ctx *ctx, long rows, long cout, const float *y,
                               const float *dy, int act, float alpha, float *dz, float *dbias);

#endif
