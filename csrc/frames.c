/*
 * copydata's own frames, inside the envelope:
 *   - batch frames: many messages in one WM_COPYDATA; a sender appends records to a growing
 *     frame, a receiver checks every length against the frame before it trusts any of them;
 *   - part frames: one piece of a message too large for one WM_COPYDATA;
 *   - section descriptors: where in a shared-memory section of the sender's a batch frame lies;
 *   - sealed frames: any payload behind a MAC, for receivers with a key.
 * Plain C over a byte buffer, so that it builds and is fuzzed on Linux too (fuzz/).
 */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"

static const unsigned char known_codecs[] = {0, 1, 2, 3, 4, 5, 255};

/* The layouts in shared memory, as copydata.h describes them to other implementations. */
typedef char ring_block_size_ok[sizeof(cd_ring_block) == CD_RING_SIZE ? 1 : -1];
typedef char section_header_layout_ok[offsetof(cd_section_header, release_words) == 24
                                      && offsetof(cd_section_header, ring) == 64
                                      && sizeof(cd_section_header) == 112 ? 1 : -1];
typedef char section_descriptor_size_ok[CD_SECTION_HEADER_SIZE == 16 + 4 * 8 + CD_SECTION_SECRET_SIZE + 4 ? 1 : -1];

static int envelope_kind(const unsigned char *data, size_t size)
{
    if (data == NULL || size < CD_ENVELOPE_HEADER_SIZE || memcmp(data, CD_ENVELOPE_MAGIC, 4) != 0
        || data[4] != CD_ENVELOPE_VERSION)
        return -1;
    return data[6];
}

int cd_is_sender_frame(const unsigned char *data, size_t size)
{
    int kind = envelope_kind(data, size);

    if (kind == CD_KIND_SEALED && size >= CD_SEAL_HEADER_SIZE)
        kind = envelope_kind(data + CD_SEAL_HEADER_SIZE, size - CD_SEAL_HEADER_SIZE);
    return kind == CD_KIND_BATCH || kind == CD_KIND_PART;
}

static int codec_is_known(int codec_id)
{
    size_t i;
    for (i = 0; i < sizeof known_codecs; i++)
        if (known_codecs[i] == codec_id)
            return 1;
    return 0;
}

static int reserve(cd_batch *batch, size_t more)
{
    size_t wanted, capacity;
    unsigned char *grown;

    if (more > SIZE_MAX - batch->size)
        return 0;
    wanted = batch->size + more;
    if (wanted <= batch->capacity)
        return 1;
    if (batch->borrowed)
        return 0;
    capacity = batch->capacity ? batch->capacity : 4096;
    while (capacity < wanted)
        capacity = capacity > SIZE_MAX / 2 ? wanted : capacity * 2;
    grown = (unsigned char *)realloc(batch->data, capacity);
    if (grown == NULL)
        return 0;
    batch->data = grown;
    batch->capacity = capacity;
    return 1;
}

int cd_batch_start(cd_batch *batch, int codec_id)
{
    if (!codec_is_known(codec_id))
        return CD_INVALID;
    batch->size = 0;
    batch->records = 0;
    if (!reserve(batch, CD_ENVELOPE_HEADER_SIZE))
        return CD_NO_MEMORY;
    memset(batch->data, 0, CD_ENVELOPE_HEADER_SIZE);
    memcpy(batch->data, CD_ENVELOPE_MAGIC, 4);
    batch->data[4] = CD_ENVELOPE_VERSION;
    batch->data[5] = (unsigned char)codec_id;
    batch->data[6] = CD_KIND_BATCH;
    batch->size = CD_ENVELOPE_HEADER_SIZE;
    return CD_OK;
}

static int append_record(cd_batch *batch, uint64_t tag, const void *data, size_t size)
{
    uint32_t size32 = (uint32_t)size;

    if (batch->size < CD_ENVELOPE_HEADER_SIZE || size > UINT32_MAX)
        return CD_INVALID;
    if (!reserve(batch, CD_BATCH_RECORD_HEADER_SIZE + size))
        return CD_NO_MEMORY;
    memcpy(batch->data + batch->size, &tag, 8);
    memcpy(batch->data + batch->size + 8, &size32, 4);
    if (size)
        memcpy(batch->data + batch->size + CD_BATCH_RECORD_HEADER_SIZE, data, size);
    batch->size += CD_BATCH_RECORD_HEADER_SIZE + size;
    batch->records++;
    return CD_OK;
}

