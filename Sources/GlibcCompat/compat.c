// Amazon Linux 2023 ships glibc 2.34. A bootstrap linked on a newer system would require
// newer symbols and fail to start there:
// - glibc 2.35 gave hypot and hypotf new symbol versions (the Swift runtime uses them);
// - glibc 2.36 added arc4random, which the static C++ runtime of GCC 12 calls.
// Deployment builds link with `-Xlinker --wrap=<name>` for each (functions/common.mk): every
// reference then lands here, bound to the versions every glibc since the architecture's first
// release provides, or (arc4random) implemented with getrandom(2), in glibc since 2.25.
// Without --wrap these functions are simply unused. scripts/check-al2023 proves the result.
#define _GNU_SOURCE
#include "GlibcCompat.h"
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/random.h>

uint32_t __wrap_arc4random(void) {
    uint32_t value;
    unsigned char *bytes = (unsigned char *)&value;
    size_t filled = 0;
    while (filled < sizeof value) {
        ssize_t count = getrandom(bytes + filled, sizeof value - filled, 0);
        if (count < 0) {
            if (errno == EINTR) continue;
            abort();  // the kernel's random source is gone: nothing sane is left to do
        }
        filled += (size_t)count;
    }
    return value;
}

#if defined(__x86_64__)
__asm__(".symver meta_messaging_hypot_base, hypot@GLIBC_2.2.5");
__asm__(".symver meta_messaging_hypotf_base, hypotf@GLIBC_2.2.5");
#elif defined(__aarch64__)
__asm__(".symver meta_messaging_hypot_base, hypot@GLIBC_2.17");
__asm__(".symver meta_messaging_hypotf_base, hypotf@GLIBC_2.17");
#endif

#if defined(__x86_64__) || defined(__aarch64__)
double meta_messaging_hypot_base(double x, double y);
float meta_messaging_hypotf_base(float x, float y);

double __wrap_hypot(double x, double y) { return meta_messaging_hypot_base(x, y); }
float __wrap_hypotf(float x, float y) { return meta_messaging_hypotf_base(x, y); }
#endif
