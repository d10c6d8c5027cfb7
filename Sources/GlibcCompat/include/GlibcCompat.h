#ifndef META_MESSAGING_GLIBC_COMPAT_H
#define META_MESSAGING_GLIBC_COMPAT_H
// See compat.c: symbol-version shims that keep the bootstraps runnable on glibc 2.34.
#include <stdint.h>
uint32_t __wrap_arc4random(void);
double __wrap_hypot(double x, double y);
float __wrap_hypotf(float x, float y);
#endif
