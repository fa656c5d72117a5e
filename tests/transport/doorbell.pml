/*
 * tests/transport/doorbell.pml — a model of the ring doorbell for the SPIN model checker, under
 * x86-TSO (every store goes through a one-entry store buffer that drains at an arbitrary later
 * time; a fence drains it; entering the kernel drains it).
 *
 * producer: publish idx; FENCE; if (waiter flag) futex_wake
 * consumer: if idx moved, consume; else flag = 1; FENCE; re-check idx; futex_wait(idx, seen)
 *           (the kernel sleeps only if idx == seen, atomically); flag = 0
 *
 * A lost wake-up leaves the consumer asleep forever with data pending after the producer has
 * finished: SPIN reports it as an invalid end state. With -DNOFENCE (the fences removed) SPIN must
 * find exactly that, which shows the model is able to see the bug the fences prevent.
 */
#define ROUNDS 3

byte idx = 0;            /* memory: producer's index (the futex word) */
bit flag = 0;            /* memory: consumer's waiter flag */
bit sleeping = 0;        /* kernel: consumer blocked in futex_wait */

bit pbuf = 0;            /* producer's store buffer: pending store to idx */
byte pval;
bit cbuf = 0;            /* consumer's store buffer: pending store to flag */
bit cval;

#define P_DRAIN atomic { if :: pbuf -> idx = pval; pbuf = 0 :: else -> skip fi }
#define C_DRAIN atomic { if :: cbuf -> flag = cval; cbuf = 0 :: else -> skip fi }

active proctype producer()
{
	byte i = 0;

	do
	:: i < ROUNDS ->
		i++;
		(pbuf == 0);
		atomic { pbuf = 1; pval = i }            /* store_release(idx, i) */
#ifndef NOFENCE
		P_DRAIN;                                 /* full fence */
#endif
		if
		:: flag ->                               /* waiter seen: futex_wake (kernel entry) */
			P_DRAIN;
			atomic { if :: sleeping -> sleeping = 0 :: else -> skip fi }
		:: else -> skip
		fi
	:: else -> break
	od;
	P_DRAIN
}

active proctype consumer()
{
	byte seen = 0;

	do
	:: seen == ROUNDS -> break
	:: else ->
		if
		:: idx != seen -> seen = idx             /* consume what is published */
		:: else ->
			(cbuf == 0);
			atomic { cbuf = 1; cval = 1 }    /* waiting = 1 */
#ifndef NOFENCE
			C_DRAIN;                         /* full fence */
#endif
			if
			:: idx != seen -> skip           /* re-check: it moved, do not sleep */
			:: else ->
				C_DRAIN;                 /* futex_wait enters the kernel */
				atomic { if :: idx == seen -> sleeping = 1 :: else -> skip fi };
				(sleeping == 0)          /* blocked until futex_wake */
			fi;
			(cbuf == 0);
			atomic { cbuf = 1; cval = 0 }    /* waiting = 0 */
		fi
	od;
	C_DRAIN
}

/* the hardware draining store buffers whenever it likes */
active proctype memory()
{
end:
	do
	:: atomic { pbuf -> idx = pval; pbuf = 0 }
	:: atomic { cbuf -> flag = cval; cbuf = 0 }
	od
}
