/*
 * The receiver's window procedure (csrc/receiver.c) and the consumer (Python taking messages
 * and freeing them), included by copydata.pml.
 *
 * A frame in a section takes the window procedure two steps: up to the (early) answer, then
 * the copy and what follows; with faults, receiving it is a step of its own, so that a
 * Sender's time-out can find the window procedure begun and not yet answered.
 */

inline reply(a) {    /* ReplyMessage, or the window procedure's return, for a sent message */
    if
    :: !posted_frame && !replied -> answer_seq = m_seq; answer_value = a; replied = 1
    :: else -> skip
    fi
}

/* A cd_lease: the model keeps it at its half's index, or in the last slot should a second
 * lease on that half be alive (only CODE_AFTER_SEND_TIMEOUT makes one), so equal states look equal. */
inline new_lease(lid, word) {
    if
    :: cd_lease[word].references == 0 -> l = word
    :: else -> assert(cd_lease[N_LEASES - 1].references == 0); l = N_LEASES - 1
    fi;
    cd_lease[l].references = 1; cd_lease[l].id = lid; cd_lease[l].release_word = word
}

/* The last reference writes the lease id into the release word (lease_release). */
inline lease_release(i) {
    cd_lease[i].references--;
    if
    :: cd_lease[i].references == 0 ->
       release_word[cd_lease[i].release_word] = cd_lease[i].id;
       printf("MSC: release word of section %d half %d := %d\n",
              cd_lease[i].release_word / 2, cd_lease[i].release_word % 2, cd_lease[i].id);
       cd_lease[i].id = 0; cd_lease[i].release_word = 0
    :: else -> skip
    fi
}

/* The slot for the section's ring: its own, a free one, or none (CD_MAX_RINGS others, or a key). */
inline ring_slot(s) {
    if
    :: rings[s].armed -> have_slot = 1
    :: !rings[s].armed -> have_slot = 1
    :: !rings[s].armed -> have_slot = 0
    fi
}

/* accept_section up to the answer: described_section and section_frame check the range and the
 * frame; a lease and a ring slot; make_room; accept_batch's answer_before_copying. */
inline check_section(s, h, f, lid, r) {
    assert(half_frame[AT(s, h)] == f);     /* the frame the Sender described */
    rd_header[AT(s, h)]--;
    l = NO_LEASE;
    if
    :: lid != 0 && frame_kind[f] == LEASABLE -> new_lease(lid, AT(s, h))
    :: else -> skip
    fi;
    have_slot = 0;
    if
    :: l != NO_LEASE && r -> ring_slot(s)
    :: else -> skip
    fi;
#ifdef BREAK_ANSWER_BEFORE_CHECK
    printf("MSC: Receiver: answers frame %d 1 before its checks\n", f);
    reply(ANSWER_TRUE);      /* answered before make_room and the allocation */
#endif
    if
    :: nfull(queue) ->       /* make_room (the allocation is not modelled failing) */
       if
       :: l == NO_LEASE -> answer = ANSWER_TRUE
       :: l != NO_LEASE && have_slot -> answer = CD_ANSWER_LEASED_RING
       :: l != NO_LEASE && !have_slot -> answer = CD_ANSWER_LEASED
       fi;
       printf("MSC: Receiver: frame %d checked in section %d half %d, answers %d, then copies\n", f, s, h, answer);
       reply(answer)         /* answer_before_copying */
    :: full(queue) ->
       answer = ANSWER_REFUSED;
       printf("MSC: Receiver: frame %d refused, the queue is full\n", f)
    fi
}

/* accept_section after the answer: the copy (records below CD_LEASE_MIN_RECORD), append_all,
 * arm_ring, and the frame's own reference to its lease. */
inline copy_section(s, h, f, lid) {
    if
    :: answer != ANSWER_REFUSED ->
       assert(half_frame[AT(s, h)] == f);  /* the bytes copied are the frame's */
       queue!f, (l != NO_LEASE), l, s, h;
       if
       :: l != NO_LEASE ->
          cd_lease[l].references++; rd_records[AT(s, h)]++;
          printf("MSC: Receiver: frame %d copied and queued, its large records in place under lease %d\n", f, lid)
       :: else -> printf("MSC: Receiver: frame %d copied and queued\n", f)
       fi
    :: else -> skip
    fi;
    rd_records[AT(s, h)]--;    /* the window procedure is done with the half */
    if
    :: answer == CD_ANSWER_LEASED_RING ->   /* arm_ring */
       rings[s].armed = 1; rings[s].next_lease = lid + 1; rings[s].age = 0;
       printf("MSC: Receiver: ring %d armed for lease %d\n", s, lid + 1)
    :: else -> skip
    fi;
    if
    :: l != NO_LEASE && (answer == CD_ANSWER_LEASED || answer == CD_ANSWER_LEASED_RING) ->
       lease_release(l)      /* the queued records hold it now */
    :: l != NO_LEASE && answer != CD_ANSWER_LEASED && answer != CD_ANSWER_LEASED_RING ->
       cd_lease[l].references = 0; cd_lease[l].id = 0; cd_lease[l].release_word = 0  /* nothing kept */
    :: else -> skip
    fi;
    l = 0; have_slot = 0
}

