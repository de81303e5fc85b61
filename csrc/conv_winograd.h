/* Winograd F(4x4, 3x3) forward of a 3x3, stride-1, undilated 2-D convolution on AVX2 +
 * FMA (Lavin and Gray, interpolation points 0, 1, -1, 2, -2): each 4x4 block of outputs
 * (a tile) comes from its 6x6 input patch d as
 *   Y = A^T [U (.) V] A,  V = B^T d B per input channel,  U = G g G^T per channel pair,
 * with the sum over input channels of U (.) V done as 36 GEMMs (one per element xi of
 * the 6x6 transforms): 36 multiply-adds per tile and channel pair instead of 144.  The
 * matrices are written out beside the 1-D transforms in conv_winograd.c; their larger
 * entries (up to 8) round more than a direct sum: measured 3e-6 to 8e-6 of the largest
 * output for 16 to 128 input channels, against 5e-7 to 1.5e-6 for the implicit GEMM.
 * The transforms add and subtract neighbouring inputs, so an inf or NaN input would
 * reach outputs whose patch does not hold it: callers send such inputs elsewhere. */
#ifndef PL_CONV_WINOGRAD_H
#define PL_CONV_WINOGRAD_H
#include "conv.h"

/* 1 for a geometry the Winograd forward takes: 3x3 taps over two spatial axes, stride
 * 1, dilation 1, one group, input channels a multiple of 8 (at least 16) and output
 * channels a multiple of 16. */
int pl_winograd_fits(const pl_conv_geom *g);

/* Tiles (4x4 blocks of outputs, the last row and column possibly cut) of geometry g. */
long pl_winograd_tiles(const pl_conv_geom *g);

/* Multiply-adds of the products (tiles x 36 x cin x cout): the thread budget's measure. */
long pl_winograd_products(const pl_conv_geom *g);

/* y (n, out..., cout) = conv(x, w) + bias (bias may be NULL), then relu when relu; on
 * AVX2 + FMA only, for geometries pl_winograd_fits takes.  Each tile is computed by one
 * thread the same way whatever the thread count.  0, or -1 when memory is short. */
int pl_winograd_forward(const pl_ctx *ctx, const pl_conv_geom *g, const float *x,
                        const float *w, const float *bias, int relu, float *y);

#endif
