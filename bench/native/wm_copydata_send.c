/* The floor of plain WM_COPYDATA, sending side: one SendMessageTimeoutW per message (per
 * chunk of at most CHUNK_SIZE bytes for bigger payloads), each timed.
 *
 *     wm_copydata_send.exe SIZE COUNT      (reads the receiver's HWND from the first stdin line)
 *
 * Prints one JSON line: start and end (perf_counter clock), median and p99 round trip. */
#include "bench_common.h"

#define SEND_TIMEOUT_MS 30000

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: wm_copydata_send SIZE COUNT < HWND\n");
        return 2;
    }
    size_t size = strtoull(argv[1], NULL, 10);
    size_t count = strtoull(argv[2], NULL, 10);
    char line[64];
    if (!fgets(line, sizeof line, stdin))
        fail("reading the receiver's window handle from stdin");
    HWND target = (HWND)(uintptr_t)strtoull(line, NULL, 10);

    uint8_t *payload = make_payload(size);
    double *round_trips = malloc(count * sizeof *round_trips);
    if (!payload || !round_trips)
        fail("malloc");

    double start = now_seconds();
    for (size_t sequence = 0; sequence < count; sequence++) {
        stamp_sequence(payload, sequence);
        double sent_at = now_seconds();
        for (size_t offset = 0; offset < size; offset += CHUNK_SIZE) {
            COPYDATASTRUCT cds;
            cds.dwData = sequence;
            cds.cbData = (DWORD)(size - offset < CHUNK_SIZE ? size - offset : CHUNK_SIZE);
            cds.lpData = payload + offset;
            DWORD_PTR answer = 0;
            if (!SendMessageTimeoutW(target, WM_COPYDATA, 0, (LPARAM)&cds, SMTO_ABORTIFHUNG,
                                     SEND_TIMEOUT_MS, &answer))
                fail("SendMessageTimeoutW");
            if (!answer) {
                printf("{\"error\": \"the receiver refused message %llu\"}\n", (unsigned long long)sequence);
                return 1;
            }
        }
        round_trips[sequence] = now_seconds() - sent_at;
    }
    double end = now_seconds();
    double median = percentile(round_trips, count, 0.5);
    double p99 = percentile(round_trips, count, 0.99);
    printf("{\"start\": %.9f, \"end\": %.9f, \"round_trip_median\": %.9f, \"round_trip_p99\": %.9f}\n",
           start, end, median, p99);
    fflush(stdout);
    free(round_trips);
    free(payload);
    return 0;
}
