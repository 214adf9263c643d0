/*
 * A receiver is a message-only window owned by a pump thread of its own. Its window
 * procedure copies each WM_COPYDATA payload into a bounded queue and returns at once, so a
 * sender is released as soon as its bytes are safe; Python takes the queue in batches.
 * In sync mode the window procedure instead waits until Python has answered the message.
 *
 * This file owns the window: its procedure, which checks a payload (and its seal, with a key)
 * and dispatches it to the queue (queue.c), the parts (parts.c) or the shared-memory reader
 * (shm_reader.c); the pump thread and what is posted to it; and open and close.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

#define PART_SWEEP_TIMER 1
#define PART_SWEEP_INTERVAL_MS 1000

/* What a payload is, its headers checked; frame holds what they say. A receiver that unpacks
 * no batches takes every payload as it is. */
static enum frame_kind classify(const cd_receiver *r, const arrival *a, const unsigned char *data,
                                checked_frame *frame)
{
    cd_seal seal;
    int found;

    frame->data = data;
    frame->size = a->size;
    frame->in_section = 0;
    if (!r->config.unpack_batches)
        return FRAME_PLAIN;
    /* A seal is taken off before this, by a receiver with a key; none can open another. */
    if (!r->config.pass_sealed && cd_seal_check(data, a->size, &seal) != 0)
        return FRAME_SEALED;
    if ((found = cd_batch_check(data, a->size, &frame->records, &frame->record_bytes, &frame->codec_id)) != 0)
        return found > 0 ? FRAME_BATCH : FRAME_MALFORMED;
    if ((found = cd_part_check(data, a->size, &frame->part)) != 0)
        return found > 0 ? FRAME_PART : FRAME_MALFORMED;
    if ((found = cd_section_check(data, a->size, &frame->section)) != 0)
        return found > 0 ? FRAME_SECTION : FRAME_MALFORMED;
    return FRAME_PLAIN;
}

/* A payload whose seal (if the receiver has a key) is already checked and taken off. In queue
 * mode it goes into the queue; in sync mode Python answers it before the sender is released,
 * and a split message is refused, as it would have to be put together first, in a queue that
 * sync mode does not have. */
static LRESULT accept_payload(cd_receiver *r, const arrival *a, const unsigned char *data)
{
    const int sync = r->config.sync;
    checked_frame frame;

    switch (classify(r, a, data, &frame)) {
    case FRAME_PLAIN:
        return sync ? cd__hand_over_plain(r, a, data) : cd__accept_plain(r, a, data);
    case FRAME_BATCH:
        return sync ? cd__hand_over_batch(r, a, &frame, NULL) : cd__accept_batch(r, a, &frame, NULL, 0);
    case FRAME_PART:
        return sync ? cd__refuse_part(r, a) : cd__accept_part(r, a, &frame.part, 0);
    case FRAME_SECTION:
        return sync ? cd__hand_over_section(r, a, &frame.section) : cd__accept_section(r, a, &frame.section);
    case FRAME_SEALED:
        return cd__refuse(r, CD_REASON_UNAUTHENTICATED, a);
    case FRAME_MALFORMED:
    default:
        return cd__refuse(r, CD_REASON_MALFORMED, a);
    }
}

/* A receiver with a key: the frame must be sealed with it, for this window and tag, and new. */
static LRESULT accept_sealed(cd_receiver *r, const arrival *a, const unsigned char *frame)
{
    ULONGLONG now = GetTickCount64();
    arrival inner = *a;
    cd_seal seal;
    LRESULT result;
    int verdict;

    if (cd_seal_check(frame, a->size, &seal) != 1
        || !cd_mac_verify(r->seals.mac, (uint64_t)(uintptr_t)r->window.hwnd, a->tag, frame, &seal))
        return cd__refuse(r, CD_REASON_UNAUTHENTICATED, a);
    verdict = cd_replay_check(&r->seals.replay, &seal, now);
    if (verdict != CD_REPLAY_NEW)
        return cd__refuse(r, CD_REASON_REPLAYED, a);
    inner.size = seal.inner_size;
    if (r->config.sync) {
        /* The callback runs on it, whatever it answers: it must not run twice. */
        if (cd_replay_record(&r->seals.replay, &seal, now) != CD_OK)
            return cd__refuse(r, CD_REASON_QUEUE_FULL, a);  /* no memory: it may be offered again */
        return accept_payload(r, &inner, seal.inner);
    }
    /* Only an accepted frame counts as seen (a refused one may be offered again), and a frame
     * is accepted only once its record is sure to fit: never queued yet replayable. */
    if (cd_replay_reserve(&r->seals.replay, &seal, now) != CD_OK)
        return cd__refuse(r, CD_REASON_QUEUE_FULL, a);
    result = accept_payload(r, &inner, seal.inner);
    if (result != FALSE && result != CD_ANSWER_NEVER_FITS)  /* (the one nonzero refusal in queue mode) */
        cd_replay_record(&r->seals.replay, &seal, now);
    return result;
}

