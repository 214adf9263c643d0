/* What the native benchmark programs share: the payload pattern, its check, a clock
 * comparable with Python's time.perf_counter() in other processes, and JSON lines.
 *
 * The payload of message `sequence` is `size` bytes: the sequence number (8 bytes, little
 * endian), then a body that depends only on `size`: a pseudo-random pattern of PERIOD bytes,
 * repeated (as bench/payload.py builds it; the pattern's bytes differ, but no Python peer
 * talks to a native one). A receiver compares every byte with the bytes expected. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#define WIN32_LEAN_AND_MEAN
#include <windows.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_SIZE 8
/* Wine 8.0 breaks on cross-process WM_COPYDATA of 2 MiB or more: bigger payloads go in
 * chunks of this size (the Python mechanisms use the same bound). */
#define CHUNK_SIZE (1u << 20)

/* Not a multiple of any chunk size, so that a chunk lost, repeated or moved changes the bytes
 * compared; a receiver holds at most 2 * PERIOD expected bytes. */
#define PERIOD ((1u << 20) + 64)

/* The pattern: an xorshift64 stream seeded by the payload size, 8 bytes per step. */
static inline void fill_pattern(size_t seed, uint8_t *target, size_t size)
{
    uint64_t state = 0x9E3779B97F4A7C15ull ^ seed;
    for (size_t i = 0; i < size; i += 8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        memcpy(target + i, &state, size - i < 8 ? size - i : 8);
    }
}

/* `length` bytes of the body of a `size`-byte payload: the pattern, repeated. */
static inline void fill_body(size_t size, uint8_t *body, size_t length)
{
    size_t period = length < PERIOD ? length : PERIOD;
    fill_pattern(size, body, period);
    for (size_t offset = period; offset < length; offset += PERIOD)
        memcpy(body + offset, body, length - offset < PERIOD ? length - offset : PERIOD);
}

/* A payload buffer of `size` bytes: header zeroed, then the body. */
static inline uint8_t *make_payload(size_t size)
{
    uint8_t *payload = size < HEADER_SIZE ? NULL : malloc(size);
    if (!payload)
        return NULL;
    memset(payload, 0, HEADER_SIZE);
    fill_body(size, payload + HEADER_SIZE, size - HEADER_SIZE);
    return payload;
}

/* What a receiver compares with: the body's first min(body, 2 * PERIOD) bytes. A piece of at
 * most PERIOD bytes at body offset b equals the piece at b % PERIOD in there. */
struct expected_body {
    uint8_t *bytes;
    size_t length;
};

static inline int make_expected_body(size_t size, struct expected_body *expected)
{
    size_t body = size - HEADER_SIZE;
    expected->length = body < 2 * (size_t)PERIOD ? body : 2 * (size_t)PERIOD;
    expected->bytes = malloc(expected->length ? expected->length : 1);
    if (!expected->bytes)
        return 0;
    fill_body(size, expected->bytes, expected->length);
    return 1;
}

/* Whether `size` bytes at body offset `offset` are the ones expected. */
static inline int body_matches(const struct expected_body *expected, size_t offset,
                               const uint8_t *data, size_t size)
{
    while (size) {
        size_t piece = size < PERIOD ? size : PERIOD;
        size_t phase = offset % PERIOD;
        if (phase + piece > expected->length || memcmp(expected->bytes + phase, data, piece))
            return 0;
        data += piece;
        offset += piece;
        size -= piece;
    }
    return 1;
}

static inline void stamp_sequence(uint8_t *payload, uint64_t sequence)
{
    memcpy(payload, &sequence, HEADER_SIZE);
}

/* Seconds on the same clock as Python's time.perf_counter() (QueryPerformanceCounter), so
 * times taken in different processes can be subtracted. */
static inline double now_seconds(void)
{
    static LARGE_INTEGER frequency;
    LARGE_INTEGER counter;
    if (!frequency.QuadPart)
        QueryPerformanceFrequency(&frequency);
    QueryPerformanceCounter(&counter);
    return (double)counter.QuadPart / (double)frequency.QuadPart;
}

static inline int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The value at `fraction` (0.5: median) of `count` sorted values (sorts them). */
static inline double percentile(double *values, size_t count, double fraction)
{
    if (!count)
        return 0.0;
    qsort(values, count, sizeof *values, compare_doubles);
    size_t index = (size_t)(fraction * (double)(count - 1) + 0.5);
    return values[index];
}

static inline void fail(const char *what)
{
    printf("{\"error\": \"%s failed (Windows error %lu)\"}\n", what, GetLastError());
    fflush(stdout);
    exit(1);
}

#endif