/* ghost: the receiver is done with a post and the half it named */
inline post_done() {
    if
    :: p_lease != 0 ->
       rd_block[p_section]--; rd_header[AT(p_section, p_half)]--; rd_records[AT(p_section, p_half)]--
    :: else -> skip
    fi
}

proctype WindowProcedure() {
    byte m_seq, m_frame, m_section, m_lease;
    bit m_half, m_ring;
    mtype m_kind;
    byte p_section, p_lease, p_frame;
    bit p_half;
    byte b_lease, b_frame;
    bit b_half;
    byte answer, l;
    bool replied, posted_frame, have_slot;

end_idle:
    do
    :: atomic {   /* a WM_COPYDATA (accept_copydata, accept_payload, accept_section) */
           sent.waiting ->
           m_seq = sent.seq; m_kind = sent.kind; m_frame = sent.frame; m_section = sent.section;
           m_half = sent.offset; m_lease = sent.lease_id; m_ring = sent.ring_offset;
           sent.waiting = 0; replied = 0; posted_frame = 0;
#ifndef NO_FAULTS
       }
       atomic {   /* received, not yet answered: a time-out now leaves the window procedure going */
#endif
           if
           :: m_kind == INLINE ->
              if
              :: nfull(queue) ->
                 queue!m_frame, 0, NO_LEASE, 0, 0; answer = ANSWER_TRUE;
                 printf("MSC: Receiver: frame %d (WM_COPYDATA itself) queued\n", m_frame)
              :: full(queue) ->
                 answer = ANSWER_REFUSED;
                 printf("MSC: Receiver: frame %d (WM_COPYDATA itself) refused, the queue is full\n", m_frame)
              fi
           :: m_kind == SECTION ->
              check_section(m_section, m_half, m_frame, m_lease, m_ring)
           fi
       }
       atomic {
           if
           :: m_kind == SECTION -> copy_section(m_section, m_half, m_frame, m_lease)
           :: else -> skip
           fi;
           reply(answer);        /* the window procedure returns (no-op once answered early) */
           m_seq = 0; m_kind = 0; m_frame = 0; m_section = 0; m_half = 0; m_lease = 0; m_ring = 0;
           answer = 0; replied = 0
       }
    :: atomic {   /* a posted CD_RING_MESSAGE (take_announced) */
           !sent.waiting && nempty(posted) ->
           posted?p_section, p_lease, p_frame, p_half;
           posted_frame = 1;
           if
           :: rings[p_section].armed && p_lease == rings[p_section].next_lease ->
              /* read the block, each field once; checked as a descriptor is */
              b_lease = ring_block[p_section].lease_id;
              b_half = ring_block[p_section].offset;
              b_frame = ring_block[p_section].length;
              rings[p_section].age = 0;
              printf("MSC: Receiver: takes the post (ring %d, lease %d): the block names frame %d, half %d, lease %d\n",
                     p_section, p_lease, b_frame, b_half, b_lease);
              rd_header[AT(p_section, b_half)]++; rd_records[AT(p_section, b_half)]++;
              if
              :: b_lease != p_lease -> answer = ANSWER_REFUSED; rd_header[AT(p_section, b_half)]--
              :: else -> check_section(p_section, b_half, b_frame, b_lease, 1)
              fi
           :: else ->   /* not an armed ring, or not the lease it may announce: nothing read */
              if
              :: rings[p_section].armed && p_lease == 0 ->   /* its sender is done with it */
                 rings[p_section].armed = 0; rings[p_section].next_lease = 0; rings[p_section].age = 0;
                 printf("MSC: Receiver: ring %d ended by its sender\n", p_section)
              :: else ->
                 printf("MSC: Receiver: post (ring %d, lease %d) ignored: no such ring armed for that lease\n",
                        p_section, p_lease)
              fi;
              post_done();
              p_section = 0; p_lease = 0; p_frame = 0; p_half = 0; posted_frame = 0
           fi
       }
       if
       :: posted_frame ->
          atomic {
              if
              :: b_lease == p_lease -> copy_section(p_section, b_half, b_frame, b_lease)
              :: else -> rd_records[AT(p_section, b_half)]--
              fi;
              if
              :: answer != CD_ANSWER_LEASED_RING || rings[p_section].next_lease != p_lease + 1 ->
                 rings[p_section].armed = 0; rings[p_section].next_lease = 0; rings[p_section].age = 0
              :: else -> skip
              fi;
              ring_block[p_section].answer = (p_lease << 8) | answer;   /* the last it does with the block */
              printf("MSC: Receiver: writes answer %d for lease %d into ring block %d\n", answer, p_lease, p_section);
              post_done();
              p_section = 0; p_lease = 0; p_frame = 0; p_half = 0; posted_frame = 0;
              b_lease = 0; b_half = 0; b_frame = 0; answer = 0
          }
       :: else -> skip
       fi
    :: d_step {   /* forget_idle_rings: unused for CD_RING_IDLE_MS (WM_TIMER comes after posts) */
           rings[0].armed && rings[0].age == 2 && empty(posted) ->
           rings[0].armed = 0; rings[0].next_lease = 0; rings[0].age = 0;
           printf("MSC: Receiver: forgets ring 0, unused for 60 s\n")
       }
#if N_SECTIONS > 1
    :: d_step {
           rings[1].armed && rings[1].age == 2 && empty(posted) ->
           rings[1].armed = 0; rings[1].next_lease = 0; rings[1].age = 0;
           printf("MSC: Receiver: forgets ring 1, unused for 60 s\n")
       }
#endif
    :: d_step { sender_done && !sent.waiting && empty(posted) -> receiver_done = 1 } -> break
    :: atomic { FAULT && !receiver_dead -> receiver_dead = 1; printf("MSC: Receiver: its process dies\n") }
       break   /* the process ends */
    od
}

