/*
 * Shared-memory sections for large payloads. A sender writes the payload into a section it
 * creates, owned by and open only to its own user, under an unguessable name in copydata's
 * namespace; one small WM_COPYDATA names the section and the range. The receiver opens only
 * names in that namespace, only sections owned by its own user (as PuTTY's Pageant checks the
 * owner of a mapping before it reads), and reads only within the pages mapped. When to reuse
 * a range is the descriptor's protocol (see CD_KIND_SECTION in copydata.h).
 */
#include "win32.h"
#include <sddl.h>
#include <aclapi.h>
#include <bcrypt.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

struct cd_section {
    HANDLE mapping;
    void *view;
    uint64_t size;
};

void *cd_current_user_sid(void)
{
    HANDLE token;
    DWORD needed = 0;
    TOKEN_USER *user = NULL;
    void *sid = NULL;

    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
        return NULL;
    GetTokenInformation(token, TokenUser, NULL, 0, &needed);
    user = (TOKEN_USER *)malloc(needed);
    if (user && GetTokenInformation(token, TokenUser, user, needed, &needed)) {
        DWORD length = GetLengthSid(user->User.Sid);
        sid = malloc(length);
        if (sid && !CopySid(length, sid, user->User.Sid)) {
            free(sid);
            sid = NULL;
        }
    }
    free(user);
    CloseHandle(token);
    return sid;
}

void cd_free_sid(void *sid)
{
    free(sid);
}

/* The SID of this process's integrity level, as SDDL text (free with LocalFree), or NULL. */
static wchar_t *integrity_level_text(void)
{
    HANDLE token;
    DWORD needed = 0;
    TOKEN_MANDATORY_LABEL *label = NULL;
    wchar_t *text = NULL;

    if (!OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &token))
        return NULL;
    GetTokenInformation(token, TokenIntegrityLevel, NULL, 0, &needed);
    label = (TOKEN_MANDATORY_LABEL *)malloc(needed);
    if (label && GetTokenInformation(token, TokenIntegrityLevel, label, needed, &needed)
        && !ConvertSidToStringSidW(label->Label.Sid, &text))
        text = NULL;
    free(label);
    CloseHandle(token);
    return text;
}

/* "O:<user>D:P(A;;GA;;;<user>)": the current user owns the object and alone may open it. With
 * unreadable_below, processes of a lower integrity level (of the same user) may neither read
 * nor write it either, where by default they may read: "S:(ML;;NWNR;;;<our level>)". Free it
 * with LocalFree. */
PSECURITY_DESCRIPTOR cd_user_only_descriptor(int unreadable_below)
{
    void *sid = cd_current_user_sid();
    wchar_t *sid_text = NULL, *level = unreadable_below ? integrity_level_text() : NULL;
    wchar_t sddl[512];
    PSECURITY_DESCRIPTOR descriptor = NULL;

    if (sid && ConvertSidToStringSidW((PSID)sid, &sid_text) && wcslen(sid_text) < 180
        && (!unreadable_below || (level != NULL && wcslen(level) < 180))) {
        wcscpy(sddl, L"O:");
        wcscat(sddl, sid_text);
        wcscat(sddl, L"D:P(A;;GA;;;");
        wcscat(sddl, sid_text);
        wcscat(sddl, L")");
        if (unreadable_below) {
            wcscat(sddl, L"S:(ML;;NWNR;;;");
            wcscat(sddl, level);
            wcscat(sddl, L")");
        }
        if (!ConvertStringSecurityDescriptorToSecurityDescriptorW(sddl, SDDL_REVISION_1, &descriptor, NULL))
            descriptor = NULL;
    }
    if (sid_text)
        LocalFree(sid_text);
    if (level)
        LocalFree(level);
    cd_free_sid(sid);
    return descriptor;
}

/* Windows' wchar_t is UTF-16, so its strings are the uint16_t names of copydata.h. */
typedef char wchar_t_is_16_bits[sizeof(wchar_t) == sizeof(uint16_t) ? 1 : -1];

static int in_our_namespace(const wchar_t *name)
{
    return cd_section_name_ok((const uint16_t *)name, wcslen(name));
}

/* The magic, and a secret that only those who can read the section learn. */
static int write_header(cd_section_header *header, uint64_t size)
{
    if (size < sizeof *header
        || BCryptGenRandom(NULL, header->secret, sizeof header->secret, BCRYPT_USE_SYSTEM_PREFERRED_RNG) != 0)
        return 0;
    memcpy(header->magic, CD_SECTION_MAGIC, sizeof header->magic);
    return 1;
}

