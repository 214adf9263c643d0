/* The floor of plain WM_COPYDATA, receiving side: a message-only window whose window
 * procedure checks every payload (length, sequence, every byte) and answers TRUE.
 *
 *     wm_copydata_recv.exe SIZE COUNT DEADLINE_SECONDS
 *
 * Prints {"ready": "HWND"}, then, once COUNT messages of SIZE bytes arrived (payloads above
 * CHUNK_SIZE arrive in chunks) or the deadline passed, one JSON line with what it saw. A
 * first line on stdin means the sender has finished: the deadline is then SETTLE_SECONDS
 * away at most. Then it waits for its stdin to close, so that the harness can read its peak
 * memory. (The same protocol as bench/peer.py.) */
#include "bench_common.h"

#define DEADLINE_TIMER 1
#define SETTLE_SECONDS 5.0

static volatile double deadline;       /* written by the stdin thread, read by the loop */
static HANDLE stdin_closed;

static size_t payload_size;
static uint64_t expected_count;
static struct expected_body expected_body;

static uint64_t messages, intact, chunks, total_bytes;
static double last_message_at;
static size_t filled;                  /* bytes of the current message so far */
static uint8_t header[HEADER_SIZE];
static int same;                       /* the current message's body so far is as expected */
static uint8_t chunk_copy[CHUNK_SIZE];

/* One arriving chunk. One that cannot belong to the current message is dropped: that message
 * then never completes intact, and the report shows it. */
static void take_chunk(const uint8_t *data, size_t size)
{
    chunks++;
    total_bytes += size;
    if (size == 0 || size > payload_size - filled)
        return;
    if (filled < HEADER_SIZE) {
        size_t take = HEADER_SIZE - filled < size ? HEADER_SIZE - filled : size;
        memcpy(header + filled, data, take);
        data += take;
        size -= take;
        filled += take;
    }
    if (size) {
        same = same && body_matches(&expected_body, filled - HEADER_SIZE, data, size);
        filled += size;
    }
    if (filled == payload_size) {
        uint64_t sequence;
        memcpy(&sequence, header, HEADER_SIZE);
        intact += sequence == messages && same;
        messages++;
        filled = 0;
        same = 1;
        last_message_at = now_seconds();
        if (messages == expected_count)
            PostQuitMessage(0);
    }
}

static DWORD WINAPI watch_stdin(LPVOID unused)
{
    (void)unused;
    char line[256];
    fgets(line, sizeof line, stdin); /* the sender has finished (or the harness is gone: EOF) */
    double settled = now_seconds() + SETTLE_SECONDS;
    if (settled < deadline)
        deadline = settled;
    while (fgets(line, sizeof line, stdin))
        ;
    SetEvent(stdin_closed);
    return 0;
}

static LRESULT CALLBACK window_procedure(HWND window, UINT message, WPARAM wparam, LPARAM lparam)
{
    if (message == WM_COPYDATA) {
        const COPYDATASTRUCT *cds = (const COPYDATASTRUCT *)lparam;
        if (!cds || (cds->cbData && !cds->lpData) || cds->cbData > CHUNK_SIZE)
            return FALSE;
        /* Copy, release the sender, then check: the sender waits for the transfer and one
         * copy only, as with a copydata.Receiver (which copies into its queue and answers). */
        size_t size = cds->cbData;
        memcpy(chunk_copy, cds->lpData, size);
        ReplyMessage(TRUE);
        take_chunk(chunk_copy, size);
        return TRUE;
    }
    return DefWindowProcW(window, message, wparam, lparam);
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: wm_copydata_recv SIZE COUNT DEADLINE_SECONDS\n");
        return 2;
    }
    payload_size = strtoull(argv[1], NULL, 10);
    expected_count = strtoull(argv[2], NULL, 10);
    deadline = now_seconds() + strtod(argv[3], NULL);
    if (payload_size < HEADER_SIZE || !expected_count) {
        fprintf(stderr, "SIZE must be at least %d and COUNT at least 1\n", HEADER_SIZE);
        return 2;
    }
    if (!make_expected_body(payload_size, &expected_body))
        fail("malloc");
    same = 1;

    WNDCLASSW window_class = {0};
    window_class.lpfnWndProc = window_procedure;
    window_class.hInstance = GetModuleHandleW(NULL);
    window_class.lpszClassName = L"copydata-bench-native-receiver";
    if (!RegisterClassW(&window_class))
        fail("RegisterClassW");
    HWND window = CreateWindowExW(0, window_class.lpszClassName, L"", 0, 0, 0, 0, 0, HWND_MESSAGE,
                                  NULL, window_class.hInstance, NULL);
    if (!window)
        fail("CreateWindowExW");
    /* Wakes the loop up now and then, so a lost message ends in a report, not a hang. */
    SetTimer(window, DEADLINE_TIMER, 250, NULL);
    stdin_closed = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!stdin_closed || !CreateThread(NULL, 0, watch_stdin, NULL, 0, NULL))
        fail("starting the stdin thread");
    printf("{\"ready\": \"%llu\"}\n", (unsigned long long)(uintptr_t)window);
    fflush(stdout);

    MSG message;
    while (GetMessageW(&message, NULL, 0, 0) > 0) {
        if (message.message == WM_TIMER && now_seconds() > deadline)
            break;
        DispatchMessageW(&message);
    }
    KillTimer(window, DEADLINE_TIMER);
    printf("{\"messages\": %llu, \"intact\": %llu, \"chunks\": %llu, \"bytes\": %llu, \"end\": %.9f}\n",
           (unsigned long long)messages, (unsigned long long)intact, (unsigned long long)chunks,
           (unsigned long long)total_bytes, last_message_at);
    fflush(stdout);

    /* Stay alive (window destroyed, nothing more accepted) until the harness closes stdin. */
    DestroyWindow(window);
    UnregisterClassW(window_class.lpszClassName, window_class.hInstance);
    WaitForSingleObject(stdin_closed, INFINITE);
    return 0;
}
