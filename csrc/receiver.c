/*
 * A receiver is a message-only window owned by a pump thread of its own. Its window
 * procedure copies each WM_COPYDATA payload into a bounded queue and returns at once, so a
 * sender is released as soon as its bytes are safe; Python takes the queue in batches.
 * In sync mode the window procedure instead waits until Python has answered the message.
 */
#include "win32.h"
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "copydata.h"

/* A message arriving in parts: its memory grows as its parts arrive (what it claims to be is
 * only a bound), and it is queued at its last part. */
typedef struct cd_transfer {
    struct cd_transfer *next;
    uint64_t sender;
    uint64_t transfer_id;
    uint64_t total;        /* the size its first part announced */
    uint64_t received;
    size_t reserved;       /* the bytes its message can hold now: what it counts against the budget */
    ULONGLONG last_part_ms;
    cd_message *message;
} cd_transfer;
/* The first block of a split message, and how long a transfer may wait for its next part before
 * another one that needs its room or its slot takes them (a Sender sends parts back to back). */
#define TRANSFER_FIRST_BLOCK ((size_t)64 << 10)
#define TRANSFER_IDLE_MS 1000

/* What the window procedure knows of a WM_COPYDATA before it trusts any of its bytes. */
typedef struct arrival {
    uint64_t tag;      /* dwData */
    uint64_t sender;   /* wParam */
    size_t size;       /* cbData */
} arrival;

/* A mapping of a sender's section, shared by the receiver's cache, the views Python keeps
 * (sync mode) and the leases on it (queue mode): the last reference unmaps it. */
typedef struct kept_section {
    const unsigned char *view;
    LONG references;
} kept_section;

/* A sender's section, kept mapped while it goes on using it: mapping it afresh for every
 * message costs more than the copy out of it, for messages of a few MiB. */
typedef struct mapped_section {
    uint16_t name[CD_MAX_SECTION_NAME + 1];
    const unsigned char *view;   /* NULL: a free slot */
    kept_section *mapping;       /* the slot's reference to the view */
    uint64_t size;
    int writable;                /* the view can take release words: leases are possible */
    ULONGLONG used_ms;
} mapped_section;
#define MAPPED_SECTIONS 4

/* Queue mode: a frame's large records, queued where they lie in the sender's section (see
 * CD_KIND_SECTION). Each such message holds a reference; once the last one is freed, the
 * lease id goes into the sender's release word, and the sender may write there again. */
struct cd_lease {
    kept_section *mapping;
    volatile LONG64 *release_word;
    uint64_t id;
    LONG references;
};

/* Sync mode: the section a frame's records are handed over from. Once Python keeps a view of
 * one, the mapping leaves the receiver's cache (slot NULL) for kept, shared by the others. */
typedef struct handed_section {
    mapped_section *slot;
    kept_section *kept;
} handed_section;
#define MAPPED_SECTION_IDLE_MS 1000

/* A sender's ring block (see CD_RING_SIZE): where it announces its next frame. */
typedef struct ring {
    uint64_t id;                 /* 0: a free slot */
    uint16_t name[CD_MAX_SECTION_NAME + 1];
    unsigned char secret[CD_SECTION_SECRET_SIZE];  /* of the descriptor that armed it */
    uint64_t offset;             /* of the block in the section */
    int codec_id;
    uint64_t sender;             /* the wParam of the descriptor that armed it */
    uint64_t next_lease;         /* the one lease id it may announce next */
    ULONGLONG used_ms;
} ring;

/* Blocks of large messages, kept for the next ones: copying into fresh memory costs a page
 * fault per page, several times the copy itself. Shared by a receiver and its messages,
 * which may outlive it (Python holds them with copy=False): the last one out frees it. */
typedef struct cd_pool {
    SRWLOCK lock;
    LONG references;
    int closed;           /* the receiver closed: keep nothing more */
    struct spare_block {
        cd_message *block;
        ULONGLONG freed_ms;
    } spares[8];
} cd_pool;
#define POOLED_MESSAGE_SIZE (1u << 20)
/* Two spare blocks of any size; more only while all of them hold at most this much (a frame
 * of several large messages needs a block for each). */
#define POOL_SPARE_BYTES ((size_t)32 << 20)
#define POOL_IDLE_MS 1000

/* Where the window is in its life: Windows' own messages of creation and destruction go to
 * DefWindowProcW, the same messages from anyone else at any other time change nothing. */
enum window_phase { WINDOW_CREATING, WINDOW_LIVE, WINDOW_DESTROYING, WINDOW_DESTROYED };

#define PART_SWEEP_TIMER 1
#define PART_SWEEP_INTERVAL_MS 1000

/* The window and its pump thread. */
typedef struct receiver_window {
    HWND hwnd;                    /* guarded by the lock */
    HANDLE thread;                /* guarded by the lock */
    DWORD thread_id;
    int state;                    /* 0 being created, 1 created, -1 creation failed: guarded by the lock */
    enum window_phase phase;      /* only the pump thread touches it */
    DWORD open_error;
    int stopping;                 /* close has begun: refuse new messages; WM_CLOSE destroys the window */
    int closed;                   /* the pump thread has ended: nothing more will be queued */
} receiver_window;

/* The messages waiting to be taken, in arrival order: head and tail guarded by the lock. */
typedef struct message_queue {
    cd_message *head;
    cd_message *tail;
    int unannounced;              /* pump thread only: messages were queued and the takers not yet woken */
} message_queue;

/* Split messages whose parts are still arriving: pump thread only. */
typedef struct transfer_table {
    cd_transfer *transfers;
    size_t count;
    size_t bytes;                 /* what they reserve, against max_queue_bytes */
} transfer_table;

/* What the receiver reads of senders' shared memory: pump thread only. */
typedef struct shm_reader {
    void *user_sid;               /* sections must be owned by this user */
    mapped_section mapped[MAPPED_SECTIONS];
    ring rings[CD_MAX_RINGS];
    UINT ring_message;            /* CD_RING_MESSAGE's number (0: none, so no ring is armed) */
} shm_reader;

/* A receiver with a key: only sealed frames are accepted. Pump thread only. */
typedef struct seal_check {
    cd_mac *mac;                  /* set: the receiver has a key */
    cd_replay replay;
} seal_check;

/* Refusals kept for on_error (config.report_refusals): a ring, then counts by reason. Guarded
 * by the lock. */
typedef struct refusal_log {
    cd_refusal ring[CD_REFUSAL_RING];
    size_t first;
    size_t count;
    cd_refusal merged[CD_REASON_COUNT];
    int ended;                    /* discarded: nothing more will be reported */
} refusal_log;

struct cd_receiver {
    cd_receiver_config config;
    SRWLOCK lock;                 /* guards the stats, and what each part below says */
    CONDITION_VARIABLE changed;   /* a message was queued, taken or answered; the window came or went */
    cd_stats stats;
    receiver_window window;
    message_queue queue;
    cd_pool *pool;                /* created with the first large message */
    transfer_table parts;
    shm_reader shm;
    seal_check seals;
    refusal_log refusals;
};

