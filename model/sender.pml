/*
 * The Sender (copydata/_sender.py), included by copydata.pml.
 *
 * Steps are atomic blocks. Each holds at most one action another process can observe beside
 * actions that only enable others (a message sent or posted) or wait for them (an answer, a
 * release word read), and the Sender's own bookkeeping; where an assertion moves earlier in a
 * block, it only gets stricter, as the receiver only ever stops reading a half meanwhile. So
 * the blocks stand for the interleavings of the code (README, "Steps").
 */

/* cd_batch_add: the frame's records, written into the half. */
inline write_records(s, h) {
    assert(rd_records[AT(s, h)] == 0);
    half_frame[AT(s, h)] = frame
}

/* cd_batch_start (batch_start) and cd_batch_move (_switch_half): a frame's envelope header. */
inline write_header(s, h) {
    assert(rd_header[AT(s, h)] == 0)
}

/* After a time-out, or the window gone: the model's Sender gives up (the error is raised and
 * the application ends), unless CODE_AFTER_SEND_TIMEOUT or CODE_AFTER_RING_TIMEOUT, where it
 * goes on as the code does (the application calls flush() or close() again). */
inline timed_out(goes_on) {
    if
    :: goes_on && timeouts < TIMEOUT_BUDGET -> timeouts++
    :: else -> goto sender_end
    fi
}
#ifdef CODE_AFTER_SEND_TIMEOUT
#define SEND_TIMEOUT_GOES_ON true
#else
#define SEND_TIMEOUT_GOES_ON false
#endif
#ifdef CODE_AFTER_RING_TIMEOUT
#define RING_TIMEOUT_GOES_ON true
#else
#define RING_TIMEOUT_GOES_ON false
#endif
#if defined(CODE_AFTER_SEND_TIMEOUT) || defined(CODE_AFTER_RING_TIMEOUT)
#define SEQ_NEXT(seq) ((seq) % 3 + 1)   /* tells this call from one that timed out before it */
#else
#define SEQ_NEXT(seq) 1                 /* a Sender that timed out sends nothing more */
#endif

/* _deliver's loop: one SendMessageTimeoutW(WM_COPYDATA), offered again (after a back-off)
 * while it is refused. Its wait is never inside an atomic block: there the time-out, always
 * enabled, would be taken at once. */
inline offer(k, f, s, h, l, r) {
    do
    :: d_step {
           seq = SEQ_NEXT(seq);
           sent.waiting = 1; sent.seq = seq; sent.kind = k; sent.frame = f;
           sent.section = s; sent.offset = h; sent.lease_id = l; sent.ring_offset = r;
           if
           :: k == SECTION -> rd_header[AT(s, h)]++; rd_records[AT(s, h)]++;
              printf("MSC: Sender: WM_COPYDATA, a descriptor of frame %d: section %d half %d, lease %d\n", f, s, h, l)
           :: else -> printf("MSC: Sender: WM_COPYDATA, frame %d itself\n", f)
           fi
       }
       if
       :: d_step {
              answer_seq == seq -> answer = answer_value; answer_seq = 0; answer_value = 0;
              printf("MSC: Sender: answered %d\n", answer)
          }
       :: d_step {   /* time-out, or the window is gone: cancelled if not yet received */
              FAULT && answer_seq != seq ->
              if
              :: sent.waiting && sent.seq == seq ->
                 sent.waiting = 0;
                 if
                 :: k == SECTION -> rd_header[AT(s, h)]--; rd_records[AT(s, h)]--
                 :: else -> skip
                 fi;
                 printf("MSC: Sender: time-out; the message is cancelled, never received\n")
              :: else ->
                 printf("MSC: Sender: time-out; the window procedure goes on with the message\n")
              fi;
              answer = ANSWER_REFUSED
          }
          timed_out(SEND_TIMEOUT_GOES_ON)   /* then offered again, as flush() does */
       fi;
       if
       :: answer != ANSWER_REFUSED -> break
       :: else -> skip     /* back-off, then offer it again */
       fi
    od;
    skip
}

