"""The cffi description of copydata._core: used by setup.py and by tools/winenv.py.

    python copydata/_ffi_build.py --emit-c OUT.c   writes the module's C source only
"""

import sys
import sysconfig
from pathlib import Path

from cffi import FFI

ROOT = Path(__file__).resolve().parent.parent
CSRC = ROOT / "csrc"
# setup.py passes paths relative to the project; the cross build runs from anywhere.
SOURCES = [f"csrc/{path.name}" for path in sorted(CSRC.glob("*.c"))]

ffibuilder = FFI()
ffibuilder.set_source(
    "copydata._core",
    '#include "copydata.h"',
    sources=SOURCES,
    include_dirs=["csrc"],
    libraries=["user32", "kernel32", "advapi32", "bcrypt"],
    # One build serves every CPython from 3.9 on; free-threaded builds have no limited API.
    py_limited_api=not sysconfig.get_config_var("Py_GIL_DISABLED"),
)

ffibuilder.cdef(
    """
#define CD_MAX_NAME_LENGTH ...
#define CD_WAIT_FOREVER ...
#define CD_CHANNEL_SLOTS ...
#define CD_NO_CODEC ...
#define CD_ENVELOPE_HEADER_SIZE ...
#define CD_BATCH_RECORD_HEADER_SIZE ...
#define CD_KIND_BATCH ...
#define CD_KIND_PART ...
#define CD_PART_HEADER_SIZE ...
#define CD_MAX_TRANSFERS ...
#define CD_KIND_SECTION ...
#define CD_ANSWER_SECTION_KEPT ...
#define CD_ANSWER_NO_PARTS ...
#define CD_ANSWER_LEASED ...
#define CD_ANSWER_NEVER_FITS ...
#define CD_ANSWER_LEASED_RING ...
#define CD_RING_SIZE ...
#define CD_RING_IDLE_MS ...
#define CD_BATCH_MAX_RECORDS ...
#define CD_LEASE_MIN_RECORD ...
#define CD_PACK_MESSAGE_LIMIT ...
#define CD_PACK_BLOCK_LIMIT ...
#define CD_SECTION_HEADER_SIZE ...
#define CD_SECTION_SECRET_SIZE ...
#define CD_SECTION_DATA_OFFSET ...
#define CD_MAX_SECTION_NAME ...
#define CD_KIND_SEALED ...
#define CD_SEAL_HEADER_SIZE ...
#define CD_SEAL_SIGNED_SIZE ...
#define CD_MAC_SIZE ...
#define CD_MIN_KEY_SIZE ...
#define CD_MAX_KEY_SIZE ...
#define CD_SEAL_MAX_AGE_MS ...
#define CD_REFUSAL_RING ...

enum cd_status {
    CD_OK, CD_TIMEOUT, CD_CLOSED, CD_TARGET_GONE, CD_WIN32_ERROR, CD_NO_MEMORY,
    CD_NAME_IN_USE, CD_NOT_FOUND, CD_INVALID, CD_FULL
};

enum cd_registry_kind { CD_REGISTRY_NAME, CD_REGISTRY_CHANNEL };

enum cd_reason {
    CD_REASON_TOO_LARGE = 1, CD_REASON_QUEUE_FULL, CD_REASON_MALFORMED, CD_REASON_CLOSING,
    CD_REASON_PARTS_IN_SYNC_MODE, CD_REASON_SECTION, CD_REASON_UNAUTHENTICATED, CD_REASON_REPLAYED,
    CD_REASON_INCOMPLETE, CD_REASON_PICKLE, CD_REASON_UNDECODABLE, CD_REASON_COUNT
};

typedef struct cd_refusal {
    int reason;
    uint64_t tag;
    uint64_t sender;
    uint64_t size;
    uint64_t count;
} cd_refusal;

typedef struct cd_lease cd_lease;

typedef struct cd_message {
    struct cd_message *next;
    uint64_t tag;
    uint64_t sender;
    size_t size;
    const char *data;
    int codec_id;
    void *section;
    cd_lease *lease;
    ...;
} cd_message;

typedef struct cd_packed_row {
    uint64_t tag;
    uint64_t sender;
    uint64_t offset;
    uint64_t size;
    int32_t codec_id;
    uint32_t packed;
} cd_packed_row;

typedef struct cd_stats {
    uint64_t received_messages;
    uint64_t received_bytes;
    uint64_t refused_messages;
    uint64_t refused_bytes;
    uint64_t refused_too_large;
    uint64_t refused_queue_full;
    uint64_t refused_malformed;
    uint64_t refused_closing;
    uint64_t refused_parts_in_sync_mode;
    uint64_t refused_section;
    uint64_t refused_unauthenticated;
    uint64_t refused_replayed;
    uint64_t dropped_messages;
    uint64_t dropped_bytes;
    uint64_t dropped_incomplete;
    uint64_t queued_messages;
    uint64_t queued_bytes;
    uint64_t assembling_messages;
    uint64_t assembling_bytes;
    uint64_t pump_errors;
    uint64_t leased_messages;
    uint64_t ring_frames;
} cd_stats;

typedef struct cd_receiver_config {
    size_t max_message_size;
    size_t max_queue_messages;
    size_t max_queue_bytes;
    int sync;
    int allow_lower_integrity;
    int unpack_batches;
    size_t max_transfer_size;
    uint32_t part_timeout_ms;
    const unsigned char *key;
    size_t key_size;
    int report_refusals;
    int pass_sealed;
} cd_receiver_config;

typedef struct cd_ring_block {
    uint64_t ring_id;
    uint64_t lease_id;
    uint64_t offset;
    uint64_t length;
    uint64_t release_offset;
    uint64_t answer;
} cd_ring_block;

typedef struct cd_section_header {
    unsigned char magic[8];
    unsigned char secret[16];
    uint64_t release_words[2];
    uint64_t reserved[3];
    cd_ring_block ring;
} cd_section_header;

typedef struct cd_batch {
    unsigned char *data;
    size_t size;
    size_t capacity;
    size_t records;
    int borrowed;
} cd_batch;

typedef struct cd_receiver cd_receiver;
typedef struct cd_registration cd_registration;

int cd_receiver_open(const cd_receiver_config *config, cd_receiver **receiver, uint32_t *win32_error);
uint64_t cd_receiver_hwnd(const cd_receiver *receiver);
int cd_receiver_take(cd_receiver *receiver, size_t max_count, uint32_t timeout_ms, cd_message **first,
                     size_t *leased);
void cd_messages_free(cd_message *first);
int cd_messages_pack(cd_message *first, char **block, size_t *block_size, size_t *count, cd_message **rest,
                     cd_message **after);
void cd_block_free(char *block);
void cd_message_release(const char *data);
void cd_message_free(cd_message *message);
void cd_receiver_reply(cd_receiver *receiver, cd_message *message, intptr_t result);
const void *cd_receiver_keep_section(cd_receiver *receiver, cd_message *message);
void cd_kept_section_release(const void *kept);
void cd_receiver_stats(cd_receiver *receiver, cd_stats *stats);
int cd_receiver_take_refusals(cd_receiver *receiver, cd_refusal *refusals, size_t capacity, uint32_t timeout_ms,
                              size_t *count);
void cd_receiver_report(cd_receiver *receiver, int reason, uint64_t tag, uint64_t sender, uint64_t size);
void cd_receiver_close(cd_receiver *receiver);
void cd_receiver_discard(cd_receiver *receiver);
void cd_receiver_free(cd_receiver *receiver);

int cd_send(uint64_t target, uint64_t tag, uint64_t sender, const void *data, size_t size,
            uint32_t timeout_ms, uint32_t flags, intptr_t *result, uint32_t *win32_error);
uint32_t cd_ring_message(void);
int cd_post_ring(uint64_t target, uint32_t message, uint64_t ring_id, uint64_t lease_id, uint32_t *win32_error);
int cd_window_exists(uint64_t target);
int cd_window_tag_bits(uint64_t target, uint32_t *bits, uint32_t *win32_error);

int cd_registry_claim(int kind, const wchar_t *name, uint64_t hwnd, cd_registration **registration,
                      uint32_t *win32_error);
void cd_registry_withdraw(cd_registration *registration);
int cd_registry_list(int kind, const wchar_t *name, uint64_t *hwnds, uint32_t capacity, uint32_t *found,
                     uint32_t *win32_error);
int cd_batch_start(cd_batch *batch, int codec_id);
int cd_batch_add(cd_batch *batch, uint64_t tag, const void *data, size_t size, size_t max_bytes);
int cd_batch_move(cd_batch *batch, void *memory, size_t capacity);
void cd_batch_release(cd_batch *batch);
int cd_batch_check(const unsigned char *data, size_t size, size_t *records, size_t *record_bytes,
                   int *codec_id);
typedef struct cd_section cd_section;
int cd_section_create(const wchar_t *name, uint64_t size, cd_section **section, uint32_t *win32_error);
void *cd_section_view(cd_section *section);
void cd_section_close(cd_section *section);
uint64_t cd_now_ms(void);
int cd_find_window(const wchar_t *class_name, const wchar_t *title, uint64_t *hwnd);
"""
)

if __name__ == "__main__":
    if sys.argv[1:2] == ["--emit-c"] and len(sys.argv) == 3:
        ffibuilder.emit_c_code(sys.argv[2])
    else:
        sys.exit(__doc__)
