/*
 * copydata core: receiver windows that take WM_COPYDATA into a bounded queue, sending with
 * SendMessageTimeoutW, and publishing a receiver's window under a name.
 *
 * Window handles travel as uint64_t so that the Python side never needs Windows types.
 * Every function that can fail returns a cd_status and, where Win32 said why, its error code.
 */
#ifndef COPYDATA_H
#define COPYDATA_H

#include <stddef.h>
#include <stdint.h>
#include <wchar.h>

#define CD_CLASS_NAME L"copydata.receiver.v1"
#define CD_NAME_PREFIX L"Local\\copydata.v1.name."
#define CD_CHANNEL_PREFIX L"Local\\copydata.v1.channel."
#define CD_CHANNEL_SLOTS 256
#define CD_MAX_NAME_LENGTH 128
#define CD_WAIT_FOREVER 0xFFFFFFFFu

/* The envelope (see copydata/_envelope.py for the whole layout) and the batch frame: an
 * envelope of kind CD_KIND_BATCH whose body is records of {u64 tag, u32 size, size bytes},
 * all little-endian, back to back, at least one. */
#define CD_ENVELOPE_MAGIC "\x89" "CDE"
#define CD_ENVELOPE_VERSION 1
#define CD_ENVELOPE_HEADER_SIZE 16
#define CD_KIND_BATCH 4
#define CD_BATCH_RECORD_HEADER_SIZE 12
/* A part frame: an envelope of kind CD_KIND_PART whose request-id field holds a nonzero
 * transfer id, then u64 total size and u64 offset of this part, then the part's bytes. */
#define CD_KIND_PART 5
#define CD_PART_HEADER_SIZE 32
#define CD_MAX_TRANSFERS 64
/* A section descriptor: an envelope of kind CD_KIND_SECTION (request id 0), then u64 offset,
 * u64 length, u32 name length in characters, then the section's name in UTF-16 (no NUL). */
#define CD_KIND_SECTION 6
#define CD_SECTION_HEADER_SIZE 36
#define CD_SECTION_PREFIX "Local\\copydata.v1.shm."   /* ASCII; names are UTF-16 */
#define CD_MAX_SECTION_NAME 128
#define CD_NO_CODEC (-1)

enum cd_status {
    CD_OK = 0,
    CD_TIMEOUT = 1,      /* nothing arrived, or the target did not answer, in time */
    CD_CLOSED = 2,       /* the receiver is closed and its queue is empty */
    CD_TARGET_GONE = 3,  /* the target window does not exist (any more) */
    CD_WIN32_ERROR = 4,  /* a Win32 call failed: see the error code */
    CD_NO_MEMORY = 5,
    CD_NAME_IN_USE = 6,  /* a live receiver already holds that name */
    CD_NOT_FOUND = 7,    /* no live receiver holds that name */
    CD_INVALID = 8,      /* an argument is out of range */
    CD_FULL = 9          /* every slot of a channel is held by a live receiver */
};

enum cd_registry_kind {
    CD_REGISTRY_NAME = 0,    /* one receiver per name */
    CD_REGISTRY_CHANNEL = 1  /* up to CD_CHANNEL_SLOTS subscribers per channel */
};

typedef struct cd_message {
    struct cd_message *next;
    uint64_t tag;         /* COPYDATASTRUCT.dwData */
    uint64_t sender;      /* wParam: the window the sender names as its own, unverified */
    size_t size;
    const char *data;     /* async mode: a copy owned by the queue; sync mode: the sender's bytes */
    int codec_id;         /* a batch record's envelope codec; CD_NO_CODEC for a whole WM_COPYDATA */
    /* sync mode only, guarded by the receiver's lock */
    int taken;
    int replied;
    intptr_t result;
} cd_message;

typedef struct cd_stats {
    uint64_t received_messages;   /* accepted into the queue */
    uint64_t received_bytes;
    uint64_t refused_messages;    /* answered 0: too large, queue full, malformed or closing */
    uint64_t refused_bytes;
    uint64_t refused_too_large;
    uint64_t refused_queue_full;
    uint64_t refused_malformed;
    uint64_t refused_closing;
    uint64_t refused_batch_in_sync_mode;
    uint64_t refused_section;     /* a descriptor naming a section that is missing, not ours, or too small */
    uint64_t dropped_messages;    /* accepted, then discarded undelivered at close */
    uint64_t dropped_bytes;
    uint64_t dropped_incomplete;  /* split messages dropped: a part was missing for too long */
    uint64_t queued_messages;     /* waiting to be taken now */
    uint64_t queued_bytes;
    uint64_t assembling_messages; /* split messages whose parts are still arriving */
    uint64_t assembling_bytes;    /* the memory they hold */
    uint64_t pump_errors;         /* times GetMessageW failed and the loop went on */
} cd_stats;

typedef struct cd_receiver_config {
    size_t max_message_size;
    size_t max_queue_messages;
    size_t max_queue_bytes;
    int sync;   /* nonzero: the window procedure waits for cd_receiver_reply */
    int allow_lower_integrity;  /* nonzero: let lower-integrity processes send WM_COPYDATA (UIPI) */
    int unpack_batches;         /* nonzero: take batch frames apart and part frames together */
    size_t max_transfer_size;   /* the largest message accepted in parts */
    uint32_t part_timeout_ms;   /* how long an incomplete message waits for its next part */
} cd_receiver_config;

