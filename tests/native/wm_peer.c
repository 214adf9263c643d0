/*
 * A WM_COPYDATA peer that knows nothing of copydata, built for 64-bit and for 32-bit Windows
 * (tools/winenv.py builds it with both mingw-w64 compilers), so that the tests can put a
 * 32-bit program on the other end of a message, as AutoHotkey 32-bit or an old C# program is.
 *
 *     wm_peer.exe receive top|message CLASS TITLE COUNT
 *         creates a window of class CLASS titled TITLE (hidden top-level, or message-only),
 *         prints "ready HWND BITS", then one line "DWDATA CBDATA HEX" for each of COUNT
 *         WM_COPYDATA messages (answering each 1), then ends. Gives up after 60 s.
 *     wm_peer.exe send HWND TAG FILE
 *         sends FILE's bytes as one WM_COPYDATA with dwData TAG (read as a ULONG_PTR, so a
 *         32-bit build cannot express more than 2^32-1), prints "BITS ANSWER".
 *
 * BITS is this program's pointer size in bits: the tests check that they run the build they
 * meant to.
 */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define GIVE_UP_MS 60000

static unsigned long remaining;

static void print_message(const COPYDATASTRUCT *cds)
{
    static const char digits[] = "0123456789abcdef";
    const unsigned char *bytes = cds->lpData;
    char *hex = malloc(2 * (size_t)cds->cbData + 1);
    DWORD i;

    if (hex == NULL) {
        fprintf(stderr, "wm_peer: out of memory\n");
        exit(1);
    }
    for (i = 0; i < cds->cbData; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * (size_t)cds->cbData] = '\0';
    printf("%llu %lu %s\n", (unsigned long long)cds->dwData, (unsigned long)cds->cbData, hex);
    fflush(stdout);
    free(hex);
}

static LRESULT CALLBACK peer_window_proc(HWND hwnd, UINT message, WPARAM wparam, LPARAM lparam)
{
    if (message == WM_COPYDATA) {
        print_message((const COPYDATASTRUCT *)lparam);
        if (--remaining == 0)
            PostQuitMessage(0);
        return 1;
    }
    if (message == WM_TIMER) {
        fprintf(stderr, "wm_peer: gave up waiting, %lu messages still to come\n", remaining);
        PostQuitMessage(3);
        return 0;
    }
    return DefWindowProcW(hwnd, message, wparam, lparam);
}

static wchar_t *wide(const char *text)
{
    int length = MultiByteToWideChar(CP_UTF8, 0, text, -1, NULL, 0);
    wchar_t *result = malloc(sizeof(wchar_t) * (size_t)(length > 0 ? length : 1));

    if (result == NULL || length <= 0 || !MultiByteToWideChar(CP_UTF8, 0, text, -1, result, length)) {
        fprintf(stderr, "wm_peer: cannot convert %s\n", text);
        exit(2);
    }
    return result;
}

static int receive_messages(const char *kind, const char *class_name, const char *title, unsigned long count)
{
    WNDCLASSW window_class;
    HWND hwnd;
    MSG message;
    BOOL got;

    memset(&window_class, 0, sizeof window_class);
    window_class.lpfnWndProc = peer_window_proc;
    window_class.hInstance = GetModuleHandleW(NULL);
    window_class.lpszClassName = wide(class_name);
    if (!RegisterClassW(&window_class)) {
        fprintf(stderr, "wm_peer: RegisterClassW failed: error %lu\n", GetLastError());
        return 1;
    }
    hwnd = CreateWindowExW(0, window_class.lpszClassName, wide(title), WS_OVERLAPPED, 0, 0, 0, 0,
                           strcmp(kind, "message") == 0 ? HWND_MESSAGE : NULL, NULL,
                           window_class.hInstance, NULL);
    if (hwnd == NULL) {
        fprintf(stderr, "wm_peer: CreateWindowExW failed: error %lu\n", GetLastError());
        return 1;
    }
    remaining = count;
    SetTimer(hwnd, 1, GIVE_UP_MS, NULL);
    printf("ready %llu %u\n", (unsigned long long)(ULONG_PTR)hwnd, (unsigned)(sizeof(void *) * 8));
    fflush(stdout);
    while ((got = GetMessageW(&message, NULL, 0, 0)) > 0) {
        TranslateMessage(&message);
        DispatchMessageW(&message);
    }
    DestroyWindow(hwnd);
    return got < 0 ? 1 : (int)message.wParam;
}

static int send_file(const char *target, const char *tag, const char *path)
{
    COPYDATASTRUCT cds;
    DWORD_PTR answer = 0;
    unsigned char *data = NULL;
    long size;
    FILE *file = fopen(path, "rb");

    if (file == NULL || fseek(file, 0, SEEK_END) != 0 || (size = ftell(file)) < 0 || fseek(file, 0, SEEK_SET) != 0) {
        fprintf(stderr, "wm_peer: cannot read %s\n", path);
        return 2;
    }
    data = malloc(size > 0 ? (size_t)size : 1);
    if (data == NULL || fread(data, 1, (size_t)size, file) != (size_t)size) {
        fprintf(stderr, "wm_peer: cannot read %s\n", path);
        return 2;
    }
    fclose(file);
    cds.dwData = (ULONG_PTR)strtoull(tag, NULL, 0);
    cds.cbData = (DWORD)size;
    cds.lpData = data;
    if (!SendMessageTimeoutW((HWND)(ULONG_PTR)strtoull(target, NULL, 0), WM_COPYDATA, 0, (LPARAM)&cds,
                             SMTO_ABORTIFHUNG, 10000, &answer)) {
        fprintf(stderr, "wm_peer: SendMessageTimeoutW failed: error %lu\n", GetLastError());
        return 1;
    }
    printf("%u %llu\n", (unsigned)(sizeof(void *) * 8), (unsigned long long)answer);
    free(data);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 6 && strcmp(argv[1], "receive") == 0)
        return receive_messages(argv[2], argv[3], argv[4], strtoul(argv[5], NULL, 0));
    if (argc == 5 && strcmp(argv[1], "send") == 0)
        return send_file(argv[2], argv[3], argv[4]);
    fprintf(stderr, "usage: wm_peer.exe receive top|message CLASS TITLE COUNT\n"
                    "       wm_peer.exe send HWND TAG FILE\n");
    return 2;
}
