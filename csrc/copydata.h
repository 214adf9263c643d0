/*
 * copydata core: receiver windows that take WM_COPYDATA into a bounded queue, sending with
 * SendMessageTimeoutW, and publishing a receiver's window under a name.
 *
 * This header is what Python sees, through cffi: the API of copydata._core, and the numbers and
 * layouts of the protocol. What only the C files call one another for is in internal.h (and
 * frames.h, the frame checks that build without Windows).
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

/* The protocol's layouts are structs checked at compile time, each by a typedef that no
 * compiler takes if the check fails (an array of -1 bytes), MSVC's C included.
 * A frame is a byte string that may lie anywhere in a buffer, so the headers of frames are
 * made of byte arrays: alignment 1, no padding, sizeof their size on the wire. Their numbers
 * are little-endian (as every Windows target is), read and written whole (frames.c). The words
 * of a section's own header, by contrast, are aligned 64-bit words that both processes read
 * and write as such (cd_section_header, cd_ring_block). */
#define CD_LAYOUT_CHECK(name, condition) typedef char cd_layout_check_##name[(condition) ? 1 : -1]

/* The envelope (copydata/_envelope.py says what else it carries): a header in front of a
 * payload that is not plain bytes, and of each of copydata's frames. */
#define CD_ENVELOPE_MAGIC "\x89" "CDE"
#define CD_ENVELOPE_VERSION 1
#define CD_ENVELOPE_HEADER_SIZE 16
typedef struct cd_envelope_header {
    unsigned char magic[4];       /* CD_ENVELOPE_MAGIC */
    unsigned char version;        /* CD_ENVELOPE_VERSION */
    unsigned char codec;          /* how the body is encoded (0: bytes) */
    unsigned char kind;           /* CD_KIND_* for a frame */
    unsigned char flags;          /* 0 */
    unsigned char request_id[8];  /* u64; a part's transfer id, a descriptor's lease id */
} cd_envelope_header;
CD_LAYOUT_CHECK(envelope_header, sizeof(cd_envelope_header) == CD_ENVELOPE_HEADER_SIZE);
/* A batch frame: an envelope of kind CD_KIND_BATCH (request id 0) whose body is records, each
 * a cd_record_header and then its size bytes, back to back, at least one. */
#define CD_KIND_BATCH 4
#define CD_BATCH_RECORD_HEADER_SIZE 12
typedef struct cd_record_header {
    unsigned char tag[8];         /* u64 */
    unsigned char size[4];        /* u32: the record's bytes that follow */
} cd_record_header;
CD_LAYOUT_CHECK(record_header, sizeof(cd_record_header) == CD_BATCH_RECORD_HEADER_SIZE);
/* A part frame: a cd_part_header, then the part's bytes. */
#define CD_KIND_PART 5
#define CD_PART_HEADER_SIZE 32
typedef struct cd_part_header {
    cd_envelope_header envelope;  /* kind CD_KIND_PART; request id: the transfer id, nonzero */
    unsigned char total[8];       /* u64: the whole message's size */
    unsigned char offset[8];      /* u64: where in it this part goes */
} cd_part_header;
CD_LAYOUT_CHECK(part_header, sizeof(cd_part_header) == CD_PART_HEADER_SIZE);
#define CD_MAX_TRANSFERS 64
/* A section descriptor: a cd_descriptor_header (CD_SECTION_HEADER_SIZE bytes: the
 * descriptor's, not the section's own cd_section_header), then the section's name in UTF-16
 * (no NUL). The range it names in that section holds a batch frame or a part frame
 * of the descriptor's codec (a part's tag is the descriptor's dwData). A receiver in queue
 * mode answers once it has checked the frame and before it copies it out: the sender then
 * writes its next frame elsewhere in the section, and may reuse this range once the receiver
 * has answered a later message of its, which the receiver takes only after the copy.
 * With a lease id, the release offset names an 8-byte word of the section outside the range,
 * and the receiver may answer CD_ANSWER_LEASED instead: it keeps records of the frame where
 * they are (Python reads them there, no copy), and writes the lease id into the release word
 * once it is done with all of them. The sender reuses the range only after that. */