/* A WM_COPYDATA, before any of its bytes is trusted. */
static LRESULT accept_copydata(cd_receiver *r, WPARAM wparam, const COPYDATASTRUCT *cds)
{
    arrival a;

    a.tag = cds ? (uint64_t)cds->dwData : 0;
    a.sender = (uint64_t)wparam;
    a.size = cds ? cds->cbData : 0;
    if (cds == NULL || (a.size != 0 && cds->lpData == NULL))
        return cd__refuse(r, CD_REASON_MALFORMED, &a);
    if (a.size > r->config.max_message_size)
        return cd_is_sender_frame((const unsigned char *)cds->lpData, a.size) ? cd__refuse_never_fits(r, &a)
                                                                               : cd__refuse(r, CD_REASON_TOO_LARGE, &a);
    if (r->seals.mac)
        return accept_sealed(r, &a, (const unsigned char *)cds->lpData);
    return accept_payload(r, &a, (const unsigned char *)cds->lpData);
}

static void wake_takers(cd_receiver *r)
{
    if (r->queue.unannounced) {
        r->queue.unannounced = 0;
        WakeAllConditionVariable(&r->changed);
    }
}

/* WM_COPYDATA: accepted (or refused), the sender answered, and the takers woken. */
static LRESULT take_copydata(cd_receiver *r, WPARAM wparam, const COPYDATASTRUCT *cds)
{
    LRESULT result;

    if (r->window.phase != WINDOW_LIVE)
        return FALSE;
    result = accept_copydata(r, wparam, cds);
    if (r->queue.unannounced) {
        /* The payload is safe in the queue: release the sender before the wake-up of a
         * taker, which it need not wait for. */
        ReplyMessage(result);
        wake_takers(r);
    }
    return result;
}

/* Which receiver the window procedure serves: the one whose pump thread it runs on. It is kept
 * in thread-local storage, never in the window (GWLP_USERDATA, WM_NCCREATE's lpCreateParams),
 * which any process of the desktop can write to or forge. */
static INIT_ONCE receiver_slot_once = INIT_ONCE_STATIC_INIT;
static DWORD receiver_slot = TLS_OUT_OF_INDEXES;

static BOOL CALLBACK allocate_receiver_slot(PINIT_ONCE once, PVOID parameter, PVOID *context)
{
    (void)once;
    (void)parameter;
    (void)context;
    receiver_slot = TlsAlloc();
    return receiver_slot != TLS_OUT_OF_INDEXES;
}

/* Posted WM_TIMER of the part sweep: what it frees is only what is stale anyway, so a forged one
 * (anyone can post WM_TIMER) can only make the sweep early. */
static void sweep(cd_receiver *r)
{
    ULONGLONG now = GetTickCount64();

    cd__parts_sweep(r, now);
    cd__shm_sweep(r, now);
    if (r->pool)
        cd__pool_sweep(r->pool, now);
}

/* A message taken from the pump thread's queue. Anyone can post anything to the window or the
 * thread: only the ring announcement and the sweep timer mean something, and nothing posted is
 * ever dispatched (a WM_TIMER's lParam would be called as a TIMERPROC). */
static void take_posted(cd_receiver *r, const MSG *msg)
{
    if (msg->hwnd != r->window.hwnd)
        return;
    if (msg->message == WM_TIMER && msg->wParam == PART_SWEEP_TIMER) {
        sweep(r);
    } else if (msg->message != 0 && msg->message == r->shm.ring_message) {
        cd__take_announced(r, (uint64_t)msg->wParam, (uint64_t)msg->lParam);
        wake_takers(r);
    }
}

