/*
 * What the C files of the core share and Python never sees, with Windows types: copydata.h is
 * what Python sees (through copydata.cdef), frames.h the frame checks that need no Windows.
 * Grouped by concern, one section per file, as libuv's src/win/internal.h is: each section
 * holds that file's part of struct cd_receiver and what it offers the others. The receiver's
 * own functions across files are named cd__; the struct that joins their parts closes the
 * header.
 */
#ifndef COPYDATA_INTERNAL_H
#define COPYDATA_INTERNAL_H

#include "win32.h"
#include "copydata.h"
#include "frames.h"

/* What the window procedure knows of a WM_COPYDATA before it trusts any of its bytes. */
typedef struct arrival {
    uint64_t tag;      /* dwData */
    uint64_t sender;   /* wParam */
    size_t size;       /* cbData */
} arrival;

/* What a payload, or the range of a sender's section that a descriptor names, turned out to be
 * once its headers were checked (frames.h): what one switch acts on. */
enum frame_kind {
    FRAME_PLAIN,        /* no frame of copydata's: a message as it is */
    FRAME_BATCH,        /* a batch frame: records */
    FRAME_PART,         /* a part frame: a piece of a split message */
    FRAME_SECTION,      /* a section descriptor */
    FRAME_SEALED,       /* a sealed frame that nobody here opens (a key's seal comes off before) */
    FRAME_MALFORMED,    /* it claims to be a frame, and is no valid one */
    FRAME_TOO_LARGE     /* a section's batch frame of more than max_transfer_size */
};

/* A frame whose headers were checked, and what they said. */
typedef struct checked_frame {
    const unsigned char *data;      /* the whole frame */
    size_t size;
    int codec_id;
    int in_section;                 /* it lies in a sender's section: answered before it is copied out */
    size_t records;                 /* FRAME_BATCH: how many records, and their bytes in all */
    size_t record_bytes;
    cd_part part;                   /* FRAME_PART */
    cd_section_descriptor section;  /* FRAME_SECTION */
} checked_frame;

/* Each defined in its own file, and used by pointer elsewhere. */
typedef struct cd_pool cd_pool;                  /* pool.c */
typedef struct cd_transfer cd_transfer;          /* parts.c */
typedef struct kept_section kept_section;        /* pool.c */
typedef struct handed_section handed_section;    /* shm_reader.c */


/*
 * Sections and name slots (sections.c)
 */

/* The process user's SID (free with cd_free_sid), the owner every section must have. */
void *cd_current_user_sid(void);
void cd_free_sid(void *sid);
/* Sections and name slots: open to the current user only; with unreadable_below, not even to
 * its processes of a lower integrity level. Free with LocalFree. */
PSECURITY_DESCRIPTOR cd_user_only_descriptor(int unreadable_below);
/* Whether a mapping (opened with READ_CONTROL and SECTION_QUERY) is owned by owner_sid and is
 * committed memory backed by the page file; its size. */
int cd_mapping_trusted(HANDLE mapping, const void *owner_sid, uint64_t *size);
/* Maps a whole section, if owner_sid owns it and it is committed memory backed by the page
 * file (no file, whose pages may fail to read, and nothing merely reserved): its view, how
 * many bytes of it may be read, and whether the view may be written to as well (if the
 * section allows it). CD_OK, CD_NOT_FOUND (no such section) or CD_INVALID. */
int cd_section_map(const uint16_t *name, const void *owner_sid, const unsigned char **view, uint64_t *size,
                   int *writable);
void cd_section_unmap(const unsigned char *view);


/*
 * Seals' MACs (mac.c): HMAC-SHA256 with the system's cryptography (Windows CNG)
 */

typedef struct cd_mac cd_mac;
int cd_mac_open(const unsigned char *key, size_t key_size, cd_mac **mac);
/* Whether seal's MAC is right for a frame to target with tag: compared in constant time. */
int cd_mac_verify(cd_mac *mac, uint64_t target, uint64_t tag, const unsigned char *frame, const cd_seal *seal);
void cd_mac_close(cd_mac *mac);


/*
 * Sending (send.c), for the floor's loop too (floor.c)
 */