#define CD_KIND_SECTION 6
#define CD_SECTION_HEADER_SIZE 68
#define CD_SECTION_SECRET_SIZE 16
typedef struct cd_descriptor_header {
    cd_envelope_header envelope;  /* kind CD_KIND_SECTION; request id: the lease id (0: none) */
    unsigned char offset[8];      /* u64: the range, in the section */
    unsigned char length[8];      /* u64 */
    unsigned char release_offset[8];  /* u64: with a lease, the release word (else 0) */
    unsigned char ring_offset[8];     /* u64: with a lease, the ring block (0: none) */
    unsigned char secret[CD_SECTION_SECRET_SIZE];  /* the section header's */
    unsigned char name_length[4]; /* u32: the name's length in UTF-16 units */
} cd_descriptor_header;
CD_LAYOUT_CHECK(descriptor_header, sizeof(cd_descriptor_header) == CD_SECTION_HEADER_SIZE);
/* Every section starts with a cd_section_header. Its secret proves a descriptor's right to the
 * section: anyone can list section names, only those its creator lets read it know the secret.
 * A receiver reads nothing of the range, and writes no release word, until the section's magic
 * and secret match the descriptor's. A Sender's frames lie from CD_SECTION_DATA_OFFSET on. */
#define CD_SECTION_MAGIC "cd.shm.1"  /* 8 bytes, no NUL */
#define CD_SECTION_DATA_OFFSET 4096
/* A ring block: CD_RING_SIZE bytes at a descriptor's ring offset, outside its range, in which a
 * sender announces its next frames without a round trip each (a Sender does while a queue-mode
 * receiver reads its frames in place, so that it copies the next frame meanwhile):
 * a cd_ring_block: the ring id, then the frame announced, then the receiver's answer, the one
 * it would have given to a descriptor.
 * A receiver without a key that leases a frame offered with a ring block answers
 * CD_ANSWER_LEASED_RING and remembers the ring. The sender may then announce the next frame,
 * lease id one higher, in the ring block and post CD_RING_MESSAGE to the receiver's window
 * (wParam the ring id, lParam the lease id), and must wait for its answer before it sends or
 * announces anything else. A receiver checks an announced frame as it checks a descriptor.
 * lParam 0 says the sender is done with the ring. A receiver forgets a ring unused for
 * CD_RING_IDLE_MS, so a sender announces nothing after half as long unused. */
#define CD_RING_SIZE 48
typedef struct cd_ring_block {
    uint64_t ring_id;         /* random, nonzero, below 2^32 (a posted WPARAM): written once by the sender */
    uint64_t lease_id;        /* the frame announced: the sender writes these four, lease_id last */
    uint64_t offset;
    uint64_t length;
    uint64_t release_offset;
    uint64_t answer;          /* the receiver's: lease_id << 8 | its answer */
} cd_ring_block;
CD_LAYOUT_CHECK(ring_block, sizeof(cd_ring_block) == CD_RING_SIZE);
typedef struct cd_section_header {
    unsigned char magic[8];   /* CD_SECTION_MAGIC */
    unsigned char secret[CD_SECTION_SECRET_SIZE];
    uint64_t release_words[2];  /* a Sender's, one per half */
    uint64_t reserved[3];
    cd_ring_block ring;         /* a Sender's ring block */
} cd_section_header;
CD_LAYOUT_CHECK(section_header, offsetof(cd_section_header, release_words) == 24
                                && offsetof(cd_section_header, ring) == 64 && sizeof(cd_section_header) == 112);
#define CD_RING_MESSAGE L"copydata.v1.ring"
#define CD_RING_IDLE_MS 60000
#define CD_MAX_RINGS 64
#define CD_SECTION_PREFIX "Local\\copydata.v1.shm."   /* ASCII; names are UTF-16 */
#define CD_MAX_SECTION_NAME 128
/* What a receiver answers a section descriptor when views of the section outlive the
 * message (sync mode, copy=False): accepted, and the sender must not write there again. */
#define CD_ANSWER_SECTION_KEPT 2
/* What a receiver answers a part it refuses because it takes no parts (sync mode): a sender
 * may send that message whole instead. */
#define CD_ANSWER_NO_PARTS 3
/* What a receiver answers a frame offered with a lease when it keeps records in place. */
#define CD_ANSWER_LEASED 4
/* What a receiver answers a batch frame, or a split message's first part, that it refuses
 * for its size alone: more messages or bytes than its queue holds even when empty, more than
 * max_transfer_size, or (in WM_COPYDATA itself) more than max_message_size. No wait changes
 * that, so a sender does not offer it again. */