/* The window's end, once our own close has begun: any process can post or send WM_CLOSE to a
 * window, or WM_DESTROY and WM_QUIT, and none of those ends this one. */
static void destroy_if_closing(cd_receiver *r, HWND hwnd)
{
    int stopping;

    AcquireSRWLockShared(&r->lock);
    stopping = r->window.stopping;
    ReleaseSRWLockShared(&r->lock);
    if (!stopping || r->window.phase != WINDOW_LIVE)
        return;
    r->window.phase = WINDOW_DESTROYING;
    DestroyWindow(hwnd);
    r->window.phase = WINDOW_DESTROYED;
    PostQuitMessage(0);
}

static LRESULT CALLBACK receiver_window_proc(HWND hwnd, UINT msg, WPARAM wparam, LPARAM lparam)
{
    cd_receiver *r = (cd_receiver *)TlsGetValue(receiver_slot);

    if (r == NULL)  /* not on a pump thread: no window of this class lives there */
        return DefWindowProcW(hwnd, msg, wparam, lparam);
    switch (msg) {
    case WM_COPYDATA:
        return take_copydata(r, wparam, (const COPYDATASTRUCT *)lparam);
    case WM_CLOSE:
        destroy_if_closing(r, hwnd);
        return 0;
    default:
        /* What Windows itself sends while it creates or destroys the window comes from this
         * thread; the same messages from elsewhere (WM_NCCREATE, WM_DESTROY, WM_SETTEXT, ...)
         * are answered 0 and change nothing. */
        if (r->window.phase != WINDOW_LIVE && InSendMessageEx(NULL) == ISMEX_NOSEND)
            return DefWindowProcW(hwnd, msg, wparam, lparam);
        return 0;
    }
}

/* The module this code is in, named by an address inside it: a variable's, as ISO C converts no
 * function pointer to an object pointer. */
static HINSTANCE this_module(void)
{
    HMODULE module = NULL;
    GetModuleHandleExW(GET_MODULE_HANDLE_EX_FLAG_FROM_ADDRESS | GET_MODULE_HANDLE_EX_FLAG_UNCHANGED_REFCOUNT,
                       (LPCWSTR)(const void *)&receiver_slot, &module);
    return module;
}

static HWND create_receiver_window(cd_receiver *r, DWORD *error)
{
    WNDCLASSEXW wc;
    HINSTANCE instance = this_module();
    HWND hwnd;

    if (!InitOnceExecuteOnce(&receiver_slot_once, allocate_receiver_slot, NULL, NULL)
        || !TlsSetValue(receiver_slot, r)) {
        *error = GetLastError();
        return NULL;
    }
    memset(&wc, 0, sizeof wc);
    wc.cbSize = sizeof wc;
    wc.lpfnWndProc = receiver_window_proc;
    wc.hInstance = instance;
    wc.lpszClassName = CD_CLASS_NAME;
    if (!RegisterClassExW(&wc) && GetLastError() != ERROR_CLASS_ALREADY_EXISTS) {
        *error = GetLastError();
        return NULL;
    }
    r->window.phase = WINDOW_CREATING;
    hwnd = CreateWindowExW(0, CD_CLASS_NAME, NULL, 0, 0, 0, 0, 0, HWND_MESSAGE, NULL, instance, NULL);
    if (hwnd == NULL) {
        *error = GetLastError();
        return NULL;
    }
    r->shm.ring_message = RegisterWindowMessageW(CD_RING_MESSAGE);  /* 0: no ring is ever armed */
    if (r->config.allow_lower_integrity
        && (!ChangeWindowMessageFilterEx(hwnd, WM_COPYDATA, MSGFLT_ALLOW, NULL)
            || (r->shm.ring_message != 0 && !ChangeWindowMessageFilterEx(hwnd, r->shm.ring_message, MSGFLT_ALLOW, NULL)))) {
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
    r->window.hwnd = hwnd;
    r->window.open_error = error;
    r->window.state = hwnd ? 1 : -1;
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);
    if (hwnd == NULL)
        return 1;
    r->window.phase = WINDOW_LIVE;
    if (r->config.unpack_batches)
        SetTimer(hwnd, PART_SWEEP_TIMER, PART_SWEEP_INTERVAL_MS, NULL);

    /* Only the window's destruction, in our own close, ends the pump: a WM_QUIT may come from
     * anyone (PostMessage, PostThreadMessage) and is ignored until then. */
    while (r->window.phase != WINDOW_DESTROYED) {
        got = GetMessageW(&msg, NULL, 0, 0);
        if (got == -1) {
            /* Counted for Python to log; the window must go on serving. */
            AcquireSRWLockExclusive(&r->lock);
            r->stats.pump_errors++;
            ReleaseSRWLockExclusive(&r->lock);
            Sleep(1);
        } else if (got != 0) {
            take_posted(r, &msg);
        }
    }
    return 0;
}