static uint64_t *reason_count(cd_receiver *r, int reason)
{
    switch (reason) {
    case CD_REASON_TOO_LARGE: return &r->stats.refused_too_large;
    case CD_REASON_QUEUE_FULL: return &r->stats.refused_queue_full;
    case CD_REASON_MALFORMED: return &r->stats.refused_malformed;
    case CD_REASON_CLOSING: return &r->stats.refused_closing;
    case CD_REASON_PARTS_IN_SYNC_MODE: return &r->stats.refused_parts_in_sync_mode;
    case CD_REASON_SECTION: return &r->stats.refused_section;
    case CD_REASON_UNAUTHENTICATED: return &r->stats.refused_unauthenticated;
    case CD_REASON_REPLAYED: return &r->stats.refused_replayed;
    default: return NULL;
    }
}

/* Keeps a refusal for on_error; the caller holds the lock. */
static void report(cd_receiver *r, int reason, const arrival *a)
{
    cd_refusal *kept;

    if (!r->config.report_refusals || r->refusals.ended || reason <= 0 || reason >= CD_REASON_COUNT)
        return;
    if (r->refusals.count < CD_REFUSAL_RING) {
        kept = &r->refusals.ring[(r->refusals.first + r->refusals.count++) % CD_REFUSAL_RING];
        kept->reason = reason;
        kept->tag = a->tag;
        kept->sender = a->sender;
        kept->size = a->size;
        kept->count = 1;
    } else {
        /* on_error has fallen behind: keep counting, by reason, without growing. */
        kept = &r->refusals.merged[reason];
        if (kept->count++ == 0) {
            kept->reason = reason;
            kept->tag = a->tag;
            kept->sender = a->sender;
        }
        kept->size += a->size;
    }
    WakeAllConditionVariable(&r->changed);
}

/* Counts a refused message and keeps it for on_error; the caller holds the lock. */
static void count_refusal(cd_receiver *r, int reason, const arrival *a)
{
    r->stats.refused_messages++;
    r->stats.refused_bytes += a->size;
    if (reason_count(r, reason))
        (*reason_count(r, reason))++;
    report(r, reason, a);
}

static LRESULT refuse(cd_receiver *r, int reason, const arrival *a)
{
    AcquireSRWLockExclusive(&r->lock);
    count_refusal(r, reason, a);
    ReleaseSRWLockExclusive(&r->lock);
    return FALSE;
}

/* A frame (or a split message) refused for its size alone, which no wait would change. */
static LRESULT refuse_never_fits(cd_receiver *r, const arrival *a)
{
    refuse(r, CD_REASON_TOO_LARGE, a);
    return CD_ANSWER_NEVER_FITS;
}

static void append(cd_receiver *r, cd_message *m)
{
    m->next = NULL;
    if (r->queue.tail)
        r->queue.tail->next = m;
    else
        r->queue.head = m;
    r->queue.tail = m;
    r->stats.received_messages++;
    r->stats.received_bytes += m->size;
    r->stats.queued_messages++;
    r->stats.queued_bytes += m->size;
    if (m->lease)
        r->stats.leased_messages++;
}

static void unlink_message(cd_receiver *r, cd_message *m)
{
    cd_message **link = &r->queue.head;
    cd_message *previous = NULL;
    while (*link && *link != m) {
        previous = *link;
        link = &(*link)->next;
    }
    if (*link == NULL)
        return;
    *link = m->next;
    if (r->queue.tail == m)
        r->queue.tail = previous;
    r->stats.queued_messages--;
    r->stats.queued_bytes -= m->size;
}

/* Sync mode: queue the sender's own bytes (or a section's) and wait until Python answers
 * them. Returns 1 with its answer, or 0 if Python never took them (the receiver is closing). */
static int hand_over_and_wait(cd_receiver *r, const arrival *a, const unsigned char *data, int codec_id,
                              void *section, LRESULT *answer)
{
    cd_message m;
    int answered;

    *answer = FALSE;
    memset(&m, 0, sizeof m);
    m.tag = a->tag;
    m.sender = a->sender;
    m.size = a->size;
    m.data = data ? (const char *)data : "";
    m.codec_id = codec_id;
    m.section = section;

    AcquireSRWLockExclusive(&r->lock);
    if (r->window.stopping) {
        count_refusal(r, CD_REASON_CLOSING, a);
        ReleaseSRWLockExclusive(&r->lock);
        return 0;
    }
    append(r, &m);
    WakeAllConditionVariable(&r->changed);
    while (!m.replied) {
        /* Once Python holds the message it must answer before m leaves this stack frame. */
        if (r->window.stopping && !m.taken) {
            unlink_message(r, &m);
            r->stats.dropped_messages++;
            r->stats.dropped_bytes += m.size;
            break;
        }
        SleepConditionVariableSRW(&r->changed, &r->lock, INFINITE, 0);
    }
    answered = m.replied;
    if (answered)
        *answer = (LRESULT)m.result;
    ReleaseSRWLockExclusive(&r->lock);
    return answered;
}

/* Whether count more messages of bytes in all may be queued now; refuses (and counts) if not.
 * Only the pump thread adds to the queue, so room seen here is still there after the copy. */
static int make_room(cd_receiver *r, size_t count, size_t bytes, const arrival *a)
{
    int stopping, full;

    AcquireSRWLockShared(&r->lock);
    stopping = r->window.stopping;
    full = count > r->config.max_queue_messages - r->stats.queued_messages
           || bytes > r->config.max_queue_bytes - r->stats.queued_bytes;
    ReleaseSRWLockShared(&r->lock);
    if (stopping)
        refuse(r, CD_REASON_CLOSING, a);
    else if (full)
        refuse(r, CD_REASON_QUEUE_FULL, a);
    return !stopping && !full;
}

static void pool_release(cd_pool *pool)
{
    size_t i;
    if (InterlockedDecrement(&pool->references) != 0)
        return;
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0]; i++)
        free(pool->spares[i].block);
    free(pool);
}

/* Frees spare blocks unused for idle_ms: a burst of large messages leaves nothing behind. */
static void pool_trim(cd_pool *pool, ULONGLONG now, ULONGLONG idle_ms)
{
    size_t i;
    AcquireSRWLockExclusive(&pool->lock);
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0]; i++) {
        if (pool->spares[i].block && now - pool->spares[i].freed_ms >= idle_ms) {
            free(pool->spares[i].block);
            pool->spares[i].block = NULL;
        }
    }
    ReleaseSRWLockExclusive(&pool->lock);
}

/* A spare block of at least capacity bytes (taken out of the pool), or NULL. */
static cd_message *pool_take(cd_pool *pool, size_t capacity)
{
    cd_message *block = NULL;
    size_t i;
    AcquireSRWLockExclusive(&pool->lock);
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0] && block == NULL; i++) {
        if (pool->spares[i].block && pool->spares[i].block->capacity >= capacity) {
            block = pool->spares[i].block;
            pool->spares[i].block = NULL;
        }
    }
    ReleaseSRWLockExclusive(&pool->lock);
    return block;
}

static void lease_release(cd_lease *lease)
{
    if (InterlockedDecrement(&lease->references) != 0)
        return;
    InterlockedExchange64(lease->release_word, (LONG64)lease->id);
    cd_kept_section_release(lease->mapping);
    free(lease);
}