#define CD_ANSWER_NEVER_FITS 5
/* CD_ANSWER_LEASED, and the receiver takes the next frame announced in the descriptor's ring block. */
#define CD_ANSWER_LEASED_RING 6
/* Records from this size up are kept in place under a lease; smaller ones are copied, so that
 * a small message held long keeps at most a few times its size of the section mapped. */
#define CD_LEASE_MIN_RECORD (1u << 20)
/* A sealed frame, for receivers with a key: a cd_seal_header, then the inner payload, which is
 * any other payload. The MAC covers the target window (u64, its low 32 bits), the tag (u64),
 * the CD_SEAL_SIGNED_SIZE bytes before the MAC, and the inner payload. */
#define CD_KIND_SEALED 7
#define CD_SEAL_HEADER_SIZE 72
#define CD_SEAL_SIGNED_SIZE 40
#define CD_MAC_SIZE 32
typedef struct cd_seal_header {
    cd_envelope_header envelope;  /* kind CD_KIND_SEALED, codec 0, request id 0 */
    unsigned char sealer_id[8];   /* u64: random, nonzero */
    unsigned char counter[8];     /* u64: from 1 */
    unsigned char time_ms[8];     /* u64: the sealer's GetTickCount64() */
    unsigned char mac[CD_MAC_SIZE];  /* HMAC-SHA256 */
} cd_seal_header;
CD_LAYOUT_CHECK(seal_header, sizeof(cd_seal_header) == CD_SEAL_HEADER_SIZE
                             && offsetof(cd_seal_header, mac) == CD_SEAL_SIGNED_SIZE);
#define CD_MIN_KEY_SIZE 16
#define CD_MAX_KEY_SIZE 1024
/* How far a seal's time may lie behind the receiver's clock (and ahead of it), and how many
 * counters below the newest one from a sealer may still arrive late, once each. */
#define CD_SEAL_MAX_AGE_MS 60000
#define CD_SEAL_MAX_AHEAD_MS 1000
#define CD_REPLAY_WINDOW 64
#define CD_MAX_SEALERS 4096
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

/* Why a receiver refused or dropped a message: what on_error hears, and which count grew. */
enum cd_reason {
    CD_REASON_TOO_LARGE = 1,
    CD_REASON_QUEUE_FULL = 2,
    CD_REASON_MALFORMED = 3,
    CD_REASON_CLOSING = 4,
    CD_REASON_PARTS_IN_SYNC_MODE = 5,
    CD_REASON_SECTION = 6,
    CD_REASON_UNAUTHENTICATED = 7, /* no seal, or a seal whose MAC does not verify with the key */
    CD_REASON_REPLAYED = 8,        /* a valid seal seen before, or too old */
    CD_REASON_INCOMPLETE = 9,      /* a split message dropped: its next part never came */
    CD_REASON_PICKLE = 10,         /* reported by Python: pickle not allowed */
    CD_REASON_UNDECODABLE = 11,    /* reported by Python: the codec failed */
    CD_REASON_COUNT = 12
};

/* One or more refusals for on_error; count > 1 when they were merged because the ring was full. */
typedef struct cd_refusal {
    int reason;
    uint64_t tag;
    uint64_t sender;
    uint64_t size;
    uint64_t count;
} cd_refusal;
#define CD_REFUSAL_RING 1024

enum cd_registry_kind {
    CD_REGISTRY_NAME = 0,    /* one receiver per name */
    CD_REGISTRY_CHANNEL = 1  /* up to CD_CHANNEL_SLOTS subscribers per channel */
};

typedef struct cd_lease cd_lease;

typedef struct cd_message {
    struct cd_message *next;
    uint64_t tag;         /* COPYDATASTRUCT.dwData */
    uint64_t sender;      /* wParam: the window the sender names as its own, unverified */
    size_t size;
    const char *data;     /* async mode: a copy owned by the queue; sync mode: the sender's bytes */
    int codec_id;         /* a batch record's envelope codec; CD_NO_CODEC for a whole WM_COPYDATA */
    struct cd_pool *pool; /* large messages: the pool their block goes back to */
    size_t capacity;      /* ... and the block's size */
    /* sync mode only: the section the bytes are in (from a Sender), else NULL ... */
    void *section;
    /* queue mode: set when data lies in a sender's section, held under this lease */
    cd_lease *lease;
    /* ... and, guarded by the receiver's lock: */
    int taken;
    int replied;
    intptr_t result;
} cd_message;