/* What a section frame's answer says (_note_answer); age: how long ago the receiver last used
 * the ring for it (the code takes the time it notes the answer: CODE_RING_CLOCK, see the README). */
inline _note_answer(a, l, h, age) {
    if
    :: l != 0 && (a == CD_ANSWER_LEASED || a == CD_ANSWER_LEASED_RING) ->
       leases[h] = l;
       if
       :: next_lease < l + 1 -> next_lease = l + 1
       :: else -> skip
       fi
    :: else -> skip
    fi;
    ring_armed = (a == CD_ANSWER_LEASED_RING);
#ifdef CODE_RING_CLOCK
    ring_age = 0
#else
    ring_age = (ring_armed -> age : 0)
#endif
}

/* Waits for the answer to the frame announced last, and offers it as a descriptor if it was
 * refused (settle). */
inline settle() {
    if
    :: announced_lease != 0 ->
       if
       :: d_step {
              (ring_block[section].answer >> 8) == announced_lease ->
              answer = ring_block[section].answer & 255;
              aw_lease = announced_lease; aw_half = announced_half; aw_frame = announced_frame;
              aw_age = announced_age;
              announced_lease = 0; announced_half = 0; announced_frame = 0; announced_age = 0;
              printf("MSC: Sender: the ring block answers lease %d: %d\n", aw_lease, answer)
          }
          if
          :: answer == ANSWER_REFUSED ->
             offer(SECTION, aw_frame, section, aw_half, aw_lease, 1);  /* _deliver_section_frame(.., lease, half) */
             aw_age = 0
          :: else -> skip
          fi;
          d_step {
              accepted_by_sender[aw_frame] = 1;
              _note_answer(answer, aw_lease, aw_half, aw_age);
              aw_lease = 0; aw_half = 0; aw_frame = 0; aw_age = 0
          }
       :: atomic {   /* time-out, or the window is gone */
              FAULT && (ring_block[section].answer >> 8) != announced_lease ->
              printf("MSC: Sender: time-out waiting for the ring answer to lease %d\n", announced_lease);
              announced_lease = 0; announced_half = 0; announced_frame = 0; announced_age = 0; ring_armed = 0;
              timed_out(RING_TIMEOUT_GOES_ON)
          }
       fi
    :: else -> skip
    fi
}

/* Announces the frame in the current half in the ring block and posts CD_RING_MESSAGE
 * (_announce): answer CD_ANSWER_LEASED_RING, or NONE to offer it as a descriptor. */
inline _announce(l) {
#ifndef BREAK_RING_WAIT
    settle();       /* one at a time */
#endif
    atomic {
#ifndef CODE_ANNOUNCE_AFTER_DISARM
        if
        :: !ring_armed ->
           answer = NONE;   /* that answer ended the ring: a descriptor instead */
           printf("MSC: Sender: the ring ended, frame %d goes as a descriptor\n", frame)
        :: else ->
#endif
           assert(rd_block[section] == 0);
           ring_block[section].offset = half;
           ring_block[section].length = frame;
           ring_block[section].release_offset = half;
           ring_block[section].lease_id = l;
           if
           :: nfull(posted) ->
              posted!section, l, frame, half;
              rd_block[section]++; rd_header[AT(section, half)]++; rd_records[AT(section, half)]++;
              announced_lease = l; announced_half = half; announced_frame = frame; announced_age = 0;
              next_lease = l + 1;
              answer = CD_ANSWER_LEASED_RING;
              printf("MSC: Sender: announces frame %d in the ring block (section %d half %d, lease %d), posts\n",
                     frame, section, half, l)
           :: full(posted) ->
              ring_armed = 0; answer = NONE;   /* the post failed */
              printf("MSC: Sender: the post fails; frame %d goes as a descriptor\n", frame)
           fi
#ifndef CODE_ANNOUNCE_AFTER_DISARM
        fi
#endif
    }
}