static void release_message(cd_message *m)
{
    cd_pool *pool = m->pool;
    size_t i, count = 0, held = 0, empty = SIZE_MAX, smallest = SIZE_MAX;
    struct spare_block *slot = NULL;

    if (m->lease != NULL) {
        cd_lease *lease = m->lease;
        free(m);
        lease_release(lease);
        return;
    }
    if (pool == NULL) {
        free(m);
        return;
    }
    AcquireSRWLockExclusive(&pool->lock);
    for (i = 0; i < sizeof pool->spares / sizeof pool->spares[0]; i++) {
        cd_message *block = pool->spares[i].block;
        if (block == NULL) {
            empty = i;
            continue;
        }
        count++;
        held += block->capacity;
        if (smallest == SIZE_MAX || block->capacity < pool->spares[smallest].block->capacity)
            smallest = i;
    }
    /* Kept in an empty slot, or in place of a smaller block; never past the byte limit but for two. */
    if (pool->closed)
        slot = NULL;
    else if (empty != SIZE_MAX && (count < 2 || held + m->capacity <= POOL_SPARE_BYTES))
        slot = &pool->spares[empty];
    else if (smallest != SIZE_MAX && pool->spares[smallest].block->capacity < m->capacity
             && (count <= 2 || held - pool->spares[smallest].block->capacity + m->capacity <= POOL_SPARE_BYTES))
        slot = &pool->spares[smallest];
    if (slot != NULL) {
        free(slot->block);
        slot->block = m;
        slot->freed_ms = GetTickCount64();
        m = NULL;
    }
    ReleaseSRWLockExclusive(&pool->lock);
    free(m);
    pool_release(pool);
}

static cd_message *new_message(uint64_t tag, uint64_t sender, size_t size, int codec_id)
{
    cd_message *m = (cd_message *)malloc(sizeof *m + size);
    if (m == NULL)
        return NULL;
    memset(m, 0, sizeof *m);
    m->tag = tag;
    m->sender = sender;
    m->size = size;
    m->data = (const char *)(m + 1);
    m->codec_id = codec_id;
    return m;
}

/* new_message for parts and sections, whose large blocks come from and go back to the pool. */
static cd_message *new_large_message(cd_receiver *r, uint64_t tag, uint64_t sender, size_t size, int codec_id)
{
    cd_message *m;

    if (size < POOLED_MESSAGE_SIZE)
        return new_message(tag, sender, size, codec_id);
    if (r->pool == NULL) {
        r->pool = (cd_pool *)calloc(1, sizeof *r->pool);
        if (r->pool == NULL)
            return NULL;
        InitializeSRWLock(&r->pool->lock);
        r->pool->references = 1;  /* the receiver's own */
    }
    m = pool_take(r->pool, size);
    if (m == NULL) {
        m = (cd_message *)malloc(sizeof *m + size);
        if (m == NULL)
            return NULL;
        m->capacity = size;
    }
    m->next = NULL;
    m->tag = tag;
    m->sender = sender;
    m->size = size;
    m->data = (const char *)(m + 1);
    m->codec_id = codec_id;
    m->taken = m->replied = 0;
    m->result = 0;
    m->section = NULL;
    m->lease = NULL;
    m->pool = r->pool;
    InterlockedIncrement(&r->pool->references);
    return m;
}

/* A message whose bytes stay where they are, in a sender's section, under lease. */
static cd_message *leased_message(cd_lease *lease, uint64_t tag, uint64_t sender, const unsigned char *data,
                                  size_t size, int codec_id)
{
    cd_message *m = (cd_message *)calloc(1, sizeof *m);
    if (m == NULL)
        return NULL;
    m->tag = tag;
    m->sender = sender;
    m->size = size;
    m->data = (const char *)data;
    m->codec_id = codec_id;
    m->lease = lease;
    InterlockedIncrement(&lease->references);
    return m;
}

static cd_message *copy_message(uint64_t tag, uint64_t sender, const void *data, size_t size, int codec_id)
{
    cd_message *m = new_message(tag, sender, size, codec_id);
    if (m != NULL && size)
        memcpy(m + 1, data, size);
    return m;
}

/* Queues messages; the window procedure wakes the takers once it has answered the sender. */
static void append_all(cd_receiver *r, cd_message *first)
{
    AcquireSRWLockExclusive(&r->lock);
    while (first) {
        cd_message *next = first->next;
        append(r, first);
        first = next;
    }
    ReleaseSRWLockExclusive(&r->lock);
    r->queue.unannounced = 1;
}

/* A frame in a sender's section is answered before its bytes are copied out, so that the
 * sender fills the other half of its section meanwhile (see CD_KIND_SECTION): by then it
 * has been checked and the memory it goes to is allocated, so nothing after can refuse it. */
static void answer_before_copying(int in_section, LRESULT answer)
{
    if (in_section)
        ReplyMessage(answer);
}

/* Queues every record of a batch frame (already checked by cd_batch_check), or none. The
 * frame may lie in a sender's section, which the sender can write to meanwhile: should the
 * records no longer be those counted, nothing is queued. With a lease, records of
 * CD_LEASE_MIN_RECORD bytes and more are queued where they are, and the rest copied. */
static LRESULT accept_batch(cd_receiver *r, const arrival *a, const unsigned char *frame, size_t size,
                            size_t records, size_t record_bytes, int codec_id, int in_section, cd_lease *lease,
                            int ring)
{
    cd_message *first = NULL, **link = &first, *m;
    size_t offset = CD_ENVELOPE_HEADER_SIZE, length, count = 0, copied = 0, leased = 0;
    const unsigned char *bytes, **sources;
    uint64_t tag;
    int found;
    LRESULT answer;

    if (records > r->config.max_queue_messages)  /* (bytes: max_message_size and max_transfer_size are below) */
        return refuse_never_fits(r, a);
    if (!make_room(r, records, record_bytes, a))
        return FALSE;
    /* Where each record's bytes are: each length is read once, and the copy comes after. */
    sources = (const unsigned char **)malloc(records * sizeof *sources);
    if (sources == NULL)
        return refuse(r, CD_REASON_QUEUE_FULL, a);
    while ((found = cd_batch_next(frame, size, &offset, &tag, &bytes, &length)) == 1) {
        if (++count > records || length > record_bytes - copied) {
            found = -1;
            break;
        }
        copied += length;
        if (lease != NULL && length >= CD_LEASE_MIN_RECORD)
            *link = leased_message(lease, tag, a->sender, bytes, length, codec_id);
        else
            *link = new_large_message(r, tag, a->sender, length, codec_id);
        if (*link == NULL) {
            free(sources);
            cd_messages_free(first);
            return refuse(r, CD_REASON_QUEUE_FULL, a);
        }
        leased += (*link)->lease != NULL;
        sources[count - 1] = (*link)->lease != NULL ? NULL : bytes;
        link = &(*link)->next;
    }
    if (found < 0 || count != records) {
        free(sources);
        cd_messages_free(first);
        return refuse(r, CD_REASON_MALFORMED, a);
    }
    answer = !leased ? TRUE : ring ? CD_ANSWER_LEASED_RING : CD_ANSWER_LEASED;
    answer_before_copying(in_section, answer);
    for (m = first, count = 0; m != NULL; m = m->next, count++)
        if (m->size && sources[count] != NULL)
            memcpy((void *)m->data, sources[count], m->size);
    free(sources);
    append_all(r, first);
    return answer;
}

