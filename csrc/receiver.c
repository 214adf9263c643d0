/*
 * A receiver is a message-only window owned by a pump thread of its own. Its window
 * procedure copies each WM_COPYDATA payload into a bounded queue and returns at once, so a
 * sender is released as soon as its bytes are safe; Python takes the queue in batches.
 * In sync mode the window procedure instead waits until Python has answered the message.
 */
#include "win32.h"
#include <stdlib.h>
#include <string.h>

#include "copydata.h"

/* A message arriving in parts: allocated whole at its first part, queued at its last. */
typedef struct cd_transfer {
    struct cd_transfer *next;
    uint64_t sender;
    uint64_t transfer_id;
    uint64_t received;
    ULONGLONG last_part_ms;
    cd_message *message;
} cd_transfer;

#define PART_SWEEP_TIMER 1
#define PART_SWEEP_INTERVAL_MS 1000

struct cd_receiver {
    cd_receiver_config config;
    /* Only the pump thread touches these (and close, once that thread has ended). */
    cd_transfer *transfers;
    size_t transfer_count;
    size_t transfer_bytes;
    void *user_sid;               /* sections must be owned by this user */
    SRWLOCK lock;                 /* guards everything below */
    CONDITION_VARIABLE changed;   /* a message was queued, taken or answered; the window came or went */
    cd_message *head;
    cd_message *tail;
    cd_stats stats;
    HWND hwnd;
    HANDLE thread;
    DWORD thread_id;
    int window_state;             /* 0 being created, 1 created, -1 creation failed */
    DWORD open_error;
    int stopping;                 /* close has begun: refuse new messages, honour WM_CLOSE */
    int closed;                   /* the pump thread has ended: nothing more will be queued */
};

/* Counts a refused message; the caller holds the lock. */
static void count_refusal(cd_receiver *r, uint64_t *reason, size_t size)
{
    r->stats.refused_messages++;
    r->stats.refused_bytes += size;
    (*reason)++;
}

static void refuse(cd_receiver *r, uint64_t *reason, size_t size)
{
    AcquireSRWLockExclusive(&r->lock);
    count_refusal(r, reason, size);
    ReleaseSRWLockExclusive(&r->lock);
}

static void append(cd_receiver *r, cd_message *m)
{
    m->next = NULL;
    if (r->tail)
        r->tail->next = m;
    else
        r->head = m;
    r->tail = m;
    r->stats.received_messages++;
    r->stats.received_bytes += m->size;
    r->stats.queued_messages++;
    r->stats.queued_bytes += m->size;
}

static void unlink_message(cd_receiver *r, cd_message *m)
{
    cd_message **link = &r->head;
    cd_message *previous = NULL;
    while (*link && *link != m) {
        previous = *link;
        link = &(*link)->next;
    }
    if (*link == NULL)
        return;
    *link = m->next;
    if (r->tail == m)
        r->tail = previous;
    r->stats.queued_messages--;
    r->stats.queued_bytes -= m->size;
}

/* Sync mode: queue the sender's own bytes and wait until Python answers them. */
static LRESULT hand_over_and_wait(cd_receiver *r, WPARAM wparam, const COPYDATASTRUCT *cds)
{
    cd_message m;
    LRESULT result = FALSE;

    memset(&m, 0, sizeof m);
    m.tag = (uint64_t)cds->dwData;
    m.sender = (uint64_t)wparam;
    m.size = cds->cbData;
    m.data = cds->lpData ? (const char *)cds->lpData : "";
    m.codec_id = CD_NO_CODEC;

    AcquireSRWLockExclusive(&r->lock);
    if (r->stopping) {
        count_refusal(r, &r->stats.refused_closing, m.size);
        ReleaseSRWLockExclusive(&r->lock);
        return FALSE;
    }
    append(r, &m);
    WakeAllConditionVariable(&r->changed);
    while (!m.replied) {
        /* Once Python holds the message it must answer before m leaves this stack frame. */
        if (r->stopping && !m.taken) {
            unlink_message(r, &m);
            r->stats.dropped_messages++;
            r->stats.dropped_bytes += m.size;
            break;
        }
        SleepConditionVariableSRW(&r->changed, &r->lock, INFINITE, 0);
    }
    if (m.replied)
        result = (LRESULT)m.result;
    ReleaseSRWLockExclusive(&r->lock);
    return result;
}

