/*
 * The queue: what the window procedure accepts waits here, in arrival order, bounded in
 * messages and bytes, until Python takes it in batches (cd_receiver_take) and packs the small
 * ones into one block (cd_messages_pack). In sync mode the window procedure instead hands each
 * message over through the queue and waits until Python has answered it.
 */
#include "internal.h"
#include <stdlib.h>
#include <string.h>

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

/* Whether count more messages of bytes in all may be queued now; refuses (and counts) if not.
 * Only the pump thread adds to the queue, so room seen here is still there after the copy. */
int cd__make_room(cd_receiver *r, size_t count, size_t bytes, const arrival *a)
{
    int stopping, full;

    AcquireSRWLockShared(&r->lock);
    stopping = r->window.stopping;
    full = count > r->config.max_queue_messages - r->stats.queued_messages
           || bytes > r->config.max_queue_bytes - r->stats.queued_bytes;
    ReleaseSRWLockShared(&r->lock);
    if (stopping)
        cd__refuse(r, CD_REASON_CLOSING, a);
    else if (full)
        cd__refuse(r, CD_REASON_QUEUE_FULL, a);
    return !stopping && !full;
}

void cd__append_all(cd_receiver *r, cd_message *first)
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
void cd__answer_before_copying(int in_section, LRESULT answer)
{
    if (in_section)
        ReplyMessage(answer);
}

/* Queues every record of a batch frame (already checked by cd_batch_check), or none. The
 * frame may lie in a sender's section, which the sender can write to meanwhile: should the
 * records no longer be those counted, nothing is queued. With a lease, records of
 * CD_LEASE_MIN_RECORD bytes and more are queued where they are, and the rest copied. */
LRESULT cd__accept_batch(cd_receiver *r, const arrival *a, const checked_frame *batch, cd_lease *lease, int ring)
{
    const size_t records = batch->records, record_bytes = batch->record_bytes;
    cd_message *first = NULL, **link = &first, *m;
    size_t offset = CD_ENVELOPE_HEADER_SIZE, length, count = 0, copied = 0, leased = 0;
    const unsigned char *bytes, **sources;
    uint64_t tag;
    int found;
    LRESULT answer;

    if (records > r->config.max_queue_messages)  /* (bytes: max_message_size and max_transfer_size are below) */
        return cd__refuse_never_fits(r, a);
    if (!cd__make_room(r, records, record_bytes, a))
        return FALSE;
    /* Where each record's bytes are: each length is read once, and the copy comes after. */
    sources = (const unsigned char **)malloc(records * sizeof *sources);
    if (sources == NULL)
        return cd__refuse(r, CD_REASON_QUEUE_FULL, a);
    while ((found = cd_batch_next(batch->data, batch->size, &offset, &tag, &bytes, &length)) == 1) {
        if (++count > records || length > record_bytes - copied) {
            found = -1;
            break;
        }
        copied += length;
        if (lease != NULL && length >= CD_LEASE_MIN_RECORD)
            *link = cd__leased_message(lease, tag, a->sender, bytes, length, batch->codec_id);
        else
            *link = cd__new_large_message(r, tag, a->sender, length, batch->codec_id);
        if (*link == NULL) {
            free(sources);
            cd_messages_free(first);
            return cd__refuse(r, CD_REASON_QUEUE_FULL, a);
        }
        leased += (*link)->lease != NULL;
        sources[count - 1] = (*link)->lease != NULL ? NULL : bytes;
        link = &(*link)->next;
    }
    if (found < 0 || count != records) {
        free(sources);
        cd_messages_free(first);
        return cd__refuse(r, CD_REASON_MALFORMED, a);
    }
    answer = !leased ? TRUE : ring ? CD_ANSWER_LEASED_RING : CD_ANSWER_LEASED;
    cd__answer_before_copying(batch->in_section, answer);
    for (m = first, count = 0; m != NULL; m = m->next, count++)
        if (m->size && sources[count] != NULL)
            memcpy((void *)m->data, sources[count], m->size);
    free(sources);
    cd__append_all(r, first);
    return answer;
}