/* ========================================================================================= */
/* The consumer: Python takes messages in order and frees them, leased ones when it likes    */
/* ========================================================================================= */

typedef held_message {
    bool used;
    byte frame;
    byte lease;
    byte section;
    bit half
};

proctype Consumer() {
    held_message held[HOLD_MAX];
    byte held_count, f, l, s, i;
    bit leased, h;

end_idle:
    do
    :: d_step {   /* cd_receiver_take */
           held_count < HOLD_MAX && nempty(queue) -> queue?f, leased, l, s, h;
           printf("MSC: Consumer: takes frame %d\n", f);
#ifdef TOLERATE_DUPLICATES
           assert(f >= last_delivered);   /* exploring what else goes wrong after a duplicate */
#else
           assert(f > last_delivered);    /* in order, and never twice */
#endif
           last_delivered = f; delivered[f] = 1;
           if
           :: leased ->     /* read in place until freed */
              i = 0;
              do
              :: held[i].used -> i++
              :: else -> break
              od;
              held[i].used = 1; held[i].frame = f; held[i].lease = l; held[i].section = s; held[i].half = h;
              held_count++
           :: else -> skip  /* copied: the receiver's own memory */
           fi;
           f = 0; leased = 0; l = 0; s = 0; h = 0; i = 0
       }
#ifdef CHECK_PROGRESS
progress_taken:   /* a frame delivered */
       skip
#endif
    :: atomic {   /* cd_message_free, of any message held */
           held_count > 0 ->
           if
           :: held[0].used -> i = 0
#if HOLD_MAX > 1
           :: held[1].used -> i = 1
#endif
           fi;
           printf("MSC: Consumer: frees frame %d (read in place)\n", held[i].frame);
           assert(half_frame[AT(held[i].section, held[i].half)] == held[i].frame);  /* unchanged while read */
           rd_records[AT(held[i].section, held[i].half)]--;
           lease_release(held[i].lease);
#if HOLD_MAX > 1
           if   /* keep the held messages in the order taken, so equal states look equal */
           :: i == 0 && held[1].used ->
              held[0].frame = held[1].frame; held[0].lease = held[1].lease;
              held[0].section = held[1].section; held[0].half = held[1].half;
              i = 1
           :: else -> skip
           fi;
#endif
           held[i].used = 0; held[i].frame = 0; held[i].lease = 0; held[i].section = 0; held[i].half = 0;
           held_count--; i = 0
       }
    :: receiver_done && held_count == 0 && empty(queue) -> break
    :: receiver_dead -> goto consumer_end   /* gone with its process */
    od;
    /* Nothing taken is lost: every frame the Sender saw taken was delivered (and never twice,
     * checked above); with NO_FAULTS, every frame. */
    i = 1;
    do
    :: i <= N_FRAMES ->
       assert(!accepted_by_sender[i] || delivered[i]);
#ifdef NO_FAULTS
       assert(delivered[i]);
#endif
       i++
    :: else -> break
    od;
consumer_end:
    skip
}
