/* The floors copydata demo measures copydata against, done here as a plain C program does them
 * (bench/native/wm_copydata_send.c and memcpy_bandwidth.c), so that an installed copydata,
 * which has no such programs beside it, measures them on its own machine in the same run. */
#include "win32.h"
#include <string.h>

#include "internal.h"

/* Called through a volatile pointer, memcpy is a call the compiler cannot see into: it can
 * neither drop a copy whose bytes the next copy overwrites nor turn it into anything else. */
static void *(*volatile copy_bytes)(void *, const void *, size_t) = memcpy;

static void stamp(unsigned char *payload, uint64_t number)
{
    int i;
    for (i = 0; i < CD_FLOOR_STAMP_SIZE; i++)
        payload[i] = (unsigned char)(number >> (8 * i));
}

int cd_floor_send(uint64_t target, unsigned char *payload, size_t size, uint64_t first, size_t count,
                  uint32_t timeout_ms, size_t *sent, uint32_t *win32_error)
{
    HWND hwnd = (HWND)(uintptr_t)target;
    COPYDATASTRUCT cds;
    size_t i;

    *sent = 0;
    *win32_error = 0;
    if (size < CD_FLOOR_STAMP_SIZE || size > MAXDWORD)
        return CD_INVALID;
    cds.dwData = 0;
    cds.cbData = (DWORD)size;
    cds.lpData = payload;
    for (i = 0; i < count; i++) {
        DWORD_PTR answer = 0;
        stamp(payload, first + i);
        SetLastError(0);
        if (!SendMessageTimeoutW(hwnd, WM_COPYDATA, 0, (LPARAM)&cds, SMTO_ABORTIFHUNG, timeout_ms, &answer)) {
            DWORD error = GetLastError();
            *win32_error = error;
            return cd_send_failure(hwnd, error);
        }
        if (!answer)
            return CD_OK;
        *sent = i + 1;
    }
    return CD_OK;
}

int cd_floor_memcpy(unsigned char *target, unsigned char *source, size_t size, size_t count)
{
    size_t i;

    if (size < CD_FLOOR_STAMP_SIZE || count == 0)
        return 0;
    for (i = 0; i < count; i++) {
        stamp(source, i);
        copy_bytes(target, source, size);
    }
    return memcmp(target, source, size) == 0;
}
