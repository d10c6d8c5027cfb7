// Amazon Linux 2023 ships glibc 2.34. glibc 2.35 gave hypot and hypotf new symbol versions,
// so a bootstrap linked on a newer system would require GLIBC_2.35 and fail to start there.
// Deployment builds link with `-Xlinker --wrap=hypot -Xlinker --wrap=hypotf`
// (functions/common.mk): every reference then lands here and is bound to the versions that
// every glibc since the architecture's first release provides. Without --wrap these
// functions are simply unused. scripts/check-al2023 proves the result.
#include "GlibcCompat.h"

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
