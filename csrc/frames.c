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

/* The numbers in frames' headers (copydata.h): little-endian, as the machines that run this
 * are. */
static uint64_t get_u64(const unsigned char *bytes)
{
    uint64_t value;
    memcpy(&value, bytes, sizeof value);
    return value;
}

static uint32_t get_u32(const unsigned char *bytes)
{
    uint32_t value;
    memcpy(&value, bytes, sizeof value);
    return value;
}

static void put_u64(unsigned char *bytes, uint64_t value)
{
    memcpy(bytes, &value, sizeof value);
}

static void put_u32(unsigned char *bytes, uint32_t value)
{
    memcpy(bytes, &value, sizeof value);
}

/* The kind of the envelope data starts with, or -1 if it starts with none. */
static int envelope_kind(const unsigned char *data, size_t size)
{
    const cd_envelope_header *envelope = (const cd_envelope_header *)data;

    if (data == NULL || size < sizeof *envelope
        || memcmp(envelope->magic, CD_ENVELOPE_MAGIC, sizeof envelope->magic) != 0
        || envelope->version != CD_ENVELOPE_VERSION)
        return -1;
    return envelope->kind;
}

int cd_is_sender_frame(const unsigned char *data, size_t size)
{
    int kind = envelope_kind(data, size);

    if (kind == CD_KIND_SEALED && size >= sizeof(cd_seal_header))
        kind = envelope_kind(data + sizeof(cd_seal_header), size - sizeof(cd_seal_header));
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
    cd_envelope_header envelope;

    if (!codec_is_known(codec_id))
        return CD_INVALID;
    batch->size = 0;
    batch->records = 0;
    if (!reserve(batch, sizeof envelope))
        return CD_NO_MEMORY;
    memset(&envelope, 0, sizeof envelope);
    memcpy(envelope.magic, CD_ENVELOPE_MAGIC, sizeof envelope.magic);
    envelope.version = CD_ENVELOPE_VERSION;
    envelope.codec = (unsigned char)codec_id;
    envelope.kind = CD_KIND_BATCH;
    memcpy(batch->data, &envelope, sizeof envelope);
    batch->size = sizeof envelope;
    return CD_OK;
}