#define CD_PACK_MESSAGE_LIMIT 4096u
/* A kept view of one small message keeps its whole block: this bounds what it keeps. */
#define CD_PACK_BLOCK_LIMIT (256u << 10)

typedef struct cd_packed_row {
    uint64_t tag;
    uint64_t sender;
    uint64_t offset;    /* packed: where the payload lies in the block */
    uint64_t size;
    int32_t codec_id;
    uint32_t packed;    /* 0: the message is the next one left in the list, with its own buffer */
} cd_packed_row;

typedef struct cd_stats {
    uint64_t received_messages;   /* accepted into the queue */
    uint64_t received_bytes;
    uint64_t refused_messages;    /* answered 0: too large, queue full, malformed or closing */
    uint64_t refused_bytes;
    uint64_t refused_too_large;
    uint64_t refused_queue_full;
    uint64_t refused_malformed;
    uint64_t refused_closing;
    uint64_t refused_parts_in_sync_mode;
    uint64_t refused_section;     /* a descriptor naming a section that is missing, not ours, or too small */
    uint64_t refused_unauthenticated; /* keyed receiver: no seal, or a MAC that does not verify */
    uint64_t refused_replayed;    /* keyed receiver: a seal seen before, too old, or from too many sealers */
    uint64_t dropped_messages;    /* accepted, then discarded undelivered at close */
    uint64_t dropped_bytes;
    uint64_t dropped_incomplete;  /* split messages dropped: a part was missing for too long */
    uint64_t queued_messages;     /* waiting to be taken now */
    uint64_t queued_bytes;
    uint64_t assembling_messages; /* split messages whose parts are still arriving */
    uint64_t assembling_bytes;    /* the memory they hold */
    uint64_t pump_errors;         /* times GetMessageW failed and the loop went on */
    uint64_t leased_messages;     /* queued where they lay in a sender's section, under a lease */
    uint64_t ring_frames;         /* frames taken as announced in a ring block, with no round trip */
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
    const unsigned char *key;   /* non-NULL: refuse everything not sealed with this key (copied) */
    size_t key_size;
    int report_refusals;        /* nonzero: keep refusals for cd_receiver_take_refusals */
    int pass_sealed;            /* no key: take sealed frames as plain bytes (they are refused otherwise) */
} cd_receiver_config;

typedef struct cd_receiver cd_receiver;
typedef struct cd_registration cd_registration;

/* Creates a message-only window on a new pump thread. */
int cd_receiver_open(const cd_receiver_config *config, cd_receiver **receiver, uint32_t *win32_error);
uint64_t cd_receiver_hwnd(const cd_receiver *receiver);

/*
 * Waits up to timeout_ms for a message, then detaches up to max_count queued messages as a
 * list in arrival order (leased: how many of them have a lease). Async mode: free the list
 * with cd_messages_free. Sync mode: one message at a time, answered with cd_receiver_reply
 * and never freed by the caller.
 * Returns CD_OK, CD_TIMEOUT, or CD_CLOSED once the receiver is closed and drained.
 */
int cd_receiver_take(cd_receiver *receiver, size_t max_count, uint32_t timeout_ms, cd_message **first,
                     size_t *leased);
void cd_messages_free(cd_message *first);
/*
 * Async mode: copies the payloads of the small messages of a taken list (at most
 * CD_PACK_MESSAGE_LIMIT bytes each, none with a lease) into one block and frees those messages,
 * so that Python makes one object for many messages instead of one per message. It goes from
 * first until the next small message would take the payloads past CD_PACK_BLOCK_LIMIT: *after
 * is that message, the start of what is left for the next block (NULL: the whole list is done).
 * The block starts with one cd_packed_row per message before *after, in order (*count of them),
 * then the payloads; free it with cd_block_free. Those not packed are moved to the list *rest,
 * in order, to be freed as cd_receiver_take's are. On CD_NO_MEMORY nothing changed.
 */