/* Takes a transfer out of the table; dropped: it will never complete. */
static void unlink_transfer(cd_receiver *r, cd_transfer **link, int dropped)
{
    cd_transfer *t = *link;

    *link = t->next;
    r->parts.count--;
    r->parts.bytes -= t->reserved;
    AcquireSRWLockExclusive(&r->lock);
    r->stats.assembling_messages--;
    r->stats.assembling_bytes -= t->reserved;
    if (dropped) {
        arrival a;
        a.tag = t->message->tag;
        a.sender = t->sender;
        a.size = (size_t)t->received;
        r->stats.dropped_messages++;
        r->stats.dropped_bytes += t->received;
        r->stats.dropped_incomplete++;
        report(r, CD_REASON_INCOMPLETE, &a);
    }
    ReleaseSRWLockExclusive(&r->lock);
}

static void drop_transfer(cd_receiver *r, cd_transfer **link)
{
    cd_transfer *t = *link;

    unlink_transfer(r, link, 1);
    release_message(t->message);
    free(t);
}

static void drop_stale_transfers(cd_receiver *r, ULONGLONG now)
{
    cd_transfer **link = &r->parts.transfers;
    while (*link) {
        if (now - (*link)->last_part_ms >= r->config.part_timeout_ms)
            drop_transfer(r, link);
        else
            link = &(*link)->next;
    }
}

static cd_transfer **find_transfer(cd_receiver *r, uint64_t sender, uint64_t transfer_id)
{
    cd_transfer **link = &r->parts.transfers;
    while (*link && ((*link)->sender != sender || (*link)->transfer_id != transfer_id))
        link = &(*link)->next;
    return link;
}

/* Makes room for bytes more of split messages (and, with a_slot, for one more of them) by
 * dropping those that have waited TRANSFER_IDLE_MS or more for their next part, the longest
 * waiting first, but never keep: a transfer holds its room only while its parts keep coming.
 * Whether the room is there now. */
static int make_transfer_room(cd_receiver *r, size_t bytes, int a_slot, const cd_transfer *keep, ULONGLONG now)
{
    while ((a_slot && r->parts.count >= CD_MAX_TRANSFERS)
           || bytes > r->config.max_queue_bytes - r->parts.bytes) {
        cd_transfer **link, **stalest = NULL;
        for (link = &r->parts.transfers; *link; link = &(*link)->next)
            if (*link != keep && now - (*link)->last_part_ms >= TRANSFER_IDLE_MS
                && (stalest == NULL || (*link)->last_part_ms < (*stalest)->last_part_ms))
                stalest = link;
        if (stalest == NULL)
            return 0;
        drop_transfer(r, stalest);
    }
    return 1;
}

/* Grows a transfer's message to hold at least needed bytes, doubling up to its total, within the
 * budget; the bytes received so far move along. */
static int reserve_transfer(cd_receiver *r, cd_transfer *t, size_t needed, ULONGLONG now)
{
    size_t reserved = t->reserved ? t->reserved : TRANSFER_FIRST_BLOCK;
    cd_message *grown;

    if (needed <= t->reserved)
        return 1;
    while (reserved < needed)
        reserved = reserved > SIZE_MAX / 2 ? needed : reserved * 2;
    if (reserved > t->total)
        reserved = (size_t)t->total;
    if (!make_transfer_room(r, reserved - t->reserved, 0, t, now))
        return 0;
    grown = new_large_message(r, t->message ? t->message->tag : 0, t->sender, reserved,
                              t->message ? t->message->codec_id : CD_NO_CODEC);
    if (grown == NULL)
        return 0;
    if (t->message != NULL) {
        memcpy((char *)grown->data, t->message->data, (size_t)t->received);
        release_message(t->message);
    }
    t->message = grown;
    r->parts.bytes += reserved - t->reserved;
    AcquireSRWLockExclusive(&r->lock);
    r->stats.assembling_bytes += reserved - t->reserved;
    ReleaseSRWLockExclusive(&r->lock);
    t->reserved = reserved;
    return 1;
}

/* A split message's first part: a new transfer, with a slot and its first block. */
static cd_transfer *begin_transfer(cd_receiver *r, const arrival *a, const cd_part *part, ULONGLONG now)
{
    cd_transfer *t;

    if (!make_transfer_room(r, 0, 1, NULL, now) || (t = (cd_transfer *)calloc(1, sizeof *t)) == NULL)
        return NULL;
    t->sender = a->sender;
    t->transfer_id = part->transfer_id;
    t->total = part->total;
    t->last_part_ms = now;
    t->message = new_large_message(r, a->tag, a->sender, 0, part->codec_id);
    if (t->message == NULL) {
        free(t);
        return NULL;
    }
    t->next = r->parts.transfers;
    r->parts.transfers = t;
    r->parts.count++;
    AcquireSRWLockExclusive(&r->lock);
    r->stats.assembling_messages++;
    ReleaseSRWLockExclusive(&r->lock);
    return t;
}

/* One part of a split message (already checked by cd_part_check). Parts come in order; the
 * message is queued when its last part arrives, or refused then, whole, until it fits. */
static LRESULT accept_part(cd_receiver *r, const arrival *a, const cd_part *part, int in_section)
{
    ULONGLONG now = GetTickCount64();
    cd_transfer **link, *t;
    int complete;

    drop_stale_transfers(r, now);
    link = find_transfer(r, a->sender, part->transfer_id);
    if (part->offset == 0) {
        if (*link)
            drop_transfer(r, link); /* begun again: the earlier attempt can never complete */
        if (part->total > r->config.max_transfer_size)  /* (and so above no max_queue_bytes) */
            return refuse_never_fits(r, a);
        if ((t = begin_transfer(r, a, part, now)) == NULL)
            return refuse(r, CD_REASON_QUEUE_FULL, a);
        link = &r->parts.transfers;
    } else {
        t = *link;
        if (t == NULL || part->offset != t->received || part->total != t->total
            || part->codec_id != t->message->codec_id || a->tag != t->message->tag) {
            if (t)
                drop_transfer(r, link);
            return refuse(r, CD_REASON_MALFORMED, a);
        }
    }
    if (!reserve_transfer(r, t, (size_t)(t->received + part->length), now)) {
        if (t->received == 0)
            drop_transfer(r, link);  /* nothing of it arrived: no room held for it */
        return refuse(r, CD_REASON_QUEUE_FULL, a);  /* the sender offers this part again */
    }
    complete = t->received + part->length == t->total;
    if (complete && !make_room(r, 1, (size_t)t->total, a))
        return FALSE; /* the sender offers this last part again */
    answer_before_copying(in_section, TRUE);
    memcpy((char *)t->message->data + part->offset, part->data, part->length);
    t->received += part->length;
    t->last_part_ms = now;
    if (complete) {
        t->message->size = (size_t)t->total;
        unlink_transfer(r, link, 0);
        append_all(r, t->message);
        free(t);
    }
    return TRUE;
}