/* Whether count more messages of bytes in all may be queued now; refuses (and counts) if not.
 * Only the pump thread adds to the queue, so room seen here is still there after the copy. */
static int make_room(cd_receiver *r, size_t count, size_t bytes, size_t payload_size)
{
    int stopping, full;

    AcquireSRWLockShared(&r->lock);
    stopping = r->stopping;
    full = count > r->config.max_queue_messages - r->stats.queued_messages
           || bytes > r->config.max_queue_bytes - r->stats.queued_bytes;
    ReleaseSRWLockShared(&r->lock);
    if (stopping)
        refuse(r, &r->stats.refused_closing, payload_size);
    else if (full)
        refuse(r, &r->stats.refused_queue_full, payload_size);
    return !stopping && !full;
}

static cd_message *new_message(uint64_t tag, WPARAM wparam, size_t size, int codec_id)
{
    cd_message *m = (cd_message *)malloc(sizeof *m + size);
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof *m);
    m->tag = tag;
    m->sender = (uint64_t)wparam;
    m->size = size;
    m->data = (const char *)(m + 1);
    m->codec_id = codec_id;
    return m;
}

static cd_message *copy_message(uint64_t tag, WPARAM wparam, const void *data, size_t size, int codec_id)
{
    cd_message *m = new_message(tag, wparam, size, codec_id);
    if (m != NULL && size)
        memcpy(m + 1, data, size);
    return m;
}

static void append_all(cd_receiver *r, cd_message *first)
{
    AcquireSRWLockExclusive(&r->lock);
    while (first) {
        cd_message *next = first->next;
        append(r, first);
        first = next;
    }
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);
}

/* Queues every record of a batch frame (already checked by cd_batch_check), or none. */
static LRESULT accept_batch(cd_receiver *r, WPARAM wparam, const unsigned char *frame, size_t size,
                            size_t records, size_t record_bytes, int codec_id)
{
    cd_message *first = NULL, **link = &first;
    size_t offset = CD_ENVELOPE_HEADER_SIZE;

    if (!make_room(r, records, record_bytes, size))
        return FALSE;
    while (offset < size) {
        uint64_t tag;
        uint32_t length;
        memcpy(&tag, frame + offset, 8);
        memcpy(&length, frame + offset + 8, 4);
        offset += CD_BATCH_RECORD_HEADER_SIZE;
        *link = copy_message(tag, wparam, frame + offset, length, codec_id);
        if (*link == NULL) {
            cd_messages_free(first);
            refuse(r, &r->stats.refused_queue_full, size);
            return FALSE;
        }
        link = &(*link)->next;
        offset += length;
    }
    append_all(r, first);
    return TRUE;
}

/* Takes a transfer out of the table; dropped: it will never complete. */
static void unlink_transfer(cd_receiver *r, cd_transfer **link, int dropped)
{
    cd_transfer *t = *link;

    *link = t->next;
    r->transfer_count--;
    r->transfer_bytes -= t->message->size;
    AcquireSRWLockExclusive(&r->lock);
    r->stats.assembling_messages--;
    r->stats.assembling_bytes -= t->message->size;
    if (dropped) {
        r->stats.dropped_messages++;
        r->stats.dropped_bytes += t->received;
        r->stats.dropped_incomplete++;
    }
    ReleaseSRWLockExclusive(&r->lock);
}

static void drop_transfer(cd_receiver *r, cd_transfer **link)
{
    cd_transfer *t = *link;

    unlink_transfer(r, link, 1);
    free(t->message);
    free(t);
}