int cd_section_create(const wchar_t *name, uint64_t size, cd_section **section, uint32_t *win32_error)
{
    SECURITY_ATTRIBUTES attributes;
    cd_section *s;

    *section = NULL;
    *win32_error = 0;
    if (!in_our_namespace(name) || size == 0 || size > (uint64_t)SIZE_MAX)
        return CD_INVALID;
    s = (cd_section *)calloc(1, sizeof *s);
    if (s == NULL)
        return CD_NO_MEMORY;
    attributes.nLength = sizeof attributes;
    attributes.bInheritHandle = FALSE;
    attributes.lpSecurityDescriptor = cd_user_only_descriptor(1);
    if (attributes.lpSecurityDescriptor == NULL) {
        *win32_error = GetLastError();
        free(s);
        return CD_WIN32_ERROR;
    }
    s->mapping = CreateFileMappingW(INVALID_HANDLE_VALUE, &attributes, PAGE_READWRITE, (DWORD)(size >> 32),
                                    (DWORD)size, name);
    *win32_error = GetLastError();
    LocalFree(attributes.lpSecurityDescriptor);
    if (s->mapping != NULL && *win32_error == ERROR_ALREADY_EXISTS) {
        /* Never write into a section that someone else made under our name. */
        CloseHandle(s->mapping);
        free(s);
        return CD_NAME_IN_USE;
    }
    *win32_error = 0;
    if (s->mapping == NULL || (s->view = MapViewOfFile(s->mapping, FILE_MAP_WRITE, 0, 0, (SIZE_T)size)) == NULL) {
        *win32_error = GetLastError();
        if (s->mapping)
            CloseHandle(s->mapping);
        free(s);
        return CD_WIN32_ERROR;
    }
    s->size = size;
    if (!write_header((cd_section_header *)s->view, size)) {
        *win32_error = GetLastError();
        cd_section_close(s);
        return CD_WIN32_ERROR;
    }
    *section = s;
    return CD_OK;
}

void *cd_section_view(cd_section *section)
{
    return section->view;
}

void cd_section_close(cd_section *section)
{
    if (section == NULL)
        return;
    UnmapViewOfFile(section->view);
    CloseHandle(section->mapping);
    free(section);
}

/* NtQuerySection, which kernel32 does not wrap: how a section is backed. */
typedef struct section_basic_information {
    PVOID base_address;
    ULONG attributes;
    LARGE_INTEGER size;
} section_basic_information;
typedef LONG(NTAPI *query_section_function)(HANDLE, int, PVOID, SIZE_T, PSIZE_T);
#define SECTION_BASIC_INFORMATION_CLASS 0

/* Committed page-file memory: a section backed by a file may fail to read (a network file, a
 * disk error), and one merely reserved (SEC_RESERVE) faults where it is not committed. */
static int backed_by_committed_memory(HANDLE mapping, uint64_t *size)
{
    static query_section_function query;
    section_basic_information info;

    if (query == NULL) {
        FARPROC found = GetProcAddress(GetModuleHandleW(L"ntdll.dll"), "NtQuerySection");
        query = (query_section_function)(void (*)(void))found;
    }
    if (query == NULL || query(mapping, SECTION_BASIC_INFORMATION_CLASS, &info, sizeof info, NULL) < 0)
        return 0;
    if (!(info.attributes & SEC_COMMIT) || (info.attributes & (SEC_RESERVE | SEC_FILE | SEC_IMAGE)))
        return 0;
    *size = (uint64_t)info.size.QuadPart;
    return 1;
}

int cd_mapping_trusted(HANDLE mapping, const void *owner_sid, uint64_t *size)
{
    PSID owner = NULL;
    PSECURITY_DESCRIPTOR security = NULL;
    int owned;

    owned = GetSecurityInfo(mapping, SE_KERNEL_OBJECT, OWNER_SECURITY_INFORMATION, &owner, NULL, NULL, NULL,
                            &security) == ERROR_SUCCESS
            && owner != NULL && owner_sid != NULL && EqualSid(owner, (PSID)owner_sid);
    if (security)
        LocalFree(security);
    return owned && backed_by_committed_memory(mapping, size);
}

int cd_section_map(const uint16_t *name, const void *owner_sid, const unsigned char **view, uint64_t *size,
                   int *writable)
{
    const DWORD query = READ_CONTROL | SECTION_QUERY;
    HANDLE mapping;
    MEMORY_BASIC_INFORMATION region;
    uint64_t section_size = 0;

    *view = NULL;
    *size = 0;
    /* Writable for leases (a release word), when the section allows it; else for reading. */
    *writable = 1;
    mapping = OpenFileMappingW(FILE_MAP_READ | FILE_MAP_WRITE | query, FALSE, (const wchar_t *)name);
    if (mapping == NULL) {
        *writable = 0;
        mapping = OpenFileMappingW(FILE_MAP_READ | query, FALSE, (const wchar_t *)name);
    }
    if (mapping == NULL)
        return CD_NOT_FOUND;
    if (!cd_mapping_trusted(mapping, owner_sid, &section_size)) {
        CloseHandle(mapping);
        return CD_INVALID;
    }
    /* The whole section: the view keeps it alive, so the handle can go. */
    *view = (const unsigned char *)MapViewOfFile(mapping, *writable ? FILE_MAP_WRITE : FILE_MAP_READ, 0, 0, 0);
    CloseHandle(mapping);
    if (*view == NULL)
        return CD_INVALID;
    /* What may be read: the committed pages mapped, and no more than the section holds. */
    if (VirtualQuery(*view, &region, sizeof region) != sizeof region || region.State != MEM_COMMIT) {
        UnmapViewOfFile(*view);
        *view = NULL;
        return CD_INVALID;
    }
    *size = (uint64_t)region.RegionSize < section_size ? (uint64_t)region.RegionSize : section_size;
    return CD_OK;
}

void cd_section_unmap(const unsigned char *view)
{
    if (view != NULL)
        UnmapViewOfFile(view);
}