/* Tells the receiver it may forget this section's ring (_end_ring). */
inline _end_ring() {
    if
    :: ring_armed ->
       ring_armed = 0;
       if
       :: nfull(posted) -> posted!section, 0, 0, 0; printf("MSC: Sender: ends ring %d\n", section)
       :: full(posted) -> skip
       fi
    :: else -> skip
    fi
}

/* Moves the (empty) frame into the first half of a new section (_open_section). */
inline _open_section() {
    settle();       /* in the section left behind */
    atomic {
        if
        :: have_section && section + 1 >= N_SECTIONS -> goto sender_end   /* the model's bound */
        :: else -> skip
        fi;
        _end_ring();
        if
        :: have_section -> section++
        :: else -> have_section = 1
        fi;
        half = 0; leases[0] = 0; leases[1] = 0;
        printf("MSC: Sender: opens section %d\n", section);
        write_header(section, 0)
    }
}

/* Moves the (empty) frame to the other half once a frame leased there is released, or to a
 * new section after the grace (_switch_half, _released, _leave_section). */
inline _switch_half() {
    other = 1 - half;
    released = 1;
#ifndef BREAK_RELEASE_WAIT
    if
    :: leases[other] == 0 -> skip
    :: else ->
       if   /* a wait: the word changes meanwhile, or the grace passes */
       :: release_word[AT(section, other)] == leases[other] -> skip
       :: d_step {
              release_word[AT(section, other)] != leases[other] && (FAULT || section + 1 < N_SECTIONS) ->
              released = 0;
              printf("MSC: Sender: lease %d in half %d not released within the grace\n", leases[other], other)
          }
       fi
    fi;
#endif
    atomic {
#ifdef BREAK_SAME_HALF
        other = half;            /* one half: the next frame goes where this one is */
        released = 1;
#endif
        if
        :: released ->
#ifndef BREAK_SAME_HALF
           leases[other] = 0;
#endif
           half = other;
           printf("MSC: Sender: moves to half %d\n", half);
           write_header(section, half)   /* cd_batch_move */
        :: else ->
           no_leases = 1             /* _leases_from: copy for a while */
        fi;
        other = 0
    }
    if
    :: !released -> _open_section()  /* _leave_section */
    :: else -> skip
    fi;
    released = 0
}

/* batch_start: the next frame's header. The code writes it where this frame lies, which the
 * receiver has checked unless the frame was announced (CODE_HEADER_REWRITE, see the README). */
inline batch_start(announced) {
#ifdef CODE_HEADER_REWRITE
    if
    :: have_section ->
       printf("MSC: Sender: writes the next frame's header into half %d\n", half);
       write_header(section, half)
    :: else -> skip
    fi;
#else
    if
    :: have_section && !announced ->
       printf("MSC: Sender: writes the next frame's header into half %d\n", half);
       write_header(section, half)
    :: else -> skip   /* after an announcement, the next frame starts in the other half */
    fi;
#endif
    lease = 0; answer = 0
}

/* Sends the frame, then starts the next one (_flush_frame). */
inline _flush_frame() {
    if
    :: kind == INLINE ->
#ifndef BREAK_RING_WAIT_DELIVER
       settle();    /* _deliver: a window takes sent messages before posted ones */
#endif
       offer(INLINE, frame, 0, 0, 0, 0);
       atomic {
           accepted_by_sender[frame] = 1;
           batch_start(0)
       }
    :: kind != INLINE ->
       if
       :: lease != 0 && ring_armed && ring_age == 0 -> _announce(lease)   /* used < _RING_IDLE ago */
       :: else -> skip
       fi;
       if
       :: answer == NONE ->
#ifndef BREAK_RING_WAIT_DELIVER
          settle();
#endif
          offer(SECTION, frame, section, half, lease, lease != 0);
          atomic {
              accepted_by_sender[frame] = 1;
              _note_answer(answer, lease, half, 0);
              batch_start(0)
          }
       :: else ->
          atomic { batch_start(1) }
       fi
    fi;
    if
    :: have_section && !last -> _switch_half()
    :: else -> skip
    fi
}

