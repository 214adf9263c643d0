/* Sending one WM_COPYDATA straight from the caller's buffer. */
#include "win32.h"

#include "internal.h"

int cd_send(uint64_t target, uint64_t tag, uint64_t sender, const void *data, size_t size,
            uint32_t timeout_ms, uint32_t flags, intptr_t *result, uint32_t *win32_error)
{
    HWND hwnd = (HWND)(uintptr_t)target;
    COPYDATASTRUCT cds;
    DWORD_PTR answer = 0;
    DWORD error;

    *result = 0;
    *win32_error = 0;
    if (size > MAXDWORD)
        return CD_INVALID;
    cds.dwData = (ULONG_PTR)tag;
    cds.cbData = (DWORD)size;
    cds.lpData = (PVOID)data;

    SetLastError(0);
    if (SendMessageTimeoutW(hwnd, WM_COPYDATA, (WPARAM)(uintptr_t)sender, (LPARAM)&cds, flags,
                            timeout_ms, &answer)) {
        *result = (intptr_t)answer;
        return CD_OK;
    }
    error = GetLastError();
    *win32_error = error;
    return cd_send_failure(hwnd, error);
}

int cd_send_failure(HWND hwnd, DWORD error)
{
    /* Windows may report a vanished target as a timeout, even with error 0. */
    if (!IsWindow(hwnd))
        return CD_TARGET_GONE;
    if (error == ERROR_TIMEOUT || error == 0)
        return CD_TIMEOUT;
    return CD_WIN32_ERROR;
}

uint32_t cd_ring_message(void)
{
    return RegisterWindowMessageW(CD_RING_MESSAGE);
}

int cd_post_ring(uint64_t target, uint32_t message, uint64_t ring_id, uint64_t lease_id, uint32_t *win32_error)
{
    HWND hwnd = (HWND)(uintptr_t)target;

    *win32_error = 0;
    if (message != 0 && PostMessageW(hwnd, message, (WPARAM)ring_id, (LPARAM)lease_id))
        return CD_OK;
    *win32_error = GetLastError();
    return IsWindow(hwnd) ? CD_WIN32_ERROR : CD_TARGET_GONE;
}

int cd_window_exists(uint64_t target)
{
    return IsWindow((HWND)(uintptr_t)target) != 0;
}

int cd_window_tag_bits(uint64_t target, uint32_t *bits, uint32_t *win32_error)
{
    HWND hwnd = (HWND)(uintptr_t)target;
    DWORD process_id = 0;
    HANDLE process;
    BOOL wow64 = FALSE;

    *win32_error = 0;
    /* Our own dwData is no wider than our pointers, whatever the target. */
    *bits = sizeof(ULONG_PTR) == 8 ? 64 : 32;
    if (!GetWindowThreadProcessId(hwnd, &process_id))
        return CD_TARGET_GONE;
    process = OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, FALSE, process_id);
    if (process == NULL || !IsWow64Process(process, &wow64)) {
        *win32_error = GetLastError();
        if (process != NULL)
            CloseHandle(process);
        return CD_WIN32_ERROR;
    }
    CloseHandle(process);
    /* A WOW64 process is a 32-bit program on 64-bit Windows: its ULONG_PTR has 32 bits. */
    if (wow64)
        *bits = 32;
    return CD_OK;
}