int cd_batch_add(cd_batch *batch, uint64_t tag, const void *data, size_t size, size_t max_bytes)
{
    if (batch->records && (size > max_bytes || CD_BATCH_RECORD_HEADER_SIZE + size > max_bytes - batch->size
                           || batch->size > max_bytes || batch->records >= CD_BATCH_MAX_RECORDS))
        return CD_FULL;
    /* Borrowed memory cannot grow: the caller sends what is there, or lends more. */
    if (batch->borrowed && (size > batch->capacity || CD_BATCH_RECORD_HEADER_SIZE + size > batch->capacity - batch->size))
        return CD_FULL;
    return append_record(batch, tag, data, size);
}

int cd_batch_move(cd_batch *batch, void *memory, size_t capacity)
{
    if (batch->size > capacity)
        return CD_FULL;
    if (batch->size)
        memmove(memory, batch->data, batch->size);
    if (!batch->borrowed)
        free(batch->data);
    batch->data = (unsigned char *)memory;
    batch->capacity = capacity;
    batch->borrowed = 1;
    return CD_OK;
}

void cd_batch_release(cd_batch *batch)
{
    if (!batch->borrowed)
        free(batch->data);
    memset(batch, 0, sizeof *batch);
}

/* Copies a header that is then checked and used: read once, through volatile, as a frame
 * may lie in a sender's section, which that process goes on writing to. */
static void read_once(unsigned char *header, const unsigned char *frame, size_t count)
{
    const volatile unsigned char *shared = frame;
    size_t i;

    for (i = 0; i < count; i++)
        header[i] = shared[i];
}

int cd_batch_next(const unsigned char *frame, size_t size, size_t *offset, uint64_t *tag,
                  const unsigned char **data, size_t *length)
{
    unsigned char header[CD_BATCH_RECORD_HEADER_SIZE];
    uint32_t record_size;

    if (*offset >= size)
        return 0;
    if (size - *offset < CD_BATCH_RECORD_HEADER_SIZE)
        return -1;
    read_once(header, frame + *offset, CD_BATCH_RECORD_HEADER_SIZE);
    memcpy(tag, header, 8);
    memcpy(&record_size, header + 8, 4);
    if (record_size > size - *offset - CD_BATCH_RECORD_HEADER_SIZE)
        return -1;
    *data = frame + *offset + CD_BATCH_RECORD_HEADER_SIZE;
    *length = record_size;
    *offset += CD_BATCH_RECORD_HEADER_SIZE + record_size;
    return 1;
}

int cd_batch_check(const unsigned char *data, size_t size, size_t *records, size_t *record_bytes,
                   int *codec_id)
{
    static const unsigned char zeros[9] = {0};
    unsigned char header[CD_ENVELOPE_HEADER_SIZE];
    size_t offset = CD_ENVELOPE_HEADER_SIZE, length;
    const unsigned char *bytes;
    uint64_t tag;
    int found;

    *records = 0;
    *record_bytes = 0;
    *codec_id = CD_NO_CODEC;
    if (data == NULL || size < CD_ENVELOPE_HEADER_SIZE)
        return 0;
    read_once(header, data, CD_ENVELOPE_HEADER_SIZE);
    if (envelope_kind(header, sizeof header) != CD_KIND_BATCH)
        return 0;
    /* From here on it claims to be a batch frame: anything wrong makes it malformed. */
    if (!codec_is_known(header[5]) || memcmp(header + 7, zeros, 9) != 0)
        return -1;
    while ((found = cd_batch_next(data, size, &offset, &tag, &bytes, &length)) == 1) {
        (*records)++;
        *record_bytes += length;
    }
    if (found < 0 || *records == 0)
        return -1;
    *codec_id = header[5];
    return 1;
}

int cd_part_check(const unsigned char *data, size_t size, cd_part *part)
{
    unsigned char header[CD_PART_HEADER_SIZE];

    memset(part, 0, sizeof *part);
    if (data == NULL || size < CD_ENVELOPE_HEADER_SIZE)
        return 0;
    read_once(header, data, CD_ENVELOPE_HEADER_SIZE);
    if (envelope_kind(header, CD_ENVELOPE_HEADER_SIZE) != CD_KIND_PART)
        return 0;
    /* From here on it claims to be a part frame: anything wrong makes it malformed. */
    if (size < CD_PART_HEADER_SIZE)
        return -1;
    read_once(header + CD_ENVELOPE_HEADER_SIZE, data + CD_ENVELOPE_HEADER_SIZE,
              CD_PART_HEADER_SIZE - CD_ENVELOPE_HEADER_SIZE);
    if (!codec_is_known(header[5]) || header[7] != 0)
        return -1;
    memcpy(&part->transfer_id, header + 8, 8);
    memcpy(&part->total, header + 16, 8);
    memcpy(&part->offset, header + 24, 8);
    part->codec_id = header[5];
    part->data = data + CD_PART_HEADER_SIZE;
    part->length = size - CD_PART_HEADER_SIZE;
    if (part->transfer_id == 0 || part->length == 0 || part->offset > part->total
        || part->length > part->total - part->offset)
        return -1;
    return 1;
}

