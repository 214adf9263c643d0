/*
 * A WM_COPYDATA sender that knows nothing of copydata: it sends UTF-16 strings the way C#
 * (Encoding.Unicode, Marshal.StringToHGlobalUni) and AutoHotkey (StrPut) programs do, some
 * with the terminating NUL counted in cbData and some without, each with a dwData tag.
 *
 *     utf16_sender.exe HWND    prints one line per message: the receiver's answer
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <wchar.h>

struct text_message {
    ULONG_PTR tag;
    const wchar_t *text;
    int with_nul;
};

static const struct text_message messages[] = {
    {1, L"Hello from C", 1},
    {2, L"h\u00e9llo w\u00f6rld \u2713", 1},
    {3, L"no terminating NUL", 0},
    {4, L"", 1},
    {0xFFFFFFFF, L"clef \U0001D11E surrogate pair", 1},
};

int main(int argc, char **argv)
{
    HWND target;
    size_t i;

    if (argc != 2) {
        fprintf(stderr, "usage: utf16_sender.exe HWND\n");
        return 2;
    }
    target = (HWND)(ULONG_PTR)strtoull(argv[1], NULL, 0);
    for (i = 0; i < sizeof messages / sizeof messages[0]; i++) {
        COPYDATASTRUCT cds;
        DWORD_PTR answer = 0;
        size_t characters = wcslen(messages[i].text) + (messages[i].with_nul ? 1 : 0);

        cds.dwData = messages[i].tag;
        cds.cbData = (DWORD)(characters * sizeof(wchar_t));
        cds.lpData = (PVOID)messages[i].text;
        if (!SendMessageTimeoutW(target, WM_COPYDATA, 0, (LPARAM)&cds, SMTO_ABORTIFHUNG, 5000, &answer)) {
            fprintf(stderr, "SendMessageTimeoutW failed: error %lu\n", GetLastError());
            return 1;
        }
        printf("%llu\n", (unsigned long long)answer);
    }
    return 0;
}