int cd_messages_pack(cd_message *first, char **block, size_t *block_size, size_t *count, cd_message **rest,
                     cd_message **after);
/*
 * Async mode: gathers a taken list into one block laid out in columns, for Python's
 * MessageBatch: u64 tags[count], u64 senders[count], u64 offsets[count] (of each payload in the
 * data), u64 sizes[count], i32 codec_ids[count], then, from CD_COLUMNS_SIZE(count), every
 * payload back to back. Every message is copied in and freed (a leased one's lease released).
 * Free the block with cd_block_free. On CD_NO_MEMORY nothing changed.
 */
#define CD_COLUMNS_SIZE(count) ((36u * (size_t)(count) + 7u) & ~(size_t)7u)
int cd_messages_pack_columns(cd_message *first, char **block, size_t *block_size, size_t *count);
void cd_block_free(char *block);
/* Frees one async-mode message, given its data pointer: for buffers handed to Python as they
 * are, but for messages with a lease (cd_receiver_take counts them in leased), whose data lies
 * in the sender's section: free those with cd_message_free. */
void cd_message_release(const char *data);
void cd_message_free(cd_message *message);
void cd_receiver_reply(cd_receiver *receiver, cd_message *message, intptr_t result);
/*
 * Sync mode, before the reply to a message whose section is not NULL: the receiver forgets
 * that mapping and shares it with the caller, for views of it that outlive the callback.
 * Returns a reference to pass to cd_kept_section_release once those views are gone; the
 * mapping goes with the last reference.
 */
const void *cd_receiver_keep_section(cd_receiver *receiver, cd_message *message);
void cd_kept_section_release(const void *kept);

void cd_receiver_stats(cd_receiver *receiver, cd_stats *stats);

/* Waits up to timeout_ms for refusals, then moves up to capacity of them into refusals (their
 * number in count). CD_OK, CD_TIMEOUT, or CD_CLOSED once the receiver was discarded and every
 * refusal taken. Refusals beyond CD_REFUSAL_RING waiting are merged by reason. */
int cd_receiver_take_refusals(cd_receiver *receiver, cd_refusal *refusals, size_t capacity, uint32_t timeout_ms,
                              size_t *count);
/* Adds a refusal that Python found (CD_REASON_PICKLE, CD_REASON_UNDECODABLE). */
void cd_receiver_report(cd_receiver *receiver, int reason, uint64_t tag, uint64_t sender, uint64_t size);

/* Destroys the window and ends its thread; queued messages stay takeable. Idempotent. */
void cd_receiver_close(cd_receiver *receiver);
/* Frees the messages still queued, counting them as dropped. */
void cd_receiver_discard(cd_receiver *receiver);
/* Closes, discards and frees the receiver itself. */
void cd_receiver_free(cd_receiver *receiver);

/* One SendMessageTimeoutW(WM_COPYDATA) straight from the caller's buffer. */
int cd_send(uint64_t target, uint64_t tag, uint64_t sender, const void *data, size_t size,
            uint32_t timeout_ms, uint32_t flags, intptr_t *result, uint32_t *win32_error);
/* The floor that copydata demo measures copydata against, in the caller's process, as a plain
 * C program does it (bench/native/wm_copydata_send.c): count WM_COPYDATA messages of size
 * bytes from payload, one SendMessageTimeoutW each (SMTO_ABORTIFHUNG, dwData and wParam 0),
 * the payload's first CD_FLOOR_STAMP_SIZE bytes stamped before each with its number (first,
 * first + 1, ..., little-endian). It stops at the first failure, or at the first message
 * answered 0 (CD_OK then, with *sent short of count): *sent is how many were answered nonzero.
 * CD_INVALID if size is below CD_FLOOR_STAMP_SIZE or above 4 GiB - 1. */
#define CD_FLOOR_STAMP_SIZE 8
int cd_floor_send(uint64_t target, unsigned char *payload, size_t size, uint64_t first, size_t count,
                  uint32_t timeout_ms, size_t *sent, uint32_t *win32_error);
/* And this machine's memcpy, as bench/native/memcpy_bandwidth.c measures it: size bytes (at least
 * CD_FLOOR_STAMP_SIZE) copied from source to target count times, source stamped with the copy's
 * number before each, every copy made. 1 if the last copy equals source, 0 if not (or size is
 * too small, or count 0). The caller times it. */
