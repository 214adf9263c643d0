/*
 * copydata's shared-memory handshakes, for spin: a Sender (SectionTransport, copydata/_transports.py), the receiver's
 * window procedure (csrc/receiver.c) and the consumer (Python taking messages and freeing
 * them: cd_receiver_take, cd_message_free). Names follow the code; model/README.md says what
 * is abstracted, what is checked, and the switches (-D) that remove one guard at a time.
 *
 * Memory. The Sender's sections, each with two halves (half_frame: which frame's bytes lie
 * there), two release words and a ring block (cd_ring_block). Lengths and offsets are not
 * bytes here: a descriptor or ring block names a half by its offset and a frame by its length.
 *
 * Who may still read what (ghost counters, never read by the model's processes):
 *   rd_header[half]   descriptors and posts in flight that name the half: the receiver will
 *                     check the whole frame, its envelope header included;
 *   rd_records[half]  those, plus the window procedure's copy in progress, plus every leased
 *                     message of the half not yet freed: the receiver reads its records;
 *   rd_block[s]       posts in flight, or being taken: the receiver reads the ring block.
 * The Sender asserts each is 0 before it writes there: that is the first property.
 */

#ifndef N_FRAMES
#define N_FRAMES 4        /* frames the Sender sends, then it closes */
#endif
#ifndef N_SECTIONS
#define N_SECTIONS 2      /* sections it may use: it moves to a new one at most N_SECTIONS - 1 times */
#endif
#ifndef QUEUE_MAX
#define QUEUE_MAX 1       /* the receiver's max_queue_messages, in frames of one message each */
#endif
#ifndef TIMEOUT_BUDGET
#define TIMEOUT_BUDGET 1  /* CODE_AFTER_*_TIMEOUT: time-outs after which the Sender goes on */
#endif
#define HOLD_MAX 2        /* leased messages the consumer holds at once */
#define N_LEASES (2 * N_SECTIONS + 1)   /* cd_lease objects: one a half, and one more */
#define NO_LEASE 255
#define NONE 255          /* _announce: "offer it as a descriptor instead" */
#define AT(s, h) ((s) * 2 + (h))

/* Answers a queue-mode receiver gives (csrc/copydata.h); 2, 3 and 5 are not modelled. */
#define ANSWER_REFUSED 0          /* FALSE: its queue is full; the Sender offers it again */
#define ANSWER_TRUE 1             /* taken and copied out */
#define CD_ANSWER_LEASED 4
#define CD_ANSWER_LEASED_RING 6

/* Faults: without NO_FAULTS, every wait of the Sender may end by its time-out (or because the
 * receiver's window is gone), and the receiver may die. With NO_FAULTS nothing times out, so
 * every wait must end by an answer: a wait that does not is an invalid end state. */
#ifdef NO_FAULTS
#define FAULT false
#else
#define FAULT true
#endif

/* Frame kinds: INLINE travels in WM_COPYDATA itself; COPIED lies in a half and has no record
 * of CD_LEASE_MIN_RECORD bytes (copied out); LEASABLE has one (kept in place under a lease).
 * SECTION: a WM_COPYDATA that carries a section descriptor. */
mtype = { INLINE, COPIED, LEASABLE, SECTION };

/* --- shared memory ---------------------------------------------------------------------- */

byte half_frame[2 * N_SECTIONS];      /* the frame whose bytes lie in each half (0: none yet) */
byte release_word[2 * N_SECTIONS];    /* after the halves: the lease id the receiver released */

typedef cd_ring_block {               /* ring_id is the section's own: s + 1, written once */
    byte lease_id;
    bit offset;                        /* which half */
    byte length;                       /* which frame */
    bit release_offset;                /* which release word */
    int answer                         /* lease id << 8 | the answer, written by the receiver */
};
cd_ring_block ring_block[N_SECTIONS];

byte rd_header[2 * N_SECTIONS];       /* ghost, see above */
byte rd_records[2 * N_SECTIONS];
byte rd_block[N_SECTIONS];

/* --- messages --------------------------------------------------------------------------- */

/* SendMessageTimeoutW(WM_COPYDATA): one call at a time, held in the receiver's queue of sent
 * messages until its thread receives it. A time-out before that cancels it; after that the
 * window procedure goes on and its answer is dropped (Windows; see the README). */
typedef sent_message {
    bool waiting;      /* sent, not yet received */
    byte seq;          /* which call */
    mtype kind;        /* INLINE or SECTION */
    byte frame;        /* INLINE: the frame it carries; SECTION: the descriptor's length */
    byte section;      /* the descriptor's name */
    bit offset;        /* ... offset: which half */
    byte lease_id;     /* ... request-id field (0: none) */
    bit ring_offset    /* ... ring offset != 0 */
};
sent_message sent;
byte answer_seq;       /* ReplyMessage: the answer to call answer_seq */
byte answer_value;

/* PostMessageW(CD_RING_MESSAGE): ring id (the section), lease id; then, as ghosts, the frame
 * and half the Sender announced. Posted messages are never cancelled. A full queue makes the
 * post fail. */
chan posted = [2] of { byte, byte, byte, bit };

/* The receiver's queue (max_queue_messages): frame, leased, lease object, section, half. */
chan queue = [QUEUE_MAX] of { byte, bit, byte, byte, bit };

/* --- the receiver's state --------------------------------------------------------------- */

typedef lease_object {   /* struct cd_lease */
    byte references;
    byte id;
    byte release_word    /* AT(section, half) */
};
lease_object cd_lease[N_LEASES];

typedef ring_entry {     /* struct ring, r->rings[]: at most one per section (its ring id is the section's) */
    bit armed;
    byte next_lease;
    byte age             /* now - used_ms: 0 under 30 s, 1 under 60 s, 2 (CD_RING_IDLE_MS) or more */
};
ring_entry rings[N_SECTIONS];

bool receiver_done, receiver_dead, sender_done;

/* Time, for the rings, as ages in ticks of 30 s (_RING_IDLE; a receiver forgets a ring after
 * two, CD_RING_IDLE_MS). Ticks come while the Sender is idle, between calls, any number. */

/* --- ghosts for the delivery properties ------------------------------------------------- */

mtype frame_kind[N_FRAMES + 1];
bit accepted_by_sender[N_FRAMES + 1];   /* the Sender saw it taken (a nonzero answer) */
bit delivered[N_FRAMES + 1];
byte last_delivered;

#include "sender.pml"
#include "receiver.pml"

init {
    atomic {
        run Sender();
        run WindowProcedure();
        run Consumer()
    }
}
