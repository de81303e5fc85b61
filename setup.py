"""Build: csrc/*.c into one static library, each pylayers/_kernels/*.pyx into an
extension linked against it; -O3 and OpenMP where the compiler has it."""
import glob
import os
import shutil
import subprocess
import sys
import tempfile
import warnings

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += 1;
    return n > 0 ? 0 : 1;
}
"""

# -fno-trapping-math: we never trap on floating-point exceptions, so gcc may turn the
# selects of the elementwise loops (relu', pooling) into vector code; values are unchanged
BASE_CFLAGS = ["-O3", "-std=c99", "-fPIC", "-fno-strict-aliasing", "-fno-math-errno",
               "-fno-trapping-math", "-Wall", "-Wno-unused-function"]

# PYLAYERS_SANITIZE=1: AddressSanitizer + UndefinedBehaviorSanitizer build for
# scripts/sanitize.sh (abort on the first finding; -O1 keeps stack traces readable).
SANITIZE = os.environ.get("PYLAYERS_SANITIZE") == "1"
SANITIZE_FLAGS = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                  "-fno-sanitize-recover=all", "-g", "-O1"]


def optimisation(flags):
    """flags with -O3 swapped for the sanitizer flags in a sanitizer build."""
    return [f for f in flags if f != "-O3"] + SANITIZE_FLAGS if SANITIZE else flags


def compiler_has_openmp(cc):
    """Compile and run a tiny OpenMP program with the compiler the build will use."""
    if os.environ.get("PYLAYERS_NO_OPENMP") == "1":
        return False
    tmp = tempfile.mkdtemp()
    try:
        src = os.path.join(tmp, "probe.c")
        exe = os.path.join(tmp, "probe")
        with open(src, "w") as f:
            f.write(OPENMP_PROBE)
        result = subprocess.run(cc + [src, "-fopenmp", "-o", exe], capture_output=True)
        return result.returncode == 0 and subprocess.run([exe]).returncode == 0
    except OSError:
        return False
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def warn_no_openmp():
    message = ("\n" + "*" * 72 + "\n"
               "pylayers: building WITHOUT OpenMP: every kernel will run on one thread.\n"
               "Install a compiler with OpenMP (gcc, or clang with libomp) for full speed.\n"
               + "*" * 72)
    warnings.warn(message)
    print(message, file=sys.stderr)


class BuildExt(build_ext):
    """Decide the OpenMP flags once, from the real compiler, before compiling."""

    def build_extensions(self):
        openmp = compiler_has_openmp(list(self.compiler.compiler_so[:1]))
        if not openmp:
            warn_no_openmp()
        omp_flags = ["-fopenmp"] if openmp else []
        kernel_sources = sorted(glob.glob("csrc/*.c"))
        objects = self.compiler.compile(kernel_sources, output_dir=self.build_temp,
                                        include_dirs=["csrc"],
                                        extra_postargs=optimisation(BASE_CFLAGS) + omp_flags)
        for ext in self.extensions:
            ext.extra_objects = objects
            ext.extra_compile_args = optimisation(["-O3", "-fPIC", "-Wno-unused-function"]) + omp_flags
            ext.extra_link_args = omp_flags + (SANITIZE_FLAGS if SANITIZE else [])
        super().build_extensions()


def kernel_extensions():
    from Cython.Build import cythonize
    names = sorted(os.path.splitext(os.path.basename(p))[0]
                   for p in glob.glob("pylayers/_kernels/*.pyx"))
    extensions = [Extension(f"pylayers._kernels.{name}", [f"pylayers/_kernels/{name}.pyx"],
                            include_dirs=["csrc"],
                            depends=sorted(glob.glob("csrc/*.h") + glob.glob("csrc/*.c")))
                  for name in names]
    return cythonize(extensions, language_level=3,
                     compiler_directives={"boundscheck": False, "wraparound": False,
                                          "cdivision": True, "initializedcheck": False})


setup(ext_modules=kernel_extensions(), cmdclass={"build_ext": BuildExt})
