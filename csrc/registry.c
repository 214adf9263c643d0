/*
 * Where receivers can be found: small named shared-memory sections (Local\ namespace, so per
 * desktop session), as the seed article suggests.
 *
 * A section is an array of slots. Each slot holds one 64-bit word: the process id of a
 * receiver in the high half and its window handle in the low half (window handles have 32
 * significant bits). A slot is claimed or freed with one compare-and-swap, so no reader ever
 * sees half an entry.
 *   - a name is a section of one slot, held by one receiver at a time;
 *   - a channel is a section of CD_CHANNEL_SLOTS slots, one per subscribed receiver.
 * A slot counts only while its window exists, belongs to that process and is of our window
 * class; any other entry is stale (its owner died while someone kept the section open) and
 * is taken over or cleared.
 */
#include "win32.h"
#include <stdlib.h>
#include <string.h>

#include "internal.h"

typedef volatile LONG64 slot_t;   /* (process id << 32) | window handle's 32 bits; 0 when free */

struct cd_registration {
    HANDLE mapping;
    slot_t *slots;
    slot_t *claimed;
    LONG64 holder;
};

#define PREFIX_CAPACITY 32
#define OBJECT_NAME_CAPACITY (PREFIX_CAPACITY + CD_MAX_NAME_LENGTH + 1)

static uint32_t slot_count(int kind)
{
    return kind == CD_REGISTRY_CHANNEL ? CD_CHANNEL_SLOTS : 1;
}

static int object_name(int kind, const wchar_t *name, wchar_t *object)
{
    size_t length = wcslen(name);
    if (kind != CD_REGISTRY_NAME && kind != CD_REGISTRY_CHANNEL)
        return 0;
    if (length == 0 || length > CD_MAX_NAME_LENGTH || wcschr(name, L'\\'))
        return 0;
    wcscpy(object, kind == CD_REGISTRY_NAME ? CD_NAME_PREFIX : CD_CHANNEL_PREFIX);
    wcscat(object, name);
    return 1;
}

static LONG64 make_holder(DWORD process_id, HWND hwnd)
{
    return (LONG64)(((uint64_t)process_id << 32) | (uint32_t)HandleToULong(hwnd));
}

static HWND holder_window(LONG64 holder)
{
    /* Window handles are sign-extended from their 32 significant bits. */
    return (HWND)LongToHandle((LONG)(uint32_t)holder);
}

static int holder_is_live(LONG64 holder)
{
    HWND hwnd = holder_window(holder);
    DWORD owner = 0;
    wchar_t class_name[64];

    if (holder == 0 || !IsWindow(hwnd))
        return 0;
    GetWindowThreadProcessId(hwnd, &owner);
    if (owner != (DWORD)((uint64_t)holder >> 32))
        return 0;
    if (!GetClassNameW(hwnd, class_name, (int)(sizeof class_name / sizeof class_name[0])))
        return 0;
    return wcscmp(class_name, CD_CLASS_NAME) == 0;
}

/* The slots' section, made (create) or opened; NULL with CD_OK when it does not exist and
 * create is 0. Made open only to this user; one made by someone else, or not committed page-file
 * memory, is refused (CD_INVALID): whoever made it decides who may write there, and reading a
 * page that is not committed would crash us. */
static int open_slots(const wchar_t *object, uint32_t count, int create, HANDLE *mapping, uint32_t *win32_error)
{
    const DWORD access = FILE_MAP_READ | FILE_MAP_WRITE | READ_CONTROL | SECTION_QUERY;
    SECURITY_ATTRIBUTES attributes;
    void *user = NULL;
    uint64_t size = 0;
    int trusted;

    *mapping = NULL;
    if (create) {
        attributes.nLength = sizeof attributes;
        attributes.bInheritHandle = FALSE;
        attributes.lpSecurityDescriptor = cd_user_only_descriptor(0);  /* readable below: find() works there */
        if (attributes.lpSecurityDescriptor == NULL) {
            *win32_error = GetLastError();
            return CD_WIN32_ERROR;
        }
        *mapping = CreateFileMappingW(INVALID_HANDLE_VALUE, &attributes, PAGE_READWRITE, 0, count * sizeof(slot_t),
                                      object);
        *win32_error = GetLastError();  /* ERROR_ALREADY_EXISTS: made before, opened with all access */
        LocalFree(attributes.lpSecurityDescriptor);
    } else {
        *mapping = OpenFileMappingW(access, FALSE, object);
        *win32_error = GetLastError();
        if (*mapping == NULL && *win32_error == ERROR_FILE_NOT_FOUND) {
            *win32_error = 0;
            return CD_OK;
        }
    }
    if (*mapping == NULL)
        return *win32_error == ERROR_ACCESS_DENIED ? CD_INVALID : CD_WIN32_ERROR;
    *win32_error = 0;
    user = cd_current_user_sid();
    trusted = user != NULL && cd_mapping_trusted(*mapping, user, &size) && size >= count * sizeof(slot_t);
    cd_free_sid(user);
    if (!trusted) {
        CloseHandle(*mapping);
        *mapping = NULL;
        return CD_INVALID;
    }
    return CD_OK;
}