typedef struct cd_receiver cd_receiver;
typedef struct cd_registration cd_registration;

/* Creates a message-only window on a new pump thread. */
int cd_receiver_open(const cd_receiver_config *config, cd_receiver **receiver, uint32_t *win32_error);
uint64_t cd_receiver_hwnd(const cd_receiver *receiver);

/*
 * Waits up to timeout_ms for a message, then detaches up to max_count queued messages as a
 * list in arrival order. Async mode: free the list with cd_messages_free. Sync mode: one
 * message at a time, answered with cd_receiver_reply and never freed by the caller.
 * Returns CD_OK, CD_TIMEOUT, or CD_CLOSED once the receiver is closed and drained.
 */
int cd_receiver_take(cd_receiver *receiver, size_t max_count, uint32_t timeout_ms, cd_message **first);
void cd_messages_free(cd_message *first);
void cd_receiver_reply(cd_receiver *receiver, cd_message *message, intptr_t result);

void cd_receiver_stats(cd_receiver *receiver, cd_stats *stats);

/* Destroys the window and ends its thread; queued messages stay takeable. Idempotent. */
void cd_receiver_close(cd_receiver *receiver);
/* Frees the messages still queued, counting them as dropped. */
void cd_receiver_discard(cd_receiver *receiver);
/* Closes, discards and frees the receiver itself. */
void cd_receiver_free(cd_receiver *receiver);

/* One SendMessageTimeoutW(WM_COPYDATA) straight from the caller's buffer. */
int cd_send(uint64_t target, uint64_t tag, uint64_t sender, const void *data, size_t size,
            uint32_t timeout_ms, uint32_t flags, intptr_t *result, uint32_t *win32_error);

/* Publishes hwnd under a name (exclusive) or in a channel, until cd_registry_withdraw. */
int cd_registry_claim(int kind, const wchar_t *name, uint64_t hwnd, cd_registration **registration,
                      uint32_t *win32_error);
void cd_registry_withdraw(cd_registration *registration);
/* The live windows under a name or in a channel: up to capacity of them in hwnds, how many
 * there are in found. Clears stale entries on the way. */
int cd_registry_list(int kind, const wchar_t *name, uint64_t *hwnds, uint32_t capacity, uint32_t *found,
                     uint32_t *win32_error);

/* Batch frames, built by a sender one record at a time. */
typedef struct cd_batch {
    unsigned char *data;   /* the whole frame: envelope header, then records */
    size_t size;
    size_t capacity;
    size_t records;
} cd_batch;

/* Empties the batch and writes the envelope header for codec_id. */
int cd_batch_start(cd_batch *batch, int codec_id);
int cd_batch_append(cd_batch *batch, uint64_t tag, const void *data, size_t size);
void cd_batch_release(cd_batch *batch);

/* Checks a payload: 0 when it is no batch frame, 1 for a valid one (its record count, their
 * total size and its codec set), -1 for a batch frame that is malformed. */
int cd_batch_check(const unsigned char *data, size_t size, size_t *records, size_t *record_bytes,
                   int *codec_id);

typedef struct cd_part {
    uint64_t transfer_id;
    uint64_t total;
    uint64_t offset;
    int codec_id;
    const unsigned char *data;
    size_t length;
} cd_part;

/* Checks a payload: 0 when it is no part frame, 1 for a valid one (described in part), -1 for
 * a part frame that is malformed (no transfer id, empty, or past its total). */
int cd_part_check(const unsigned char *data, size_t size, cd_part *part);

typedef struct cd_section cd_section;
typedef struct cd_section_descriptor {
    uint64_t offset;
    uint64_t length;
    int codec_id;
    uint16_t name[CD_MAX_SECTION_NAME + 1];  /* UTF-16, NUL-terminated: a wchar_t string on Windows */
} cd_section_descriptor;

/* Whether a UTF-16 name of that many units lies in copydata's section namespace: the prefix,
 * then at least one more unit, no backslash and no NUL, at most CD_MAX_SECTION_NAME in all. */
int cd_section_name_ok(const uint16_t *name, size_t length);

/* The process user's SID (free with cd_free_sid), the owner every section must have. */
void *cd_current_user_sid(void);
void cd_free_sid(void *sid);
/* A section of size bytes under name (in CD_SECTION_PREFIX's namespace), owned by and open
 * only to the current user, mapped for writing. CD_NAME_IN_USE if the name exists already. */
int cd_section_create(const wchar_t *name, uint64_t size, cd_section **section, uint32_t *win32_error);
void *cd_section_view(cd_section *section);
void cd_section_close(cd_section *section);
/* Checks a payload: 0 when it is no section descriptor, 1 for a valid one, -1 for a malformed one. */
int cd_section_check(const unsigned char *data, size_t size, cd_section_descriptor *descriptor);
/* Copies the described range into destination, if owner_sid owns the section and the range
 * lies inside it: CD_OK, CD_NOT_FOUND (no such section) or CD_INVALID. */
int cd_section_copy(const cd_section_descriptor *descriptor, const void *owner_sid, void *destination);

/* A top-level or message-only window by class name and/or title (NULL: any). */
int cd_find_window(const wchar_t *class_name, const wchar_t *title, uint64_t *hwnd);

#endif