int cd_floor_memcpy(unsigned char *target, unsigned char *source, size_t size, size_t count);
/* CD_RING_MESSAGE's number on this desktop (0: RegisterWindowMessageW failed), and posting it
 * (see CD_RING_SIZE): CD_OK, CD_TARGET_GONE or CD_WIN32_ERROR. */
uint32_t cd_ring_message(void);
int cd_post_ring(uint64_t target, uint32_t message, uint64_t ring_id, uint64_t lease_id, uint32_t *win32_error);
int cd_window_exists(uint64_t target);
/* How many bits of dwData the process behind the window receives: 32 for a 32-bit program
 * (WOW64), whose ULONG_PTR drops the rest, else 64. CD_OK, CD_TARGET_GONE, or CD_WIN32_ERROR
 * when the process cannot be inspected (bits then says only what this process can send). */
int cd_window_tag_bits(uint64_t target, uint32_t *bits, uint32_t *win32_error);

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
    int borrowed;          /* data is the caller's memory (a section): never grown or freed */
} cd_batch;

/* Empties the batch and writes the envelope header for codec_id. */
int cd_batch_start(cd_batch *batch, int codec_id);
/* At most this many records a frame: a receiver with the default max_queue_messages (100,000)
 * takes any frame a Sender builds, however small its messages. */
#define CD_BATCH_MAX_RECORDS 65536
/* Appends a record, unless the batch has records already and this one would take it past
 * max_bytes or CD_BATCH_MAX_RECORDS, or the batch's memory is borrowed and too small: then
 * CD_FULL, and the caller sends the batch first (or lends it more memory). */
int cd_batch_add(cd_batch *batch, uint64_t tag, const void *data, size_t size, size_t max_bytes);
/* cd_batch_append only if the frame stays within limit_lent bytes in lent memory (and within
 * that memory), limit_own in its own, and its records within CD_BATCH_MAX_RECORDS: else CD_FULL,
 * with nothing added, whatever the frame holds (an empty one too). A Sender's common case. */
int cd_batch_add_within(cd_batch *batch, uint64_t tag, const char *data, size_t size, size_t limit_lent,
                        size_t limit_own);
/* Records start, start + 1, ... up to count, as cd_batch_add_within adds each, while each is at
 * most largest bytes: their bytes back to back in data (data_size in all) from *offset, their
 * sizes in sizes[], their tags in tags[] (NULL: tag for all). *added says how many went in, and
 * *offset moves past them. CD_INVALID if a size runs past data_size. */
int cd_batch_add_many(cd_batch *batch, const uint64_t *tags, uint64_t tag, const char *data, size_t data_size,
                      const uint64_t *sizes, size_t start, size_t count, size_t largest, size_t *offset,
                      size_t limit_lent, size_t limit_own, size_t *added);
/* Moves the frame so far into memory of the caller's (CD_FULL if it does not fit), where it
 * goes on growing up to capacity; the batch's own memory is freed. */
int cd_batch_move(cd_batch *batch, void *memory, size_t capacity);
void cd_batch_release(cd_batch *batch);

/* Checks a payload: 0 when it is no batch frame, 1 for a valid one (its record count, their
 * total size and its codec set), -1 for a batch frame that is malformed. */
int cd_batch_check(const unsigned char *data, size_t size, size_t *records, size_t *record_bytes,
                   int *codec_id);

typedef struct cd_section cd_section;

/* A section of size bytes under name (in CD_SECTION_PREFIX's namespace), owned by and open
 * only to the current user, committed, mapped for writing, its header written (a fresh random
 * secret). CD_NAME_IN_USE if the name exists already. */
int cd_section_create(const wchar_t *name, uint64_t size, cd_section **section, uint32_t *win32_error);
void *cd_section_view(cd_section *section);
void cd_section_close(cd_section *section);

/* GetTickCount64(): one clock for every process of the machine, which seals are stamped with. */
uint64_t cd_now_ms(void);

/* A top-level or message-only window by class name and/or title (NULL: any). */
int cd_find_window(const wchar_t *class_name, const wchar_t *title, uint64_t *hwnd);

#endif