static slot_t *map_slots(HANDLE mapping, uint32_t count)
{
    return (slot_t *)MapViewOfFile(mapping, FILE_MAP_READ | FILE_MAP_WRITE, 0, 0, count * sizeof(slot_t));
}

/* Claims a free slot, or one whose holder is gone; NULL when live receivers hold them all. */
static slot_t *claim_slot(slot_t *slots, uint32_t count, LONG64 holder)
{
    uint32_t i;

    for (i = 0; i < count; i++) {
        LONG64 seen = InterlockedCompareExchange64(&slots[i], holder, 0);
        while (seen != 0 && !holder_is_live(seen)) {
            LONG64 replaced = InterlockedCompareExchange64(&slots[i], holder, seen);
            seen = replaced == seen ? 0 : replaced;
        }
        if (seen == 0)
            return &slots[i];
    }
    return NULL;
}

int cd_registry_claim(int kind, const wchar_t *name, uint64_t hwnd, cd_registration **registration,
                      uint32_t *win32_error)
{
    wchar_t object[OBJECT_NAME_CAPACITY];
    uint32_t count = slot_count(kind);
    cd_registration *reg;
    int status;

    *registration = NULL;
    *win32_error = 0;
    if (!object_name(kind, name, object))
        return CD_INVALID;
    reg = (cd_registration *)calloc(1, sizeof *reg);
    if (reg == NULL)
        return CD_NO_MEMORY;
    reg->holder = make_holder(GetCurrentProcessId(), (HWND)(uintptr_t)hwnd);
    status = open_slots(object, count, 1, &reg->mapping, win32_error);
    if (status != CD_OK) {
        free(reg);
        return status;
    }
    if ((reg->slots = map_slots(reg->mapping, count)) == NULL) {
        *win32_error = GetLastError();
        CloseHandle(reg->mapping);
        free(reg);
        return CD_WIN32_ERROR;
    }
    reg->claimed = claim_slot(reg->slots, count, reg->holder);
    if (reg->claimed == NULL) {
        UnmapViewOfFile((LPCVOID)reg->slots);
        CloseHandle(reg->mapping);
        free(reg);
        return kind == CD_REGISTRY_NAME ? CD_NAME_IN_USE : CD_FULL;
    }
    *registration = reg;
    return CD_OK;
}

void cd_registry_withdraw(cd_registration *registration)
{
    if (registration == NULL)
        return;
    InterlockedCompareExchange64(registration->claimed, 0, registration->holder);
    UnmapViewOfFile((LPCVOID)registration->slots);
    CloseHandle(registration->mapping);
    free(registration);
}

int cd_registry_list(int kind, const wchar_t *name, uint64_t *hwnds, uint32_t capacity, uint32_t *found,
                     uint32_t *win32_error)
{
    wchar_t object[OBJECT_NAME_CAPACITY];
    uint32_t count = slot_count(kind);
    HANDLE mapping;
    slot_t *slots;
    uint32_t i;
    int status;

    *found = 0;
    *win32_error = 0;
    if (!object_name(kind, name, object))
        return CD_INVALID;
    status = open_slots(object, count, 0, &mapping, win32_error);
    if (status != CD_OK || mapping == NULL)
        return status;
    slots = map_slots(mapping, count);
    if (slots == NULL) {
        *win32_error = GetLastError();
        CloseHandle(mapping);
        return CD_WIN32_ERROR;
    }
    for (i = 0; i < count; i++) {
        LONG64 holder = slots[i];
        if (holder == 0)
            continue;
        if (!holder_is_live(holder)) {
            InterlockedCompareExchange64(&slots[i], 0, holder);
            continue;
        }
        if (*found < capacity)
            hwnds[*found] = (uint64_t)(uintptr_t)holder_window(holder);
        (*found)++;
    }
    UnmapViewOfFile((LPCVOID)slots);
    CloseHandle(mapping);
    return CD_OK;
}

int cd_find_window(const wchar_t *class_name, const wchar_t *title, uint64_t *hwnd)
{
    HWND found = FindWindowExW(NULL, NULL, class_name, title);
    if (found == NULL)
        found = FindWindowExW(HWND_MESSAGE, NULL, class_name, title);
    *hwnd = (uint64_t)(uintptr_t)found;
    return found ? CD_OK : CD_NOT_FOUND;
}
