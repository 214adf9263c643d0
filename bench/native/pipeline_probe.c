/* The best a sender/receiver pair can do on this machine, without any message passing:
 * how fast can bytes cross from one core to another through shared memory, and be checked?
 *
 *     pipeline_probe.exe MODE SIZE HALF_BYTES COUNT
 *
 * One process, a shared-memory section (CreateFileMappingW, as copydata's Sender uses) of
 * two halves. A producer thread copies COUNT payloads of SIZE bytes into the halves, in turn,
 * as copydata's Sender does; the consumer thread takes a half once it is full and, by MODE:
 *   inplace   checks every payload in the section (a receiver that hands out views)
 *   copyout   copies every payload out into a block of its own, then checks the block
 *   copyout2  copies out on the consumer thread, and a third thread checks the blocks
 *             (copydata's queue-mode receiver: window thread and Python thread)
 * The threads hand halves over through two counters they spin on: no system call, no
 * wineserver, so this is an upper bound for any design with the same passes over the bytes.
 * Payloads above a half go in half-sized pieces. Prints one JSON line (same fields as
 * memcpy_bandwidth: start, end, messages, intact, bytes). */
#include "bench_common.h"

#define BLOCKS 4 /* copyout2: blocks between the copying and the checking thread */

struct probe {
    const char *mode;
    size_t size, half, count;
    uint8_t *section;
    uint8_t *blocks[BLOCKS];
    struct expected_body expected;
    volatile LONG64 filled;   /* halves the producer has filled */
    volatile LONG64 emptied;  /* halves the consumer is done with */
    volatile LONG64 copied;   /* copyout2: pieces copied into blocks */
    volatile LONG64 checked;  /* copyout2: pieces checked */
    volatile LONG64 intact;
    size_t pieces_per_half, piece;
};

/* Spins a while, then gives the core away: copyout2 runs three threads on however many cores. */
static void spin_until(volatile LONG64 *counter, LONG64 at_least)
{
    for (unsigned spins = 0; *counter < at_least; spins++) {
        if (spins < 4096)
            YieldProcessor();
        else
            SwitchToThread();
    }
}

/* Piece p of the stream: payload p / pieces_per_payload, at this offset in it. */
static size_t pieces_per_payload(const struct probe *p)
{
    return (p->size + p->piece - 1) / p->piece;
}

static DWORD WINAPI produce(void *argument)
{
    struct probe *p = argument;
    uint8_t *payload = make_payload(p->size);
    size_t per_payload = pieces_per_payload(p), total = p->count * per_payload;
    if (!payload)
        fail("malloc");
    for (size_t piece = 0, half = 0; piece < total; half++) {
        spin_until(&p->emptied, (LONG64)half - 1); /* the other half's turn came and went */
        uint8_t *target = p->section + (half % 2) * p->half;
        for (size_t i = 0; i < p->pieces_per_half && piece < total; i++, piece++) {
            size_t message = piece / per_payload, offset = (piece % per_payload) * p->piece;
            size_t length = p->size - offset < p->piece ? p->size - offset : p->piece;
            if (offset == 0)
                stamp_sequence(payload, message);
            memcpy(target + i * p->piece, payload + offset, length);
        }
        InterlockedExchange64(&p->filled, (LONG64)half + 1);
    }
    free(payload);
    return 0;
}

/* Whether `length` bytes at `offset` of payload `message` are the ones expected. */
static int piece_matches(const struct probe *p, size_t message, size_t offset, const uint8_t *data,
                         size_t length)
{
    if (offset == 0) {
        uint64_t sequence;
        memcpy(&sequence, data, HEADER_SIZE);
        if (sequence != message)
            return 0;
        return body_matches(&p->expected, 0, data + HEADER_SIZE, length - HEADER_SIZE);
    }
    return body_matches(&p->expected, offset - HEADER_SIZE, data, length);
}

