/*
 * A receiver publishes its window under a name, as the seed article suggests: a small named
 * shared-memory section (Local\ namespace, so per session) holds the owner's process id and
 * window handle. Window handles have 32 significant bits, so both fit in one 64-bit word
 * that is claimed with a single compare-and-swap: no reader ever sees half an entry.
 *
 * An entry is honoured only while its window exists, belongs to that process and is of our
 * window class; anything else is stale and may be taken over.
 */
#include <windows.h>
#include <stdlib.h>
#include <string.h>

#include "copydata.h"

typedef struct published_name {
    volatile LONG64 holder;   /* (process id << 32) | window handle's 32 bits; 0 when free */
} published_name;

struct cd_name_registration {
    HANDLE mapping;
    published_name *view;
    LONG64 holder;
};

#define OBJECT_NAME_CAPACITY (sizeof CD_NAME_PREFIX / sizeof(wchar_t) + CD_MAX_NAME_LENGTH + 1)

static int object_name(const wchar_t *name, wchar_t *object)
{
    size_t length = wcslen(name);
    if (length == 0 || length > CD_MAX_NAME_LENGTH || wcschr(name, L'\\'))
        return 0;
    wcscpy(object, CD_NAME_PREFIX);
    wcscat(object, name);
    return 1;
}

static LONG64 make_holder(DWORD process_id, HWND hwnd)
{
    return (LONG64)(((uint64_t)process_id << 32) | (uint32_t)HandleToULong(hwnd));
}

static DWORD holder_process(LONG64 holder)
{
    return (DWORD)((uint64_t)holder >> 32);
}

static HWND holder_window(LONG64 holder)
{
    /* Window handles are sign-extended from their 32 significant bits. */
    return (HWND)LongToHandle((LONG)(uint32_t)holder);
}

static int is_our_window_of(HWND hwnd, DWORD process_id)
{
    DWORD owner = 0;
    wchar_t class_name[64];

    if (!IsWindow(hwnd))
        return 0;
    GetWindowThreadProcessId(hwnd, &owner);
    if (owner != process_id)
        return 0;
    if (!GetClassNameW(hwnd, class_name, (int)(sizeof class_name / sizeof class_name[0])))
        return 0;
    return wcscmp(class_name, CD_CLASS_NAME) == 0;
}

int cd_name_publish(const wchar_t *name, uint64_t hwnd, cd_name_registration **registration,
                    uint32_t *win32_error)
{
    wchar_t object[OBJECT_NAME_CAPACITY];
    cd_name_registration *reg;
    LONG64 seen;

    *registration = NULL;
    *win32_error = 0;
    if (!object_name(name, object))
        return CD_INVALID;
    reg = (cd_name_registration *)calloc(1, sizeof *reg);
    if (reg == NULL)
        return CD_NO_MEMORY;
    reg->holder = make_holder(GetCurrentProcessId(), (HWND)(uintptr_t)hwnd);
    reg->mapping = CreateFileMappingW(INVALID_HANDLE_VALUE, NULL, PAGE_READWRITE, 0,
                                      sizeof(published_name), object);
    if (reg->mapping == NULL)
        goto win32_failure;
    reg->view = (published_name *)MapViewOfFile(reg->mapping, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0,
                                                 sizeof(published_name));
    if (reg->view == NULL)
        goto win32_failure;

    seen = InterlockedCompareExchange64(&reg->view->holder, reg->holder, 0);
    while (seen != 0) {
        if (is_our_window_of(holder_window(seen), holder_process(seen))) {
            UnmapViewOfFile(reg->view);
            CloseHandle(reg->mapping);
            free(reg);
            return CD_NAME_IN_USE;
        }
        /* Stale: its owner died while someone else kept the section open. */
        LONG64 replaced = InterlockedCompareExchange64(&reg->view->holder, reg->holder, seen);
        seen = replaced == seen ? 0 : replaced;
    }
    *registration = reg;
    return CD_OK;

win32_failure:
    *win32_error = GetLastError();
    if (reg->mapping)
        CloseHandle(reg->mapping);
    free(reg);
    return CD_WIN32_ERROR;
}

void cd_name_withdraw(cd_name_registration *registration)
{
    if (registration == NULL)
        return;
    InterlockedCompareExchange64(&registration->view->holder, 0, registration->holder);
    UnmapViewOfFile(registration->view);
    CloseHandle(registration->mapping);
    free(registration);
}

int cd_name_lookup(const wchar_t *name, uint64_t *hwnd, uint32_t *process_id, uint32_t *win32_error)
{
    wchar_t object[OBJECT_NAME_CAPACITY];
    HANDLE mapping;
    published_name *view;
    LONG64 holder;

    *hwnd = 0;
    *process_id = 0;
    *win32_error = 0;
    if (!object_name(name, object))
        return CD_INVALID;
    mapping = OpenFileMappingW(FILE_MAP_READ, FALSE, object);
    if (mapping == NULL) {
        *win32_error = GetLastError();
        return *win32_error == ERROR_FILE_NOT_FOUND ? CD_NOT_FOUND : CD_WIN32_ERROR;
    }
    view = (published_name *)MapViewOfFile(mapping, FILE_MAP_READ, 0, 0, sizeof(published_name));
    if (view == NULL) {
        *win32_error = GetLastError();
        CloseHandle(mapping);
        return CD_WIN32_ERROR;
    }
    holder = view->holder;
    UnmapViewOfFile(view);
    CloseHandle(mapping);

    if (holder == 0 || !is_our_window_of(holder_window(holder), holder_process(holder)))
        return CD_NOT_FOUND;
    *hwnd = (uint64_t)(uintptr_t)holder_window(holder);
    *process_id = holder_process(holder);
    return CD_OK;
}