static void unmap_section(mapped_section *s)
{
    if (s->mapping != NULL)
        cd_kept_section_release(s->mapping);
    memset(s, 0, sizeof *s);
}

/* Sections nobody sent from for a while: their senders may have ended or moved on. */
static void unmap_idle_sections(cd_receiver *r, ULONGLONG now, ULONGLONG idle_ms)
{
    size_t i;
    for (i = 0; i < MAPPED_SECTIONS; i++)
        if (r->shm.mapped[i].view && now - r->shm.mapped[i].used_ms >= idle_ms)
            unmap_section(&r->shm.mapped[i]);
}

/* Whether a mapped section is the one a descriptor's secret names: its magic, then the secret,
 * compared in constant time (the section's owner may rewrite its header meanwhile; each byte
 * is read once). */
static int proves_right(const mapped_section *section, const unsigned char *secret)
{
    const volatile unsigned char *header = section->view;
    unsigned char difference = 0;
    size_t i;

    if (section->size < sizeof(cd_section_header))
        return 0;
    for (i = 0; i < sizeof CD_SECTION_MAGIC - 1; i++)
        difference |= (unsigned char)(header[offsetof(cd_section_header, magic) + i] ^ (unsigned char)CD_SECTION_MAGIC[i]);
    for (i = 0; i < CD_SECTION_SECRET_SIZE; i++)
        difference |= (unsigned char)(header[offsetof(cd_section_header, secret) + i] ^ secret[i]);
    return difference == 0;
}

/* The named section, mapped, if its owner is this receiver's user and the secret is its own;
 * else NULL. */
static mapped_section *map_section(cd_receiver *r, const uint16_t *name, const unsigned char *secret,
                                   ULONGLONG now)
{
    mapped_section *slot = &r->shm.mapped[0];
    size_t i;

    for (i = 0; i < MAPPED_SECTIONS; i++) {
        if (r->shm.mapped[i].view && wcscmp((const wchar_t *)r->shm.mapped[i].name, (const wchar_t *)name) == 0) {
            if (!proves_right(&r->shm.mapped[i], secret))
                return NULL;
            r->shm.mapped[i].used_ms = now;
            return &r->shm.mapped[i];
        }
        if (slot->view && (r->shm.mapped[i].view == NULL || r->shm.mapped[i].used_ms < slot->used_ms))
            slot = &r->shm.mapped[i];
    }
    unmap_section(slot);
    slot->mapping = (kept_section *)malloc(sizeof *slot->mapping);
    if (slot->mapping == NULL)
        return NULL;
    if (cd_section_map(name, r->shm.user_sid, &slot->view, &slot->size, &slot->writable) != CD_OK) {
        free(slot->mapping);
        memset(slot, 0, sizeof *slot);
        return NULL;
    }
    slot->mapping->view = slot->view;
    slot->mapping->references = 1;  /* the slot's own */
    memcpy(slot->name, name, sizeof slot->name);
    slot->used_ms = now;
    if (!proves_right(slot, secret)) {
        unmap_section(slot);
        return NULL;
    }
    return slot;
}

/* The section a checked descriptor names, mapped, once its range is known to lie inside; NULL
 * when refused (and counted). */
static mapped_section *described_section(cd_receiver *r, const arrival *a, const cd_section_descriptor *descriptor)
{
    mapped_section *section = map_section(r, descriptor->name, descriptor->secret, GetTickCount64());

    if (section == NULL || descriptor->offset > section->size
        || descriptor->length > section->size - descriptor->offset
        || (descriptor->lease_id != 0 && (section->size < 8 || descriptor->release_offset > section->size - 8))) {
        refuse(r, CD_REASON_SECTION, a);
        return NULL;
    }
    return section;
}

/* What a descriptor's range holds: 1 a batch frame (no larger in messages than
 * max_transfer_size), 2 a part frame (described in part), both of the descriptor's codec;
 * 0 when refused, -1 when refused for its size alone (both counted). */
static int section_frame(cd_receiver *r, const arrival *a, const unsigned char *frame,
                         const cd_section_descriptor *descriptor, size_t *records, size_t *record_bytes,
                         cd_part *part)
{
    size_t length = (size_t)descriptor->length;
    int codec_id, kind;

    kind = cd_batch_check(frame, length, records, record_bytes, &codec_id);
    if (kind == 0 && cd_part_check(frame, length, part) == 1) {
        kind = 2;
        codec_id = part->codec_id;
    }
    if (kind <= 0 || codec_id != descriptor->codec_id) {
        refuse(r, CD_REASON_MALFORMED, a);
        return 0;
    }
    if (kind == 1 && *record_bytes > r->config.max_transfer_size) {
        refuse(r, CD_REASON_TOO_LARGE, a);
        return -1;
    }
    return kind;
}

static int same_name(const uint16_t *a, const uint16_t *b)
{
    return wcscmp((const wchar_t *)a, (const wchar_t *)b) == 0;
}

/* The slot for the ring of a descriptor offered with a ring block, should its frame be leased:
 * its own, a free one, or NULL (with a key, as an announced frame carries no seal; no slot
 * free; or no ring id). */
static ring *ring_slot(cd_receiver *r, const cd_section_descriptor *descriptor, const mapped_section *section,
                       uint64_t *id)
{
    ring *slot = NULL;
    size_t i;

    *id = 0;
    if (descriptor->ring_offset == 0 || r->seals.mac != NULL || r->shm.ring_message == 0 || !section->writable
        || section->size < CD_RING_SIZE || descriptor->ring_offset > section->size - CD_RING_SIZE)
        return NULL;
    *id = ((volatile const cd_ring_block *)(section->view + descriptor->ring_offset))->ring_id;
    for (i = 0; i < CD_MAX_RINGS && *id != 0; i++) {
        if (r->shm.rings[i].id == *id)  /* another section's ring id is refused: posts name rings by id alone */
            return same_name(r->shm.rings[i].name, descriptor->name) ? &r->shm.rings[i] : NULL;
        if (slot == NULL && r->shm.rings[i].id == 0)
            slot = &r->shm.rings[i];
    }
    return *id != 0 ? slot : NULL;
}

/* After its frame was leased: the sender may announce the next one in the ring block. */
static void arm_ring(ring *slot, uint64_t id, const arrival *a, const cd_section_descriptor *descriptor)
{
    slot->id = id;
    memcpy(slot->name, descriptor->name, sizeof slot->name);
    memcpy(slot->secret, descriptor->secret, sizeof slot->secret);
    slot->offset = descriptor->ring_offset;
    slot->codec_id = descriptor->codec_id;
    slot->sender = a->sender;
    slot->next_lease = descriptor->lease_id + 1;
    slot->used_ms = GetTickCount64();
}

static void forget_idle_rings(cd_receiver *r, ULONGLONG now)
{
    size_t i;
    for (i = 0; i < CD_MAX_RINGS; i++)
        if (r->shm.rings[i].id != 0 && now - r->shm.rings[i].used_ms >= CD_RING_IDLE_MS)
            memset(&r->shm.rings[i], 0, sizeof r->shm.rings[i]);
}

