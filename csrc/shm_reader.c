/*
 * The shared-memory reader: what a receiver does with the sections of its senders (see
 * CD_KIND_SECTION and CD_RING_SIZE in copydata.h).
 *   - the section cache: a sender's section stays mapped while the sender goes on using it,
 *     and only once its owner and secret are proven;
 *   - leases (queue mode): large records of a frame queued where they lie, under a lease that
 *     the last of them releases (pool.c), which writes the sender's release word;
 *   - rings: the next frame announced in a ring block and posted, answered in the block;
 *   - sync mode: a section's records handed over in place, and the mapping shared with Python
 *     should it keep a view past its callback.
 * Everything here runs on the pump thread, but for releases (any thread that frees a message).
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

/* Sync mode: the section a frame's records are handed over from. Once Python keeps a view of
 * one, the mapping leaves the receiver's cache (slot NULL) for kept, shared by the others. */
struct handed_section {
    mapped_section *slot;
    kept_section *kept;
};
#define MAPPED_SECTION_IDLE_MS 1000

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
        cd__refuse(r, CD_REASON_SECTION, a);
        return NULL;
    }
    return section;
}

/* What a descriptor's range holds, in a section mapped and proven (described_section): a batch
 * frame (FRAME_BATCH, or FRAME_TOO_LARGE above max_transfer_size) or a part frame (FRAME_PART),
 * either of the descriptor's codec; anything else is FRAME_MALFORMED. */
static enum frame_kind section_frame(const cd_receiver *r, const mapped_section *section,
                                     const cd_section_descriptor *descriptor, checked_frame *frame)
{
    int batch;

    frame->data = section->view + descriptor->offset;
    frame->size = (size_t)descriptor->length;
    frame->in_section = 1;
    batch = cd_batch_check(frame->data, frame->size, &frame->records, &frame->record_bytes, &frame->codec_id);
    if (batch == 0 && cd_part_check(frame->data, frame->size, &frame->part) == 1) {
        frame->codec_id = frame->part.codec_id;
        return frame->codec_id == descriptor->codec_id ? FRAME_PART : FRAME_MALFORMED;
    }
    if (batch <= 0 || frame->codec_id != descriptor->codec_id)
        return FRAME_MALFORMED;
    return frame->record_bytes > r->config.max_transfer_size ? FRAME_TOO_LARGE : FRAME_BATCH;
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
LRESULT cd__accept_section(cd_receiver *r, const arrival *a, const cd_section_descriptor *descriptor)
{
    mapped_section *section = described_section(r, a, descriptor);
    checked_frame frame;
    cd_lease *lease = NULL;
    ring *slot;
    uint64_t ring_id;
    LRESULT answer;

    if (section == NULL)
        return FALSE;
    switch (section_frame(r, section, descriptor, &frame)) {
    case FRAME_BATCH:
        break;
    case FRAME_PART:
        return cd__accept_part(r, a, &frame.part, 1);
    case FRAME_TOO_LARGE:
        return cd__refuse_never_fits(r, a);
    default:
        return cd__refuse(r, CD_REASON_MALFORMED, a);
    }
    if (descriptor->lease_id != 0 && section->writable && frame.record_bytes >= CD_LEASE_MIN_RECORD)
        lease = cd__lease_open(section->mapping, (volatile LONG64 *)(section->view + descriptor->release_offset),
                               descriptor->lease_id);
    slot = lease != NULL ? ring_slot(r, descriptor, section, &ring_id) : NULL;
    answer = cd__accept_batch(r, a, &frame, lease, slot != NULL);
    if (answer == CD_ANSWER_LEASED_RING)
        arm_ring(slot, ring_id, a, descriptor);
    if (lease != NULL && (answer == CD_ANSWER_LEASED || answer == CD_ANSWER_LEASED_RING))
        cd__lease_release(lease);  /* the queued records hold it now */
    else if (lease != NULL)
        cd__lease_abandon(lease);  /* nothing was kept: the sender reads no release word */
    return answer;
}

/* A posted CD_RING_MESSAGE. Anyone can post one: only the id of an armed ring and the one lease
 * id its sender may announce next make the receiver read anything, and what it reads in the
 * ring block is checked as a descriptor is. The answer goes into the block once the frame is
 * queued (and copied): no round trip. */
void cd__take_announced(cd_receiver *r, uint64_t id, uint64_t lease)
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
        answer = cd__refuse(r, CD_REASON_MALFORMED, &a);
    else
        answer = cd__accept_section(r, &a, &descriptor);  /* re-arms the ring if it leases the frame */
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

/* Sync mode: a section's records are handed over where they are, with no copy. Should Python
 * keep a view of one past its callback, the mapping becomes Python's, and the sender hears
 * that it must not write into that section again. */
LRESULT cd__hand_over_section(cd_receiver *r, const arrival *a, const cd_section_descriptor *descriptor)
{
    mapped_section *section = described_section(r, a, descriptor);
    handed_section handed;
    checked_frame frame;
    LRESULT answer;

    if (section == NULL)
        return FALSE;
    switch (section_frame(r, section, descriptor, &frame)) {
    case FRAME_BATCH:
        break;
    case FRAME_PART:
        return cd__refuse_part(r, a);
    case FRAME_TOO_LARGE:
        return cd__refuse_never_fits(r, a);
    default:
        return cd__refuse(r, CD_REASON_MALFORMED, a);
    }
    handed.slot = section;
    handed.kept = section->mapping;
    InterlockedIncrement(&handed.kept->references);  /* this frame's own, while its records are handed over */
    answer = cd__hand_over_batch(r, a, &frame, &handed);
    cd_kept_section_release(handed.kept);
    if (handed.slot != NULL)
        return answer;
    return answer ? CD_ANSWER_SECTION_KEPT : FALSE;
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

void cd__shm_sweep(cd_receiver *r, ULONGLONG now)
{
    unmap_idle_sections(r, now, MAPPED_SECTION_IDLE_MS);
    forget_idle_rings(r, now);
}

void cd__shm_close(cd_receiver *r)
{
    unmap_idle_sections(r, GetTickCount64(), 0);
}
