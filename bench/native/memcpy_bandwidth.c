/* The physical limit: memcpy bandwidth of this machine, in one process.
 *
 *     memcpy_bandwidth.exe SIZE SECONDS
 *
 * Copies a SIZE-byte payload into a second buffer (touched beforehand, so page faults are
 * not counted) again and again for at least SECONDS, checks the last copy, and
 * prints one JSON line like a sender's and a receiver's together. */
#include "bench_common.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: memcpy_bandwidth SIZE SECONDS\n");
        return 2;
    }
    size_t size = strtoull(argv[1], NULL, 10);
    double seconds = strtod(argv[2], NULL);
    uint8_t *source = make_payload(size);
    uint8_t *target = malloc(size);
    if (!source || !target)
        fail("malloc");
    memset(target, 0xFF, size);

    /* Read the clock once per batch of about 16 MiB, not per copy of a small payload. */
    size_t batch = size >= (16u << 20) ? 1 : (16u << 20) / size;
    uint64_t copies = 0;
    double start = now_seconds(), end;
    do {
        for (size_t i = 0; i < batch; i++, copies++) {
            stamp_sequence(source, copies);
            memcpy(target, source, size);
            __asm__ volatile("" ::: "memory"); /* every copy happens: none is a dead store */
        }
        end = now_seconds();
    } while (end - start < seconds);
    int intact = memcmp(target, source, size) == 0;
    printf("{\"start\": %.9f, \"end\": %.9f, \"messages\": %llu, \"intact\": %llu, \"bytes\": %llu}\n",
           start, end, (unsigned long long)copies, (unsigned long long)(intact ? copies : 0),
           (unsigned long long)(copies * size));
    fflush(stdout);
    free(target);
    free(source);
    return 0;
}