static void drop_stale_transfers(cd_receiver *r, ULONGLONG now)
{
    cd_transfer **link = &r->transfers;
    while (*link) {
        if (now - (*link)->last_part_ms >= r->config.part_timeout_ms)
            drop_transfer(r, link);
        else
            link = &(*link)->next;
    }
}

static cd_transfer **find_transfer(cd_receiver *r, uint64_t sender, uint64_t transfer_id)
{
    cd_transfer **link = &r->transfers;
    while (*link && ((*link)->sender != sender || (*link)->transfer_id != transfer_id))
        link = &(*link)->next;
    return link;
}

/* One part of a split message (already checked by cd_part_check). Parts come in order; the
 * message is queued when its last part arrives, or refused then, whole, until it fits. */
static LRESULT accept_part(cd_receiver *r, WPARAM wparam, uint64_t tag, size_t size, const cd_part *part)
{
    ULONGLONG now = GetTickCount64();
    cd_transfer **link, *t;
    int complete;

    drop_stale_transfers(r, now);
    link = find_transfer(r, (uint64_t)wparam, part->transfer_id);
    if (part->offset == 0) {
        if (*link)
            drop_transfer(r, link); /* begun again: the earlier attempt can never complete */
        if (part->total > r->config.max_transfer_size) {
            refuse(r, &r->stats.refused_too_large, size);
            return FALSE;
        }
        if (r->transfer_count >= CD_MAX_TRANSFERS || part->total > r->config.max_queue_bytes - r->transfer_bytes) {
            refuse(r, &r->stats.refused_queue_full, size);
            return FALSE;
        }
        t = (cd_transfer *)calloc(1, sizeof *t);
        if (t == NULL || (t->message = new_message(tag, wparam, (size_t)part->total, part->codec_id)) == NULL) {
            free(t);
            refuse(r, &r->stats.refused_queue_full, size);
            return FALSE;
        }
        t->sender = (uint64_t)wparam;
        t->transfer_id = part->transfer_id;
        t->next = r->transfers;
        r->transfers = t;
        r->transfer_count++;
        r->transfer_bytes += (size_t)part->total;
        AcquireSRWLockExclusive(&r->lock);
        r->stats.assembling_messages++;
        r->stats.assembling_bytes += part->total;
        ReleaseSRWLockExclusive(&r->lock);
        link = &r->transfers;
    } else {
        t = *link;
        if (t == NULL || part->offset != t->received || part->total != t->message->size
            || part->codec_id != t->message->codec_id || tag != t->message->tag) {
            if (t)
                drop_transfer(r, link);
            refuse(r, &r->stats.refused_malformed, size);
            return FALSE;
        }
    }
    t = *link;
    complete = t->received + part->length == t->message->size;
    if (complete && !make_room(r, 1, t->message->size, size))
        return FALSE; /* the sender offers this last part again */
    memcpy((char *)t->message->data + part->offset, part->data, part->length);
    t->received += part->length;
    t->last_part_ms = now;
    if (complete) {
        unlink_transfer(r, link, 0);
        append_all(r, t->message);
        free(t);
    }
    return TRUE;
}

/* A message in a section of the sender's (already checked by cd_section_check): copied out
 * whole before the sender is answered, so it may reuse the section at once. */
static LRESULT accept_section(cd_receiver *r, WPARAM wparam, uint64_t tag, size_t size,
                              const cd_section_descriptor *descriptor)
{
    cd_message *m;

    if (descriptor->length > r->config.max_transfer_size) {
        refuse(r, &r->stats.refused_too_large, size);
        return FALSE;
    }
    if (!make_room(r, 1, (size_t)descriptor->length, size))
        return FALSE;
    m = new_message(tag, wparam, (size_t)descriptor->length, descriptor->codec_id);
    if (m == NULL) {
        refuse(r, &r->stats.refused_queue_full, size);
        return FALSE;
    }
    if (cd_section_copy(descriptor, r->user_sid, (void *)m->data) != CD_OK) {
        free(m);
        refuse(r, &r->stats.refused_section, size);
        return FALSE;
    }
    append_all(r, m);
    return TRUE;
}