LRESULT cd__accept_plain(cd_receiver *r, const arrival *a, const unsigned char *data)
{
    cd_message *m;

    if (!cd__make_room(r, 1, a->size, a))
        return FALSE;
    m = cd__copy_message(a->tag, a->sender, data, a->size, CD_NO_CODEC);
    if (m == NULL)
        return cd__refuse(r, CD_REASON_QUEUE_FULL, a);
    cd__append_all(r, m);
    return TRUE;
}

/* Sync mode: queue the sender's own bytes (or a section's) and wait until Python answers
 * them. Returns 1 with its answer, or 0 if Python never took them (the receiver is closing). */
int cd__hand_over_and_wait(cd_receiver *r, const arrival *a, const unsigned char *data, int codec_id,
                           handed_section *section, LRESULT *answer)
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
        cd__count_refusal(r, CD_REASON_CLOSING, a);
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

/* Sync mode: a batch frame's records, one after another. Once one of them was handed over the
 * frame is answered 1, whatever the callbacks answered: a sender that saw 0 would send the
 * whole frame again, and the records already delivered twice. */
LRESULT cd__hand_over_batch(cd_receiver *r, const arrival *a, const checked_frame *batch, handed_section *section)
{
    size_t offset = CD_ENVELOPE_HEADER_SIZE;
    arrival record = *a;
    const unsigned char *bytes;
    LRESULT answer;
    int found, delivered = 0;

    while ((found = cd_batch_next(batch->data, batch->size, &offset, &record.tag, &bytes, &record.size)) == 1) {
        if (cd__hand_over_and_wait(r, &record, bytes, batch->codec_id, section, &answer))
            delivered = 1;
        else if (!delivered)
            return FALSE;  /* closing: nothing was delivered */
    }
    if (found < 0)  /* the sender rewrote its section meanwhile: the rest is lost */
        cd__refuse(r, CD_REASON_MALFORMED, a);
    return delivered;
}

LRESULT cd__hand_over_plain(cd_receiver *r, const arrival *a, const unsigned char *data)
{
    LRESULT answer;

    cd__hand_over_and_wait(r, a, data, CD_NO_CODEC, NULL, &answer);
    return answer;
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
    status = cd__wait_until(r, messages_waiting, &r->window.closed, start, timeout_ms);
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
            cd__release_message(m);
        } else {
            row->offset = 0;
            m->next = NULL;
            *rest_tail = m;
            rest_tail = &m->next;
        }
    }
    return CD_OK;
}

int cd_messages_pack_columns(cd_message *first, char **block, size_t *block_size, size_t *count)
{
    size_t rows = 0, bytes = 0, data_at, i;
    cd_message *m, *next;
    uint64_t *tags, *senders, *offsets, *sizes;
    int32_t *codecs;
    char *out;

    *block = NULL;
    *block_size = *count = 0;
    for (m = first; m != NULL; m = m->next, rows++)
        bytes += m->size;  /* bounded by what the queue holds: no overflow */
    data_at = CD_COLUMNS_SIZE(rows);
    out = malloc(data_at + bytes + 1);
    if (out == NULL)
        return CD_NO_MEMORY;
    tags = (uint64_t *)(void *)out;
    senders = tags + rows;
    offsets = senders + rows;
    sizes = offsets + rows;
    codecs = (int32_t *)(void *)(sizes + rows);
    for (i = 0, bytes = 0, m = first; m != NULL; m = next, i++) {
        next = m->next;
        tags[i] = m->tag;
        senders[i] = m->sender;
        offsets[i] = bytes;
        sizes[i] = m->size;
        codecs[i] = m->codec_id;
        if (m->size != 0)
            memcpy(out + data_at + bytes, m->data, m->size);
        bytes += m->size;
        cd__release_message(m);  /* a leased one's lease goes now: its sender may write there again */
    }
    *block = out;
    *block_size = data_at + bytes;
    *count = rows;
    return CD_OK;
}

void cd_block_free(char *block)
{
    free(block);
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

void cd_receiver_stats(cd_receiver *r, cd_stats *stats)
{
    AcquireSRWLockShared(&r->lock);
    *stats = r->stats;
    ReleaseSRWLockShared(&r->lock);
}