static DWORD WINAPI check_blocks(void *argument)
{
    struct probe *p = argument;
    size_t per_payload = pieces_per_payload(p), total = p->count * per_payload;
    for (size_t piece = 0; piece < total; piece++) {
        spin_until(&p->copied, (LONG64)piece + 1);
        size_t message = piece / per_payload, offset = (piece % per_payload) * p->piece;
        size_t length = p->size - offset < p->piece ? p->size - offset : p->piece;
        if (piece_matches(p, message, offset, p->blocks[piece % BLOCKS], length) && offset + length == p->size)
            p->intact++;
        InterlockedExchange64(&p->checked, (LONG64)piece + 1);
    }
    return 0;
}

static void consume(struct probe *p)
{
    int copy = strcmp(p->mode, "inplace") != 0, separate = strcmp(p->mode, "copyout2") == 0;
    size_t per_payload = pieces_per_payload(p), total = p->count * per_payload;
    int whole = 1;
    for (size_t piece = 0, half = 0; piece < total; half++) {
        spin_until(&p->filled, (LONG64)half + 1);
        const uint8_t *source = p->section + (half % 2) * p->half;
        for (size_t i = 0; i < p->pieces_per_half && piece < total; i++, piece++) {
            size_t message = piece / per_payload, offset = (piece % per_payload) * p->piece;
            size_t length = p->size - offset < p->piece ? p->size - offset : p->piece;
            const uint8_t *data = source + i * p->piece;
            if (copy) {
                if (separate)
                    spin_until(&p->checked, (LONG64)piece + 1 - BLOCKS);
                memcpy(p->blocks[piece % BLOCKS], data, length);
                data = p->blocks[piece % BLOCKS];
            }
            if (separate) {
                InterlockedExchange64(&p->copied, (LONG64)piece + 1);
                continue;
            }
            whole = whole && piece_matches(p, message, offset, data, length);
            if (offset + length == p->size) {
                p->intact += whole;
                whole = 1;
            }
        }
        InterlockedExchange64(&p->emptied, (LONG64)half + 1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: pipeline_probe inplace|copyout|copyout2 SIZE HALF_BYTES COUNT\n");
        return 2;
    }
    struct probe p = {0};
    p.mode = argv[1];
    p.size = strtoull(argv[2], NULL, 10);
    p.half = strtoull(argv[3], NULL, 10);
    p.count = strtoull(argv[4], NULL, 10);
    if (p.size < HEADER_SIZE || p.half == 0 || p.count == 0)
        return 2;
    p.piece = p.size < p.half ? p.size : p.half;
    p.pieces_per_half = p.half / p.piece;
    HANDLE mapping = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE,
                                        (DWORD)((2 * p.half) >> 32), (DWORD)(2 * p.half), NULL);
    if (!mapping)
        fail("CreateFileMappingW");
    p.section = MapViewOfFile(mapping, FILE_MAP_WRITE, 0, 0, 2 * p.half);
    if (!p.section)
        fail("MapViewOfFile");
    memset(p.section, 0, 2 * p.half); /* warm, as a Sender's section is after its first frames */
    for (int i = 0; i < BLOCKS; i++) {
        if (!(p.blocks[i] = malloc(p.piece)))
            fail("malloc");
        memset(p.blocks[i], 0, p.piece);
    }
    if (!make_expected_body(p.size, &p.expected))
        fail("malloc");
    p.emptied = 0; /* both halves start empty: the producer may fill them before the consumer empties one */
    HANDLE producer, checker = NULL;
    double start = now_seconds();
    producer = CreateThread(NULL, 0, produce, &p, 0, NULL);
    if (!producer)
        fail("CreateThread");
    if (strcmp(p.mode, "copyout2") == 0 && !(checker = CreateThread(NULL, 0, check_blocks, &p, 0, NULL)))
        fail("CreateThread");
    consume(&p);
    WaitForSingleObject(producer, INFINITE);
    if (checker)
        WaitForSingleObject(checker, INFINITE);
    double end = now_seconds();
    printf("{\"mode\": \"%s\", \"start\": %.9f, \"end\": %.9f, \"messages\": %llu, \"intact\": %llu, "
           "\"bytes\": %llu, \"MB/s\": %.1f}\n", p.mode, start, end, (unsigned long long)p.count,
           (unsigned long long)p.intact, (unsigned long long)(p.count * p.size),
           (double)(p.count * p.size) / (end - start) / 1e6);
    return 0;
}