static int append_record(cd_batch *batch, uint64_t tag, const void *data, size_t size)
{
    cd_record_header header;

    if (batch->size < sizeof(cd_envelope_header) || size > UINT32_MAX)
        return CD_INVALID;
    if (!reserve(batch, sizeof header + size))
        return CD_NO_MEMORY;
    put_u64(header.tag, tag);
    put_u32(header.size, (uint32_t)size);
    memcpy(batch->data + batch->size, &header, sizeof header);
    if (size)
        memcpy(batch->data + batch->size + sizeof header, data, size);
    batch->size += sizeof header + size;
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

/* Whether a record of size bytes fits the frame within limit: its records within their bound,
 * and lent memory (a section's half) within its capacity. */
static int fits_within(const cd_batch *batch, size_t size, size_t limit)
{
    size_t room;

    if (batch->records >= CD_BATCH_MAX_RECORDS || batch->size > limit)
        return 0;
    room = limit - batch->size;
    if (batch->borrowed) {
        if (batch->size > batch->capacity)
            return 0;
        if (batch->capacity - batch->size < room)
            room = batch->capacity - batch->size;
    }
    return room >= CD_BATCH_RECORD_HEADER_SIZE && size <= room - CD_BATCH_RECORD_HEADER_SIZE;
}

int cd_batch_add_within(cd_batch *batch, uint64_t tag, const char *data, size_t size, size_t limit_lent,
                        size_t limit_own)
{
    if (!fits_within(batch, size, batch->borrowed ? limit_lent : limit_own))
        return CD_FULL;
    return append_record(batch, tag, data, size);
}

int cd_batch_add_many(cd_batch *batch, const uint64_t *tags, uint64_t tag, const char *data, size_t data_size,
                      const uint64_t *sizes, size_t start, size_t count, size_t largest, size_t *offset,
                      size_t limit_lent, size_t limit_own, size_t *added)
{
    size_t limit = batch->borrowed ? limit_lent : limit_own, i;
    int status = CD_OK;

    *added = 0;
    for (i = start; i < count && sizes[i] <= largest; i++) {
        size_t size = (size_t)sizes[i];
        if (*offset > data_size || size > data_size - *offset)
            return CD_INVALID;
        if (!fits_within(batch, size, limit))
            break;
        status = append_record(batch, tags != NULL ? tags[i] : tag, data + *offset, size);
        if (status != CD_OK)
            break;
        *offset += size;
        (*added)++;
    }
    return status;
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
static void read_once(void *header, const unsigned char *frame, size_t count)
{
    const volatile unsigned char *shared = frame;
    unsigned char *copy = (unsigned char *)header;
    size_t i;

    for (i = 0; i < count; i++)
        copy[i] = shared[i];
}

int cd_batch_next(const unsigned char *frame, size_t size, size_t *offset, uint64_t *tag,
                  const unsigned char **data, size_t *length)
{
    cd_record_header header;
    uint32_t record_size;

    if (*offset >= size)
        return 0;
    if (size - *offset < sizeof header)
        return -1;
    read_once(&header, frame + *offset, sizeof header);
    *tag = get_u64(header.tag);
    record_size = get_u32(header.size);
    if (record_size > size - *offset - sizeof header)
        return -1;
    *data = frame + *offset + sizeof header;
    *length = record_size;
    *offset += sizeof header + record_size;
    return 1;
}

int cd_batch_check(const unsigned char *data, size_t size, size_t *records, size_t *record_bytes,
                   int *codec_id)
{
    cd_envelope_header header;
    size_t offset = sizeof header, length;
    const unsigned char *bytes;
    uint64_t tag;
    int found;

    *records = 0;
    *record_bytes = 0;
    *codec_id = CD_NO_CODEC;
    if (data == NULL || size < sizeof header)
        return 0;
    read_once(&header, data, sizeof header);
    if (envelope_kind((const unsigned char *)&header, sizeof header) != CD_KIND_BATCH)
        return 0;
    /* From here on it claims to be a batch frame: anything wrong makes it malformed. */
    if (!codec_is_known(header.codec) || header.flags != 0 || get_u64(header.request_id) != 0)
        return -1;
    while ((found = cd_batch_next(data, size, &offset, &tag, &bytes, &length)) == 1) {
        (*records)++;
        *record_bytes += length;
    }
    if (found < 0 || *records == 0)
        return -1;
    *codec_id = header.codec;
    return 1;
}

int cd_part_check(const unsigned char *data, size_t size, cd_part *part)
{
    cd_part_header header;
    const size_t envelope_size = sizeof header.envelope;

    memset(part, 0, sizeof *part);
    if (data == NULL || size < envelope_size)
        return 0;
    read_once(&header.envelope, data, envelope_size);
    if (envelope_kind((const unsigned char *)&header.envelope, envelope_size) != CD_KIND_PART)
        return 0;
    /* From here on it claims to be a part frame: anything wrong makes it malformed. */
    if (size < sizeof header)
        return -1;
    read_once((unsigned char *)&header + envelope_size, data + envelope_size, sizeof header - envelope_size);
    if (!codec_is_known(header.envelope.codec) || header.envelope.flags != 0)
        return -1;
    part->transfer_id = get_u64(header.envelope.request_id);
    part->total = get_u64(header.total);
    part->offset = get_u64(header.offset);
    part->codec_id = header.envelope.codec;
    part->data = data + sizeof header;
    part->length = size - sizeof header;
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
    const cd_descriptor_header *header = (const cd_descriptor_header *)data;
    uint32_t characters;

    memset(descriptor, 0, sizeof *descriptor);
    if (envelope_kind(data, size) != CD_KIND_SECTION)
        return 0;
    /* From here on it claims to be a section descriptor: anything wrong makes it malformed. */
    if (size < sizeof *header || header->envelope.flags != 0 || !codec_is_known(header->envelope.codec))
        return -1;
    descriptor->lease_id = get_u64(header->envelope.request_id);
    descriptor->offset = get_u64(header->offset);
    descriptor->length = get_u64(header->length);
    descriptor->release_offset = get_u64(header->release_offset);
    descriptor->ring_offset = get_u64(header->ring_offset);
    memcpy(descriptor->secret, header->secret, sizeof descriptor->secret);
    characters = get_u32(header->name_length);
    if (characters == 0 || characters > CD_MAX_SECTION_NAME
        || size != sizeof *header + (size_t)characters * sizeof(uint16_t)
        || !cd_section_fields_ok(descriptor))
        return -1;
    memcpy(descriptor->name, data + sizeof *header, characters * sizeof(uint16_t));
    descriptor->name[characters] = 0;
    if (!cd_section_name_ok(descriptor->name, characters))
        return -1;
    descriptor->codec_id = header->envelope.codec;
    return 1;
}

int cd_seal_check(const unsigned char *data, size_t size, cd_seal *seal)
{
    const cd_seal_header *header = (const cd_seal_header *)data;

    memset(seal, 0, sizeof *seal);
    if (envelope_kind(data, size) != CD_KIND_SEALED)
        return 0;
    /* From here on it claims to be sealed: anything wrong makes it malformed. */
    if (size < sizeof *header || header->envelope.codec != 0 || header->envelope.flags != 0
        || get_u64(header->envelope.request_id) != 0)
        return -1;
    seal->sealer_id = get_u64(header->sealer_id);
    seal->counter = get_u64(header->counter);
    seal->time_ms = get_u64(header->time_ms);
    seal->mac = header->mac;
    seal->inner = data + sizeof *header;
    seal->inner_size = size - sizeof *header;
    if (seal->sealer_id == 0 || seal->counter == 0)
        return -1;
    return 1;
}