/* A batch or part frame in a section of the sender's, copied out once it is answered, or, for
 * large records of a batch frame offered with a lease, queued where they are. */
static LRESULT accept_section(cd_receiver *r, const arrival *a, const cd_section_descriptor *descriptor)
{
    mapped_section *section = described_section(r, a, descriptor);
    const unsigned char *frame;
    size_t records, record_bytes;
    cd_part part;
    cd_lease *lease = NULL;
    ring *slot;
    uint64_t ring_id;
    LRESULT answer;
    int kind;

    if (section == NULL)
        return FALSE;
    frame = section->view + descriptor->offset;
    kind = section_frame(r, a, frame, descriptor, &records, &record_bytes, &part);
    if (kind == 2)
        return accept_part(r, a, &part, 1);
    if (kind != 1)
        return kind < 0 ? CD_ANSWER_NEVER_FITS : FALSE;
    if (descriptor->lease_id != 0 && section->writable && record_bytes >= CD_LEASE_MIN_RECORD
        && (lease = (cd_lease *)malloc(sizeof *lease)) != NULL) {
        lease->mapping = section->mapping;
        InterlockedIncrement(&lease->mapping->references);
        lease->release_word = (volatile LONG64 *)(section->view + descriptor->release_offset);
        lease->id = descriptor->lease_id;
        lease->references = 1;  /* this frame's own, until its records are queued */
    }
    slot = lease != NULL ? ring_slot(r, descriptor, section, &ring_id) : NULL;
    answer = accept_batch(r, a, frame, (size_t)descriptor->length, records, record_bytes, descriptor->codec_id, 1,
                          lease, slot != NULL);
    if (answer == CD_ANSWER_LEASED_RING)
        arm_ring(slot, ring_id, a, descriptor);
    if (lease != NULL && (answer == CD_ANSWER_LEASED || answer == CD_ANSWER_LEASED_RING)) {
        lease_release(lease);  /* the queued records hold it now */
    } else if (lease != NULL) {
        cd_kept_section_release(lease->mapping);  /* nothing was kept: the sender reads no release word */
        free(lease);
    }
    return answer;
}

/* A posted CD_RING_MESSAGE. Anyone can post one: only the id of an armed ring and the one lease
 * id its sender may announce next make the receiver read anything, and what it reads in the
 * ring block is checked as a descriptor is. The answer goes into the block once the frame is
 * queued (and copied): no round trip. */
static void take_announced(cd_receiver *r, uint64_t id, uint64_t lease)
{
    ring *slot = NULL;
    mapped_section *section;
    volatile cd_ring_block *block;
    cd_section_descriptor descriptor;
    arrival a;
    LRESULT answer;
    size_t i;

    for (i = 0; i < CD_MAX_RINGS && slot == NULL; i++)
        if (id != 0 && r->shm.rings[i].id == id)
            slot = &r->shm.rings[i];
    if (slot == NULL || lease != slot->next_lease) {
        if (slot != NULL && lease == 0)
            memset(slot, 0, sizeof *slot);  /* its sender is done with it */
        return;
    }
    section = map_section(r, slot->name, slot->secret, GetTickCount64());
    if (section == NULL || !section->writable || section->size < CD_RING_SIZE
        || slot->offset > section->size - CD_RING_SIZE) {
        memset(slot, 0, sizeof *slot);
        return;
    }
    block = (volatile cd_ring_block *)(section->view + slot->offset);
    memset(&descriptor, 0, sizeof descriptor);
    descriptor.lease_id = block->lease_id;  /* each read once */
    descriptor.offset = block->offset;
    descriptor.length = block->length;
    descriptor.release_offset = block->release_offset;
    descriptor.ring_offset = slot->offset;
    descriptor.codec_id = slot->codec_id;
    memcpy(descriptor.name, slot->name, sizeof descriptor.name);
    memcpy(descriptor.secret, slot->secret, sizeof descriptor.secret);
    a.tag = 0;
    a.sender = slot->sender;
    a.size = descriptor.length > SIZE_MAX ? SIZE_MAX : (size_t)descriptor.length;
    slot->used_ms = GetTickCount64();
    if (descriptor.lease_id != lease || !cd_section_fields_ok(&descriptor))
        answer = refuse(r, CD_REASON_MALFORMED, &a);
    else
        answer = accept_section(r, &a, &descriptor);  /* re-arms the ring if it leases the frame */
    if (answer != FALSE && answer != CD_ANSWER_NEVER_FITS) {
        AcquireSRWLockExclusive(&r->lock);
        r->stats.ring_frames++;
        ReleaseSRWLockExclusive(&r->lock);
    }
    /* Not leased (the sender sends its next frame, and offers a refused one again), or armed
     * under another ring id that the sender wrote meanwhile: this slot is done. */
    if (answer != CD_ANSWER_LEASED_RING || slot->next_lease != lease + 1)
        memset(slot, 0, sizeof *slot);
    InterlockedExchange64((volatile LONG64 *)&block->answer, (LONG64)((lease << 8) | ((uint64_t)answer & 0xFF)));
}

/* Sync mode takes no parts; a Sender hearing so sends its large messages whole instead. */
static LRESULT refuse_part(cd_receiver *r, const arrival *a)
{
    refuse(r, CD_REASON_PARTS_IN_SYNC_MODE, a);
    return CD_ANSWER_NO_PARTS;
}

/* Sync mode: a batch frame's records, one after another. Once one of them was handed over the
 * frame is answered 1, whatever the callbacks answered: a sender that saw 0 would send the
 * whole frame again, and the records already delivered twice. */
static LRESULT hand_over_batch(cd_receiver *r, const arrival *a, const unsigned char *frame, size_t size,
                               int codec_id, handed_section *section)
{
    size_t offset = CD_ENVELOPE_HEADER_SIZE;
    arrival record = *a;
    const unsigned char *bytes;
    LRESULT answer;
    int found, delivered = 0;

    while ((found = cd_batch_next(frame, size, &offset, &record.tag, &bytes, &record.size)) == 1) {
        if (hand_over_and_wait(r, &record, bytes, codec_id, section, &answer))
            delivered = 1;
        else if (!delivered)
            return FALSE;  /* closing: nothing was delivered */
    }
    if (found < 0)  /* the sender rewrote its section meanwhile: the rest is lost */
        refuse(r, CD_REASON_MALFORMED, a);
    return delivered;
}

/* Sync mode: a section's records are handed over where they are, with no copy. Should Python
 * keep a view of one past its callback, the mapping becomes Python's, and the sender hears
 * that it must not write into that section again. */
