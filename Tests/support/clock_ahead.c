// Moves the wall clock of a process (and, through the environment, of its children) ahead by
// CLOCK_AHEAD_SECONDS, leaving the monotonic clocks alone: scripts/test runs the whole suite a
// second time a year ahead with it in LD_PRELOAD, so a test that depends on the day it runs
// fails today rather than next month. Only the wall-clock readings are moved (clock_gettime's
// real-time clocks, gettimeofday, time): durations, timers and sleeps are the kernel's own, as
// they are for every process (faketime also moves timers, and Swift's Task.sleep never wakes).
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdlib.h>
#include <sys/time.h>
#include <time.h>

static long ahead(void) {
    static long seconds = -1;
    if (seconds < 0) {
        const char *text = getenv("CLOCK_AHEAD_SECONDS");
        long value = text ? strtol(text, NULL, 10) : 0;
        seconds = value > 0 ? value : 0;
    }
    return seconds;
}

int clock_gettime(clockid_t clock, struct timespec *spec) {
    static int (*real)(clockid_t, struct timespec *);
    if (!real) real = (int (*)(clockid_t, struct timespec *))dlsym(RTLD_NEXT, "clock_gettime");
    int result = real(clock, spec);
    if (result == 0 && spec && (clock == CLOCK_REALTIME || clock == CLOCK_REALTIME_COARSE)) spec->tv_sec += ahead();
    return result;
}

int gettimeofday(struct timeval *restrict value, void *restrict zone) {
    static int (*real)(struct timeval *restrict, void *restrict);
    if (!real) real = (int (*)(struct timeval *restrict, void *restrict))dlsym(RTLD_NEXT, "gettimeofday");
    int result = real(value, zone);
    if (result == 0 && value) value->tv_sec += ahead();
    return result;
}

time_t time(time_t *out) {
    struct timespec spec;
    if (clock_gettime(CLOCK_REALTIME, &spec) != 0) return (time_t)-1;
    if (out) *out = spec.tv_sec;
    return spec.tv_sec;
}
