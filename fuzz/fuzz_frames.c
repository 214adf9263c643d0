/*
 * libFuzzer target for copydata's frame parsers (csrc/frames.c), built natively on Linux with
 * AddressSanitizer and UBSan by tools/fuzz.py. Any byte string may arrive as a WM_COPYDATA
 * payload, so:
 *   - whatever cd_batch_check accepts, the receiver's walk over its records stays inside the
 *     payload and finds exactly the records and bytes it reported;
 *   - whatever cd_part_check accepts lies inside the payload and inside its message's total;
 *   - whatever cd_section_check accepts names a section inside copydata's namespace, in
 *     exactly the bytes the descriptor has, a range that does not overflow, and a release
 *     word only with a lease, on 8 bytes and outside that range;
 *   - whatever cd_seal_check accepts has its MAC and inner payload inside the payload;
 *   - no payload is more than one kind of frame, and cd_is_sender_frame tells exactly the batch
 *     and part frames (valid or malformed), bare or sealed, from the rest;
 *   - read as a script of sealed frames arriving, the replay table never takes one frame twice;
 *   - a frame built with cd_batch_start/cd_batch_add from the input's pieces, moved halfway
 *     into memory lent to it (cd_batch_move), checks valid and gives those pieces back unchanged.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frames.h"

#define EXPECT(condition) do { if (!(condition)) __builtin_trap(); } while (0)

/* An independent walk over the records cd_batch_check accepted, copying every record as the
 * receiver does: cd_batch_next, which the receiver walks with, must find the same ones. */
static void walk_batch(const uint8_t *data, size_t size, size_t records, size_t record_bytes)
{
    size_t offset = CD_ENVELOPE_HEADER_SIZE, next_offset = CD_ENVELOPE_HEADER_SIZE, seen = 0, bytes = 0;

    while (offset < size) {
        const cd_record_header *record = (const cd_record_header *)(data + offset);
        uint32_t length;
        uint64_t tag, next_tag;
        const unsigned char *next_data;
        size_t next_length;
        char *copy;
        memcpy(&tag, record->tag, sizeof tag);
        memcpy(&length, record->size, sizeof length);
        offset += sizeof *record;
        EXPECT(length <= size - offset);
        EXPECT(cd_batch_next(data, size, &next_offset, &next_tag, &next_data, &next_length) == 1);
        EXPECT(next_tag == tag && next_length == length && next_data == data + offset);
        copy = (char *)malloc(length ? length : 1);
        memcpy(copy, next_data, next_length);
        free(copy);
        offset += length;
        EXPECT(next_offset == offset);
        seen++;
        bytes += length;
    }
    EXPECT(cd_batch_next(data, size, &next_offset, NULL, NULL, NULL) == 0);
    EXPECT(offset == size && seen == records && bytes == record_bytes && seen > 0);
}

static void check_part(const uint8_t *data, size_t size, const cd_part *part)
{
    EXPECT(part->data >= data + CD_PART_HEADER_SIZE && part->data + part->length == data + size);
    EXPECT(part->length > 0 && part->transfer_id != 0);
    EXPECT(part->offset <= part->total && part->length <= part->total - part->offset);
}

static void check_section(const uint8_t *data, size_t size, const cd_section_descriptor *d)
{
    static const char prefix[] = CD_SECTION_PREFIX;
    size_t characters = 0, i;

    while (characters <= CD_MAX_SECTION_NAME && d->name[characters] != 0)
        characters++;
    EXPECT(characters <= CD_MAX_SECTION_NAME && size == CD_SECTION_HEADER_SIZE + 2 * characters);
    EXPECT(characters > sizeof prefix - 1 && cd_section_name_ok(d->name, characters));
    for (i = 0; i < sizeof prefix - 1; i++)
        EXPECT(d->name[i] == (uint16_t)prefix[i]);
    for (; i < characters; i++)
        EXPECT(d->name[i] != '\\' && d->name[i] != 0);
    EXPECT(memcmp(d->name, data + CD_SECTION_HEADER_SIZE, 2 * characters) == 0);
    EXPECT(memcmp(d->secret, ((const cd_descriptor_header *)data)->secret, CD_SECTION_SECRET_SIZE) == 0);  /* carried as it came, checked later */
    EXPECT(d->length > 0 && d->offset <= UINT64_MAX - d->length);
    /* A release word and a ring block only with a lease, on 8 bytes, outside the range. */
    if (d->lease_id == 0) {
        EXPECT(d->release_offset == 0 && d->ring_offset == 0);
    } else {
        EXPECT(d->release_offset % 8 == 0 && d->release_offset <= UINT64_MAX - 8
               && (d->release_offset + 8 <= d->offset || d->release_offset >= d->offset + d->length));
        EXPECT(d->ring_offset == 0
               || (d->ring_offset % 8 == 0 && d->ring_offset <= UINT64_MAX - CD_RING_SIZE
                   && (d->ring_offset + CD_RING_SIZE <= d->offset || d->ring_offset >= d->offset + d->length)));
    }
    EXPECT(cd_section_fields_ok(d));
}

