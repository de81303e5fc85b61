/* AVX-512 GEMM micro-kernels: an 8 x 32 tile, compiled per function with target
 * attributes and only called when pl_detect_isa() found AVX-512F (never -mavx512f
 * globally).  Each element of C is the same chain of FMAs over k, in the same order,
 * as on the AVX2 path's 6 x 16 tile, so both paths give the same bits. */
#include "gemm_kernels.h"

#ifdef PL_HAVE_X86_KERNELS
#include <immintrin.h>

#define TILE_TARGET __attribute__((target("avx512f")))
#define TILE_MR PL_AVX512_MR
#define TILE_NR PL_AVX512_NR
#define TILE_FN(name) name##_avx512
#define vec __m512
#define vec_zero _mm512_setzero_ps
#define vec_set1 _mm512_set1_ps
#define vec_load _mm512_loadu_ps
#define vec_store _mm512_storeu_ps
#define vec_fmadd _mm512_fmadd_ps
#define vec_mul _mm512_mul_ps
#include "gemm_tile_body.h"
#endif