static LRESULT hand_over_section(cd_receiver *r, const arrival *a, const cd_section_descriptor *descriptor)
{
    mapped_section *section = described_section(r, a, descriptor);
    handed_section handed;
    size_t records, record_bytes;
    cd_part part;
    LRESULT answer;
    int kind;

    if (section == NULL)
        return FALSE;
    kind = section_frame(r, a, section->view + descriptor->offset, descriptor, &records, &record_bytes, &part);
    if (kind == 2)
        return refuse_part(r, a);
    if (kind != 1)
        return kind < 0 ? CD_ANSWER_NEVER_FITS : FALSE;
    handed.slot = section;
    handed.kept = section->mapping;
    InterlockedIncrement(&handed.kept->references);  /* this frame's own, while its records are handed over */
    answer = hand_over_batch(r, a, section->view + descriptor->offset, (size_t)descriptor->length,
                             descriptor->codec_id, &handed);
    cd_kept_section_release(handed.kept);
    if (handed.slot != NULL)
        return answer;
    return answer ? CD_ANSWER_SECTION_KEPT : FALSE;
}

/* Sync mode: Python answers every message before the sender is released. A split message
 * would have to be put together first, in a queue that sync mode does not have. */
static LRESULT hand_over(cd_receiver *r, const arrival *a, const unsigned char *data, int kind,
                         int codec_id, const cd_section_descriptor *section)
{
    LRESULT answer;

    if (kind == 2)
        return refuse_part(r, a);
    if (kind == 3)
        return hand_over_section(r, a, section);
    if (kind == 1)
        return hand_over_batch(r, a, data, a->size, codec_id, NULL);
    hand_over_and_wait(r, a, data, CD_NO_CODEC, NULL, &answer);
    return answer;
}

/* A payload whose seal (if the receiver has a key) is already checked and taken off. */
static LRESULT accept_payload(cd_receiver *r, const arrival *a, const unsigned char *data)
{
    cd_message *m;
    size_t records, record_bytes;
    int kind = 0, codec_id;   /* 0 plain, 1 batch, 2 part, 3 section descriptor, negative malformed */
    cd_part part;
    cd_section_descriptor section;
    cd_seal seal;

    if (r->config.unpack_batches) {
        /* A seal is taken off before this, by a receiver with a key; none can open another. */
        if (!r->config.pass_sealed && cd_seal_check(data, a->size, &seal) != 0)
            return refuse(r, CD_REASON_UNAUTHENTICATED, a);
        kind = cd_batch_check(data, a->size, &records, &record_bytes, &codec_id);
        if (kind == 0)
            kind = 2 * cd_part_check(data, a->size, &part);
        if (kind == 0)
            kind = 3 * cd_section_check(data, a->size, &section);
    }
    if (kind < 0)
        return refuse(r, CD_REASON_MALFORMED, a);
    if (r->config.sync)
        return hand_over(r, a, data, kind, codec_id, &section);
    if (kind == 3)
        return accept_section(r, a, &section);
    if (kind == 2)
        return accept_part(r, a, &part, 0);
    if (kind == 1)
        return accept_batch(r, a, data, a->size, records, record_bytes, codec_id, 0, NULL, 0);

    if (!make_room(r, 1, a->size, a))
        return FALSE;
    m = copy_message(a->tag, a->sender, data, a->size, CD_NO_CODEC);
    if (m == NULL)
        return refuse(r, CD_REASON_QUEUE_FULL, a);
    append_all(r, m);
    return TRUE;
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
        return refuse(r, CD_REASON_UNAUTHENTICATED, a);
    verdict = cd_replay_check(&r->seals.replay, &seal, now);
    if (verdict != CD_REPLAY_NEW)
        return refuse(r, CD_REASON_REPLAYED, a);
    inner.size = seal.inner_size;
    if (r->config.sync) {
        /* The callback runs on it, whatever it answers: it must not run twice. */
        if (cd_replay_record(&r->seals.replay, &seal, now) != CD_OK)
            return refuse(r, CD_REASON_QUEUE_FULL, a);  /* no memory: it may be offered again */
        return accept_payload(r, &inner, seal.inner);
    }
    /* Only an accepted frame counts as seen (a refused one may be offered again), and a frame
     * is accepted only once its record is sure to fit: never queued yet replayable. */
    if (cd_replay_reserve(&r->seals.replay, &seal, now) != CD_OK)
        return refuse(r, CD_REASON_QUEUE_FULL, a);
    result = accept_payload(r, &inner, seal.inner);
    if (result != FALSE && result != CD_ANSWER_NEVER_FITS)  /* (the one nonzero refusal in queue mode) */
        cd_replay_record(&r->seals.replay, &seal, now);
    return result;
}

static LRESULT accept_copydata(cd_receiver *r, WPARAM wparam, const COPYDATASTRUCT *cds)
{
    arrival a;

    a.tag = cds ? (uint64_t)cds->dwData : 0;
    a.sender = (uint64_t)wparam;
    a.size = cds ? cds->cbData : 0;
    if (cds == NULL || (a.size != 0 && cds->lpData == NULL))
        return refuse(r, CD_REASON_MALFORMED, &a);
    if (a.size > r->config.max_message_size)
        return cd_is_sender_frame((const unsigned char *)cds->lpData, a.size) ? refuse_never_fits(r, &a)
                                                                               : refuse(r, CD_REASON_TOO_LARGE, &a);
    if (r->seals.mac)
        return accept_sealed(r, &a, (const unsigned char *)cds->lpData);
    return accept_payload(r, &a, (const unsigned char *)cds->lpData);
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

    drop_stale_transfers(r, now);
    unmap_idle_sections(r, now, MAPPED_SECTION_IDLE_MS);
    forget_idle_rings(r, now);
    if (r->pool)
        pool_trim(r->pool, now, POOL_IDLE_MS);
}