static LRESULT accept_copydata(cd_receiver *r, WPARAM wparam, const COPYDATASTRUCT *cds)
{
    cd_message *m;
    size_t size, records, record_bytes;
    int batch = 0, codec_id;   /* 0 plain, 1 batch, 2 part, 3 section descriptor, negative malformed */
    cd_part part;
    cd_section_descriptor section;

    if (cds == NULL) {
        refuse(r, &r->stats.refused_malformed, 0);
        return FALSE;
    }
    size = cds->cbData;
    if (size != 0 && cds->lpData == NULL) {
        refuse(r, &r->stats.refused_malformed, size);
        return FALSE;
    }
    if (size > r->config.max_message_size) {
        refuse(r, &r->stats.refused_too_large, size);
        return FALSE;
    }
    if (r->config.unpack_batches) {
        batch = cd_batch_check((const unsigned char *)cds->lpData, size, &records, &record_bytes, &codec_id);
        if (batch == 0)
            batch = 2 * cd_part_check((const unsigned char *)cds->lpData, size, &part);
        if (batch == 0)
            batch = 3 * cd_section_check((const unsigned char *)cds->lpData, size, &section);
    }
    if (batch < 0) {
        refuse(r, &r->stats.refused_malformed, size);
        return FALSE;
    }
    if (batch > 0 && r->config.sync) {
        refuse(r, &r->stats.refused_batch_in_sync_mode, size);
        return FALSE;
    }
    if (r->config.sync)
        return hand_over_and_wait(r, wparam, cds);
    if (batch == 3)
        return accept_section(r, wparam, (uint64_t)cds->dwData, size, &section);
    if (batch == 2)
        return accept_part(r, wparam, (uint64_t)cds->dwData, size, &part);
    if (batch == 1)
        return accept_batch(r, wparam, (const unsigned char *)cds->lpData, size, records, record_bytes, codec_id);

    if (!make_room(r, 1, size, size))
        return FALSE;
    m = copy_message((uint64_t)cds->dwData, wparam, cds->lpData, size, CD_NO_CODEC);
    if (m == NULL) {
        refuse(r, &r->stats.refused_queue_full, size);
        return FALSE;
    }
    append_all(r, m);
    return TRUE;
}

static LRESULT CALLBACK receiver_window_proc(HWND hwnd, UINT msg, WPARAM wparam, LPARAM lparam)
{
    cd_receiver *r = (cd_receiver *)GetWindowLongPtrW(hwnd, GWLP_USERDATA);
    int stopping;

    switch (msg) {
    case WM_NCCREATE:
        SetWindowLongPtrW(hwnd, GWLP_USERDATA, (LONG_PTR)((CREATESTRUCTW *)lparam)->lpCreateParams);
        break;
    case WM_COPYDATA:
        return r ? accept_copydata(r, wparam, (const COPYDATASTRUCT *)lparam) : FALSE;
    case WM_CLOSE:
        /* Any process can post WM_CLOSE to a window; only our own close may end this one. */
        if (r) {
            AcquireSRWLockShared(&r->lock);
            stopping = r->stopping;
            ReleaseSRWLockShared(&r->lock);
            if (stopping)
                DestroyWindow(hwnd);
        }
        return 0;
    case WM_TIMER:
        /* Anyone may post WM_TIMER; all it can cause is an early sweep. */
        if (r && wparam == PART_SWEEP_TIMER)
            drop_stale_transfers(r, GetTickCount64());
        return 0;
    case WM_DESTROY:
        PostQuitMessage(0);
        return 0;
    }
    return DefWindowProcW(hwnd, msg, wparam, lparam);
}

static HINSTANCE this_module(void)
{
    HMODULE module = NULL;
    GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                       (LPCWSTR)(void *)receiver_window_proc, &module);
    return module;
}