/* Between calls: time passes (ticks of 30 s, as long as one changes an age that matters), and
 * the pause of leases may end. */
#if N_SECTIONS > 1
#define RECEIVER_RING_AGES (rings[0].armed && rings[0].age < 2) || (rings[1].armed && rings[1].age < 2)
#else
#define RECEIVER_RING_AGES (rings[0].armed && rings[0].age < 2)
#endif
inline idle() {
    do
    :: ((ring_armed && ring_age == 0) || (announced_lease != 0 && announced_age == 0) || RECEIVER_RING_AGES) ->
       if :: ring_armed -> ring_age = 1 :: else -> skip fi;
       if :: announced_lease != 0 -> announced_age = 1 :: else -> skip fi;
       if :: rings[0].armed && rings[0].age < 2 -> rings[0].age++ :: else -> skip fi;
#if N_SECTIONS > 1
       if :: rings[1].armed && rings[1].age < 2 -> rings[1].age++ :: else -> skip fi;
#endif
       printf("MSC: 30 s pass\n")
    :: true -> break
    od;
    if
    :: no_leases -> no_leases = 0
    :: true -> skip
    fi
}

proctype Sender() {
    byte frame;                 /* the frame being built, 1 .. N_FRAMES */
    mtype kind;
    bool have_section;          /* self._section is not None */
    byte section;
    bit half;                   /* self._half */
    byte leases[2];             /* self._leases */
    byte next_lease = 1;        /* self._next_lease */
    bool no_leases;             /* time.monotonic() < self._leases_from */
    bool ring_armed;            /* self._ring_armed */
    byte ring_age;              /* now - self._ring_used: 0 under _RING_IDLE (30 s), else 1 */
    byte announced_lease;       /* self._announced: lease (0: none), half, frame */
    bit announced_half;
    byte announced_frame;
    byte announced_age;         /* ... and how long ago it was posted */
    byte lease, answer, seq, timeouts;
    byte aw_lease, aw_frame, aw_age;
    bit aw_half, other;
    bool released, last;

    do
    :: atomic {
           frame < N_FRAMES ->
           idle();
           frame++;
           if
           :: kind = INLINE
           :: kind = COPIED
           :: kind = LEASABLE
           fi;
           frame_kind[frame] = kind;
           if
           :: frame == N_FRAMES -> last = 1   /* close(): _flush_frame(last=True) */
           :: true -> last = 0                 /* flush(), linger, or the next message */
           fi;
           /* _add: a frame that outgrows WM_COPYDATA moves into a section, before its records */
           if
           :: kind != INLINE && !have_section -> _open_section()   /* nothing announced yet */
           :: else -> skip
           fi;
           if
           :: have_section ->
              printf("MSC: Sender: frame %d (%e) into section %d half %d\n", frame, kind, section, half);
              write_records(section, half)
           :: else -> printf("MSC: Sender: frame %d (%e) in its own memory\n", frame, kind)
           fi;
           if
           :: no_leases -> lease = 0
           :: else -> lease = next_lease
           fi;
           answer = NONE
       }
       _flush_frame();
#ifdef CHECK_PROGRESS
progress_flushed:   /* a frame went out: what a non-progress cycle never reaches */
       skip;
#endif
       kind = 0; last = 0
    :: frame < N_FRAMES && announced_lease != 0 ->
       atomic { idle(); printf("MSC: Sender: flush() with nothing pending\n") }
       settle()
    :: else -> break
    od;
    /* close(): the rest of it */
    atomic { idle() }
    settle();
    atomic { _end_ring() }
sender_end:
    atomic { printf("MSC: Sender: done\n"); sender_done = 1 }
}
