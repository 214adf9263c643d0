/* What the native benchmark programs share: the payload pattern, its check, a clock
 * comparable with Python's time.perf_counter() in other processes, and JSON lines.
 *
 * The payload of message `sequence` is `size` bytes: the sequence number (8 bytes, little
 * endian), then a pseudo-random body that depends only on `size`, so a receiver can check
 * every byte with one CRC-32 compared against a value it computes once. */
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

static uint32_t crc_table[8][256];

static inline void crc32_init(void)
{
    for (uint32_t n = 0; n < 256; n++) {
        uint32_t c = n;
        for (int k = 0; k < 8; k++)
            c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
        crc_table[0][n] = c;
    }
    for (uint32_t n = 0; n < 256; n++)
        for (int t = 1; t < 8; t++)
            crc_table[t][n] = (crc_table[t - 1][n] >> 8) ^ crc_table[0][crc_table[t - 1][n] & 0xFF];
}

/* zlib-compatible CRC-32 (slicing by 8, so that the check costs about what zlib.crc32 costs
 * the Python receivers). Continue a running CRC by passing the previous result. */
static inline uint32_t crc32_update(uint32_t crc, const uint8_t *data, size_t size)
{
    crc = ~crc;
    while (size >= 8) {
        uint32_t low, high;
        memcpy(&low, data, 4);
        memcpy(&high, data + 4, 4);
        low ^= crc;
        crc = crc_table[7][low & 0xFF] ^ crc_table[6][(low >> 8) & 0xFF] ^
              crc_table[5][(low >> 16) & 0xFF] ^ crc_table[4][low >> 24] ^
              crc_table[3][high & 0xFF] ^ crc_table[2][(high >> 8) & 0xFF] ^
              crc_table[1][(high >> 16) & 0xFF] ^ crc_table[0][high >> 24];
        data += 8;
        size -= 8;
    }
    while (size--)
        crc = crc_table[0][(crc ^ *data++) & 0xFF] ^ (crc >> 8);
    return ~crc;
}

/* The pattern: an xorshift64 stream seeded by the payload size, 8 bytes per step. */
static inline uint64_t pattern_seed(size_t size)
{
    return 0x9E3779B97F4A7C15ull ^ size;
}

/* The next `size` bytes of the pattern (`size` a multiple of 8, except for the last piece). */
static inline void fill_pattern(uint64_t *state, uint8_t *target, size_t size)
{
    for (size_t i = 0; i < size; i += 8) {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        memcpy(target + i, state, size - i < 8 ? size - i : 8);
    }
}

/* A payload buffer of `size` bytes: header zeroed, body filled with the pattern. */
static inline uint8_t *make_payload(size_t size)
{
    uint8_t *payload = malloc(size);
    if (!payload)
        return NULL;
    uint64_t state = pattern_seed(size);
    fill_pattern(&state, payload, size);
    memset(payload, 0, size < HEADER_SIZE ? size : HEADER_SIZE);
    return payload;
}

/* The CRC-32 of the body (all but the header) of a `size`-byte payload, computed a piece at a
 * time so that a receiver does not hold a second copy of a large payload. */
static inline uint32_t expected_body_crc32(size_t size)
{
    static uint8_t piece[1 << 16];
    uint64_t state = pattern_seed(size);
    uint32_t crc = 0;
    for (size_t offset = 0; offset < size; offset += sizeof piece) {
        size_t n = size - offset < sizeof piece ? size - offset : sizeof piece;
        fill_pattern(&state, piece, n);
        size_t skip = offset < HEADER_SIZE ? HEADER_SIZE - offset : 0;
        if (skip < n)
            crc = crc32_update(crc, piece + skip, n - skip);
    }
    return crc;
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