/* A receiver whose open failed: it never had a window, a queue or a pool. */
static void free_unopened(cd_receiver *r)
{
    cd_free_sid(r->shm.user_sid);  /* NULL-safe */
    cd_mac_close(r->seals.mac);
    free(r);
}

int cd_receiver_open(const cd_receiver_config *config, cd_receiver **receiver, uint32_t *win32_error)
{
    cd_receiver *r;
    int status;

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
    r->config.key = NULL;  /* the key lives in r->seals.mac only */
    r->config.key_size = 0;
    if (config->key != NULL && (status = cd_mac_open(config->key, config->key_size, &r->seals.mac)) != CD_OK) {
        *win32_error = GetLastError();
        free_unopened(r);
        return status;
    }
    r->shm.user_sid = cd_current_user_sid();
    if (r->shm.user_sid == NULL) {
        *win32_error = GetLastError();
        free_unopened(r);
        return CD_WIN32_ERROR;
    }
    InitializeSRWLock(&r->lock);
    InitializeConditionVariable(&r->changed);

    r->window.thread = CreateThread(NULL, 0, pump_thread, r, 0, &r->window.thread_id);
    if (r->window.thread == NULL) {
        *win32_error = GetLastError();
        free_unopened(r);
        return CD_WIN32_ERROR;
    }
    AcquireSRWLockExclusive(&r->lock);
    while (r->window.state == 0)
        SleepConditionVariableSRW(&r->changed, &r->lock, INFINITE, 0);
    ReleaseSRWLockExclusive(&r->lock);
    if (r->window.state < 0) {
        WaitForSingleObject(r->window.thread, INFINITE);
        CloseHandle(r->window.thread);
        *win32_error = r->window.open_error;
        free_unopened(r);
        return CD_WIN32_ERROR;
    }
    *receiver = r;
    return CD_OK;
}

uint64_t cd_receiver_hwnd(const cd_receiver *receiver)
{
    return (uint64_t)(uintptr_t)receiver->window.hwnd;
}

void cd_receiver_close(cd_receiver *r)
{
    HANDLE thread;
    HWND hwnd;

    AcquireSRWLockExclusive(&r->lock);
    r->window.stopping = 1;
    thread = r->window.thread;
    hwnd = r->window.hwnd;
    r->window.thread = NULL;
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);

    if (thread) {
        /* Sent, not posted, so that no flood of posted messages keeps it out of the queue. */
        while (!SendNotifyMessageW(hwnd, WM_CLOSE, 0, 0) && WaitForSingleObject(thread, 10) == WAIT_TIMEOUT)
            continue;
        WaitForSingleObject(thread, INFINITE);
        CloseHandle(thread);
    }
    /* The pump thread has ended: incomplete split messages can never complete now. */
    cd__parts_close(r);
    cd__shm_close(r);
    if (r->pool)
        cd__pool_close(r->pool);

    AcquireSRWLockExclusive(&r->lock);
    r->window.closed = 1;
    r->window.hwnd = NULL;
    WakeAllConditionVariable(&r->changed);
    ReleaseSRWLockExclusive(&r->lock);
}

void cd_receiver_discard(cd_receiver *r)
{
    cd_message *first;

    AcquireSRWLockExclusive(&r->lock);
    first = r->queue.head;
    r->queue.head = r->queue.tail = NULL;
    r->stats.dropped_messages += r->stats.queued_messages;
    r->stats.dropped_bytes += r->stats.queued_bytes;
    r->stats.queued_messages = 0;
    r->stats.queued_bytes = 0;
    r->refusals.ended = 1;
    WakeAllConditionVariable(&r->changed);
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
    cd_free_sid(r->shm.user_sid);
    cd_mac_close(r->seals.mac);
    cd_replay_release(&r->seals.replay);
    if (r->pool)
        cd__pool_release(r->pool);
    free(r);
}