/* Cuts the input into pieces (a length byte, then that many bytes), frames them, reads them back. */
static void round_trip(const uint8_t *data, size_t size)
{
    cd_batch batch = {0};
    size_t offset = 0, pieces = 0, records, record_bytes;
    int codec_id;
    static unsigned char borrowed[1 << 17];

    if (cd_batch_start(&batch, 3) != CD_OK)
        return;
    while (offset < size) {
        if (offset >= size / 2 && !batch.borrowed)  /* the rest goes on in memory lent to it */
            EXPECT(cd_batch_move(&batch, borrowed, sizeof borrowed) == (batch.size <= sizeof borrowed ? CD_OK : CD_FULL));
        size_t length = data[offset++];
        if (length > size - offset)
            length = size - offset;
        int status = cd_batch_add(&batch, (uint64_t)pieces * 0x9E3779B97F4A7C15ull, data + offset, length, SIZE_MAX);
        if (status == CD_FULL) {  /* only lent memory fills up: what is in it must still read back */
            EXPECT(batch.borrowed && CD_BATCH_RECORD_HEADER_SIZE + length > batch.capacity - batch.size);
            break;
        }
        EXPECT(status == CD_OK);
        offset += length;
        pieces++;
    }
    if (pieces > 0) {
        EXPECT(cd_batch_check(batch.data, batch.size, &records, &record_bytes, &codec_id) == 1);
        EXPECT(records == pieces && codec_id == 3);
        offset = 0;
        size_t at = CD_ENVELOPE_HEADER_SIZE;
        for (size_t i = 0; i < pieces; i++) {
            const cd_record_header *record = (const cd_record_header *)(batch.data + at);
            size_t length = data[offset++];
            uint64_t tag;
            uint32_t stored;
            if (length > size - offset)
                length = size - offset;
            memcpy(&tag, record->tag, sizeof tag);
            memcpy(&stored, record->size, sizeof stored);
            EXPECT(tag == (uint64_t)i * 0x9E3779B97F4A7C15ull && stored == length);
            EXPECT(memcmp(record + 1, data + offset, length) == 0);
            at += sizeof *record + length;
            offset += length;
        }
    }
    cd_batch_release(&batch);
}

static void check_seal(const uint8_t *data, size_t size, const cd_seal *seal)
{
    EXPECT(seal->mac == data + CD_SEAL_SIGNED_SIZE && seal->inner == data + CD_SEAL_HEADER_SIZE);
    EXPECT(seal->inner_size == size - CD_SEAL_HEADER_SIZE && seal->sealer_id && seal->counter);
}

/* Each 4 input bytes: a frame from sealer b0 with counter b1 b2 arriving b3 half-seconds after
 * the one before. A frame keeps the time it was first stamped with (its seal covers it), so
 * that one coming again is a replay. As in the receiver, room is made first, then the frame is
 * accepted and recorded. */
#define SCRIPT_STEPS 512
static void replay_script(const uint8_t *data, size_t size)
{
    static cd_seal stamped[SCRIPT_STEPS];
    static int accepted[SCRIPT_STEPS];
    cd_replay replay = {0};
    uint64_t now = 1000000;
    size_t steps = 0, at, i;

    for (at = 0; at + 4 <= size && steps < SCRIPT_STEPS; at += 4) {
        cd_seal seal = {0};
        int known = -1;
        seal.sealer_id = (uint64_t)data[at] + 1;
        seal.counter = ((uint64_t)data[at + 1] | (uint64_t)data[at + 2] << 8) + 1;
        now += (uint64_t)data[at + 3] * 500;
        for (i = 0; i < steps; i++)
            if (stamped[i].sealer_id == seal.sealer_id && stamped[i].counter == seal.counter)
                known = (int)i;
        if (known >= 0) {
            seal.time_ms = stamped[known].time_ms;
        } else {
            seal.time_ms = now - (uint64_t)(data[at] & 0x3F) * 1000;
            stamped[steps] = seal;
            accepted[steps] = 0;
            known = (int)steps++;
        }
        if (cd_replay_check(&replay, &seal, now) == CD_REPLAY_NEW) {
            EXPECT(!accepted[known]);
            if (cd_replay_reserve(&replay, &seal, now) == CD_OK) {
                /* accepted now: its record must not fail */
                EXPECT(cd_replay_record(&replay, &seal, now) == CD_OK);
                accepted[known] = 1;
            }
        }
    }
    cd_replay_release(&replay);
}

/* What cd_is_sender_frame should say, from the checks' own verdicts (0: not that kind at all). */
static int is_sender_frame(const uint8_t *data, size_t size, int batch, int is_part, int is_sealed)
{
    size_t records, record_bytes;
    int codec_id;
    cd_part part;

    if (is_sealed == 0 || size < CD_SEAL_HEADER_SIZE)
        return batch != 0 || is_part != 0;
    data += CD_SEAL_HEADER_SIZE;
    size -= CD_SEAL_HEADER_SIZE;
    return cd_batch_check(data, size, &records, &record_bytes, &codec_id) != 0 || cd_part_check(data, size, &part) != 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t records, record_bytes;
    int codec_id, batch;
    cd_part part;
    cd_section_descriptor section;
    cd_seal seal;
    int is_part, is_section, is_sealed;

    batch = cd_batch_check(data, size, &records, &record_bytes, &codec_id);
    if (batch == 1)
        walk_batch(data, size, records, record_bytes);
    is_part = cd_part_check(data, size, &part);
    if (is_part == 1)
        check_part(data, size, &part);
    is_section = cd_section_check(data, size, &section);
    if (is_section == 1)
        check_section(data, size, &section);
    is_sealed = cd_seal_check(data, size, &seal);
    if (is_sealed == 1)
        check_seal(data, size, &seal);
    EXPECT((batch != 0) + (is_part != 0) + (is_section != 0) + (is_sealed != 0) <= 1);
    EXPECT(cd_is_sender_frame(data, size) == is_sender_frame(data, size, batch, is_part, is_sealed));
    round_trip(data, size);
    replay_script(data, size);
    return 0;
}