static HWND create_receiver_window(cd_receiver *r, DWORD *error)
{
    WNDCLASSEXW wc;
    HINSTANCE instance = this_module();
    HWND hwnd;

    memset(&wc, 0, sizeof wc);
    wc.cbSize = sizeof wc;
    wc.lpfnWndProc = receiver_window_proc;
    wc.hInstance = instance;
    wc.lpszClassName = CD_CLASS_NAME;
    if (!RegisterClassExW(&wc) && GetLastError() != ERROR_CLASS_ALREADY_EXISTS) {
        *error = GetLastError();
        return NULL;
    }
    hwnd = CreateWindowExW(0, CD_CLASS_NAME, NULL, 0, 0, 0, 0, 0, HWND_MESSAGE, NULL, instance, r);
    if (hwnd == NULL) {
        *error = GetLastError();
        return NULL;
    }
    if (r->config.allow_lower_integrity && !ChangeWindowMessageFilterEx(hwnd, WM_COPYDATA, MSGFLT_ALLOW, NULL)) {
        *error = GetLastError();
        DestroyWindow(hwnd);
        return NULL;
    }
    return hwnd;
}

static DWORD WINAPI pump_thread(LPVOID parameter)
{
    cd_receiver *r = (cd_receiver *)parameter;
    DWORD error = 0;
    HWND hwnd = create_receiver_window(r, &error);
    MSG msg;
    BOOL got;

    AcquireSRWLockExclusive(&r->lock);
    r->hwnd = hwnd;
    r->open_error = error;
    r->window_state = hwnd ? 1 : -1;
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);
    if (hwnd == NULL)
        return 1;
    if (r->config.unpack_batches)
        SetTimer(hwnd, PART_SWEEP_TIMER, PART_SWEEP_INTERVAL_MS, NULL);

    while ((got = GetMessageW(&msg, NULL, 0, 0)) != 0) {
        if (got == -1) {
            /* Counted for Python to log; the window must go on serving. */
            AcquireSRWLockExclusive(&r->lock);
            r->stats.pump_errors++;
            ReleaseSRWLockExclusive(&r->lock);
            Sleep(1);
            continue;
        }
        DispatchMessageW(&msg);
    }
    return 0;
}

int cd_receiver_open(const cd_receiver_config *config, cd_receiver **receiver, uint32_t *win32_error)
{
    cd_receiver *r;

    *receiver = NULL;
    *win32_error = 0;
    if (config->max_queue_messages == 0 || config->max_message_size > MAXDWORD
        || config->max_message_size > config->max_queue_bytes
        || config->max_transfer_size > config->max_queue_bytes || config->part_timeout_ms == 0)
        return CD_INVALID;
    r = (cd_receiver *)calloc(1, sizeof *r);
    if (r == NULL)
        return CD_NO_MEMORY;
    r->config = *config;
    r->user_sid = cd_current_user_sid();
    if (r->user_sid == NULL) {
        *win32_error = GetLastError();
        free(r);
        return CD_WIN32_ERROR;
    }
    InitializeSRWLock(&r->lock);
    InitializeConditionVariable(&r->changed);

    r->thread = CreateThread(NULL, 0, pump_thread, r, 0, &r->thread_id);
    if (r->thread == NULL) {
        *win32_error = GetLastError();
        cd_free_sid(r->user_sid);
        free(r);
        return CD_WIN32_ERROR;
    }
    AcquireSRWLockExclusive(&r->lock);
    while (r->window_state == 0)
        SleepConditionVariableSRW(&r->changed, &r->lock, INFINITE, 0);
    ReleaseSRWLockExclusive(&r->lock);
    if (r->window_state < 0) {
        WaitForSingleObject(r->thread, INFINITE);
        CloseHandle(r->thread);
        *win32_error = r->open_error;
        cd_free_sid(r->user_sid);
        free(r);
        return CD_WIN32_ERROR;
    }
    *receiver = r;
    return CD_OK;
}