static void wake_takers(cd_receiver *r)
{
    if (r->queue.unannounced) {
        r->queue.unannounced = 0;
        WakeAllConditionVariable(&r->changed);
    }
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
        take_announced(r, (uint64_t)msg->wParam, (uint64_t)msg->lParam);
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
    LRESULT result;

    if (r == NULL)  /* not on a pump thread: no window of this class lives there */
        return DefWindowProcW(hwnd, msg, wparam, lparam);
    switch (msg) {
    case WM_COPYDATA:
        if (r->window.phase != WINDOW_LIVE)
            return FALSE;
        result = accept_copydata(r, wparam, (const COPYDATASTRUCT *)lparam);
        if (r->queue.unannounced) {
            /* The payload is safe in the queue: release the sender before the wake-up of a
             * taker, which it need not wait for. */
            ReplyMessage(result);
            wake_takers(r);
        }
        return result;
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

/* With the lock held: waits up to timeout_ms (from start) until ready(r). CD_OK once it is,
 * CD_CLOSED if *ended is set first, else CD_TIMEOUT; the lock is held again either way. */
static int wait_until(cd_receiver *r, int (*ready)(const cd_receiver *), const int *ended, ULONGLONG start,
                      uint32_t timeout_ms)
{
    while (!ready(r)) {
        DWORD wait = CD_WAIT_FOREVER;
        if (*ended)
            return CD_CLOSED;
        if (timeout_ms != CD_WAIT_FOREVER) {
            ULONGLONG elapsed = GetTickCount64() - start;
            if (elapsed >= timeout_ms)
                return CD_TIMEOUT;
            wait = (DWORD)(timeout_ms - elapsed);
        }
        SleepConditionVariableSRW(&r->changed, &r->lock, wait, 0);
    }
    return CD_OK;
}

static int messages_waiting(const cd_receiver *r)
{
    return r->queue.head != NULL;
}

int cd_receiver_take(cd_receiver *r, size_t max_count, uint32_t timeout_ms, cd_message **first, size_t *leased)
{
    ULONGLONG start = GetTickCount64();
    cd_message *last;
    size_t count;
    int status;

    *first = NULL;
    *leased = 0;
    if (max_count == 0)
        return CD_INVALID;
    if (r->config.sync)
        max_count = 1;
    AcquireSRWLockExclusive(&r->lock);
    status = wait_until(r, messages_waiting, &r->window.closed, start, timeout_ms);
    if (status != CD_OK) {
        ReleaseSRWLockExclusive(&r->lock);
        return status;
    }
    last = r->queue.head;
    last->taken = 1;
    r->stats.queued_bytes -= last->size;
    *leased += last->lease != NULL;
    for (count = 1; count < max_count && last->next; count++) {
        last = last->next;
        last->taken = 1;
        r->stats.queued_bytes -= last->size;
        *leased += last->lease != NULL;
    }
    r->stats.queued_messages -= count;
    *first = r->queue.head;
    r->queue.head = last->next;
    if (r->queue.head == NULL)
        r->queue.tail = NULL;
    last->next = NULL;
    ReleaseSRWLockExclusive(&r->lock);
    return CD_OK;
}

void cd_messages_free(cd_message *first)
{
    while (first) {
        cd_message *next = first->next;
        release_message(first);
        first = next;
    }
}

static int packable(const cd_message *m)
{
    return m->lease == NULL && m->size <= CD_PACK_MESSAGE_LIMIT;
}

int cd_messages_pack(cd_message *first, char **block, size_t *block_size, size_t *count, cd_message **rest,
                     cd_message **after)
{
    size_t rows = 0, packed_bytes = 0, offset, i;
    cd_message *m, *next, **rest_tail = rest;
    cd_packed_row *row;
    char *out;

    *block = NULL;
    *block_size = *count = 0;
    *rest = *after = NULL;
    for (m = first; m != NULL; m = m->next, rows++) {
        if (!packable(m))
            continue;
        if (m->size > CD_PACK_BLOCK_LIMIT - packed_bytes)
            break;
        packed_bytes += m->size;
    }
    /* rows is bounded by what the queue holds, so the table's size cannot overflow. */
    offset = rows * sizeof(cd_packed_row);
    out = malloc(offset + packed_bytes + 1);
    if (out == NULL)
        return CD_NO_MEMORY;
    *block = out;
    *block_size = offset + packed_bytes;
    *count = rows;
    *after = m;
    row = (cd_packed_row *)out;
    for (i = 0, m = first; i < rows; i++, m = next, row++) {
        next = m->next;
        row->tag = m->tag;
        row->sender = m->sender;
        row->size = m->size;
        row->codec_id = m->codec_id;
        row->packed = (uint32_t)packable(m);
        if (row->packed) {
            row->offset = offset;
            if (m->size != 0)
                memcpy(out + offset, m->data, m->size);
            offset += m->size;
            release_message(m);
        } else {
            row->offset = 0;
            m->next = NULL;
            *rest_tail = m;
            rest_tail = &m->next;
        }
    }
    return CD_OK;
}

void cd_block_free(char *block)
{
    free(block);
}

void cd_message_release(const char *data)
{
    /* new_message puts the data right behind the message's own fields. */
    if (data != NULL)
        release_message((cd_message *)data - 1);
}

void cd_message_free(cd_message *message)
{
    if (message != NULL)
        release_message(message);
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

const void *cd_receiver_keep_section(cd_receiver *r, cd_message *message)
{
    handed_section *handed = (handed_section *)message->section;

    (void)r;
    if (handed == NULL)
        return NULL;
    /* The pump thread waits for this message's reply meanwhile: it cannot touch the slot. The
     * sender will hear to write elsewhere, so the slot goes (the frame's reference keeps the view). */
    if (handed->slot != NULL) {
        unmap_section(handed->slot);
        handed->slot = NULL;
    }
    InterlockedIncrement(&handed->kept->references);
    return handed->kept;
}

void cd_kept_section_release(const void *kept)
{
    kept_section *k = (kept_section *)kept;
    if (k != NULL && InterlockedDecrement(&k->references) == 0) {
        cd_section_unmap(k->view);
        free(k);
    }
}

void cd_receiver_stats(cd_receiver *r, cd_stats *stats)
{
    AcquireSRWLockShared(&r->lock);
    *stats = r->stats;
    ReleaseSRWLockShared(&r->lock);
}

static size_t take_merged(cd_receiver *r, cd_refusal *refusals, size_t capacity)
{
    size_t taken = 0;
    int reason;

    for (reason = 1; reason < CD_REASON_COUNT && taken < capacity; reason++) {
        if (r->refusals.merged[reason].count) {
            refusals[taken++] = r->refusals.merged[reason];
            memset(&r->refusals.merged[reason], 0, sizeof r->refusals.merged[reason]);
        }
    }
    return taken;
}

static int refusals_waiting(const cd_receiver *r)
{
    int reason;
    if (r->refusals.count)
        return 1;
    for (reason = 1; reason < CD_REASON_COUNT; reason++)
        if (r->refusals.merged[reason].count)
            return 1;
    return 0;
}

int cd_receiver_take_refusals(cd_receiver *r, cd_refusal *refusals, size_t capacity, uint32_t timeout_ms,
                              size_t *count)
{
    ULONGLONG start = GetTickCount64();
    size_t taken = 0;
    int status;

    *count = 0;
    if (capacity == 0)
        return CD_INVALID;
    AcquireSRWLockExclusive(&r->lock);
    status = wait_until(r, refusals_waiting, &r->refusals.ended, start, timeout_ms);
    if (status != CD_OK) {
        ReleaseSRWLockExclusive(&r->lock);
        return status;
    }
    while (taken < capacity && r->refusals.count) {
        refusals[taken++] = r->refusals.ring[r->refusals.first];
        r->refusals.first = (r->refusals.first + 1) % CD_REFUSAL_RING;
        r->refusals.count--;
    }
    /* Merged ones come after the ring, whose refusals all happened before them. */
    if (r->refusals.count == 0)
        taken += take_merged(r, refusals + taken, capacity - taken);
    ReleaseSRWLockExclusive(&r->lock);
    *count = taken;
    return CD_OK;
}

void cd_receiver_report(cd_receiver *r, int reason, uint64_t tag, uint64_t sender, uint64_t size)
{
    arrival a;

    a.tag = tag;
    a.sender = sender;
    a.size = (size_t)size;
    AcquireSRWLockExclusive(&r->lock);
    report(r, reason, &a);
    ReleaseSRWLockExclusive(&r->lock);
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
    while (r->parts.transfers)
        drop_transfer(r, &r->parts.transfers);
    unmap_idle_sections(r, GetTickCount64(), 0);
    if (r->pool) {
        AcquireSRWLockExclusive(&r->pool->lock);
        r->pool->closed = 1;
        ReleaseSRWLockExclusive(&r->pool->lock);
        pool_trim(r->pool, GetTickCount64(), 0);
    }

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
        pool_release(r->pool);
    free(r);
}