/* The status for a SendMessageTimeoutW(WM_COPYDATA) to hwnd that failed with error. */
int cd_send_failure(HWND hwnd, DWORD error);


/*
 * The window, its pump thread, open and close (receiver.c)
 */

/* Where the window is in its life: Windows' own messages of creation and destruction go to
 * DefWindowProcW, the same messages from anyone else at any other time change nothing. */
enum window_phase { WINDOW_CREATING, WINDOW_LIVE, WINDOW_DESTROYING, WINDOW_DESTROYED };

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

/* A receiver with a key: only sealed frames are accepted. Pump thread only. */
typedef struct seal_check {
    cd_mac *mac;                  /* set: the receiver has a key */
    cd_replay replay;
} seal_check;


/*
 * The queue, its take and pack, and sync mode's hand-over (queue.c)
 */

/* The messages waiting to be taken, in arrival order: head and tail guarded by the lock. */
typedef struct message_queue {
    cd_message *head;
    cd_message *tail;
    int unannounced;              /* pump thread only: messages were queued and the takers not yet woken */
} message_queue;

/* Whether count more messages of bytes in all may be queued now; refuses (and counts) if not. */
int cd__make_room(cd_receiver *r, size_t count, size_t bytes, const arrival *a);
/* Queues messages; the window procedure wakes the takers once it has answered the sender. */
void cd__append_all(cd_receiver *r, cd_message *first);
/* A frame in a sender's section is answered before its bytes are copied out. */
void cd__answer_before_copying(int in_section, LRESULT answer);
/* A plain message: copied into the queue. */
LRESULT cd__accept_plain(cd_receiver *r, const arrival *a, const unsigned char *data);
/* Every record of a batch frame, or none. With a lease, records of CD_LEASE_MIN_RECORD bytes
 * and more are queued where they are; ring: the answer is CD_ANSWER_LEASED_RING rather than
 * CD_ANSWER_LEASED. */
LRESULT cd__accept_batch(cd_receiver *r, const arrival *a, const checked_frame *batch, cd_lease *lease, int ring);
/* Sync mode: queues the bytes and waits until Python answers them. 1 with its answer, or 0
 * if Python never took them (the receiver is closing). */
int cd__hand_over_and_wait(cd_receiver *r, const arrival *a, const unsigned char *data, int codec_id,
                           handed_section *section, LRESULT *answer);
/* Sync mode: a batch frame's records, one after another (section: where they lie, or NULL). */
LRESULT cd__hand_over_batch(cd_receiver *r, const arrival *a, const checked_frame *batch, handed_section *section);
/* Sync mode: a plain message, Python's answer its answer. */
LRESULT cd__hand_over_plain(cd_receiver *r, const arrival *a, const unsigned char *data);


/*
 * The memory of messages: the block pool, leases, kept mappings (pool.c)
 */

/* A mapping of a sender's section, shared by the receiver's cache, the views Python keeps
 * (sync mode) and the leases on it (queue mode): the last reference unmaps it. */
struct kept_section {
    const unsigned char *view;
    LONG references;
};

/* A message of size bytes, its data right behind it; its block from the pool if it is large. */
cd_message *cd__new_large_message(cd_receiver *r, uint64_t tag, uint64_t sender, size_t size, int codec_id);
cd_message *cd__copy_message(uint64_t tag, uint64_t sender, const void *data, size_t size, int codec_id);
/* Frees a message of any kind: a large one's block goes back to its pool, a leased one's
 * lease is released. */
void cd__release_message(cd_message *m);
/* Frees the spare blocks unused for a while. */
void cd__pool_sweep(cd_pool *pool, ULONGLONG now);
/* The receiver closed: its pool frees its spare blocks and keeps no more. */
void cd__pool_close(cd_pool *pool);
/* The receiver's own reference: the last one out frees the pool. */
void cd__pool_release(cd_pool *pool);
/* A lease on a frame's records in a mapped section (its own reference to the mapping), held by
 * the frame until its records are queued; NULL if there is no memory for one. */