int cd_section_name_ok(const uint16_t *name, size_t length)
{
    static const char prefix[] = CD_SECTION_PREFIX;
    size_t i, prefix_length = sizeof prefix - 1;

    if (length <= prefix_length || length > CD_MAX_SECTION_NAME)
        return 0;
    for (i = 0; i < prefix_length; i++)
        if (name[i] != (uint16_t)(unsigned char)prefix[i])
            return 0;
    for (; i < length; i++)
        if (name[i] == 0 || name[i] == '\\')
            return 0;
    return 1;
}

/* Whether [at, at + size) lies on 8 bytes, wholly outside [offset, offset + length). */
static int block_outside(uint64_t at, uint64_t size, uint64_t offset, uint64_t length)
{
    return at % 8 == 0 && at <= UINT64_MAX - size && (at + size <= offset || at >= offset + length);
}

int cd_section_fields_ok(const cd_section_descriptor *d)
{
    if (d->length == 0 || d->offset > UINT64_MAX - d->length)
        return 0;
    if (d->lease_id == 0)
        return d->release_offset == 0 && d->ring_offset == 0;
    return block_outside(d->release_offset, 8, d->offset, d->length)
           && (d->ring_offset == 0 || block_outside(d->ring_offset, CD_RING_SIZE, d->offset, d->length));
}

int cd_section_check(const unsigned char *data, size_t size, cd_section_descriptor *descriptor)
{
    uint32_t characters;

    memset(descriptor, 0, sizeof *descriptor);
    if (envelope_kind(data, size) != CD_KIND_SECTION)
        return 0;
    /* From here on it claims to be a section descriptor: anything wrong makes it malformed. */
    if (size < CD_SECTION_HEADER_SIZE || data[7] != 0 || !codec_is_known(data[5]))
        return -1;
    memcpy(&descriptor->lease_id, data + 8, 8);
    memcpy(&descriptor->offset, data + 16, 8);
    memcpy(&descriptor->length, data + 24, 8);
    memcpy(&descriptor->release_offset, data + 32, 8);
    memcpy(&descriptor->ring_offset, data + 40, 8);
    memcpy(descriptor->secret, data + 48, CD_SECTION_SECRET_SIZE);
    memcpy(&characters, data + 64, 4);
    if (characters == 0 || characters > CD_MAX_SECTION_NAME
        || size != CD_SECTION_HEADER_SIZE + (size_t)characters * sizeof(uint16_t)
        || !cd_section_fields_ok(descriptor))
        return -1;
    memcpy(descriptor->name, data + CD_SECTION_HEADER_SIZE, characters * sizeof(uint16_t));
    descriptor->name[characters] = 0;
    if (!cd_section_name_ok(descriptor->name, characters))
        return -1;
    descriptor->codec_id = data[5];
    return 1;
}

int cd_seal_check(const unsigned char *data, size_t size, cd_seal *seal)
{
    memset(seal, 0, sizeof *seal);
    if (envelope_kind(data, size) != CD_KIND_SEALED)
        return 0;
    /* From here on it claims to be sealed: anything wrong makes it malformed. */
    if (size < CD_SEAL_HEADER_SIZE || data[5] != 0 || data[7] != 0
        || memcmp(data + 8, "\0\0\0\0\0\0\0\0", 8) != 0)
        return -1;
    memcpy(&seal->sealer_id, data + 16, 8);
    memcpy(&seal->counter, data + 24, 8);
    memcpy(&seal->time_ms, data + 32, 8);
    seal->mac = data + CD_SEAL_SIGNED_SIZE;
    seal->inner = data + CD_SEAL_HEADER_SIZE;
    seal->inner_size = size - CD_SEAL_HEADER_SIZE;
    if (seal->sealer_id == 0 || seal->counter == 0)
        return -1;
    return 1;
}
