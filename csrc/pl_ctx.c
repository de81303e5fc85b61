/* CPU feature detection and OpenMP facts, computed once. */
#include "pl_ctx.h"

#ifdef _OPENMP
#include <omp.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <xmmintrin.h>

static unsigned long long read_xcr0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}

/* AVX2 and FMA in the CPU, and the OS saving ymm state (OSXSAVE, XCR0 bits 1-2). */
static int cpu_has_avx2_fma(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    int fma = (ecx >> 12) & 1, osxsave = (ecx >> 27) & 1, avx = (ecx >> 28) & 1;
    if (!(fma && osxsave && avx)) return 0;
    if ((read_xcr0() & 0x6) != 0x6) return 0;
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx >> 5) & 1;
}

/* AVX-512F in the CPU, and the OS saving opmask and zmm state (XCR0 bits 5-7);
 * only asked once AVX2 and FMA are there. */
static int cpu_has_avx512f(void) {
    unsigned int eax, ebx, ecx, edx;
    if ((read_xcr0() & 0xE6) != 0xE6) return 0;
    __cpuid_count(7, 0, eax, ebx, ecx, edx);
    return (ebx >> 16) & 1;
}

static int best_isa(void) {
    if (!cpu_has_avx2_fma()) return PL_ISA_GENERIC;
    return cpu_has_avx512f() ? PL_ISA_AVX512 : PL_ISA_AVX2;
}
#else
static int best_isa(void) { return PL_ISA_GENERIC; }
#endif

int pl_detect_isa(void) {
    static int isa = -1;
    if (isa < 0) isa = best_isa();
    return isa;
}

int pl_openmp_enabled(void) {
#ifdef _OPENMP
    return 1;
#else
    return 0;
#endif
}

int pl_default_threads(void) {
#ifdef _OPENMP
    int n = omp_get_max_threads();
    return n > 0 ? n : 1;
#else
    return 1;
#endif
}

void pl_team_position(int *tid, int *team) {
    *tid = 0;
    *team = 1;
#ifdef _OPENMP
    *tid = omp_get_thread_num();
    *team = omp_get_num_threads();
#endif
}

void pl_team_share(long total, long *begin, long *end) {
    int tid, team;
    pl_team_position(&tid, &team);
    *begin = total * tid / team;
    *end = total * (tid + 1) / team;
}

#if defined(__x86_64__) || defined(__i386__)
#define MXCSR_FLUSH_TO_ZERO 0x8000u
#define MXCSR_DENORMALS_ARE_ZERO 0x0040u

unsigned pl_flush_subnormals(void) {
    unsigned saved = _mm_getcsr();
    _mm_setcsr(saved | MXCSR_FLUSH_TO_ZERO | MXCSR_DENORMALS_ARE_ZERO);
    return saved;
}

void pl_restore_fp_mode(unsigned saved) { _mm_setcsr(saved); }
#else
unsigned pl_flush_subnormals(void) { return 0; }
void pl_restore_fp_mode(unsigned saved) { (void)saved; }
#endif