cd_lease *cd__lease_open(kept_section *mapping, volatile LONG64 *release_word, uint64_t id);
/* The frame's lease when none of its records was queued under it: no release word is written. */
void cd__lease_abandon(cd_lease *lease);
/* A message whose bytes stay where they are, in a sender's section, under lease. */
cd_message *cd__leased_message(cd_lease *lease, uint64_t tag, uint64_t sender, const unsigned char *data,
                               size_t size, int codec_id);
/* One message less under the lease: the last one writes the lease id into the release word. */
void cd__lease_release(cd_lease *lease);


/*
 * Messages in parts (parts.c)
 */

/* Split messages whose parts are still arriving: pump thread only. */
typedef struct transfer_table {
    cd_transfer *transfers;
    size_t count;
    size_t bytes;                 /* what they reserve, against max_queue_bytes */
} transfer_table;

/* One part of a split message (checked by cd_part_check). */
LRESULT cd__accept_part(cd_receiver *r, const arrival *a, const cd_part *part, int in_section);
/* Drops the split messages whose next part is overdue. */
void cd__parts_sweep(cd_receiver *r, ULONGLONG now);
/* The pump thread has ended: split messages still incomplete never will be. */
void cd__parts_close(cd_receiver *r);


/*
 * Senders' shared memory: the section cache, leasing, rings, and sync mode's hand-over of a
 * section's records (shm_reader.c)
 */

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

/* What the receiver reads of senders' shared memory: pump thread only. */
typedef struct shm_reader {
    void *user_sid;               /* sections must be owned by this user */
    mapped_section mapped[MAPPED_SECTIONS];
    ring rings[CD_MAX_RINGS];
    UINT ring_message;            /* CD_RING_MESSAGE's number (0: none, so no ring is armed) */
} shm_reader;

/* A batch or part frame in a section of the sender's (queue mode). */
LRESULT cd__accept_section(cd_receiver *r, const arrival *a, const cd_section_descriptor *descriptor);
/* A posted CD_RING_MESSAGE. */
void cd__take_announced(cd_receiver *r, uint64_t id, uint64_t lease);
/* Sync mode: a section's records, handed over where they are. */
LRESULT cd__hand_over_section(cd_receiver *r, const arrival *a, const cd_section_descriptor *descriptor);
/* Forgets the sections and rings unused for a while; with close, every one. */
void cd__shm_sweep(cd_receiver *r, ULONGLONG now);
void cd__shm_close(cd_receiver *r);


/*
 * The refusal log (refusals.c)
 */

/* Refusals kept for on_error (config.report_refusals): a ring, then counts by reason. Guarded
 * by the lock. */
typedef struct refusal_log {
    cd_refusal ring[CD_REFUSAL_RING];
    size_t first;
    size_t count;
    cd_refusal merged[CD_REASON_COUNT];
    int ended;                    /* discarded: nothing more will be reported */
} refusal_log;

/* Counts a refused message and keeps it for on_error: FALSE, the answer to its sender. */
LRESULT cd__refuse(cd_receiver *r, int reason, const arrival *a);
/* A frame (or a split message) refused for its size alone, which no wait would change. */
LRESULT cd__refuse_never_fits(cd_receiver *r, const arrival *a);
/* Sync mode takes no parts; a Sender hearing so sends its large messages whole instead. */
LRESULT cd__refuse_part(cd_receiver *r, const arrival *a);
/* What cd__refuse does, for a caller that holds the lock. */
void cd__count_refusal(cd_receiver *r, int reason, const arrival *a);
/* Keeps a refusal for on_error, uncounted (a message dropped, or one Python refused); the
 * caller holds the lock. */
void cd__report(cd_receiver *r, int reason, const arrival *a);


/*
 * A receiver: one part per concern above
 */

struct cd_receiver {
    cd_receiver_config config;
    SRWLOCK lock;                 /* guards the stats, and what each part says */
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

/* With the lock held: waits up to timeout_ms (from start) until ready(r). CD_OK once it is,
 * CD_CLOSED if *ended is set first, else CD_TIMEOUT; the lock is held again either way. Both
 * takes wait so, for messages (queue.c) and for refusals (refusals.c). */
static inline int cd__wait_until(cd_receiver *r, int (*ready)(const cd_receiver *), const int *ended,
                                 ULONGLONG start, uint32_t timeout_ms)
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

#endif