uint64_t cd_receiver_hwnd(const cd_receiver *receiver)
{
    return (uint64_t)(uintptr_t)receiver->hwnd;
}

int cd_receiver_take(cd_receiver *r, size_t max_count, uint32_t timeout_ms, cd_message **first)
{
    ULONGLONG start = GetTickCount64();
    cd_message *last;
    size_t count;

    *first = NULL;
    if (max_count == 0)
        return CD_INVALID;
    if (r->config.sync)
        max_count = 1;
    AcquireSRWLockExclusive(&r->lock);
    while (r->head == NULL) {
        DWORD wait = CD_WAIT_FOREVER;
        if (r->closed) {
            ReleaseSRWLockExclusive(&r->lock);
            return CD_CLOSED;
        }
        if (timeout_ms != CD_WAIT_FOREVER) {
            ULONGLONG elapsed = GetTickCount64() - start;
            if (elapsed >= timeout_ms) {
                ReleaseSRWLockExclusive(&r->lock);
                return CD_TIMEOUT;
            }
            wait = (DWORD)(timeout_ms - elapsed);
        }
        SleepConditionVariableSRW(&r->changed, &r->lock, wait, 0);
    }
    last = r->head;
    last->taken = 1;
    r->stats.queued_bytes -= last->size;
    for (count = 1; count < max_count && last->next; count++) {
        last = last->next;
        last->taken = 1;
        r->stats.queued_bytes -= last->size;
    }
    r->stats.queued_messages -= count;
    *first = r->head;
    r->head = last->next;
    if (r->head == NULL)
        r->tail = NULL;
    last->next = NULL;
    ReleaseSRWLockExclusive(&r->lock);
    return CD_OK;
}

void cd_messages_free(cd_message *first)
{
    while (first) {
        cd_message *next = first->next;
        free(first);
        first = next;
    }
}

void cd_receiver_reply(cd_receiver *r, cd_message *message, intptr_t result)
{
    AcquireSRWLockExclusive(&r->lock);
    message->result = result;
    message->replied = 1;
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);
    /* The window procedure may return now, and message with it: do not touch it again. */
}

void cd_receiver_stats(cd_receiver *r, cd_stats *stats)
{
    AcquireSRWLockShared(&r->lock);
    *stats = r->stats;
    ReleaseSRWLockShared(&r->lock);
}

void cd_receiver_close(cd_receiver *r)
{
    HANDLE thread;
    HWND hwnd;

    AcquireSRWLockExclusive(&r->lock);
    r->stopping = 1;
    thread = r->thread;
    hwnd = r->hwnd;
    r->thread = NULL;
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);

    if (thread) {
        if (!PostMessageW(hwnd, WM_CLOSE, 0, 0))
            PostThreadMessageW(r->thread_id, WM_QUIT, 0, 0);
        WaitForSingleObject(thread, INFINITE);
        CloseHandle(thread);
    }
    /* The pump thread has ended: incomplete split messages can never complete now. */
    while (r->transfers)
        drop_transfer(r, &r->transfers);

    AcquireSRWLockExclusive(&r->lock);
    r->closed = 1;
    r->hwnd = NULL;
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);
}

void cd_receiver_discard(cd_receiver *r)
{
    cd_message *first;

    AcquireSRWLockExclusive(&r->lock);
    first = r->head;
    r->head = r->tail = NULL;
    r->stats.dropped_messages += r->stats.queued_messages;
    r->stats.dropped_bytes += r->stats.queued_bytes;
    r->stats.queued_messages = 0;
    r->stats.queued_bytes = 0;
    ReleaseSRWLockExclusive(&r->lock);
    /* Sync-mode messages live on the pump thread's stack and are gone once it has ended. */
    if (!r->config.sync)
        cd_messages_free(first);
}

void cd_receiver_free(cd_receiver *r)
{
    if (r == NULL)
        return;
    cd_receiver_close(r);
    cd_receiver_discard(r);
    cd_free_sid(r->user_sid);
    free(r);
}
